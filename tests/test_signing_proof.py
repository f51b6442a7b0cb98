"""Ed25519 signing, the JSON proof and `industriverse proof verify`.

The example optimization/simulation documents below follow DESIGN.md §4 field for field;
test_capsule.py and test_gateway.py build their runs with ``make_run``.
"""
from __future__ import annotations

import base64
import copy
import json
import multiprocessing as mp
import stat
from pathlib import Path

import pytest

from cli import proof as proof_cli
from industriverse.trust import signing
from industriverse.model.canonical import canonical_json, sha256_of
from industriverse.errors import BadInput
from industriverse.trust.proof import PROOF_FIELDS, build_proof, verify_proof

STEPS = 8


def example_optimization(client: str = "acme-cold-rooms", seed: int = 7, heater_scale: float = 1.0) -> dict:
    """A 2-hour, 15-minute-step hvac optimization result (LP, proven optimal)."""
    heater = [round(x * heater_scale, 6) for x in (4.2, 3.9, 3.5, 3.1, 2.8, 3.0, 3.6, 4.0)]
    energy = sum(heater) * 0.25
    request = {
        "client": client,
        "description": "keep the office zone between 20 and 23 °C, heater at most 10 kW",
        "domain": "hvac",
        "horizon": {"start": "2024-01-15T06:00:00", "hours": 2.0, "step_minutes": 15},
        "initial_state": {"zone": 20.5},
        "envelope": {"zone": {"min": 20.0, "max": 23.0}},
        "actuators": {"heater": {"min_kw": 0.0, "max_kw": 10.0}},
        "tariff": {"energy": 0.25, "export": 0.0, "demand_charge_per_kw": 0.0, "currency": "EUR"},
        "emission_factor": 0.2,
        "uncertainty": {"process_noise": 0.05, "ensemble_size": 200, "confidence": 0.95,
                        "max_violation_probability": 0.05, "seed": seed},
        "budgets": {"energy_kwh": 30.0, "peak_kw": 10.0},
    }
    return {
        "request": request,
        "domain": "hvac",
        "method": "lp",
        "plan": {"heater": heater},
        "states": {"zone": [20.5, 20.6, 20.7, 20.8, 20.8, 20.7, 20.7, 20.8, 21.0]},
        "objective": {"cost": round(energy * 0.25, 9), "energy_kwh": energy, "emissions_kg": energy * 0.2,
                      "peak_kw": max(heater)},
        "lower_bound": round(energy * 0.25, 9),
        "gap": 0.0,
        "feasible": True,
        "max_violation": 0.0,
        "stats": {"seconds": 0.0123, "evaluations": 1},
        "seed": seed,
    }


def _band(center: float, spread: float) -> dict:
    return {p: [round(center + k * spread, 4) for _ in range(STEPS + 1)]
            for p, k in (("1", -2.3), ("5", -1.6), ("50", 0.0), ("95", 1.6), ("99", 2.3))}


def example_simulation(seed: int = 7, violation_upper: float = 0.0313) -> dict:
    """The plan and the baseline on the same 200 noise draws."""
    return {
        "ensemble_size": 200,
        "seed": seed,
        "confidence": 0.95,
        "plan": {
            "controller": "plan",
            "bands": {"zone": _band(20.8, 0.12)},
            "violations": {"count": 2},
            "violation_probability": {"estimate": 0.01, "upper": violation_upper},
            "kpis": {"energy_kwh": 7.06, "cost": 1.765, "emissions_kg": 1.412, "peak_kw": 4.31,
                     "discomfort_kh": 0.004, "actuator_travel": 3.1},
        },
        "baseline": {
            "controller": "proportional",
            "bands": {"zone": _band(20.3, 0.2)},
            "violations": {"count": 31},
            "violation_probability": {"estimate": 0.155, "upper": 0.2038},
            "kpis": {"energy_kwh": 8.4, "cost": 2.1, "emissions_kg": 1.68, "peak_kw": 6.5,
                     "discomfort_kh": 0.21, "actuator_travel": 9.7},
        },
        "paired": {"energy_saved_kwh": {"mean": 1.34, "low": 1.29, "high": 1.39}},
    }


def example_shield(passed: bool = True) -> dict:
    chance = {"name": "chance_constraint", "value": 0.0313 if passed else 0.0912, "limit": 0.05,
              "margin": round(0.05 - (0.0313 if passed else 0.0912), 6), "passed": passed}
    return {
        "passed": passed,
        "checks": [
            {"name": "envelope", "value": 0.0, "limit": 0.0, "margin": 0.0, "passed": True},
            {"name": "actuator_limits", "value": 4.2, "limit": 10.0, "margin": 5.8, "passed": True},
            chance,
            {"name": "first_law", "value": 1.2e-09, "limit": 1e-06, "margin": 9.988e-07, "passed": True},
        ],
    }


