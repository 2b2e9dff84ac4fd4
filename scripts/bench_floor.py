"""Reference training loops for `make bench`: the same early-fusion network, initialisation rule,
dropout, batch size, epochs and Adam as `climd train --curriculum none`, written the way a user would
write them. Prints the loop's wall seconds (after the data is loaded) as JSON.

    python scripts/bench_floor.py torch FEATURES.h5     # nn.Module + torch.optim.Adam
    python scripts/bench_floor.py numpy FEATURES.h5     # forward, backward and Adam in numpy
"""
from __future__ import annotations

import json
import sys
import time

import h5py
import numpy as np

EPOCHS, BATCH, HIDDEN, P_DROP, LR = 100, 32, 64, 0.2, 5e-5


def load(path):
    with h5py.File(path, "r", locking=False) as h5:
        split = h5["split"].asstr()[...]
        train = np.flatnonzero(split == "train")
        xs = [h5["modalities"][m][...][train] for m in h5["modalities"]]
        y = h5["labels"][...][train].astype(np.int64)
    return xs, y, int(y.max()) + 1


def torch_loop(xs, y, C) -> float:
    import torch
    from torch import nn

    torch.set_num_threads(1)
    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.ModuleList(nn.Sequential(nn.Linear(x.shape[1], HIDDEN), nn.ReLU(), nn.Dropout(P_DROP)) for x in xs)
            self.cls = nn.Sequential(nn.Linear(HIDDEN * len(xs), HIDDEN), nn.ReLU(), nn.Dropout(P_DROP), nn.Linear(HIDDEN, C))

        def forward(self, parts):
            return self.cls(torch.cat([e(p) for e, p in zip(self.enc, parts)], 1))

    X = [torch.as_tensor(x) for x in xs]
    Y = torch.as_tensor(y)
    net, gen = Net(), torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    t0 = time.perf_counter()
    for _ in range(EPOCHS):
        for idx in torch.randperm(len(Y), generator=gen).split(BATCH):
            loss = nn.functional.cross_entropy(net([x[idx] for x in X]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return time.perf_counter() - t0


def numpy_loop(xs, y, C) -> float:
    rng = np.random.default_rng(0)
    dims = [x.shape[1] for x in xs] + [HIDDEN * len(xs), HIDDEN]
    outs = [HIDDEN] * len(xs) + [HIDDEN, C]
    W = [rng.uniform(-1, 1, (i, o)).astype(np.float32) / np.sqrt(i) for i, o in zip(dims, outs)]
    b = [np.zeros(o, np.float32) for o in outs]
    params = W + b
    m1 = [np.zeros_like(p) for p in params]
    m2 = [np.zeros_like(p) for p in params]
    step, M = 0, len(xs)
    t0 = time.perf_counter()
    for _ in range(EPOCHS):
        order = rng.permutation(len(y))
        for s in range(0, len(y), BATCH):
            idx = order[s:s + BATCH]
            B = len(idx)
            xb = [x[idx] for x in xs]
            keep = [(rng.random((B, HIDDEN), dtype=np.float32) >= P_DROP) / (1 - P_DROP) for _ in range(M + 1)]
            pre = [xb[k] @ W[k] + b[k] for k in range(M)]
            hid = [np.maximum(a, 0) * keep[k] for k, a in enumerate(pre)]
            cat = np.concatenate(hid, 1)
            a4 = cat @ W[M] + b[M]
            h4 = np.maximum(a4, 0) * keep[M]
            logits = h4 @ W[M + 1] + b[M + 1]
            p = np.exp(logits - logits.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            p[np.arange(B), y[idx]] -= 1
            d = p / B
            grads_w, grads_b = [None] * (M + 2), [None] * (M + 2)
            grads_w[M + 1], grads_b[M + 1] = h4.T @ d, d.sum(0)
            d4 = (d @ W[M + 1].T) * keep[M] * (a4 > 0)
            grads_w[M], grads_b[M] = cat.T @ d4, d4.sum(0)
            dc = d4 @ W[M].T
            for k in range(M):
                dk = dc[:, k * HIDDEN:(k + 1) * HIDDEN] * keep[k] * (pre[k] > 0)
                grads_w[k], grads_b[k] = xb[k].T @ dk, dk.sum(0)
            step += 1
            c1, c2 = 1 - 0.9 ** step, 1 - 0.999 ** step
            for p_, g, a, v in zip(params, grads_w + grads_b, m1, m2):
                a *= 0.9
                a += 0.1 * g
                v *= 0.999
                v += 0.001 * g * g
                p_ -= LR / c1 * a / (np.sqrt(v / c2) + 1e-8)
    return time.perf_counter() - t0


if __name__ == "__main__":
    kind, path = sys.argv[1], sys.argv[2]
    data = load(path)
    seconds = torch_loop(*data) if kind == "torch" else numpy_loop(*data)
    print(json.dumps({"loop_s": seconds}))
