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
import math
import re
import stat
from pathlib import Path
from typing import Any

import numpy as np

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


# --- reading untrusted documents -------------------------------------------------------------------
# Limits checked before and while parsing, so that a hostile file is refused in one line instead of
# hanging the reader (a FIFO), eating memory (a huge file, a YAML alias bomb) or blowing the stack.
MAX_FILE_BYTES = 32 * 1024 * 1024  # a document or data file larger than this is refused unread
MAX_DEPTH = 64  # nesting of objects/lists (constraints and plans nest < 10 deep)
MAX_INT_DIGITS = 20  # any 64-bit integer has at most 20 digits
MAX_VALUES = 1_000_000  # values in one parsed document, counted as used (a YAML alias bomb expands to far more)


class _LongInt:
    """A JSON integer literal too long to convert: kept as its length so the walk can name its field."""

    __slots__ = ("digits",)

    def __init__(self, digits: int):
        self.digits = digits


def _parse_int(text: str):
    digits = len(text.lstrip("-"))
    return int(text) if digits <= MAX_INT_DIGITS else _LongInt(digits)


def check_regular_file(path: str | Path, *, max_bytes: int = MAX_FILE_BYTES, what: str = "file") -> int:
    """Refuse, by ``stat`` before opening, anything but a regular file of at most ``max_bytes``; its size.

    A FIFO or a device would block or never end, a directory cannot be read, a huge file eats memory.
    """
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise BadInput(str(path), None, "no such file") from None
    except OSError as exc:
        raise BadInput(str(path), None, f"cannot read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise BadInput(str(path), None, f"is a directory, expected a {what}")
    if not stat.S_ISREG(st.st_mode):
        kind = "FIFO" if stat.S_ISFIFO(st.st_mode) else "device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) \
            else "socket" if stat.S_ISSOCK(st.st_mode) else "special file"
        raise BadInput(str(path), None, f"is a {kind}, not a regular file")
    if st.st_size > max_bytes:
        raise BadInput(str(path), None, f"is {st.st_size} bytes, over the {max_bytes}-byte limit for a {what}")
    return st.st_size


def read_text_checked(path: str | Path, *, max_bytes: int = MAX_FILE_BYTES, what: str = "file") -> str:
    """The UTF-8 text of a regular file of at most ``max_bytes`` (:func:`check_regular_file`)."""
    path = Path(path)
    check_regular_file(path, max_bytes=max_bytes, what=what)
    try:
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)  # the file may have grown since the stat
    except OSError as exc:
        raise BadInput(str(path), None, f"cannot read: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise BadInput(str(path), None, f"is over the {max_bytes}-byte limit for a {what}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(str(path), None, f"is not UTF-8 text (byte {exc.start})") from None


def _json_depth(text: str) -> int:
    """Deepest nesting of ``[`` and ``{`` in a JSON text (strings skipped), without recursion."""
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', "", text).encode()
    if not bare:
        return 0
    b = np.frombuffer(bare, dtype=np.uint8)
    step = np.isin(b, (ord("["), ord("{"))).astype(np.int32) - np.isin(b, (ord("]"), ord("}"))).astype(np.int32)
    return int(np.cumsum(step).max(initial=0))


def _flat(where: tuple) -> tuple:
    """The path ``(((), a), b)`` built while walking, as ``(a, b)``."""
    out = []
    while where:
        where, key = where
        out.append(key)
    return tuple(reversed(out))


def check_document(doc: Any, file: str | None, *, max_depth: int = MAX_DEPTH) -> Any:
    """Refuse a parsed document holding a non-finite number, an over-long integer, nesting deeper than
    ``max_depth`` or more than ``MAX_VALUES`` values; the error names the field.  Returns ``doc``."""
    stack: list[tuple[Any, tuple, int]] = [(doc, (), 0)]
    seen = 0
    at = lambda where: ".".join(map(str, where)) or None  # noqa: E731  (built only for an error)
    while stack:
        node, where, depth = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            raise BadInput(file, None, f"holds more than {MAX_VALUES} values (the limit)")
        kind = type(node)
        if kind is dict or kind is list:
            if depth >= max_depth:
                raise BadInput(file, at(_flat(where)), f"nests deeper than the limit of {max_depth} levels")
            items = node.items() if kind is dict else enumerate(node)
            stack.extend((v, (where, k), depth + 1) for k, v in items)
        elif kind is float:
            if not math.isfinite(node):
                raise BadInput(file, at(_flat(where)), f"must be a finite number, not {node}")
        elif kind is int:
            if abs(node) >= 10 ** MAX_INT_DIGITS:
                raise BadInput(file, at(_flat(where)), f"an integer of more than {MAX_INT_DIGITS} digits is over the limit")
        elif kind is _LongInt:
            raise BadInput(file, at(_flat(where)), f"an integer of {node.digits} digits is over the limit of {MAX_INT_DIGITS}")
        elif kind is not bool and kind is not str and node is not None:  # subclasses, numpy scalars: as their base
            base = dict(node) if isinstance(node, dict) else list(node) if isinstance(node, (list, tuple)) \
                else float(node) if isinstance(node, (float, np.floating)) \
                else int(node) if isinstance(node, (int, np.integer)) and not isinstance(node, bool) else None
            if base is not None:
                stack.append((base, where, depth))
                seen -= 1
    return doc


def parse_json(text: str | bytes, file: str | None) -> Any:
    """Parse JSON text within the limits (depth, integer length, finite numbers; see :func:`check_document`)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadInput(file, None, f"is not UTF-8 text (byte {exc.start})") from None
    depth = _json_depth(text)
    if depth > MAX_DEPTH:
        raise BadInput(file, None, f"nests {depth} levels deep, over the limit of {MAX_DEPTH}")
    try:
        doc = json.loads(text, parse_int=_parse_int)
    except json.JSONDecodeError as exc:
        raise BadInput(file, None, f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except (RecursionError, ValueError) as exc:
        raise BadInput(file, None, f"not valid JSON: {exc.__class__.__name__}") from None
    return check_document(doc, file)


def yaml_load(text: str) -> Any:
    """``yaml.safe_load`` through libyaml's parser when PyYAML has it (the same documents, ~10× faster:
    a strike reads and writes its signed manifest several times)."""
    import yaml

    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def yaml_dump(doc: Any, **options) -> str:
    """``yaml.safe_dump(doc, **options)`` through libyaml's emitter when PyYAML has it."""
    import yaml

    return yaml.dump(doc, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), **options)


