"""Identification benchmark: time and accuracy of `industriverse fit` vs data length and nodes.

For each plant (1, 2, 3 nodes, tests/plants.py) and each length of 5-minute telemetry, fit the
template (started 1.6× off) and report the wall time on one core, the largest relative error
of the physical parameters, and how many true values lie inside their 95 % intervals.  Two
kinds of telemetry: routine operation (``telemetry``: a day/night heater schedule, sinusoidal
ambient, BMS-grade noise) and a designed experiment (``experiment``: a pseudo-random binary
heater sequence, real January weather, an unoccupied building with lab-grade sensors).

    python benchmarks/fit.py                     # 1 day … 1 year × 1, 2, 3 nodes, then the experiment's week
    python benchmarks/fit.py --nodes 3 --days 365
    python benchmarks/fit.py --coverage 20 --nodes 2 --days 7   # 95 % interval coverage over 20 seeds
    python benchmarks/fit.py --coverage 40 --nodes 3 --days 7 --experiment   # and the share of fits within 3 %
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
from tests.plants import experiment, telemetry, template, true_values  # noqa: E402


def run(nodes: int, days: float, seed: int = 0, source=telemetry) -> dict:
    samples = int(days * 288)
    net, tel, _ = source(nodes, samples, seed=seed)
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


def coverage(nodes: int, days: float, seeds: int, source=telemetry) -> dict:
    """Share of true parameters inside their 95 % intervals, over ``seeds`` independent datasets
    (seeds 1000, 1001, …), and how many fits have every parameter within 3 %."""
    inside = total = refused = within = 0
    errs = []
    for s in range(seeds):
        net, tel, _ = source(nodes, int(days * 288), seed=1000 + s)
        res = fit_network(template(nodes), tel, starts=2)
        rows = {p["name"]: p for p in res.report["parameters"]}
        refused += bool(res.problems)
        fit_errs = []
        for k, v in true_values(nodes).items():
            total += 1
            ci = rows[k]["ci95"]
            inside += bool(ci and ci[0] <= v <= ci[1])
            fit_errs.append(abs(rows[k]["value"] / v - 1))
        within += max(fit_errs) < 0.03
        errs += fit_errs
    return {"nodes": nodes, "days": days, "seeds": seeds, "coverage": inside / total, "inside": f"{inside}/{total}",
            "median_rel_error": float(sorted(errs)[len(errs) // 2]), "max_rel_error": max(errs), "flagged": refused,
            "within_3pct": f"{within}/{seeds}"}


def reference_loglik(net, tel, q, r) -> float:
    """The same likelihood by a plain per-step numpy Kalman filter (scipy expm per interval, no
    steady-state shortcut, no compilation): the independent check of the compiled kernel."""
    import numpy as np

    from industriverse.model.discretize import van_loan, zoh
    from industriverse.model.estimate import initial_guess

    A, B, E = net.matrices
    G = np.hstack([B, E])
    Qc = np.diag(np.asarray(q) ** 2 / 3600)
    R = np.diag(np.asarray(r) ** 2)
    cache = {}
    x, P = initial_guess(tel.y[0], None)
    ll = 0.0
    for k in range(len(tel.t)):
        if k:
            dt = round(tel.t[k] - tel.t[k - 1], 3)
            if dt not in cache:
                cache[dt] = (*zoh(A, G, dt), van_loan(A, Qc, dt)[1])
            Ad, Gd, Qd = cache[dt]
            x = Ad @ x + Gd @ tel.w[k - 1]
            P = Ad @ P @ Ad.T + Qd
        obs = np.isfinite(tel.y[k])
        if obs.any():
            e = tel.y[k, obs] - x[obs]
            S = P[np.ix_(obs, obs)] + R[np.ix_(obs, obs)]
            K = P[:, obs] @ np.linalg.inv(S)
            ll += -0.5 * (np.linalg.slogdet(S)[1] + e @ np.linalg.solve(S, e) + obs.sum() * np.log(2 * np.pi))
            x = x + K @ e
            P = P - K @ P[obs]
    return ll


def filter_speed(nodes: int = 3, days: float = 30) -> None:
    """One likelihood evaluation: the compiled kernel vs the plain numpy filter, same number."""
    import numpy as np

    from industriverse.model.estimate import continuous_model, run_filter

    net, tel, _ = telemetry(nodes, int(days * 288), seed=0)
    q = np.array([0.3, 0.1, 0.1][:nodes])
    r = np.full(nodes, 0.1)
    A, G, c = continuous_model(net)
    run_filter(A, G, q, r, tel, capacities=c)
    t0 = time.perf_counter()
    ours = run_filter(A, G, q, r, tel, capacities=c).loglik
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = reference_loglik(net, tel, q, r)
    t_ref = time.perf_counter() - t0
    print(f"likelihood of {len(tel.t)} samples, {nodes} nodes: kernel {t_ours * 1e3:.1f} ms, plain numpy filter "
          f"{t_ref * 1e3:.0f} ms ({t_ref / t_ours:.0f}x); log-likelihoods {ours:.6f} vs {ref:.6f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, nargs="*", default=[1, 2, 3])
    ap.add_argument("--days", type=float, nargs="*", default=[1, 7, 30, 365])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--coverage", type=int, default=0, metavar="SEEDS", help="measure interval coverage over SEEDS datasets")
    ap.add_argument("--filter", action="store_true", help="time one likelihood evaluation against a plain numpy filter")
    ap.add_argument("--experiment", action="store_true",
                    help="only the designed experiment's telemetry (PRBS heater, real weather, lab-grade noise)")
    args = ap.parse_args()
    source = experiment if args.experiment else telemetry
    if args.filter:
        filter_speed()
        return
    fit_network(template(1), telemetry(1, 300)[1])  # compile the filter once, outside the timings
    if args.coverage:
        print(f"{source.__name__}: {'nodes':>5} {'days':>6} {'seeds':>6} {'coverage':>9} {'inside':>9} {'median err':>11} "
              f"{'max err':>9} {'all < 3 %':>10} {'flagged':>8}")
        for n in args.nodes:
            for d in args.days:
                r = coverage(n, d, args.coverage, source)
                print(f"{'':>{len(source.__name__) + 1}} {n:>5} {d:>6g} {r['seeds']:>6} {r['coverage']:>9.1%} {r['inside']:>9} "
                      f"{r['median_rel_error']:>11.2%} {r['max_rel_error']:>9.2%} {r['within_3pct']:>10} {r['flagged']:>8}",
                      flush=True)
        return
    # routine operation at every length, then a week of the designed experiment per node count
    tables = [(experiment, args.days)] if args.experiment else [(telemetry, args.days), (experiment, [7])]
    for src, days in tables:
        print(f"{src.__name__}: {'nodes':>5} {'days':>6} {'samples':>8} {'seconds':>8} {'max rel err':>12} {'in 95% CI':>10} "
              f"{'evals':>6} {'free-run RMSE':>14}")
        for n in args.nodes:
            for d in days:
                r = run(n, d, args.seed, src)
                print(f"{'':>{len(src.__name__) + 1}} {r['nodes']:>5} {r['days']:>6g} {r['samples']:>8} {r['seconds']:>8.2f} "
                      f"{r['max_rel_error']:>12.4%} {r['inside_ci95']:>10} {r['evaluations']:>6} "
                      f"{r['free_run_rmse_zone']:>14.3f}", flush=True)


if __name__ == "__main__":
    main()
