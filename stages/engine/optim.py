"""Adam for many replicas at once: parameters, gradients and moments are ``[R, P]`` buffers (one
row per replica), and every replica has its own learning rate and weight decay.

Replicas that share (lr, weight decay) are updated by one call of torch's fused Adam kernel on a
contiguous block of rows. The arithmetic is torch's Adam (Kingma & Ba 2015, L2 weight decay added to
the gradient, bias-corrected moments, no AMSGrad), the same as ``torch.optim.Adam(..., fused=True)``
(tested), without importing ``torch.optim``: its first ``step()`` pulls in ``torch._dynamo``, which
costs a second of start-up.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

BETAS = (0.9, 0.999)
EPS = 1e-8


_FUSED: dict = {}


def fused_available(device) -> bool:
    """Whether torch's private fused Adam kernel works here, probed once per device type by one tiny
    update checked against the written-out arithmetic (``torch._fused_adam_`` is not public API: a
    build may lack it, lack a kernel for this device, e.g. CPU before torch 2.4, or change its
    signature). Without it every step takes the reference path, with the same arithmetic."""
    import torch

    kind = torch.device(device).type
    if kind not in _FUSED:
        try:
            p, g = torch.tensor([1.0], device=device), torch.tensor([0.5], device=device)
            m, v, n = torch.zeros(1, device=device), torch.zeros(1, device=device), torch.ones((), device=device)
            torch._fused_adam_([p], [g], [m], [v], [], [n], lr=0.1, beta1=BETAS[0], beta2=BETAS[1],
                               weight_decay=0.0, eps=EPS, amsgrad=False, maximize=False)
            # first step of Adam moves by lr * g/|g| (up to eps): 1 - 0.1
            _FUSED[kind] = abs(float(p) - 0.9) < 1e-5
        except (AttributeError, RuntimeError, NotImplementedError, TypeError):
            _FUSED[kind] = False
    return _FUSED[kind]


@dataclass
class Block:
    start: int
    stop: int
    lr: float
    weight_decay: float


def blocks(lrs: list[float], weight_decays: list[float]) -> list[Block]:
    """Maximal runs of consecutive replicas with equal (lr, weight decay)."""
    out: list[Block] = []
    for r, (lr, wd) in enumerate(zip(lrs, weight_decays)):
        if out and out[-1].lr == lr and out[-1].weight_decay == wd and out[-1].stop == r:
            out[-1].stop = r + 1
        else:
            out.append(Block(r, r + 1, float(lr), float(wd)))
    return out


class FlatAdam:
    """Adam over ``params`` ``[R, P]`` with gradients in ``grads`` (same shape, filled by the caller).

    ``step()`` applies one update to every replica; ``lr_scale`` (per replica, e.g. a step
    learning-rate schedule) multiplies each replica's base learning rate for this step.
    """

    def __init__(self, params, grads, lrs: list[float], weight_decays: list[float], steps: int = 0):
        import torch

        self.params, self.grads = params, grads
        self.exp_avg = torch.zeros_like(params)
        self.exp_avg_sq = torch.zeros_like(params)
        self.lrs, self.weight_decays = list(lrs), list(weight_decays)
        self.blocks = blocks(self.lrs, self.weight_decays)
        self.step_count = steps
        self._fused = fused_available(params.device)
        self._steps = [torch.full((), float(steps), dtype=torch.float32, device=params.device) for _ in self.blocks]

    def set_steps(self, steps: int) -> None:
        self.step_count = steps
        for t in self._steps:
            t.fill_(float(steps))

    def step(self, lr_scale: list[float] | None = None) -> None:
        import torch

        self.step_count += 1
        for block, steps in zip(self.blocks, self._steps):
            rows = slice(block.start, block.stop)
            lr = block.lr * (lr_scale[block.start] if lr_scale is not None else 1.0)
            steps.add_(1.0)
            if self._fused:
                torch._fused_adam_([self.params[rows]], [self.grads[rows]], [self.exp_avg[rows]],
                                   [self.exp_avg_sq[rows]], [], [steps], lr=lr, beta1=BETAS[0], beta2=BETAS[1],
                                   weight_decay=block.weight_decay, eps=EPS, amsgrad=False, maximize=False)
            else:
                self._reference_step(rows, lr, block.weight_decay)

    def _reference_step(self, rows, lr: float, weight_decay: float) -> None:
        """Torch's Adam, written out (for torch builds without the fused kernel)."""
        p, g = self.params[rows], self.grads[rows]
        m, v = self.exp_avg[rows], self.exp_avg_sq[rows]
        if weight_decay:
            g = g.add(p, alpha=weight_decay)
        m.lerp_(g, 1 - BETAS[0])
        v.mul_(BETAS[1]).addcmul_(g, g, value=1 - BETAS[1])
        bc1 = 1 - BETAS[0] ** self.step_count
        bc2 = 1 - BETAS[1] ** self.step_count
        denom = (v.sqrt() / math.sqrt(bc2)).add_(EPS)
        p.addcdiv_(m, denom, value=-lr / bc1)


class ListAdam:
    """Adam over a list of parameter tensors (their ``.grad`` filled by autograd), one fused kernel
    call per step: torch.optim.Adam's arithmetic without importing torch.optim (see module doc)."""

    def __init__(self, params: list, lr: float, weight_decay: float = 0.0):
        import torch

        self.params, self.lr, self.weight_decay = list(params), float(lr), float(weight_decay)
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        import torch

        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        torch._foreach_add_(self.steps, 1.0)
        with torch.no_grad():
            if self.params and fused_available(self.params[0].device):
                torch._fused_adam_(self.params, grads, self.exp_avg, self.exp_avg_sq, [], self.steps, lr=self.lr,
                                   beta1=BETAS[0], beta2=BETAS[1], weight_decay=self.weight_decay, eps=EPS,
                                   amsgrad=False, maximize=False)
                return
            for p, g, m, v, s in zip(self.params, grads, self.exp_avg, self.exp_avg_sq, self.steps):
                g = g.add(p, alpha=self.weight_decay) if self.weight_decay else g
                m.lerp_(g, 1 - BETAS[0])
                v.mul_(BETAS[1]).addcmul_(g, g, value=1 - BETAS[1])
                n = float(s)
                p.addcdiv_(m, (v.sqrt() / math.sqrt(1 - BETAS[1] ** n)).add_(EPS), value=-self.lr / (1 - BETAS[0] ** n))
