"""stages.engine.losses: every loss against numbers worked out by hand, per replica.

The shared example: replica 0 has logits z = [[ln 3, 0], [0, 0], [0, ln 3]] and labels [0, 1, 1], so
softmax gives p_t = 3/4, 1/2, 3/4 and CE ℓ = [ln(4/3), ln 2, ln(4/3)] = [0.2876821, 0.6931472, 0.2876821].
Replica 1 has zero logits (every p = 1/2, every ℓ = ln 2) and labels [1, 0, 0].
"""
import math

import numpy as np
import pytest
import torch

from stages.engine import losses
from stages.errors import DataError, UsageError
from stages.engine.losses import LossOptions

LN2, L43 = math.log(2), math.log(4 / 3)


def example():
    z = torch.tensor([[[math.log(3), 0.0], [0.0, 0.0], [0.0, math.log(3)]],
                      [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]], dtype=torch.float32)
    y = torch.tensor([[0, 1, 1], [1, 0, 0]])
    return z, y


def value(name, counts, epoch=1, total=10, **kw):
    z, y = example()
    fn = losses.make_batched(LossOptions(name=name, **kw), np.array(counts), total, "cpu")
    out = fn(z, y, epoch)
    assert out.shape == (2,)
    return out.tolist()


def test_ce_wce_focal_by_hand():
    # ce: replica 0 (0.2876821 + 0.6931472 + 0.2876821) / 3 = 0.4228371; replica 1 ln 2
    assert value("ce", [[30, 10], [10, 30]]) == pytest.approx([0.4228371, LN2], rel=1e-6)
    # wce, counts [30, 10]: w = 40/(2*30) = 2/3, 40/(2*10) = 2
    #   (2/3 * 0.2876821 + 2 * 0.6931472 + 2 * 0.2876821) / (2/3 + 2 + 2) = 2.1534412 / 4.6666667 = 0.4614528
    # replica 1: a weighted mean of ln 2 everywhere is ln 2
    assert value("wce", [[30, 10], [10, 30]]) == pytest.approx([0.4614528, LN2], rel=1e-6)
    # focal, gamma 2: (1/4)^2 ln(4/3) = 0.0179801, (1/2)^2 ln 2 = 0.1732868 ->
    #   (0.0179801 + 0.1732868 + 0.0179801) / 3 = 0.0697490; replica 1: (1/2)^2 ln 2 = 0.1732868
    assert value("focal", [[30, 10], [10, 30]]) == pytest.approx([0.0697490, 0.25 * LN2], rel=1e-5)
    # gamma 0 is CE
    assert value("focal", [[30, 10], [10, 30]], focal_gamma=0.0) == pytest.approx(value("ce", [[30, 10], [10, 30]]))


def test_logit_adjusted_and_balanced_softmax_by_hand():
    counts = [[30, 10], [10, 30]]
    # LA tau 1, replica 0: pi = [0.75, 0.25]; z + log pi:
    #   [ln 3 + ln .75, ln .25] = [ln 2.25, ln .25] -> p_0 = 2.25 / 2.5 = 0.9  -> 0.1053605
    #   [ln .75, ln .25]                          -> p_1 = .25 / 1    = 0.25 -> 1.3862944
    #   [ln .75, ln 3 + ln .25] = [ln .75, ln .75] -> p_1 = 0.5               -> 0.6931472
    #   mean (0.1053605 + 1.3862944 + 0.6931472) / 3 = 0.7282674
    # replica 1: pi = [.25, .75], z = 0 -> p_y = pi_y: (-ln .75 - 2 ln .25) / 3 = (0.2876821 + 2.7725887) / 3 = 1.0200903
    la = value("logit-adjusted", counts)
    assert la == pytest.approx([0.7282674, 1.0200903], rel=1e-6)
    # balanced softmax adds log n_c = log pi_c + log N: the constant log N cancels in the softmax
    assert value("balanced-softmax", counts) == pytest.approx(la, rel=1e-6)
    # tau 2, replica 0: z + 2 log pi, pi^2 = [.5625, .0625]
    #   [ln(3 * .5625), ln .0625] -> p_0 = 1.6875 / 1.75 -> 0.0363676
    #   [ln .5625, ln .0625]       -> p_1 = .0625 / .625 = 0.1 -> 2.3025851
    #   [ln .5625, ln(3 * .0625)]  -> p_1 = .1875 / .75 = 0.25 -> 1.3862944
    #   mean 3.7252471 / 3 = 1.2417490
    # replica 1: pi^2 = [.0625, .5625] -> p = [.1, .9]: (-ln .9 - 2 ln .1) / 3 = (0.1053605 + 4.6051702) / 3 = 1.5701769
    assert value("logit-adjusted", counts, la_tau=2.0) == pytest.approx([1.2417490, 1.5701769], rel=1e-6)
    assert value("logit-adjusted", counts, la_tau=0.0) == pytest.approx(value("ce", counts))


