"""``simulate_tnn_dynamics.py``: a Monte-Carlo ensemble of the stochastic plant, plan vs baseline.

Without ``--plan`` the domain's baseline controller runs alone; with ``--plan`` (an optimization
JSON) the plan, executed by the tracking law, and the baseline run side by side on the same
noise draws, and the paired differences (plan − baseline) come with 95 % t-intervals.
Exit 0 on success, 2 on bad input (the file and the field named in one line).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: python cli/simulate_tnn_dynamics.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cli._common import check_output_path, MAX_SEED, ArgumentParser, number, one_line_errors, write_json
from industriverse.model.canonical import read_json
from industriverse.errors import BadInput

EPILOG = """\
units: states in °C (thermal nodes) or kWh (storage nodes); power in kW; energy in kWh; cost in
the tariff's currency; emissions in kg CO2; discomfort in K·h (BOPTEST's time integral of the
deviation outside the band in force, at the control sub-step); actuator travel in kW (Σ|Δu|).
The output JSON holds, for the baseline (and the plan): percentile bands (1/5/50/95/99) of every
node per step, site power bands, violation counts, the violation probability with its one-sided
Clopper–Pearson upper bound at the constraint's confidence, KPI summaries, per-trajectory KPIs, the
nominal (noise-free) run and the stability score; with --plan also paired_differences.
"""


def _progress():
    if not sys.stderr.isatty():
        return None
    last = [-1]

    def show(frac: float) -> None:
        pct = int(100 * frac)
        if pct != last[0]:
            last[0] = pct
            print(f"\rsimulating: {pct:3d} %", end="" if pct < 100 else "\n", file=sys.stderr, flush=True)

    return show


@one_line_errors
def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = ArgumentParser(
        prog=prog, description="Simulate a plan and the domain's baseline controller under noise "
                               "(Monte-Carlo ensemble of the thermal-network SDE, common random numbers).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--domain", required=True, help="domain name from the catalog (e.g. hvac, hvac_two_zone, cold_storage, microgrid)")
    parser.add_argument("--constraint_json", required=True, metavar="FILE",
                        help="client constraint JSON (horizon, envelope, tariff, disturbances, uncertainty: process "
                             "noise in state units/√h, forecast error std in the disturbance's unit with its correlation time in h)")
    parser.add_argument("--plan", metavar="OPT_JSON",
                        help="optimization JSON whose 'plan' (kW per actuator and step) to follow; it must be for the same "
                             "domain and horizon. Without it the baseline runs alone")
    parser.add_argument("--ensemble", type=number(10, 100_000, integer=True), metavar="N",
                        help="number of trajectories, 10..100000 (default: uncertainty.ensemble_size of the constraint)")
    parser.add_argument("--seed", type=number(0, MAX_SEED, integer=True), metavar="S",
                        help="seed of the noise draws, ≥ 0 (default: uncertainty.seed); the same seed gives the same JSON "
                             "apart from stats.seconds")
    parser.add_argument("--output", metavar="FILE", help="write the simulation JSON here (default: stdout)")
    args = parser.parse_args(argv)
    check_output_path(args.output, "--output")

    if args.ensemble is not None and not 10 <= args.ensemble <= 100_000:
        raise BadInput(None, "--ensemble", f"must be between 10 and 100000 trajectories, got {args.ensemble}")
    if args.seed is not None and args.seed < 0:
        raise BadInput(None, "--seed", f"must be ≥ 0, got {args.seed}")

    from industriverse.verify.baselines import baseline_settings
    from industriverse.model.mapping import load_problem
    from industriverse.verify.simulate import plan_from_optimization, simulate

    problem = load_problem(args.domain, args.constraint_json)
    baseline_settings(problem, args.constraint_json)  # a bad baseline names the constraint file
    u = None
    if args.plan is not None:
        u = plan_from_optimization(problem, read_json(args.plan), args.plan)
    doc = simulate(problem, u, ensemble_size=args.ensemble, seed=args.seed,
                   request_dir=str(Path(args.constraint_json).resolve().parent), progress=_progress(),
                   file=args.constraint_json)
    write_json(doc, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
