"""Replaying a proof: re-run the strike from its recorded inputs and compare every figure.

:func:`replay_proof` reads ``proof.json`` and the ``optimization.json`` beside it (or in its
parent directory: a proof inside ``RUN/capsule/`` belongs to ``RUN/``), which records what the
optimizer was given: ``request`` (the client's constraint), ``request_dir`` (where its CSV
series live), ``domain``, ``method``, ``seed`` and the planning ``backoff``.  It then

1. re-optimizes (:func:`industriverse.plan.optimize.optimize`) the problem mapped from that request
   with the recorded back-off, method and seed;
2. re-simulates (:func:`industriverse.verify.simulate.simulate`) the new plan and the baseline with the
   proof's ensemble size and seed, on the problem mapped without back-off (as the simulator does);
3. re-runs the shield (:func:`industriverse.verify.shield.check_plan`) on the two new documents;

and compares, bit for bit (canonical JSON of each figure), everything the proof records
about them: ``inputs_sha256``, ``plan_sha256``, ``domain``, ``optimizer`` (method, cost,
lower bound, gap), ``simulation`` (ensemble size, seed, violation probability), ``shield``
(passed, and name, value, limit, margin, passed of every check) and ``kpis`` (optimized and
baseline).  It returns one line per figure that differs — empty when the proof is reproduced.
``strike_id``, ``created_at``, ``code_version`` and the signature describe the run, not its
results, and are not compared (the signature is :func:`industriverse.trust.proof.verify_proof`'s job).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from industriverse.model.canonical import canonical_json, document_beside, read_json, sha256_of
from industriverse.errors import BadInput
from industriverse.trust.proof import CHECK_FIELDS

_MISSING = object()




def _same(a: Any, b: Any) -> bool:
    try:
        return canonical_json(a) == canonical_json(b)
    except (TypeError, ValueError):
        return a == b


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


def compare(label: str, recorded: Any, replayed: Any, out: list[str]) -> None:
    """Append ``"<label>: the proof records X, the replay gives Y"`` for every leaf that differs."""
    if isinstance(recorded, dict) and isinstance(replayed, dict):
        for key in sorted(set(recorded) | set(replayed), key=str):
            a, b = recorded.get(key, _MISSING), replayed.get(key, _MISSING)
            if a is _MISSING:
                out.append(f"{label}.{key}: not in the proof, the replay gives {_short(b)}")
            elif b is _MISSING:
                out.append(f"{label}.{key}: the proof records {_short(a)}, the replay has no such figure")
            else:
                compare(f"{label}.{key}", a, b, out)
        return
    if isinstance(recorded, list) and isinstance(replayed, list) and len(recorded) == len(replayed) \
            and any(isinstance(v, (dict, list)) for v in recorded + replayed):
        for i, (a, b) in enumerate(zip(recorded, replayed)):
            compare(f"{label}[{i}]", a, b, out)
        return
    if not _same(recorded, replayed):
        out.append(f"{label}: the proof records {_short(recorded)}, the replay gives {_short(replayed)}")


def _checks_by_name(checks: Any) -> dict:
    if not isinstance(checks, list):
        return {}
    return {c.get("name"): {f: c.get(f) for f in CHECK_FIELDS} for c in checks if isinstance(c, dict)}


def replay_documents(optimization: dict, *, ensemble_size: int, seed: int, opt_file: str = "optimization.json",
                     method: str | None = None) -> tuple[dict, dict, dict]:
    """Re-run optimization, simulation and shield from an optimization JSON's recorded inputs.

    ``method`` defaults to the recorded one.  Returns ``(optimization, simulation, shield)`` of
    the replay.
    """
    from industriverse.model.mapping import map_constraint
    from industriverse.plan.optimize import load_plan, optimize
    from industriverse.verify.shield import check_plan
    from industriverse.verify.simulate import simulate

    for f in ("request", "domain", "method", "seed"):
        if f not in optimization:
            raise BadInput(opt_file, f, "is missing: the optimization does not record what to replay")
    problem, _ = load_plan(optimization)  # the recorded request, mapped with the recorded back-off
    new_opt = _complete(optimize(problem, method or optimization["method"], optimization["seed"],
                                 request_dir=optimization.get("request_dir")), optimization)
    request_dir = optimization.get("request_dir")
    sim_problem = map_constraint(optimization["domain"], optimization["request"], file=opt_file,
                                 base_dir=Path(request_dir) if request_dir else None)
    u = np.column_stack([np.asarray(new_opt["plan"][a], dtype=float) for a in sim_problem.actuators])
    new_sim = simulate(sim_problem, u, ensemble_size=ensemble_size, seed=seed, request_dir=request_dir)
    shield = check_plan(new_opt, new_sim, opt_file="replayed optimization", sim_file="replayed simulation")
    return new_opt, new_sim, shield


def _complete(new_opt: dict, recorded: dict) -> dict:
    """Fields the strike records beside the optimizer's result (request, request_dir, ...), where the result lacks them."""
    out = dict(new_opt)
    for key in ("request", "request_dir", "domain", "kind", "backoff", "seed", "method"):
        if key not in out and key in recorded:
            out[key] = recorded[key]
    return out


