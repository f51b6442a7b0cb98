"""Fail closed on the real broker (issue 9): every dead letter has its reason on the first
delivery, an expired request is never deployed, no regiment strike is lost to a broker outage.

Each test uses its own exchange/queue prefix (and the outage tests their own vhost).
"""
from __future__ import annotations

import logging
import subprocess
import sys
import threading
import uuid
from datetime import datetime, timedelta, timezone

import pika
import pytest

from industriverse.fleet import store
from industriverse.operate.gateway import CapsuleGatewayService
from messages import Message, StrikeRequested, encode
from strike_helpers import (FAST, ROOT, drain, example, queue_state, running, start_workers, stop_workers, wait_for,
                            write_constraint)
from toy_actors import make_actors
from workers.actor import load_actors
from workers.embedded import EmbeddedBus
from workers.middleware import Expired, process
from workers.rabbitmq.consumer import RabbitBus
from workers.rabbitmq.publisher import RabbitPublisher



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


@pytest.mark.broker
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
    expected = {"deep": "levels deep, over the limit of 64", "long-int": "an integer of 5000 digits is over the limit of 20",
                "nan": "must be a finite number, not nan", "huge": "over the limit of 4194304"}
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


# --- expiry: a strike the client gave up on never goes live --------------------------------------
def deployments() -> list[dict]:
    return CapsuleGatewayService().list_activities(activity_type="deployment")


