"""Canonical JSON: the one byte string a JSON document hashes and signs as.

Keys sorted, no whitespace, UTF-8 (non-ASCII kept as is, not escaped), NaN and
infinities refused (they are not JSON).  Floats use Python's shortest round-trip
``repr``, so a value read back from a JSON file hashes exactly as it was written.
NumPy scalars and arrays are accepted and written as the plain numbers and lists
they hold, so a caller may hash a result before converting it.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any


def _plain(obj: Any) -> Any:
    # numpy scalars and arrays (and anything else with .tolist()) become Python numbers/lists
    tolist = getattr(obj, "tolist", None)
    if callable(tolist):
        return tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def canonical_json(obj: Any) -> bytes:
    """Return the canonical JSON bytes of ``obj``.

    Raises ``ValueError`` for NaN or infinite floats and ``TypeError`` for values
    that have no JSON form.
    """
    text = json.dumps(
        obj,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        default=_plain,
    )
    return text.encode("utf-8")


def sha256_of(obj: Any) -> str:
    """SHA-256 (lower-case hex) of the canonical JSON of ``obj``."""
    return hashlib.sha256(canonical_json(obj)).hexdigest()


def sha256_bytes(data: bytes) -> str:
    """SHA-256 (lower-case hex) of raw bytes."""
    return hashlib.sha256(data).hexdigest()
