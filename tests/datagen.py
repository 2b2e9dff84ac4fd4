"""Tiny synthetic data sets in each supported layout, for adapter and bad-input tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def mogonet(root: Path, n_tr=(6, 5), n_te=(3, 3), views=(1, 2), dims=(4, 3), seed=0) -> Path:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    y_tr = np.repeat([0, 1], n_tr)
    y_te = np.repeat([0, 1], n_te)
    for k, d in zip(views, dims):
        for part, y in (("tr", y_tr), ("te", y_te)):
            np.savetxt(root / f"{k}_{part}.csv", rng.normal(size=(len(y), d)) + y[:, None], delimiter=",")
        (root / f"{k}_featname.csv").write_text("\n".join(f"f{k}_{j}" for j in range(d)) + "\n")
    np.savetxt(root / "labels_tr.csv", y_tr, fmt="%.1f")
    np.savetxt(root / "labels_te.csv", y_te, fmt="%.1f")
    return root


def tcga(root: Path, counts=(8, 6, 4), mods={"rna": 5, "mirna": 3}, seed=0) -> Path:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    y = np.repeat(np.arange(len(counts)), counts)
    ids = [f"TCGA-{i:04d}" for i in range(len(y))]
    pd.DataFrame({"patient": ids, "target": y.astype(float)}).to_csv(root / "target.csv", index=False)
    for name, d in mods.items():
        frame = pd.DataFrame(rng.normal(size=(len(y), d)) + y[:, None], index=ids,
                             columns=[f"{name}_{j}" for j in range(d)])
        frame.to_csv(root / f"{name}.csv")
    return root


def manifest(root: Path, n=12, image=True, text=False, classes=None, seed=0) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    labels = np.array(["benign", "malignant"])[np.arange(n) % 2]
    table = pd.DataFrame({"sample_id": [f"s{i:02d}" for i in range(n)], "diagnosis": labels,
                          "age": rng.normal(50, 10, n), "bmi": rng.normal(25, 3, n),
                          "split": ["train"] * (n - 4) + ["test"] * 4})
    lines = ["table: samples.csv", "id_column: sample_id", "label_column: diagnosis",
             "split_column: split"]
    if classes:
        lines.append(f"classes: [{', '.join(classes)}]")
    lines += ["modalities:", "  vitals: {type: tabular, columns: [age, bmi]}"]
    if image:
        (root / "img").mkdir(exist_ok=True)
        table["image"] = [f"img/{i}.png" for i in range(n)]
        for i in range(n):
            px = rng.integers(0, 255, size=(40, 40, 3), dtype=np.uint8)
            Image.fromarray(px).save(root / "img" / f"{i}.png")
        lines.append("  photo: {type: image, column: image}")
    if text:
        table["report"] = [f"lesion {'irregular dark' if l == 'malignant' else 'round even'} case {i}"
                           for i, l in enumerate(labels)]
        lines.append("  notes: {type: text, column: report}")
    table.to_csv(root / "samples.csv", index=False)
    (root / "manifest.yaml").write_text("\n".join(lines) + "\n")
    return root / "manifest.yaml"


def tiny_bert(root: Path) -> Path:
    """A 2-layer BERT with a word-level vocabulary, built from a config (no download)."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    root.mkdir(parents=True, exist_ok=True)
    words = ["lesion", "irregular", "dark", "round", "even", "case"] + [str(i) for i in range(20)]
    (root / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words) + "\n")
    BertTokenizerFast(vocab_file=str(root / "vocab.txt")).save_pretrained(root)
    config = BertConfig(vocab_size=len(words) + 5, hidden_size=16, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=64)
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(root)
    return root


def omics_manifest(root: Path, n=120, omics={"mrna": 6, "meth": 5, "mirna": 4}, seed=0) -> Path:
    """Three omics CSV files keyed by sample id, a labels.csv (imbalanced, two classes) and the
    manifest naming them: the own-data layout of docs/own-data.md."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    y = (np.arange(n) % 3 == 0).astype(int)           # one in three is the minority class
    ids = [f"p{i:03d}" for i in range(n)]
    pd.DataFrame({"sample": ids, "status": np.array(["control", "case"])[y]}).to_csv(root / "labels.csv", index=False)
    lines = ["table: labels.csv", "id_column: sample", "label_column: status", "modalities:"]
    for name, d in omics.items():
        frame = pd.DataFrame(rng.normal(size=(n, d)) + 0.8 * y[:, None], index=ids,
                             columns=[f"{name}_{j}" for j in range(d)])
        frame.index.name = "sample"
        frame.to_csv(root / f"{name}.csv")
        lines.append(f"  {name}: {{type: tabular, file: {name}.csv}}")
    (root / "manifest.yaml").write_text("\n".join(lines) + "\n")
    return root / "manifest.yaml"
