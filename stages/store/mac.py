"""An optional keyed MAC over the records climd trusts in a cache (``meta.json``, tensor sidecars).

A SHA-256 in ``meta.json`` proves a file is the one that was recorded (integrity); it does not prove
who recorded it: anyone who can write the cache can edit the weights and their recorded hashes
together. With ``$CLIMD_CACHE_KEY`` set (a secret shared by the people who trust each other), every
record climd writes carries ``"mac": {"alg": "hmac-sha256", "key_id", "value"}`` over its canonical
JSON, and every record it reads must carry a valid one for that key: an edited or unsigned artifact is
refused (exit 5). Since ``meta.json`` records the hashes of every output and the keys of every input,
its MAC covers the artifact's files and its place in the pipeline. Without the variable nothing is
signed or checked. See docs/artifacts.md ("A shared cache").
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os

from stages.errors import StaleArtifactError

ENV = "CLIMD_CACHE_KEY"
FIELD = "mac"
ALG = "hmac-sha256"


def _key() -> bytes | None:
    value = os.environ.get(ENV)
    return value.encode("utf-8") if value else None


def key_id(key: bytes) -> str:
    """A short public name of a key (which key signed a record), not the key."""
    return hashlib.sha256(b"climd-key-id:" + key).hexdigest()[:12]


def _digest(record: dict, key: bytes) -> str:
    body = {k: v for k, v in record.items() if k != FIELD}
    # the form a reader parses back: numpy scalars and paths become what the JSON file holds
    text = json.dumps(json.loads(json.dumps(body, default=_plain)), sort_keys=True, separators=(",", ":"))
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()


def _plain(obj):
    return obj.tolist() if hasattr(obj, "tolist") else str(obj)


def sign(record: dict) -> dict:
    """``record`` with its MAC when ``$CLIMD_CACHE_KEY`` is set (unchanged otherwise)."""
    key = _key()
    if key is None:
        return record
    return {**record, FIELD: {"alg": ALG, "key_id": key_id(key), "value": _digest(record, key)}}


def check(record: dict, path, fix: str) -> None:
    """Refuse (exit 5) a record without a valid MAC for ``$CLIMD_CACHE_KEY``; nothing when unset."""
    key = _key()
    if key is None:
        return
    mac = record.get(FIELD)
    if not isinstance(mac, dict) or mac.get("alg") != ALG or not isinstance(mac.get("value"), str):
        raise StaleArtifactError(f"{path} is not signed ($CLIMD_CACHE_KEY is set, so every record read from the "
                                 "cache must carry a MAC made with that key)", fix=fix)
    if mac.get("key_id") != key_id(key):
        raise StaleArtifactError(f"{path} was signed with another key (key id {mac.get('key_id')}, yours is "
                                 f"{key_id(key)})", fix=fix)
    if not hmac.compare_digest(mac["value"], _digest(record, key)):
        raise StaleArtifactError(f"{path} was changed after it was signed: its MAC does not match (someone "
                                 "without your $CLIMD_CACHE_KEY edited it)", fix=fix)