def make_run(run_dir: Path, *, strike_id: str = "s-0001", client: str = "acme-cold-rooms", passed: bool = True,
             created_at: str = "2024-01-15T05:55:00.125000+00:00", heater_scale: float = 1.0,
             keys_dir: Path | None = None) -> Path:
    """A run directory as the strike loop leaves it before packing: request, optimization, simulation, proof."""
    run_dir.mkdir(parents=True, exist_ok=True)
    optimization = example_optimization(client, heater_scale=heater_scale)
    simulation = example_simulation(violation_upper=0.0313 if passed else 0.0912)
    proof = build_proof(strike_id=strike_id, optimization=optimization, simulation=simulation,
                        shield=example_shield(passed), created_at=created_at, keys_dir=keys_dir)
    for name, doc in (("request.json", optimization["request"]), ("optimization.json", optimization),
                      ("simulation.json", simulation), ("proof.json", proof)):
        (run_dir / name).write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    return run_dir


# --- signing -------------------------------------------------------------------------
def test_key_pair_created_on_first_use(home):
    key = signing.load_signing_key()
    keys = home / "keys"
    private = keys / signing.PRIVATE_KEY_FILE
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    key_id = signing.key_id_of(key.public_key())
    assert key_id.startswith("ed25519:") and len(key_id) == len("ed25519:") + 16
    assert set(signing.trusted_keys()) == {key_id}
    assert (keys / (key_id.replace(":", "-") + ".pub.pem")).is_file()
    again = signing.load_signing_key()  # the same key, not a new one
    assert signing.key_id_of(again.public_key()) == key_id


def _load_key_id(queue, keys_dir):
    queue.put(signing.key_id_of(signing.load_signing_key(keys_dir).public_key()))


def test_two_processes_creating_the_key_get_the_same_one(tmp_path):
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_load_key_id, args=(queue, tmp_path / "keys")) for _ in range(3)]
    for p in procs:
        p.start()
    ids = {queue.get(timeout=30) for _ in procs}
    for p in procs:
        p.join(timeout=30)
    assert len(ids) == 1 and len(signing.trusted_keys(tmp_path / "keys")) == 1


def test_sign_and_verify(home, tmp_path):
    doc = {"b": [1, 2.5], "a": "Kälte", "nested": {"y": None, "x": True}}
    signed = signing.sign_document(doc)
    assert signed["signature"]["algorithm"] == "ed25519"
    assert doc == {"b": [1, 2.5], "a": "Kälte", "nested": {"y": None, "x": True}}  # input untouched
    assert signing.verify_document(signed) == (True, "ok")
    # key order and whitespace do not matter, content does
    reordered = json.loads(json.dumps(dict(reversed(list(signed.items()))), indent=3))
    assert signing.verify_document(reordered) == (True, "ok")
    assert signing.sign_document(doc) == signed  # Ed25519 is deterministic

    altered = copy.deepcopy(signed)
    altered["nested"]["x"] = False
    ok, reason = signing.verify_document(altered)
    assert not ok and reason.startswith("bad signature")
    assert signing.verify_document(doc) == (False, "unsigned")

    broken = copy.deepcopy(signed)
    broken["signature"]["value"] = "not base64 !!"
    assert signing.verify_document(broken)[1].startswith("malformed signature")


def test_wrong_key_is_refused(home, tmp_path):
    signing.load_signing_key()  # our own key exists and is trusted
    foreign = signing.sign_document({"x": 1}, keys_dir=tmp_path / "elsewhere")
    ok, reason = signing.verify_document(foreign)
    assert not ok and reason.startswith("unknown key ed25519:")
    # claiming our key ID does not help: the signature was made by the other key
    forged = copy.deepcopy(foreign)
    forged["signature"]["key_id"] = signing.key_id_of(signing.load_signing_key().public_key())
    ok, reason = signing.verify_document(forged)
    assert not ok and reason.startswith("bad signature")
    # trusting the other key (copying its public key file in) makes it verify
    other = signing.load_signing_key(tmp_path / "elsewhere")
    signing.write_public_key(other.public_key())
    assert signing.verify_document(foreign) == (True, "ok")


