"""Reporter worker: ``capsule.deployed`` or ``plan.rejected`` → value report → ``strike.completed``.

The report files travel through the store as one bundle (``report_ref``), so the strike loop
can write the run directory on any machine.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from industriverse.fleet import store
from industriverse.model.canonical import parse_yaml, read_json
from industriverse.report.render import MANIFEST_FILE, write_report
from industriverse.fleet.rundir import bundle_files
from messages import CapsuleDeployed, Message, PlanRejected, StrikeCompleted
from workers.actor import actor
from workers.scratch import new_run_dir


def run_documents(body, deployment: dict | None) -> dict:
    """The documents of the strike round ``body`` refers to, as :func:`industriverse.report.render.read_run`
    reads them from a run directory, straight from the store (no files written and parsed back)."""
    optimization = store.get_json_artifact(body.optimization_ref)
    run = {"request": optimization["request"], "optimization": optimization,
           "simulation": store.get_json_artifact(body.simulation_ref),
           "verdict": store.get_json_artifact(body.verdict_ref), "proof": store.get_json_artifact(body.proof_ref)}
    if deployment is not None:
        run["deployment"] = deployment
        manifest = store.get_json_artifact(body.capsule_ref).get(MANIFEST_FILE.name) if body.capsule_ref else None
        if manifest is not None:
            run["manifest"] = parse_yaml(manifest["data"], MANIFEST_FILE.as_posix()) or {}
    if isinstance(run["proof"], dict):
        run["strike_id"] = run["proof"].get("strike_id")
    return run


def _report(message: Message, body, deployment: dict | None) -> StrikeCompleted:
    run_dir = new_run_dir(message, "work")
    try:
        run = {"run_dir": str(run_dir), **run_documents(body, deployment)}
        paths = write_report(run_dir, run=run, plots_key=(body.optimization_ref, body.simulation_ref))
        value_ref = store.put_json_artifact(read_json(paths["value"]))
        report_ref = store.put_json_artifact(bundle_files(run_dir / "report"))
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)  # what matters is in the store now
    deployed = deployment is not None
    return StrikeCompleted(
        outcome="deployed" if deployed else "rejected",
        activity_id=deployment["activity_id"] if deployed else None,
        value_ref=value_ref,
        report_ref=report_ref,
        # where each file lands in a run directory written from report_ref
        report_paths={k: Path(v).relative_to(run_dir).as_posix() for k, v in paths.items()},
        optimization_ref=body.optimization_ref, simulation_ref=body.simulation_ref,
        verdict_ref=body.verdict_ref, proof_ref=body.proof_ref,
        capsule_id=deployment["capsule_id"] if deployed else None,
        capsule_ref=getattr(body, "capsule_ref", None),
        reasons=list(getattr(body, "reasons", []) or []),
    )


@actor("reporter", consumes="capsule.deployed", stage="reporter")
def report_deployed(message: Message) -> list[Message]:
    body: CapsuleDeployed = message.body
    deployment = {"activity_id": body.activity_id, "capsule_id": body.capsule_id}
    return [message.follow(_report(message, body, deployment))]


@actor("reporter", consumes="plan.rejected", stage="reporter.rejected")
def report_rejected(message: Message) -> list[Message]:
    body: PlanRejected = message.body
    return [message.follow(_report(message, body, None))]
