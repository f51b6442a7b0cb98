"""``industriverse gateway capsules|activities [--json] [--capsule ID] [--db URL]``.

``capsules``: every capsule with its active version and the active deployment activity.
``activities``: deployments, supersedes, rollbacks and alerts, oldest first (``--capsule``
to keep one capsule's, ``--type`` to keep one kind).  ``--json`` prints the rows as a
JSON list (payloads included) instead of a table.

``rollback CAPSULE --reason TEXT`` withdraws the active version and restores the
previous one; it prints the rollback activity ID.

The database is ``--db``, else ``INDUSTRIVERSE_DB_URL``, else the SQLite file in the
data directory.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: python cli/gateway.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cli._common import ArgumentParser, one_line_errors
from industriverse.operate.gateway import ACTIVITY_TYPES, CapsuleGatewayService

CAPSULE_COLUMNS = ("capsule_id", "domain", "active_version", "versions", "active_activity_id", "updated_at")
ACTIVITY_COLUMNS = ("id", "capsule_id", "version", "activity_type", "status", "created_at", "summary")


def _summary(activity: dict) -> str:
    payload = activity.get("payload") or {}
    kind = activity["activity_type"]
    if kind == "deployment":
        return f"strike {payload.get('strike_id')}"
    if kind == "supersede":
        return f"{payload.get('from_version')} -> {payload.get('to_version')}"
    if kind == "rollback":
        return f"{payload.get('from_version')} -> {payload.get('to_version')}: {payload.get('reason')}"
    text = payload.get("message") or payload.get("reason") or payload.get("check") or ""
    return str(text) if text else json.dumps(payload, sort_keys=True)[:80]


def _table(rows: list[dict], columns: tuple[str, ...]) -> str:
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


@one_line_errors
def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = ArgumentParser(prog=prog, description="List what the capsule gateway holds.")
    parser.add_argument("--db", metavar="URL", help="database URL (default: INDUSTRIVERSE_DB_URL or the local SQLite file)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("capsules", "capsules and their active versions"), ("activities", "deployment, supersede, rollback and alert activities")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
        p.add_argument("--capsule", metavar="ID", help="only this capsule")
        if name == "activities":
            p.add_argument("--type", choices=ACTIVITY_TYPES, help="only this kind of activity")
    r = sub.add_parser("rollback", help="withdraw the active version of a capsule and restore the previous one")
    r.add_argument("capsule", metavar="CAPSULE")
    r.add_argument("--reason", required=True)
    args = parser.parse_args(argv)

    gateway = CapsuleGatewayService(args.db)
    if args.command == "rollback":
        print(gateway.rollback(args.capsule, args.reason))
        return 0
    if args.command == "capsules":
        rows = gateway.list_capsules()
        if args.capsule:
            rows = [r for r in rows if r["capsule_id"] == args.capsule]
        columns = CAPSULE_COLUMNS
    else:
        rows = gateway.list_activities(args.capsule, activity_type=args.type)
        for row in rows:
            row["summary"] = _summary(row)
        columns = ACTIVITY_COLUMNS
    if args.json:
        for row in rows:
            row.pop("summary", None)
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    elif rows:
        print(_table(rows, columns))
    else:
        print(f"no {args.command}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
