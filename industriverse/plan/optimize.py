"""The optimizer's entry point: a planning problem in, the optimization JSON out.

``method``:

* ``lp``  — the planning LP through HiGHS (:mod:`industriverse.plan.lp`).  Exact for networks whose
  electric power is affine; the lower bound is the dual bound.  With a temperature-dependent COP
  the LP is the convex relaxation: it gives the bound, and its plan is polished on the true cost
  by sequential LP (deterministic, no seed).
* ``idf`` — the energy-based diffusion engine (:mod:`industriverse.plan.idf`); the bound comes from the
  (relaxed) LP's dual.
* ``auto`` — ``lp`` for affine power, ``idf`` for temperature-dependent COPs (the relaxation's plan
  joins the polished starts).

The result never claims optimality without a bound: ``lower_bound`` is proven from dual values
(or null), ``gap = (cost − lower_bound) / |cost|``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from industriverse.errors import BadInput, Infeasible
from industriverse.plan.idf import FEAS_TOL, IDFSettings, Landscape, actuator_violation, idf, polish
from industriverse.model.kpis import band_excess
from industriverse.plan.infeasibility import explain_infeasible
from industriverse.plan.lp import (build_planning_lp, chain_cuts, complementary_pairs, simultaneous_use, solve,
                                  substep_cuts)
from industriverse.plan.power import ENVELOPE_ROUNDS, PowerModel, envelope_separator, exact_power, relaxed_power

METHODS = ("auto", "idf", "lp")


def _floats(a) -> list[float]:
    return [float(v) for v in np.asarray(a, dtype=float).ravel()]


def untightened_violation(problem, u: np.ndarray, x: np.ndarray | None = None) -> float:
    """Largest violation by plan ``u`` (H, m) of the client's own (un-tightened) envelope at
    ``k = 1..H``, the actuator limits and the ramp limits, in state units or kW (0 if none)."""
    x = problem.predict(u) if x is None else x
    env = band_excess(x[1:], problem.x_lo[1:], problem.x_hi[1:])
    return max(float(env.max(initial=0.0)), actuator_violation(problem, u))


def plan_violation(problem, u: np.ndarray, x: np.ndarray, power: np.ndarray) -> float:
    """Largest violation by plan ``u`` (H, m) with states ``x`` (H+1, n) and site power ``power``
    (H,) of the tightened envelope at the samples, the actuator box and ramps, and the import,
    export, energy and peak limits (state units, kW or kWh; 0 if none).  O(H): no prediction matrix."""
    lo, hi = problem.envelope(backoff=True)
    env = band_excess(x[1:], lo[1:], hi[1:])
    from industriverse.model.kpis import fifteen_minute_means

    side = [np.max(power - problem.import_max, initial=0.0), np.max(-power - problem.export_max, initial=0.0)]
    if problem.energy_budget is not None:
        side.append(problem.dt_h * np.maximum(power, 0.0).sum() - problem.energy_budget)
    if problem.peak_budget is not None:
        side.append(max(float(fifteen_minute_means(power, problem.dt_h).max()), 0.0) - problem.peak_budget)
    return max(float(env.max(initial=0.0)), actuator_violation(problem, u), float(max(side)), 0.0)


def optimize(problem, method: str = "auto", seed: int = 0, *, request_dir: str | Path | None = None,
             settings: IDFSettings | None = None,
             progress: Callable[[str, int, int, float, float], None] | None = None) -> dict:
    """Optimise the plan of ``problem`` (a :class:`industriverse.model.mapping.PlanningProblem`).

    Returns the optimization JSON (a dict; field names fixed by DESIGN.md §4, see the README).
    Raises :class:`Infeasible` naming the conflicting constraints when no plan meets them, and
    :class:`BadInput` for an unknown method or a negative seed.
    """
    if method not in METHODS:
        raise BadInput(None, "--method", f"unknown method '{method}' (known: {', '.join(METHODS)})")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise BadInput(None, "--seed", f"must be a non-negative integer, got {seed!r}")
    t0 = time.perf_counter()
    nonlinear = any(a.nonlinear for a in problem.network.actuators)
    used = method if method != "auto" else ("idf" if nonlinear else "lp")
    # the LP (exact, or the relaxation) always runs: it proves the bound or the infeasibility
    lp = solve_planning_lp(problem, relax=nonlinear)
    stats: dict = {"lp_seconds": lp.seconds, "lp_solves": lp.lp_solves, "lp_iterations": lp.iterations,
                   "dual_objective": lp.dual_objective, "dual_residual": lp.dual_residual,
                   # the bound stays valid with a residual (it is absorbed by the variable bounds); flag it anyway
                   "dual_feasible": bool(lp.dual_residual is not None and lp.dual_residual <= 1e-7)}
    if lp.premise is not None:
        stats["relaxation_premise"] = lp.premise
    if lp.milp is not None:
        stats["complementarity_milp"] = lp.milp
    settings = settings or IDFSettings()
    evaluations, iterations, particles = 1, lp.iterations, 0
    if used == "lp" and not nonlinear:
        u = lp.u
    elif used == "lp":  # relaxation plan polished on the true cost (sequential LP)
        land = Landscape(problem)
        out = polish(problem, lp.u, land, settings)
        u = lp.u if out is None else out[0]
        if out is not None:
            stats["lp_solves"] += out[4]
            evaluations += out[5]
        stats["start"] = "relaxation"
    else:
        extra = {"relaxation": lp.u} if (method == "auto" and nonlinear) else None
        res = idf(problem, seed=int(seed), settings=settings, extra_starts=extra, progress=progress)
        u = res.u
        evaluations, iterations, particles = res.evaluations, res.iterations, res.particles
        stats.update({"lp_solves": stats["lp_solves"] + res.lp_solves, "langevin_seconds": res.langevin_seconds,
                      "polish_seconds": res.polish_seconds, "best_start": res.best_start,
                      "candidates": [{k: (None if v is None else (float(v) if not isinstance(v, str) else v))
                                      for k, v in c.items()} for c in res.candidates]})
    x = problem.predict(u)
    power = problem.site_power(u, x)
    k = problem.kpis(u, x)
    cost = float(k["cost"])
    violation = plan_violation(problem, u, x, power)
    feasible = violation <= FEAS_TOL
    if not feasible:
        raise Infeasible([f"no plan found that meets every constraint (best plan misses by {violation:.3g}); "
                          f"the {'relaxation' if nonlinear else 'LP'} is feasible, so this is not proven — "
                          f"try --method {'lp' if used == 'idf' else 'idf'} or more particles"])
    lb = lp.lower_bound if lp.lower_bound is not None and np.isfinite(lp.lower_bound) else None
    hulled = tightened = False
    if lb is not None and nonlinear and lp.milp is None and lp.program is not None and problem.H <= CUTOFF_MAX_STEPS:
        lb, bstats, hulled, tightened = tightened_bound(problem, lp, lb, cost)
        stats.update(bstats)
    gap = None
    if lb is not None:
        gap = max((cost - lb) / max(abs(cost), 1e-9), 0.0)  # a plan within tolerance can cost a hair below
    bound_method = None
    if lb is not None and not nonlinear:
        bound_method = "lp-dual"
    elif lb is not None:
        bound_method = ("relaxation-lp-dual (convex envelope of the COP power over proven set-point and temperature "
                        "intervals" + (", planes over each step's polytope of states and set-points" if hulled else "")
                        + (", splits of the slowest node's temperature taken together in one LP"
                           if stats.get("disjunctions", {}).get("raised") else "")
                        + (", tightened with the plan's cost as cutoff)" if tightened else ")"))
    if lb is not None and lp.milp is not None:
        bound_method = "milp-dual (complementarity: " + bound_method + " with a binary per step)"
    backoff = problem.backoff if problem.backoff is not None else np.zeros(problem.n)
    from industriverse.plan.lp import simultaneous_use
    from industriverse.plan.substeps import substep_violation

    # the continuous-time definition (plan/substeps.py) on the client's own band, and complementarity
    stats["max_violation_between_samples"] = substep_violation(problem, u, backoff=False, x=x)
    stats["max_simultaneous_kw"] = float(simultaneous_use(problem, u).max(initial=0.0))
    stats.update({"seconds": time.perf_counter() - t0, "evaluations": int(evaluations), "iterations": int(iterations),
                  "particles": int(particles)})
    return {
        "request": problem.request,
        "request_dir": None if request_dir is None else str(request_dir),
        "domain": problem.domain,
        "kind": problem.kind,
        "method": used,
        "method_requested": method,
        "seed": int(seed),
        "backoff": {name: float(b) for name, b in zip(problem.nodes, backoff)},
        "horizon": {"start": problem.start.isoformat(timespec="minutes"), "steps": problem.H,
                    "step_minutes": problem.dt_s / 60.0, "times": problem.step_times()},
        "plan": {name: _floats(u[:, j]) for j, name in enumerate(problem.actuators)},
        "states": {name: _floats(x[:, i]) for i, name in enumerate(problem.nodes)},
        "power_kw": _floats(power),
        "objective": {"cost": cost, "energy_kwh": float(k["energy_kwh"]), "emissions_kg": float(k["emissions_kg"]),
                      "peak_kw": float(k["peak_kw"]), "export_kwh": float(k["export_kwh"]),
                      "currency": problem.constraint.tariff.currency,
                      # a URDB tariff's charges: each demand period's peak and rate (in the cost), and
                      # the fixed charge per month (reported only: no plan changes it)
                      "demand_charges": [{"name": name, "rate_per_kw": rate, "peak_kw": float(pk)} for (name, rate, _), pk
                                         in zip(problem.demand_groups, k.get("demand_peaks_kw", []))],
                      "fixed_monthly_charge": problem.constraint.tariff.fixed_monthly_charge,
                      "tariff": problem.constraint.tariff.name},
        "lower_bound": lb,
        "lower_bound_method": bound_method,
        "gap": gap,
        "feasible": bool(feasible),
        "max_violation": untightened_violation(problem, u, x),
        "stats": _json_safe(stats),
    }


def _json_safe(v):
    """Replace non-finite floats by None, numpy scalars by Python ones (strict JSON)."""
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if np.isfinite(v) else None
    return v


def tightened_bound(problem, lp: "PlanningLPResult", lower_bound: float, cost: float) -> tuple[float, dict, bool, bool]:
    """The relaxation's bound ``lower_bound`` raised by the step-polytope planes
    (:mod:`industriverse.plan.step_hull`), then — with the gap to ``cost`` (the plan's true cost) in
    ``(CUTOFF_ABOVE_GAP, REFINE_BELOW_GAP]`` — by splits of the slow node's temperature taken together
    in one LP (:func:`industriverse.plan.splits.disjunctive_bound`; ``DISJUNCTIVE = False``: planes over polytopes with more
    sub-step rows instead), or — while the gap is above ``REFINE_BELOW_GAP`` — by bound tightening with ``cost`` as cutoff
    (:mod:`industriverse.plan.cutoff`) on the LP that keeps those planes (with ``REPLANE_SHARE > 0``
    also new planes over the tightened boxes where the relaxation's cost error is).  ``lp``: the solved
    relaxation (:func:`solve_planning_lp`; its program gains the planes' rows).  Returns
    ``(bound, stats, planes_raised_it, cutoff_raised_it)``; every step is proven from dual values."""
    from industriverse.plan.cutoff import costly_steps, cutoff_bound
    from industriverse.plan.splits import DISJ_MAX, disjunctive_bound, slow_node
    from industriverse.plan.step_hull import hull_bound, hull_separator, without_slack_cuts

    stats: dict = {}
    lb, hulled, tightened = float(lower_bound), False, False
    program, z = lp.program, lp.z
    hsol, hst = hull_bound(problem, lp.power, program)
    if hsol is not None:
        stats["step_hull"] = hst
        if hsol.status == 0 and hsol.lower_bound is not None and np.isfinite(hsol.lower_bound):
            hulled = hsol.lower_bound > lb
            lb, z = max(lb, float(hsol.lower_bound)), hsol.z
    planes = hsol is not None and hsol.status == 0  # the LP with the planes solved
    near = CUTOFF_ABOVE_GAP * abs(cost) < cost - lb <= REFINE_BELOW_GAP * abs(cost)
    node = slow_node(problem, lp.power) if near and planes and DISJUNCTIVE else None
    if node is not None:
        # close to the target: splits of the slow node's temperature at the costliest steps, all in
        # one LP (their extended formulations), instead of the refined planes
        t0 = time.perf_counter()
        splits = int(np.clip(np.ceil(DISJ_PER_POINT * (100 * (cost - lb) / abs(cost) - 0.92)), 4, DISJ_MAX))
        lb2, dst = disjunctive_bound(problem, lp.power, program, z, lb, node, max_splits=splits, warm=hsol)
        stats["disjunctions"] = {**dst, "wall_seconds": time.perf_counter() - t0, "raised": bool(lb2 > lb)}
        lb = max(lb, lb2)
    elif near and planes:
        # close to the target: the cost row hardly shrinks the boxes at such a gap (the cutoff gained
        # ≤ 0.015 points on the cold-storage instances 4 and 7 there); planes over polytopes with more
        # sub-step band rows at the costliest steps gain more, for less
        from industriverse.plan.lp import chain_cuts, solve, substep_cuts
        from industriverse.plan.power import envelope_separator
        from industriverse.plan.step_hull import HULL_ROUNDS

        t0 = time.perf_counter()
        sep = hull_separator(problem, lp.power, program, chosen=REFINE_ROWS,
                             steps=lambda i, r: costly_steps(problem, r, i, program, z, REFINE_SHARE))
        if sep is not None:
            sol = solve(program, cuts=chain_cuts(substep_cuts(problem, program), envelope_separator(problem, lp.power, program.blocks),
                                                 sep), max_rounds=HULL_ROUNDS)
            stats["refined_planes"] = {"seconds": time.perf_counter() - t0, "steps": int(sum(h.active.sum() for h in sep.hulls)),
                                       "cuts": int(sum(h.cuts_added for h in sep.hulls)), "lower_bound": sol.lower_bound}
            if sol.status == 0 and sol.lower_bound is not None and np.isfinite(sol.lower_bound) and sol.lower_bound > lb:
                lb, z = float(sol.lower_bound), sol.z
    elif cost - lb > CUTOFF_ABOVE_GAP * abs(cost):
        # every optimal plan lies in smaller boxes, where the envelope is tighter; the range LPs keep
        # only the binding rows (they re-solve faster), the final LP every row
        slim = without_slack_cuts(program, z) if planes else None
        # (optionally) step-polytope planes over the smaller boxes, at the steps that make a share of the
        # relaxation's cost error (price × (true power − relaxed power) at the planes' LP plan)
        more = None
        if hsol is not None and REPLANE_SHARE > 0:
            def more(lp2, pw):
                return hull_separator(problem, pw, lp2,
                                      steps=lambda i, r: costly_steps(problem, r, i, program, z, REPLANE_SHARE))
        lb2, cst = cutoff_bound(problem, lp.power, program, lb, cost, z=z, share=CUTOFF_SHARE,
                                keep_rows=hsol is not None, range_lp=slim, more_cuts=more, stride=CUTOFF_STRIDE)
        stats["cutoff"] = cst
        tightened = lb2 > lb
        lb = max(lb, lb2)
    return lb, stats, hulled, tightened


def load_plan(opt_doc: dict):
    """Rebuild ``(problem, u)`` from an optimization JSON: the problem from ``domain``,
    ``request``, ``request_dir`` (base of relative CSV paths) and ``backoff``; ``u`` (H, m) kW from
    ``plan``.  Raises :class:`BadInput` naming the field when the document does not fit."""
    from industriverse.model.mapping import map_constraint

    for key in ("domain", "request", "plan"):
        if key not in opt_doc:
            raise BadInput(None, key, "is missing from the optimization JSON")
    if not isinstance(opt_doc["domain"], str):
        raise BadInput(None, "domain", "must be the name of a domain")
    base = opt_doc.get("request_dir")
    if base is not None and not isinstance(base, str):
        raise BadInput(None, "request_dir", "must be a directory path or null")
    problem = map_constraint(opt_doc["domain"], opt_doc["request"], base_dir=Path(base) if base else None)
    backoff = opt_doc.get("backoff") or {}
    unknown = set(backoff) - set(problem.nodes)
    if unknown:
        raise BadInput(None, "backoff", f"names unknown node(s) {sorted(unknown)}")
    if any(backoff.values()):
        problem = problem.with_backoff(np.array([float(backoff.get(n, 0.0)) for n in problem.nodes]))
    plan = opt_doc["plan"]
    missing = [a for a in problem.actuators if a not in plan]
    if missing:
        raise BadInput(None, "plan", f"has no values for actuator(s) {missing}")
    cols = []
    for a in problem.actuators:
        v = np.asarray(plan[a], dtype=float)
        if v.shape != (problem.H,):
            raise BadInput(None, f"plan.{a}", f"has {v.size} values, the horizon has {problem.H} steps")
        cols.append(v)
    return problem, np.column_stack(cols)


# --------------------------------------------------------------------------------------------
# the planning problem as an LP
# --------------------------------------------------------------------------------------------
@dataclass
class PlanningLPResult:
    """The planning LP's optimum ``u`` (H, m) kW, its LP objective (the cost for exact models),
    the proven ``lower_bound`` on the optimal cost, and how it was obtained."""

    u: np.ndarray
    objective: float
    lower_bound: float
    dual_objective: float
    dual_residual: float
    relaxed: bool
    iterations: int
    seconds: float
    lp_solves: int
    power: PowerModel
    premise: dict | None = None
    milp: dict | None = None  # set when complementarity needed the MILP: binaries, B&B nodes, gap
    program: object | None = None  # the solved LinearProgram (with the rows added while solving it)
    z: np.ndarray | None = None  # its solution


COMPLEMENTARITY_TOL = 1e-6  # kW: a pair both above this in one step runs at once
CUTOFF_SHARE = 0.8  # the cutoff tightens the steps that make this share of the relaxation's cost error
# after the cutoff, new step-polytope planes at the steps making this share of the relaxation's cost
# error (0: none).  0.5 on the cold-storage family (benchmarks/nonlinear_bound.py): gaps 1.52/1.39/1.94 % →
# 1.21/1.19/1.90 % on instances 1/5/7 and 1.21 → 0.90 % on 3, for ~0.2–0.5 s more CPU, which takes
# instance 1 to 4.6–5.2× e79275d's time from run to run, past the 5× allowed: off by default
REPLANE_SHARE = 0.0
CUTOFF_ABOVE_GAP = 0.01  # the cutoff runs only while the proven gap is above this (1 %)
CUTOFF_STRIDE = 4  # its range LPs coarse to fine: every 4th step first, those between only where a neighbour's box moved
# with the step-polytope planes' gap in (CUTOFF_ABOVE_GAP, REFINE_BELOW_GAP], instead of the cutoff: planes over
# polytopes with REFINE_ROWS chosen sub-step band rows per polytope step (step_hull.chosen_substeps) at the
# steps making REFINE_SHARE of the relaxation's cost error.  Cold-storage family, 96 steps: instance 7
# 1.005 → 0.99 % (the cutoff: 1.004 %), instance 4 1.114 → 1.098 % (cutoff: 1.113 %), ~1 s instead of ~3 s
REFINE_BELOW_GAP = 0.015
REFINE_SHARE = 0.5
REFINE_ROWS = 2
DISJUNCTIVE = True  # with the planes' gap in (CUTOFF_ABOVE_GAP, REFINE_BELOW_GAP]: disjunctive_bound instead of the refined planes
DISJ_PER_POINT = 50  # splits per percentage point of gap above 0.92 % (at least 4, at most DISJ_MAX)
CUTOFF_MAX_STEPS = 192  # its LPs span the horizon (time ~ H²): longer plans keep the relaxation's bound


def solve_planning_lp(problem, *, relax: bool = False, backoff: bool = True, continuous: bool = True,
                      complementarity: bool = True) -> PlanningLPResult:
    """Solve the planning LP: exact for linear networks, the convex relaxation with ``relax=True``.

    ``continuous``: the envelope binds at every control sub-step (:mod:`industriverse.plan.substeps`);
    interior sub-step rows too many to build up front are added lazily where the plan violates them.
    ``complementarity``: where the LP's plan charges and discharges a battery (or heats and cools
    a node) in the same step, the problem is re-solved as a MILP with a binary per step and pair
    (:func:`industriverse.plan.lp.complementary_pairs`); its bound is HiGHS' MILP dual bound.

    Raises :class:`industriverse.errors.Infeasible` naming the conflicting constraints (from the
    elastic LP) when no plan meets them; ``ValueError`` for a temperature-dependent COP without
    ``relax``.
    """
    t0 = time.perf_counter()
    nonlinear = any(a.nonlinear for a in problem.network.actuators)
    if nonlinear and not relax:
        raise ValueError("this network has a temperature-dependent COP: solve the relaxation (relax=True) or use IDF")
    power = relaxed_power(problem, backoff=backoff) if nonlinear else exact_power(problem)
    lp = build_planning_lp(problem, power, backoff=backoff, continuous=continuous)
    cuts = substep_cuts(problem, lp, backoff=backoff) if continuous and "substep" not in lp.rows else None
    if power.relaxed:  # refine the COP envelope where the relaxed plan sits (and keep the sub-step rows)
        cuts = chain_cuts(cuts, envelope_separator(problem, power, lp.blocks))
    sol = solve(lp, cuts=cuts, max_rounds=ENVELOPE_ROUNDS if power.relaxed else 20)
    if sol.status == 2:
        lines = explain_infeasible(problem, power, backoff=backoff, continuous=continuous)
        raise Infeasible(lines or ["the band cannot be held between the samples (at the control sub-steps) "
                                   "together with the other constraints"])
    if sol.status != 0:
        raise RuntimeError(f"HiGHS failed on the planning LP: {sol.message}")
    u = np.clip(sol.z[lp.blocks["u"]].reshape(problem.H, problem.m), problem.u_lo, problem.u_hi)
    solves, milp = 1, None
    if complementarity and simultaneous_use(problem, u).max(initial=0.0) > COMPLEMENTARITY_TOL:
        # the relaxation exploits running both sides of a pair at once: solve the MILP exactly
        # (with the interior sub-step rows up front: lazy rows need a pure LP)
        lp = build_planning_lp(problem, power, backoff=backoff, continuous=continuous, complementarity=True,
                               substeps="all" if continuous else "lazy")
        sol = solve(lp)
        solves += 1
        if sol.status == 2:
            raise Infeasible(["no plan meets the constraints without charging and discharging (or heating and "
                              "cooling) in the same step; the plans that do are not realisable"])
        if sol.status != 0:
            raise RuntimeError(f"HiGHS failed on the planning MILP: {sol.message}")
        u = np.clip(sol.z[lp.blocks["u"]].reshape(problem.H, problem.m), problem.u_lo, problem.u_hi)
        for a, b in complementary_pairs(problem):  # the binaries hold to HiGHS' integrality tolerance
            off = u[:, a] <= u[:, b]
            u[off, a] = np.where(u[off, a] <= COMPLEMENTARITY_TOL, 0.0, u[off, a])
            u[~off, b] = np.where(u[~off, b] <= COMPLEMENTARITY_TOL, 0.0, u[~off, b])
        milp = {"binaries": int(len(lp.integer)), "nodes": sol.iterations, "mip_gap": sol.mip_gap}
    premise = None
    if power.relaxed:
        premise = check_relaxation_premise(problem, power, u)
    return PlanningLPResult(u, sol.objective, sol.lower_bound, sol.dual_objective, sol.dual_residual, bool(power.relaxed),
                            sol.iterations, time.perf_counter() - t0, solves, power, premise, milp, lp, sol.z)


def check_relaxation_premise(problem, power: PowerModel, u: np.ndarray, tol: float = 1e-6) -> dict:
    """Does plan ``u`` stay inside the temperature intervals the relaxation assumed?

    The intervals are proven for every envelope-feasible plan, so this holds for any feasible
    ``u``; it is checked on the returned plan as a guard.
    """
    x = problem.predict(u)
    out = {"holds": True, "nodes": {}}
    for r in power.relaxed:
        t = x[:-1, r.node]
        worst = float(max(np.max(t - r.t_hi), np.max(r.t_lo - t)))
        name = problem.nodes[r.node]
        out["nodes"][name] = {"t_min_c": float(np.min(r.t_lo)), "t_max_c": float(np.max(r.t_hi)),
                              "plan_t_min_c": float(t.min()), "plan_t_max_c": float(t.max()), "outside_by": max(worst, 0.0)}
        if worst > tol:
            out["holds"] = False
    return out


def optimize_with_backoff(problem, backoff_factor: float = 1.0, method: str = "auto", seed: int = 0, *,
                          request_dir: str | Path | None = None, settings: IDFSettings | None = None,
                          progress: Callable[[str, int, int, float, float], None] | None = None) -> dict:
    """:func:`optimize` against the envelope tightened by ``backoff_factor`` noise back-offs.

    The back-off is :func:`industriverse.plan.tracking.noise_backoff` × ``backoff_factor`` (the one
    the strike loop plans with; 0 = none), so a plan made here meets the chance constraint the
    shield checks.  When the tightened envelope is infeasible but the client's own is not, the
    plan is made without back-off and says why (``backoff_dropped``): the shield's chance
    constraint then decides on the simulated ensemble.  The result records ``backoff_k``.
    """
    from industriverse.plan.tracking import noise_backoff

    factor = float(backoff_factor)
    if not (factor >= 0.0) or not np.isfinite(factor):
        raise BadInput(None, "--backoff_factor", f"must be a finite number ≥ 0, got {backoff_factor!r}")
    kwargs = dict(request_dir=request_dir, settings=settings, progress=progress)
    if factor > 0.0:
        try:
            doc = optimize(problem.with_backoff(noise_backoff(problem, factor)), method, seed, **kwargs)
        except Infeasible as tightened:
            doc = optimize(problem, method, seed, **kwargs)  # still infeasible: the client's constraint is
            doc["backoff_dropped"] = str(tightened)
    else:
        doc = optimize(problem, method, seed, **kwargs)
    doc["backoff_k"] = factor
    return doc