# --- proof ---------------------------------------------------------------------------
def test_proof_has_exactly_the_design_fields(home):
    opt, sim = example_optimization(), example_simulation()
    proof = build_proof(strike_id="s-1", optimization=opt, simulation=sim, shield=example_shield())
    assert tuple(proof) == PROOF_FIELDS
    assert proof["proof_version"] == 1 and proof["domain"] == "hvac"
    assert proof["inputs_sha256"] == sha256_of(opt["request"])
    assert proof["plan_sha256"] == sha256_of(opt["plan"])
    assert proof["optimizer"] == {"method": "lp", "cost": opt["objective"]["cost"],
                                  "lower_bound": opt["lower_bound"], "gap": 0.0}
    assert proof["simulation"] == {"ensemble_size": 200, "seed": 7,
                                   "violation_probability": {"estimate": 0.01, "upper": 0.0313, "confidence": 0.95}}
    assert proof["shield"]["passed"] is True and len(proof["shield"]["checks"]) == 4
    assert proof["kpis"] == {"optimized": sim["plan"]["kpis"], "baseline": sim["baseline"]["kpis"]}
    assert proof["code_version"].startswith("0.1.0")
    assert verify_proof(proof, optimization=opt, simulation=sim) == []
    # the signature covers the canonical JSON of everything else
    sig = base64.b64decode(proof["signature"]["value"])
    key = signing.trusted_keys()[proof["signature"]["key_id"]]
    key.verify(sig, canonical_json({k: v for k, v in proof.items() if k != "signature"}))


def test_proof_is_reproducible_bit_for_bit(home):
    args = dict(strike_id="s-1", optimization=example_optimization(), simulation=example_simulation(),
                shield=example_shield(), code_version="0.1.0", created_at="2024-01-15T05:55:00+00:00")
    assert canonical_json(build_proof(**args)) == canonical_json(build_proof(**copy.deepcopy(args)))


def test_edited_proof_and_edited_inputs_are_named(home):
    opt, sim = example_optimization(), example_simulation()
    proof = build_proof(strike_id="s-1", optimization=opt, simulation=sim, shield=example_shield())

    edited = copy.deepcopy(proof)
    edited["optimizer"]["cost"] = 0.5
    problems = verify_proof(edited, optimization=opt)
    assert any(p.startswith("signature: bad signature") for p in problems)
    assert any(p.startswith("optimizer.cost differs") for p in problems)

    other_plan = copy.deepcopy(opt)
    other_plan["plan"]["heater"][3] += 0.5
    assert [p.split(":")[0] for p in verify_proof(proof, optimization=other_plan)] == ["plan_sha256 differs"]

    other_request = copy.deepcopy(opt)
    other_request["request"]["envelope"]["zone"]["max"] = 26.0
    assert [p.split(":")[0] for p in verify_proof(proof, optimization=other_request)] == ["inputs_sha256 differs"]

    other_sim = copy.deepcopy(sim)
    other_sim["plan"]["violation_probability"]["upper"] = 0.2
    assert any("violation_probability.upper differs" in p for p in verify_proof(proof, simulation=other_sim))

    stripped = {k: v for k, v in proof.items() if k != "signature"}
    assert "signature: unsigned" in verify_proof(stripped)


def test_build_proof_names_missing_fields(home):
    opt = example_optimization()
    del opt["objective"]["cost"]
    with pytest.raises(BadInput, match="optimization: field 'objective.cost': is missing"):
        build_proof(strike_id="s", optimization=opt, simulation=example_simulation(), shield=example_shield())
    sim = example_simulation()
    del sim["baseline"]
    with pytest.raises(BadInput, match="baseline.kpis"):
        build_proof(strike_id="s", optimization=example_optimization(), simulation=sim, shield=example_shield())
    lying = example_shield(passed=False)
    lying["passed"] = True
    with pytest.raises(BadInput, match="chance_constraint failed"):
        build_proof(strike_id="s", optimization=example_optimization(), simulation=example_simulation(), shield=lying)


# --- CLI -----------------------------------------------------------------------------
def test_cli_proof_verify(home, tmp_path, capsys):
    run = make_run(tmp_path / "run")
    assert proof_cli.main(["verify", str(run / "proof.json")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("valid: proof of strike s-0001") and "inputs and plan hashes" in out

    # a proof copied into RUN/capsule/ finds optimization.json in the run directory
    (run / "capsule").mkdir()
    (run / "capsule" / "proof.json").write_text((run / "proof.json").read_text())
    assert proof_cli.main(["verify", str(run / "capsule" / "proof.json")]) == 0
    capsys.readouterr()

    opt = json.loads((run / "optimization.json").read_text())
    opt["plan"]["heater"][0] = 9.9
    (tmp_path / "edited.json").write_text(json.dumps(opt))
    assert proof_cli.main(["verify", str(run / "proof.json"), "--optimization", str(tmp_path / "edited.json")]) == 1
    assert capsys.readouterr().out.startswith("plan_sha256 differs")

    proof = json.loads((run / "proof.json").read_text())
    proof["shield"]["passed"] = False
    (run / "proof.json").write_text(json.dumps(proof))
    assert proof_cli.main(["verify", str(run / "proof.json")]) == 1
    assert "signature: bad signature" in capsys.readouterr().out

    assert proof_cli.main(["verify", str(tmp_path / "nope.json")]) == 2
    assert "nope.json: no such file" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{not json")
    assert proof_cli.main(["verify", str(tmp_path / "bad.json")]) == 2
