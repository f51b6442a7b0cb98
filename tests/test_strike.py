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
from workers.rabbitmq import request as broker_request


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


# The two-zone office's plan dips below the day band between samples before the 18:00 band change; with
# departures counted at every control sub-step the shield rejects it even after the back-off rounds (32 of 100
# trajectories at 2.25 back-offs), until the optimizer holds the envelope between samples (issue 11, plan side).
BETWEEN_SAMPLES_PENDING = {"hvac_two_zone"}


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
            if domain in BETWEEN_SAMPLES_PENDING:
                # strict, like xfail(strict=True): deploys once the plan side lands, then drop the entry
                assert embedded.body.outcome == "rejected" and "chance_constraint" in " ".join(embedded.body.reasons)
            else:
                assert embedded.body.outcome == "deployed", embedded.body.reasons
    finally:
        stop_workers(worker)
    deployments = CapsuleGatewayService().list_activities(activity_type="deployment")
    # every strike is a new signed version of its client's capsule: one deployment each
    assert len({a["id"] for a in deployments}) == 2 * (len(EXAMPLES) - len(BETWEEN_SAMPLES_PENDING))


def _run_cli(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "cli" / "run_client_strike_loop.py"), *args],
                          cwd=cwd, capture_output=True, text=True, timeout=300)


def test_strike_script_deploys_and_writes_the_run_directory(home, tmp_path):
    path = write_constraint(tmp_path, example("hvac", ensemble=100))
    out = tmp_path / "run"
    done = _run_cli("--domain", "hvac", "--constraint_json", str(path), "--output_dir", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[-2] == str(out / "proof.json")
    activity = lines[-1]
    assert activity.startswith("act-")
    for name in ("request.json", "optimization.json", "simulation.json", "verdict.json", "proof.json",
                 "capsule/manifest.yaml", "report/report.md", "report/report.html", "report/report.pdf", "report/value.json"):
        assert (out / name).is_file(), name
    assert json.loads((out / "deployment.json").read_text())["activity_id"] == activity
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
    assert done.stdout.strip().splitlines()[-1] == str(out / "proof.json")  # no activity ID
    opt = json.loads((out / "optimization.json").read_text())
    assert opt["round"] == 2 and opt["backoff_k"] > 1.0  # re-optimized with larger back-offs first
    value = json.loads((out / "report" / "value.json").read_text())
    assert value["outcome"] == "rejected"
    assert not CapsuleGatewayService().list_activities(activity_type="deployment")


@pytest.mark.parametrize("args,code,text", [
    (["--domain", "nuclear"], 2, "unknown domain 'nuclear'"),
    (["--constraint_json", "absent.json"], 2, "absent.json: no such file"),
    (["--backoff_factor", "-1"], 2, "--backoff_factor"),
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
