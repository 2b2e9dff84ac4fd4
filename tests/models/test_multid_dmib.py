"""Multi-D and DMIB: every auxiliary loss on small examples worked out by hand, the whole forward pass
and loss against plain nn.Module implementations written here from the authors' description, the
correct KL against the released code's, and both models through the CLI."""
import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stages.engine import losses
from stages.store import tensorio
from stages.models import InputSpec, build
from stages.models.dmib import kl_detached

from tests.conftest import run_cli

E2 = 1 / (1 + math.exp(-2))          # softmax([1, 3])_1 = sigmoid(3 - 1) = 0.8807970779778823


def _row(model, values: dict):
    """[1, P] parameters: the named arrays given, zeros elsewhere."""
    named = {k: np.zeros(s, dtype=np.float32) for k, s in model.shapes.items()}
    named.update({k: np.asarray(v, dtype=np.float32) for k, v in values.items()})
    return torch.as_tensor(model.pack(named))[None]


def _run(model, flat, x, y, noise=None):
    """Forward with y; returns (output, gradients of aux_loss by parameter name)."""
    grads = torch.zeros_like(flat)
    out = model.forward(model.bind(flat, grads), x, noise, y)
    out.aux_loss.sum().backward()
    out.logits, out.aux_loss = out.logits.detach(), out.aux_loss.detach()
    out.aux = {k: v.detach() for k, v in out.aux.items()}
    return out, model.views(grads)


# -- Multi-D by hand -----------------------------------------------------------------------------------
def _multid_example(**options):
    """One modality, d = 2, H = 2, C = 2, one sample x = (2, 4) of class 1."""
    model = build("multid", InputSpec({"a": (2,)}), 2, {"hidden": 2, **options})
    flat = _row(model, {"gate.a.b": [0.0, math.log(3)],          # g = sigmoid(0, ln 3) = (1/2, 3/4)
                        "enc.a.w": np.eye(2), "view.a.w": np.eye(2),
                        "conf.a.w": [[0.5], [0.0]],                # c = 0.5 * h_0
                        "fuse.w": np.eye(2)})
    return model, flat, {"a": torch.tensor([[[2.0, 4.0]]])}, torch.tensor([[1]])


def test_multid_terms_by_hand():
    model, flat, x, y = _multid_example(gate_weight=2.0, confidence_weight=3.0, view_weight=5.0)
    out, grads = _run(model, flat, x, y)
    # gate: mean(1/2, 3/4) = 0.625; x' = (2, 4) * g = (1, 3) = h (identity encoder, ReLU, no dropout)
    assert float(out.aux["gate"]) == pytest.approx(0.625, rel=1e-6)
    # view: z = h = (1, 3); p_1 = e^3 / (e^1 + e^3) = E2; CE = -log E2 = log(1 + e^-2) = 0.126928
    assert float(out.aux["view_ce"]) == pytest.approx(math.log(1 + math.exp(-2)), rel=1e-6)
    # confidence c = 0.5 * 1 = 0.5, target p_1 = E2: (0.5 - 0.880797)^2 = 0.145006
    assert float(out.aux["confidence_mse"]) == pytest.approx((0.5 - E2) ** 2, rel=1e-6)
    assert float(out.aux_loss) == pytest.approx(2 * 0.625 + 3 * (0.5 - E2) ** 2 + 5 * math.log(1 + math.exp(-2)),
                                                rel=1e-6)
    # fused: h * c = (0.5, 1.5) through the identity
    assert out.logits[0, 0].tolist() == pytest.approx([0.5, 1.5], rel=1e-6)
    # d(c - p_1)^2 / dc = 2 (c - p_1) = -0.761594; times h = (1, 3), weight 3
    assert grads["conf.a.w"][0, :, 0].tolist() == pytest.approx([3 * 2 * (0.5 - E2) * h for h in (1, 3)], rel=1e-5)