def test_la_tau1_equals_balanced_softmax_on_random_logits():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(3, 7, 4, generator=g)
    y = torch.randint(0, 4, (3, 7), generator=g)
    counts = np.array([[50, 20, 5, 2], [3, 3, 40, 9], [10, 10, 10, 10]])
    la = losses.make_batched(LossOptions("logit-adjusted"), counts, 5, "cpu")(z, y, 1)
    bsm = losses.make_batched(LossOptions("balanced-softmax"), counts, 5, "cpu")(z, y, 1)
    torch.testing.assert_close(la, bsm)


def test_ldam_margins_and_loss_by_hand():
    # counts [81, 16, 1]: n^(-1/4) = [1/3, 1/2, 1]; scaled so the largest is 0.5 -> [1/6, 1/4, 1/2]
    np.testing.assert_allclose(losses.ldam_margins([81, 16, 1], 0.5), [1 / 6, 1 / 4, 1 / 2])
    # three classes, zero logits, label 0: [-1/6, 0, 0] -> ln(1 + 2 e^{1/6}) = ln(1 + 2 * 1.1813604) = 1.2127504
    fn = losses.make_batched(LossOptions("ldam-drw"), np.array([[81, 16, 1]]), 10, "cpu")
    assert fn(torch.zeros(1, 1, 3), torch.tensor([[0]]), 1).item() == pytest.approx(1.2127504, rel=1e-6)

    counts = [[16, 1], [1, 16]]     # n^(-1/4) = [1/2, 1] -> margins [0.25, 0.5] (replica 1: [0.5, 0.25])
    # s = 1, replica 0 (the true-class logit minus its margin; two-class CE = ln(1 + e^{other - true})):
    #   [ln 3 - .25, 0], y 0 -> ln(1 + e^{.25} / 3) = ln(1.4280085) = 0.3562808
    #   [0, 0 - .5],     y 1 -> ln(1 + e^{.5})      = ln(2.6487213) = 0.9740770
    #   [0, ln 3 - .5],  y 1 -> ln(1 + e^{.5} / 3)  = ln(1.5495738) = 0.4379799
    #   mean 1.7683377 / 3 = 0.5894459
    # replica 1, zero logits: y 1 (margin .25) -> ln(1 + e^{.25}) = 0.8259394; y 0 (margin .5) -> 0.9740770
    #   mean (0.8259394 + 2 * 0.9740770) / 3 = 0.9246978
    assert value("ldam-drw", counts, epoch=1) == pytest.approx([0.5894459, 0.9246978], rel=1e-6)
    # s = 2 scales the adjusted logits: ln(1 + e^{.5}/9) = 0.1682152, ln(1 + e^{1}) = 1.3132617,
    #   ln(1 + e^{1}/9) = 0.2639256 -> mean 0.5818008
    assert value("ldam-drw", counts, epoch=1, ldam_scale=2.0)[0] == pytest.approx(0.5818008, rel=1e-6)
    # DRW (epoch 9 of 10 with drw_start 0.8; beta 0.5): weights (1 - .5) / (1 - .5^n):
    #   n = 16: .5 / (1 - 1/65536) = 32768/65535; n = 1: .5 / .5 = 1; normalised to sum 2:
    #   w_16 = 2 * 32768 / (32768 + 65535) = 65536/98303 = 0.6666734, w_1 = 131070/98303 = 1.3333266
    # replica 0: (0.6666734 * 0.3562808 + 1.3333266 * (0.9740770 + 0.4379799)) / (0.6666734 + 2 * 1.3333266)
    #   = (0.2375229 + 1.8827339) / 3.3333266 = 0.6360781
    # replica 1 (w_1 for class 0, w_16 for class 1; labels [1, 0, 0]):
    #   (0.6666734 * 0.8259394 + 2 * 1.3333266 * 0.9740770) / (0.6666734 + 2.6666532) = 0.9444491
    assert value("ldam-drw", counts, epoch=9, drw_beta=0.5) == pytest.approx([0.6360781, 0.9444491], rel=1e-6)


