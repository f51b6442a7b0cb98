"""The RabbitMQ bus on the real broker: cascade, dead letters, idempotency, SIGKILL, SIGTERM,
and the broker closing every connection.

Each test uses its own exchange/queue prefix (and the close-all test its own vhost) and
deletes them afterwards.  Worker processes are this file run as a script with the test
actors of ``toy_actors.py`` (``python tests/test_rabbitmq_bus.py --broker URL --prefix P ...``).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pika
import pika.exceptions
import pytest

from industriverse.fleet import store
from industriverse.errors import InfrastructureError
from messages import Message, StrikeRequested, decode
from strike_helpers import (FAST, RABBITMQCTL, close_all_connections, drain, queue_state, running, spawn_worker,
                            throwaway_vhost, wait_for)
from toy_actors import make_actors
from workers.embedded import EmbeddedBus
from workers.rabbitmq.client import request
from workers.rabbitmq.consumer import RabbitBus
from workers.rabbitmq.publisher import RabbitPublisher
from workers.rabbitmq.topology import Topology

pytestmark = pytest.mark.broker



def strike(**constraint) -> Message:
    return Message.start(StrikeRequested(domain="test", constraint=constraint, seed=7))


# --- helpers -----------------------------------------------------------------------------------
def channel_for(url: str):
    conn = pika.BlockingConnection(pika.URLParameters(url))
    return conn, conn.channel()


class Observer:
    """A durable test queue bound to ``keys``; reads through connection losses."""

    def __init__(self, url: str, prefix: str, keys: list[str]):
        self.url, self.queue = url, f"{prefix}.test.{uuid.uuid4().hex[:8]}"
        conn, ch = channel_for(url)
        Topology(prefix).declare(ch)
        ch.queue_declare(self.queue, durable=True)
        for key in keys:
            ch.queue_bind(self.queue, prefix, routing_key=key)
        conn.close()
        self.seen: list[Message] = []

    def collect(self, done, timeout: float = 30.0) -> list[Message]:
        """Read until ``done(seen)`` is true; reconnects if the broker closed the connection."""
        deadline = time.monotonic() + timeout
        while not done(self.seen):
            assert time.monotonic() < deadline, f"timed out; seen {[(m.type, m.strike_id) for m in self.seen]}"
            try:
                conn, ch = channel_for(self.url)
                try:
                    while not done(self.seen) and time.monotonic() < deadline:
                        method, _props, body = ch.basic_get(self.queue, auto_ack=True)
                        if method is None:
                            time.sleep(0.05)
                        else:
                            self.seen.append(decode(body))
                finally:
                    with contextlib.suppress(pika.exceptions.AMQPError):
                        conn.close()
            except pika.exceptions.AMQPError:
                time.sleep(0.2)
        return self.seen

    def close(self) -> None:
        conn, ch = channel_for(self.url)
        ch.queue_delete(self.queue)
        conn.close()


def start_worker(url: str, prefix: str, log_dir: Path, *extra: str) -> subprocess.Popen:
    """This file as a worker process (optimizer and simulator kinds unless --kinds is given)."""
    log_dir.mkdir(exist_ok=True)
    return spawn_worker([sys.executable, __file__, "--broker", url, "--prefix", prefix, "--log-dir", str(log_dir), *extra],
                        url, prefix, log_dir / f"worker-{uuid.uuid4().hex[:6]}.err", timeout=20)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


def handler_log(log_dir: Path) -> list[list[str]]:
    path = log_dir / "double.log"
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


# --- tests -------------------------------------------------------------------------------------
def test_cascade_matches_the_embedded_bus(amqp_url, prefix, home):
    from prometheus_client import REGISTRY

    def processed(worker: str, stage: str) -> float:
        return REGISTRY.get_sample_value("industriverse_messages_processed_total", {"worker": worker, "stage": stage}) or 0.0

    embedded = EmbeddedBus(make_actors())
    expected = [embedded.request(strike(x=x)) for x in (1, 2, 3)]
    before = processed("optimizer", "double"), processed("simulator", "finish")

    with running(RabbitBus(amqp_url, make_actors(), prefix=prefix, concurrency=2, policy=FAST)):
        progress: list[str] = []
        got = [request(strike(x=1), url=amqp_url, prefix=prefix, timeout=30, on_progress=lambda m: progress.append(m.type))]
        got += [request(strike(x=x), url=amqp_url, prefix=prefix, timeout=30) for x in (2, 3)]

    assert progress == ["strike.requested", "plan.optimized", "strike.completed"]
    for want, have in zip(expected, got):
        assert have.type == "strike.completed"
        assert (have.body.activity_id, have.body.value_ref) == (want.body.activity_id, want.body.value_ref)
        assert store.get_strike(have.strike_id)["status"] == "completed"
    assert [store.get_json_artifact(m.body.value_ref)["y"] for m in got] == [3, 5, 7]
    assert processed("optimizer", "double") - before[0] == 3
    assert processed("simulator", "finish") - before[1] == 3


def test_bad_messages_are_dead_lettered_with_their_reason_and_the_worker_goes_on(amqp_url, prefix, home):
    observer = Observer(amqp_url, prefix, ["strike.failed.*", "strike.completed.*"])
    malformed_id = uuid.uuid4().hex
    malformed = json.dumps({"type": "strike.requested", "strike_id": malformed_id, "body": {"constraint": {}}}).encode()
    failing, flaky, good = strike(fail="no such plant"), strike(x=1, flaky=99), strike(x=2)
    try:
        with running(RabbitBus(amqp_url, make_actors(), prefix=prefix, policy=FAST)):
            with RabbitPublisher(amqp_url, prefix=prefix) as pub:
                pub.channel.basic_publish(prefix, f"strike.requested.{malformed_id}", malformed,
                                          pika.BasicProperties(correlation_id=malformed_id, delivery_mode=2), mandatory=True)
                for m in (failing, flaky, good):
                    pub.publish(m)
            seen = observer.collect(lambda s: len(s) >= 4)
    finally:
        observer.close()

    outcome = {m.strike_id: m for m in seen}
    assert outcome[good.strike_id].type == "strike.completed"
    expected = {
        malformed_id: "invalid strike.requested message: body.domain: Field required",
        failing.strike_id: "ValueError: no such plant",
        flaky.strike_id: "gave up after 3 attempts: database went away",
    }
    for sid, reason in expected.items():
        assert outcome[sid].type == "strike.failed" and outcome[sid].body.reason == reason
        row = store.get_strike(sid)
        assert row["status"] == "failed" and reason in row["reason"]

    by_strike = {props.correlation_id: (props.headers, body) for props, body in drain(amqp_url, f"{prefix}.optimizer.dead")}
    assert set(by_strike) == set(expected)
    for sid, reason in expected.items():
        headers, _ = by_strike[sid]
        assert headers["x-error"] == reason
        assert headers["x-death-reason"] == "rejected"
        assert headers["x-original-queue"] == f"{prefix}.optimizer"
        assert headers["x-original-routing-key"].endswith(sid)
    assert by_strike[malformed_id][1] == malformed  # the original bytes, untouched
    assert decode(by_strike[failing.strike_id][1]) == failing
    assert queue_state(amqp_url, f"{prefix}.optimizer")[0] == 0


def test_a_duplicate_delivery_is_answered_from_the_store(amqp_url, prefix, home, tmp_path):
    observer = Observer(amqp_url, prefix, ["strike.completed.*"])
    m = strike(x=10)
    try:
        with running(RabbitBus(amqp_url, make_actors(log_dir=tmp_path), prefix=prefix, concurrency=1, policy=FAST)):
            with RabbitPublisher(amqp_url, prefix=prefix) as pub:
                pub.publish(m)
                pub.publish(m)  # the same message again, as a redelivery would bring it
            first, second = observer.collect(lambda s: len(s) >= 2)
    finally:
        observer.close()
    assert first == second and first.body.activity_id == "act-21"  # same message, same ID
    assert [e[0] for e in handler_log(tmp_path)] == ["start", "done"]  # the handler ran once


def test_sigkill_after_the_result_was_stored_loses_nothing_and_redoes_nothing(amqp_url, prefix, home, tmp_path):
    observer = Observer(amqp_url, prefix, ["strike.completed.*"])
    m = strike(x=7)
    killed = start_worker(amqp_url, prefix, tmp_path, "--kill-after-store", str(tmp_path / "killed"))
    try:
        with RabbitPublisher(amqp_url, prefix=prefix) as pub:
            pub.publish(m)
        assert killed.wait(20) == -signal.SIGKILL  # died between storing the result and the ack
        assert (tmp_path / "killed").exists()
        assert store.get_stage_result(m.strike_id, "double") is not None
        survivor = start_worker(amqp_url, prefix, tmp_path)
        try:
            (done,) = observer.collect(lambda s: len(s) >= 1)
        finally:
            survivor.send_signal(signal.SIGTERM)
            assert survivor.wait(20) == 0
    finally:
        stop(killed)
        observer.close()
    assert done.strike_id == m.strike_id and done.body.activity_id == "act-15"
    # the redelivered message was answered from the store: the handler completed once
    assert [e[0] for e in handler_log(tmp_path)] == ["start", "done"]
    lines = [json.loads(x) for x in Path(survivor.log_path).read_text().splitlines() if x.startswith("{")]
    replay = [x for x in lines if x.get("event") == "handled" and x.get("stage") == "double"]
    assert replay and replay[0]["replayed"] is True
    # every handler log line carries the correlation fields
    for line in [x for x in lines if x.get("event") in ("handling", "handled")]:
        assert {"strike_id", "contract_id", "stage", "message_id", "worker"} <= set(line)
        assert line["strike_id"] == m.strike_id


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {name: value for name, value in
            (line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("industriverse_"))}


def test_sigterm_finishes_the_message_in_flight_and_leaves_the_rest(amqp_url, prefix, home, tmp_path):
    observer = Observer(amqp_url, prefix, ["plan.optimized.*"])
    slow, waiting = strike(x=4, sleep=1.0), strike(x=5)
    port = free_port()
    worker = start_worker(amqp_url, prefix, tmp_path, "--kinds", "optimizer", "--metrics-port", str(port))
    try:
        with RabbitPublisher(amqp_url, prefix=prefix) as pub:
            pub.publish(slow)
            wait_for(lambda: handler_log(tmp_path), timeout=20, what="the handler to start")
            assert float(scrape(port)['industriverse_messages_in_flight{worker="optimizer"}']) == 1.0
            worker.send_signal(signal.SIGTERM)
            pub.publish(waiting)
        assert worker.wait(20) == 0
        (optimized,) = observer.collect(lambda s: len(s) >= 1)
    finally:
        stop(worker)
        observer.close()
    assert optimized.strike_id == slow.strike_id
    assert [(e[0], e[1]) for e in handler_log(tmp_path)] == [("start", slow.strike_id), ("done", slow.strike_id)]
    # the finished message was acked; the one published after SIGTERM waits in the queue
    assert queue_state(amqp_url, f"{prefix}.optimizer") == (1, 0)


def test_a_message_that_kills_every_worker_is_dead_lettered_and_fails_its_strike(amqp_url, prefix, home, tmp_path):
    from workers.rabbitmq.topology import DELIVERY_LIMIT

    poison, good = strike(x=1, crash=True), strike(x=5)
    observer = Observer(amqp_url, prefix, ["strike.failed.*", "strike.completed.*"])
    with RabbitPublisher(amqp_url, prefix=prefix) as pub:
        pub.publish(poison)
        pub.publish(good)
    deaths = 0
    while True:  # a supervisor restarting the worker each time the message kills it
        worker = subprocess.Popen([sys.executable, __file__, "--broker", amqp_url, "--prefix", prefix,
                                   "--log-dir", str(tmp_path)], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        try:
            seen = observer.collect(lambda s: len(s) == 2 or worker.poll() is not None, timeout=30)
        finally:
            stop(worker)
        if len(seen) == 2:
            break
        deaths += 1
        assert deaths <= DELIVERY_LIMIT, "the message was never given up"
    assert deaths == DELIVERY_LIMIT
    by_id = {m.strike_id: m for m in seen}
    assert by_id[good.strike_id].type == "strike.completed"
    failed = by_id[poison.strike_id]
    assert failed.type == "strike.failed" and "died before acknowledging" in failed.body.reason
    assert store.get_strike(poison.strike_id)["status"] == "failed"
    conn, ch = channel_for(amqp_url)
    method, props, body = ch.basic_get(f"{prefix}.optimizer.dead", auto_ack=True)
    conn.close()
    assert decode(body).strike_id == poison.strike_id and "died before acknowledging" in props.headers["x-error"]
    observer.close()


def test_competing_worker_processes_share_the_work_and_each_strike_completes_once(amqp_url, prefix, home, tmp_path):
    observer = Observer(amqp_url, prefix, ["strike.completed.*", "strike.failed.*"])
    strikes = [strike(x=x, sleep=0.05) for x in range(20)]
    workers = [start_worker(amqp_url, prefix, tmp_path, "--concurrency", "2") for _ in range(2)]
    try:
        with RabbitPublisher(amqp_url, prefix=prefix) as pub:
            for m in strikes:
                pub.publish(m)
        seen = observer.collect(lambda s: len(s) >= 20)
        for w in workers:
            w.send_signal(signal.SIGTERM)
        assert [w.wait(20) for w in workers] == [0, 0]
    finally:
        for w in workers:
            stop(w)
        observer.close()
    assert sorted(m.strike_id for m in seen) == sorted(m.strike_id for m in strikes)
    assert all(m.type == "strike.completed" for m in seen)
    done = [e for e in handler_log(tmp_path) if e[0] == "done"]
    assert sorted(e[1] for e in done) == sorted(m.strike_id for m in strikes)  # once each
    assert len({e[2] for e in done}) == 2  # both processes took work


@pytest.fixture()
def vhost(amqp_url):
    """A throw-away vhost, so that closing all its connections touches nobody else."""
    if not os.path.exists(RABBITMQCTL):
        pytest.skip("rabbitmqctl is not installed here")
    with throwaway_vhost(amqp_url, "ivtest") as (_name, url):
        yield url


def test_workers_reconnect_when_the_broker_closes_all_connections(vhost, home, tmp_path):
    prefix = "ivtest"
    observer = Observer(vhost, prefix, ["strike.completed.*"])
    strikes = [strike(x=x, sleep=0.2) for x in range(8)]
    worker = start_worker(vhost, prefix, tmp_path, "--concurrency", "2")
    try:
        with RabbitPublisher(vhost, prefix=prefix) as pub:
            for m in strikes:
                pub.publish(m)
        observer.collect(lambda s: len(s) >= 1)
        close_all_connections(vhost.rsplit("/", 1)[1])
        seen = observer.collect(lambda s: {m.strike_id for m in s} >= {m.strike_id for m in strikes})
        assert worker.poll() is None  # survived
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(20) == 0
    finally:
        stop(worker)
    assert "reconnecting" in Path(worker.log_path).read_text()
    by_strike = {m.strike_id: m for m in seen}
    assert [by_strike[m.strike_id].body.activity_id for m in strikes] == [f"act-{2 * x + 1}" for x in range(8)]
    # a duplicate outcome after a lost ack is the stored one, never a second result
    for m in seen:
        assert m == by_strike[m.strike_id]


def test_request_times_out_with_an_infrastructure_error(amqp_url, prefix, home):
    with pytest.raises(InfrastructureError, match="no outcome of strike .* within 0.5 s: request cancelled"):
        request(strike(x=1), url=amqp_url, prefix=prefix, timeout=0.5)


def test_unreachable_broker_is_an_infrastructure_error(home):
    with pytest.raises(InfrastructureError, match="cannot reach the broker at amqp://guest:\\*\\*\\*@127.0.0.1:1/"):
        request(strike(x=1), url="amqp://guest:guest@127.0.0.1:1/%2F", timeout=1)


# --- this file as a worker process --------------------------------------------------------------
def _worker_main() -> int:
    from workers.worker import run_workers

    parser = argparse.ArgumentParser()
    parser.add_argument("--broker", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--log-dir", type=Path, required=True)
    parser.add_argument("--kinds", default="optimizer,simulator")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--metrics-port", type=int)
    parser.add_argument("--kill-after-store", type=Path, help="SIGKILL this process right after the first stage result is stored")
    args = parser.parse_args()
    if args.kill_after_store:
        put = store.put_stage_result

        def put_then_die(*a, **kw):
            stored = put(*a, **kw)
            args.kill_after_store.touch()
            os.kill(os.getpid(), signal.SIGKILL)
            return stored

        store.put_stage_result = put_then_die
    return run_workers(args.kinds.split(","), args.broker, args.concurrency, args.metrics_port,
                       registry=make_actors(log_dir=args.log_dir), prefix=args.prefix, policy=FAST, grace=10)


if __name__ == "__main__":
    sys.exit(_worker_main())


def test_the_store_answers_for_a_strike_that_failed_without_a_stage_result(home):
    from workers.rabbitmq.client import outcome_from_store

    store.record_strike("s-lost", status="requested")
    assert outcome_from_store("s-lost") is None
    store.update_strike("s-lost", status="failed", reason="optimizer: not valid JSON")
    found = outcome_from_store("s-lost")
    assert found.type == "strike.failed" and found.body.stage == "optimizer" and found.body.reason == "not valid JSON"
