"""``industriverse worker KIND... --broker URL [--concurrency N] [--metrics-port P]``.

Runs worker processes of the value loop on RabbitMQ.  KIND is optimizer, simulator, shield,
deployer, reporter or all.  Stops on SIGTERM/SIGINT after finishing in-flight messages.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: python cli/worker.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cli._common import MAX_WAIT_S, ArgumentParser, number, one_line_errors
from industriverse.errors import BadInput
from messages.routing import WORKER_KINDS


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = ArgumentParser(prog=prog, description=__doc__.split("\n\n")[1])
    parser.add_argument("kinds", nargs="+", metavar="KIND", choices=[*WORKER_KINDS, "all"],
                        help=f"worker kinds to run in this process: {', '.join(WORKER_KINDS)} or all")
    parser.add_argument("--broker", metavar="URL", help="amqp://user:password@host:5672/vhost (default: $INDUSTRIVERSE_AMQP_URL)")
    parser.add_argument("--concurrency", type=number(1, 256, integer=True), default=1, metavar="N", help="handler threads per kind (= prefetch count); default 1")
    parser.add_argument("--metrics-port", type=number(0, 65535, integer=True), metavar="P", help="serve Prometheus metrics on this port")
    parser.add_argument("--prefix", help="exchange/queue name prefix (default: $INDUSTRIVERSE_AMQP_PREFIX or 'industriverse')")
    parser.add_argument("--grace", type=number(0, MAX_WAIT_S), default=30.0, metavar="S", help="seconds to finish in-flight messages on SIGTERM; default 30")
    return parser


def _check_services(broker: str | None) -> None:
    """The store and the broker must be usable before a worker takes its first message:
    :class:`~industriverse.errors.ServiceUnavailable` (exit 3) naming the one that is not."""
    import os

    import pika

    from industriverse.errors import ServiceUnavailable
    from industriverse.fleet import store

    store.get_engine()  # connects and creates the schema, or ServiceUnavailable("database", ...)
    url = broker or os.environ.get("INDUSTRIVERSE_AMQP_URL")
    if not url:
        return  # run_workers says that no broker URL was given (exit 2)
    try:
        params = pika.URLParameters(url)
        params.socket_timeout = params.blocked_connection_timeout = 10.0
        params.connection_attempts = 1
        pika.BlockingConnection(params).close()
    except (pika.exceptions.AMQPError, OSError, ValueError) as exc:
        raise ServiceUnavailable("broker", url, f"{type(exc).__name__} {str(exc)[:200]}".strip()) from None


@one_line_errors
def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    args = build_parser(prog).parse_args(argv)
    if args.concurrency < 1:
        raise BadInput(None, "--concurrency", f"must be at least 1, not {args.concurrency}")
    if args.metrics_port is not None and not 0 < args.metrics_port < 65536:
        raise BadInput(None, "--metrics-port", f"must be a TCP port (1-65535), not {args.metrics_port}")

    from workers.worker import run_workers  # imported late: --help stays fast

    _check_services(args.broker)  # exit 3 now, not a dead-lettered message later
    return run_workers(args.kinds, args.broker, args.concurrency, args.metrics_port, prefix=args.prefix, grace=args.grace)


if __name__ == "__main__":
    sys.exit(main())
