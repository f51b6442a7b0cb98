"""Optimizer benchmark (DESIGN.md §6), every peer side by side in one process.

Linear ladders: the project's planning LP (``solve_planning_lp``: build, HiGHS, proven dual bound)
against a compact HiGHS model written independently of the project's formulation (states as
variables, the dynamics as sparse equalities from ``scipy.linalg.expm`` of the network's
continuous matrices, the envelope and the actuator box as bounds, straight into ``highspy``), over
a horizon ladder (one zone: 96, 576, 2000, 8064 steps; one year of hourly steps) and a network
ladder (chains of 1, 5, 20, 50 zones over 96 steps; 50 zones over 672 steps).  Each side of each
case runs in a fresh process (peak memory per case).  Targets: the same optimum to 1e-7, CPU time
≤ 1.5× the compact model's, time and memory linear in the horizon (growth exponents printed).

The nonlinear domain's seeded family of cold_storage instances (:func:`cold_storage_instance`:
capacities, conductances, compressor size and Carnot fraction η, outdoor climate, activity,
time-of-use tariff and demand charge varied around the domain defaults) is defined here and
benchmarked, IDF against its peers at equal budgets and with the same polish, by
``benchmarks/optimizer_nonlinear.py``.

Run:  python benchmarks/optimizer.py [--quick] [--repeat 3] [--json FILE]
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small matrices: one BLAS thread (see the README)

import argparse  # noqa: E402
import copy  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from industriverse.model.catalog import load_domain  # noqa: E402
from industriverse.errors import Infeasible  # noqa: E402
from industriverse.plan.optimize import solve_planning_lp  # noqa: E402
from industriverse.model.mapping import map_constraint  # noqa: E402

DAY = {"start": "2026-01-13T00:00", "hours": 24, "step_minutes": 15}


# ----------------------------------------------------------------------------------------------
# linear ladders: the project's sparse planning LP vs a compact HiGHS model written independently
# ----------------------------------------------------------------------------------------------
HORIZON_LADDER = [("1 zone, 96 steps (1 d at 15 min)", 1, 24, 15), ("1 zone, 576 steps (2 d at 5 min)", 1, 48, 5),
                  ("1 zone, 2000 steps (500 h at 15 min)", 1, 500, 15), ("1 zone, 8064 steps (4 wk at 5 min)", 1, 672, 5)]
NETWORK_LADDER = [("chain of 1, 96 steps", 1, 24, 15), ("chain of 5, 96 steps", 5, 24, 15), ("chain of 20, 96 steps", 20, 24, 15),
                  ("chain of 50, 96 steps", 50, 24, 15), ("chain of 50, 672 steps (1 wk at 15 min)", 50, 168, 15)]
EXTRA = [("1 zone, 8760 steps (1 yr at 1 h)", 1, 8760, 60)]
TOU = {"type": "time_of_use", "periods": [{"hours": [7, 11], "value": 0.25}, {"hours": [17, 21], "value": 0.3}], "default": 0.1}


def chain_constraint(zones: int, hours: float, step_minutes: float) -> dict:
    """``zones`` R-C zones in a row, each to ambient (100 W/K) and to its neighbours (200 W/K),
    a 10 kW heater each, band 21–24 °C, sinusoidal ambient, time-of-use tariff."""
    names = [f"z{i}" for i in range(zones)]
    conds = [{"between": [z, "ambient"], "w_per_k": 100.0} for z in names]
    conds += [{"between": [names[i], names[i + 1]], "w_per_k": 200.0} for i in range(zones - 1)]
    return {"horizon": {"start": "2026-01-12T00:00", "hours": hours, "step_minutes": step_minutes},
            "network": {"name": f"chain{zones}", "nodes": [{"name": z, "capacity_j_per_k": 1e6 * (1 + 0.1 * (i % 3))} for i, z in enumerate(names)],
                        "boundaries": [{"name": "ambient", "disturbance": "ambient"}], "conductances": conds,
                        "actuators": [{"name": f"h{z}", "node": z, "kind": "heater", "max_kw": 10.0, "efficiency": 0.99} for z in names]},
            "initial_state": {z: 21.5 for z in names}, "envelope": {z: {"min": 21.0, "max": 24.0} for z in names},
            "disturbances": {"ambient": {"type": "sinusoid", "mean": 5.0, "amplitude": 5.0, "period_hours": 24.0, "phase_hours": 0.0}},
            "tariff": {"energy": TOU}}


def compact_reference(network, x0, d, price, x_lo, x_hi, u_hi, eff, dt_s):
    """Independent compact LP: ``min Σ_k dt·price_k·Σ_a u[k,a]/eff_a`` over states as variables,
    ``x[k+1] = Ad x[k] + Bd u[k] + Ed d[k]`` as sparse equalities, the band and the actuator box as
    bounds.  Written from the network's continuous matrices (``scipy.linalg.expm`` of the augmented
    matrix, not the project's ``zoh``) straight into ``highspy``; returns (cost, seconds)."""
    import highspy
    from scipy import sparse
    from scipy.linalg import expm

    t0 = time.perf_counter()
    A, B, E = network.matrices
    n, m, p = A.shape[0], B.shape[1], E.shape[1]
    H = len(price)
    M = np.zeros((n + m + p, n + m + p))
    M[:n, :n], M[:n, n:n + m], M[:n, n + m:] = A, B, E
    F = expm(M * dt_s)
    Ad, Bd, Ed = F[:n, :n], F[:n, n:n + m], F[:n, n + m:]
    # columns: x[1..H] (H·n), then u[0..H-1] (H·m); rows: x[k+1] − Ad x[k] − Bd u[k] = Ed d[k] (+ Ad x0 at k = 0)
    I_H = sparse.identity(H, format="csr")
    Ax = sparse.kron(I_H, sparse.identity(n)) - sparse.kron(sparse.eye(H, k=-1), sparse.csr_matrix(Ad))
    Au = -sparse.kron(I_H, sparse.csr_matrix(Bd))
    Aeq = sparse.hstack([Ax, Au], format="csc")
    rhs = d @ Ed.T
    rhs[0] += Ad @ x0
    rhs = rhs.ravel()
    cost = np.concatenate([np.zeros(H * n), (dt_s / 3600.0 * price[:, None] / eff[None, :]).ravel()])
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = H * (n + m), H * n
    lp.col_cost_ = cost
    lp.col_lower_ = np.concatenate([x_lo.ravel(), np.zeros(H * m)])
    lp.col_upper_ = np.concatenate([x_hi.ravel(), np.tile(u_hi, H)])
    lp.row_lower_ = lp.row_upper_ = rhs
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = lp.num_col_, lp.num_row_
    lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = Aeq.indptr, Aeq.indices, Aeq.data
    h = highspy._Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("primal_feasibility_tolerance", 1e-9)
    h.setOptionValue("dual_feasibility_tolerance", 1e-9)
    h.passModel(lp)
    h.run()
    assert h.getModelStatus() == highspy.HighsModelStatus.kOptimal, h.modelStatusToString(h.getModelStatus())
    return float(h.getInfo().objective_function_value), time.perf_counter() - t0


