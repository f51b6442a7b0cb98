"""The envelope every message travels in, and the base of every message body.

A message is ``Message[Body]``: envelope fields (who, which strike, caused by what, which
attempt) around one typed body.  The wire form is the JSON of the whole message
(:func:`messages.codec.encode`); the ``type`` and ``schema_version`` fields select the body
model when it is read back (:func:`messages.codec.decode`).

Envelope fields:

``message_id``      uuid4 string, new for every message; kept when a message is retried or
                    republished from the store, so a duplicate is recognisable.
``strike_id``       the correlation ID: every message of one strike carries it.  Letters,
                    digits, ``-`` and ``_`` only (it is the last segment of a routing key).
``causation_id``    ``message_id`` of the message whose handling produced this one.
``type``            the message type (``plan.optimized`` ...), filled from the body.
``schema_version``  version of the body schema (1), filled from the body.
``created_at``      UTC time of creation.
``contract_id``     the client contract the strike serves (regiment), or None.
``attempt``         0 for a first delivery; +1 for each retry after a retryable error.
``round``           re-optimization round of the strike (0, 1, ...): a strike the shield
                    rejected may be re-requested with a larger back-off; each round has its
                    own stage results (the idempotency key is ``(strike_id, stage#round)``).
``expires_at``      UTC deadline of the strike (None: none), copied from the request's body
                    and carried by every message that follows, so each stage up to the
                    deployment can refuse work the client gave up on.
"""
from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone
from typing import Annotated, Any, ClassVar, Generic, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, SerializeAsAny, StringConstraints, model_validator

# Letters, digits, '-' and '_': a strike ID is the last segment of a topic routing key,
# so it must not contain the '.' separator (nor the wildcards).
STRIKE_ID_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"
StrikeId = Annotated[str, StringConstraints(pattern=STRIKE_ID_PATTERN)]
# Reference to a content-addressed artifact in the store: SHA-256, lower-case hex.
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class InvalidMessage(ValueError):
    """A message that cannot be read: not JSON, unknown type or schema version, invalid body.

    ``reason`` is the one-line explanation that goes into the dead-letter headers and the
    ``strike.failed`` message; ``strike_id`` is what could be recovered of the strike (or None).
    """

    def __init__(self, reason: str, *, strike_id: str | None = None, message_type: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.strike_id = strike_id
        self.message_type = message_type


class Body(BaseModel):
    """Base of message bodies.  Subclasses set ``TYPE`` and ``SCHEMA_VERSION``."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    TYPE: ClassVar[str] = ""
    SCHEMA_VERSION: ClassVar[int] = 1


BodyT = TypeVar("BodyT", bound=Body)


def is_strike_id(value: object) -> bool:
    """True when ``value`` can be a strike ID (see :data:`StrikeId`)."""
    return isinstance(value, str) and re.match(STRIKE_ID_PATTERN, value) is not None


def _new_id() -> str:
    return str(uuid.uuid4())


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Message(BaseModel, Generic[BodyT]):
    """A typed message: envelope fields plus ``body``.

    Build one with :meth:`Message.start` (first message of a strike) or
    :meth:`Message.follow` (the next message of the cascade); ``type`` and
    ``schema_version`` come from the body.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    message_id: str = Field(default_factory=_new_id)
    strike_id: StrikeId
    causation_id: str | None = None
    type: str = ""
    schema_version: int = 1
    created_at: datetime = Field(default_factory=_utcnow)
    contract_id: str | None = None
    attempt: int = Field(0, ge=0)
    round: int = Field(0, ge=0)
    expires_at: AwareDatetime | None = None
    body: SerializeAsAny[BodyT]

    @model_validator(mode="before")
    @classmethod
    def _type_from_body(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("body"), Body):
            body = data["body"]
            data = {"type": body.TYPE, "schema_version": body.SCHEMA_VERSION, **data}
        if isinstance(data, dict) and data.get("expires_at") is None:  # the request's deadline rides the envelope
            body = data.get("body")
            deadline = body.get("expires_at") if isinstance(body, dict) else getattr(body, "expires_at", None)
            if deadline is not None:
                data = {**data, "expires_at": deadline}
        return data

    @model_validator(mode="after")
    def _body_matches_type(self) -> "Message":
        if not isinstance(self.body, Body) or not self.body.TYPE:
            raise ValueError("body must be a message body model (messages.types)")
        if (self.type, self.schema_version) != (self.body.TYPE, self.body.SCHEMA_VERSION):
            raise ValueError(
                f"type/schema_version {self.type!r}/{self.schema_version} do not match the body "
                f"{type(self.body).__name__} ({self.body.TYPE!r}/{self.body.SCHEMA_VERSION})"
            )
        asked = getattr(self.body, "expires_at", None)
        if asked is not None and asked != self.expires_at:
            raise ValueError(f"expires_at {self.expires_at} differs from the body's {asked}")
        return self

    # --- building messages ------------------------------------------------------------
    @classmethod
    def start(cls, body: Body, *, strike_id: str | None = None, contract_id: str | None = None,
              round: int | None = None) -> "Message":
        """The first message of a strike (a new uuid4 hex strike ID unless one is given).

        ``round`` defaults to the body's ``retry`` (a re-requested strike after a rejection).
        """
        if round is None:
            round = getattr(body, "retry", 0)
        return Message(strike_id=strike_id or uuid.uuid4().hex, contract_id=contract_id, round=round, body=body)

    def follow(self, body: Body) -> "Message":
        """The message this one causes: same strike, contract and round; ``causation_id`` = this ID."""
        return Message(
            strike_id=self.strike_id,
            contract_id=self.contract_id,
            causation_id=self.message_id,
            round=self.round,
            expires_at=self.expires_at,
            body=body,
        )

    def retried(self) -> "Message":
        """This message again for a retry: same ``message_id``, ``attempt`` + 1."""
        return self.model_copy(update={"attempt": self.attempt + 1})

    def expired(self, now: datetime | None = None) -> bool:
        """True when the strike's deadline (``expires_at``) has passed at ``now`` (default: the clock)."""
        return self.expires_at is not None and (now or _utcnow()) >= self.expires_at

    @property
    def routing_key(self) -> str:
        """Topic routing key: ``<type>.<strike_id>`` (see :mod:`messages.routing`)."""
        return routing_key(self.type, self.strike_id)


def routing_key(message_type: str, strike_id: str) -> str:
    """Routing key of a message: ``<type>.<strike_id>`` (see :mod:`messages.routing`)."""
    return f"{message_type}.{strike_id}"
