"""CFCML: the HRM losses on small examples worked out by hand, and the model as a plug-in."""
import json
import math

import pytest
import torch

from stages.models import InputSpec, build
from stages.models.hrm import (crossmodal_prototype_loss, hrm_losses, prototypes, sample_loss, unimodal_prototype_loss)

from tests import datagen


def _symmetric():
    # two modalities, identical: class 0 = (1,0), class 1 = (0,1), two samples each
    f = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    return [f, f.clone()], torch.tensor([0, 0, 1, 1])


def test_hrm_symmetric_example_tau_1():
    """Every prototype equals its class direction; cos is 1 (logit 2) or 0 (logit 1)."""
    feats, y = _symmetric()
    classes, uni, cross = prototypes(feats, y)
    assert torch.allclose(uni, torch.tensor([[[1.0, 0.0], [0.0, 1.0]]] * 2))
    assert torch.allclose(cross, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    e = math.e
    # L_sam: positives {C_y, P_y^A, P_y^B} (3 x e^2), negatives the 2 other-class samples (2 x e^1);
    # the same for every sample -> per class mean = l; summed over 2 classes and 2 modalities
    l_sam = math.log(1 + 2 / (3 * e))
    # L_up: anchor P_k^m, positive C_k (e^2), negatives P_l^A, P_l^B, l != k (2 x e); (2*2 l)/M
    l_up = math.log(1 + 2 / e)
    # L_cp: anchor C_k, positives P_k^A, P_k^B (2 x e^2), negative C_l (e); (2 l)/K
    l_cp = math.log(1 + 1 / (2 * e))
    out = hrm_losses(feats, y, tau=1.0)
    assert float(out["sam"]) == pytest.approx(4 * l_sam, rel=1e-6)
    assert float(out["up"]) == pytest.approx(2 * l_up, rel=1e-6)
    assert float(out["cp"]) == pytest.approx(l_cp, rel=1e-6)


def _asymmetric():
    a = torch.tensor([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0], [-2.0, 0.0]])
    b = torch.tensor([[1.0, 0.0], [5.0, 0.0], [0.0, 1.0], [0.0, 4.0]])
    return [a, b], torch.tensor([0, 0, 1, 1])


def test_prototypes_are_normalised_means_of_normalised_features():
    (a, b), y = _asymmetric()
    classes, uni, cross = prototypes([a, b], y)
    r2, r10 = math.sqrt(2), math.sqrt(10)
    assert torch.allclose(uni[0, 0], torch.tensor([1 / r2, 1 / r2]))      # mean((1,0),(0,1))
    assert torch.allclose(uni[1, 0], torch.tensor([1.0, 0.0]))
    assert torch.allclose(uni[0, 1], torch.tensor([-1.0, 0.0]))
    assert torch.allclose(uni[1, 1], torch.tensor([0.0, 1.0]))
    assert torch.allclose(cross[0], torch.tensor([3 / r10, 1 / r10]))     # mean of (1,0),(0,1),(1,0),(1,0)
    assert torch.allclose(cross[1], torch.tensor([-1 / r2, 1 / r2]))      # mean of (-1,0)x2,(0,1)x2


def test_crossmodal_prototype_loss_by_hand_tau_1():
    feats, y = _asymmetric()
    classes, uni, cross = prototypes(feats, y)
    # C_0 = (3,1)/sqrt10: cos with P_0^A=(1,1)/sqrt2 is 4/sqrt20, with P_0^B=(1,0) 3/sqrt10,
    # with the negative C_1=(-1,1)/sqrt2 it is -2/sqrt20
    p = [1 + 4 / math.sqrt(20), 1 + 3 / math.sqrt(10)]
    n = 1 - 2 / math.sqrt(20)
    l0 = math.log(math.exp(p[0]) + math.exp(p[1]) + math.exp(n)) - math.log(math.exp(p[0]) + math.exp(p[1]))
    # C_1: cos with P_1^A=(-1,0) and P_1^B=(0,1) both 1/sqrt2; negative C_0 again -2/sqrt20
    q = 1 + 1 / math.sqrt(2)
    l1 = math.log(2 * math.exp(q) + math.exp(n)) - math.log(2 * math.exp(q))
    assert float(crossmodal_prototype_loss(classes, uni, cross, 1.0)) == pytest.approx((l0 + l1) / 2, rel=1e-6)


