"""``industriverse token create --name N --role viewer|operator`` (and ``list``, ``revoke``).

API tokens of the operator console (``industriverse serve``). ``create`` prints the token
once; the store keeps only its SHA-256, so a lost token cannot be shown again: make a new
one under the same name (it replaces the old). Viewers read; operators also submit strikes
and roll back activities.
"""
from __future__ import annotations

# Not named token.py: run as a file, cli/ is on sys.path and would shadow the stdlib token module.

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: python cli/api_token.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cli._common import ArgumentParser, one_line_errors
from industriverse.errors import BadInput


@one_line_errors
def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("create", help="make a token; print it once")
    c.add_argument("--name", required=True, help="who or what uses the token (replaces an older token of this name)")
    c.add_argument("--role", required=True, choices=("viewer", "operator"), help="viewer reads; operator also submits and rolls back")
    sub.add_parser("list", help="names and roles of the tokens (never the tokens)")
    r = sub.add_parser("revoke", help="delete a token")
    r.add_argument("--name", required=True)
    args = parser.parse_args(argv)

    from console.auth import new_token
    from industriverse.fleet import store

    if args.command == "create":
        if not args.name.strip():
            raise BadInput(None, "--name", "must not be empty")
        print(new_token(args.name.strip(), args.role))
        print(f"token '{args.name.strip()}' ({args.role}) stored hashed; this is the only time it is shown", file=sys.stderr)
        return 0
    if args.command == "list":
        for row in store.list_api_tokens():
            print(f"{row['name']}\t{row['role']}\t{row['created_at']}")
        return 0
    if not store.revoke_api_token(args.name):
        raise BadInput(None, "--name", f"no token named {args.name!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
