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
from pathlib import Path
from typing import Any

from industriverse.errors import BadInput


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


def read_json(path) -> Any:
    """Read a JSON file; a missing, unreadable or malformed file is :class:`~industriverse.errors.BadInput`."""


    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(str(path), None, "no such file") from None
    except IsADirectoryError:
        raise BadInput(str(path), None, "is a directory, expected a JSON file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(str(path), None, f"cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(str(path), None, f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def required_field(doc: Any, dotted: str, file: str) -> Any:
    """``doc["a"]["b"]`` for ``"a.b"``; a missing field is :class:`BadInput` naming ``file`` and it."""
    node = doc
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise BadInput(file, dotted, "is missing")
        node = node[part]
    return node


def document_beside(path: str | Path, name: str) -> Path | None:
    """The run document ``name`` beside ``path`` (a proof in ``RUN/`` or in ``RUN/capsule/``), or None."""
    path = Path(path)
    for directory in (path.parent, path.parent.parent):
        candidate = directory / name
        if candidate.is_file():
            return candidate
    return None