def replay_proof(proof_path: str | Path) -> list[str]:
    """Re-run the strike a proof describes; every figure that differs, one line each (empty = reproduced)."""
    proof_path = Path(proof_path)
    proof = read_json(proof_path)
    if not isinstance(proof, dict):
        raise BadInput(str(proof_path), None, "a proof must be a JSON object")
    opt_path = document_beside(proof_path, "optimization.json")
    if opt_path is None:
        raise BadInput(str(proof_path), None, "no optimization.json beside the proof (or in its parent): nothing to replay from")
    optimization = read_json(opt_path)
    if not isinstance(optimization, dict):
        raise BadInput(str(opt_path), None, "must be a JSON object")
    sim = proof.get("simulation")
    if not isinstance(sim, dict) or not isinstance(sim.get("ensemble_size"), int) or not isinstance(sim.get("seed"), int):
        raise BadInput(str(proof_path), "simulation", "must record the ensemble_size and seed to replay")

    out: list[str] = []
    if "request" in optimization and sha256_of(optimization["request"]) != proof.get("inputs_sha256"):
        out.append(f"inputs_sha256: the proof records {proof.get('inputs_sha256')}, {opt_path} holds a request hashing to "
                   f"{sha256_of(optimization['request'])} (not the inputs the proof was made from)")
    best = None
    for method in candidate_methods(optimization):
        new_opt, new_sim, shield = replay_documents(optimization, ensemble_size=sim["ensemble_size"], seed=sim["seed"],
                                                    opt_file=str(opt_path), method=method)
        diffs = _differences(proof, new_opt, new_sim, shield)
        if best is None or len(diffs) < len(best):
            best = diffs
        if not diffs:
            break
    return out + best


def candidate_methods(optimization: dict) -> list[str]:
    """Methods to replay with: the recorded one, and ``auto`` first where ``auto`` resolves to it.

    The optimization JSON records the method used, not the one asked for; ``auto`` on a
    nonlinear problem runs IDF with the relaxation's plan as an extra start, which ``idf``
    alone does not, so both are tried and the one that reproduces the plan wins.
    """
    from industriverse.plan.optimize import load_plan

    recorded = optimization["method"]
    requested = optimization.get("method_requested")
    if requested:
        return [requested]
    problem, _ = load_plan(optimization)
    nonlinear = any(a.nonlinear for a in problem.network.actuators)
    auto_gives = "idf" if nonlinear else "lp"
    return ["auto", recorded] if auto_gives == recorded and nonlinear else [recorded]


def _differences(proof: dict, new_opt: dict, new_sim: dict, shield: dict) -> list[str]:
    """Every figure of ``proof`` that the replayed documents do not reproduce."""
    out: list[str] = []
    vp = new_sim["plan"]["violation_probability"]
    recorded_vp = (proof.get("simulation") or {}).get("violation_probability") or {}
    replayed = {
        "domain": new_opt.get("domain"),
        "inputs_sha256": sha256_of(new_opt["request"]),
        "plan_sha256": sha256_of(new_opt["plan"]),
        "optimizer": {
            "method": new_opt.get("method"),
            "cost": new_opt["objective"]["cost"],
            "lower_bound": new_opt.get("lower_bound"),
            "gap": new_opt.get("gap"),
        },
        "simulation": {
            "ensemble_size": new_sim["ensemble_size"],
            "seed": new_sim["seed"],
            "violation_probability": {"estimate": vp["estimate"], "upper": vp["upper"]}
            | ({"confidence": new_sim["confidence"]} if "confidence" in recorded_vp else {}),
        },
        "kpis": {"optimized": new_sim["plan"]["kpis"], "baseline": new_sim["baseline"]["kpis"]},
    }
    for key, value in replayed.items():
        if key not in proof:
            out.append(f"{key}: not in the proof")
            continue
        compare(key, proof[key], value, out)
    recorded_shield = proof.get("shield") if isinstance(proof.get("shield"), dict) else {}
    compare("shield.passed", recorded_shield.get("passed"), shield["passed"], out)
    compare("shield.checks", _checks_by_name(recorded_shield.get("checks")), _checks_by_name(shield["checks"]), out)
    return out


__all__ = ["replay_proof", "replay_documents", "compare"]
