"""``industriverse twin --manifest M [--fault NAME@HOUR[:ARG] ...] [--seed S] --output FILE``.

Writes telemetry (JSON lines, one reading per plan step: ``{time, step, nodes, power_kw,
faults}``) of one stochastic trajectory of a capsule's plan executed by its tracking law
(:mod:`industriverse.operate.twin`), with injectable faults:

* ``door_open@H[:KW]`` — a door to the outside opens at hour H on the main thermal node
  (default load: 1.5 × the thermal actuators' rating, enough to break the envelope);
* ``sensor_stuck@H[:NODE]`` — a sensor freezes at its reading at hour H;
* ``heater_failure@H[:ACTUATOR]`` — a heater/heat pump/chiller delivers nothing from hour H.

Hours count from the plan's start.  Exit 0 written · 2 bad input.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: python cli/twin.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cli._common import check_output_path, MAX_SEED, ArgumentParser, number, one_line_errors
from industriverse.errors import BadInput


def write_jsonl(readings: list[dict], path: str | Path) -> None:
    """Write readings as JSON lines (atomically: a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, allow_nan=False) + "\n" for r in readings))
    tmp.replace(path)


@one_line_errors
def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    from industriverse.operate.twin import FAULTS, parse_fault, twin_for_capsule

    parser = ArgumentParser(
        prog=prog, description="Write simulated telemetry (JSON lines) of a deployed capsule, with injectable faults.")
    parser.add_argument("--manifest", required=True, metavar="M", help="the capsule's manifest.yaml (or its directory)")
    parser.add_argument("--fault", action="append", default=[], metavar="NAME@HOUR[:ARG]",
                        help=f"inject a fault ({', '.join(FAULTS)}) at HOUR hours after the plan's start; repeatable")
    parser.add_argument("--seed", type=number(0, MAX_SEED, integer=True), default=0, help="noise seed (same seed and faults: same telemetry; default 0)")
    parser.add_argument("--output", required=True, metavar="FILE", help="telemetry file to write (JSON lines)")
    args = parser.parse_args(argv)
    check_output_path(args.output, "--output")
    if args.seed < 0:
        raise BadInput(None, "--seed", f"must be a non-negative integer, got {args.seed}")
    faults = [parse_fault(f) for f in args.fault]
    readings = twin_for_capsule(args.manifest, faults=faults, seed=args.seed)
    write_jsonl(readings, args.output)
    print(f"wrote {len(readings)} readings to {args.output}" + (f" (faults: {', '.join(map(str, faults))})" if faults else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
