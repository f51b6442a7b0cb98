"""A worker's scratch run directory: the documents of one strike round, written from the store.

The deployer packs the capsule in one (and keeps it: the gateway records where the deployed
capsule lives) and the reporter renders the report in one (removed once the report is in the
store). Each handling gets a directory of its own: a redelivered message may be handled again
while the first handling still runs (after a lost connection), and the two must not share files.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from industriverse import data_home
from industriverse.fleet import store
from industriverse.fleet.rundir import write_documents


def new_run_dir(message, purpose: str) -> Path:
    """A fresh directory for one handling of ``message`` under ``$INDUSTRIVERSE_HOME/<purpose>/``."""
    parent = data_home() / purpose
    parent.mkdir(parents=True, exist_ok=True)
    suffix = f"-r{message.round}" if message.round else ""
    return Path(tempfile.mkdtemp(prefix=f"{message.strike_id}{suffix}-", dir=parent))


def write_scratch_run(run_dir: Path, body, deployment: dict | None = None) -> None:
    """Write the documents ``body`` (a verdict-carrying message) refers to into ``run_dir``."""
    optimization = store.get_json_artifact(body.optimization_ref)
    write_documents(run_dir, {
        "request": optimization["request"],
        "optimization": optimization,
        "simulation": store.get_json_artifact(body.simulation_ref),
        "verdict": store.get_json_artifact(body.verdict_ref),
        "proof": store.get_json_artifact(body.proof_ref),
        "deployment": deployment,
    })