def test_unimodal_prototype_and_sample_loss_sets_by_hand_tau_1():
    feats, y = _asymmetric()
    classes, uni, cross = prototypes(feats, y)
    r2, r10, r20 = math.sqrt(2), math.sqrt(10), math.sqrt(20)
    # Prototypes: P_0^A=(1,1)/sqrt2, P_1^A=(-1,0), P_0^B=(1,0), P_1^B=(0,1); C_0=(3,1)/sqrt10,
    # C_1=(-1,1)/sqrt2. L_up: anchor P_k^m, positive C_k, negatives P_l^A and P_l^B (l != k); sum / M.
    def l(pos, negs):
        return math.log(sum(math.exp(1 + c) for c in pos + negs)) - math.log(sum(math.exp(1 + c) for c in pos))
    up = (l([4 / r20], [-1 / r2, 1 / r2])          # P_0^A: C_0 4/sqrt20; P_1^A -1/sqrt2, P_1^B 1/sqrt2
          + l([1 / r2], [-1 / r2, -1.0])           # P_1^A: C_1 1/sqrt2;  P_0^A -1/sqrt2, P_0^B -1
          + l([3 / r10], [-1.0, 0.0])              # P_0^B: C_0 3/sqrt10; P_1^A -1, P_1^B 0
          + l([1 / r2], [1 / r2, 0.0]))            # P_1^B: C_1 1/sqrt2;  P_0^A 1/sqrt2, P_0^B 0
    assert float(unimodal_prototype_loss(classes, uni, cross, 1.0)) == pytest.approx(up / 2, rel=1e-6)
    # L_sam, modality B, sample 0 = (1,0), class 0: positives C_0 (3/sqrt10), P_0^A (1/sqrt2), P_0^B (1);
    # negatives: B's class-1 samples (0,1), (0,1) -> cos 0, 0
    s_b0 = l([3 / r10, 1 / r2, 1.0], [0.0, 0.0])
    s_b1 = s_b0                                     # sample 1 of B normalises to (1,0) as well
    # class 1 of B: samples (0,1): positives C_1 (1/sqrt2), P_1^A (0), P_1^B (1); negatives (1,0),(1,0)
    s_b2 = l([1 / r2, 0.0, 1.0], [0.0, 0.0])
    # modality A: sample (1,0): C_0 3/sqrt10, P_0^A 1/sqrt2, P_0^B 1; negatives (-1,0),(-1,0): -1,-1
    s_a0 = l([3 / r10, 1 / r2, 1.0], [-1.0, -1.0])
    # sample (0,1): C_0 1/sqrt10, P_0^A 1/sqrt2, P_0^B 0; negatives cos 0, 0
    s_a1 = l([1 / r10, 1 / r2, 0.0], [0.0, 0.0])
    # class 1 of A, both (-1,0): C_1 1/sqrt2, P_1^A 1, P_1^B 0; negatives (1,0) -> -1, (0,1) -> 0
    s_a2 = l([1 / r2, 1.0, 0.0], [-1.0, 0.0])
    sam = (s_a0 + s_a1) / 2 + s_a2 + (s_b0 + s_b1) / 2 + s_b2
    assert float(sample_loss(feats, y, classes, uni, cross, 1.0)) == pytest.approx(sam, rel=1e-6)


def test_absent_class_and_single_class_batches():
    feats, y = _symmetric()
    assert all(float(v) == 0.0 for v in hrm_losses([f[:2] for f in feats], y[:2]).values())
    three = [torch.randn(6, 4), torch.randn(6, 4)]
    out = hrm_losses(three, torch.tensor([0, 0, 2, 2, 2, 0]))      # class 1 absent: no NaN
    assert all(torch.isfinite(v) for v in out.values())


def test_paper_tau_does_not_overflow():
    torch.manual_seed(0)
    out = hrm_losses([torch.randn(8, 16), torch.randn(8, 16)], torch.tensor([0, 1] * 4), tau=0.07)
    assert all(torch.isfinite(v) and v > 0 for v in out.values())


SPEC = InputSpec({"img": (64,), "img/s0": (4, 8), "img/s1": (4, 16), "img/s2": (4, 24), "img/s3": (4, 32), "tab": (5,)})


@pytest.mark.parametrize("opts", [{}, {"coarse": False}, {"fine": False}])
def test_model_forward_and_ablation_switches(opts):
    torch.manual_seed(0)
    model = build("cfcml", SPEC, 3, {"dim": 16, "tokens": 4, "heads": 2, **opts}).module
    x = {k: torch.randn(6, *v) for k, v in SPEC.shapes.items()}
    y = torch.tensor([0, 1, 2] * 2)
    out = model.train()(x, y)
    assert out.logits.shape == (6, 3)
    assert (out.aux_loss is None) == (opts.get("fine") is False)
    assert model.eval()(x).aux_loss is None           # no labels, no auxiliary loss at test time
    used = model.inputs_used(SPEC)
    assert ("img/s0" in used) == (opts.get("coarse") is not False) and "img" not in used


def test_cfcml_through_the_cli(cli, cache, tmp_path):
    path = datagen.manifest(tmp_path / "m", n=16)
    r = cli("encode", "--run", "c", "--data", path, "--image-stages", "--stage-grid", "2", "--device", "cpu",
            "--image-encoder", "resnet18", "--allow-random-weights")
    assert r.exit_code == 0, r.output
    r = cli("train", "--run", "c", "--model", "cfcml", "--curriculum", "none", "--epochs", "3",
            "--model-option", "dim=16", "--model-option", "tokens=4", "--batch-size", "8")
    assert r.exit_code == 0, r.output
    run = cache / "c" / "train" / "cfcml-baseline+bs8+dim16+tokens4" / "seed0"
    hist = (run / "history.csv").read_text().splitlines()[0]
    assert "aux_sam" in hist and "aux_cp" in hist
    r = cli("evaluate", "--run", "c")
    assert r.exit_code == 0, r.output
    r = cli("train", "--run", "c", "--model", "cfcml", "--curriculum", "none", "--model-option", "depth=3")
    assert r.exit_code == 2 and "unknown model option" in r.stderr
    r = cli("encode", "--run", "flat", "--data", path, "--image-encoder", "resnet18", "--allow-random-weights")
    r = cli("train", "--run", "flat", "--model", "cfcml", "--curriculum", "none")
    assert r.exit_code == 2 and "--image-stages" in r.stderr
