"""The proven gap of the nonlinear optimizer on the cold-storage family, and its solve time.

For each instance of ``benchmarks/optimizer.py``'s cold-storage family (24 h in 15-minute steps
by default) runs ``optimize(problem, "auto", seed=0)`` — the relaxation, IDF, the bound — and
prints the plan's cost, the reported ``lower_bound`` and ``gap``, and the CPU seconds of the
call (best of ``--repeat``, one BLAS thread).  The script uses only the public entry points, so
the same file run against another checkout (``PYTHONPATH=/path/to/checkout``) measures that
code side by side.

Run:  python benchmarks/nonlinear_bound.py [--instances 6] [--first 0] [--step 15] [--repeat 3]
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))  # after PYTHONPATH: another checkout given there is the one measured

import benchmarks.optimizer as family  # noqa: E402
from industriverse.plan.optimize import optimize  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--instances", type=int, default=6)
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--step", type=float, default=15.0, help="plan step, minutes (default 15: 96 steps)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args(argv)
    if args.instances < 1 or args.repeat < 1 or args.step <= 0:
        print("error: --instances, --repeat and --step must be positive", file=sys.stderr)
        return 2
    family.DAY = {**family.DAY, "step_minutes": args.step}
    rows = []
    for inst in range(args.first, args.first + args.instances):
        problem = family.cold_storage_instance(inst)[0]
        cpu = []
        for _ in range(args.repeat):
            t = time.process_time()
            doc = optimize(problem, "auto", seed=0)
            cpu.append(time.process_time() - t)
        row = {"instance": inst, "steps": problem.H, "cost": doc["objective"]["cost"], "lower_bound": doc["lower_bound"],
               "gap": doc["gap"], "cpu_s": min(cpu)}
        rows.append(row)
        print(f"instance {inst}: H = {problem.H}  cost {row['cost']:.6f}  bound {row['lower_bound']:.6f}  "
              f"gap {row['gap'] * 100:.2f} %  CPU {row['cpu_s']:.2f} s", flush=True)
    gaps = [r["gap"] for r in rows]
    print(f"gap median {np.median(gaps) * 100:.2f} %, max {np.max(gaps) * 100:.2f} %; "
          f"CPU mean {np.mean([r['cpu_s'] for r in rows]):.2f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
