"""A worker's scratch run directory: the documents of one strike round, written from the store.

The deployer packs the capsule from it and the reporter renders the report in it; both then
put what they made back into the store, which is what other machines see.
"""
from __future__ import annotations

from pathlib import Path

from industriverse import store
from industriverse.rundir import write_documents


def work_dir(strike_id: str, round_: int) -> Path:
    """The scratch run directory of one strike round, under the data directory."""
    suffix = f"-r{round_}" if round_ else ""
    return store.data_home() / "work" / f"{strike_id}{suffix}"


def write_scratch_run(message, body, deployment: dict | None = None) -> tuple[Path, dict]:
    """Write the documents ``body`` refers to (a verdict-carrying message) for ``message``'s round.

    Returns the directory and the optimization document.
    """
    optimization = store.get_json_artifact(body.optimization_ref)
    run_dir = write_documents(work_dir(message.strike_id, message.round), {
        "request": optimization["request"],
        "optimization": optimization,
        "simulation": store.get_json_artifact(body.simulation_ref),
        "verdict": store.get_json_artifact(body.verdict_ref),
        "proof": store.get_json_artifact(body.proof_ref),
        "deployment": deployment,
    })
    return run_dir, optimization
