"""``industriverse capsule pack RUN_DIR`` and ``industriverse capsule verify CAPSULE``.

``pack`` writes ``RUN_DIR/capsule/`` (signed manifest.yaml, plan.json, proof.json and,
when the run has a simulation, bands.json) and prints the manifest's path.  Exit 0, or 2
when the run directory lacks optimization.json or proof.json.

``verify`` prints every reason the capsule could not be deployed (one per line) and
exits 1, or prints ``deployable: <id> version <n>`` and exits 0.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: python cli/capsule.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cli._common import ArgumentParser, number, one_line_errors
from industriverse.trust.capsule import LegacyManifest, inspect_capsule, pack_capsule


@one_line_errors
def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = ArgumentParser(prog=prog, description="Pack and check signed capsules.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="pack a run directory into RUN_DIR/capsule/ and print the manifest path")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--version", type=number(1, 2**63 - 1, integer=True), help="capsule version (default: the proof's UTC time as YYYYMMDDHHMMSSmmm)")
    v = sub.add_parser("verify", help="say whether a capsule can be deployed, and if not, why")
    v.add_argument("capsule", metavar="CAPSULE", help="capsule directory or its manifest.yaml")
    args = parser.parse_args(argv)

    if args.command == "pack":
        print(pack_capsule(args.run_dir, version=args.version))
        return 0
    manifest, _, problems = inspect_capsule(args.capsule)
    if problems:
        for line in problems:
            print(line)
        return 1
    assert not isinstance(manifest, LegacyManifest)
    print(f"deployable: {manifest.id} version {manifest.version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
