"""``industriverse monitor --manifest M --telemetry FILE [--consecutive N] [--stuck-readings N] [--db URL] [--json]``.

Replays telemetry (JSON lines ``{time, nodes: {node: value}, power_kw}``) of a deployed
capsule through the runtime monitor (:class:`industriverse.operate.monitor.ThermodynamicRuntimeMonitor`),
armed with the configuration stored at deployment.  Breaches are recorded as gateway
``alert`` activities; after N consecutive readings with a hard breach (envelope or energy
budget) the capsule is rolled back and monitoring stops.

Prints one line per alert and the rollback, then a summary.  Exit 0 nothing breached ·
1 alerted · 2 bad input (unreadable telemetry — file, line and field named — or a capsule
the gateway does not hold).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: python cli/monitor.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cli._common import ArgumentParser, number, one_line_errors
from industriverse.errors import BadInput


def read_telemetry(path: str | Path):
    """Yield ``(where, reading)`` from a JSON-lines file; blank lines are skipped."""
    from industriverse.model.canonical import parse_json, read_text_checked

    path = Path(path)
    text = read_text_checked(path, what="telemetry file")  # stat, size limit
    for n, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            where = f"{path} line {n}"
            yield where, parse_json(line, where)  # depth, integer-length and finite-number limits


@one_line_errors
def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    from industriverse.trust.capsule import manifest_path_of
    from industriverse.operate.gateway import CapsuleGatewayService
    from industriverse.operate.monitor import ThermodynamicRuntimeMonitor, armed_config

    parser = ArgumentParser(
        prog=prog, description="Check telemetry of a deployed capsule against its envelope, predicted band and energy "
                               "budget; record alerts and roll back after repeated hard breaches.",
        epilog="Exit 0 nothing breached, 1 alerted, 2 bad input.")
    parser.add_argument("--manifest", required=True, metavar="M", help="the deployed capsule's manifest.yaml (or its directory)")
    parser.add_argument("--telemetry", required=True, metavar="FILE", help="readings as JSON lines {time, nodes, power_kw}")
    parser.add_argument("--consecutive", type=number(1, 10**6, integer=True), default=None, metavar="N",
                        help="roll back after N consecutive readings with a hard breach (default: as armed, 3)")
    parser.add_argument("--stuck-readings", type=number(0, 10**6, integer=True), default=None, metavar="N",
                        help="flag a sensor stuck after N identical readings in a row (default 4; 0 turns it off; "
                             "raise it for sensors that round their values)")
    parser.add_argument("--db", metavar="URL", help="gateway database URL (default: INDUSTRIVERSE_DB_URL or the local SQLite file)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)

    mpath = manifest_path_of(args.manifest)
    if not mpath.exists():
        raise BadInput(str(mpath), None, "no such file")
    gateway = CapsuleGatewayService(args.db)
    config, deployment = armed_config(gateway, mpath, consecutive=args.consecutive, stuck_readings=args.stuck_readings)
    if deployment is None:
        raise BadInput(str(mpath), None, f"capsule {config.capsule_id} version {config.version} is not deployed on this "
                                         "gateway (deploy it with 'industriverse deploy --manifest ...')")
    monitor = ThermodynamicRuntimeMonitor(config, gateway)
    for where, reading in read_telemetry(args.telemetry):
        obs = monitor.observe(reading, where=where)
        for alert in obs.alerts:
            if not args.json:
                print(f"ALERT {alert.get('id')} [{alert['severity']}] {alert['time']} {alert['kind']}: {alert['message']}")
        if obs.rollback and not args.json:
            print(f"ROLLBACK {obs.rollback}: capsule {config.capsule_id} version {config.version} withdrawn at {obs.time}")
        if monitor.stopped:
            break
    summary = monitor.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        state = "rolled back" if summary["rolled_back"] else ("alerted" if summary["alerts"] else "no breach")
        print(f"{state}: {summary['readings']} readings, {summary['breached_readings']} with a breach, "
              f"{summary['alerts']} alert(s), {summary['energy_kwh']:.4g} kWh imported")
    return 1 if summary["alerts"] else 0


if __name__ == "__main__":
    sys.exit(main())