def _solve_side(side: str, problem) -> tuple[float, float | None, float, float]:
    """(cost, bound, CPU seconds, wall seconds) of one side on ``problem``."""
    c0, t0 = time.process_time(), time.perf_counter()
    if side in ("project", "project-ct"):
        # "project": the envelope at the samples, the compact model's constraints; "project-ct":
        # the default, the envelope at every control sub-step (a different, larger model)
        res = solve_planning_lp(problem, continuous=side == "project-ct")
        cost, bound = float(res.objective), float(res.lower_bound)
    else:
        net = problem.network
        eff = np.array([a.efficiency for a in net.actuators])
        cost, _ = compact_reference(net, problem.x0, problem.d, problem.price, problem.x_lo[1:], problem.x_hi[1:],
                                    problem.u_hi[0], eff, problem.dt_s)
        bound = None
    return cost, bound, time.process_time() - c0, time.perf_counter() - t0


def _ladder_case(args):
    """One side of one instance in a fresh process, after a warm-up solve of the smallest case by
    both sides (imports and first-call costs are paid alike): cost, bound, CPU and wall seconds,
    peak RSS (MB) and RSS before the timed case (MB)."""
    import resource

    side, zones, hours, step = args
    small = map_constraint("hvac", chain_constraint(1, 24, 15))
    for warm in ("project", "project-ct", "compact"):
        _solve_side(warm, small)
    problem = map_constraint("hvac", chain_constraint(zones, hours, step))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cost, bound, cpu, wall = _solve_side(side, problem)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"cost": cost, "bound": bound, "seconds": cpu, "wall": wall, "peak_mb": peak, "setup_mb": base}


