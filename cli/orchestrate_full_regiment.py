"""Run the strike loop for every active client contract, once per period of its schedule.

Each due contract gets exactly one strike.requested per period: the period is claimed in the
store (INDUSTRIVERSE_DB_URL) together with the request (a transactional outbox), so a restarted
daemon, or a second one, does not publish twice, and a request whose publish failed (broker
away, daemon killed) is published by the next pass. The daemon outlives broker and database
outages, retrying with back-off. With --broker (or INDUSTRIVERSE_AMQP_URL) requests go to the worker fleet on
RabbitMQ; without, each due strike runs in this process on the embedded bus and its run
directory is written under --runs_dir.

  orchestrate_full_regiment.py --contracts examples/contracts.yaml --once
  industriverse regiment status [--contract ID] [--json]

SIGTERM or Ctrl-C stops the daemon after the current pass. Exit codes: 0 · 2 bad input ·
3 infrastructure failure (--once: a request left unpublished in the outbox).
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
from industriverse.errors import InfrastructureError


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--contracts", required=True, metavar="FILE", help="contracts file (YAML; see examples/contracts.yaml)")
    p.add_argument("--broker", metavar="URL", default=None, help="RabbitMQ URL; default $INDUSTRIVERSE_AMQP_URL, else the embedded bus")
    p.add_argument("--embedded", action="store_true", help="use the embedded bus even when INDUSTRIVERSE_AMQP_URL is set")
    p.add_argument("--once", action="store_true", help="one pass over the contracts, then exit")
    p.add_argument("--interval", type=number(0, MAX_WAIT_S, lo_open=True), default=60.0, metavar="S",
                   help="seconds between passes in daemon mode (default 60; sooner, backing off, after a failed pass)")
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
    print(f"{'contract':<28} {'period':<26} {'strike':<42} {'status':<10} {'published':<10} reason")
    for r in rows:
        # a claim whose request the broker has not confirmed yet waits in the outbox
        published = "yes" if r.get("published_at") else "outbox"
        print(f"{r['contract_id']:<28} {r['period_key']:<26} {r['strike_id']:<42} {str(r.get('status')):<10} "
              f"{published:<10} {r.get('reason') or ''}")
    return 0


class Regiment:
    """One pass claims every due contract period and sends what waits in the outbox.

    The claim and the strike request go into the store in one transaction (the outbox); the
    relay then publishes each pending request with a publisher confirm (or, without a broker,
    runs it here) and marks it sent.  A crash or a broker outage in between leaves the request
    pending, and the next pass (or the next start) sends it: no claimed strike is lost.
    """

    def __init__(self, contracts, base: Path, *, broker: str | None, prefix: str | None, runs_dir: Path):
        self.contracts, self.base, self.broker, self.prefix, self.runs_dir = contracts, base, broker, prefix, runs_dir
        self._due: dict[str, object] = {}  # strike_id -> DueStrike, for the embedded runs' output

    def claim(self, now: datetime | None = None) -> int:
        """Claim the due, unclaimed periods, each with its request in the outbox; how many were new."""
        from industriverse.fleet import store
        from industriverse.fleet.regiment import due_requests
        from messages import Message, StrikeRequested, to_dict

        claims = []
        for due in due_requests(self.contracts, self.base, now or datetime.now()):
            self._due[due.strike_id] = due
            message = Message.start(
                StrikeRequested(domain=due.contract.domain, constraint=due.request,
                                seed=due.request.get("uncertainty", {}).get("seed", 0), backoff_k=1.0),
                strike_id=due.strike_id, contract_id=due.contract.id)
            claims.append({"contract_id": due.contract.id, "period_key": due.period_key, "strike_id": due.strike_id,
                           "domain": due.contract.domain, "message": to_dict(message)})
        # one transaction for the whole pass; a period already claimed (by us before a restart, or by
        # another daemon) is not new
        return len(store.claim_contract_periods(claims))

    def relay(self):
        """Send the outbox's pending requests (see :func:`workers.outbox.relay_outbox`), on RabbitMQ in batches
        whose confirms are awaited together."""
        from workers.outbox import relay_outbox

        if not self.broker:
            return relay_outbox(self._run_embedded)
        from workers.rabbitmq.publisher import RabbitPublisher

        publisher = None

        def publish(messages) -> list:
            nonlocal publisher
            if publisher is None:  # a fresh connection per relay run: no idle connection to go stale between passes
                publisher = RabbitPublisher(self.broker, prefix=self.prefix, name="industriverse regiment")
            outcomes = publisher.publish_batch(messages)  # returns once the broker confirmed (or refused) them all
            for message, error in zip(messages, outcomes):
                if error is None:
                    print(f"{message.contract_id}: strike {message.strike_id} requested", file=sys.stderr)
            return outcomes

        try:
            return relay_outbox(send_batch=publish)
        finally:
            if publisher is not None:
                publisher.close()

    def _run_embedded(self, message) -> None:
        from workers.runner import materialize, run_embedded

        # CSV series may come from any contract's constraint directory (a relayed request may
        # have been claimed before a restart, when self._due did not know it)
        outcome = run_embedded(message, data_dirs=sorted({(self.base / c.constraint).parent for c in self.contracts}))
        due = self._due.get(message.strike_id)
        if outcome.type == "strike.completed":
            request = due.request if due is not None else message.body.constraint
            materialize(outcome, self.runs_dir / message.strike_id, request)
            what = outcome.body.activity_id if outcome.body.outcome == "deployed" else "rejected"
        else:
            what = f"failed: {outcome.body.reason}"
        print(f"{message.contract_id}: strike {message.strike_id} {what}", file=sys.stderr)


@one_line_errors
def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["status"]:
        return show_status(argv[1:], prog)
    args = build_parser(prog).parse_args(argv)
    from industriverse.fleet.contracts import load_contracts

    contracts, base = load_contracts(args.contracts)
    broker = None if args.embedded else (args.broker or os.environ.get("INDUSTRIVERSE_AMQP_URL"))
    if broker:
        from workers.rabbitmq.connection import resolve_url

        broker = resolve_url(broker)  # a malformed URL is bad input (exit 2), not an outage to wait out
    else:  # embedded strikes deploy, then write under --runs_dir: check it can be written first
        from industriverse.fleet.rundir import check_run_dir

        check_run_dir(Path(args.runs_dir), field="--runs_dir")
    regiment = Regiment(contracts, base, broker=broker, prefix=args.prefix, runs_dir=Path(args.runs_dir))
    stop = threading.Event()
    if not args.once:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    from workers.logging import configure_logging
    from workers.rabbitmq.connection import Backoff

    configure_logging()  # the relay's warnings as structured lines on stderr

    # after a failed pass (broker or database away) retry sooner than --interval, backing off
    first = min(1.0, args.interval)
    backoff = Backoff(first, max(first, min(60.0, args.interval)))
    active = sum(c.active for c in contracts)
    while True:
        try:
            claimed = regiment.claim()
            result = regiment.relay()
        except Exception as exc:  # the store is unreachable: a daemon waits it out, --once reports it
            if args.once:
                raise
            from workers.middleware import reason_of

            print(f"regiment pass failed: {reason_of(exc)}; retrying", file=sys.stderr)
            claimed, result = 0, None
        healthy = result is not None and result.error is None
        if result is not None:
            sent = "published" if broker else "run here"
            print(f"regiment pass: {claimed} strike(s) requested, {len(result.sent)} {sent}, {result.pending} waiting "
                  f"in the outbox, {active} active contract(s)" + ("" if healthy else f" ({result.error})"), file=sys.stderr)
        if args.once:
            if not healthy:
                raise InfrastructureError(f"{result.pending} strike request(s) left in the outbox, published by the next run: "
                                          f"{result.error}")
            break
        if healthy:
            backoff.reset()
        wait = args.interval if healthy else backoff.next()
        if not healthy:
            print(f"regiment: retrying in {wait:g} s", file=sys.stderr)
        if stop.wait(wait):
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
