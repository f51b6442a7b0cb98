"""``generate_value_report.py --run RUN [--output_dir DIR] [--format md,html,pdf] [--db URL]``.

Writes the value report of a run: ``value.json`` (always), ``report.md`` (plots as PNG files
beside it), ``report.html`` (one self-contained file) and ``report.pdf``.

RUN is a run directory (optimization.json, simulation.json, and when present verdict.json,
proof.json, capsule/manifest.yaml, deployment.json) or a strike ID in the store
(``INDUSTRIVERSE_DB_URL`` or ``--db``).  The default output is ``RUN/report/`` (for a strike,
its run directory's ``report/``, else ``runs/<strike_id>/report/``).

Prints one ``<kind>: <path>`` line per file written.  Exit 0 · 2 bad input (no such run or
strike, a missing or malformed document, an unknown format).
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: python cli/generate_value_report.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cli._common import check_output_path, ArgumentParser, one_line_errors
from industriverse.errors import BadInput


@one_line_errors
def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = ArgumentParser(
        prog=prog,
        description="Write the value report of a run: energy, cost and CO2 saved against the baseline with 95% "
                    "intervals, the stability score, plots; Markdown, self-contained HTML, PDF and value.json.",
    )
    parser.add_argument("--run", required=True, metavar="RUN", help="run directory, or a strike ID found in the store")
    parser.add_argument("--output_dir", metavar="DIR", help="where to write (default: RUN/report/; for a strike ID its run directory's report/, else runs/<strike_id>/report/)")
    parser.add_argument("--format", default="md,html,pdf", metavar="LIST",
                        help="comma-separated subset of md,html,pdf (default: all three); value.json is always written")
    parser.add_argument("--db", metavar="URL", help="store database URL for a strike ID (default: INDUSTRIVERSE_DB_URL or the local SQLite file)")
    args = parser.parse_args(argv)
    check_output_path(args.output_dir, "--output_dir", directory=True)

    from industriverse.report.render import parse_formats, read_strike, write_report

    formats = parse_formats(args.format)
    try:
        paths = _write(args, formats, read_strike, write_report)
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
        # the run's documents are input here: one that does not have the shape the report reads is bad input
        raise BadInput(args.run, None, f"a run document is malformed ({type(exc).__name__}: "
                                       f"{(str(exc).splitlines() or [''])[0][:160]})") from None
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


def _write(args, formats, read_strike, write_report) -> dict:
    run_path = Path(args.run)
    if run_path.is_dir():
        paths = write_report(run_path, args.output_dir, formats)
    else:
        if run_path.suffix or "/" in args.run:
            raise BadInput(args.run, None, "no such run directory")
        engine = None
        if args.db:
            from industriverse.fleet.store import get_engine

            engine = get_engine(args.db)
        run = read_strike(args.run, engine=engine)
        if run is None:
            raise BadInput(None, "--run", f"'{args.run}' is neither a run directory nor a strike ID in the store")
        run_dir = run.get("run_dir")
        output_dir = args.output_dir or (Path(run_dir) / "report" if run_dir else Path("runs") / args.run / "report")
        paths = write_report(run_dir, output_dir, formats, run=run)
    return paths


if __name__ == "__main__":
    sys.exit(main())
