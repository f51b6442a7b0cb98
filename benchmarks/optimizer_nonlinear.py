"""A fair nonlinear optimizer benchmark: IDF against general-purpose peers on the cold-storage family.

The instances are the cold-storage family of ``benchmarks/optimizer.py`` (capacities, conductances,
compressor size and Carnot fraction, climate, activity, tariff and demand charge drawn around the
domain defaults; temperature-dependent COP, so the cost is nonlinear in the plan), here on a
shorter grid by default (24 h in 60-minute steps) so that every peer can get 40× IDF's time on
several seeds within about ten minutes of one core.  For each instance and seed:

* IDF (``industriverse.plan.idf.idf``: annealed Langevin, then its polish of the 3 best distinct
  particles) runs first; its wall time ``T`` sets the budgets.
* Peers run once for ``40 T`` with snapshots of their state at ``1 T``, ``10 T`` and ``40 T`` (every
  peer is an anytime method driven by its seed, so the snapshot at ``k T`` is what a run with budget
  ``k T`` returns):

  - ``slsqp``: SLSQP multi-start from uniform random plans, analytic gradient of the cost and the
    envelope as exact linear constraints (analytic Jacobian);
  - ``de``: differential evolution (scipy), the envelope as a ``LinearConstraint`` (feasibility rules);
  - ``dual_annealing``: scipy's dual annealing on the penalised energy (ρ = 1e4, IDF's final weight),
    L-BFGS-B local search with the analytic gradient;
  - ``cma``: CMA-ES (``cma``) on the same penalised energy, in box fractions.

  Each peer reports ``raw``: the cheapest plan it evaluated that meets every constraint (else none),
  and ``polished``: IDF's own final polish (``industriverse.plan.idf.polish``: the nearest feasible
  plan by LP, then sequential LP on the true cost) applied to the 3 best distinct plans it evaluated
  (ranked, as IDF ranks its particles, by the energy at ρ = 1e4), the better of that and ``raw``.
  So a penalty-based peer that never met the envelope exactly is made feasible by the polish, and
  every peer gets the step that does much of IDF's work.  The polish time is reported apart.
* ``random+polish``: one uniform random plan, polished the same way (no search at all).

Results: per instance and seed the cost of every method; a performance profile (for each method,
the share of (instance, seed) problems whose cost is within τ of the best cost any method found);
IDF against each peer counted as wins, ties (|Δ| ≤ ``TIE_RTOL`` of the best) and losses separately,
with every problem where a peer beats IDF listed.  Times and budgets are CPU seconds of the
benchmark's process (one BLAS thread), so the comparison holds on a loaded machine.

Run:  python benchmarks/optimizer_nonlinear.py [--instances 2] [--seeds 5] [--budgets 1,10,40]
                                               [--hours 24 --step 60] [--json FILE]
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small matrices: one BLAS thread

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cma  # noqa: E402  (imported before any clock starts: its import takes about a second)
import numpy as np  # noqa: E402
from scipy.optimize import LinearConstraint, differential_evolution, dual_annealing, minimize  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import benchmarks.optimizer as family  # noqa: E402
from industriverse.plan.optimize import tightened_bound  # noqa: E402
from industriverse.plan.idf import FEAS_TOL, IDFSettings, Landscape, idf, polish  # noqa: E402

PEERS = ("slsqp", "de", "dual_annealing", "cma")
RHO = IDFSettings().rho_end        # the penalty weight IDF ends with (penalty-based peers and the ranking)
TOP = IDFSettings().polish          # plans polished per peer, as IDF polishes its best particles
DISTINCT = 0.02                     # plans closer than this (box fraction, max norm) count as one start
TIE_RTOL = 1e-5                     # costs within this share of the best are a tie
TAUS = (0.0, 1e-5, 1e-4, 1e-3, 1e-2, 5e-2)
# Budgets and times are CPU seconds of this process (one BLAS thread): on a shared machine the wall
# clock measures the neighbours' load, the CPU clock measures the method.
CLOCK = time.process_time


class TimeUp(Exception):
    pass


class Anytime:
    """Wraps the landscape for one peer run: counts evaluations, keeps the cheapest feasible plan and
    the ``TOP`` best distinct plans by the energy at ρ = ``RHO``, snapshots both at each deadline,
    and stops the run at the last one."""

    def __init__(self, problem, land: Landscape, deadlines: list[float]):
        self.p, self.land, self.deadlines = problem, land, deadlines
        self.span = np.where(problem.u_hi - problem.u_lo > 0, problem.u_hi - problem.u_lo, 1.0)
        self.best_cost, self.best_u, self.evals = np.inf, None, 0
        self.top: list[tuple[float, np.ndarray]] = []
        self.snaps: list[dict] = []

    def _snapshot(self) -> None:
        self.snaps.append({"best_cost": self.best_cost, "best_u": None if self.best_u is None else self.best_u.copy(),
                           "top": [(e, u.copy()) for e, u in self.top], "evals": self.evals})

    def _tick(self) -> None:
        now = CLOCK()
        while len(self.snaps) < len(self.deadlines) and now > self.deadlines[len(self.snaps)]:
            self._snapshot()
        if len(self.snaps) == len(self.deadlines):
            raise TimeUp

    def finish(self) -> list[dict]:
        while len(self.snaps) < len(self.deadlines):  # a peer that stopped early keeps its result for every budget
            self._snapshot()
        return self.snaps

    def _keep(self, E: np.ndarray, U: np.ndarray) -> None:
        for i in np.argsort(E)[:TOP]:
            e, u = float(E[i]), U[i]
            if len(self.top) == TOP and e >= self.top[-1][0]:
                break
            near = [j for j, (_, v) in enumerate(self.top) if np.max(np.abs(u - v) / self.span) < DISTINCT]
            if near:
                if e < self.top[near[0]][0]:
                    self.top[near[0]] = (e, u.copy())
            else:
                self.top.append((e, u.copy()))
            self.top.sort(key=lambda t: t[0])
            del self.top[TOP:]

    def batch(self, U: np.ndarray, rho: float, grad: bool = False):
        """Evaluate plans (P, H, m) at penalty weight ``rho``: (E, ∇E or None, cost, violation)."""
        self._tick()
        if len(U) == 0:  # DE evaluates only the members that meet its constraints
            z = np.zeros(0)
            return z, None, z, z
        U = np.clip(U, self.p.u_lo, self.p.u_hi)
        E, g, cost, viol = self.land.evaluate(U, rho, grad=grad)
        E_rank = E if rho == RHO else self.land.evaluate(U, RHO, grad=False)[0]
        self.evals += len(U)
        ok = viol <= FEAS_TOL
        if ok.any():
            i = int(np.argmin(np.where(ok, cost, np.inf)))
            if cost[i] < self.best_cost:
                self.best_cost, self.best_u = float(cost[i]), U[i].copy()
        self._keep(E_rank, U)
        return E, g, cost, viol


def envelope_rows(problem):
    """``A u ≤ b``: the (planning) envelope on the predicted states, linear in the plan."""
    H, n, m = problem.H, problem.n, problem.m
    G = problem.G.reshape(H + 1, n, H * m)
    lo_env, hi_env = problem.envelope()
    A, b = [], []
    for bound, sign in ((hi_env, 1.0), (lo_env, -1.0)):
        ks, ids = np.nonzero(np.isfinite(bound[1:]))
        ks = ks + 1
        A.append(sign * G[ks, ids])
        b.append(sign * (bound[ks, ids] - problem.x_free[ks, ids]))
    return np.vstack(A), np.concatenate(b)


def run_slsqp(problem, tr: Anytime, seed: int) -> dict:
    A, b = envelope_rows(problem)
    rng = np.random.default_rng(seed)
    shape = (problem.H, problem.m)
    bounds = list(zip(problem.u_lo.ravel(), problem.u_hi.ravel()))
    span = problem.u_hi - problem.u_lo

    def fun(v):
        E, g, _, _ = tr.batch(v.reshape((1,) + shape), 0.0, grad=True)
        return float(E[0]), g[0].ravel()

    cons = [{"type": "ineq", "fun": lambda v: b - A @ v, "jac": lambda v: -A}]
    starts = finished = 0
    try:
        while True:
            x0 = (problem.u_lo + rng.uniform(size=shape) * span).ravel()
            starts += 1
            minimize(fun, x0, jac=True, method="SLSQP", bounds=bounds, constraints=cons,
                     options={"maxiter": 1000, "ftol": 1e-12})
            finished += 1
    except TimeUp:
        pass
    return {"starts": starts, "finished": finished}


def run_de(problem, tr: Anytime, seed: int) -> dict:
    A, b = envelope_rows(problem)
    shape = (problem.H, problem.m)

    def fun(X):  # vectorized: X (S, N)
        X = np.atleast_2d(X.T) if X.ndim == 2 else X[None]
        return tr.batch(X.reshape((-1,) + shape), 0.0)[2]

    def best_member(intermediate_result):
        # under the feasibility rules the best member may still violate the envelope (then ``fun`` never saw
        # it): rank it too, so the polish starts from what DE has
        tr.batch(np.asarray(intermediate_result.x).reshape((1,) + shape), 0.0)

    try:
        differential_evolution(fun, list(zip(problem.u_lo.ravel(), problem.u_hi.ravel())),
                               constraints=LinearConstraint(A, -np.inf, b), vectorized=True, updating="deferred",
                               polish=False, maxiter=10 ** 6, tol=0, seed=seed, popsize=10, callback=best_member)
    except TimeUp:
        pass
    return {}


def run_dual_annealing(problem, tr: Anytime, seed: int) -> dict:
    shape = (problem.H, problem.m)

    def fun(v):
        return float(tr.batch(v.reshape((1,) + shape), RHO)[0][0])

    def jac(v):
        return tr.batch(v.reshape((1,) + shape), RHO, grad=True)[1][0].ravel()

    try:
        dual_annealing(fun, list(zip(problem.u_lo.ravel(), problem.u_hi.ravel())), maxiter=10 ** 6, maxfun=10 ** 9,
                       seed=seed, minimizer_kwargs={"method": "L-BFGS-B", "jac": jac})
    except TimeUp:
        pass
    return {}


def run_cma(problem, tr: Anytime, seed: int) -> dict:
    shape = (problem.H, problem.m)
    span = np.where(problem.u_hi - problem.u_lo > 0, problem.u_hi - problem.u_lo, 1.0)
    es = cma.CMAEvolutionStrategy(np.full(problem.H * problem.m, 0.5), 0.25,
                                  {"bounds": [0.0, 1.0], "seed": seed + 1, "verbose": -9})
    gens = 0
    try:
        while True:
            Z = np.array(es.ask())
            E = tr.batch(problem.u_lo + Z.reshape((-1,) + shape) * span, RHO)[0]
            es.tell(list(Z), list(E))
            gens += 1
            if es.stop():  # converged: restart from the best with a fresh step size (IPOP-style restarts omitted)
                es = cma.CMAEvolutionStrategy(es.result.xbest, 0.25, {"bounds": [0.0, 1.0], "seed": seed + 1 + gens,
                                                                       "verbose": -9})
    except TimeUp:
        pass
    return {"generations": gens}


RUNNERS = {"slsqp": run_slsqp, "de": run_de, "dual_annealing": run_dual_annealing, "cma": run_cma}


def polish_best(problem, land: Landscape, plans: list[np.ndarray], settings: IDFSettings) -> tuple[float | None, float]:
    """IDF's final polish of ``plans``: (cheapest feasible polished cost or None, seconds)."""
    t = CLOCK()
    best = None
    for u0 in plans:
        out = polish(problem, u0, land, settings)
        if out is not None and out[3] <= FEAS_TOL and (best is None or out[2] < best):
            best = float(out[2])
    return best, CLOCK() - t


