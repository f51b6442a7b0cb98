"""Run the whole value loop for one client: optimize, simulate, verify, deploy, report.

Without --broker the five workers run in this process on the embedded bus (nothing to
install or start). With --broker (or INDUSTRIVERSE_AMQP_URL) the strike is published to
RabbitMQ and this command waits for its outcome from the worker fleet.

stdout: the proof path, then the deployed activity ID as the last line. stderr, just before:
one line saying what the plan saves per day with its interval, or why it was rejected.
Exit codes: 0 deployed and active · 1 rejected by the shield or infeasible (nothing deployed), or
deployed but not activated (the gateway holds a newer version) ·
2 bad input · 3 infrastructure failure.
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cli._common import MAX_SEED, MAX_WAIT_S, ArgumentParser, number, one_line_errors
from industriverse.errors import BadInput, InfrastructureError
from workers.runner import materialize, run_embedded


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
    p.add_argument("--allow-past", dest="allow_past", action="store_true",
                   help="plan a horizon that has already started (a replay of history); else such a plan is refused")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--log-level", default=None, metavar="LEVEL",
                   help="worker log level on stderr for the embedded bus (default: $INDUSTRIVERSE_LOG_LEVEL or CRITICAL:"
                        " the outcome is reported in one line anyway)")
    return p


# Set when this module runs as the command (a process of its own, see the end of this file): the cyclic
# garbage collector is off during its imports and is not run at its exit.
_OWN_PROCESS = False


def _imported() -> None:
    """The command's imports are done: the ~100k objects they made live until it exits, so they are
    frozen (never scanned again: collections only see what the strike itself makes) and collection
    resumes.  Only in the command's own process; elsewhere (tests, ``industriverse strike``) nothing."""
    if _OWN_PROCESS and not gc.isenabled():
        gc.freeze()
        gc.enable()


def _exit(code: int) -> int:
    """Before the command's own process exits: close the database as a normal exit would (SQLite
    checkpoints its write-ahead log) and freeze every object, so that the interpreter's exit does not
    scan them all for cycles once more (~0.15 s CPU of the strike) just before freeing them."""
    store = sys.modules.get("industriverse.fleet.store")
    if store is not None:
        store.dispose_engines()
    gc.freeze()
    return code


def _progress(quiet: bool):
    start = time.monotonic()
    show = not quiet

    def on_progress(message) -> None:
        if not show:
            return
        extra = f" (round {message.round})" if message.round else ""
        print(f"[{time.monotonic() - start:6.2f}s] {message.type}{extra}", file=sys.stderr, flush=True)

    return on_progress




@one_line_errors
def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    args = build_parser(prog).parse_args(argv)
    broker = None if args.embedded else (args.broker or os.environ.get("INDUSTRIVERSE_AMQP_URL"))
    if broker:
        return strike(args, broker)
    # the report is made here: its renderers load in render processes on the other core while this one works
    from industriverse.report import pool

    pool.start()
    try:
        return strike(args, None)
    finally:
        pool.stop()


def strike(args: argparse.Namespace, broker: str | None) -> int:
    """The strike of parsed ``args`` on ``broker`` (None: the embedded bus); the exit code."""
    from industriverse.fleet import store
    from industriverse.fleet.rundir import check_run_dir
    from industriverse.model.constraint import absolute_csv_paths, freeze_horizon, past_start, read_constraint_file
    from industriverse.model.mapping import map_constraint
    from messages import Message, StrikeRequested

    path = Path(args.constraint_json)
    raw = freeze_horizon(read_constraint_file(path))  # now/next_hour/tomorrow: one instant for every worker
    problem = map_constraint(args.domain, raw, file=str(path), base_dir=path.parent)  # bad input ends here, exit 2
    from industriverse.verify.simulate import check_ensemble_memory

    check_ensemble_memory(problem, problem.constraint.uncertainty.ensemble_size, file=str(path))  # before any worker runs
    now = past_start(problem.constraint.horizon)
    if now is not None and not (args.allow_past or os.environ.get("INDUSTRIVERSE_ALLOW_PAST") == "1"):
        raise BadInput(str(path), "horizon.start",
                       f"{problem.start.isoformat(timespec='minutes')} is in the past (now {now.isoformat(timespec='minutes')}): "
                       "plan from now, next_hour or tomorrow, or give --allow-past to replay history")
    request = absolute_csv_paths(raw, path.parent)
    seed = args.seed if args.seed is not None else problem.constraint.uncertainty.seed
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

        _imported()
        outcome = broker_request(message, url=broker, prefix=args.prefix, timeout=args.timeout, on_progress=on_progress)
    else:
        from workers.actor import load_actors

        load_actors(["all"])  # the workers' modules (run_embedded runs these actors): the last imports
        _imported()
        outcome = run_embedded(message, log_level=args.log_level, on_progress=on_progress, data_dirs=[path.parent])

    if outcome.type == "strike.failed":
        print(f"error: strike {message.strike_id} failed at {outcome.body.stage}: {outcome.body.reason}", file=sys.stderr)
        return outcome.body.exit_code
    if outcome.type != "strike.completed":
        raise InfrastructureError(f"unexpected outcome {outcome.type} of strike {message.strike_id}")
    paths = materialize(outcome, run_dir, request)
    print(f"run directory: {run_dir}", file=sys.stderr)
    print(f"report: {paths['report']}", file=sys.stderr)
    print(summary_line(outcome), file=sys.stderr)
    print(paths["proof"])
    if outcome.body.outcome != "deployed":
        for reason in outcome.body.reasons[1:]:
            print(f"  also: {reason}", file=sys.stderr)
        return 1
    from industriverse.operate.gateway import CapsuleGatewayService

    reason = CapsuleGatewayService().not_active_reason(outcome.body.activity_id)
    if reason is not None:  # the gateway kept a newer version: this plan does not run
        print(f"not activated: {reason}", file=sys.stderr)
        return 1
    print(outcome.body.activity_id)
    return 0


def summary_line(outcome) -> str:
    """One line: the saving per day with its interval (the report's headline), or the rejection reason."""
    from industriverse.fleet import store

    body = outcome.body
    if body.outcome != "deployed":
        reasons = body.reasons or ["no reason given"]
        more = f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else ""
        return f"rejected by the shield, nothing deployed: {reasons[0]}{more}"
    headline = None
    if body.value_ref:
        try:
            headline = store.get_json_artifact(body.value_ref).get("headline")
        except KeyError:
            headline = None
    return f"deployed: {headline}" if headline else "deployed (no value summary in the store)"


if __name__ == "__main__":
    # a process of its own: no cyclic garbage collection during its imports (see _imported) nor at its exit
    _OWN_PROCESS = True
    gc.disable()
    sys.exit(_exit(main()))
