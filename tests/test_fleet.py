"""The worker fleet on the real broker: competing processes, crashes, broker outages, poison
messages and the regiment's deduplication — with the five real workers."""
from __future__ import annotations

import json
from collections import Counter
import signal
import subprocess
import sys
import time

import pika
import pytest

from industriverse.fleet import store
from industriverse.operate.gateway import CapsuleGatewayService
from messages import Message, StrikeRequested, decode, to_dict
from strike_helpers import (
    ROOT,
    close_all_connections,
    drain,
    example,
    queue_state,
    start_workers,
    stop_workers,
    throwaway_vhost,
    wait_for,
)
from workers.rabbitmq.publisher import RabbitPublisher

pytestmark = pytest.mark.broker


def small_strike(seed: int = 0) -> Message:
    """A real 4-hour hvac strike with a 100-trajectory ensemble (deployable: 0 violations meet 5%)."""
    raw = example("hvac", ensemble=100, hours=4)
    return Message.start(StrikeRequested(domain="hvac", constraint=raw, seed=seed, backoff_k=1.0))


def outcomes(ids) -> dict[str, str]:
    """strike_id -> final status in the store, for the strikes that ended."""
    rows = {sid: store.get_strike(sid) for sid in ids}
    return {sid: r["status"] for sid, r in rows.items() if r and r["status"] in store.TERMINAL_STATUSES}


def publish_all(url: str, prefix: str, messages) -> None:
    with RabbitPublisher(url, prefix=prefix) as pub:
        for m in messages:
            store.record_strike(m.strike_id, domain="hvac", status="requested")
            pub.publish(m)


def deployments_by_strike() -> dict[str, int]:
    activities = CapsuleGatewayService().list_activities(activity_type="deployment")
    return dict(Counter(a["payload"]["strike_id"] for a in activities))  # the store gives JSON payloads back as objects


def test_twenty_strikes_through_two_processes_per_kind(amqp_url, prefix, home, tmp_path):
    strikes = [small_strike(seed=i) for i in range(20)]
    workers = [start_workers(amqp_url, prefix, tmp_path / f"w{i}") for i in range(2)]  # every kind in each
    try:
        publish_all(amqp_url, prefix, strikes)
        ids = [m.strike_id for m in strikes]
        wait_for(lambda: len(outcomes(ids)) == 20, timeout=240, what="20 outcomes")
    finally:
        stop_workers(*workers)
    assert set(outcomes(ids).values()) == {"completed"}
    assert deployments_by_strike() == {sid: 1 for sid in ids}
    handled = [sum('"event": "handled"' in line for line in open(w.log_path)) for w in workers]
    assert all(n > 0 for n in handled), f"both processes take work: {handled}"


def test_sigkill_mid_message_the_strike_completes_once(amqp_url, prefix, home, tmp_path):
    m = small_strike()
    victim = start_workers(amqp_url, prefix, tmp_path / "victim")
    publish_all(amqp_url, prefix, [m])
    # kill -9 while a handler is busy with this strike (after the optimizer, in the middle of the cascade)
    wait_for(lambda: store.get_stage_result(m.strike_id, "optimizer"), timeout=60, what="the optimizer stage")
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    survivor = start_workers(amqp_url, prefix, tmp_path / "survivor")
    try:
        wait_for(lambda: outcomes([m.strike_id]), timeout=120, what="the outcome")
    finally:
        stop_workers(survivor)
    assert outcomes([m.strike_id]) == {m.strike_id: "completed"}
    assert deployments_by_strike() == {m.strike_id: 1}


@pytest.fixture()
def vhost(amqp_url):
    with throwaway_vhost(amqp_url, "ivfleet") as name_and_url:
        yield name_and_url


def test_broker_closing_all_connections_loses_nothing(vhost, home, tmp_path):
    name, url = vhost
    strikes = [small_strike(seed=i) for i in range(4)]
    worker = start_workers(url, "ivfleet", tmp_path, concurrency=2)
    try:
        publish_all(url, "ivfleet", strikes)
        ids = [m.strike_id for m in strikes]
        wait_for(lambda: store.get_stage_result(ids[0], "optimizer"), timeout=60, what="work under way")
        close_all_connections(name)
        wait_for(lambda: len(outcomes(ids)) == 4, timeout=180, what="4 outcomes after the outage")
        assert worker.poll() is None, "the worker survived the outage"
    finally:
        stop_workers(worker)
    assert "reconnecting" in open(worker.log_path).read()
    assert set(outcomes(ids).values()) == {"completed"}
    assert deployments_by_strike() == {sid: 1 for sid in ids}


