"""YAML files people write by hand (sweep grids, compare panels): read once, with the line of every
key, so that a mistake is named by file and line."""
from __future__ import annotations

from pathlib import Path

from stages.errors import UsageError


def read_text(path: Path | str, what: str, fix: str) -> str:
    path = Path(path)
    try:
        return path.read_text()
    except OSError as exc:
        raise UsageError(f"cannot read the {what} {path}: {exc.strerror or exc}", fix=fix) from None


def parse(text: str, source: str, fix: str) -> tuple[object, dict]:
    """(the YAML value, {key path: line}); invalid YAML is one UsageError naming the line."""
    import yaml

    try:
        return yaml.safe_load(text), positions(yaml.compose(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}, line {mark.line + 1}" if mark else str(source)
        raise UsageError(f"{where}: not valid YAML ({getattr(exc, 'problem', None) or exc})", fix=fix) from None


def positions(node, keys=(), out=None) -> dict:
    """{(key, index, ...): line} of every mapping key and sequence item below ``node``."""
    import yaml

    out = {} if out is None else out
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            path = keys + (k.value,)
            out.setdefault(path, k.start_mark.line + 1)
            positions(v, path, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            out.setdefault(keys + (i,), v.start_mark.line + 1)
            positions(v, keys + (i,), out)
    return out


def line_of(lines: dict, keys: tuple) -> int | None:
    """The line of ``keys``, or of its nearest ancestor that has one."""
    probe = tuple(keys)
    while probe and probe not in lines:
        probe = probe[:-1]
    return lines.get(probe) if probe else None
