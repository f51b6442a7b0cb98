"""``industriverse operate --site S --contracts FILE --contract ID --mqtt URL [--broker URL]``: the live loop.

A daemon, one per site: subscribes to the site's telemetry, estimates the state with the
Kalman filter of the contract's network, dispatches the active capsule's set-points through
its tracking law from the estimated state, runs the runtime monitor on the live stream
(alerts as gateway activities; a rollback sends the site to its baseline, said on the
set-points) and re-plans every ``replan_minutes`` of plant time (the contract's setting,
default 60) with a strike from the estimated state, on the embedded bus or on RabbitMQ
(``--broker``) for the worker fleet.  SIGTERM/SIGINT stop it cleanly; restarted, it resumes
from the store.  Exit codes: 0 stopped · 2 bad input · 3 broker unreachable.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: python cli/operate.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cli._common import live_parser, number, one_line_errors
from industriverse.errors import BadInput


def _own_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--contracts", required=True, metavar="FILE", help="contracts file (YAML, see examples/contracts.yaml)")
    p.add_argument("--contract", required=True, metavar="ID", help="the contract this site runs under")
    p.add_argument("--broker", metavar="URL", default=None,
                   help="RabbitMQ URL for the re-planning strikes (default: $INDUSTRIVERSE_AMQP_URL, else the embedded bus)")
    p.add_argument("--embedded", action="store_true", help="use the embedded bus even when INDUSTRIVERSE_AMQP_URL is set")
    p.add_argument("--prefix", default=None, help="exchange/queue name prefix on RabbitMQ")
    p.add_argument("--method", choices=("auto", "idf", "lp"), default="auto", help="optimizer of the re-plans (default auto)")
    p.add_argument("--backoff_factor", type=number(0, 100), default=1.0, metavar="F",
                   help="envelope back-off of the re-plans in multiples of the noise back-off (default 1, as the strike "
                        "loop: the offset-free estimate and feedforward take the model error; benchmarks/closed_loop.py "
                        "measures x1 and x2)")
    p.add_argument("--model-error", type=number(0, 1000), default=None, metavar="Q",
                   help="least process noise the Kalman filter assumes, state units per sqrt(h) (default 0.5)")
    p.add_argument("--fresh", action="store_true", help="ignore the stored state of the site (do not resume)")


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    return live_parser(prog, __doc__, _own_flags)


@one_line_errors
def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    args = build_parser(prog).parse_args(argv)
    from industriverse.fleet.contracts import load_contracts
    from industriverse.operate.gateway import CapsuleGatewayService
    from industriverse.operate.live import DEFAULT_MODEL_ERROR, LiveOperator
    from workers.live import LiveDaemon
    from workers.logging import configure_logging, get_logger
    from workers.mqtt import options_from_args

    site = args.site
    options = options_from_args(args)
    contracts, base = load_contracts(args.contracts)
    contract = next((c for c in contracts if c.id == args.contract), None)
    if contract is None:
        raise BadInput(args.contracts, "contracts", f"no contract '{args.contract}' (known: {', '.join(c.id for c in contracts)})")
    model_error = DEFAULT_MODEL_ERROR if args.model_error is None else args.model_error
    broker = None if args.embedded else (args.broker or os.environ.get("INDUSTRIVERSE_AMQP_URL"))
    configure_logging(args.log_level)
    log = get_logger("industriverse.operate").bind(site=site, contract_id=contract.id)
    operator = LiveOperator(site, contract, base, gateway=CapsuleGatewayService(), model_error=model_error,
                            resume=not args.fresh, log=log)
    daemon = LiveDaemon(operator, options, broker=broker, prefix=args.prefix, method=args.method,
                        backoff_k=args.backoff_factor, log=log,
                        verbose_workers=str(args.log_level or os.environ.get("INDUSTRIVERSE_LOG_LEVEL", "")).upper() == "DEBUG")
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: daemon.stop())
    daemon.run()
    import threading

    if any(t.name.startswith("replan-") and t.is_alive() for t in threading.enumerate()):
        # a re-plan still in flight is abandoned (the restarted daemon re-plans): end now rather than let
        # interpreter shutdown race its thread for the log stream
        import logging

        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
