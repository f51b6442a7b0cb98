"""One strike on the embedded bus, and the run directory written from the store afterwards.

Shared by the strike script, the regiment and the console (``industriverse serve``), so all
three run a strike and write its run directory the same way.
"""
from __future__ import annotations

import contextvars
import os
import threading
from pathlib import Path


def run_embedded(message, *, log_level: str | None = None, on_progress=None, data_dirs=()):
    """Run one strike through the five workers in this process; return its outcome message.

    ``data_dirs``: directories the workers may read CSV series from (the constraint's own directory).

    Worker logs go to stderr at ``log_level`` (default: $INDUSTRIVERSE_LOG_LEVEL or CRITICAL,
    since the caller reports the outcome in one line anyway).
    """
    from workers.actor import load_actors
    from workers.embedded import EmbeddedBus
    from workers.logging import configure_logging

    from industriverse.model.series import data_roots_allowed
    from messages.routing import strike_key

    configure_logging(log_level or os.environ.get("INDUSTRIVERSE_LOG_LEVEL", "CRITICAL"))
    bus = EmbeddedBus(load_actors(["all"]))
    from industriverse.report import pool

    started: list[tuple] = []
    handing: list = []  # threads handing a simulation's plots to the render processes
    if pool.running():  # one process runs every stage: the plots start while the shield, signing and deployment run
        pool.warm()

        def handed() -> None:
            for t in handing:
                t.join()
            handing.clear()

        def prerender(m) -> None:
            if m.type in ("capsule.deployed", "plan.rejected"):
                handed()  # the reporter is next: it collects the plots handed over
                return
            if m.type != "plan.simulated":
                return
            from industriverse.fleet import store

            key = (m.body.optimization_ref, m.body.simulation_ref)
            started.append(key)
            try:
                run = {"optimization": store.get_json_artifact(key[0]), "simulation": store.get_json_artifact(key[1])}
            except Exception:  # noqa: BLE001 - only a head start: the reporter draws them and reports any error
                return

            def hand_over() -> None:
                try:
                    pool.prerender(key, run)
                except Exception:  # noqa: BLE001 - as above
                    pool.forget(key)

            # on a thread, as handing over waits for the fork server to have imported the renderers: the shield
            # and the deployer go on meanwhile; in a copy of this context, so that the CSV series the workers may
            # read (data_roots_allowed) can be read there too
            t = threading.Thread(target=contextvars.copy_context().run, args=(hand_over,), name="prerender", daemon=True)
            handing.append(t)
            t.start()

        bus.subscribe(strike_key(message.strike_id), prerender)
    try:
        with data_roots_allowed(data_dirs):
            return bus.request(message, on_progress=on_progress)
    finally:
        if handing:
            handed()
        for key in started:  # a round the shield sent back, or a strike that failed: its plots are not needed
            pool.forget(key)


def materialize(outcome, run_dir: Path, request: dict) -> dict[str, Path]:
    """Write the run directory of a finished strike from the store; returns key paths."""
    from industriverse.fleet import store
    from industriverse.fleet.rundir import restore_files, write_documents

    body = outcome.body
    get = lambda ref: store.get_json_artifact(ref) if ref else None  # noqa: E731
    deployment = {"activity_id": body.activity_id, "capsule_id": body.capsule_id} if body.outcome == "deployed" else None
    write_documents(run_dir, {
        "request": request, "optimization": get(body.optimization_ref), "simulation": get(body.simulation_ref),
        "verdict": get(body.verdict_ref), "proof": get(body.proof_ref), "deployment": deployment,
    })
    if body.capsule_ref:
        restore_files(get(body.capsule_ref), run_dir / "capsule")
    if body.report_ref:
        restore_files(get(body.report_ref), run_dir / "report")
    return {"proof": run_dir / "proof.json", "report": run_dir / "report" / "report.pdf"}
