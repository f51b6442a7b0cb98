"""optimize_diffusion_service.py — optimise a plan for a client constraint, with a proven bound.

Reads the constraint JSON, maps it onto the domain's thermal network and writes the
optimization JSON (plan per actuator in kW, nominal states, power, cost, energy, emissions,
peak, the proven lower bound and the gap).  Exit 0 on success, 1 when the constraints
contradict each other (each conflict named on its own stderr line), 2 on bad input.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# the optimizer's matrices are small (a few hundred rows): one BLAS thread is faster than several,
# and far faster on a loaded machine; only effective before numpy is first imported
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cli._common import check_output_path, MAX_SEED, ArgumentParser, number, one_line_errors, write_json  # noqa: E402
from industriverse.errors import BadInput, Infeasible  # noqa: E402

DESCRIPTION = """\
Optimise the control plan of a plant for a client's constraint and state how far from optimal it
provably is.  The plan gives each actuator's set-point in kW per step (thermal output for heaters,
heat pumps and chillers; electric power for battery charge/discharge); states are in °C (thermal
nodes) or kWh (storage nodes); cost is in the tariff's currency.
"""

EPILOG = """\
methods:
  auto  exact LP (HiGHS) when the electric power is affine in the plan (hvac, microgrid);
        IDF plus the convex-relaxation bound when a COP depends on temperature (cold_storage)
  idf   the energy-based diffusion engine: annealed preconditioned Langevin over a population
        of plans, then polish to exact feasibility; lower bound from the (relaxed) LP's dual
  lp    the planning LP; with a temperature-dependent COP its relaxation, whose plan is then
        polished on the true cost by sequential LP

back-off: by default the envelope is tightened by the noise back-off (--backoff_factor 1), the
margin the plan needs to meet the constraint's chance constraint under noise; this is what the
strike loop plans with, so optimize -> simulate -> verify accepts what the strike loop accepts.

exit codes: 0 plan written · 1 infeasible (each conflicting constraint on its own stderr line)
            2 bad input (one line naming the file, the field and what is wrong)

example:
  python cli/optimize_diffusion_service.py --domain hvac \\
      --constraint_json examples/hvac_testcase1.json --output runs/optimization.json
"""


def _parser(prog: str | None) -> argparse.ArgumentParser:
    p = ArgumentParser(prog=prog, description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--domain", required=True,
                   help="shipped domain whose network and defaults apply: hvac, hvac_two_zone, cold_storage or microgrid")
    p.add_argument("--constraint_json", required=True, metavar="FILE",
                   help="the client's constraint (JSON); relative CSV paths inside it resolve next to this file")
    p.add_argument("--method", choices=("auto", "idf", "lp"), default="auto",
                   help="optimizer (default: auto; see below)")
    p.add_argument("--seed", type=number(0, MAX_SEED, integer=True), default=0, metavar="N",
                   help="seed of IDF's random numbers (non-negative integer, default 0); the same seed gives the same plan")
    p.add_argument("--backoff_factor", "--backoff-factor", type=number(0, 100), default=None, metavar="F",
                   help="tighten the envelope by F times the noise back-off that meets the constraint's chance "
                        "constraint under the tracking law, as the strike loop does (default 1; 0 = plan on the "
                        "client's envelope itself)")
    p.add_argument("--backoff", default=None, metavar="K",
                   help="instead of the noise back-off, tighten every envelope band by K state units on each side "
                        "(K in kelvin for thermal nodes, kWh for storage nodes); or per node as 'zone=0.3,wall=0'")
    p.add_argument("--output", metavar="FILE",
                   help="write the optimization JSON here (directories are created); default: standard output")
    return p


def _parse_backoff(text: str, nodes: list[str]) -> list[float]:
    """``K`` or ``node=K,node=K`` → backoff per node (state units, ≥ 0)."""
    try:
        if "=" not in text:
            value = float(text)
            values = {n: value for n in nodes}
        else:
            values = {}
            for part in text.split(","):
                name, _, v = part.partition("=")
                name = name.strip()
                if name not in nodes:
                    raise BadInput(None, "--backoff", f"names unknown node '{name}' (nodes: {', '.join(nodes)})")
                values[name] = float(v)
    except ValueError:
        raise BadInput(None, "--backoff", f"must be a number or node=number pairs, got '{text}'") from None
    if any(not (v >= 0) or v == float("inf") for v in values.values()):
        raise BadInput(None, "--backoff", f"must be finite and non-negative, got '{text}'")
    return [values.get(n, 0.0) for n in nodes]


def _progress_printer():
    """A one-line progress display on stderr (only when stderr is a terminal)."""
    if not sys.stderr.isatty():
        return None

    def show(phase: str, i: int, n: int, cost: float, violation: float) -> None:
        what = "lowest-energy plan" if phase == "langevin" else "polished start"
        end = "\n" if (phase == "polish" and i == n) else ""
        print(f"\rIDF {phase:8s} {i:4d}/{n:<4d} {what}: cost {cost:10.4f}, violation {violation:8.2g}   ",
              end=end, file=sys.stderr, flush=True)

    return show


@one_line_errors
def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    args = _parser(prog).parse_args(argv)
    check_output_path(args.output, "--output")
    import numpy as np

    from industriverse.model.constraint import read_constraint_file
    from industriverse.model.mapping import map_constraint
    from industriverse.plan.optimize import optimize, optimize_with_backoff

    path = Path(args.constraint_json)
    raw = read_constraint_file(path)
    declared = raw.get("domain")
    if declared is not None and declared != args.domain:
        raise BadInput(str(path), "domain", f"the constraint is for domain '{declared}', not '{args.domain}' (--domain)")
    problem = map_constraint(args.domain, raw, file=str(path), base_dir=path.parent)
    if args.backoff is not None and args.backoff_factor is not None:
        raise BadInput(None, "--backoff", "give either --backoff (explicit margins) or --backoff_factor, not both")
    if args.backoff_factor is not None and not (0.0 <= args.backoff_factor < float("inf")):
        raise BadInput(None, "--backoff_factor", f"must be a finite number ≥ 0, got {args.backoff_factor:g}")
    kwargs = dict(method=args.method, seed=args.seed, request_dir=str(path.parent.resolve()), progress=_progress_printer())
    try:
        if args.backoff is not None:
            backoff = _parse_backoff(args.backoff, problem.nodes)
            doc = optimize(problem.with_backoff(np.array(backoff)) if any(backoff) else problem, **kwargs)
        else:
            doc = optimize_with_backoff(problem, 1.0 if args.backoff_factor is None else args.backoff_factor, **kwargs)
            if doc.get("backoff_dropped"):
                print(f"warning: {path}: the noise back-off leaves no feasible plan ({doc['backoff_dropped']}); "
                      f"planned on the client's envelope instead", file=sys.stderr)
    except Infeasible as exc:
        print(f"infeasible: {path}: no plan meets the constraints; in conflict:", file=sys.stderr)
        for line in exc.conflicts:
            print(f"  {line}", file=sys.stderr)
        return exc.exit_code
    write_json(doc, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
