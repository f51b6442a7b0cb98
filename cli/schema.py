"""``industriverse schema [--output DIR]``: the JSON Schema of every message.

Without ``--output``: one JSON object keyed by message type on stdout.  With it: one file
``DIR/<type>.schema.json`` per message type, and their paths on stdout.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: python cli/schema.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cli._common import ArgumentParser, one_line_errors, write_json
from messages import json_schemas


@one_line_errors
def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = ArgumentParser(prog=prog, description="Export the JSON Schema of every message type.")
    parser.add_argument("--output", metavar="DIR", help="write DIR/<type>.schema.json per type instead of stdout")
    args = parser.parse_args(argv)
    schemas = json_schemas()
    if args.output is None:
        write_json(schemas, None)
        return 0
    for mtype, schema in schemas.items():
        path = Path(args.output) / f"{mtype}.schema.json"
        write_json(schema, path)
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