def test_multid_confidence_target_is_not_detached_as_the_authors():
    """The MSE reaches the view classifier through p_1 (their code does not detach it):
    d(c - p_1)^2 / dz_1 = 2 (p_1 - c) p_1 (1 - p_1) = 2 * 0.380797 * 0.880797 * 0.119203 = 0.079963,
    and dz_1 / dW_view[:, 1] = h = (1, 3). View CE and gate switched off to isolate the MSE."""
    model, flat, x, y = _multid_example(gate_weight=0.0, view_weight=0.0)
    _, grads = _run(model, flat, x, y)
    d = 2 * (E2 - 0.5) * E2 * (1 - E2)
    assert grads["view.a.w"][0].flatten().tolist() == pytest.approx([-d, d, -3 * d, 3 * d], rel=1e-5)
    model, flat, x, y = _multid_example(gate_weight=0.0, view_weight=0.0, detach_target=True)
    _, grads = _run(model, flat, x, y)
    assert float(grads["view.a.w"].abs().max()) == 0.0


def test_multid_ablation_switches():
    spec = InputSpec({"a": (3,), "b": (2,)})
    full = build("multid", spec, 2, {"hidden": 4})
    bare = build("multid", spec, 2, {"hidden": 4, "gate": False, "confidence": False})
    assert {k for k in full.shapes if k.startswith(("gate.", "conf."))} == {
        f"{p}.{m}.{t}" for p in ("gate", "conf") for m in "ab" for t in "wb"}
    assert not any(k.startswith(("gate.", "conf.")) for k in bare.shapes)
    flat = torch.as_tensor(bare.initial(np.random.default_rng(0)))[None]
    out, _ = _run(bare, flat, {"a": torch.randn(1, 5, 3), "b": torch.randn(1, 5, 2)}, torch.tensor([[0, 1, 0, 1, 1]]))
    assert set(out.aux) == {"view_ce"}


# -- DMIB by hand --------------------------------------------------------------------------------------
def _dmib_example(**options):
    """One modality, d = 2, H = 2, bottleneck 2, C = 2, one sample x = (1, 3) of class 1."""
    model = build("dmib", InputSpec({"a": (2,)}), 2, {"hidden": 2, "bottleneck": 2, **options})
    flat = _row(model, {"enc.a.w": np.eye(2), "view.a.w": np.eye(2),
                        "observed.b": [0.0, math.log(3)],          # observed logits (0, ln 3): p_obs = (1/4, 3/4)
                        "bn.0.w": np.eye(2), "bn.1.w": np.eye(2)})  # prediction head all zero: p_bn = (1/2, 1/2)
    return model, flat, {"a": torch.tensor([[[1.0, 3.0]]])}, torch.tensor([[1]])


KL_OBS_BN = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)   # -0.173287 + 0.304099 = 0.130812
KL_BN_OBS = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)     # 0.346574 - 0.202733 = 0.143841
RELEASED = (0.5 * (math.log(0.5) - 0.25) + 0.5 * (math.log(0.5) - 0.75)) / 2   # -2.386294 / 4 = -0.596574


def test_dmib_terms_by_hand():
    model, flat, x, y = _dmib_example(beta=2.0, view_weight=3.0, observed_weight=5.0)
    out, grads = _run(model, flat, x, y)
    # the prediction is the bottleneck's head (all-zero weights: logits 0, 0), not the observed head
    assert out.logits[0, 0].tolist() == [0.0, 0.0]
    assert float(out.aux["observed_ce"]) == pytest.approx(-math.log(0.75), rel=1e-6)         # 0.287682
    assert float(out.aux["view_ce"]) == pytest.approx(math.log(1 + math.exp(-2)), rel=1e-6)  # 0.126928
    assert float(out.aux["kl"]) == pytest.approx(KL_OBS_BN, rel=1e-5)
    assert float(out.aux_loss) == pytest.approx(5 * -math.log(0.75) + 2 * KL_OBS_BN + 3 * math.log(1 + math.exp(-2)),
                                                rel=1e-5)
    # beta * d KL / d bottleneck logits = 2 (p_bn - p_obs) = 2 * (1/4, -1/4); the observed head gets
    # only its own CE: d(5 CE)/d observed.b = 5 (p_obs - onehot(1)) = 5 * (1/4, -1/4) -- no KL part
    assert grads["predict.b"][0].tolist() == pytest.approx([0.5, -0.5], rel=1e-5)
    assert grads["observed.b"][0].tolist() == pytest.approx([1.25, -1.25], rel=1e-5)