def test_poison_messages_end_in_the_dead_letter_queue_and_the_worker_goes_on(amqp_url, prefix, home, tmp_path):
    bad = example("hvac")
    bad["envelope"]["zone"]["min"] = "warm"  # a strike that fails every time: its constraint is invalid
    failing = Message.start(StrikeRequested(domain="hvac", constraint=bad))
    good = small_strike()
    worker = start_workers(amqp_url, prefix, tmp_path)
    try:
        conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_publish(prefix, "strike.requested.garbage", b"{not json", pika.BasicProperties(delivery_mode=2), mandatory=True)
        conn.close()
        publish_all(amqp_url, prefix, [failing, good])
        wait_for(lambda: len(outcomes([failing.strike_id, good.strike_id])) == 2, timeout=120, what="both outcomes")
        wait_for(lambda: queue_state(amqp_url, f"{prefix}.optimizer.dead")[0] == 2, timeout=30, what="2 dead letters")
    finally:
        stop_workers(worker)
    assert outcomes([good.strike_id]) == {good.strike_id: "completed"}
    row = store.get_strike(failing.strike_id)
    assert row["status"] == "failed" and "envelope.zone.min" in row["reason"]
    letters = [(props.headers or {}, body) for props, body in drain(amqp_url, f"{prefix}.optimizer.dead")]
    reasons = [h.get("x-error", "") for h, _ in letters]
    assert any("not valid JSON" in r or "JSON" in r for r in reasons), reasons
    assert any("envelope.zone.min" in r for r in reasons), reasons
    assert b"{not json" in [body for _, body in letters]


def test_the_relay_publishes_in_confirmed_batches_and_a_dropped_broker_loses_nothing(vhost, home):
    """The regiment's relay on the real broker: batches whose confirms are awaited together; when the broker
    drops every connection, nothing is marked sent that it did not confirm, and the next run sends the rest,
    each request exactly once in the queue."""
    from workers.outbox import relay_outbox

    name, url = vhost
    body = StrikeRequested(domain="hvac", constraint=example("hvac", ensemble=100, hours=4), seed=0, backoff_k=1.0)

    def claim(first: int, n: int) -> list[str]:
        claims = [{"contract_id": f"c-{i}", "period_key": "p", "strike_id": f"s-{i}", "domain": "hvac",
                   "message": to_dict(Message.start(body, strike_id=f"s-{i}", contract_id=f"c-{i}"))}
                  for i in range(first, first + n)]
        return store.claim_contract_periods(claims)

    assert len(claim(0, 250)) == 250
    with RabbitPublisher(url, prefix="ivrelay") as pub:
        first = relay_outbox(send_batch=pub.publish_batch)
        assert len(first.sent) == 250 and first.pending == 0 and first.error is None
        assert store.pending_outbox() == []
        assert len(claim(250, 150)) == 150
        close_all_connections(name)  # the broker drops the relay's connection
        time.sleep(0.5)  # the broker's close reaches the client's socket
        dropped = relay_outbox(send_batch=pub.publish_batch)
    assert dropped.sent == [] and dropped.pending == 150 and dropped.error
    assert len(store.pending_outbox()) == 150
    with RabbitPublisher(url, prefix="ivrelay") as pub:
        again = relay_outbox(send_batch=pub.publish_batch)
    assert len(again.sent) == 150 and store.pending_outbox() == []
    queued = Counter(decode(body).strike_id for _props, body in drain(url, "ivrelay.optimizer"))
    assert queued == {f"s-{i}": 1 for i in range(400)}


def _regiment(url: str, prefix: str, contracts) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "cli" / "orchestrate_full_regiment.py"), "--contracts", str(contracts),
                           "--once", "--broker", url, "--prefix", prefix], capture_output=True, text=True, timeout=120)


def test_regiment_restarted_within_a_period_publishes_no_duplicate(amqp_url, prefix, home, tmp_path):
    contracts = ROOT / "examples" / "contracts.yaml"
    first = _regiment(amqp_url, prefix, contracts)
    assert first.returncode == 0, first.stderr
    assert "4 strike(s) requested" in first.stderr
    second = _regiment(amqp_url, prefix, contracts)  # a restarted daemon, same period
    assert second.returncode == 0, second.stderr
    assert "0 strike(s) requested" in second.stderr
    ready, _ = queue_state(amqp_url, f"{prefix}.optimizer")
    assert ready == 4  # no worker runs: exactly one request per contract waits in the queue
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    ch = conn.channel()
    seen = []
    for _ in range(4):
        method, _p, body = ch.basic_get(f"{prefix}.optimizer", auto_ack=True)
        seen.append(decode(body))
    conn.close()
    assert sorted(m.contract_id for m in seen) == sorted(["boptest-testcase1", "office-two-zone", "supermarket-display-case", "pv-battery-site"])
    status = subprocess.run([sys.executable, "-m", "cli.main", "regiment", "status", "--json"], cwd=ROOT, capture_output=True, text=True)
    rows = [json.loads(line) for line in status.stdout.splitlines()]
    assert {r["strike_id"] for r in rows} == {m.strike_id for m in seen}


def test_regiment_daemon_stops_gracefully_on_sigterm(amqp_url, prefix, home, tmp_path):
    daemon = subprocess.Popen([sys.executable, str(ROOT / "cli" / "orchestrate_full_regiment.py"), "--contracts",
                               str(ROOT / "examples" / "contracts.yaml"), "--interval", "3600", "--broker", amqp_url,
                               "--prefix", prefix], stderr=subprocess.PIPE, text=True)
    try:
        def ready() -> int:
            try:
                return queue_state(amqp_url, f"{prefix}.optimizer")[0]
            except pika.exceptions.ChannelClosedByBroker:
                return 0  # the daemon has not declared its queues yet

        wait_for(lambda: ready() == 4, timeout=60, what="the first pass")
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(20) == 0  # leaves its hour-long sleep at once
    finally:
        if daemon.poll() is None:
            daemon.kill()
    assert "4 strike(s) requested" in daemon.stderr.read()
