"""The runtime monitor and the twin: a clean run raises no alert; a fault raises alerts and a rollback.

A real strike (optimizer, simulator, shield, signed proof) is packed into a capsule and deployed on
the gateway (SQLite in the test's data directory); the twin writes telemetry of that capsule and
the monitor reads it back.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from industriverse.model.mapping import load_problem
from industriverse.plan.optimize import optimize
from industriverse.verify.simulate import simulate
from industriverse.plan.tracking import noise_backoff

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CLEAN_SEED = 0  # a healthy run raises a (soft) band alert with probability ~1-3 %; seed 0 is one of the others


def deployed_capsule(run_dir: Path, domain: str = "hvac", example: str = "hvac_testcase1") -> tuple[Path, str]:
    """Run, verify, pack and deploy a real strike; returns (manifest path, deployment activity ID)."""
    from cli.deploy_sovereign_dac import main as deploy
    from cli.verify_safety_compliance import main as verify
    from industriverse.trust.capsule import pack_capsule
    from industriverse.operate.gateway import CapsuleGatewayService

    problem = load_problem(domain, EXAMPLES / f"{example}.json")
    opt = optimize(problem.with_backoff(noise_backoff(problem, 1.5)), "auto", 0, request_dir=str(EXAMPLES))
    u = np.column_stack([opt["plan"][a] for a in problem.actuators])
    sim = simulate(problem, u, ensemble_size=60, seed=0, request_dir=str(EXAMPLES))
    run_dir.mkdir(parents=True)
    (run_dir / "optimization.json").write_text(json.dumps(opt))
    (run_dir / "simulation.json").write_text(json.dumps(sim))
    assert verify(["--plan", str(run_dir / "optimization.json"), "--simulation", str(run_dir / "simulation.json"),
                   "--output_dir", str(run_dir)]) == 0
    manifest = pack_capsule(run_dir)
    assert deploy(["--manifest", str(manifest)]) == 0
    deployment = CapsuleGatewayService().active_deployment(capsule_id(manifest))
    return manifest, deployment["deployment_activity_id"]


def twin(manifest: Path, out: Path, *args: str) -> Path:
    from cli.twin import main

    assert main(["--manifest", str(manifest), "--output", str(out), *args]) == 0
    return out


def monitor(manifest: Path, telemetry: Path, *args: str) -> int:
    from cli.monitor import main

    return main(["--manifest", str(manifest), "--telemetry", str(telemetry), *args])


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture()
def gateway(home):
    from industriverse.operate.gateway import CapsuleGatewayService

    return CapsuleGatewayService()


def capsule_id(manifest: Path) -> str:
    import yaml

    return yaml.safe_load(manifest.read_text())["id"]


def test_deploy_arms_the_monitor(home, tmp_path, gateway):
    manifest, activity = deployed_capsule(tmp_path / "run")
    config = gateway.get_activity(activity)["payload"]["monitor"]
    assert config["capsule_id"] == capsule_id(manifest) and config["consecutive"] == 3
    assert config["activity_id"] == activity
    assert config["x_lo"][1] == [21.0] and config["x_hi"][1] == [24.0]  # the client's envelope, not the back-off
    assert config["band_lo"] is not None and config["band_factor"] > 1.0
    assert config["energy_budget_kwh"] > 0 and config["energy_allowance_kwh"] > 0


def test_clean_run_raises_no_alert(home, tmp_path, gateway, capsys):
    manifest, activity = deployed_capsule(tmp_path / "run")
    telemetry = twin(manifest, tmp_path / "clean.jsonl", "--seed", str(CLEAN_SEED))
    readings = read_lines(telemetry)
    assert len(readings) == 96 and set(readings[0]) == {"time", "step", "nodes", "power_kw", "faults"}
    assert readings[0]["time"] == "2026-01-13T00:15" and readings[-1]["step"] == 96
    assert monitor(manifest, telemetry) == 0
    assert "no breach: 96 readings" in capsys.readouterr().out
    assert gateway.list_activities(activity_type="alert") == []
    assert gateway.get_activity(activity)["status"] == "active"


def test_door_open_alerts_and_rolls_back(home, tmp_path, gateway, capsys):
    manifest, activity = deployed_capsule(tmp_path / "run")
    telemetry = twin(manifest, tmp_path / "door.jsonl", "--seed", str(CLEAN_SEED), "--fault", "door_open@6")
    readings = read_lines(telemetry)
    assert readings[23]["faults"] == [] and readings[24]["faults"] == ["door_open@6"]
    assert min(r["nodes"]["zone"] for r in readings[24:]) < 21.0  # the door breaks the envelope
    assert monitor(manifest, telemetry) == 1
    out = capsys.readouterr().out
    assert "ROLLBACK" in out and "rolled back" in out
    cid = capsule_id(manifest)
    alerts = gateway.list_activities(cid, activity_type="alert")
    kinds = {a["payload"]["kind"] for a in alerts}
    assert "envelope" in kinds
    first = min(alerts, key=lambda a: a["payload"]["step"])
    assert first["payload"]["step"] >= 24 and first["payload"]["severity"] in ("hard", "soft")
    rollbacks = gateway.list_activities(cid, activity_type="rollback")
    assert len(rollbacks) == 1 and "consecutive readings with hard breaches" in rollbacks[0]["payload"]["reason"]
    assert gateway.active_version(cid) is None  # nothing earlier to restore: the site's baseline runs
    assert gateway.get_activity(activity)["status"] == "rolled_back"


def test_rollback_restores_the_previous_version(home, tmp_path, gateway):
    first, first_activity = deployed_capsule(tmp_path / "run1")
    second, second_activity = deployed_capsule(tmp_path / "run2")  # a later strike for the same client
    cid = capsule_id(second)
    assert capsule_id(first) == cid and gateway.get_activity(first_activity)["status"] == "superseded"
    telemetry = twin(second, tmp_path / "door.jsonl", "--fault", "door_open@2")
    assert monitor(second, telemetry) == 1
    assert gateway.get_activity(second_activity)["status"] == "rolled_back"
    assert gateway.get_activity(first_activity)["status"] == "active"
    assert gateway.active_deployment(cid)["deployment_activity_id"] == first_activity


def test_consecutive_breaches_before_rollback(home, tmp_path, gateway):
    manifest, activity = deployed_capsule(tmp_path / "run")
    telemetry = twin(manifest, tmp_path / "door.jsonl", "--fault", "door_open@20")
    assert monitor(manifest, telemetry, "--consecutive", "100") == 1  # alerts, but never 100 breaches in a row
    cid = capsule_id(manifest)
    assert gateway.list_activities(cid, activity_type="alert")
    assert gateway.list_activities(cid, activity_type="rollback") == []
    assert gateway.get_activity(activity)["status"] == "active"


def test_sensor_stuck_is_noticed(home, tmp_path, gateway):
    manifest, _ = deployed_capsule(tmp_path / "run")
    telemetry = twin(manifest, tmp_path / "stuck.jsonl", "--fault", "sensor_stuck@4")
    zone = [r["nodes"]["zone"] for r in read_lines(telemetry)]
    assert len(set(zone[15:])) == 1 and zone[14] != zone[15]  # frozen at its 04:00 reading
    assert monitor(manifest, telemetry) == 1
    kinds = [a["payload"]["kind"] for a in gateway.list_activities(capsule_id(manifest), activity_type="alert")]
    assert kinds[0] == "sensor_stuck"


def test_energy_overrun_is_a_hard_breach(home, tmp_path, gateway):
    from industriverse.operate.monitor import ThermodynamicRuntimeMonitor, armed_config

    manifest, _ = deployed_capsule(tmp_path / "run")
    config, deployment = armed_config(gateway, manifest)
    assert deployment is not None
    mon = ThermodynamicRuntimeMonitor(config, gateway)
    clean = read_lines(twin(manifest, tmp_path / "clean.jsonl", "--seed", str(CLEAN_SEED)))
    for reading in clean[:40]:  # the heater at full power from the start, temperatures as planned
        obs = mon.observe(dict(reading, power_kw=10.0 / 0.99))
        if obs.rollback:
            break
    assert mon.stopped and mon.rollback_id is not None
    assert {a["kind"] for a in mon.alerts} == {"energy"}


def test_twin_is_reproducible_and_checks_its_faults(home, tmp_path, capsys):
    from cli.twin import main as twin_cli

    manifest, _ = deployed_capsule(tmp_path / "run")
    a = twin(manifest, tmp_path / "a.jsonl", "--seed", "7").read_text()
    b = twin(manifest, tmp_path / "b.jsonl", "--seed", "7").read_text()
    c = twin(manifest, tmp_path / "c.jsonl", "--seed", "8").read_text()
    assert a == b and a != c
    for bad, says in [("door_open", "NAME@HOUR"), ("window_open@3", "unknown fault"), ("door_open@30", "outside"),
                      ("sensor_stuck@3:attic", "unknown node"), ("heater_failure@3:boiler", "unknown actuator")]:
        assert twin_cli(["--manifest", str(manifest), "--output", str(tmp_path / "x.jsonl"), "--fault", bad]) == 2
        assert says in capsys.readouterr().err


def test_heater_failure_breaks_the_envelope(home, tmp_path, gateway):
    manifest, _ = deployed_capsule(tmp_path / "run")
    telemetry = twin(manifest, tmp_path / "fail.jsonl", "--fault", "heater_failure@1")
    readings = read_lines(telemetry)
    assert min(r["power_kw"] for r in readings[4:]) == 0.0
    assert monitor(manifest, telemetry) == 1
    assert gateway.list_activities(capsule_id(manifest), activity_type="rollback")


def test_monitor_bad_input(home, tmp_path, capsys):
    manifest, _ = deployed_capsule(tmp_path / "run")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"time": "2026-01-13T00:15", "nodes": {"zone": 21.1}, "power_kw": 2}\n{oops\n')
    assert monitor(manifest, bad) == 2
    assert "bad.jsonl line 2" in capsys.readouterr().err
    bad.write_text('{"time": "2026-01-13T00:15", "nodes": {"attic": 21.1}, "power_kw": 2}\n')
    assert monitor(manifest, bad) == 2
    assert "nodes.attic" in capsys.readouterr().err
    bad.write_text('{"nodes": {"zone": 21.1}}\n')
    assert monitor(manifest, bad) == 2
    assert "field 'time'" in capsys.readouterr().err
    assert monitor(manifest, tmp_path / "none.jsonl") == 2


def test_monitor_refuses_a_capsule_that_is_not_deployed(home, tmp_path, capsys):
    from cli.verify_safety_compliance import main as verify
    from industriverse.trust.capsule import pack_capsule

    manifest, _ = deployed_capsule(tmp_path / "run")
    other = tmp_path / "other"
    other.mkdir()
    for name in ("optimization.json", "simulation.json"):
        (other / name).write_text((tmp_path / "run" / name).read_text())
    assert verify(["--plan", str(other / "optimization.json"), "--simulation", str(other / "simulation.json"),
                   "--output_dir", str(other)]) == 0
    undeployed = pack_capsule(other)
    telemetry = twin(undeployed, tmp_path / "t.jsonl")
    assert monitor(undeployed, telemetry) == 2
    assert "is not deployed" in capsys.readouterr().err


def test_stuck_sensor_detection_can_be_turned_off(home, tmp_path, gateway):
    manifest, _ = deployed_capsule(tmp_path / "run")
    clean = read_lines(twin(manifest, tmp_path / "clean.jsonl", "--seed", str(CLEAN_SEED)))
    frozen = tmp_path / "frozen.jsonl"
    # a sensor that repeats a value that lies inside every limit: only the stuck detector can notice
    value = clean[60]["nodes"]["zone"]  # 15:15-16:30: the plan holds the zone near 21.1 °C
    frozen.write_text("".join(json.dumps(dict(r, nodes={"zone": value})) + "\n" for r in clean[60:66]))
    assert monitor(manifest, frozen, "--stuck-readings", "0") == 0
    assert monitor(manifest, frozen) == 1
    assert [a["payload"]["kind"] for a in gateway.list_activities(activity_type="alert")] == ["sensor_stuck"]