@pytest.mark.broker
def test_a_request_whose_client_timed_out_fails_as_expired_and_deploys_nothing(amqp_url, prefix, home, tmp_path):
    path = write_constraint(tmp_path, example("hvac", ensemble=100, hours=4))
    client = subprocess.run([sys.executable, str(ROOT / "cli" / "run_client_strike_loop.py"), "--domain", "hvac",
                             "--constraint_json", str(path), "--broker", amqp_url, "--prefix", prefix, "--timeout", "2"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert client.returncode == 3, client.stderr
    last = client.stderr.strip().splitlines()[-1]
    assert last.startswith("error: no outcome of strike") and "request cancelled" in last, client.stderr
    sid = last.split()[5]
    assert queue_state(amqp_url, f"{prefix}.optimizer")[0] == 1  # no worker ran: the request waits

    worker = start_workers(amqp_url, prefix, tmp_path / "w")  # the worker comes up after the client gave up
    try:
        row = wait_for(lambda: (r := store.get_strike(sid)) and r["status"] == "failed" and r, timeout=60, what="failed")
    finally:
        stop_workers(worker)
    assert row["reason"].startswith("optimizer: expired: the request's deadline"), row
    assert deployments() == []
    assert store.list_stage_results(sid) == {}  # no stage ran
    assert queue_state(amqp_url, f"{prefix}.optimizer.dead")[0] == 0  # not poison: acknowledged, not dead-lettered


@pytest.fixture()
def verified(home) -> Message:
    """A real hvac strike run to its plan.verified message on the embedded bus (a far deadline,
    kept by the re-requested rounds after a rejection)."""
    far = datetime.now(timezone.utc) + timedelta(hours=1)
    bus = EmbeddedBus(load_actors(["all"]))
    bus.publish(Message.start(StrikeRequested(domain="hvac", constraint=example("hvac", ensemble=100, hours=4),
                                              seed=1, backoff_k=1.0, expires_at=far)))
    while bus.run(max_messages=1) and bus.published[-1].type != "plan.verified":
        pass
    assert bus.published[-1].type == "plan.verified", bus.published[-1]
    assert {m.expires_at for m in bus.published} == {far}  # every message of every round carries the deadline
    return bus.published[-1]


def test_the_deployer_checks_the_deadline_itself_right_before_it_deploys(verified):
    from workers.deployer import deploy_capsule

    past = datetime.now(timezone.utc) - timedelta(seconds=1)
    with pytest.raises(Expired, match="before the deployer stage ran"):
        deploy_capsule(verified.model_copy(update={"expires_at": past}))  # the handler alone, no runtime around it
    assert deployments() == []


def test_an_expired_plan_is_failed_by_the_runtime_and_a_live_one_deploys(verified):
    actors = {a.consumes: a for a in load_actors(["deployer"])}
    late = verified.model_copy(update={"expires_at": datetime.now(timezone.utc) - timedelta(seconds=5)})
    outcome = process(encode(late), actors, worker="deployer")
    assert outcome.action == "ack" and [m.type for m in outcome.publish] == ["strike.failed"]
    assert outcome.publish[0].body.reason.startswith("expired: the request's deadline")
    assert outcome.publish[0].body.error == "Expired"
    assert store.get_strike(verified.strike_id)["status"] == "failed"
    assert deployments() == []

    fresh = Message.start(StrikeRequested(domain="hvac", constraint=example("hvac", ensemble=100, hours=4), seed=1,
                                          backoff_k=1.0, expires_at=datetime.now(timezone.utc) + timedelta(minutes=5)))
    done = EmbeddedBus(load_actors(["all"])).request(fresh)
    assert done.type == "strike.completed" and done.body.outcome == "deployed"  # a deadline not yet passed
    assert len(deployments()) == 1


# --- the regiment: no claimed strike lost ---------------------------------------------------------
def test_backoff_doubles_up_to_its_cap_and_starts_over_after_a_reset():
    from workers.rabbitmq.connection import Backoff

    b = Backoff(0.5, 3.0)
    assert [b.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    b.reset()
    assert b.next() == 0.5
    with pytest.raises(ValueError):
        Backoff(2.0, 1.0)



def regiment(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "cli" / "orchestrate_full_regiment.py"), *args],
                          capture_output=True, text=True, timeout=120, **kw)


@pytest.mark.broker
def test_requests_claimed_while_the_broker_is_away_are_published_by_the_next_run(amqp_url, prefix, home):
    contracts = str(ROOT / "examples" / "contracts.yaml")
    away = regiment("--contracts", contracts, "--once", "--broker", "amqp://guest:guest@127.0.0.1:1/%2F", "--prefix", prefix)
    assert away.returncode == 3, away.stderr
    assert away.stderr.strip().splitlines()[-1].startswith("error: 4 strike request(s) left in the outbox"), away.stderr
    assert "Traceback" not in away.stderr
    claims = store.list_contract_runs()
    assert len(claims) == 4 and all(r["status"] == "requested" and r["published_at"] is None for r in claims)
    assert [r["attempts"] for r in store.pending_outbox()] == [1, 0, 0, 0]  # it stopped at the first failure

    back = regiment("--contracts", contracts, "--once", "--broker", amqp_url, "--prefix", prefix)
    assert back.returncode == 0, back.stderr
    assert "regiment pass: 0 strike(s) requested, 4 published, 0 waiting in the outbox" in back.stderr
    again = regiment("--contracts", contracts, "--once", "--broker", amqp_url, "--prefix", prefix)
    assert "regiment pass: 0 strike(s) requested, 0 published, 0 waiting in the outbox" in again.stderr

    from messages import decode

    queued = [decode(body) for _props, body in drain(amqp_url, f"{prefix}.optimizer")]
    assert sorted(m.strike_id for m in queued) == sorted(r["strike_id"] for r in claims)  # each exactly once
    assert all(r["published_at"] for r in store.list_contract_runs())


def rabbitmqctl(*args: str) -> None:
    from strike_helpers import RABBITMQCTL

    done = subprocess.run([RABBITMQCTL, *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.broker
def test_the_daemon_outlives_a_broker_outage_and_publishes_what_it_claimed_meanwhile(amqp_url, home, tmp_path):
    import signal

    from strike_helpers import close_all_connections, throwaway_vhost

    contracts = tmp_path / "contracts.yaml"
    contracts.write_text(
        "contracts:\n"
        "  - id: every-3s\n    client: test\n    domain: hvac\n"
        f"    constraint: {ROOT / 'examples' / 'hvac_testcase1.json'}\n"
        "    schedule: {every_minutes: 0.05}\n")  # a new period every 3 s
    with throwaway_vhost(amqp_url, "ivoutbox") as (vhost, url):
        daemon = subprocess.Popen([sys.executable, str(ROOT / "cli" / "orchestrate_full_regiment.py"), "--contracts",
                                   str(contracts), "--interval", "0.5", "--broker", url, "--prefix", "ivoutbox"],
                                  stderr=open(tmp_path / "daemon.log", "w"))
        try:
            wait_for(lambda: any(r["published_at"] for r in store.list_contract_runs()), timeout=60, what="a first publish")
            # the outage: the broker refuses the daemon's vhost and closes every connection to it
            rabbitmqctl("clear_permissions", "-p", vhost, "guest")
            close_all_connections(vhost)
            wait_for(lambda: any(r["attempts"] >= 2 for r in store.pending_outbox()), timeout=30, what="failed publishes")
            assert daemon.poll() is None, "the daemon died in the outage"
            rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
            # at least three periods claimed across the outage (a new one every 3 s), and all of them published
            wait_for(lambda: len(store.list_contract_runs()) >= 3 and not store.pending_outbox(), timeout=30,
                     what="a period after the outage and the outbox to drain")
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(20) == 0
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait(10)
        from messages import decode

        claims = store.list_contract_runs()
        queued = [decode(body).strike_id for _props, body in drain(url, "ivoutbox.optimizer")]
    log = (tmp_path / "daemon.log").read_text()
    assert "retrying in" in log and "could not publish from the outbox" in log and "Traceback" not in log, log
    assert len(claims) >= 3  # periods were claimed before, during and after the outage
    assert all(r["published_at"] for r in claims)
    assert set(queued) == {r["strike_id"] for r in claims}  # none lost (at least once: duplicates are harmless)
