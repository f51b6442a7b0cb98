"""``industriverse fit --telemetry FILE.csv --network TEMPLATE.json --output NETWORK.json``.

Grey-box identification of a thermal network from telemetry (:mod:`industriverse.model.identify`):
maximum likelihood of the continuous–discrete Kalman filter's innovations, process and
measurement noise estimated too, several optimiser starts, 95 % intervals from the observed
information.  Writes NETWORK.json (``{"network": ..., "uncertainty": {"process_noise": ...,
"measurement_noise": ...}}``; a constraint takes it as ``"network": "NETWORK.json"``) and the
fit report ``fit.json`` + ``fit.html`` next to it (or in ``--report-dir``).

Exit 0 fitted · 2 bad input, or a parameter the data cannot identify (the report is still
written; NETWORK.json is not, unless ``--allow-unidentifiable``).
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: python cli/fit_thermal_network.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cli._common import MAX_SEED, ArgumentParser, number, one_line_errors, write_json
from industriverse.errors import BadInput


@one_line_errors
def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = ArgumentParser(prog=prog, description="Fit a thermal network's parameters (and noise) to telemetry.")
    parser.add_argument("--telemetry", required=True, metavar="FILE.csv",
                        help="CSV: 'time' (ISO 8601 or seconds) + one column per node, actuator (kW) and disturbance")
    parser.add_argument("--network", required=True, metavar="TEMPLATE.json",
                        help='network with {"fit": true, "initial": V, "min": A, "max": B} in place of each number to fit')
    parser.add_argument("--output", required=True, metavar="NETWORK.json", help="fitted network (with its noise) to write")
    parser.add_argument("--columns", metavar="OLD=NEW,...", help="rename CSV columns before matching")
    parser.add_argument("--validation", type=number(0, 0.9), default=0.2, metavar="F",
                        help="fraction of the time span held back at the end for validation (default 0.2)")
    parser.add_argument("--starts", type=number(1, 1000, integer=True), default=4, help="optimiser starts (default 4)")
    parser.add_argument("--seed", type=number(0, MAX_SEED, integer=True), default=0, help="seed of the random starts (default 0)")
    parser.add_argument("--report-dir", metavar="DIR", help="where fit.json and fit.html go (default: next to --output)")
    parser.add_argument("--allow-unidentifiable", action="store_true",
                        help="write NETWORK.json even when a parameter is not identifiable")
    args = parser.parse_args(argv)
    from industriverse.model.identify import fit_network, parse_template, network_with, read_template
    from industriverse.model.telemetry import parse_columns, read_telemetry
    from industriverse.report.fit import render_fit_html

    template = read_template(args.network)
    filled, params = parse_template(template, file=args.network)
    if not params:
        raise BadInput(args.network, None, 'no parameter is marked {"fit": true, "initial": ...}: nothing to fit')
    net0 = network_with(filled, params, [p.initial for p in params], file=args.network)
    tel = read_telemetry(args.telemetry, net0, columns=parse_columns(args.columns))
    res = fit_network(template, tel, file=args.network, starts=args.starts, validation=args.validation, seed=args.seed)
    report = dict(res.report)
    series = report.pop("series")
    report = {"telemetry": str(args.telemetry), "template": str(args.network), **report,
              "process_noise": res.process_noise, "measurement_noise": res.measurement_noise}
    out = Path(args.output)
    rdir = Path(args.report_dir) if args.report_dir else out.parent
    rdir.mkdir(parents=True, exist_ok=True)
    write_json(report, rdir / "fit.json")
    units = {n.name: ("kWh" if n.is_storage else "°C") for n in res.network.nodes}
    (rdir / "fit.html").write_text(render_fit_html(report, series, units))
    for note in tel.dropped:
        print(f"dropped: {note}", file=sys.stderr)
    for p in report["parameters"]:
        ci = f"[{p['ci95'][0]:.4g}, {p['ci95'][1]:.4g}]" if p["ci95"] else "(no interval)"
        print(f"{p['name']:<45} {p['value']:>12.5g} {p['unit']:<6} 95% {ci}", file=sys.stderr)
    print(f"report: {rdir / 'fit.html'} ({report['seconds']:.1f} s)", file=sys.stderr)
    if res.problems and not args.allow_unidentifiable:
        raise BadInput(args.network, None, "not identifiable: " + "; ".join(res.problems)
                       + " (fix or fit fewer parameters, give more varied data, or --allow-unidentifiable)")
    write_json(res.network_document(), out)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
