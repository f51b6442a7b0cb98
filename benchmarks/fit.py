"""Identification benchmark: time and accuracy of `industriverse fit` vs data length and nodes.

For each plant (1, 2, 3 nodes, tests/plants.py) and each length of 5-minute telemetry, fit the
template (started 1.6× off) and report the wall time on one core, the largest relative error
of the physical parameters, and how many true values lie inside their 95 % intervals.

    python benchmarks/fit.py                     # 1 day, 1 week, 1 month, 1 year × 1, 2, 3 nodes
    python benchmarks/fit.py --nodes 3 --days 365
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from industriverse.model.identify import fit_network  # noqa: E402
from tests.plants import telemetry, template, true_values  # noqa: E402


def run(nodes: int, days: float, seed: int = 0) -> dict:
    samples = int(days * 288)
    net, tel, _ = telemetry(nodes, samples, seed=seed)
    t0 = time.perf_counter()
    res = fit_network(template(nodes), tel)
    sec = time.perf_counter() - t0
    truth = true_values(nodes)
    rows = {p["name"]: p for p in res.report["parameters"]}
    rel = max(abs(rows[k]["value"] / v - 1) for k, v in truth.items())
    inside = sum(1 for k, v in truth.items() if rows[k]["ci95"] and rows[k]["ci95"][0] <= v <= rows[k]["ci95"][1])
    return {"nodes": nodes, "days": days, "samples": samples, "seconds": sec, "max_rel_error": rel,
            "inside_ci95": f"{inside}/{len(truth)}", "evaluations": res.report["evaluations"],
            "free_run_rmse_zone": res.report["free_run_rmse"].get("zone")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, nargs="*", default=[1, 2, 3])
    ap.add_argument("--days", type=float, nargs="*", default=[1, 7, 30, 365])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    fit_network(template(1), telemetry(1, 300)[1])  # compile the filter once, outside the timings
    print(f"{'nodes':>5} {'days':>6} {'samples':>8} {'seconds':>8} {'max rel err':>12} {'in 95% CI':>10} {'evals':>6} {'free-run RMSE':>14}")
    for n in args.nodes:
        for d in args.days:
            r = run(n, d, args.seed)
            print(f"{r['nodes']:>5} {r['days']:>6g} {r['samples']:>8} {r['seconds']:>8.2f} {r['max_rel_error']:>12.4%} "
                  f"{r['inside_ci95']:>10} {r['evaluations']:>6} {r['free_run_rmse_zone']:>14.3f}", flush=True)


if __name__ == "__main__":
    main()