def run_isolated(args, repeat: int) -> dict:
    """Median over ``repeat`` fresh processes (so peak memory is per case, not the benchmark's)."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    outs = []
    for _ in range(repeat):
        with ctx.Pool(1) as pool:
            outs.append(pool.apply(_ladder_case, (args,)))
    best = sorted(outs, key=lambda o: o["seconds"])[len(outs) // 2]
    best["peak_mb"] = max(o["peak_mb"] for o in outs)
    return best


def _exponent(x, y) -> float:
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def bench_ladders(repeat: int, extra: bool = True) -> dict:
    rows = []
    cases = HORIZON_LADDER + NETWORK_LADDER[1:] + (EXTRA if extra else [])
    for name, zones, hours, step in cases:
        H = int(round(hours * 60 / step))
        rep = repeat if H * zones <= 5000 else 1
        ours = run_isolated(("project", zones, hours, step), rep)
        ref = run_isolated(("compact", zones, hours, step), rep)
        ct = run_isolated(("project-ct", zones, hours, step), 1)
        row = {"case": name, "zones": zones, "H": H, "project_s": ours["seconds"], "compact_s": ref["seconds"],
               "project_wall_s": ours["wall"], "compact_wall_s": ref["wall"],
               "ratio": ours["seconds"] / ref["seconds"], "project_cost": ours["cost"], "compact_cost": ref["cost"],
               "lower_bound": ours["bound"], "rel_diff": abs(ours["cost"] - ref["cost"]) / max(abs(ref["cost"]), 1e-12),
               "project_peak_mb": ours["peak_mb"], "project_model_mb": ours["peak_mb"] - ours["setup_mb"],
               "compact_peak_mb": ref["peak_mb"], "compact_model_mb": ref["peak_mb"] - ref["setup_mb"],
               "continuous_s": ct["seconds"], "continuous_cost": ct["cost"], "continuous_bound": ct["bound"]}
        rows.append(row)
        print(f"{name:40s} {row['project_s']:8.3f} {row['compact_s']:8.3f} {row['ratio']:6.2f}× {row['rel_diff']:9.1e} "
              f"{row['project_peak_mb']:7.0f} {row['project_model_mb']:7.0f} {row['compact_peak_mb']:7.0f} {row['compact_model_mb']:7.0f} | "
              f"{row['continuous_s']:8.3f} {(row['continuous_cost'] / row['compact_cost'] - 1) * 100:+7.3f}%", flush=True)
    hor = [r for r in rows if r["zones"] == 1 and r["case"] in [c[0] for c in HORIZON_LADDER]]
    net = [rows[0]] + [r for r in rows if r["case"] in [c[0] for c in NETWORK_LADDER[1:4]]]
    growth = {"horizon_time_project": _exponent([r["H"] for r in hor], [r["project_s"] for r in hor]),
              "horizon_time_compact": _exponent([r["H"] for r in hor], [r["compact_s"] for r in hor]),
              "horizon_memory_project": _exponent([r["H"] for r in hor], [max(r["project_model_mb"], 1.0) for r in hor]),
              "zones_time_project": _exponent([r["zones"] for r in net], [r["project_s"] for r in net]),
              "zones_time_compact": _exponent([r["zones"] for r in net], [r["compact_s"] for r in net])}
    return {"rows": rows, "growth": growth}


# ----------------------------------------------------------------------------------------------
# nonlinear family: cold storage instances
# ----------------------------------------------------------------------------------------------
def cold_storage_instance(seed: int):
    """A feasible cold-storage planning problem with parameters drawn around the domain defaults."""
    rng = np.random.default_rng(seed)
    base = load_domain("cold_storage").defaults
    for _ in range(50):
        net = copy.deepcopy(base["network"])
        for node in net["nodes"]:
            node["capacity_j_per_k"] = float(node["capacity_j_per_k"]) * rng.uniform(0.7, 1.3)  # YAML may give '2.0e5' as text
        for c in net["conductances"]:
            c["w_per_k"] = float(c["w_per_k"]) * rng.uniform(0.7, 1.3)
        comp = net["actuators"][0]
        comp["max_kw"] = float(round(rng.uniform(4.5, 8.0), 2))
        comp["cop"]["eta"] = float(round(rng.uniform(0.35, 0.6), 3))
        start = int(rng.integers(6, 13))
        stop = int(min(24, start + rng.integers(6, 13)))
        peak, off = float(rng.uniform(0.2, 0.4)), float(rng.uniform(0.06, 0.15))
        dc = float(rng.choice([0.0, 0.0, 1.0, 3.0]))
        outdoor = {"type": "sinusoid", "mean": float(rng.uniform(8, 25)), "amplitude": float(rng.uniform(3, 9)),
                   "period_hours": 24.0, "phase_hours": 9.0}
        activity = float(rng.uniform(0.6, 1.6))
        raw = {"horizon": DAY, "network": net,
               "tariff": {"energy": {"type": "time_of_use", "periods": [{"days": "all", "hours": [start, stop], "value": peak}], "default": off},
                          "demand_charge_per_kw": dc},
               "disturbances": {"outdoor": outdoor,
                                "activity": {"type": "time_of_use", "periods": [{"days": "all", "hours": [8, 21], "value": activity}], "default": 0.0}}}
        problem = map_constraint("cold_storage", raw)
        try:
            lp = solve_planning_lp(problem, relax=True)
        except Infeasible:
            continue
        f = {"C×": round(float(net["nodes"][0]["capacity_j_per_k"]) / 2e5, 2), "max_kw": comp["max_kw"], "eta": comp["cop"]["eta"],
             "peak": f"{peak:.2f}@{start}-{stop}h", "off": round(off, 2), "dc": dc, "T_out": round(outdoor["mean"], 1)}
        return problem, lp, f
    raise RuntimeError(f"no feasible instance for seed {seed}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3, help="timing repetitions on the small ladder cases (median, default 3)")
    ap.add_argument("--json", metavar="FILE", help="also write every figure as JSON")
    ap.add_argument("--quick", action="store_true", help="leave out the one-year hourly case")
    args = ap.parse_args(argv)

    print("Linear ladders: solve_planning_lp (build + HiGHS + proven dual bound) vs a compact HiGHS model written from the")
    print("network's matrices (build + solve; HiGHS defaults), each case in a fresh process; CPU seconds (the machine is shared:")
    print("wall time is in --json), median of", args.repeat, "runs where H·zones ≤ 5000; 'model' = peak RSS minus RSS before the case")
    print("last two columns: the project's default model (envelope at every 1-minute control sub-step): CPU s, cost vs the samples-only optimum")
    print(f"{'case':40s} {'ours s':>8s} {'compact':>8s} {'ratio':>7s} {'|Δcost|':>9s} {'peak MB':>7s} {'model':>7s} {'ref pk':>7s} {'ref mdl':>7s} | "
          f"{'cont. s':>8s} {'Δcost':>8s}")
    lad = bench_ladders(args.repeat, extra=not args.quick)
    g = lad["growth"]
    print("growth exponents (log-log fit): time vs H: ours {horizon_time_project:.2f}, compact {horizon_time_compact:.2f}; "
          "model memory vs H: ours {horizon_memory_project:.2f}; time vs zones (96 steps): ours {zones_time_project:.2f}, "
          "compact {zones_time_compact:.2f}".format(**g))
    ok_cost = all(r["rel_diff"] <= 1e-7 for r in lad["rows"])
    ok_time = all(r["ratio"] <= 1.5 for r in lad["rows"])
    worst = max(lad["rows"], key=lambda r: r["ratio"])
    print(f"targets: same optimum to 1e-7: {'met' if ok_cost else 'MISSED'}; time ≤ 1.5× compact: "
          f"{'met' if ok_time else 'MISSED'} (worst {worst['ratio']:.2f}× on {worst['case']}); "
          f"time linear in H (exponent ≤ 1.15): {'met' if g['horizon_time_project'] <= 1.15 else 'MISSED'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"ladders": lad}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