def test_dmib_kl_direction_and_detach():
    model, flat, x, y = _dmib_example(view_weight=0.0, observed_weight=0.0)   # beta only
    _, grads = _run(model, flat, x, y)
    assert float(grads["observed.b"].abs().max()) == 0.0 == float(grads["observed.w"].abs().max())
    assert grads["predict.b"][0].tolist() == pytest.approx([500 * 0.25, -500 * 0.25], rel=1e-5)   # beta 500


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides")      # the released code's reduction, on purpose
def test_correct_kl_and_the_released_misuse():
    """KL(p_obs || p_bn) = sum p_obs (log p_obs - log p_bn); the released code's
    kl_div(input=softmax(obs), target=softmax(bn)) gives another, negative, number on the same logits."""
    obs, bn = torch.tensor([[[0.0, math.log(3)]]]), torch.zeros(1, 1, 2)
    assert float(kl_detached(obs, bn)) == pytest.approx(KL_OBS_BN, rel=1e-6)
    released = F.kl_div(F.softmax(obs[0], dim=1), F.softmax(bn[0], dim=1), reduction="mean")
    assert float(released) == pytest.approx(RELEASED, rel=1e-6)
    assert KL_OBS_BN != pytest.approx(KL_BN_OBS, rel=1e-2) and RELEASED < 0
    # random logits, three replicas: torch's own kl_div used correctly (log-probabilities as input)
    gen = torch.Generator().manual_seed(0)
    obs, bn = torch.randn(3, 7, 4, generator=gen), torch.randn(3, 7, 4, generator=gen)
    for r in range(3):
        want = F.kl_div(F.log_softmax(bn[r], 1), F.softmax(obs[r], 1), reduction="batchmean")
        misuse = F.kl_div(F.softmax(obs[r], 1), F.softmax(bn[r], 1), reduction="mean")
        assert float(kl_detached(obs, bn)[r]) == pytest.approx(float(want), rel=1e-5)
        assert abs(float(misuse) - float(want)) > 1e-2


def test_dmib_widths_come_from_the_inputs():
    rosmap_like = InputSpec({"m1": (200,), "m2": (200,), "m3": (200,)})
    model = build("dmib", rosmap_like, 2, {"hidden": 300})
    assert model.shapes["bn.0.w"] == (900, 600) and model.shapes["bn.1.w"] == (600, 900)
    brca_like = build("dmib", InputSpec({"m1": (10,), "m2": (10,), "m3": (5,)}), 5, {})
    assert brca_like.shapes["bn.0.w"] == (1500, 1000)          # the authors' Linear(1500, 1000) on BRCA
    assert build("dmib", rosmap_like, 2, {"hidden": 8, "bottleneck": 7}).shapes["bn.1.w"] == (7, 24)


def test_authors_initialisation():
    """Xavier-normal weights and zero biases where the authors use their LinearLayer; DMIB's bottleneck
    and prediction head are plain nn.Linear (uniform +-1/sqrt(fan_in), biases too)."""
    model = build("dmib", InputSpec({"a": (300,)}), 2, {"hidden": 200, "bottleneck": 100})
    p = model.unpack(model.initial(np.random.default_rng(0)))
    assert not p["enc.a.b"].any() and not p["observed.b"].any()
    assert float(p["enc.a.w"].std()) == pytest.approx(math.sqrt(2 / 500), rel=0.02)
    assert p["bn.0.b"].any() and float(np.abs(p["bn.0.w"]).max()) <= 1 / math.sqrt(200)
    torch_init = build("multid", InputSpec({"a": (300,)}), 2, {"hidden": 200, "init": "torch"})
    assert torch_init.unpack(torch_init.initial(np.random.default_rng(0)))["enc.a.b"].any()


