"""Replay: re-running a strike from the inputs its proof records reproduces the proof bit for bit,
and every figure that does not reproduce is named."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from industriverse.model.mapping import load_problem
from industriverse.plan.optimize import optimize
from industriverse.trust.replay import candidate_methods, replay_proof
from industriverse.verify.simulate import simulate
from industriverse.plan.tracking import noise_backoff

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def make_run(run_dir: Path, domain: str, example: str, *, ensemble: int = 60, seed: int = 3) -> Path:
    """A run directory with the real optimization, simulation, verdict and signed proof; returns the proof."""
    from cli.verify_safety_compliance import main as verify

    problem = load_problem(domain, EXAMPLES / f"{example}.json")
    backoff_k = 1.5
    opt = optimize(problem.with_backoff(noise_backoff(problem, backoff_k)), "auto", 0, request_dir=str(EXAMPLES))
    u = np.column_stack([opt["plan"][a] for a in problem.actuators])
    sim = simulate(problem, u, ensemble_size=ensemble, seed=seed, request_dir=str(EXAMPLES))
    run_dir.mkdir(parents=True)
    (run_dir / "optimization.json").write_text(json.dumps(opt, indent=1))
    (run_dir / "simulation.json").write_text(json.dumps(sim, indent=1))
    assert verify(["--plan", str(run_dir / "optimization.json"), "--simulation", str(run_dir / "simulation.json"),
                   "--output_dir", str(run_dir), "--strike-id", f"s-{domain}"]) == 0
    return run_dir / "proof.json"


@pytest.mark.parametrize("domain,example", [("hvac", "hvac_testcase1"), ("cold_storage", "cold_storage_display_case")])
def test_replay_reproduces_the_proof_bit_for_bit(home, tmp_path, domain, example):
    proof = make_run(tmp_path / "run", domain, example)
    assert replay_proof(proof) == []


def test_proof_verify_replay_command(home, tmp_path, capsys):
    from cli.proof import main as proof_cli

    proof = make_run(tmp_path / "run", "microgrid", "microgrid_pv_battery")
    assert proof_cli(["verify", str(proof), "--replay"]) == 0
    assert "replay" in capsys.readouterr().out


def test_replay_names_every_figure_that_differs(home, tmp_path):
    proof_path = make_run(tmp_path / "run", "hvac", "hvac_testcase1")
    proof = json.loads(proof_path.read_text())
    proof["optimizer"]["cost"] += 0.01
    proof["kpis"]["baseline"]["energy_kwh"]["mean"] = 1.0
    proof["simulation"]["violation_probability"]["upper"] = 0.0
    envelope = next(c for c in proof["shield"]["checks"] if c["name"] == "envelope")
    envelope["margin"] += 1e-12  # one ulp-scale change is a difference too
    proof_path.write_text(json.dumps(proof))
    found = replay_proof(proof_path)
    assert len(found) == 4, found
    assert any(line.startswith("optimizer.cost:") for line in found)
    assert any(line.startswith("kpis.baseline.energy_kwh.mean:") for line in found)
    assert any(line.startswith("simulation.violation_probability.upper:") for line in found)
    assert any(line.startswith("shield.checks.envelope.margin:") for line in found)


def test_replay_of_other_inputs_says_so(home, tmp_path, capsys):
    from cli.proof import main as proof_cli

    proof_path = make_run(tmp_path / "run", "hvac", "hvac_testcase1")
    opt_path = tmp_path / "run" / "optimization.json"
    opt = json.loads(opt_path.read_text())
    opt["request"]["tariff"]["energy"] = 0.2  # not what the proof was made from
    opt_path.write_text(json.dumps(opt))
    found = replay_proof(proof_path)
    assert any(line.startswith("inputs_sha256:") for line in found)
    assert any(line.startswith("optimizer.cost:") for line in found)
    assert proof_cli(["verify", str(proof_path), "--replay"]) == 1
    out = capsys.readouterr().out
    assert "replay: optimizer.cost" in out


def test_replay_from_the_capsule(home, tmp_path):
    from industriverse.trust.capsule import pack_capsule

    proof = make_run(tmp_path / "run", "hvac", "hvac_testcase1")
    manifest = pack_capsule(proof.parent)
    assert replay_proof(manifest.parent / "proof.json") == []  # finds RUN/optimization.json from RUN/capsule/


def test_replay_needs_the_optimization(home, tmp_path):
    from industriverse.errors import BadInput

    proof = make_run(tmp_path / "run", "hvac", "hvac_testcase1")
    lonely = tmp_path / "elsewhere" / "deeper" / "proof.json"
    lonely.parent.mkdir(parents=True)
    lonely.write_text(proof.read_text())
    with pytest.raises(BadInput, match="no optimization.json"):
        replay_proof(lonely)


def test_candidate_methods():
    linear = {"method": "lp", "domain": "hvac", "request": json.loads((EXAMPLES / "hvac_testcase1.json").read_text()),
              "plan": {"heater": [0.0] * 96}}
    assert candidate_methods(linear) == ["lp"]
    nonlinear = {"method": "idf", "domain": "cold_storage",
                 "request": json.loads((EXAMPLES / "cold_storage_display_case.json").read_text()),
                 "plan": {"compressor": [0.0] * 96}}
    assert candidate_methods(nonlinear) == ["auto", "idf"]