def parse_yaml(text: str, file: str | None) -> Any:
    """Parse YAML text (safe loader) within the limits of :func:`check_document`."""
    import yaml

    try:
        doc = yaml_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        raise BadInput(file, None, f"not valid YAML{at}: {getattr(exc, 'problem', None) or exc.__class__.__name__}") from None
    except RecursionError:
        raise BadInput(file, None, f"nests deeper than the limit of {MAX_DEPTH} levels") from None
    except ValueError:  # an integer literal past Python's 4300-digit conversion limit
        raise BadInput(file, None, f"not valid YAML: a number literal is over the limit of {MAX_INT_DIGITS} digits") from None
    return check_document(doc, file)


def read_json(path, *, max_bytes: int = MAX_FILE_BYTES) -> Any:
    """Read a JSON file within the limits; anything missing, special, oversized, malformed, non-finite
    or too deep is :class:`~industriverse.errors.BadInput` naming the file (and the field)."""
    path = Path(path)
    return parse_json(read_text_checked(path, max_bytes=max_bytes, what="JSON file"), str(path))


def read_yaml(path, *, max_bytes: int = MAX_FILE_BYTES) -> Any:
    """Read a YAML file within the limits of :func:`read_json`."""
    path = Path(path)
    return parse_yaml(read_text_checked(path, max_bytes=max_bytes, what="YAML file"), str(path))


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
