"""Run the whole value loop for one client: optimize, simulate, verify, deploy, report.

Without --broker the five workers run in this process on the embedded bus (nothing to
install or start). With --broker (or INDUSTRIVERSE_AMQP_URL) the strike is published to
RabbitMQ and this command waits for its outcome from the worker fleet.

stdout: the proof path, then the deployed activity ID as the last line.
Exit codes: 0 deployed and active · 1 rejected by the shield or infeasible (nothing deployed), or
deployed but not activated (the gateway holds a newer version) ·
2 bad input · 3 infrastructure failure.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cli._common import MAX_SEED, MAX_WAIT_S, ArgumentParser, number, one_line_errors
from industriverse.errors import InfrastructureError


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--domain", required=True, help="shipped domain: hvac, hvac_two_zone, cold_storage, microgrid")
    p.add_argument("--constraint_json", required=True, metavar="FILE", help="the client constraint (JSON; see examples/)")
    p.add_argument("--broker", metavar="URL", default=None,
                   help="RabbitMQ URL (amqp://user:pass@host:5672/%%2F); default: $INDUSTRIVERSE_AMQP_URL, else the embedded bus")
    p.add_argument("--embedded", action="store_true", help="use the embedded bus even when INDUSTRIVERSE_AMQP_URL is set")
    p.add_argument("--output_dir", metavar="DIR", default=None, help="run directory to write (default: runs/<strike_id>/)")
    p.add_argument("--timeout", type=number(0, MAX_WAIT_S, lo_open=True), default=600.0, metavar="S",
                   help="seconds to wait for the outcome on RabbitMQ (default 600); the request expires then:"
                        " no worker starts a stage for it, nor deploys it, afterwards")
    p.add_argument("--method", choices=("auto", "idf", "lp"), default="auto",
                   help="optimizer: exact LP where the problem is linear, IDF otherwise (auto); or force one")
    p.add_argument("--seed", type=number(0, MAX_SEED, integer=True), default=None, help="seed of the optimizer and the ensemble (default: the constraint's uncertainty.seed)")
    p.add_argument("--backoff_factor", type=number(0, 100), default=1.0, metavar="F",
                   help="envelope back-off in multiples of the noise back-off that meets the chance constraint (default 1; 0 = none)")
    p.add_argument("--prefix", default=None, help="exchange/queue name prefix on RabbitMQ (default: $INDUSTRIVERSE_AMQP_PREFIX or industriverse)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--log-level", default=None, metavar="LEVEL",
                   help="worker log level on stderr for the embedded bus (default: $INDUSTRIVERSE_LOG_LEVEL or CRITICAL:"
                        " the outcome is reported in one line anyway)")
    return p


def _progress(quiet: bool):
    start = time.monotonic()
    show = not quiet

    def on_progress(message) -> None:
        if not show:
            return
        extra = f" (round {message.round})" if message.round else ""
        print(f"[{time.monotonic() - start:6.2f}s] {message.type}{extra}", file=sys.stderr, flush=True)

    return on_progress


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

    configure_logging(log_level or os.environ.get("INDUSTRIVERSE_LOG_LEVEL", "CRITICAL"))
    with data_roots_allowed(data_dirs):
        return EmbeddedBus(load_actors(["all"])).request(message, on_progress=on_progress)


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


@one_line_errors
def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    args = build_parser(prog).parse_args(argv)
    from industriverse.fleet import store
    from industriverse.fleet.rundir import check_run_dir
    from industriverse.model.constraint import absolute_csv_paths, read_constraint_file
    from industriverse.model.mapping import map_constraint
    from messages import Message, StrikeRequested

    path = Path(args.constraint_json)
    raw = read_constraint_file(path)
    problem = map_constraint(args.domain, raw, file=str(path), base_dir=path.parent)  # bad input ends here, exit 2
    from industriverse.verify.simulate import check_ensemble_memory

    check_ensemble_memory(problem, problem.constraint.uncertainty.ensemble_size, file=str(path))  # before any worker runs
    request = absolute_csv_paths(raw, path.parent)
    seed = args.seed if args.seed is not None else problem.constraint.uncertainty.seed
    broker = None if args.embedded else (args.broker or os.environ.get("INDUSTRIVERSE_AMQP_URL"))
    # on the broker the request expires when the client stops waiting (embedded: it runs here, now)
    expires_at = datetime.now(timezone.utc) + timedelta(seconds=args.timeout) if broker else None
    message = Message.start(StrikeRequested(domain=args.domain, constraint=request, method=args.method, seed=seed,
                                            backoff_k=args.backoff_factor, expires_at=expires_at),
                            contract_id=request.get("contract_id"))
    run_dir = Path(args.output_dir) if args.output_dir else Path("runs") / message.strike_id
    check_run_dir(run_dir)  # nothing is deployed unless its run directory can be written
    store.record_strike(message.strike_id, contract_id=message.contract_id, domain=args.domain, status="requested",
                        run_dir=str(run_dir.resolve()))
    on_progress = _progress(args.quiet or not sys.stderr.isatty())
    print(f"strike {message.strike_id}: {args.domain} on the {'RabbitMQ' if broker else 'embedded'} bus", file=sys.stderr)
    if broker:
        from workers.rabbitmq.client import request as broker_request

        outcome = broker_request(message, url=broker, prefix=args.prefix, timeout=args.timeout, on_progress=on_progress)
    else:
        outcome = run_embedded(message, log_level=args.log_level, on_progress=on_progress, data_dirs=[path.parent])

    if outcome.type == "strike.failed":
        print(f"error: strike {message.strike_id} failed at {outcome.body.stage}: {outcome.body.reason}", file=sys.stderr)
        return outcome.body.exit_code
    if outcome.type != "strike.completed":
        raise InfrastructureError(f"unexpected outcome {outcome.type} of strike {message.strike_id}")
    paths = materialize(outcome, run_dir, request)
    print(f"run directory: {run_dir}", file=sys.stderr)
    print(f"report: {paths['report']}", file=sys.stderr)
    print(paths["proof"])
    if outcome.body.outcome != "deployed":
        print("rejected by the shield, nothing deployed:", file=sys.stderr)
        for reason in outcome.body.reasons:
            print(f"  {reason}", file=sys.stderr)
        return 1
    from industriverse.operate.gateway import CapsuleGatewayService

    reason = CapsuleGatewayService().not_active_reason(outcome.body.activity_id)
    if reason is not None:  # the gateway kept a newer version: this plan does not run
        print(f"not activated: {reason}", file=sys.stderr)
        return 1
    print(outcome.body.activity_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