def test_drw_switches_exactly_at_the_documented_epoch():
    assert losses.drw_first_epoch(0.8, 200) == 161          # the authors' 0-based epoch 160
    assert losses.drw_first_epoch(0.8, 10) == 9
    assert losses.drw_first_epoch(0.7, 10) == 8             # 0.7 * 10 = 7.000000000000001 in floating point
    assert losses.drw_first_epoch(1.0, 10) == 11            # never within 10 epochs
    counts = [[16, 1], [1, 16]]
    plain = value("ldam-drw", counts, epoch=1, drw_beta=0.5)
    assert value("ldam-drw", counts, epoch=8, total=10, drw_beta=0.5) == plain
    assert value("ldam-drw", counts, epoch=9, total=10, drw_beta=0.5) != pytest.approx(plain)
    assert value("ldam-drw", counts, epoch=9, total=10, drw_beta=0.5) == value("ldam-drw", counts, epoch=10, drw_beta=0.5)
    assert value("ldam-drw", counts, epoch=7, total=10, drw_start=0.7, drw_beta=0.5) == plain
    assert value("ldam-drw", counts, epoch=8, total=10, drw_start=0.7, drw_beta=0.5) != pytest.approx(plain)


def test_class_balanced_loss_by_hand():
    # counts [2, 1], beta 0.5: (1 - .5)/(1 - .25) = 2/3 and .5/.5 = 1; normalised to sum 2 -> [0.8, 1.2]
    np.testing.assert_allclose(losses.effective_number_weights([2, 1], 0.5), [0.8, 1.2])
    # replica 0: mean over the batch of w_y * CE = (0.8 * 0.2876821 + 1.2 * 0.6931472 + 1.2 * 0.2876821) / 3
    #   = 1.4071408 / 3 = 0.4690469   (a weighted mean would divide by 0.8 + 1.2 + 1.2 = 3.2: 0.4397315)
    # replica 1, counts [1, 2] -> w [1.2, 0.8], labels [1, 0, 0]: (0.8 + 1.2 + 1.2) / 3 * ln 2 = 0.7393570
    assert value("cb", [[2, 1], [1, 2]], cb_beta=0.5) == pytest.approx([0.4690469, 0.7393570], rel=1e-6)
    # the default beta 0.9999 against a plain loop over classes: (1 - b) / (1 - b^n), then * C / sum
    raw = [(1 - 0.9999) / (1 - 0.9999 ** n) for n in (300, 20, 7)]
    np.testing.assert_allclose(losses.effective_number_weights([300, 20, 7], 0.9999), [3 * r / sum(raw) for r in raw])


@pytest.mark.parametrize("name", losses.LOSSES)
def test_replicas_are_independent_and_batched_equals_single(name):
    g = torch.Generator().manual_seed(1)
    z = torch.randn(3, 5, 3, generator=g, requires_grad=True)
    y = torch.randint(0, 3, (3, 5), generator=g)
    counts = np.array([[40, 9, 3], [5, 5, 30], [12, 12, 2]])
    fn = losses.make_batched(LossOptions(name), counts, 10, "cpu")
    full = fn(z, y, 10)
    # replica 1 alone (R = 1, its own counts) gives the same value as inside R = 3
    one = losses.make_batched(LossOptions(name), counts[1:2], 10, "cpu")(z[1:2], y[1:2], 10)
    torch.testing.assert_close(one[0], full[1])
    # changing replica 1's logits, labels and counts leaves replica 0 (and 2) unchanged
    z2, y2, c2 = z.detach().clone(), y.clone(), counts.copy()
    z2[1] = torch.randn(5, 3, generator=g) * 5
    y2[1] = (y2[1] + 1) % 3
    c2[1] = [1, 100, 7]
    other = losses.make_batched(LossOptions(name), c2, 10, "cpu")(z2, y2, 10)
    assert other[0].item() == full[0].item() and other[2].item() == full[2].item()
    # gradients are finite, and replica 0's loss has no gradient on replica 1's logits
    full[0].backward(retain_graph=True)
    assert torch.isfinite(z.grad).all() and z.grad[0].abs().sum() > 0 and (z.grad[1:] == 0).all()
    z.grad = None
    full.sum().backward()
    assert torch.isfinite(z.grad).all()


