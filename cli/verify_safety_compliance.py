"""``verify_safety_compliance.py --plan OPT --simulation SIM --output_dir DIR [--strike-id ID]``.

Runs the shield (:func:`industriverse.verify.shield.check_plan`) on an optimization JSON and the
simulation JSON of that plan, then writes into ``--output_dir``:

* ``verdict.json`` — ``{passed, checks: [{name, value, limit, margin, passed, detail}],
  summary: {strike_id, domain, text, failed, checks, optimizer, violation_probability},
  inputs: {plan, simulation}}``;
* ``proof.json`` — the signed proof (:func:`industriverse.trust.proof.build_proof`), written for a
  failing plan too: it records the rejection, and the gateway refuses to deploy it;
* ``capsule/manifest.yaml`` (+ the files it names) — for a passing plan when ``--output_dir`` is
  the plan's run directory (it holds the verified ``optimization.json``): the signed capsule,
  ready for ``deploy_sovereign_dac.py --manifest DIR/capsule/manifest.yaml``.

The strike ID defaults to the optimization's ``strike_id``, else ``verify-`` and the first
16 hex digits of the SHA-256 of its request and plan (the same documents, the same ID).

Exit 0 pass · 1 fail (each failing check on stderr) · 2 bad input (unreadable or invalid
JSON, a missing field, a simulation that is not of this plan — file and field named).
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: python cli/verify_safety_compliance.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cli._common import check_output_path, ArgumentParser, one_line_errors, write_json
from industriverse.model.canonical import read_json, sha256_of
from industriverse.errors import BadInput


def default_strike_id(optimization: dict) -> str:
    """The optimization's ``strike_id``, else ``verify-<16 hex of SHA-256 of request and plan>``."""
    sid = optimization.get("strike_id")
    if isinstance(sid, str) and sid:
        return sid
    return "verify-" + sha256_of({"request": optimization.get("request"), "plan": optimization.get("plan")})[:16]


def verdict_of(shield: dict, *, strike_id: str, optimization: dict, simulation: dict,
               plan_path: str | None = None, simulation_path: str | None = None) -> dict:
    """The verdict document: the shield's result plus a summary for people and dashboards."""
    from industriverse.verify.shield import summarize

    vp = (simulation.get("plan") or {}).get("violation_probability") or {}
    return {
        "passed": shield["passed"],
        "checks": shield["checks"],
        "summary": {
            "strike_id": strike_id,
            "domain": optimization.get("domain"),
            "text": summarize(shield),
            "failed": [c["name"] for c in shield["checks"] if not c["passed"]],
            "checks": len(shield["checks"]),
            "optimizer": {k: optimization.get(k) for k in ("method", "feasible", "lower_bound", "lower_bound_method", "gap")}
            | {"cost": (optimization.get("objective") or {}).get("cost")},
            "violation_probability": vp,
        },
        "inputs": {"plan": plan_path, "simulation": simulation_path},
    }


def verify_documents(optimization: dict, simulation: dict, output_dir: str | Path, *, strike_id: str | None = None,
                     plan_path: str = "optimization", simulation_path: str = "simulation") -> dict:
    """Run the shield, write ``verdict.json`` and the signed ``proof.json``; return the verdict."""
    from industriverse.trust.proof import build_proof
    from industriverse.verify.shield import check_plan

    shield = check_plan(optimization, simulation, opt_file=plan_path, sim_file=simulation_path)
    sid = strike_id or default_strike_id(optimization)
    verdict = verdict_of(shield, strike_id=sid, optimization=optimization, simulation=simulation,
                         plan_path=plan_path, simulation_path=simulation_path)
    proof = build_proof(strike_id=sid, optimization=optimization, simulation=simulation,
                        shield={"passed": shield["passed"], "checks": shield["checks"]})
    out = Path(output_dir)
    write_json(verdict, out / "verdict.json")
    write_json(proof, out / "proof.json")
    return verdict


def pack_if_run_directory(out: Path, optimization: dict) -> Path | None:
    """Pack ``out/capsule/`` when ``out`` is the run directory of the verified plan; the manifest's path.

    ``out`` is that run directory when its ``optimization.json`` is the plan just verified (same
    canonical JSON), as in optimize → simulate → verify run into one directory.
    """
    from industriverse.trust.capsule import manifest_path_of, pack_capsule

    opt_path = out / "optimization.json"
    if not opt_path.is_file():
        return None
    try:
        same = sha256_of(read_json(opt_path)) == sha256_of(optimization)
    except BadInput:
        return None
    return manifest_path_of(pack_capsule(out)) if same else None


@one_line_errors
def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = ArgumentParser(
        prog=prog,
        description="Run the shield on a plan and its simulation; write verdict.json and a signed proof.json.",
        epilog="Exit 0 pass, 1 fail (failing checks on stderr), 2 bad input.",
    )
    parser.add_argument("--plan", required=True, metavar="OPT", help="optimization JSON (optimize_diffusion_service.py output)")
    parser.add_argument("--simulation", required=True, metavar="SIM",
                        help="simulation JSON of that plan (simulate_tnn_dynamics.py --plan OPT)")
    parser.add_argument("--output_dir", "--output-dir", required=True, metavar="DIR", help="where verdict.json and proof.json go")
    parser.add_argument("--strike-id", "--strike_id", metavar="ID",
                        help="strike ID recorded in the proof (default: the plan's, else derived from its hash)")
    args = parser.parse_args(argv)
    check_output_path(args.output_dir, "--output_dir", directory=True)

    optimization = read_json(args.plan)
    simulation = read_json(args.simulation)
    for path, doc in ((args.plan, optimization), (args.simulation, simulation)):
        if not isinstance(doc, dict):
            raise BadInput(str(path), None, "must be a JSON object")
    verdict = verify_documents(optimization, simulation, args.output_dir, strike_id=args.strike_id,
                               plan_path=str(args.plan), simulation_path=str(args.simulation))
    out = Path(args.output_dir)
    if verdict["passed"]:
        print(f"passed: all {verdict['summary']['checks']} checks; proof {out / 'proof.json'}")
        manifest = pack_if_run_directory(out, optimization)
        if manifest is not None:
            print(f"capsule: {manifest}")
        return 0
    for c in verdict["checks"]:
        if not c["passed"]:
            print(f"FAILED {c['name']}: value {c['value']}, limit {c['limit']}, margin {c['margin']} — {c['detail']}",
                  file=sys.stderr)
    print(f"rejected: {verdict['summary']['text']}; proof {out / 'proof.json'}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
