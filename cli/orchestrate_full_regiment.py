"""Run the strike loop for every active client contract, once per period of its schedule.

Each due contract gets exactly one strike.requested per period: the period is claimed in the
store (INDUSTRIVERSE_DB_URL) before publishing, so a restarted daemon, or a second one, does
not publish twice. With --broker (or INDUSTRIVERSE_AMQP_URL) requests go to the worker fleet on
RabbitMQ; without, each due strike runs in this process on the embedded bus and its run
directory is written under --runs_dir.

  orchestrate_full_regiment.py --contracts examples/contracts.yaml --once
  industriverse regiment status [--contract ID] [--json]

SIGTERM or Ctrl-C stops the daemon after the current pass. Exit codes: 0 · 2 bad input ·
3 infrastructure failure.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from datetime import datetime
from pathlib import Path

from cli._common import MAX_WAIT_S, ArgumentParser, number, one_line_errors
from industriverse.errors import BadInput, IndustriverseError


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--contracts", required=True, metavar="FILE", help="contracts file (YAML; see examples/contracts.yaml)")
    p.add_argument("--broker", metavar="URL", default=None, help="RabbitMQ URL; default $INDUSTRIVERSE_AMQP_URL, else the embedded bus")
    p.add_argument("--embedded", action="store_true", help="use the embedded bus even when INDUSTRIVERSE_AMQP_URL is set")
    p.add_argument("--once", action="store_true", help="one pass over the contracts, then exit")
    p.add_argument("--interval", type=number(0, MAX_WAIT_S, lo_open=True), default=60.0, metavar="S", help="seconds between passes in daemon mode (default 60)")
    p.add_argument("--runs_dir", default="runs", metavar="DIR", help="where embedded strikes write their run directories (default runs/)")
    p.add_argument("--prefix", default=None, help="exchange/queue name prefix on RabbitMQ")
    return p


def status_parser(prog: str | None) -> argparse.ArgumentParser:
    p = ArgumentParser(prog=f"{prog or 'orchestrate_full_regiment.py'} status",
                                description="List each contract's claimed periods and the outcome of their strikes.")
    p.add_argument("--contract", default=None, help="only this contract ID")
    p.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    return p


def show_status(argv: list[str], prog: str | None) -> int:
    from industriverse.fleet import store

    args = status_parser(prog).parse_args(argv)
    rows = store.list_contract_runs(args.contract)
    if args.json:
        for r in rows:
            print(json.dumps(r, default=str))
        return 0
    if not rows:
        print("no strikes yet")
        return 0
    print(f"{'contract':<28} {'period':<26} {'strike':<42} {'status':<10} reason")
    for r in rows:
        print(f"{r['contract_id']:<28} {r['period_key']:<26} {r['strike_id']:<42} {str(r.get('status')):<10} {r.get('reason') or ''}")
    return 0


class Regiment:
    """One pass publishes (or runs) every due, unclaimed contract period."""

    def __init__(self, contracts, base: Path, *, broker: str | None, prefix: str | None, runs_dir: Path):
        self.contracts, self.base, self.broker, self.prefix, self.runs_dir = contracts, base, broker, prefix, runs_dir
        self._publisher = None

    def publisher(self):
        if self._publisher is None:
            from workers.rabbitmq import RabbitPublisher

            self._publisher = RabbitPublisher(self.broker, prefix=self.prefix, name="industriverse regiment")
        return self._publisher

    def close(self) -> None:
        if self._publisher is not None:
            self._publisher.close()
            self._publisher = None

    def run_pass(self, now: datetime | None = None) -> int:
        from industriverse.fleet import store
        from industriverse.fleet.regiment import due_requests
        from messages import Message, StrikeRequested

        published = 0
        for due in due_requests(self.contracts, self.base, now or datetime.now()):
            if not store.claim_contract_period(due.contract.id, due.period_key, due.strike_id, domain=due.contract.domain):
                continue  # already requested for this period (by us before a restart, or by another daemon)
            message = Message.start(
                StrikeRequested(domain=due.contract.domain, constraint=due.request,
                                seed=due.request.get("uncertainty", {}).get("seed", 0), backoff_k=1.0),
                strike_id=due.strike_id, contract_id=due.contract.id)
            if self.broker:
                try:
                    self.publisher().publish(message)
                except IndustriverseError:
                    self.close()
                    raise
                print(f"{due.contract.id}: {due.period_key} -> strike {due.strike_id} requested", file=sys.stderr)
            else:
                self._run_embedded(message, due)
            published += 1
        return published

    def _run_embedded(self, message, due) -> None:
        from cli.run_client_strike_loop import materialize, run_embedded

        outcome = run_embedded(message, data_dirs=[(self.base / due.contract.constraint).parent])
        if outcome.type == "strike.completed":
            materialize(outcome, self.runs_dir / message.strike_id, due.request)
            what = outcome.body.activity_id if outcome.body.outcome == "deployed" else "rejected"
        else:
            what = f"failed: {outcome.body.reason}"
        print(f"{due.contract.id}: {due.period_key} -> strike {message.strike_id} {what}", file=sys.stderr)


@one_line_errors
def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["status"]:
        return show_status(argv[1:], prog)
    args = build_parser(prog).parse_args(argv)
    from industriverse.fleet.contracts import load_contracts

    contracts, base = load_contracts(args.contracts)
    broker = None if args.embedded else (args.broker or os.environ.get("INDUSTRIVERSE_AMQP_URL"))
    if broker is None:  # embedded strikes deploy, then write under --runs_dir: check it can be written first
        from industriverse.fleet.rundir import check_run_dir

        check_run_dir(Path(args.runs_dir), field="--runs_dir")
    regiment = Regiment(contracts, base, broker=broker, prefix=args.prefix, runs_dir=Path(args.runs_dir))
    stop = threading.Event()
    if not args.once:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    try:
        while True:
            n = regiment.run_pass()
            print(f"regiment pass: {n} strike(s) requested, {sum(c.active for c in contracts)} active contract(s)", file=sys.stderr)
            if args.once or stop.wait(args.interval):
                break
    finally:
        regiment.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
