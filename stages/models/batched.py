"""Models whose parameters carry a leading *replica* axis, so R replicas (seeds, learning rates,
curricula) train as one vectorised program.

A :class:`BatchedModel` declares its per-replica parameter shapes and dropout sites; the engine keeps
every replica's parameters as one row of a ``[R, P]`` buffer and hands the model ``[R, ...]`` views
of it. Inputs are ``[R, B, ...]`` (each replica its own batch), dropout masks come from each
replica's own random stream, so a replica computes exactly what it would compute alone: the batched
matrix products work slice by slice (``torch.bmm``), and nothing mixes replicas.

Weights of a linear layer are stored ``[in, out]`` (``y = x @ W + b``) and initialised like
``torch.nn.Linear``: W and b uniform in +-1/sqrt(in), drawn from the replica's ``init`` stream.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from stages.models.base import InputSpec


@dataclass
class BatchedOutput:
    logits: object                              # [R, B, C]
    aux_loss: object | None = None              # [R], added to the classification loss
    aux: dict = field(default_factory=dict)     # name -> [R], parts of aux_loss for the history


@dataclass
class Dropout:
    name: str
    width: int
    p: float


class BatchedModel:
    """Base class: subclasses fill ``self.shapes`` (name -> per-replica shape, in order),
    ``self.dropouts`` and implement :meth:`forward`."""

    vectorised = True
    needs_stages = False
    batching = "shuffle"
    manual_backward = False
    #: in training, the engine gives each input an extra last column of ones (so a layer's bias can
    #: ride inside its matrix product as the last row of [W; b])
    ones_column = False
    defaults: dict = {}
    #: training recipe defaults a model may carry (e.g. Multi-D's full-batch, step-lr recipe)
    recipe: dict = {}

    def __init__(self, spec: InputSpec, n_classes: int):
        self.spec, self.n_classes = spec, n_classes
        self.shapes: dict[str, tuple] = {}
        self.dropouts: list[Dropout] = []
        self._fan_in: dict[str, int] = {}

    @classmethod
    def from_options(cls, spec: InputSpec, n_classes: int, options: dict) -> "BatchedModel":
        from stages.errors import UsageError

        unknown = set(options) - set(cls.defaults)
        if unknown:
            raise UsageError(f"unknown model option(s) {sorted(unknown)} for {cls.__name__}",
                             fix=f"known: {', '.join(f'{k}={v}' for k, v in cls.defaults.items())}")
        return cls(spec, n_classes, **{**cls.defaults, **options})

    # -- declaration helpers ------------------------------------------------------------------------
    def add_linear(self, name: str, n_in: int, n_out: int) -> None:
        self.shapes[f"{name}.w"] = (n_in, n_out)
        self.shapes[f"{name}.b"] = (n_out,)
        self._fan_in[f"{name}.w"] = self._fan_in[f"{name}.b"] = n_in

    def add_dropout(self, name: str, width: int, p: float) -> None:
        if p > 0:
            self.dropouts.append(Dropout(name, width, float(p)))

    def inputs_used(self) -> list[str]:
        return self.spec.modalities()

    # -- parameters ---------------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return sum(math.prod(s) for s in self.shapes.values())

    def offsets(self) -> dict[str, tuple[int, int]]:
        out, start = {}, 0
        for name, shape in self.shapes.items():
            out[name] = (start, start + math.prod(shape))
            start += math.prod(shape)
        return out

    def views(self, flat) -> dict:
        """``{name: [R, *shape]}`` views into a ``[R, P]`` buffer (no copies)."""
        R = flat.shape[0]
        return {name: flat[:, a:b].view(R, *self.shapes[name]) for name, (a, b) in self.offsets().items()}

    def augmented(self, flat, name: str):
        """``[W; b]`` of linear layer ``name`` as one ``[R, in + 1, out]`` view (W then b are adjacent)."""
        offsets = self.offsets()
        start, stop = offsets[f"{name}.w"][0], offsets[f"{name}.b"][1]
        n_in, n_out = self.shapes[f"{name}.w"]
        assert offsets[f"{name}.w"][1] == offsets[f"{name}.b"][0]
        return flat[:, start:stop].view(flat.shape[0], n_in + 1, n_out)

    def initial(self, gen: np.random.Generator) -> np.ndarray:
        """One replica's initial parameters ``[P]`` from its ``init`` stream (torch.nn.Linear's rule)."""
        parts = []
        for name, shape in self.shapes.items():
            bound = 1.0 / math.sqrt(self._fan_in.get(name, 1))
            parts.append(gen.uniform(-bound, bound, size=math.prod(shape)).astype(np.float32))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)

    def unpack(self, row) -> dict:
        """One replica's parameters by name (for the model file), from a ``[P]`` row."""
        return {name: row[a:b].reshape(self.shapes[name]) for name, (a, b) in self.offsets().items()}

    def pack(self, named: dict) -> np.ndarray:
        """The inverse of :meth:`unpack`: a ``[P]`` row from named arrays (shapes checked)."""
        parts = []
        for name, shape in self.shapes.items():
            value = np.asarray(named[name], dtype=np.float32)
            if tuple(value.shape) != tuple(shape):
                raise ValueError(f"parameter {name}: shape {tuple(value.shape)}, expected {tuple(shape)}")
            parts.append(value.reshape(-1))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)

    # -- what the engine and evaluation call ------------------------------------------------------------
    def bind(self, flat, grads=None) -> dict:
        """Parameter views of ``flat`` [R, P] for :meth:`forward`. With ``grads``, gradients land in
        its views: written by :meth:`backward` (hand-written models) or accumulated in place by
        autograd (leaf views whose ``.grad`` is preset to the gradient buffer's views)."""
        self.grad_views = self.views(grads) if grads is not None else None
        views = self.views(flat)
        if self.manual_backward or grads is None:
            return views
        import warnings

        # autograd notes that a preset .grad view does not follow the parameter's strides; the
        # gradient is still accumulated in place, into the [R, P] buffer (tested)
        warnings.filterwarnings("ignore", message=".*grad and param do not obey the gradient layout contract.*")
        leaves = {}
        for name, view in views.items():
            leaf = view.detach().requires_grad_(True)
            leaf.grad = self.grad_views[name]
            leaves[name] = leaf
        return leaves

    def row(self, params: dict, r: int) -> dict:
        """Replica ``r``'s parameters alone (a batch of one)."""
        return {k: v[r:r + 1] for k, v in params.items()}

    def train_mode(self, on: bool) -> None:
        """Batched models have no mode: dropout is on exactly when masks are given."""

    def lr_scale(self, epoch: int, opts: list) -> list[float] | None:
        """Per-replica learning-rate multipliers of this epoch (a step schedule, ``--lr-step``)."""
        if not any(getattr(o, "lr_step", 0) for o in opts):
            return None
        return [o.lr_gamma ** ((epoch - 1) // o.lr_step) if o.lr_step else 1.0 for o in opts]

    def named_weights(self, row) -> dict:
        """What the model file stores for one replica ``[P]``: parameters by name."""
        return self.unpack(row)

    def load_named(self, named: dict, device: str = "cpu"):
        """``[1, P]`` parameters from a model file's tensors (KeyError/ValueError when they do not fit)."""
        import torch

        row = self.pack({k: np.asarray(v.cpu() if hasattr(v, "cpu") else v) for k, v in named.items()})
        return torch.as_tensor(row, device=device).unsqueeze(0)

    def seed_extra(self, rngs: list) -> None:
        """Seed random state the engine does not own (non-vectorised plug-ins)."""

    def get_extra_state(self, r: int, tensors: dict, state: dict) -> None:
        """Add such state to replica ``r``'s checkpoint."""

    def set_extra_state(self, r: int, tensors: dict, state: dict) -> None:
        """Restore it from a checkpoint."""

    # -- computation ----------------------------------------------------------------------------------
    def forward(self, params: dict, x: dict, noise: dict | None, y=None) -> BatchedOutput:
        """``params`` [R, ...] views, ``x`` [R, B, ...] inputs, ``noise`` {dropout name: [R, B, width]}
        scaled keep-masks (None in evaluation), ``y`` [R, B] labels (training only)."""
        raise NotImplementedError


def linear(params: dict, name: str, x):
    """x [R, B, in] @ W [R, in, out] + b [R, out]."""
    import torch

    return torch.baddbmm(params[f"{name}.b"].unsqueeze(1), x, params[f"{name}.w"])


def drop(h, noise: dict | None, name: str):
    """Inverted dropout with the engine's precomputed, already scaled keep-mask (identity in evaluation)."""
    if noise is None or name not in noise:
        return h
    return h * noise[name]


def flat_input(x):
    """[R, B, ...] -> [R, B, features]."""
    return x.reshape(x.shape[0], x.shape[1], -1) if x.dim() > 3 else x
