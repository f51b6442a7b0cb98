"""The signed JSON proof of a strike (DESIGN.md §4, "proof JSON").

A proof ties together what was asked (``inputs_sha256``: SHA-256 of the canonical JSON
of the optimization's ``request``), what was planned (``plan_sha256``: of the canonical
``plan``), how good the plan is (``optimizer``: method, cost, lower bound, gap), how it
behaved under noise (``simulation``: ensemble size, seed, violation probability), what
the shield concluded (``shield``: passed and every check), the KPIs of plan and
baseline, the code that produced it, and an Ed25519 signature over all of that
(:mod:`industriverse.trust.signing`).

Fields, exactly::

    proof_version   1
    strike_id       str
    domain          str
    inputs_sha256   hex
    plan_sha256     hex
    optimizer       {method, cost, lower_bound, gap}
    simulation      {ensemble_size, seed, violation_probability: {estimate, upper[, confidence]}}
    shield          {passed, checks: [{name, value, limit, margin, passed}]}
    kpis            {optimized, baseline}
    code_version    "<package version>[+git.<12 hex>[.dirty]]"
    created_at      ISO-8601 UTC
    signature       {algorithm, key_id, value}
"""
from __future__ import annotations

import functools
import subprocess
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from industriverse.model.canonical import required_field as _get, sha256_of
from industriverse.errors import BadInput
from industriverse.trust.signing import sign_document, verify_document

PROOF_VERSION = 1
PROOF_FIELDS = (
    "proof_version", "strike_id", "domain", "inputs_sha256", "plan_sha256", "optimizer",
    "simulation", "shield", "kpis", "code_version", "created_at", "signature",
)
CHECK_FIELDS = ("name", "value", "limit", "margin", "passed")
_MISSING = object()




@functools.lru_cache(maxsize=1)
def current_code_version() -> str:
    """The package version, plus ``+git.<commit>`` (and ``.dirty``) when run from a git checkout."""
    try:
        version = importlib_metadata.version("industriverse")
    except importlib_metadata.PackageNotFoundError:
        version = "0+unknown"
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no", "--", str(here)],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version}+git.{commit[:12]}" + (".dirty" if dirty else "")


def _shield_section(shield: dict) -> dict:
    if not isinstance(shield, dict) or not isinstance(shield.get("passed"), bool):
        raise BadInput("shield", "passed", "must be true or false")
    checks = shield.get("checks")
    if not isinstance(checks, list):
        raise BadInput("shield", "checks", "must be a list of {name, value, limit, margin, passed}")
    out = []
    for i, check in enumerate(checks):
        missing = [f for f in CHECK_FIELDS if not isinstance(check, dict) or f not in check]
        if missing:
            raise BadInput("shield", f"checks[{i}]", f"is missing {', '.join(missing)}")
        out.append({f: check[f] for f in CHECK_FIELDS})
    failed = [c["name"] for c in out if not c["passed"]]
    if shield["passed"] and failed:
        raise BadInput("shield", "passed", f"is true but check(s) {', '.join(failed)} failed")
    return {"passed": shield["passed"], "checks": out}


def build_proof(
    *,
    strike_id: str,
    optimization: dict,
    simulation: dict,
    shield: dict,
    code_version: str | None = None,
    created_at: str | None = None,
    keys_dir: str | Path | None = None,
) -> dict:
    """Build and sign the proof of one strike.

    ``optimization`` and ``simulation`` are the JSON documents of DESIGN.md §4 (the
    simulation run with the plan, so it has ``plan`` and ``baseline`` results);
    ``shield`` is ``{"passed": bool, "checks": [{name, value, limit, margin, passed}]}``.
    ``created_at`` defaults to now (UTC).  A missing field raises :class:`BadInput`
    naming the document and the field.
    """
    opt, sim = "optimization", "simulation"
    vp = _get(simulation, "plan.violation_probability", sim)
    violation_probability = {"estimate": _get(vp, "estimate", sim), "upper": _get(vp, "upper", sim)}
    if "confidence" in simulation:
        violation_probability["confidence"] = simulation["confidence"]
    domain = optimization.get("domain") or _get(optimization, "request.domain", opt)
    proof = {
        "proof_version": PROOF_VERSION,
        "strike_id": str(strike_id),
        "domain": domain,
        "inputs_sha256": sha256_of(_get(optimization, "request", opt)),
        "plan_sha256": sha256_of(_get(optimization, "plan", opt)),
        "optimizer": {
            "method": _get(optimization, "method", opt),
            "cost": _get(optimization, "objective.cost", opt),
            "lower_bound": _get(optimization, "lower_bound", opt),
            "gap": _get(optimization, "gap", opt),
        },
        "simulation": {
            "ensemble_size": _get(simulation, "ensemble_size", sim),
            "seed": _get(simulation, "seed", sim),
            "violation_probability": violation_probability,
        },
        "shield": _shield_section(shield),
        "kpis": {
            "optimized": _get(simulation, "plan.kpis", sim),
            "baseline": _get(simulation, "baseline.kpis", sim),
        },
        "code_version": code_version if code_version is not None else current_code_version(),
        "created_at": created_at or datetime.now(timezone.utc).isoformat(),
    }
    return sign_document(proof, keys_dir=keys_dir)


