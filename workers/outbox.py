"""The outbox relay: publish what the store's outbox says must be published, then mark it sent.

The regiment claims a contract's period and puts its strike request in the store's outbox in
one transaction (:func:`industriverse.fleet.store.claim_contract_period`).  This relay sends the
pending rows, oldest first, and marks a row sent only once ``send`` returned (on RabbitMQ: after
the broker's publisher confirm).  A crash or a broker outage anywhere between the claim and the
mark leaves the row pending, and the next relay run sends it again: at least once, and the
workers' idempotent stage results make a repeated request of one strike harmless (it is answered
from the store, nothing is deployed twice).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from industriverse.fleet import store
from messages.codec import decode
from messages.envelope import InvalidMessage, Message
from workers.logging import get_logger
from workers.middleware import reason_of

log = get_logger("industriverse.outbox")


@dataclass
class RelayResult:
    """What one relay run did: the messages it sent, how many are still pending, and why."""

    sent: list[Message] = field(default_factory=list)
    pending: int = 0
    error: str | None = None


def relay_outbox(send: Callable[[Message], None], *, limit: int = 1000, engine: Any = None) -> RelayResult:
    """Send every pending outbox row (up to ``limit``) with ``send``; stop at the first failure.

    ``send`` must return only once the message is safely handed over (a confirmed publish);
    whatever it raises leaves that row, and the rows after it, pending for the next run.
    """
    rows = store.pending_outbox(limit, engine=engine)
    result = RelayResult()
    for i, row in enumerate(rows):
        try:
            message = decode(row["payload"])
        except InvalidMessage as exc:  # only a row written by another version could be unreadable
            log.error("outbox row cannot be decoded; left pending", message_id=row["message_id"], reason=exc.reason)
            store.note_outbox_failure(row["message_id"], f"cannot be decoded: {exc.reason}", engine=engine)
            result.pending += 1
            continue
        try:
            send(message)
        except Exception as exc:  # anything: the row stays pending, the next run tries again
            result.error = reason_of(exc)
            result.pending += len(rows) - i
            log.warning("could not publish from the outbox; will retry", strike_id=row["strike_id"],
                        message_id=row["message_id"], attempts=row["attempts"] + 1, error=result.error)
            store.note_outbox_failure(row["message_id"], result.error, engine=engine)
            return result
        store.mark_outbox_sent(row["message_id"], engine=engine)
        result.sent.append(message)
    return result
