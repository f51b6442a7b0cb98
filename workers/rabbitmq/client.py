"""A client's request over RabbitMQ: publish a ``strike.requested`` and wait for its outcome
(``strike.completed`` / ``strike.failed``), following its progress on the way.
"""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import pika.exceptions

from industriverse.errors import InfrastructureError
from industriverse.fleet import store
from messages.codec import decode
from messages.envelope import InvalidMessage, Message
from messages.routing import outcome_keys, strike_key
from messages.types import TERMINAL_TYPES, StrikeFailed, StrikeRequested
from workers.logging import get_logger
from workers.rabbitmq.connection import RECONNECT_ON, Backoff, redact, resolve_url
from workers.rabbitmq.publisher import RabbitPublisher
from workers.rabbitmq.topology import Topology, resolve_prefix

log = get_logger("industriverse.rabbitmq")

# After its timeout a client whose plan was verified but not yet deployed waits this long more
# (s): a deployer that passed its last expiry check just before the deadline finishes registering.
DEPLOY_SETTLE_S = 2.0


def outcome_from_store(strike_id: str, *, engine: Any = None) -> Message | None:
    """The strike's ``strike.completed``/``strike.failed`` as far as the store knows it, or None.

    Used when the wait for the outcome lost its connection: the outcome published meanwhile is
    gone with the exclusive queue, but the stage result that published it is stored.  The last
    round's outcome wins.
    """
    found = [decode(data) for payload in store.list_stage_results(strike_id, engine=engine).values()
             for data in payload.get("messages", []) if data.get("type") in TERMINAL_TYPES]
    if found:
        return max(found, key=lambda m: m.round)
    row = store.get_strike(strike_id, engine=engine)
    if row and row["status"] == "failed":  # failed where no stage result was stored (an unreadable message)
        stage, _, reason = (row["reason"] or "").partition(": ")
        return Message(strike_id=strike_id, contract_id=row.get("contract_id"),
                       body=StrikeFailed(stage=stage if reason else "unknown", reason=reason or row["reason"] or "failed"))
    return None


def with_deadline(message: Message, timeout: float) -> Message:
    """``message`` with ``expires_at`` = now + ``timeout`` s, if it is a strike request without one."""
    if not isinstance(message.body, StrikeRequested) or message.expires_at is not None:
        return message
    deadline = datetime.now(timezone.utc) + timedelta(seconds=timeout)
    return message.model_copy(update={"expires_at": deadline,
                                      "body": message.body.model_copy(update={"expires_at": deadline})})


def _deploy_stage(strike_id: str, engine: Any) -> str:
    """``deployed`` (a capsule.deployed is stored), ``verified`` (a plan.verified is stored but not
    deployed yet: a deployer may be registering it) or ``none``."""
    types = {m.get("type") for payload in store.list_stage_results(strike_id, engine=engine).values()
             for m in payload.get("messages", [])}
    return "deployed" if "capsule.deployed" in types else "verified" if "plan.verified" in types else "none"


def _after_timeout(message: Message, timeout: float, engine: Any) -> Message:
    """The outcome the store knows once the client's wait is over, else :class:`InfrastructureError`
    saying whether the request is cancelled (it expired: no worker deploys it now) or was deployed."""
    sid = message.strike_id
    settle_until = time.monotonic() + DEPLOY_SETTLE_S
    while _deploy_stage(sid, engine) == "verified" and time.monotonic() < settle_until:
        time.sleep(0.1)
    if (found := outcome_from_store(sid, engine=engine)) is not None:
        return found
    if _deploy_stage(sid, engine) == "deployed":
        raise InfrastructureError(f"strike {sid} was deployed before its deadline, but its outcome did not arrive within "
                                  f"{timeout:g} s: not cancelled (see its status in the store)")
    if message.expires_at is not None:
        raise InfrastructureError(
            f"no outcome of strike {sid} within {timeout:g} s: request cancelled (it expired at "
            f"{message.expires_at.isoformat(timespec='seconds')}; a worker that takes it later fails it as expired "
            "and deploys nothing)")
    raise InfrastructureError(f"no outcome of strike {sid} within {timeout:g} s (are workers running?)")


def request(
    message: Message,
    *,
    url: str | None = None,
    prefix: str | None = None,
    timeout: float = 600.0,
    on_progress: Callable[[Message], None] | None = None,
    engine: Any = None,
) -> Message:
    """Publish ``message`` (a ``strike.requested``) and return the strike's ``strike.completed``
    or ``strike.failed`` message.

    An exclusive, auto-delete queue is bound to ``strike.completed.<id>`` and
    ``strike.failed.<id>`` (with ``on_progress``: to ``*.*.<id>``, every message of the strike)
    *before* publishing, so the outcome cannot be missed.  If the connection drops while
    waiting, it reconnects and also asks the store.  Raises :class:`InfrastructureError` when
    the broker cannot be reached or no outcome arrives within ``timeout`` seconds.

    A strike request without ``expires_at`` gets now + ``timeout``: when the wait is over the
    request is cancelled, since no worker starts a stage for it, let alone deploys it, afterwards.
    """
    message = with_deadline(message, timeout)
    url = resolve_url(url)
    topology = Topology(resolve_prefix(prefix))
    sid = message.strike_id
    deadline = time.monotonic() + timeout
    published = False
    backoff = Backoff(0.5, 10.0)
    while True:
        try:
            with RabbitPublisher(url, topology=topology, name="industriverse strike") as pub:
                channel = pub.channel
                q = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
                for key in ([strike_key(sid)] if on_progress else list(outcome_keys(sid))):
                    channel.queue_bind(q, topology.exchange, routing_key=key)
                if not published:
                    pub.publish(message)
                    published = True
                elif (found := outcome_from_store(sid, engine=engine)) is not None:
                    return found
                for method, _props, body in channel.consume(q, auto_ack=True, inactivity_timeout=0.5):
                    if time.monotonic() > deadline:
                        return _after_timeout(message, timeout, engine)
                    if method is None:
                        continue
                    try:
                        m = decode(body)
                    except InvalidMessage:
                        continue
                    if m.strike_id != sid:  # any round: a rejected plan may be re-optimized as round 1, 2...
                        continue
                    if on_progress is not None:
                        on_progress(m)
                    if m.type in TERMINAL_TYPES:
                        return m
        except InfrastructureError:
            if not published or time.monotonic() > deadline:
                raise
        except RECONNECT_ON as exc:
            if not published and isinstance(exc, pika.exceptions.AMQPConnectionError):
                raise InfrastructureError(f"cannot reach the broker at {redact(url)}: {type(exc).__name__}") from None
            if time.monotonic() > deadline:
                log.warning("lost the broker while waiting for the outcome", strike_id=sid, error=repr(exc))
                return _after_timeout(message, timeout, engine)
        delay = backoff.next()
        log.warning("lost the broker while waiting for the outcome; reconnecting", strike_id=sid, retry_in_s=delay)
        time.sleep(delay)