# -- against plain nn.Modules written from the authors' description -------------------------------------
class MultiDRef(nn.Module):
    def __init__(self, dims, hidden, n_classes):
        super().__init__()
        self.gate = nn.ModuleList(nn.Linear(d, d) for d in dims)
        self.enc = nn.ModuleList(nn.Linear(d, hidden) for d in dims)
        self.view = nn.ModuleList(nn.Linear(hidden, n_classes) for _ in dims)
        self.conf = nn.ModuleList(nn.Linear(hidden, 1) for _ in dims)
        self.fuse = nn.Linear(hidden * len(dims), n_classes)

    def forward(self, xs, y, masks, fused_loss):
        feats, loss = [], 0
        for v, x in enumerate(xs):
            g = torch.sigmoid(self.gate[v](x))
            h = F.relu(self.enc[v](x * g))
            if masks is not None:
                h = h * masks[v]
            z, c = self.view[v](h), self.conf[v](h)
            feats.append(h * c)
            target = torch.gather(F.softmax(z, dim=1), 1, y[:, None]).view(-1)
            loss = loss + g.mean() + F.mse_loss(c.view(-1), target) + F.cross_entropy(z, y)
        logits = self.fuse(torch.cat(feats, 1))
        return logits, fused_loss(logits, y) + loss

    def pairs(self, names):
        out = {"fuse": self.fuse}
        for v, m in enumerate(names):
            out.update({f"gate.{m}": self.gate[v], f"enc.{m}": self.enc[v], f"view.{m}": self.view[v],
                        f"conf.{m}": self.conf[v]})
        return out


class DMIBRef(nn.Module):
    def __init__(self, dims, hidden, width, n_classes, beta=500.0, lam=1000.0):
        super().__init__()
        self.enc = nn.ModuleList(nn.Linear(d, hidden) for d in dims)
        self.view = nn.ModuleList(nn.Linear(hidden, n_classes) for _ in dims)
        joint = hidden * len(dims)
        self.observed = nn.Linear(joint, n_classes)
        self.bottleneck = nn.Sequential(nn.Linear(joint, width), nn.ReLU(), nn.Linear(width, joint))
        self.predict = nn.Linear(joint, n_classes)
        self.beta, self.lam = beta, lam

    def forward(self, xs, y, masks, fused_loss):
        hs = [F.relu(enc(x)) for enc, x in zip(self.enc, xs)]
        if masks is not None:
            hs = [h * mask for h, mask in zip(hs, masks)]
        z = torch.cat(hs, 1)
        observed, logits = self.observed(z), self.predict(self.bottleneck(z))
        kl = F.kl_div(F.log_softmax(logits, 1), F.softmax(observed.detach(), 1), reduction="batchmean")
        views = sum(F.cross_entropy(head(h), y) for head, h in zip(self.view, hs))
        return logits, fused_loss(logits, y) + F.cross_entropy(observed, y) + self.beta * kl + self.lam * views

    def pairs(self, names):
        out = {"observed": self.observed, "bn.0": self.bottleneck[0], "bn.1": self.bottleneck[2],
               "predict": self.predict}
        for v, m in enumerate(names):
            out.update({f"enc.{m}": self.enc[v], f"view.{m}": self.view[v]})
        return out


