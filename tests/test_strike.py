"""The whole cascade with the five real workers: embedded bus, RabbitMQ, and the strike script."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from industriverse.fleet import store
from industriverse.operate.gateway import CapsuleGatewayService
from messages import Message, StrikeRequested
from strike_helpers import EXAMPLES, ROOT, example, start_workers, stop_workers, write_constraint
from workers.actor import load_actors
from workers.embedded import EmbeddedBus
from workers.rabbitmq.client import request as broker_request


def _strike(domain: str, raw: dict) -> Message:
    return Message.start(StrikeRequested(domain=domain, constraint=raw, seed=3, backoff_k=1.0))


def _figures(outcome: Message) -> dict:
    """What must not depend on the bus: the plan, the proof's figures, the value figures."""
    body = outcome.body
    proof = store.get_json_artifact(body.proof_ref)
    value = store.get_json_artifact(body.value_ref)
    return {
        "outcome": body.outcome,
        "plan_sha256": proof["plan_sha256"],
        "inputs_sha256": proof["inputs_sha256"],
        "optimizer": proof["optimizer"],
        "simulation": proof["simulation"],
        "shield": proof["shield"],
        "kpis": proof["kpis"],
        "value": {k: value[k] for k in ("energy_saved_kwh", "cost_saved", "emissions_saved_kg", "stability_score")},
    }


@pytest.mark.broker
def test_every_example_gives_identical_results_on_both_buses(amqp_url, prefix, home, tmp_path):
    worker = start_workers(amqp_url, prefix, tmp_path)
    try:
        for domain in EXAMPLES:
            raw = example(domain, ensemble=100)
            embedded = EmbeddedBus(load_actors(["all"])).request(_strike(domain, raw))
            assert embedded.type == "strike.completed", embedded.body
            distributed = broker_request(_strike(domain, raw), url=amqp_url, prefix=prefix, timeout=120)
            assert distributed.type == "strike.completed", distributed.body
            assert _figures(embedded) == _figures(distributed), domain
            # the two-zone office deploys because the planner holds its 18:00 band change between the samples
            assert embedded.body.outcome == "deployed", embedded.body.reasons
    finally:
        stop_workers(worker)
    deployments = CapsuleGatewayService().list_activities(activity_type="deployment")
    # every strike is a new signed version of its client's capsule: one deployment each
    assert len({a["id"] for a in deployments}) == 2 * len(EXAMPLES)


def _run_cli(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "cli" / "run_client_strike_loop.py"), *args],
                          cwd=cwd, capture_output=True, text=True, timeout=300)


