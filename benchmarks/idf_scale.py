"""IDF at scale: long horizons and wide networks, time against the horizon and the network size.

Instances (the issue-10 ladders): one hvac zone at 5-minute steps over 2 days, 1 week and 4 weeks
(576, 2016, 8064 steps), the same zone over 1 and 4 weeks with a rate-limited heater, and chains of 10, 20 and 50 zones (each with a heater, a wall to its
neighbours and to the outside) over a day at 15 minutes (96 steps).  For each: IDF's wall time split
(and CPU time: on a shared machine the wall time measures the load) into Langevin and polish, its cost and feasibility, and the planning LP's optimum (the problem is
convex, so IDF should reach it), then the growth exponent of IDF's time along each ladder.

Run:  python benchmarks/idf_scale.py [--particles 32] [--iterations 300] [--only one_zone|ramp|chain]
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one BLAS thread: the machine is shared (see the README)

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from industriverse.model.mapping import map_constraint  # noqa: E402
from industriverse.plan.idf import IDFSettings, idf, true_violation  # noqa: E402
from industriverse.plan.optimize import solve_planning_lp  # noqa: E402

START = "2026-01-12T00:00"  # a Monday


def one_zone(hours: float, step_minutes: float = 5.0, ramp: float | None = None):
    """The hvac example (BOPTEST testcase1) over ``hours`` at ``step_minutes``; with ``ramp`` (kW per
    step) the heater is rate-limited and the tariff has a weekday afternoon peak (so the plan moves)."""
    raw = {"horizon": {"start": START, "hours": hours, "step_minutes": step_minutes}}
    if ramp is not None:
        raw["actuators"] = {"heater": {"ramp_kw_per_step": ramp}}
        raw["tariff"] = {"energy": {"type": "time_of_use", "periods": [{"days": "weekdays", "hours": [14, 18], "value": 0.09}],
                                    "default": 0.04}}
    return map_constraint("hvac", raw)


def chain(zones: int, hours: float = 24.0, step_minutes: float = 15.0):
    """``zones`` hvac zones in a row: each 1e6 J/K with 100 W/K to the outside, 200 W/K to each
    neighbour and a 0–10 kW heater; band 21–24 °C, start at 21 °C."""
    names = [f"z{i}" for i in range(zones)]
    net = {"name": f"chain_{zones}",
           "nodes": [{"name": z, "capacity_j_per_k": 1.0e6} for z in names],
           "boundaries": [{"name": "ambient", "disturbance": "ambient"}],
           "conductances": [{"between": [z, "ambient"], "w_per_k": 100.0} for z in names]
           + [{"between": [a, b], "w_per_k": 200.0} for a, b in zip(names, names[1:])],
           "actuators": [{"name": f"heater_{z}", "node": z, "kind": "heater", "min_kw": 0.0, "max_kw": 10.0,
                          "efficiency": 0.99} for z in names]}
    raw = {"horizon": {"start": START, "hours": hours, "step_minutes": step_minutes}, "network": net,
           "initial_state": {z: 21.0 for z in names}, "envelope": {z: {"min": 21.0, "max": 24.0} for z in names}}
    return map_constraint("hvac", raw)


LADDERS = {
    "one_zone": [(f"one zone, {h // 24} d at 5 min", lambda h=h: one_zone(h)) for h in (48, 168, 672)],
    "ramp": [(f"one zone, {h // 24} d at 5 min, ramp 0.5 kW", lambda h=h: one_zone(h, ramp=0.5)) for h in (168, 672)],
    "chain": [(f"chain of {z} zones, 1 d at 15 min", lambda z=z: chain(z)) for z in (10, 20, 50)],
}


def run(name, make, settings: IDFSettings, seed: int, lp: bool) -> dict:
    problem = make()
    t, c = time.perf_counter(), time.process_time()
    res = idf(problem, seed=seed, settings=settings)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    row = {"instance": name, "H": problem.H, "n": problem.n, "m": problem.m, "idf_s": wall, "idf_cpu_s": cpu,
           "langevin_s": res.langevin_seconds, "polish_s": res.polish_seconds, "lp_solves": res.lp_solves,
           "cost": res.cost, "feasible": bool(res.feasible and true_violation(problem, res.u) <= 1e-6)}
    if lp:
        t = time.perf_counter()
        ref = solve_planning_lp(problem)
        row["lp_s"] = time.perf_counter() - t
        row["lp_cost"] = ref.objective
    return row


def exponent(rows: list[dict], size, key: str = "idf_s") -> float:
    """Least-squares slope of log(IDF time) against log(size): 1 is linear growth."""
    x = np.log([size(r) for r in rows])
    y = np.log([r[key] for r in rows])
    return float(np.polyfit(x, y, 1)[0])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--particles", type=int, default=IDFSettings.particles)
    ap.add_argument("--iterations", type=int, default=IDFSettings.iterations)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", choices=sorted(LADDERS), default=None)
    ap.add_argument("--no-lp", action="store_true", help="skip the planning LP's reference optimum")
    args = ap.parse_args(argv)
    settings = IDFSettings(particles=args.particles, iterations=args.iterations)
    print(f"IDF: {settings.particles} particles × {settings.iterations} iterations, seed {args.seed}, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}")
    print(f"{'instance':36s} {'H':>5s} {'n':>3s} {'m':>3s} {'IDF s':>7s} {'CPU s':>7s} {'Langevin':>8s} {'polish':>7s} "
          f"{'LPs':>4s} {'IDF cost':>11s} {'LP cost':>11s} {'ratio':>8s} {'feasible':>8s}")
    ok = ok_cpu = True
    for ladder, cases in LADDERS.items():
        if args.only and ladder != args.only:
            continue
        rows = []
        for name, make in cases:
            r = run(name, make, settings, args.seed, not args.no_lp)
            rows.append(r)
            lp_cost = r.get("lp_cost")
            ratio = r["cost"] / lp_cost if lp_cost else float("nan")
            print(f"{name:36s} {r['H']:5d} {r['n']:3d} {r['m']:3d} {r['idf_s']:7.2f} {r['idf_cpu_s']:7.2f} {r['langevin_s']:8.2f} "
                  f"{r['polish_s']:7.2f} {r['lp_solves']:4d} {r['cost']:11.6g} "
                  f"{lp_cost if lp_cost is not None else float('nan'):11.6g} {ratio:8.5f} {str(r['feasible']):>8s}",
                  flush=True)
            ok &= r["feasible"] and r["idf_s"] < 30.0
            ok_cpu &= r["feasible"] and r["idf_cpu_s"] < 30.0
        size = (lambda r: r["n"]) if ladder == "chain" else (lambda r: r["H"])
        print(f"  growth exponent in {'zones' if ladder == 'chain' else 'H'}: wall time {exponent(rows, size):.2f}, "
              f"CPU time {exponent(rows, size, 'idf_cpu_s'):.2f}")
    print("targets (feasible, every instance under 30 s): wall time", "met" if ok else "MISSED",
          "· CPU time", "met" if ok_cpu else "MISSED", "(IDF runs on one core: on an idle machine wall ≈ CPU)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
