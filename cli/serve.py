"""``industriverse serve [--host 127.0.0.1] [--port 8080]``: the operator console and REST API.

Pages at ``/`` (fleet overview, strikes, capsules, activities, alerts), the REST API under
``/api/v1`` (OpenAPI at ``/docs``), ``/healthz`` for probes. Every other path needs an API
token (``industriverse token create --name N --role viewer|operator``): the
``Authorization: Bearer TOKEN`` header, or the cookie the ``/login`` page sets.

Strikes submitted through the API run on the embedded bus in a background thread of this
process (one at a time) and their run directories are written under ``--runs_dir``; with
``--broker`` (or INDUSTRIVERSE_AMQP_URL) they are published to RabbitMQ for the worker
fleet. The store is INDUSTRIVERSE_DB_URL, else the SQLite file in the data directory.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: python cli/serve.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cli._common import ArgumentParser, number, one_line_errors


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=number(1, 65535, integer=True), default=8080, help="port (default 8080)")
    p.add_argument("--broker", metavar="URL", default=None, help="RabbitMQ URL; default $INDUSTRIVERSE_AMQP_URL, else the embedded bus")
    p.add_argument("--embedded", action="store_true", help="use the embedded bus even when INDUSTRIVERSE_AMQP_URL is set")
    p.add_argument("--prefix", default=None, help="exchange/queue name prefix on RabbitMQ")
    p.add_argument("--runs_dir", default="runs", metavar="DIR", help="where embedded strikes write their run directories (default runs/)")
    p.add_argument("--contracts", default=None, metavar="FILE", help="contracts file to list on the overview (YAML)")
    p.add_argument("--log-level", default="warning", choices=("critical", "error", "warning", "info", "debug"),
                   help="uvicorn log level (default warning)")
    return p


@one_line_errors
def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    args = build_parser(prog).parse_args(argv)

    if args.contracts:
        from industriverse.fleet.contracts import load_contracts

        load_contracts(args.contracts)  # a bad contracts file is exit 2 now, not an error page later
    import uvicorn

    from console.app import ConsoleConfig, create_app

    broker = None if args.embedded else (args.broker or os.environ.get("INDUSTRIVERSE_AMQP_URL"))
    app = create_app(ConsoleConfig(broker=broker, prefix=args.prefix, runs_dir=Path(args.runs_dir),
                                   contracts_file=Path(args.contracts) if args.contracts else None))
    print(f"industriverse console on http://{args.host}:{args.port}/ ({'RabbitMQ' if broker else 'embedded bus'})", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
