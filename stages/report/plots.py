"""Figures: class mix over epochs (the paper's Fig. 2) and per-class recall comparisons."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from stages.errors import UsageError


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def class_mix(artifact, path: Path) -> Path:
    """Stacked bars of samples per class for every epoch of a schedule artifact."""
    if artifact.stage != "schedule":
        raise UsageError("--plot draws schedules; give a schedule artifact")
    from stages.pipeline.schedule import load

    d = load(artifact)
    names, epochs = d["classes"], d["per_epoch"]
    t = np.array([e["t"] for e in epochs])
    counts = np.array([[e["counts"][n] for n in names] for e in epochs])
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    bottom = np.zeros(len(t))
    for i, name in enumerate(names):
        ax.bar(t, counts[:, i], bottom=bottom, label=name, width=0.9)
        bottom += counts[:, i]
    ax.set_xlabel("epoch")
    ax.set_ylabel("training samples")
    ax.set_title(f"class distribution over epochs ({d['pacing']}, T = {d['epochs']})")
    ax.legend(title="class", ncol=min(5, len(names)), fontsize=8)
    return _save(fig, path)


def recall_by_class(rows, variants: list[str], path: Path, title: str = "") -> Path:
    """Grouped bars: mean (± std over replicates) recall of every class for each variant."""
    cols = [c for c in rows.columns if c.startswith("recall_")]
    classes = [c.removeprefix("recall_") for c in cols]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(classes) * len(variants) / 2), 4))
    width = 0.8 / len(variants)
    x = np.arange(len(classes))
    for i, v in enumerate(variants):
        sub = rows[rows.variant == v][cols]
        if sub.empty:
            raise UsageError(f"no evaluations of variant {v!r} to plot")
        ax.bar(x + i * width - 0.4 + width / 2, sub.mean().to_numpy(), width,
               yerr=sub.std(ddof=1).fillna(0).to_numpy(), label=f"{v} (n={len(sub)})", capsize=2)
    ax.set_xticks(x, classes)
    ax.set_ylabel("recall (test)")
    ax.set_ylim(0, 1.05)
    ax.set_title(title or "per-class recall")
    ax.legend(fontsize=8)
    return _save(fig, path)
