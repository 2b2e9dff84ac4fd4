"""Our Adam implementations against torch.optim.Adam (the arithmetic every replica relies on)."""
import numpy as np
import pytest
import torch

from stages.engine.optim import FlatAdam, ListAdam


@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_flat_adam_with_per_replica_learning_rates_equals_torch_adam(weight_decay):
    gen = torch.Generator().manual_seed(0)
    lrs = [1e-3, 1e-3, 5e-5]
    start = torch.randn(3, 70, generator=gen)
    grads_seq = [torch.randn(3, 70, generator=gen) for _ in range(6)]
    flat, grads = start.clone(), torch.zeros(3, 70)
    ours = FlatAdam(flat, grads, lrs, [weight_decay] * 3)
    assert [(b.start, b.stop) for b in ours.blocks] == [(0, 2), (2, 3)]
    for g in grads_seq:
        grads.copy_(g)
        ours.step()
    for r, lr in enumerate(lrs):
        p = torch.nn.Parameter(start[r].clone())
        ref = torch.optim.Adam([p], lr=lr, weight_decay=weight_decay, foreach=False)
        for g in grads_seq:
            p.grad = g[r].clone()
            ref.step()
        torch.testing.assert_close(flat[r], p.detach(), rtol=0, atol=1e-6)


def test_reference_path_equals_the_fused_kernel():
    gen = torch.Generator().manual_seed(1)
    start, steps = torch.randn(2, 33, generator=gen), [torch.randn(2, 33, generator=gen) for _ in range(4)]
    a = FlatAdam(start.clone(), torch.zeros(2, 33), [1e-3, 2e-3], [0.0, 0.1])
    b = FlatAdam(start.clone(), torch.zeros(2, 33), [1e-3, 2e-3], [0.0, 0.1])
    b._fused = False
    for g in steps:
        a.grads.copy_(g)
        b.grads.copy_(g)
        a.step()
        b.step()
    torch.testing.assert_close(a.params, b.params, rtol=0, atol=1e-6)


def test_list_adam_equals_torch_adam():
    gen = torch.Generator().manual_seed(2)
    w = [torch.randn(4, 3, generator=gen), torch.randn(3, generator=gen)]
    ours = [torch.nn.Parameter(t.clone()) for t in w]
    ref = [torch.nn.Parameter(t.clone()) for t in w]
    opt_a, opt_b = ListAdam(ours, lr=1e-2, weight_decay=1e-3), torch.optim.Adam(ref, lr=1e-2, weight_decay=1e-3)
    x = torch.randn(8, 4, generator=gen)
    for _ in range(5):
        for params, opt in ((ours, opt_a), (ref, opt_b)):
            opt.zero_grad()
            ((x @ params[0] + params[1]) ** 2).sum().backward()
            opt.step()
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=0, atol=1e-6)
    assert np.isfinite(ours[0].detach().numpy()).all()


def test_the_fused_kernel_is_used_only_when_a_probe_shows_it_works(monkeypatch):
    """``torch._fused_adam_`` is private: a build without it, or whose kernel fails or answers wrongly
    for a device, makes both optimisers take the written-out path (same result as torch.optim.Adam)."""
    from stages.engine import optim

    assert optim.fused_available("cpu") is True            # this torch has a working CPU kernel

    def broken(*args, **kwargs):
        raise NotImplementedError("no kernel for this device")

    monkeypatch.setattr(optim, "_FUSED", {})
    monkeypatch.setattr(torch, "_fused_adam_", broken)
    assert optim.fused_available("cpu") is False
    flat = FlatAdam(torch.ones(1, 3), torch.full((1, 3), 0.5), [0.1], [0.0])
    assert flat._fused is False
    flat.step()                                              # the reference path: first step = lr * sign(g)
    torch.testing.assert_close(flat.params, torch.full((1, 3), 0.9), rtol=0, atol=1e-6)
    p = torch.nn.Parameter(torch.ones(3))
    opt = ListAdam([p], lr=0.1)
    p.grad = torch.full((3,), 0.5)
    opt.step()
    torch.testing.assert_close(p.detach(), torch.full((3,), 0.9), rtol=0, atol=1e-6)

    monkeypatch.setattr(optim, "_FUSED", {})
    monkeypatch.setattr(torch, "_fused_adam_", lambda *a, **k: None)      # "succeeds" without updating
    assert optim.fused_available("cpu") is False