def _differs(label: str, recorded: Any, actual: Any) -> str | None:
    if recorded == actual and type(recorded) is type(actual):
        return None
    return f"{label} differs: the proof records {recorded!r}, the file has {actual!r}"


def verify_proof(
    proof: Any,
    *,
    optimization: dict | None = None,
    simulation: dict | None = None,
    keys_dir: str | Path | None = None,
) -> list[str]:
    """Every problem of ``proof`` (an empty list means valid).

    Always: the fields are all there and the signature is good and made by a trusted key.
    With ``optimization``: ``inputs_sha256`` and ``plan_sha256`` match its ``request`` and
    ``plan``, and the optimizer figures are the file's.  With ``simulation``: ensemble
    size, seed, violation probability and KPIs are the file's.  Also that ``shield.passed``
    agrees with its checks.
    """
    if not isinstance(proof, dict):
        return ["proof is not a JSON object"]
    problems: list[str] = []
    missing = [f for f in PROOF_FIELDS if f not in proof]
    if missing:
        problems.append(f"proof is missing field(s) {', '.join(missing)}")
    extra = sorted(set(proof) - set(PROOF_FIELDS))
    if extra:
        problems.append(f"proof has unexpected field(s) {', '.join(extra)}")
    if "proof_version" in proof and proof["proof_version"] != PROOF_VERSION:
        problems.append(f"proof_version {proof['proof_version']!r} is not supported (expected {PROOF_VERSION})")
    ok, reason = verify_document(proof, keys_dir=keys_dir)
    if not ok:
        problems.append(f"signature: {reason}")

    shield = proof.get("shield")
    if isinstance(shield, dict) and isinstance(shield.get("checks"), list):
        failed = [c.get("name", "?") for c in shield["checks"] if isinstance(c, dict) and not c.get("passed")]
        if shield.get("passed") is True and failed:
            problems.append(f"shield.passed is true but check(s) {', '.join(map(str, failed))} failed")

    if optimization is not None:
        for field, source in (("inputs_sha256", "request"), ("plan_sha256", "plan")):
            if source not in optimization:
                problems.append(f"optimization JSON has no '{source}' to check {field} against")
                continue
            actual = sha256_of(optimization[source])
            if proof.get(field) != actual:
                problems.append(
                    f"{field} differs: the proof records {proof.get(field)}, the optimization's {source} hashes to {actual}"
                )
        recorded = proof.get("optimizer") if isinstance(proof.get("optimizer"), dict) else {}
        actual_figures = {
            "method": optimization.get("method", _MISSING),
            "cost": (optimization.get("objective") or {}).get("cost", _MISSING),
            "lower_bound": optimization.get("lower_bound", _MISSING),
            "gap": optimization.get("gap", _MISSING),
        }
        for name, actual in actual_figures.items():
            if actual is _MISSING:
                continue
            problem = _differs(f"optimizer.{name}", recorded.get(name), actual)
            if problem:
                problems.append(problem)

    if simulation is not None:
        recorded = proof.get("simulation") if isinstance(proof.get("simulation"), dict) else {}
        plan = simulation.get("plan") or {}
        for name, actual in (("ensemble_size", simulation.get("ensemble_size", _MISSING)),
                             ("seed", simulation.get("seed", _MISSING))):
            if actual is not _MISSING and (problem := _differs(f"simulation.{name}", recorded.get(name), actual)):
                problems.append(problem)
        vp_recorded = recorded.get("violation_probability") or {}
        for name in ("estimate", "upper"):
            actual = (plan.get("violation_probability") or {}).get(name, _MISSING)
            if actual is not _MISSING and (problem := _differs(
                    f"simulation.violation_probability.{name}", vp_recorded.get(name), actual)):
                problems.append(problem)
        kpis = proof.get("kpis") if isinstance(proof.get("kpis"), dict) else {}
        for name, actual in (("optimized", plan.get("kpis", _MISSING)),
                             ("baseline", (simulation.get("baseline") or {}).get("kpis", _MISSING))):
            if actual is not _MISSING and kpis.get(name) != actual:
                problems.append(f"kpis.{name} differ from the simulation's {'plan' if name == 'optimized' else name} KPIs")
    return problems
