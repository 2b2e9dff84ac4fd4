"""Training losses for imbalanced classes, each written from its paper.

The engine trains R replicas at once: logits are [R, B, C] (replica, batch, class), labels [R, B],
and every replica has its own training class counts n_{r,c} (of the whole training split, not of a
curriculum epoch). ``make_batched`` returns ``loss(logits, y, epoch) -> [R]``: each replica's loss
over its own batch, so replicas never mix. With ℓ_i = −log softmax(z_i)_{y_i}:

* ``ce``: mean ℓ_i.
* ``wce``: class-weighted CE, w_c = N / (C n_c), normalised as ``F.cross_entropy(weight=w)``:
  Σ w_{y_i} ℓ_i / Σ w_{y_i}.
* ``focal`` (Lin et al. 2017): mean −(1 − p_t)^γ log p_t, no α.
* ``logit-adjusted`` (Menon et al., ICLR 2021): CE on z + τ log π, π_c = n_c / N.
* ``balanced-softmax`` (Ren et al., NeurIPS 2020): CE on z + log n_c. Since log n_c = log π_c + log N
  and softmax ignores a constant added to every logit, this *is* the logit-adjusted loss at τ = 1.
* ``ldam-drw`` (Cao et al., NeurIPS 2019): margins Δ_c ∝ n_c^(−1/4), scaled so max Δ = max margin,
  subtracted from the true-class logit; CE on s·(z − Δ_y e_y). Deferred re-weighting: from epoch
  ⌈drw_start · T⌉ + 1 (1-based) on, the CE is the weighted mean with class-balanced weights
  (1 − β)/(1 − β^{n_c}) normalised to sum to C; before it, the plain mean (the authors' β = 0).
* ``cb`` (Cui et al., CVPR 2019): class-balanced softmax CE with the same effective-number weights
  (``cb_beta``), loss = (1/B) Σ w_{y_i} ℓ_i: a mean over the batch, not divided by Σ w_{y_i}.

Only the loss uses these adjustments; predictions always use the plain logits z.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from stages.errors import DataError, UsageError, check_choices

LOSSES = ("ce", "wce", "focal", "logit-adjusted", "balanced-softmax", "ldam-drw", "cb")
LA_PRIORS = ("train", "epoch")

# option field -> (flag, the loss it belongs to)
_FLAGS = {"focal_gamma": ("--focal-gamma", "focal"), "la_tau": ("--la-tau", "logit-adjusted"),
          "la_prior": ("--la-prior", "logit-adjusted"),
          "ldam_max_margin": ("--ldam-max-margin", "ldam-drw"), "ldam_scale": ("--ldam-scale", "ldam-drw"),
          "drw_start": ("--drw-start", "ldam-drw"), "drw_beta": ("--drw-beta", "ldam-drw"),
          "cb_beta": ("--cb-beta", "cb")}


@dataclass(frozen=True)
class LossOptions:
    name: str = "ce"
    focal_gamma: float = 2.0
    la_tau: float = 1.0          # logit adjustment strength (Menon et al.)
    la_prior: str = "train"      # the prior pi: the training split's class mix, or each epoch's (a curriculum's) mix
    ldam_max_margin: float = 0.5 # largest margin (Cao et al.: C chosen so max margin = 0.5)
    ldam_scale: float = 1.0      # s: the authors use s=30 with a normalised (cosine) classifier; our heads are linear
    drw_start: float = 0.8       # DRW: re-weighting starts after this fraction of the epochs
    drw_beta: float = 0.9999     # DRW weights: class-balanced (effective number) weights with this beta
    cb_beta: float = 0.9999      # Cui et al.

    def check(self) -> None:
        """UsageError naming the flag: an unknown loss, a value out of range, or a parameter given
        (not at its default) for a loss that does not use it."""
        check_choices((self.name, LOSSES, "--loss"))
        ranges = {"focal_gamma": (lambda v: v >= 0, ">= 0"), "la_tau": (lambda v: v >= 0, ">= 0"),
                  "ldam_max_margin": (lambda v: v > 0, "> 0"), "ldam_scale": (lambda v: v > 0, "> 0"),
                  "drw_start": (lambda v: 0 <= v <= 1, "in [0, 1]"), "drw_beta": (lambda v: 0 <= v < 1, "in [0, 1)"),
                  "cb_beta": (lambda v: 0 <= v < 1, "in [0, 1)")}
        defaults = LossOptions()
        check_choices((self.la_prior, LA_PRIORS, "--la-prior"))
        if self.la_prior != defaults.la_prior and self.name != "logit-adjusted":
            raise UsageError(f"--la-prior applies only to --loss logit-adjusted, not --loss {self.name}",
                             fix="drop --la-prior or use --loss logit-adjusted")
        for field, (ok, text) in ranges.items():
            value, (flag, owner) = getattr(self, field), _FLAGS[field]
            if not (isinstance(value, (int, float)) and math.isfinite(value) and ok(value)):
                raise UsageError(f"{flag} must be a number {text}, got {value!r}")
            if value != getattr(defaults, field) and self.name != owner:
                raise UsageError(f"{flag} applies only to --loss {owner}, not --loss {self.name}",
                                 fix=f"drop {flag} or use --loss {owner}")

    def variant_suffix(self) -> str:
        """The loss part of a variant name: '' for ce; non-default parameters are appended."""
        d = LossOptions()
        base = {"ce": "", "wce": "wce", "focal": "focal", "logit-adjusted": "la", "balanced-softmax": "bsm",
                "ldam-drw": "ldam-drw", "cb": "cb"}[self.name]
        extra = {"focal": [("g", "focal_gamma")], "logit-adjusted": [("tau", "la_tau")],
                 "ldam-drw": [("m", "ldam_max_margin"), ("s", "ldam_scale"), ("drw", "drw_start"), ("b", "drw_beta")],
                 "cb": [("b", "cb_beta")]}.get(self.name, [])
        suffix = base + "".join(f"-{tag}{getattr(self, f):g}" for tag, f in extra if getattr(self, f) != getattr(d, f))
        return suffix + ("-epochprior" if self.la_prior == "epoch" else "")


def class_weights(counts: np.ndarray) -> np.ndarray:
    """w_c = N / (C n_c) ("balanced" weighting: every class contributes equally in expectation)."""
    counts = np.asarray(counts, dtype=np.float64)
    return counts.sum(axis=-1, keepdims=counts.ndim > 1) / (counts.shape[-1] * counts)


def effective_number_weights(counts: np.ndarray, beta: float) -> np.ndarray:
    """Cui et al.: w_c = (1 − β) / (1 − β^{n_c}), normalised to sum to C (per row for [R, C])."""
    counts = np.asarray(counts, dtype=np.float64)
    w = (1.0 - beta) / (1.0 - np.power(beta, counts))
    return w / w.sum(axis=-1, keepdims=True) * counts.shape[-1]


def ldam_margins(counts: np.ndarray, max_margin: float) -> np.ndarray:
    """Cao et al.: Δ_c = K / n_c^{1/4}, K chosen so the largest margin (smallest class) is max_margin."""
    inv = np.power(np.asarray(counts, dtype=np.float64), -0.25)
    return inv * (max_margin / inv.max(axis=-1, keepdims=True))


def drw_first_epoch(drw_start: float, total_epochs: int) -> int:
    """First 1-based epoch with re-weighting: ⌈drw_start · T⌉ + 1 (T = 200, 0.8 -> 161, the authors'
    0-based epoch 160). Rounded first, so 0.7 · 10 = 7.000000000000001 still gives 8."""
    return math.ceil(round(drw_start * total_epochs, 9)) + 1


def make_batched(opts: LossOptions, counts: np.ndarray, total_epochs: int, device: str):
    """counts: [R, C] training class counts per replica (the whole training split, not a curriculum epoch).
    Returns loss(logits [R,B,C], y [R,B], epoch: int 1-based) -> Tensor [R]: each replica's loss over its batch, differentiable."""
    import torch
    import torch.nn.functional as F

    opts.check()
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 2:
        raise ValueError(f"counts must be [R, C], got shape {counts.shape}")
    if (counts <= 0).any():
        r, c = map(int, np.argwhere(counts <= 0)[0])
        raise DataError(f"replica {r} has no training sample of class {c} (class counts {counts[r].astype(int).tolist()})",
                        fix=f"--loss {opts.name} needs every class in every training split")
    R = counts.shape[0]

    def const(array: np.ndarray):
        return torch.as_tensor(array, dtype=torch.float32, device=device)

    def nll(z, y):                                               # [R, B]: ℓ_i = −log softmax(z_i)_{y_i}
        return -F.log_softmax(z, dim=-1).gather(-1, y[..., None]).squeeze(-1)

    def weighted_mean(w, values, y):                             # Σ w_{y_i} ℓ_i / Σ w_{y_i}, per replica
        wy = w.gather(1, y)
        return (wy * values).sum(-1) / wy.sum(-1)

    name = opts.name
    if name == "wce":
        w = const(class_weights(counts))
    elif name == "cb":
        w = const(effective_number_weights(counts, opts.cb_beta))
    elif name in ("logit-adjusted", "balanced-softmax"):
        tau = opts.la_tau if name == "logit-adjusted" else 1.0
        log_prior = np.log(counts / counts.sum(axis=1, keepdims=True)) if name == "logit-adjusted" else np.log(counts)
        shift = const(tau * log_prior)[:, None, :]              # [R, 1, C]
        state = {"shift": shift}
    elif name == "ldam-drw":
        margins = const(ldam_margins(counts, opts.ldam_max_margin))
        w = const(effective_number_weights(counts, opts.drw_beta))
        first_drw = drw_first_epoch(opts.drw_start, total_epochs)

    def loss(logits, y, epoch: int):
        if logits.dim() != 3 or logits.shape[0] != R or tuple(y.shape) != tuple(logits.shape[:2]):
            raise ValueError(f"expected logits [R={R}, B, C] and y [R, B], got {tuple(logits.shape)} and {tuple(y.shape)}")
        if name == "ce":
            return nll(logits, y).mean(-1)
        if name == "wce":
            return weighted_mean(w, nll(logits, y), y)
        if name == "focal":
            logp_t = -nll(logits, y)
            return (-(1 - logp_t.exp()) ** opts.focal_gamma * logp_t).mean(-1)
        if name in ("logit-adjusted", "balanced-softmax"):
            return nll(logits + state["shift"], y).mean(-1)
        if name == "cb":
            return (w.gather(1, y) * nll(logits, y)).mean(-1)
        # ldam-drw
        delta_y = margins.gather(1, y)                           # [R, B]: Δ of each sample's class
        adjusted = logits - F.one_hot(y, logits.shape[-1]).to(logits.dtype) * delta_y[..., None]
        values = nll(opts.ldam_scale * adjusted, y)
        return weighted_mean(w, values, y) if epoch >= first_drw else values.mean(-1)

    if name == "logit-adjusted" and opts.la_prior == "epoch":
        def set_epoch_counts(epoch_counts: np.ndarray) -> None:
            """pi = this epoch's class mix [R, C]; a class absent from the epoch counts as half a
            sample (a finite log prior; it receives no sample that epoch anyway)."""
            mix = np.maximum(np.asarray(epoch_counts, dtype=np.float64), 0.5)
            state["shift"] = const(opts.la_tau * np.log(mix / mix.sum(axis=1, keepdims=True)))[:, None, :]

        loss.needs_epoch_counts = True
        loss.set_epoch_counts = set_epoch_counts
    return loss


def ce_value_and_grad(logits, y):
    """Plain cross-entropy without autograd: each replica's mean loss over its batch [R], and the
    gradient of their sum with respect to ``logits`` [R, B, C], (softmax - one_hot) / B. The engine
    uses it for hand-differentiated models trained with ``--loss ce`` (a third of a step's time
    otherwise goes to autograd bookkeeping); tested against autograd."""
    import torch

    B = logits.shape[1]
    index = y.unsqueeze(2)
    logp = torch.log_softmax(logits, dim=2)
    loss = logp.gather(2, index).squeeze(2).mean(1).neg_()
    grad = logp.exp_()
    grad.scatter_add_(2, index, torch.full(index.shape, -1.0, dtype=grad.dtype, device=grad.device))
    return loss, grad.div_(B)
