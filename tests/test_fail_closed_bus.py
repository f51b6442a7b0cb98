"""Fail closed on the real broker (issue 9): every dead letter has its reason on the first
delivery, an expired request is never deployed, no regiment strike is lost to a broker outage.

Each test uses its own exchange/queue prefix (and the outage tests their own vhost).
"""
from __future__ import annotations

import contextlib
import logging
import threading
import uuid

import pika
import pytest

from industriverse.fleet import store
from messages import Message, StrikeRequested
from strike_helpers import drain, queue_state
from toy_actors import make_actors
from workers.middleware import RetryPolicy
from workers.rabbitmq.consumer import RabbitBus
from workers.rabbitmq.publisher import RabbitPublisher

pytestmark = pytest.mark.broker

FAST = RetryPolicy(max_attempts=3, base_delay=0.05, max_delay=0.2)


@contextlib.contextmanager
def running(bus: RabbitBus):
    thread = threading.Thread(target=bus.run, daemon=True)
    thread.start()
    assert bus.connected.wait(15), "worker did not connect"
    try:
        yield bus
    finally:
        bus.stop()
        thread.join(20)
        assert not thread.is_alive()


def events(caplog, name: str) -> list[dict]:
    """The structlog event dicts called ``name`` that reached the log."""
    return [r.msg for r in caplog.records if isinstance(r.msg, dict) and r.msg.get("event") == name]


def publish_raw(url: str, prefix: str, strike_id: str, body: bytes) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_publish(prefix, f"strike.requested.{strike_id}", body,
                         pika.BasicProperties(correlation_id=strike_id, delivery_mode=2), mandatory=True)
    finally:
        conn.close()


def test_poison_messages_are_dead_lettered_on_their_first_delivery_with_the_reason(amqp_url, prefix, home, caplog):
    poison = {
        "deep": b'{"type": "strike.requested", "body": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
        "long-int": b'{"type": "strike.requested", "strike_id": "x", "body": {"seed": ' + b"7" * 5000 + b"}}",
        "nan": b'{"type": "strike.requested", "body": {"domain": "hvac", "constraint": {"envelope": NaN}}}',
        "huge": b'{"pad": "' + b" " * (5 * 1024 * 1024) + b'"}',
    }
    ids = {name: f"poison-{name}-{uuid.uuid4().hex[:6]}" for name in poison}
    good = Message.start(StrikeRequested(domain="test", constraint={"x": 1}))
    caplog.set_level(logging.INFO)
    with running(RabbitBus(amqp_url, make_actors(), prefix=prefix, policy=FAST)):
        for name, body in poison.items():
            publish_raw(amqp_url, prefix, ids[name], body)
        with RabbitPublisher(amqp_url, prefix=prefix) as pub:
            pub.publish(good)  # the worker goes on after the poison
        deadline_ok = False
        for _ in range(300):
            if (store.get_strike(good.strike_id) or {}).get("status") == "completed" and \
                    queue_state(amqp_url, f"{prefix}.optimizer.dead")[0] == len(poison):
                deadline_ok = True
                break
            threading.Event().wait(0.1)
        assert deadline_ok, "poison not dead-lettered / good strike not completed"

    letters = {props.correlation_id: props.headers for props, _ in drain(amqp_url, f"{prefix}.optimizer.dead")}
    assert set(letters) == set(ids.values())
    expected = {"deep": "nests deeper than the limit of 64 levels", "long-int": "integer of 5000 digits",
                "nan": "holds NaN", "huge": "over the limit of 4194304"}
    for name, text in expected.items():
        headers = letters[ids[name]]
        assert text in headers["x-error"], headers
        assert headers["x-death-reason"] == "rejected"  # ours, with the reason; not the broker's delivery limit
        assert headers.get("x-delivery-count", 0) == 0  # settled on its first delivery, never returned
        row = store.get_strike(ids[name])
        assert row["status"] == "failed" and text in row["reason"]
    rejected = events(caplog, "rejecting unreadable message")
    assert sorted(e["strike_id"] for e in rejected) == sorted(ids.values())  # one line each
    assert not events(caplog, "runtime error; returning the message to the queue")
    assert not [r for r in caplog.records if r.exc_info]  # no traceback