def test_options_are_checked_and_named():
    assert [LossOptions(n).variant_suffix() for n in losses.LOSSES] == \
        ["", "wce", "focal", "la", "bsm", "ldam-drw", "cb"]
    assert LossOptions("logit-adjusted", la_tau=2.0).variant_suffix() == "la-tau2"
    assert LossOptions("focal", focal_gamma=1.5).variant_suffix() == "focal-g1.5"
    assert LossOptions("ldam-drw", ldam_scale=30.0, drw_start=0.5).variant_suffix() == "ldam-drw-s30-drw0.5"
    assert LossOptions("cb", cb_beta=0.999).variant_suffix() == "cb-b0.999"
    for opts, flag in ((LossOptions("nope"), "--loss"), (LossOptions("focal", focal_gamma=-1.0), "--focal-gamma"),
                       (LossOptions("ldam-drw", drw_start=1.5), "--drw-start"),
                       (LossOptions("cb", cb_beta=1.0), "--cb-beta"),
                       (LossOptions("ldam-drw", ldam_scale=float("nan")), "--ldam-scale"),
                       (LossOptions("ce", la_tau=2.0), "--la-tau")):     # a parameter of another loss
        with pytest.raises(UsageError, match=flag):
            opts.check()
    with pytest.raises(DataError, match="replica 1 has no training sample of class 0"):
        losses.make_batched(LossOptions("wce"), np.array([[3, 4], [0, 5]]), 10, "cpu")


def test_one_replica_keeps_the_old_single_model_values():
    """The values the pre-batched single-model losses gave (wave 1), from the batched form with R = 1."""
    z, y = example()

    def one(name, **kw):
        fn = losses.make_batched(LossOptions(name=name, **kw), np.array([[30, 10]]), 1, "cpu")
        return float(fn(z[:1], y[:1], 1)[0])

    assert one("ce") == pytest.approx(0.4228371, rel=1e-6)
    assert one("wce") == pytest.approx(0.4614528, rel=1e-6)
    assert one("focal", focal_gamma=2.0) == pytest.approx(0.0697490, rel=1e-5)


def test_logit_adjustment_by_the_epoch_prior():
    """--la-prior epoch: pi is the class mix of the epoch's pool. A balanced epoch shifts every logit
    by the same constant (= plain CE); a 3:1 epoch shifts by tau*log(0.75) and tau*log(0.25)."""
    import numpy as np
    import torch

    from stages.engine.losses import LossOptions, make_batched

    logits = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])            # R=1, B=2, C=2
    y = torch.tensor([[0, 1]])
    fn = make_batched(LossOptions(name="logit-adjusted", la_prior="epoch"), np.array([[90, 10]]), 10, "cpu")
    ce = make_batched(LossOptions(), np.array([[90, 10]]), 10, "cpu")
    fn.set_epoch_counts(np.array([[5, 5]]))
    assert float(fn(logits, y, 1)) == pytest.approx(float(ce(logits, y, 1)), abs=1e-7)
    fn.set_epoch_counts(np.array([[30, 10]]))
    # adjusted logits: sample 1: (1 + ln .75, ln .25) -> -log softmax_0 = log(1 + e^(ln .25 - 1 - ln .75))
    #                  sample 2: (ln .75, 2 + ln .25) -> -log softmax_1 = log(1 + e^(ln .75 - 2 - ln .25))
    l1 = np.log1p(np.exp(np.log(0.25) - 1 - np.log(0.75)))
    l2 = np.log1p(np.exp(np.log(0.75) - 2 - np.log(0.25)))
    assert float(fn(logits, y, 1)) == pytest.approx((l1 + l2) / 2, rel=1e-6)
    fn.set_epoch_counts(np.array([[4, 0]]))                          # an absent class: half a sample
    assert np.isfinite(float(fn(logits, y, 1)))
    with pytest.raises(Exception, match="--la-prior"):
        LossOptions(name="ce", la_prior="epoch").check()