@pytest.mark.parametrize("loss", ["ce", "wce"])
@pytest.mark.parametrize("name", ["multid", "dmib"])
@pytest.mark.parametrize("R", [1, 3])
def test_forward_and_loss_equal_an_independent_module(name, R, loss):
    """Same weights, inputs and dropout masks: logits, total loss and every gradient agree, per
    replica; the engine's loss (here wce) applies to the prediction head only."""
    dims, hidden, C, B = {"a": 4, "b": 3}, 5, 3, 6
    model = build(name, InputSpec({m: (d,) for m, d in dims.items()}), C, {"hidden": hidden, "bottleneck": 4}
                  if name == "dmib" else {"hidden": hidden})
    gen = torch.Generator().manual_seed(R)
    counts = np.array([[5, 2, 1]] * R, dtype=float)
    w = torch.as_tensor(losses.class_weights(counts[0]), dtype=torch.float32)
    fused_loss = (lambda z, t: F.cross_entropy(z, t, weight=w)) if loss == "wce" else F.cross_entropy
    refs, rows = [], []
    for r in range(R):
        torch.manual_seed(10 + r)
        sizes = list(dims.values())
        ref = MultiDRef(sizes, hidden, C) if name == "multid" else DMIBRef(sizes, hidden, 4, C)
        named = {}
        for key, lin in ref.pairs(list(dims)).items():
            named[f"{key}.w"], named[f"{key}.b"] = lin.weight.detach().T.numpy(), lin.bias.detach().numpy()
        refs.append(ref)
        rows.append(model.pack(named))
    x = {m: torch.randn(R, B, d, generator=gen) for m, d in dims.items()}
    y = torch.randint(0, C, (R, B), generator=gen)
    noise = {s.name: (torch.rand(R, B, s.width, generator=gen) > s.p).float() / (1 - s.p) for s in model.dropouts}
    flat = torch.as_tensor(np.stack(rows))
    grads = torch.zeros_like(flat)
    out = model.forward(model.bind(flat, grads), x, noise, y)
    per = losses.make_batched(losses.LossOptions(name=loss), counts, 1, "cpu")(out.logits, y, 1) + out.aux_loss
    per.sum().backward()
    ours = [model.unpack(g) for g in grads]
    evaluation = model.forward(model.bind(flat), x, None).logits
    for r, ref in enumerate(refs):
        masks = [noise[f"enc.{m}"][r] for m in dims]
        logits, total = ref([x[m][r] for m in dims], y[r], masks, fused_loss)
        total.backward()
        assert torch.allclose(out.logits[r], logits, atol=1e-5)
        assert float(per[r].detach()) == pytest.approx(float(total), rel=1e-5)
        atol = 1e-5 * (1 + float(total))
        for key, lin in ref.pairs(list(dims)).items():
            np.testing.assert_allclose(ours[r][f"{key}.w"], lin.weight.grad.T.numpy(), rtol=1e-4, atol=atol)
            np.testing.assert_allclose(ours[r][f"{key}.b"], lin.bias.grad.numpy(), rtol=1e-4, atol=atol)
        with torch.no_grad():
            plain, _ = ref([x[m][r] for m in dims], y[r], None, fused_loss)
        assert torch.allclose(evaluation[r], plain, atol=1e-5)


def test_bad_model_options_are_usage_errors():
    from stages.errors import UsageError

    spec = InputSpec({"a": (3,)})
    for name, options, key in [("multid", {"hidden": 0}, "hidden"), ("multid", {"dropout": 1.0}, "dropout"),
                               ("multid", {"gate": "maybe"}, "gate"), ("dmib", {"beta": -1.0}, "beta"),
                               ("dmib", {"bottleneck": -2}, "bottleneck"), ("dmib", {"init": "he"}, "init"),
                               ("dmib", {"lambda": 1.0}, "lambda")]:
        with pytest.raises(UsageError, match=key):
            build(name, spec, 2, options)


# -- through the CLI -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ros6_template(tmp_path_factory):
    """The embedded ROSMAP through schedule (6 epochs; CLIMD and the linear pacing), once per module."""
    root = tmp_path_factory.mktemp("ros6")
    for args in (["encode"], ["score", "--probe-epochs", "20"], ["fit-dist"], ["schedule", "--epochs", "6"],
                 ["schedule", "--epochs", "6", "--pacing", "linear"]):
        run_cli(*args, "--run", "ros", cache_dir=root)
    return root


@pytest.fixture
def ros6(ros6_template, cache):
    shutil.copytree(ros6_template, cache)
    return cache / "ros"


