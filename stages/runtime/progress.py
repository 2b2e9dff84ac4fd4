"""Progress bars on stderr (rich), switched off for batch jobs, pipes and --quiet."""
from __future__ import annotations

import contextlib
import sys
from typing import Callable, Iterator

_ENABLED = [sys.stderr.isatty()]


def set_enabled(enabled: bool) -> None:
    _ENABLED[0] = enabled


def enabled() -> bool:
    return _ENABLED[0]


@contextlib.contextmanager
def task(description: str, total: int, unit: str = "it") -> Iterator[Callable[..., None]]:
    """Yield ``advance(n=1, **fields)``; shows items/s in ``unit`` and any extra fields."""
    if not _ENABLED[0]:
        yield lambda n=1, **fields: None
        return
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
               TextColumn("{task.fields[extra]}")]
    with Progress(*columns, console=Console(stderr=True)) as bar:
        tid = bar.add_task(description, total=total, extra="", rate="")

        def advance(n: int = 1, **fields) -> None:
            speed = bar.tasks[0].speed
            bar.update(tid, advance=n, extra=" ".join(f"{k}={v}" for k, v in fields.items()),
                       rate=f"{speed:.1f} {unit}/s" if speed else "")

        yield advance
