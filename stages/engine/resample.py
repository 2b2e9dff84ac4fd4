"""Resampling baselines of the paper's Table 2, applied once to the training split.

Random undersampling and SMOTE come from imbalanced-learn. The VAE oversampler (a small VAE per
minority class, sampled until every class matches the majority) follows the same ``fit_resample``
contract. All work on the concatenation of every model input, flattened, and the result is split
back into the inputs, so any model can train on it.
"""
from __future__ import annotations

import numpy as np

from stages.errors import UsageError

RESAMPLERS = ("none", "undersample", "smote", "vae")


class VAEOverSampler:
    """Oversample each minority class with draws from a VAE fitted to that class alone."""

    def __init__(self, latent: int = 8, hidden: int = 64, epochs: int = 300, lr: float = 1e-3,
                 random_state: int = 0):
        self.latent, self.hidden, self.epochs, self.lr = latent, hidden, epochs, lr
        self.random_state = random_state

    def fit_resample(self, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        counts = np.bincount(y)
        target = counts.max()
        xs, ys = [X], [y]
        for c in np.flatnonzero(counts < target):
            torch.manual_seed(self.random_state + int(c))
            new = self._sample(X[y == c], int(target - counts[c]))
            xs.append(new)
            ys.append(np.full(len(new), c, dtype=y.dtype))
        self.n_generated_ = int(sum(len(a) for a in xs[1:]))
        return np.vstack(xs).astype(X.dtype), np.concatenate(ys)

    def _sample(self, X: np.ndarray, n: int) -> np.ndarray:
        import torch
        from torch import nn

        mu, sd = X.mean(0), X.std(0) + 1e-6           # the VAE works on per-class z-scores
        data = torch.as_tensor((X - mu) / sd, dtype=torch.float32)
        d = data.shape[1]
        enc = nn.Sequential(nn.Linear(d, self.hidden), nn.ReLU(), nn.Linear(self.hidden, 2 * self.latent))
        dec = nn.Sequential(nn.Linear(self.latent, self.hidden), nn.ReLU(), nn.Linear(self.hidden, d))
        optim = torch.optim.Adam(list(enc.parameters()) + list(dec.parameters()), lr=self.lr)
        for _ in range(self.epochs):
            m, logvar = enc(data).chunk(2, dim=1)
            z = m + torch.randn_like(m) * (0.5 * logvar).exp()
            recon = ((dec(z) - data) ** 2).sum(1).mean()
            kl = -0.5 * (1 + logvar - m ** 2 - logvar.exp()).sum(1).mean()
            optim.zero_grad()
            (recon + kl).backward()
            optim.step()
        with torch.no_grad():
            out = dec(torch.randn(n, self.latent)).numpy()
        return out * sd + mu


def make(name: str, seed: int):
    if name == "undersample":
        from imblearn.under_sampling import RandomUnderSampler
        return RandomUnderSampler(random_state=seed)
    if name == "smote":
        from imblearn.over_sampling import SMOTE
        return SMOTE(random_state=seed)
    if name == "vae":
        return VAEOverSampler(random_state=seed)
    raise UsageError(f"unknown --resample {name!r}", fix=f"choose from {', '.join(RESAMPLERS)}")


def resample(inputs: dict[str, np.ndarray], y: np.ndarray, name: str, seed: int) -> tuple[dict, np.ndarray]:
    """Resample the training rows of every input together; returns new inputs and labels."""
    if name == "none":
        return inputs, y
    names = list(inputs)
    shapes = {k: inputs[k].shape[1:] for k in names}
    sizes = [int(np.prod(shapes[k])) for k in names]
    flat = np.hstack([inputs[k].reshape(len(y), -1) for k in names])
    if name == "smote" and np.bincount(y).min() < 2:
        raise UsageError("SMOTE needs at least 2 samples per class")
    sampler = make(name, seed)
    if name == "smote":
        sampler.set_params(k_neighbors=min(5, int(np.bincount(y).min()) - 1))
    X, y_new = sampler.fit_resample(flat, y)
    out, start = {}, 0
    for k, size in zip(names, sizes):
        out[k] = X[:, start:start + size].reshape((len(y_new),) + shapes[k]).astype(np.float32)
        start += size
    return out, y_new
