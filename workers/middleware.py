"""What happens around every handler call, on either bus.

:func:`process` turns one delivered message into an :class:`Outcome` the bus carries out:

1. **decode** (:func:`messages.decode`): an unreadable message is dead-lettered with the reason;
2. **log context and metrics**: ``strike_id``, ``contract_id``, ``stage``, ``message_id``,
   ``worker`` bound on every log line; in-flight gauge, handling-time histogram, counters;
3. **idempotency**: the result of ``(strike_id, stage)`` is looked up in the store first; a
   redelivered message gets the stored messages back instead of calling the handler; a fresh
   result is stored with first-writer-wins and *what is stored* is published;
   **expiry**: before a handler runs on work that precedes the deployment
   (:data:`messages.types.EXPIRING_TYPES`), the strike's ``expires_at`` is checked; past it,
   the message is acknowledged and ``strike.failed`` (reason ``expired: ...``) published
   instead (a stored result, work done before the deadline, is still replayed);
4. **retry policy**: a retryable error (:func:`is_retryable`: broker or database hiccups,
   :class:`~industriverse.errors.InfrastructureError`) is retried with exponential backoff up
   to ``max_attempts``; any other error, or retries exhausted, dead-letters the message and
   publishes ``strike.failed`` with the reason;
5. **strike status**: a published ``strike.completed`` / ``strike.failed`` moves the strike's
   status in the store (completed | rejected | failed, with the reason).

The bus then publishes ``Outcome.publish`` (confirmed), then acknowledges the input.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal, Mapping

import sqlalchemy.exc

from industriverse.fleet import store
from industriverse.errors import IndustriverseError, InfrastructureError
from messages.codec import decode, to_dict
from messages.envelope import InvalidMessage, Message, is_strike_id
from messages.types import EXPIRING_TYPES, StrikeCompleted, StrikeFailed
from workers import metrics
from workers.actor import Actor
from workers.logging import get_logger, log_context

log = get_logger("industriverse.worker")

# Errors that a later attempt may not meet: the broker or the database went away for a moment.
RETRYABLE: tuple[type[BaseException], ...] = (
    InfrastructureError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.DisconnectionError,
    ConnectionError,
    TimeoutError,
)


def is_retryable(exc: BaseException) -> bool:
    """True for errors worth retrying later (see :data:`RETRYABLE`)."""
    return isinstance(exc, RETRYABLE)


def reason_of(exc: BaseException, limit: int = 500) -> str:
    """One line saying what went wrong (the project's errors speak for themselves)."""
    text = str(exc) if isinstance(exc, (IndustriverseError, InvalidMessage)) else f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff: attempt ``n`` (0-based) waits ``min(max_delay, base_delay * 2**n)`` s.

    ``max_attempts`` counts every try, the first included.
    """

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0

    def delay(self, attempt: int) -> float:
        return min(self.max_delay, self.base_delay * (2.0 ** attempt))

    def should_retry(self, exc: BaseException, attempt: int) -> bool:
        return is_retryable(exc) and attempt + 1 < self.max_attempts


@dataclass
class Outcome:
    """What the bus must do with a delivery.

    * ``ack``: publish ``publish`` (the next messages), then acknowledge;
    * ``retry``: after ``delay`` s republish ``retry`` (attempt + 1) to the same queue, then acknowledge;
    * ``dead``: publish ``publish`` (``strike.failed``, if the strike is known), put the original
      in the dead-letter queue with ``reason`` in its headers, then acknowledge.
    """

    action: Literal["ack", "retry", "dead"]
    publish: list[Message] = field(default_factory=list)
    reason: str | None = None
    delay: float = 0.0
    retry: Message | None = None
    message: Message | None = None
    stage: str | None = None


class Expired(Exception):
    """The strike's deadline passed before this stage ran: it fails as expired, nothing is deployed."""


def check_expiry(message: Message, stage: str, now: datetime | None = None) -> None:
    """Raise :class:`Expired` when ``message`` is work before the deployment and its strike's
    ``expires_at`` has passed (the deployer calls this again right before it deploys)."""
    if message.type not in EXPIRING_TYPES or message.expires_at is None:
        return
    now = now or datetime.now(timezone.utc)
    if message.expired(now):
        late = (now - message.expires_at).total_seconds()
        raise Expired(f"expired: the request's deadline {message.expires_at.isoformat(timespec='seconds')} "
                      f"passed {late:.1f} s before the {stage} stage ran; nothing was deployed")


def stage_key(stage: str, round: int) -> str:
    """The store's stage name for a round of a strike: ``stage`` for round 0, ``stage#r`` after."""
    return stage if round == 0 else f"{stage}#{round}"


def run_idempotent(actor: Actor, message: Message, *, engine: Any = None) -> tuple[list[Message], bool]:
    """The messages ``actor`` answers ``message`` with, and whether they came from the store.

    The handler runs only when the store holds no result for ``(strike_id, stage)``; its
    result is stored first-writer-wins and the stored one is returned, so two concurrent
    deliveries of one message publish the same messages (same message IDs).
    """
    key = stage_key(actor.stage, message.round)
    stored = store.get_stage_result(message.strike_id, key, engine=engine)
    replayed = stored is not None
    if stored is None:
        check_expiry(message, actor.stage)
        produced = list(actor.handle(message) or [])
        for out in produced:
            if not isinstance(out, Message):
                raise TypeError(f"handler {actor.kind}/{actor.stage} returned {type(out).__name__}, not a Message")
            if out.strike_id != message.strike_id:
                raise ValueError(f"handler {actor.kind}/{actor.stage} returned a message of another strike ({out.strike_id})")
        payload = {"input_message_id": message.message_id, "messages": [to_dict(m) for m in produced]}
        stored = store.put_stage_result(message.strike_id, key, payload, engine=engine)
    return [decode(m) for m in stored["messages"]], replayed


def record_outcomes(messages: list[Message], *, engine: Any = None) -> None:
    """Move the strike's status for every terminal message about to be published."""
    for m in messages:
        if isinstance(m.body, StrikeCompleted):
            status = "completed" if m.body.outcome == "deployed" else "rejected"
            reason = "; ".join(m.body.reasons) or None
            store.update_strike(m.strike_id, status=status, reason=reason, run_dir=m.body.run_dir, engine=engine)
        elif isinstance(m.body, StrikeFailed):
            store.update_strike(m.strike_id, status="failed", reason=f"{m.body.stage}: {m.body.reason}", engine=engine)


def _failure(worker: str, stage: str, reason: str, message: Message | None, strike_id: str | None = None,
             *, error: BaseException | None = None, engine: Any) -> Outcome:
    metrics.MESSAGES_FAILED.labels(worker, stage).inc()
    failed: list[Message] = []
    exit_code = error.exit_code if isinstance(error, IndustriverseError) else 3
    body = StrikeFailed(stage=stage, reason=reason, error=type(error).__name__ if error else None, exit_code=exit_code)
    if message is not None:
        failed = [message.follow(body)]
    elif strike_id:
        failed = [Message(strike_id=strike_id, body=body)]
    try:
        record_outcomes(failed, engine=engine)
    except Exception as exc:  # the store is down too: the strike.failed message still tells the client
        log.error("could not mark the strike failed in the store", error=reason_of(exc))
    return Outcome("dead", publish=failed, reason=reason, message=message, stage=stage)


def process(
    raw: bytes,
    actors: Mapping[str, Actor],
    *,
    worker: str,
    policy: RetryPolicy = RetryPolicy(),
    strike_id: str | None = None,
    engine: Any = None,
    poison: str | None = None,
) -> Outcome:
    """Handle one delivered message for the actors of ``worker`` (``{message type: actor}``).

    ``strike_id`` is the transport's correlation ID, used to fail the strike when the body
    itself is unreadable.  ``poison`` (the reason) says the transport saw this message kill
    the workers that took it before: it is dead-lettered and its strike failed, unhandled.
    Never raises for a handler's error: the outcome says what to do.
    """
    try:
        message = decode(raw)
    except Exception as exc:  # an unreadable body never gets better: dead-letter it on this first delivery
        if not isinstance(exc, InvalidMessage):
            exc = InvalidMessage(f"message cannot be decoded: {reason_of(exc)}")
        sid = exc.strike_id or (strike_id if is_strike_id(strike_id) else None)
        with log_context(worker=worker, stage=worker, strike_id=sid, message_id=None, contract_id=None):
            log.error("rejecting unreadable message", reason=exc.reason)  # the one line it is logged with
            return _failure(worker, worker, exc.reason, None, sid, error=exc, engine=engine)

    actor = actors.get(message.type)
    stage = actor.stage if actor else worker
    context = dict(worker=worker, stage=stage, strike_id=message.strike_id, contract_id=message.contract_id,
                   message_id=message.message_id)
    with log_context(**context):
        if poison is not None:
            log.error("rejecting a message that crashed its workers", reason=poison)
            return _failure(worker, stage, poison, message, engine=engine)
        if actor is None:
            reason = f"worker {worker!r} has no actor for message type {message.type!r}"
            log.error("rejecting message", reason=reason)
            return _failure(worker, stage, reason, message, engine=engine)

        in_flight = metrics.IN_FLIGHT.labels(worker)
        in_flight.inc()
        started = time.perf_counter()
        try:
            log.info("handling", type=message.type, attempt=message.attempt, round=message.round)
            out, replayed = run_idempotent(actor, message, engine=engine)
            record_outcomes(out, engine=engine)
        except Expired as exc:  # the client gave up: fail the strike, acknowledge (not poison, no dead letter)
            log.warning("request expired; failing the strike", reason=str(exc))
            failed = _failure(worker, stage, str(exc), message, error=exc, engine=engine)
            return Outcome("ack", publish=failed.publish, reason=failed.reason, message=message, stage=stage)
        except Exception as exc:
            reason = reason_of(exc)
            if policy.should_retry(exc, message.attempt):
                delay = policy.delay(message.attempt)
                log.warning("retryable error; retrying", reason=reason, attempt=message.attempt, delay_s=delay)
                metrics.MESSAGES_RETRIED.labels(worker, stage).inc()
                return Outcome("retry", reason=reason, delay=delay, retry=message.retried(), message=message, stage=stage)
            if is_retryable(exc):
                reason = f"gave up after {message.attempt + 1} attempts: {reason}"
            log.error("handler failed; dead-lettering", reason=reason, exc_info=not is_retryable(exc))
            return _failure(worker, stage, reason, message, error=exc, engine=engine)
        finally:
            metrics.HANDLING_SECONDS.labels(worker, stage).observe(time.perf_counter() - started)
            in_flight.dec()
        if replayed:
            metrics.MESSAGES_REPLAYED.labels(worker, stage).inc()
        metrics.MESSAGES_PROCESSED.labels(worker, stage).inc()
        log.info("handled", replayed=replayed, published=[m.type for m in out])
        return Outcome("ack", publish=out, message=message, stage=stage)
