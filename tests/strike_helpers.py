"""Helpers of the strike tests: small real constraints, real worker processes, broker probes."""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pika

from workers.middleware import RetryPolicy
from workers.rabbitmq.consumer import RabbitBus
from workers.rabbitmq.topology import Topology

ROOT = Path(__file__).resolve().parents[1]
FAST = RetryPolicy(max_attempts=3, base_delay=0.05, max_delay=0.2)  # retries for broker tests
RABBITMQCTL = "/usr/sbin/rabbitmqctl"
EXAMPLES = {
    "hvac": "hvac_testcase1.json",
    "hvac_two_zone": "hvac_two_zone_office.json",
    "cold_storage": "cold_storage_display_case.json",
    "microgrid": "microgrid_pv_battery.json",
}


def example(domain: str, *, ensemble: int = 40, hours: float | None = None) -> dict:
    """The shipped example of ``domain`` with a smaller ensemble (and horizon) for test speed."""
    raw = json.loads((ROOT / "examples" / EXAMPLES[domain]).read_text())
    raw.setdefault("uncertainty", {})["ensemble_size"] = ensemble
    if hours is not None:
        raw["horizon"]["hours"] = hours
    return raw


def one_zone_heater() -> dict:
    """A one-zone building (1 MJ/K, 100 W/K to "ambient", a 10 kW heater, band 20-24 °C, 21 °C at the
    start): the ``network``, ``initial_state`` and ``envelope`` of a constraint, for tests of the inputs."""
    return {
        "network": {"nodes": [{"name": "zone", "capacity_j_per_k": 1e6}],
                    "boundaries": [{"name": "ambient", "disturbance": "ambient"}],
                    "conductances": [{"between": ["zone", "ambient"], "w_per_k": 100.0}],
                    "actuators": [{"name": "heater", "node": "zone", "kind": "heater", "max_kw": 10.0}]},
        "initial_state": {"zone": 21.0},
        "envelope": {"zone": {"min": 20.0, "max": 24.0}},
    }


def write_constraint(tmp_path: Path, raw: dict, name: str = "constraint.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(raw))
    return path


def queue_state(url: str, queue: str) -> tuple[int, int]:
    """(ready messages, consumers) of ``queue``."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        ok = conn.channel().queue_declare(queue, passive=True).method
        return ok.message_count, ok.consumer_count
    finally:
        with contextlib.suppress(pika.exceptions.AMQPError):
            conn.close()


def drain(url: str, queue: str) -> list[tuple[pika.BasicProperties, bytes]]:
    """Take every message waiting in ``queue``: (properties, body) each."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        ch = conn.channel()
        taken = []
        while (got := ch.basic_get(queue, auto_ack=True))[0] is not None:
            taken.append(got[1:])
        return taken
    finally:
        conn.close()


def delete_topology(url: str, prefix: str) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        Topology(prefix).delete(conn.channel())
    finally:
        conn.close()


def optimizer_consumers(url: str, prefix: str) -> int:
    """Consumers of the optimizer queue (0 while it is not declared yet)."""
    try:
        return queue_state(url, f"{prefix}.optimizer")[1]
    except pika.exceptions.ChannelClosedByBroker:
        return 0


def spawn_worker(argv: list[str], url: str, prefix: str, log_path: Path, timeout: float, **popen) -> subprocess.Popen:
    """Start the worker process ``argv`` (stderr to ``log_path``, kept as ``proc.log_path``);
    return it once one more consumer reads the optimizer queue."""
    before = optimizer_consumers(url, prefix)
    err = open(log_path, "w")
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, **popen)
    proc.log_path = err.name  # type: ignore[attr-defined]
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, Path(err.name).read_text()[-3000:]
        if optimizer_consumers(url, prefix) > before:
            return proc
        assert time.monotonic() < deadline, "worker did not start consuming"
        time.sleep(0.1)


def start_workers(url: str, prefix: str, log_dir: Path, concurrency: int = 1) -> subprocess.Popen:
    """A real ``industriverse worker all`` process; returns once it consumes from the optimizer queue."""
    log_dir.mkdir(parents=True, exist_ok=True)
    return spawn_worker([sys.executable, "-m", "cli.main", "worker", "all", "--broker", url, "--prefix", prefix,
                         "--concurrency", str(concurrency), "--grace", "20"],
                        url, prefix, log_dir / f"worker-{uuid.uuid4().hex[:6]}.log", timeout=60,
                        cwd=ROOT, env={**os.environ, "INDUSTRIVERSE_LOG_LEVEL": "INFO"})


def stop_workers(*procs: subprocess.Popen) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)


def wait_for(predicate, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@contextlib.contextmanager
def throwaway_vhost(amqp_url: str, label: str):
    """A new vhost for the guest user, deleted afterwards (so that closing all its connections
    touches no other test); yields ``(name, url)``."""
    name = f"{label}-{uuid.uuid4().hex[:10]}"
    subprocess.run([RABBITMQCTL, "add_vhost", name], check=True, capture_output=True)
    subprocess.run([RABBITMQCTL, "set_permissions", "-p", name, "guest", ".*", ".*", ".*"], check=True, capture_output=True)
    try:
        yield name, amqp_url.rsplit("/", 1)[0] + "/" + name
    finally:
        subprocess.run([RABBITMQCTL, "delete_vhost", name], check=True, capture_output=True)


def close_all_connections(vhost: str) -> None:
    """The broker closes every connection of ``vhost`` (an outage as the workers see it)."""
    closed = subprocess.run([RABBITMQCTL, "close_all_connections", "--vhost", vhost, "test: broker goes away"],
                            capture_output=True, text=True)
    assert closed.returncode == 0, closed.stderr


@contextlib.contextmanager
def running(bus: RabbitBus):
    """Run ``bus`` on a background thread while the block runs."""
    thread = threading.Thread(target=bus.run, daemon=True)
    thread.start()
    assert bus.connected.wait(15), "worker did not connect"
    try:
        yield bus
    finally:
        bus.stop()
        thread.join(20)
        assert not thread.is_alive()