def _min(*values):
    vals = [v for v in values if v is not None]
    return min(vals) if vals else None


def run_problem(problem, instance: int, seed: int, budgets: list[float], peers=PEERS) -> dict:
    """Every method on one (instance, seed): costs (None = no feasible plan) and times."""
    settings = IDFSettings()
    land = Landscape(problem)
    problem.G  # the prediction matrices belong to Map: built once, before any clock starts
    t = CLOCK()
    r = idf(problem, seed=seed, settings=settings)
    T = CLOCK() - t
    row = {"instance": instance, "seed": seed, "idf_s": T, "costs": {"idf": r.cost if r.feasible else None},
           "seconds": {"idf": T}, "evals": {"idf": r.evaluations}, "info": {}}
    rng = np.random.default_rng(10_000 + seed)
    u_rand = problem.u_lo + rng.uniform(size=(problem.H, problem.m)) * (problem.u_hi - problem.u_lo)
    row["costs"]["random+polish"], row["seconds"]["random+polish"] = polish_best(problem, land, [u_rand], settings)
    for name in peers:
        t0 = CLOCK()
        tr = Anytime(problem, land, [t0 + k * T for k in budgets])
        info = RUNNERS[name](problem, tr, seed)
        snaps = tr.finish()
        row["info"][name] = info
        for k, snap in zip(budgets, snaps):
            raw = None if snap["best_u"] is None else snap["best_cost"]
            polished, ps = polish_best(problem, land, [u for _, u in snap["top"]], settings)
            key = f"{name}@{k:g}x"
            row["costs"][key + " raw"] = raw
            row["costs"][key + " polished"] = _min(raw, polished)
            row["seconds"][key + " polished"] = k * T + ps
            row["evals"][key] = snap["evals"]
    return row