def _weights(path):
    return tensorio.load(path / "model", as_numpy=True)[0]


@pytest.mark.parametrize("name", ["multid", "dmib"])
def test_a_replica_alone_equals_the_same_replica_in_a_batch(cli, ros6, name):
    common = ["train", "--run", "ros", "--model", name, "--model-option", "hidden=8", "--curriculum", "none",
              "--epochs", "2", "--batch-size", "17", "--json"]   # 2 x 15 steps; 17 and 7 rows leave SIMD tails
    batch = json.loads(cli(*common, "--seeds", "0-3", "--variant", "batch").stdout)
    assert {r["summary"]["replicas_in_program"] for r in batch} == {4}
    alone = json.loads(cli(*common, "--seed", "2", "--variant", "alone").stdout)
    assert alone[0]["summary"]["replicas_in_program"] == 1
    a, b = _weights(ros6 / "train" / "alone" / "seed2"), _weights(ros6 / "train" / "batch" / "seed2")
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)                 # bit-identical on this CPU
    other = _weights(ros6 / "train" / "batch" / "seed1")
    assert max(float(np.abs(a[k] - other[k]).max()) for k in a) > 1e-2


AUX = {"multid": {"gate": 1.0, "confidence_mse": 1.0, "view_ce": 1.0},
       "dmib": {"observed_ce": 1.0, "kl": 500.0, "view_ce": 1000.0}}


@pytest.mark.parametrize("name", ["multid", "dmib"])
def test_curricula_losses_and_the_authors_recipe_through_the_cli(cli, ros6, name):
    common = ["train", "--run", "ros", "--model", name, "--model-option", "hidden=8", "--json"]
    runs = {"none": ["--curriculum", "none", "--epochs", "3"], "climd": ["--curriculum", "climd"],
            "linear": ["--curriculum", "linear"], "wce": ["--curriculum", "none", "--epochs", "3", "--loss", "wce"],
            "ldam": ["--curriculum", "climd", "--loss", "ldam-drw"],
            "recipe": ["--curriculum", "none", "--epochs", "3", "--batch-size", "full", "--lr", "1e-4",
                       "--weight-decay", "1e-4", "--lr-step", "500", "--lr-gamma", "0.2"]}
    variants = {}
    for key, extra in runs.items():
        r = cli(*common, *extra)
        assert r.exit_code == 0, r.output
        variants[key] = json.loads(r.stdout)[0]["variant"]
    assert variants["climd"] == f"{name}-climd+hidden8" and variants["ldam"] == f"{name}-climd+ldam-drw+hidden8"
    assert variants["recipe"] == f"{name}-baseline+lr0.0001+wd0.0001+fullbatch+lrstep500x0.2+hidden8"
    for key, variant in variants.items():
        h = pd.read_csv(ros6 / "train" / variant / "seed0" / "history.csv")
        parts = [f"aux_{k}" for k in AUX[name]]
        assert set(parts) <= set(h.columns) and h[parts].notna().all().all()
        # loss = prediction-head loss (>= 0, a few nats at most) + the weighted aux parts
        head = h["loss"] - sum(w * h[f"aux_{k}"] for k, w in AUX[name].items())
        assert (head > -1e-3 * h["loss"].abs()).all() and (head < 5).all(), (key, head.tolist())
    h = pd.read_csv(ros6 / "train" / variants["recipe"] / "seed0" / "history.csv")
    assert (h["steps"] == 1).all() and (h["samples_seen"] == 245).all()
    h = pd.read_csv(ros6 / "train" / variants["linear"] / "seed0" / "history.csv")
    assert h["subset_size"].is_monotonic_increasing and h["subset_size"].iloc[0] < 245
    r = cli("evaluate", "--run", "ros", "--json")
    assert r.exit_code == 0, r.output
    for variant in variants.values():
        metrics = json.loads((ros6 / "eval-test" / variant / "seed0" / "metrics.json").read_text())
        assert 0 <= metrics["accuracy"] <= 1