def test_strike_script_deploys_and_writes_the_run_directory(home, tmp_path):
    path = write_constraint(tmp_path, example("hvac", ensemble=100))
    out = tmp_path / "run"
    done = _run_cli("--domain", "hvac", "--constraint_json", str(path), "--output_dir", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    # the command closed its database as at a normal exit (it skips the exit's garbage collection)
    assert list(home.glob("industriverse.db*")) == [home / "industriverse.db"]
    lines = done.stdout.strip().splitlines()
    assert lines[-2] == str(out / "proof.json")
    activity = lines[-1]
    assert activity.startswith("act-")
    for name in ("request.json", "optimization.json", "simulation.json", "verdict.json", "proof.json",
                 "capsule/manifest.yaml", "report/report.md", "report/report.html", "report/report.pdf", "report/value.json"):
        assert (out / name).is_file(), name
    assert json.loads((out / "deployment.json").read_text())["activity_id"] == activity
    # one line on stderr says what the plan saves per day, with its interval
    summary = [line for line in done.stderr.splitlines() if line.startswith("deployed: ")]
    assert len(summary) == 1 and "Per day, the plan" in summary[0] and "95% CI" in summary[0]
    # the plan as a table: one row per instant, set-points in kW, the planned state with its p5/p95
    import csv

    opt = json.loads((out / "optimization.json").read_text())
    sim = json.loads((out / "simulation.json").read_text())
    with open(out / "plan.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["time", "heater_kw", "zone", "zone_p5", "zone_p95"]
    assert len(rows) == len(opt["states"]["zone"]) == len(opt["plan"]["heater"]) + 1
    assert rows[0]["time"] == opt["horizon"]["times"][0] and rows[-1]["heater_kw"] == ""
    for k in (0, 10, len(rows) - 2):
        assert float(rows[k]["heater_kw"]) == pytest.approx(opt["plan"]["heater"][k], rel=1e-5, abs=1e-9)
        assert float(rows[k]["zone"]) == pytest.approx(opt["states"]["zone"][k], rel=1e-5)
        assert float(rows[k]["zone_p5"]) == pytest.approx(sim["plan"]["bands"]["zone"]["p5"][k], rel=1e-5)
        assert float(rows[k]["zone_p5"]) <= float(rows[k]["zone_p95"])
    assert CapsuleGatewayService().get_activity(activity)["activity_type"] == "deployment"
    verify = subprocess.run([sys.executable, "-m", "cli.main", "proof", "verify", str(out / "proof.json")],
                            cwd=ROOT, capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_strike_script_rejection_retries_then_exits_1_with_a_report(home, tmp_path):
    raw = example("hvac", ensemble=30, hours=6)
    # 0 violations in 30 trajectories still leaves a 95% upper bound of 0.095: no back-off can meet 0.01
    raw["uncertainty"]["max_violation_probability"] = 0.01
    out = tmp_path / "run"
    done = _run_cli("--domain", "hvac", "--constraint_json", str(write_constraint(tmp_path, raw)),
                    "--output_dir", str(out), cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "chance_constraint" in done.stderr
    summary = [line for line in done.stderr.splitlines() if line.startswith("rejected by the shield, nothing deployed: ")]
    assert len(summary) == 1 and "chance_constraint" in summary[0]
    assert done.stdout.strip().splitlines()[-1] == str(out / "proof.json")  # no activity ID
    assert (out / "plan.csv").is_file()
    opt = json.loads((out / "optimization.json").read_text())
    assert opt["round"] == 2 and opt["backoff_k"] > 1.0  # re-optimized with larger back-offs first
    value = json.loads((out / "report" / "value.json").read_text())
    assert value["outcome"] == "rejected"
    assert not CapsuleGatewayService().list_activities(activity_type="deployment")


@pytest.mark.parametrize("args,code,text", [
    (["--domain", "nuclear"], 2, "unknown domain 'nuclear'"),
    (["--constraint_json", "absent.json"], 2, "absent.json: no such file"),
    (["--backoff_factor", "-1"], 2, "--backoff_factor"),
    (["--timeout", "nan"], 2, "--timeout"),
    (["--timeout", "0"], 2, "--timeout"),
])
def test_strike_script_bad_input_exits_2_with_one_line(home, tmp_path, args, code, text):
    path = write_constraint(tmp_path, example("hvac"))
    base = {"--domain": "hvac", "--constraint_json": str(path)}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    done = _run_cli(*[x for kv in base.items() for x in kv], cwd=tmp_path)
    assert done.returncode == code
    assert text in done.stderr and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: ")


def test_strike_script_infeasible_exits_1_naming_the_conflict(home, tmp_path):
    raw = example("hvac")
    raw["envelope"]["zone"] = {"min": 40.0, "max": 45.0}
    done = _run_cli("--domain", "hvac", "--constraint_json", str(write_constraint(tmp_path, raw)), cwd=tmp_path)
    assert done.returncode == 1
    assert "envelope zone.min" in done.stderr and "Traceback" not in done.stderr


def test_strike_script_unreachable_broker_exits_3(home, tmp_path):
    path = write_constraint(tmp_path, example("hvac"))
    done = _run_cli("--domain", "hvac", "--constraint_json", str(path), "--broker", "amqp://guest:guest@127.0.0.1:1/%2F",
                    "--timeout", "5", cwd=tmp_path)
    assert done.returncode == 3, done.stderr
    assert "broker" in done.stderr and "Traceback" not in done.stderr


def test_plots_are_handed_to_the_render_processes_without_holding_up_the_shield(home, tmp_path, monkeypatch):
    """The embedded strike hands its simulation's plots over on a thread (handing over waits for the fork
    server's imports) in its own context: the shield goes on meanwhile, and the hand-over may read the CSV
    series of the constraint's directory, as the workers may."""
    import threading

    from industriverse.model.series import data_roots
    from industriverse.report import pool
    from workers.runner import run_embedded

    verified = threading.Event()
    seen = []

    def hand_over(key, run):  # stands in for the render processes: waits until the shield has verified the plan
        seen.append((threading.current_thread() is not threading.main_thread(), verified.wait(60), data_roots(None),
                     sorted(run)))

    monkeypatch.setattr(pool, "running", lambda: True)
    monkeypatch.setattr(pool, "warm", lambda: None)
    monkeypatch.setattr(pool, "prerender", hand_over)
    monkeypatch.setattr(pool, "forget", lambda key: None)
    progress = lambda m: verified.set() if m.type == "plan.verified" else None  # noqa: E731
    data = tmp_path / "client"
    data.mkdir()
    outcome = run_embedded(_strike("hvac", example("hvac", ensemble=100)), on_progress=progress, data_dirs=[data])
    assert outcome.type == "strike.completed" and outcome.body.outcome == "deployed", outcome.body
    assert seen  # one hand-over per simulated round
    for on_a_thread, shield_went_on, roots, documents in seen:
        assert on_a_thread and shield_went_on
        assert data.resolve() in roots
        assert documents == ["optimization", "simulation"]
