"""Names given by users become folder names in a shared cache: each must be one safe path component.

Run, tag, variant and modality names are checked here, so that ``--variant '../../victim'`` or a
modality called ``lab/s`` is refused with a usage error before anything touches the disk.
"""
from __future__ import annotations

import re

from stages.errors import UsageError

# Letters, digits and a few separators that read well in variant names (baseline+wce, cfcml:none@lr1e-4).
# No '/', '\\', whitespace, ',' (list separator), wildcards (* ? [ ]), and no leading '.' or '-'.
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+@:=-]*$")
MAX_LENGTH = 120


def check_name(value: str, what: str) -> str:
    """Return ``value`` if it is one safe path component, else raise a UsageError naming ``what``."""
    text = "" if value is None else str(value)
    if not _SAFE.match(text) or len(text) > MAX_LENGTH or ".." in text:
        raise UsageError(
            f"invalid {what} {text!r}: it becomes a folder name in the cache",
            fix=f"use letters, digits and . _ + @ : = - (no slashes, spaces, commas or '..'; "
                f"at most {MAX_LENGTH} characters, starting with a letter or digit)")
    return text
