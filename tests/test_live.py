"""The live loop against the real Mosquitto broker: the emulated plant and the operate daemon as processes.

Plant time runs hundreds of times faster than the wall clock, horizons are a few hours and
ensembles small, so each test takes seconds.  Every test uses its own site (topics) and data
directory.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest

pytestmark = pytest.mark.mqtt

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "hvac_testcase1.json"


def _env(home: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), INDUSTRIVERSE_HOME=str(home), INDUSTRIVERSE_LOG_FORMAT="json",
               INDUSTRIVERSE_LOG_LEVEL="INFO")
    for key in ("INDUSTRIVERSE_DB_URL", "INDUSTRIVERSE_AMQP_URL", "INDUSTRIVERSE_MQTT_URL"):
        env.pop(key, None)
    return env


def _site() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def _constraint(tmp_path: Path, hours: float = 3.0) -> Path:
    raw = json.loads(EXAMPLE.read_text())
    raw["horizon"]["hours"] = hours
    raw["uncertainty"]["ensemble_size"] = 60  # the fewest that can pass a 5 % chance constraint at 95 % confidence
    path = tmp_path / "hvac.json"
    path.write_text(json.dumps(raw))
    return path


def _contracts(tmp_path: Path, replan_minutes: float = 30.0, hours: float = 3.0) -> Path:
    _constraint(tmp_path, hours)
    path = tmp_path / "contracts.yaml"
    path.write_text("contracts:\n  - id: live-test\n    client: Live test\n    domain: hvac\n    constraint: hvac.json\n"
                    f"    schedule: {{every_minutes: 60}}\n    replan_minutes: {replan_minutes}\n")
    return path


class Watcher:
    """Everything published under ``industriverse/<site>/`` while the test runs, decoded."""

    def __init__(self, url: str, site: str):
        import paho.mqtt.client as mqtt

        self.site, self.lock, self.messages = site, threading.Lock(), []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:8]}")
        ready = threading.Event()
        self.client.on_connect = lambda c, *_: (c.subscribe(f"industriverse/{site}/#", qos=1), ready.set())
        self.client.on_message = self._on_message
        host, port = url.split("//")[1].split(":")
        self.client.connect(host, int(port))
        self.client.loop_start()
        assert ready.wait(10)
        time.sleep(0.2)

    def _on_message(self, client, userdata, msg):
        try:
            body = json.loads(msg.payload)
        except ValueError:
            body = None
        with self.lock:
            self.messages.append((msg.topic.split("/", 2)[2], body))

    def of(self, kind: str) -> list[dict]:
        with self.lock:
            return [b for k, b in self.messages if k == kind and isinstance(b, dict)]

    def wait(self, predicate, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = predicate()
            if result:
                return result
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")

    def publish(self, kind: str, payload: bytes | dict, qos: int = 1):
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.client.publish(f"industriverse/{self.site}/{kind}", data, qos=qos).wait_for_publish(5)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def _start(args: list[str], home: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cli.main", *args], cwd=REPO, env=_env(home),
                            stdout=subprocess.DEVNULL, stderr=log.open("ab"))


def _events(log: Path) -> list[dict]:
    out = []
    for line in log.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def _stop(proc: subprocess.Popen, sig=signal.SIGTERM, timeout: float = 20.0) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    return proc.wait(timeout)


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.fixture()
def live(tmp_path, mqtt_url):
    """(site, home, watcher, processes list); every process is stopped at the end."""
    site, home = _site(), tmp_path / "home"
    home.mkdir()
    watcher = Watcher(mqtt_url, site)
    procs: list[subprocess.Popen] = []
    yield site, home, watcher, procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(10)
    watcher.close()


def test_plant_follows_setpoints_then_falls_back_when_they_go_stale(tmp_path, mqtt_url, live):
    site, home, w, procs = live
    log = tmp_path / "plant.log"
    procs.append(_start(["plant", "--site", site, "--constraint_json", str(_constraint(tmp_path)), "--mismatch", "0",
                         "--speedup", "900", "--hours", "1", "--mqtt", mqtt_url], home, log))
    w.wait(lambda: w.of("telemetry"), 30, "the first reading")
    # act as the operator for the first 20 plant minutes: full heat, each order valid 5 minutes
    answered = set()
    while True:
        readings = w.of("telemetry")
        last = readings[-1]
        if _t(last["time"]) >= datetime(2026, 1, 13, 0, 20):
            break
        if last["step"] not in answered:
            answered.add(last["step"])
            w.publish("setpoints", {"site": site, "time": last["time"], "mode": "capsule",
                                    "valid_until": (_t(last["time"]) + timedelta(minutes=5)).isoformat(),
                                    "capsule_version": 7, "actuators": {"heater": 10.0}})
        time.sleep(0.01)
    assert procs[0].wait(30) == 0
    readings = {r["step"]: r for r in w.of("telemetry")}
    assert sorted(readings) == list(range(1, 61))
    followed = [r for r in readings.values() if r["controller"] == "setpoints"]
    assert len(followed) >= 10 and all(r["actuators"]["heater"] == 10.0 and r["setpoint_version"] == 7 for r in followed)
    # full heat drives the zone far above where the baseline holds it (lower band 21 + 0.5 K offset)
    assert max(r["nodes"]["zone"] for r in followed) > 23.0
    last_order = max(_t(r["time"]) for r in followed)
    stale = [r for r in readings.values() if _t(r["time"]) > last_order + timedelta(minutes=6)]
    assert stale and all(r["controller"] == "baseline" and r["setpoint_version"] is None for r in stale)
    assert any("set-points stale" in (e.get("reason") or "") for e in _events(log))
    # the baseline brings the zone back down towards its set-point
    assert readings[60]["nodes"]["zone"] < max(r["nodes"]["zone"] for r in followed) - 0.5
    assert w.of("status")[-1]["state"] == "offline"


def test_operate_dispatches_replans_supersede_and_malformed_telemetry_is_skipped(tmp_path, mqtt_url, live):
    site, home, w, procs = live
    contracts = _contracts(tmp_path, replan_minutes=20)
    op_log, plant_log = tmp_path / "operate.log", tmp_path / "plant.log"
    procs.append(_start(["operate", "--site", site, "--contracts", str(contracts), "--contract", "live-test",
                         "--mqtt", mqtt_url], home, op_log))
    w.wait(lambda: any(s.get("state") == "online" for s in w.of("status/operator")), 30, "operate online")
    procs.append(_start(["plant", "--site", site, "--constraint_json", str(tmp_path / "hvac.json"), "--speedup", "300",
                         "--hours", "4", "--mqtt", mqtt_url], home, plant_log))
    w.wait(lambda: any(r.get("controller") == "setpoints" for r in w.of("telemetry")), 120, "the plant following set-points")
    for bad in (b"not json", b'{"site": "%s", "time": "yesterday"}' % site.encode(),
                json.dumps({"site": site, "time": "2026-01-13T00:30", "step": 1, "nodes": {"zone": "warm"},
                            "power_kw": 1}).encode()):
        w.publish("telemetry", bad)
    # the machine's load sets how long a strike takes: wait for a re-plan to take over, then stop
    w.wait(lambda: len({r["setpoint_version"] for r in w.of("telemetry") if r.get("controller") == "setpoints"}) >= 2,
           150, "a re-plan taking over")
    assert _stop(procs[1]) == 0
    time.sleep(0.5)
    n_answers = len(w.of("setpoints"))
    assert _stop(procs[0]) == 0

    readings = [r for r in w.of("telemetry") if "controller" in r]  # the plant's, not our malformed ones
    versions = [r["setpoint_version"] for r in readings if r["controller"] == "setpoints"]
    assert len(set(versions)) >= 2, f"no re-plan took over: versions {set(versions)}"
    assert versions == sorted(versions)  # a newer capsule supersedes, never the other way round
    # the plant ran on our set-points most of the time once the first capsule was in
    first = next(i for i, r in enumerate(readings) if r["controller"] == "setpoints")
    assert sum(r["controller"] == "setpoints" for r in readings[first:]) >= 0.9 * len(readings[first:])
    events = _events(op_log)
    assert sum(e["event"] == "re-plan requested" for e in events) >= 2
    malformed = [e for e in events if e["event"] == "malformed telemetry skipped"]
    assert len(malformed) == 3
    # the daemon kept answering after the malformed messages: one set-point per good reading
    assert n_answers >= len(readings) - 2
    # the re-plans rolled the horizon and started from the estimate, and the gateway recorded the supersessions
    requests = [e for e in events if e["event"] == "re-plan requested"]
    assert requests[1]["horizon_start"] > requests[0]["horizon_start"]
    from industriverse.operate.gateway import CapsuleGatewayService

    gw = CapsuleGatewayService(f"sqlite:///{home / 'industriverse.db'}")
    assert len(gw.list_activities(activity_type="supersede")) >= 1
    assert any(e["event"] == "operate stopped" for e in events)
    assert w.of("status/operator")[-1]["state"] == "offline"


def test_door_open_alerts_and_a_rollback_the_plant_obeys(tmp_path, mqtt_url, live):
    site, home, w, procs = live
    contracts = _contracts(tmp_path, replan_minutes=120)
    op_log = tmp_path / "operate.log"
    procs.append(_start(["operate", "--site", site, "--contracts", str(contracts), "--contract", "live-test",
                         "--mqtt", mqtt_url], home, op_log))
    w.wait(lambda: any(s.get("state") == "online" for s in w.of("status/operator")), 30, "operate online")
    procs.append(_start(["plant", "--site", site, "--constraint_json", str(tmp_path / "hvac.json"), "--speedup", "150",
                         "--hours", "2.5", "--fault", "door_open@1", "--mqtt", mqtt_url], home, tmp_path / "plant.log"))
    rollback = w.wait(lambda: [s for s in w.of("setpoints") if s["mode"] == "baseline" and "rollback" in (s["reason"] or "")],
                      120, "a rollback on the set-points")[0]
    after = w.wait(lambda: [r for r in w.of("telemetry") if _t(r["time"]) > _t(rollback["time"]) + timedelta(minutes=2)],
                   30, "readings after the rollback")
    _stop(procs[1])
    _stop(procs[0])
    readings = w.of("telemetry")
    before = [r for r in readings if _t(r["time"]) < _t(rollback["time"])]
    assert any(r["controller"] == "setpoints" for r in before), "the capsule never ran before the fault"
    assert all("door_open@1" in r["faults"] for r in after)
    assert after[0]["controller"] == "baseline" and after[0]["setpoint_version"] is None
    from industriverse.operate.gateway import CapsuleGatewayService

    gw = CapsuleGatewayService(f"sqlite:///{home / 'industriverse.db'}")
    alerts = gw.list_activities(activity_type="alert")
    assert any(a["payload"].get("kind") == "envelope" and a["payload"].get("severity") == "hard" for a in alerts)
    rollbacks = gw.list_activities(activity_type="rollback")
    assert rollbacks and "runtime monitor" in rollbacks[0]["payload"]["reason"]
    events = _events(op_log)
    assert any(e["event"] == "rolled back: the site returns to its baseline" for e in events)


def test_sigkill_and_restart_resumes_within_one_step(tmp_path, mqtt_url, live):
    site, home, w, procs = live
    contracts = _contracts(tmp_path, replan_minutes=240)
    op_args = ["operate", "--site", site, "--contracts", str(contracts), "--contract", "live-test", "--mqtt", mqtt_url]
    op_log = tmp_path / "operate.log"
    procs.append(_start(op_args, home, op_log))
    w.wait(lambda: any(s.get("state") == "online" for s in w.of("status/operator")), 30, "operate online")
    # 40x: one 15-minute step is 22 s of wall clock, room for a restart on a loaded machine
    procs.append(_start(["plant", "--site", site, "--constraint_json", str(tmp_path / "hvac.json"), "--speedup", "40",
                         "--hours", "2", "--mqtt", mqtt_url], home, tmp_path / "plant.log"))
    w.wait(lambda: sum(r["controller"] == "setpoints" for r in w.of("telemetry")) >= 3, 150, "the plant following set-points")
    procs[0].kill()
    procs[0].wait(10)
    killed_at = w.of("setpoints")[-1]
    w.wait(lambda: w.of("status/operator")[-1]["state"] == "offline", 30, "the last will of the killed daemon")
    procs.append(_start(op_args, home, op_log))
    resumed = w.wait(lambda: [s for s in w.of("setpoints") if _t(s["time"]) > _t(killed_at["time"])], 60,
                     "set-points from the restarted daemon")[0]
    gap = _t(resumed["time"]) - _t(killed_at["time"])
    assert gap <= timedelta(minutes=15), f"set-points stopped for {gap} of plant time (one step is 15 min)"
    assert resumed["mode"] == "capsule" and resumed["capsule_version"] == killed_at["capsule_version"]
    # the plant never fell back: the last order was still valid when the restarted daemon answered
    w.wait(lambda: [r for r in w.of("telemetry") if _t(r["time"]) > _t(resumed["time"])], 30, "a reading after resuming")
    _stop(procs[1])
    _stop(procs[2])
    readings = w.of("telemetry")
    first = next(i for i, r in enumerate(readings) if r["controller"] == "setpoints")
    assert all(r["controller"] == "setpoints" for r in readings[first:])
    assert any(e["event"] == "resumed from the store" for e in _events(op_log))
