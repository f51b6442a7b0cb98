"""Messages to bytes and back, and their JSON Schemas.

The wire form is the UTF-8 JSON of the whole message (envelope and body).  :func:`decode`
selects the body model by ``(type, schema_version)`` and validates everything; whatever it
cannot read raises :class:`~messages.envelope.InvalidMessage` with a one-line reason — the
runtime dead-letters such a message with that reason on its first delivery instead of
retrying it.

A body comes from anyone who can publish to the exchange, so :func:`decode` bounds it before
and while parsing: at most :data:`MAX_MESSAGE_BYTES` bytes, ``MAX_DEPTH`` levels of
nested objects/arrays, ``MAX_INT_DIGITS`` digits in an integer (limits of
:mod:`industriverse.model.canonical`), and every number finite
(no ``NaN``/``Infinity`` literals, no ``1e400``).
"""
from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from messages.envelope import InvalidMessage, Message, is_strike_id
from messages.types import BODIES, BODY_MODELS


# A strike request carries its constraint inline: a few kB for the shipped examples (CSV series
# travel as paths, not values).
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


def encode(message: Message) -> bytes:
    """The wire form of ``message``: UTF-8 JSON."""
    return message.model_dump_json().encode("utf-8")


def to_dict(message: Message) -> dict[str, Any]:
    """``message`` as a JSON-compatible dict (how stage results store the messages they published)."""
    return message.model_dump(mode="json")


def _one_line(exc: ValidationError, limit: int = 3) -> str:
    parts = []
    for err in exc.errors()[:limit]:
        where = ".".join(str(p) for p in err["loc"]) or "message"
        parts.append(f"{where}: {err['msg']}")
    more = len(exc.errors()) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def loads(raw: bytes | str | dict[str, Any]) -> Any:
    """The JSON value of a message body, within the limits; :class:`InvalidMessage` otherwise.

    The size is checked here, before parsing; depth, integer length and finiteness by the
    project's one reader of untrusted JSON (:func:`industriverse.model.canonical.parse_json`).
    """
    from industriverse.errors import BadInput
    from industriverse.model.canonical import check_document, parse_json

    if not isinstance(raw, dict):
        size = len(raw.encode("utf-8") if isinstance(raw, str) else raw)
        if size > MAX_MESSAGE_BYTES:
            raise InvalidMessage(f"message is {size} bytes, over the limit of {MAX_MESSAGE_BYTES}")
    try:
        return check_document(raw, "message") if isinstance(raw, dict) else parse_json(raw, "message")
    except BadInput as exc:
        if exc.field is None and ("not valid JSON" in exc.problem or "UTF-8" in exc.problem):
            raise InvalidMessage(f"message is not JSON ({exc.problem})") from None
        where = f"field '{exc.field}': " if exc.field else ""
        raise InvalidMessage(f"message refused: {where}{exc.problem}") from None


def decode(raw: bytes | str | dict[str, Any]) -> Message:
    """Read a message from its wire form (or from its dict form).

    Raises :class:`InvalidMessage` naming what is wrong: over a limit (size, depth, integer
    length, a non-finite number), not JSON, not an object, unknown ``type``, unsupported
    ``schema_version`` or an invalid field.
    """
    data = loads(raw)
    if not isinstance(data, dict):
        raise InvalidMessage(f"message must be a JSON object, not {type(data).__name__}")
    strike_id = data["strike_id"] if is_strike_id(data.get("strike_id")) else None
    mtype, version = data.get("type"), data.get("schema_version", 1)
    versions = sorted(v for (t, v) in BODIES if t == mtype)
    if not versions:
        known = ", ".join(sorted({t for t, _ in BODIES}))
        raise InvalidMessage(f"unknown message type {mtype!r} (known: {known})", strike_id=strike_id)
    body_model = BODIES.get((mtype, version)) if isinstance(version, int) and not isinstance(version, bool) else None
    if body_model is None:
        raise InvalidMessage(
            f"unsupported schema_version {version!r} of {mtype!r} (supported: {', '.join(map(str, versions))})",
            strike_id=strike_id,
            message_type=mtype,
        )
    try:
        return Message[body_model].model_validate(data)
    except ValidationError as exc:
        raise InvalidMessage(f"invalid {mtype} message: {_one_line(exc)}", strike_id=strike_id, message_type=mtype) from None


def json_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schema (draft 2020-12) of every message, keyed by type."""
    schemas: dict[str, dict[str, Any]] = {}
    for model in BODY_MODELS:
        schema = Message[model].model_json_schema()
        schema["title"] = model.TYPE
        schema["description"] = (model.__doc__ or "").strip().splitlines()[0]
        props = schema["properties"]
        props["type"] = {"const": model.TYPE, "title": "Type", "type": "string"}
        props["schema_version"] = {"const": model.SCHEMA_VERSION, "title": "Schema Version", "type": "integer"}
        schema["required"] = sorted(set(schema.get("required", [])) | {"type", "schema_version"})
        schemas[model.TYPE] = schema
    return schemas