def profile(rows: list[dict], methods: list[str]) -> dict[str, list[float]]:
    """Share of problems each method solves within τ (relative) of the best cost any method found."""
    out = {}
    for m in methods:
        shares = []
        for tau in TAUS:
            ok = 0
            for r in rows:
                best = _min(*r["costs"].values())
                c = r["costs"].get(m)
                ok += c is not None and best is not None and c <= best + tau * abs(best) + 1e-12
            shares.append(ok / len(rows))
        out[m] = shares
    return out


def duel(rows: list[dict], peer: str) -> tuple[int, int, int, list[dict]]:
    """IDF against ``peer``: wins, ties, losses, and the problems the peer wins."""
    w = t = l = 0
    lost = []
    for r in rows:
        a, b = r["costs"]["idf"], r["costs"].get(peer)
        best = _min(a, b)
        if a is None and b is None:
            t += 1
        elif b is None or (a is not None and b - a > TIE_RTOL * abs(best)):
            w += 1
        elif a is None or a - b > TIE_RTOL * abs(best):
            l += 1
            lost.append({"instance": r["instance"], "seed": r["seed"], "idf": a, peer: b,
                         "peer_better_pct": None if a is None else (a - b) / abs(a) * 100})
        else:
            t += 1
    return w, t, l, lost


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--instances", type=int, default=2, help="cold_storage instances (default 2)")
    ap.add_argument("--first", type=int, default=0, help="first instance seed (default 0)")
    ap.add_argument("--seeds", type=int, default=5, help="seeds per instance, for IDF and every peer (default 5)")
    ap.add_argument("--first_seed", type=int, default=0, help="first seed (default 0; to split a run over processes)")
    ap.add_argument("--report", nargs="+", metavar="JSON", help="no run: report the rows of these --json files together")
    ap.add_argument("--budgets", default="1,10,40", help="peer budgets in multiples of IDF's time (default 1,10,40)")
    ap.add_argument("--hours", type=float, default=24.0, help="horizon, hours (default 24)")
    ap.add_argument("--step", type=float, default=60.0, help="plan step, minutes (default 60)")
    ap.add_argument("--peers", default=",".join(PEERS), help=f"peers to run (default {','.join(PEERS)})")
    ap.add_argument("--json", metavar="FILE", help="also write every figure as JSON")
    args = ap.parse_args(argv)
    budgets = sorted(float(b) for b in args.budgets.split(","))
    peers = [p for p in args.peers.split(",") if p]
    if args.report:
        rows = [r for f in args.report for r in json.loads(Path(f).read_text())["rows"]]
        rows.sort(key=lambda r: (r["instance"], r["seed"]))
        summarize(rows, peers, budgets, args.json)
        return 0
    family.DAY = {**family.DAY, "hours": args.hours, "step_minutes": args.step}
    t_start, c_start = time.perf_counter(), CLOCK()

    rows = []
    print(f"cold_storage family, {args.hours:g} h in {args.step:g}-min steps; {args.instances} instances × {args.seeds} seeds; "
          f"peers at {', '.join(f'{b:g}×' for b in budgets)} IDF's time")
    for inst in range(args.first, args.first + args.instances):
        problem, lp, params = family.cold_storage_instance(inst)
        print(f"instance {inst}: H = {problem.H}, relaxation bound {lp.lower_bound:.5f}, {params}", flush=True)
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            row = run_problem(problem, inst, seed, budgets, peers)
            # the bound optimize() reports: the relaxation's, raised by the step-polytope planes and
            # (above 1 %) tightened with IDF's cost as cutoff
            row["relaxation_bound"] = lp.lower_bound
            row["lower_bound"] = lp.lower_bound
            if row["costs"]["idf"] is not None and lp.program is not None:
                row["lower_bound"] = tightened_bound(problem, lp, lp.lower_bound, row["costs"]["idf"])[0]
            rows.append(row)
            if args.json:  # as it goes: a long run interrupted keeps what it measured
                Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2, default=str))
            c = row["costs"]
            line = "  ".join(f"{k.replace(' polished', '+pol')} {'-' if v is None else f'{v:.6f}'}"
                             for k, v in c.items() if not k.endswith(" raw"))
            print(f"  seed {seed}: IDF {row['idf_s']:.2f} CPU s | {line}", flush=True)

    summarize(rows, peers, budgets, args.json, extra={"args": vars(args)})
    print(f"total benchmark time {time.perf_counter() - t_start:.0f} s wall, {CLOCK() - c_start:.0f} s CPU")
    return 0


