"""Command lines a user can retype: the one place that spells ``climd SUBCOMMAND --flag value``.

Artifacts record how to rebuild them (meta.json ``command``); the CLI (from the parsed options),
a sweep's upstream stages and a sweep's train cells (from option dicts) all build that line here,
so quoting and number formatting are the same everywhere.
"""
from __future__ import annotations

from shlex import quote
from typing import Iterable


def value_text(value) -> str:
    """How a value is written on a command line: floats in their shortest form (5e-05, 0.001),
    lists comma-joined, anything a shell would split or expand quoted."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return quote(",".join(str(v) for v in value))
    return quote(str(value))


def option(flag: str, value=True, negative: str | None = None) -> list[str]:
    """``--flag value``; a boolean is the bare flag when true, ``negative`` (or nothing) when false."""
    if isinstance(value, bool):
        return [flag] if value else ([negative] if negative else [])
    return [f"{flag} {value_text(value)}"]


def climd(subcommand: str, parts: Iterable[str]) -> str:
    return " ".join(["climd", subcommand, *parts])


def with_cache_dir(command: str, cache_dir) -> str:
    """A recorded command line with its ``--cache-dir`` pointing at ``cache_dir``, where the artifact
    is now (a cache is moved, copied or shared; the folder it was built in may not exist here)."""
    import shlex

    if cache_dir is None or "--cache-dir" not in command:
        return command
    try:
        words = shlex.split(command)
    except ValueError:
        return command
    out, skip = [], False
    for word in words:
        if skip:
            out.append(str(cache_dir))
            skip = False
        elif word == "--cache-dir":
            out.append(word)
            skip = True
        elif word.startswith("--cache-dir="):
            out.append(f"--cache-dir={cache_dir}")
        else:
            out.append(word)
    return shlex.join(out)
