"""Multi-D (Han et al., "Multimodal Dynamics: Dynamical Fusion for Trustworthy Multimodal
Classification", CVPR 2022) as a batched plug-in, written from the description of the authors' code
(TencentAILabHealthcare/mmdynamics, ``model.py`` class ``MMDynamic``).

Per modality v (x_v [B, d_v]):

* feature gate  g_v = sigmoid(x_v W_g + b_g)   (Linear d_v -> d_v),  x'_v = x_v * g_v;
* encoder       h_v = Dropout(ReLU(x'_v W_e + b_e))   (Linear d_v -> H);
* classifier    z_v = h_v W_c + b_c   (Linear H -> C),  confidence  c_v = h_v W_t + b_t   (Linear H -> 1,
  no squashing: the authors' confidence is the raw linear output);
* h_v * c_v, concatenated over modalities, into the fused classifier Linear(M*H -> C).

Loss (per replica, over its batch of B samples; the authors' weights are all 1):

    L = loss(fused) + sum_v [ gate_weight * mean_{b,j} g_v[b,j]
                              + confidence_weight * mean_b (c_v[b] - softmax(z_v[b])_{y_b})^2
                              + view_weight * mean_b CE(z_v[b], y_b) ]

``loss(fused)`` is the engine's loss (``--loss``: CE or an imbalance loss); the bracket is
``aux_loss``. As in the authors' code the confidence target softmax(z_v)_y is *not* detached (the
MSE also trains the view classifier), the gate and confidence act in evaluation too, and weights are
initialised Xavier-normal with zero biases (``init=torch`` gives torch.nn.Linear's rule instead).
Ablations: ``gate=false`` (no gate, no sparsity term), ``confidence=false`` (no confidence head, no
scaling, no MSE), ``detach_target=true`` (the MSE trains only the confidence head).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from stages.errors import UsageError
from stages.models.base import InputSpec
from stages.models.batched import BatchedModel, BatchedOutput, drop, flat_input, linear

INITS = ("authors", "torch")


def check_options(name: str, values: dict, positive=(), whole=(), nonneg=(), fraction=(), flags=(),
                  inits=()) -> None:
    """UsageError naming the first option out of range (``--model-option KEY=VALUE``)."""
    def bad(key, want):
        raise UsageError(f"--model-option {key}={values[key]!r} for --model {name}: expected {want}",
                         fix=f"e.g. --model-option {key}={_example(want)}")
    for key in positive:
        if isinstance(values[key], bool) or not isinstance(values[key], int) or values[key] < 1:
            bad(key, "an integer >= 1")
    for key in whole:
        if isinstance(values[key], bool) or not isinstance(values[key], int) or values[key] < 0:
            bad(key, "an integer >= 0")
    for key in nonneg:
        v = values[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            bad(key, "a number >= 0")
    for key in fraction:
        v = values[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1:
            bad(key, "a number in [0, 1)")
    for key in flags:
        if values[key] not in (True, False):       # 0/1 parse as ints; True == 1 and False == 0
            bad(key, "true or false")
    for key in inits:
        if values[key] not in INITS:
            bad(key, " or ".join(INITS))


def _example(want: str) -> str:
    return {"an integer >= 1": "64", "an integer >= 0": "0", "a number >= 0": "1", "a number in [0, 1)": "0.5",
            "true or false": "false"}.get(want, INITS[0])


def authors_initial(model: BatchedModel, gen: np.random.Generator, xavier: set[str]) -> np.ndarray:
    """One replica's parameters ``[P]``: the linear layers named in ``xavier`` Xavier-normal
    (std sqrt(2 / (fan_in + fan_out))) with zero biases, as the authors' ``LinearLayer``; the others
    like torch.nn.Linear (uniform +-1/sqrt(fan_in)). Drawn in declaration order from ``gen``."""
    parts = []
    for name, shape in model.shapes.items():
        layer, kind = name.rsplit(".", 1)
        size = math.prod(shape)
        if layer in xavier and kind == "b":
            parts.append(np.zeros(size, dtype=np.float32))
        elif layer in xavier:
            std = math.sqrt(2.0 / (shape[0] + shape[1]))
            parts.append(gen.normal(0.0, std, size=size).astype(np.float32))
        else:
            bound = 1.0 / math.sqrt(model._fan_in[name])
            parts.append(gen.uniform(-bound, bound, size=size).astype(np.float32))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


def nll(logits, y):
    """[R, B]: -log softmax(logits)_y per sample."""
    return -torch.log_softmax(logits, dim=-1).gather(-1, y[..., None]).squeeze(-1)


class LanewiseSigmoid(torch.autograd.Function):
    """torch.sigmoid, computed element by element by the same (scalar) code whatever the tensor's size.

    torch's vectorised kernels run a SIMD exp on most elements and a scalar exp on the tail of the
    tensor (and of each thread's chunk); the two differ in the last bit, and which elements fall in a
    tail depends on the number of replicas. Writing into a strided output makes torch take its scalar
    loop for every element, so a replica's gate has the same bits alone and in a batch."""

    @staticmethod
    def forward(ctx, a):
        y = a.new_empty(*a.shape, 2)[..., 0]        # stride 2: no vectorised loop for this output
        torch.sigmoid(a, out=y)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad * (1 - y) * y                  # exact arithmetic: the same bits in any loop


class MultiD(BatchedModel):
    defaults = {"hidden": 1000, "dropout": 0.5, "gate_weight": 1.0, "confidence_weight": 1.0,
                "view_weight": 1.0, "gate": True, "confidence": True, "detach_target": False,
                "init": "authors"}
    #: the authors' training (engine does not read it; see docs/models.md): full batch, Adam
    #: lr 1e-4, weight decay 1e-4, StepLR(500, 0.2); 2500 epochs on BRCA, 1000 on ROSMAP
    recipe = {"batch_size": 0, "lr": 1e-4, "weight_decay": 1e-4, "lr_step": 500, "lr_gamma": 0.2,
              "epochs": {"brca": 2500, "rosmap": 1000}}

    def __init__(self, spec: InputSpec, n_classes: int, hidden: int = 1000, dropout: float = 0.5,
                 gate_weight: float = 1.0, confidence_weight: float = 1.0, view_weight: float = 1.0,
                 gate: bool = True, confidence: bool = True, detach_target: bool = False,
                 init: str = "authors"):
        super().__init__(spec, n_classes)
        check_options("multid", locals(), positive=("hidden",), fraction=("dropout",),
                      nonneg=("gate_weight", "confidence_weight", "view_weight"),
                      flags=("gate", "confidence", "detach_target"), inits=("init",))
        self.names, self.hidden = spec.modalities(), int(hidden)
        self.weights = {"gate": float(gate_weight), "confidence_mse": float(confidence_weight),
                        "view_ce": float(view_weight)}
        self.use_gate, self.use_confidence = bool(gate), bool(confidence)
        self.detach_target, self.init = bool(detach_target), init
        for m in self.names:
            d = math.prod(spec.shapes[m])
            if self.use_gate:
                self.add_linear(f"gate.{m}", d, d)
            self.add_linear(f"enc.{m}", d, self.hidden)
            self.add_linear(f"view.{m}", self.hidden, n_classes)
            if self.use_confidence:
                self.add_linear(f"conf.{m}", self.hidden, 1)
        self.add_linear("fuse", self.hidden * len(self.names), n_classes)
        for m in self.names:
            self.add_dropout(f"enc.{m}", self.hidden, dropout)

    def initial(self, gen: np.random.Generator) -> np.ndarray:
        if self.init == "torch":
            return super().initial(gen)
        return authors_initial(self, gen, {name.rsplit(".", 1)[0] for name in self.shapes})

    def forward(self, params: dict, x: dict, noise: dict | None, y=None) -> BatchedOutput:
        fused_in, parts = [], {k: 0 for k in self.weights}
        for m in self.names:
            xm = flat_input(x[m])
            if self.use_gate:
                g = LanewiseSigmoid.apply(linear(params, f"gate.{m}", xm))
                xm = xm * g
            h = drop(torch.relu(linear(params, f"enc.{m}", xm)), noise, f"enc.{m}")
            z, c = self._heads(params, m, h)                     # [R, B, C], [R, B, 1]
            fused_in.append(h * c if self.use_confidence else h)
            if y is None:
                continue
            ce = nll(z, y)                                              # [R, B]
            parts["view_ce"] = parts["view_ce"] + ce.mean(-1)
            if self.use_gate:
                parts["gate"] = parts["gate"] + g.mean(dim=(1, 2))
            if self.use_confidence:
                p_true = torch.softmax(z, -1).gather(-1, y[..., None]).squeeze(-1)   # not detached (authors)
                if self.detach_target:
                    p_true = p_true.detach()
                parts["confidence_mse"] = parts["confidence_mse"] + (c.squeeze(-1) - p_true).pow(2).mean(-1)
        logits = linear(params, "fuse", torch.cat(fused_in, 2))
        if y is None:
            return BatchedOutput(logits)
        parts = {k: v for k, v in parts.items() if torch.is_tensor(v)}
        aux_loss = sum(self.weights[k] * v for k, v in parts.items())
        return BatchedOutput(logits, aux_loss, parts)

    def _heads(self, params: dict, m: str, h):
        """The view classifier and the confidence head as one product (Linear H -> C+1, split): a
        lone [H, 1] product takes another BLAS path for one replica than for several, and would
        break "a replica alone equals the same replica in a batch" in the last bits."""
        if not self.use_confidence:
            return linear(params, f"view.{m}", h), None
        w = torch.cat([params[f"view.{m}.w"], params[f"conf.{m}.w"]], 2)
        b = torch.cat([params[f"view.{m}.b"], params[f"conf.{m}.b"]], 1)
        out = torch.baddbmm(b.unsqueeze(1), h, w)
        return out[..., :-1], out[..., -1:]