def summarize(rows: list[dict], peers: list[str], budgets: list[float], json_path: str | None, extra: dict | None = None):
    """Print the performance profile, the duels and IDF's figures; write them to ``json_path``."""
    methods = ["idf", "random+polish"] + [f"{p}@{b:g}x {kind}" for p in peers for b in budgets for kind in ("raw", "polished")]
    prof = profile(rows, methods)
    print()
    print(f"Performance profile: share of the {len(rows)} (instance, seed) problems within τ of the best cost found")
    print(f"{'method':32s} " + " ".join(f"{'τ=' + format(t, 'g'):>9s}" for t in TAUS))
    for m in methods:
        print(f"{m:32s} " + " ".join(f"{s:9.2f}" for s in prof[m]))
    print()
    print(f"IDF against each peer (tie: within {TIE_RTOL:g} of the better cost; no feasible plan loses)")
    duels = {}
    for m in methods[1:]:
        w, t, l, lost = duel(rows, m)
        duels[m] = {"wins": w, "ties": t, "losses": l, "peer_wins": lost}
        where = "; ".join(f"inst {x['instance']} seed {x['seed']}: "
                          f"{'IDF infeasible' if x['idf'] is None else format(x['peer_better_pct'], '.4f') + ' % cheaper'}"
                          for x in lost)
        print(f"  vs {m:32s} IDF wins {w:2d}, ties {t:2d}, losses {l:2d}" + (f"  — peer wins: {where}" if lost else ""))
    gaps = [(r["costs"]["idf"] - r["lower_bound"]) / abs(r["costs"]["idf"]) for r in rows if r["costs"]["idf"] is not None]
    relax = [(r["costs"]["idf"] - r.get("relaxation_bound", r["lower_bound"])) / abs(r["costs"]["idf"])
             for r in rows if r["costs"]["idf"] is not None]
    print()
    print(f"IDF: mean time {np.mean([r['idf_s'] for r in rows]):.2f} CPU s; proven gap (optimize's bound: relaxation "
          f"tightened with IDF's cost as cutoff) median {np.median(gaps) * 100:.2f} %, max {np.max(gaps) * 100:.2f} %; "
          f"to the relaxation alone median {np.median(relax) * 100:.2f} %, max {np.max(relax) * 100:.2f} %")
    if json_path:
        Path(json_path).write_text(json.dumps({**(extra or {}), "rows": rows, "profile": prof, "taus": TAUS,
                                               "duels": duels}, indent=2, default=str))


if __name__ == "__main__":
    sys.exit(main())
