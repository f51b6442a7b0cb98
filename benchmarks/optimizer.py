"""Optimizer benchmark (DESIGN.md §6), every peer side by side in one process.

Linear domains (hvac, hvac_two_zone, microgrid, examples/*.json): ``optimize(method="lp")`` (build,
solve, dual bound, KPIs, JSON) against raw HiGHS (``scipy.optimize.linprog(method="highs")``) on the
same LP matrices, built beforehand and not timed.  Targets: cost within 0.01 %, wall time ≤ 3×.
IDF (the diffusion engine) on the same problems for reference.

Nonlinear domain: a seeded family of cold_storage instances (capacities, conductances,
compressor size and Carnot fraction η, outdoor climate, activity, time-of-use tariff and demand
charge varied around the domain defaults, each instance's ``network`` built from them).  IDF
(``method="idf"``: Langevin + polish, no LP warm start) against SLSQP multi-start, differential
evolution, dual annealing and CMA-ES (``cma``), each given IDF's wall time.  Feasibility-aware:
every method reports the cheapest plan it evaluated that meets every constraint (envelope within
1e-6 K); a method without one loses.  The relaxation's proven lower bound gives each cost's gap.

Run:  python benchmarks/optimizer.py [--instances 10] [--seed 0] [--repeat 5]
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
from scipy.optimize import LinearConstraint, differential_evolution, dual_annealing, linprog, minimize  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from industriverse.model.catalog import load_domain  # noqa: E402
from industriverse.errors import Infeasible  # noqa: E402
from industriverse.plan.idf import FEAS_TOL, Landscape, idf  # noqa: E402
from industriverse.plan.lp import build_planning_lp  # noqa: E402
from industriverse.plan.power import exact_power  # noqa: E402
from industriverse.plan.optimize import solve_planning_lp  # noqa: E402
from industriverse.model.mapping import load_problem, map_constraint  # noqa: E402
from industriverse.plan.optimize import optimize  # noqa: E402

DAY = {"start": "2026-01-13T00:00", "hours": 24, "step_minutes": 15}


# ----------------------------------------------------------------------------------------------
# linear domains: ours vs raw HiGHS on the same LP
# ----------------------------------------------------------------------------------------------
def linear_cases():
    cases = [("hvac", map_constraint("hvac", {"horizon": DAY})),
             ("hvac_two_zone", map_constraint("hvac_two_zone", {"horizon": DAY})),
             ("hvac_two_zone 7 d", map_constraint("hvac_two_zone", {"horizon": {**DAY, "hours": 168}})),
             ("microgrid", map_constraint("microgrid", {"horizon": DAY})),
             ("microgrid + demand charge", map_constraint("microgrid", {"horizon": DAY, "tariff": {"demand_charge_per_kw": 2.0}}))]
    for path in sorted((ROOT / "examples").glob("*.json")):
        raw = json.loads(path.read_text())
        dom = raw.get("domain")
        if dom is None:
            continue
        try:
            p = load_problem(dom, path)
        except Exception:
            continue
        if p.is_linear:
            cases.append((path.name, p))
    return cases


def bench_linear(repeat: int) -> list[dict]:
    rows = []
    for name, problem in linear_cases():
        problem.G  # the prediction matrices belong to Map, built once for both sides
        lp = build_planning_lp(problem, exact_power(problem))
        bounds = np.column_stack([lp.lb, lp.ub])
        raw_t, ours_t, idf_t = [], [], []
        for _ in range(repeat):
            t = time.perf_counter()
            res = linprog(lp.c, A_ub=lp.A_ub, b_ub=lp.b_ub, A_eq=lp.A_eq, b_eq=lp.b_eq, bounds=bounds, method="highs")
            raw_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            doc = optimize(problem, method="lp")
            ours_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        r_idf = idf(problem, seed=0)
        idf_t.append(time.perf_counter() - t)
        raw_cost = float(res.fun)
        rows.append({"case": name, "H": problem.H, "vars": lp.c.size, "rows": lp.b_ub.size + lp.b_eq.size,
                     "highs_cost": raw_cost, "ours_cost": doc["objective"]["cost"], "lower_bound": doc["lower_bound"],
                     "cost_ratio": doc["objective"]["cost"] / raw_cost if raw_cost else float("nan"),
                     "highs_s": float(np.median(raw_t)), "ours_s": float(np.median(ours_t)),
                     "time_ratio": float(np.median(ours_t) / np.median(raw_t)),
                     "idf_cost_ratio": r_idf.cost / raw_cost if raw_cost else float("nan"), "idf_s": idf_t[0]})
    return rows


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


class TimeUp(Exception):
    pass


class Tracker:
    """Wraps the landscape: counts evaluations, keeps the cheapest feasible plan, stops at the deadline."""

    def __init__(self, problem, land: Landscape, deadline: float):
        self.p, self.land, self.deadline = problem, land, deadline
        self.best_cost, self.best_u, self.evals = np.inf, None, 0
        self.span = problem.u_hi - problem.u_lo

    def check(self):
        if time.perf_counter() > self.deadline:
            raise TimeUp

    def batch(self, U: np.ndarray, rho: float, grad: bool = False):
        """Evaluate plans (P, H, m); returns (E, grad, cost, violation)."""
        self.check()
        if len(U) == 0:  # DE evaluates only the members that meet its constraints
            z = np.zeros(0)
            return z, None, z, z
        U = np.clip(U, self.p.u_lo, self.p.u_hi)
        E, g, cost, viol = self.land.evaluate(U, rho, grad=grad)
        self.evals += len(U)
        ok = viol <= FEAS_TOL
        if ok.any():
            i = int(np.argmin(np.where(ok, cost, np.inf)))
            if cost[i] < self.best_cost:
                self.best_cost, self.best_u = float(cost[i]), U[i].copy()
        return E, g, cost, viol


def envelope_rows(problem):
    """``A u ≤ b``: the envelope on the predicted states (the SLSQP / DE constraints)."""
    H, n, m = problem.H, problem.n, problem.m
    G = problem.G.reshape(H + 1, n, H * m)
    A, b = [], []
    for side, bound, sign in (("max", problem.x_hi, 1.0), ("min", problem.x_lo, -1.0)):
        ks, ids = np.nonzero(np.isfinite(bound[1:]))
        ks = ks + 1
        A.append(sign * G[ks, ids])
        b.append(sign * (bound[ks, ids] - problem.x_free[ks, ids]))
    return np.vstack(A), np.concatenate(b)


def run_slsqp(problem, land, budget, seed):
    tr = Tracker(problem, land, time.perf_counter() + budget)
    A, b = envelope_rows(problem)
    rng = np.random.default_rng(seed)
    shape = (problem.H, problem.m)
    bounds = list(zip(problem.u_lo.ravel(), problem.u_hi.ravel()))

    def fun(v):
        E, g, _, _ = tr.batch(v.reshape((1,) + shape), 0.0, grad=True)
        return float(E[0]), g[0].ravel()

    cons = [{"type": "ineq", "fun": lambda v: b - A @ v, "jac": lambda v: -A}]
    starts = 0
    try:
        while True:
            x0 = (problem.u_lo + rng.uniform(size=shape) * tr.span).ravel()
            starts += 1
            minimize(fun, x0, jac=True, method="SLSQP", bounds=bounds, constraints=cons, options={"maxiter": 500, "ftol": 1e-10})
    except TimeUp:
        pass
    return tr, {"starts": starts}


def run_de(problem, land, budget, seed):
    tr = Tracker(problem, land, time.perf_counter() + budget)
    A, b = envelope_rows(problem)
    shape = (problem.H, problem.m)

    def fun(X):  # vectorized: X (N, S)
        X = np.atleast_2d(X.T) if X.ndim == 2 else X[None]
        return tr.batch(X.reshape((-1,) + shape), 0.0)[2]

    try:
        differential_evolution(fun, list(zip(problem.u_lo.ravel(), problem.u_hi.ravel())),
                               constraints=LinearConstraint(A, -np.inf, b), vectorized=True, updating="deferred",
                               polish=False, maxiter=10 ** 6, tol=0, seed=seed, popsize=10)
    except TimeUp:
        pass
    return tr, {}


def run_dual_annealing(problem, land, budget, seed, rho=1e4):
    tr = Tracker(problem, land, time.perf_counter() + budget)
    shape = (problem.H, problem.m)

    def fun(v):
        return float(tr.batch(v.reshape((1,) + shape), rho)[0][0])

    def jac(v):
        return tr.batch(v.reshape((1,) + shape), rho, grad=True)[1][0].ravel()

    try:
        dual_annealing(fun, list(zip(problem.u_lo.ravel(), problem.u_hi.ravel())), maxiter=10 ** 6, maxfun=10 ** 9,
                       seed=seed, minimizer_kwargs={"method": "L-BFGS-B", "jac": jac})
    except TimeUp:
        pass
    return tr, {}


def run_cma(problem, land, budget, seed, rho=1e4):
    import cma

    tr = Tracker(problem, land, time.perf_counter() + budget)
    shape = (problem.H, problem.m)
    span = np.where(tr.span > 0, tr.span, 1.0)
    es = cma.CMAEvolutionStrategy(np.full(problem.H * problem.m, 0.5), 0.25,
                                  {"bounds": [0.0, 1.0], "seed": seed + 1, "verbose": -9})
    gens = 0
    try:
        while True:
            Z = np.array(es.ask())
            U = problem.u_lo + Z.reshape((-1,) + shape) * span
            E = tr.batch(U, rho)[0]
            es.tell(list(Z), list(E))
            gens += 1
    except TimeUp:
        pass
    return tr, {"generations": gens}


def bench_nonlinear(n: int, seed0: int) -> list[dict]:
    rows = []
    for i in range(n):
        problem, lp, params = cold_storage_instance(seed0 + i)
        problem.G
        land = Landscape(problem)
        t = time.perf_counter()
        r = idf(problem, seed=seed0 + i)
        budget = time.perf_counter() - t
        row = {"instance": seed0 + i, "params": params, "lower_bound": lp.lower_bound, "idf": r.cost if r.feasible else None,
               "idf_s": budget, "idf_evals": r.evaluations,
               "relaxation_plan": float(problem.kpis(lp.u)["cost"])}
        for name, runner in (("slsqp", run_slsqp), ("de", run_de), ("dual_annealing", run_dual_annealing), ("cma", run_cma)):
            tr, info = runner(problem, land, budget, seed0 + i)
            row[name] = None if tr.best_u is None else tr.best_cost
            row[name + "_evals"] = tr.evals
        peers = [row[k] for k in ("slsqp", "de", "dual_annealing", "cma") if row[k] is not None]
        row["best_peer"] = min(peers) if peers else None
        row["idf_wins"] = row["idf"] is not None and (row["best_peer"] is None or row["idf"] <= row["best_peer"] * (1 + 1e-9))
        rows.append(row)
        print(_nl_line(row), flush=True)
    return rows


def _c(v, lb=None):
    if v is None:
        return f"{'infeasible':>16s}"
    return f"{v:8.4f}" + (f" ({(v - lb) / abs(v) * 100:5.1f}%)" if lb is not None else "")


def _nl_line(r):
    lb = r["lower_bound"]
    return (f"{r['instance']:>4d} {lb:8.4f} {_c(r['idf'], lb)} {r['idf_s']:5.2f}s | {_c(r['slsqp'], lb)} {_c(r['de'], lb)} "
            f"{_c(r['dual_annealing'], lb)} {_c(r['cma'], lb)} | {'IDF' if r['idf_wins'] else 'peer'}  {r['params']}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--instances", type=int, default=10, help="cold_storage instances (default 10)")
    ap.add_argument("--seed", type=int, default=0, help="first instance seed (default 0)")
    ap.add_argument("--repeat", type=int, default=5, help="timing repetitions on the linear domains (median, default 5)")
    ap.add_argument("--json", metavar="FILE", help="also write every figure as JSON")
    args = ap.parse_args(argv)

    print("Linear domains: optimize(method='lp') vs raw HiGHS (linprog) on the same LP; medians of", args.repeat, "runs")
    print(f"{'case':28s} {'H':>4s} {'vars':>6s} {'rows':>6s} {'HiGHS cost':>11s} {'ours cost':>11s} {'cost ratio':>12s} "
          f"{'HiGHS s':>8s} {'ours s':>8s} {'time ratio':>10s} | {'IDF/HiGHS':>10s} {'IDF s':>6s}")
    lin = bench_linear(args.repeat)
    for r in lin:
        print(f"{r['case']:28s} {r['H']:4d} {r['vars']:6d} {r['rows']:6d} {r['highs_cost']:11.5f} {r['ours_cost']:11.5f} "
              f"{r['cost_ratio']:12.9f} {r['highs_s']:8.4f} {r['ours_s']:8.4f} {r['time_ratio']:9.2f}× | "
              f"{r['idf_cost_ratio']:10.6f} {r['idf_s']:6.2f}")
    ok_cost = all(abs(r["cost_ratio"] - 1) <= 1e-4 for r in lin)
    ok_time = all(r["time_ratio"] <= 3 for r in lin)
    print(f"targets: cost within 0.01 %: {'met' if ok_cost else 'MISSED'}; wall time ≤ 3×: {'met' if ok_time else 'MISSED'}")
    print()
    print(f"Nonlinear: {args.instances} cold_storage instances; peers get IDF's wall time; cost (gap to the proven lower bound)")
    print(f"{'inst':>4s} {'bound':>8s} {'IDF':>16s} {'time':>6s} | {'SLSQP multi':>16s} {'diff. evol.':>16s} "
          f"{'dual anneal.':>16s} {'CMA-ES':>16s} | winner  parameters")
    nl = bench_nonlinear(args.instances, args.seed)
    wins = sum(r["idf_wins"] for r in nl)
    feas = {k: sum(r[k] is not None for r in nl) for k in ("idf", "slsqp", "de", "dual_annealing", "cma")}
    print(f"IDF ≤ best peer on {wins}/{len(nl)} instances; feasible plans found: " + ", ".join(f"{k} {v}/{len(nl)}" for k, v in feas.items()))
    gaps = [(r["idf"] - r["lower_bound"]) / abs(r["idf"]) for r in nl if r["idf"] is not None]
    print(f"IDF gap to the relaxation bound: median {np.median(gaps) * 100:.1f} %, max {np.max(gaps) * 100:.1f} %; "
          f"mean IDF time {np.mean([r['idf_s'] for r in nl]):.2f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"linear": lin, "nonlinear": nl}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
