"""The step-polytope planes (plan/step_hull.py): the enumerated lines hold every vertex of each
polytope, the proven γ is a true minimum over them, no plane cuts off a feasible plan, and the
bound they give lies between the box envelope's and the brute-force optimum."""
from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pytest

from industriverse.model.mapping import map_constraint
from industriverse.plan.idf import IDFSettings, Landscape, polish
from industriverse.plan.optimize import optimize, plan_violation, solve_planning_lp
from industriverse.plan.step_hull import (StepHull, chosen_substeps, edge_minimum, hull_bound, hull_separator, step_edges,
                                          step_polytopes)
from industriverse.plan.substeps import substep_violation

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def six_hours():
    """A cold-storage day's first 6 h in 15-minute steps (24 steps), its relaxation and hull."""
    problem = map_constraint("cold_storage", {"horizon": {"start": "2026-01-13T05:00", "hours": 6, "step_minutes": 15},
                                              "tariff": {"energy": {"type": "time_of_use", "periods": [
                                                  {"days": "all", "hours": [7, 9], "value": 0.35}], "default": 0.1}}})
    lp = solve_planning_lp(problem, relax=True)
    hull = StepHull(problem, lp.power.relaxed[0], lp.program, "q0")
    return problem, lp, hull


def _vertices(G, lo, hi):
    """Every vertex of ``lo ≤ G y ≤ hi`` by brute force (d rows at a side, solved, kept if inside)."""
    R, d = G.shape
    out = []
    for rows in itertools.combinations(range(R), d):
        A = G[list(rows)]
        if abs(np.linalg.det(A)) < 1e-10:
            continue
        for sides in itertools.product((0, 1), repeat=d):
            v = np.linalg.solve(A, np.where(np.array(sides) == 1, hi[list(rows)], lo[list(rows)]))
            if np.all(G @ v >= lo - 1e-7) and np.all(G @ v <= hi + 1e-7):
                out.append(v)
    return np.unique(np.round(np.array(out), 7), axis=0)


def test_the_lines_hold_every_vertex_of_the_step_polytopes(six_hours):
    problem, lp, _ = six_hours
    G, lo, hi, T, start = step_polytopes(problem, lp.power.relaxed[0], lp.program)
    steps = [0, 1, 5, 12, 23]
    Y0, Y1, ok = step_edges(G[steps], lo[steps], hi[steps], T=T[steps])  # as StepHull builds them
    for i, k in enumerate(steps):
        verts = _vertices(G[k], lo[k], hi[k])
        # a full-dimensional polytope, except at the start (x_0 given: a segment of set-points)
        assert len(verts) >= (2 if k < 2 else G.shape[2] + 1)
        A, B = Y0[i][ok[i]], Y1[i][ok[i]]
        for v in verts:  # each vertex lies on some segment (they are the edges of the polytope loosened
            # by the rounding margin, whose vertices sit within a few 1e-8/sin(angle) of these)
            t = np.clip(np.einsum("ld,ld->l", v - A, B - A) / np.maximum(np.einsum("ld,ld->l", B - A, B - A), 1e-300), 0, 1)
            assert np.min(np.linalg.norm(A + t[:, None] * (B - A) - v, axis=1)) < 1e-4
        # and the segments stay in the polytope (loosened by the rounding margin only)
        for Y in (Y0[i][ok[i]], Y1[i][ok[i]]):
            g = Y @ G[k].T
            assert np.all(g >= lo[k] - 1e-7 * (1 + np.abs(lo[k]))) and np.all(g <= hi[k] + 1e-7 * (1 + np.abs(hi[k])))


def test_the_proven_gamma_is_the_minimum_over_the_segments(six_hours):
    problem, _, hull = six_hours
    rng = np.random.default_rng(5)
    H, d = problem.H, hull.d
    alpha = rng.normal(size=(H, d)) * np.array([0.05] * problem.n + [0.3] * (d - problem.n))
    gam = edge_minimum(hull.act, hull.r.other, hull.T, hull.U, alpha, hull.Y0, hull.Y1, hull.ok)
    s = np.linspace(0.0, 1.0, 2001)
    P = hull.Y0[:, :, None, :] + s[None, None, :, None] * (hull.Y1 - hull.Y0)[:, :, None, :]
    dense = (hull.phi(P) - np.einsum("hlsd,hd->hls", P, alpha))
    dense = np.where(hull.ok[:, :, None], dense, np.inf).min(axis=(1, 2))
    assert np.all(gam <= dense)  # a proof: never above the minimum
    assert np.all(dense - gam <= 1e-6 * (1 + np.abs(dense)))  # and tight (the grid's own error)


def _feasible_plans(problem, count, seed):
    land = Landscape(problem)
    rng = np.random.default_rng(seed)
    plans = []
    for _ in range(count):
        u0 = problem.u_lo + rng.uniform(size=(problem.H, problem.m)) * (problem.u_hi - problem.u_lo)
        out = polish(problem, u0, land, IDFSettings(polish_iterations=0))
        if out is None:
            continue
        u = out[0]
        x = problem.predict(u)
        if plan_violation(problem, u, x, problem.site_power(u, x)) <= 1e-9:
            plans.append((u, x))
    assert len(plans) >= count // 2
    return plans


def test_no_plane_cuts_off_a_feasible_plan(six_hours):
    problem, _, hull = six_hours
    H = problem.H
    rng = np.random.default_rng(7)
    plans = _feasible_plans(problem, 8, seed=2)
    for u, x in plans:
        y = hull.points(x, u[:, 0])
        true = hull.phi(y)
        # planes fitted at the plan itself, at vertices and at random convex combinations of them
        V = hull.pts
        w = rng.dirichlet(np.ones(V.shape[1]), size=H) * hull.smask
        mix = np.einsum("hv,hvd->hd", w / w.sum(axis=1, keepdims=True), V)
        for at in (y, V[:, 0], mix):
            alpha, gamma = hull.cuts_at(at, np.arange(H))
            assert np.all(np.einsum("kd,kd->k", alpha, y) + gamma <= true)


def test_the_hull_bound_is_between_the_box_envelope_and_the_plans():
    sys.path.insert(0, str(ROOT))
    import benchmarks.optimizer as family

    problem, lp, _ = family.cold_storage_instance(1)  # 24 h in 15-minute steps: the box envelope leaves 9 %
    sol, stats = hull_bound(problem, lp.power, lp.program)
    doc = optimize(problem, "auto", seed=0)
    cost = doc["objective"]["cost"]
    assert lp.lower_bound < sol.lower_bound <= doc["lower_bound"] <= cost
    assert (cost - sol.lower_bound) / cost < 0.5 * (cost - lp.lower_bound) / cost  # the gap more than halves
    assert stats["cuts"] > 0 and stats["lag"] == 1
    assert "each step's polytope" in doc["lower_bound_method"]


QUARTER_HOUR_CASES = [
    {"tariff": {"energy": {"type": "time_of_use", "periods": [{"days": "all", "hours": [0, 1], "value": 0.4}], "default": 0.1}}},
    {"tariff": {"energy": 0.2, "demand_charge_per_kw": 2.0},
     "disturbances": {"outdoor": {"type": "sinusoid", "mean": 28.0, "amplitude": 6.0, "period_hours": 4.0, "phase_hours": 1.0}}},
]


@pytest.mark.parametrize("case", QUARTER_HOUR_CASES)
def test_the_bound_never_passes_the_brute_force_optimum_in_quarter_hours(case):
    problem = _quarter_hours(case)
    lp = solve_planning_lp(problem, relax=True)
    sol, _ = hull_bound(problem, lp.power, lp.program)
    best = _brute_force_optimum(problem)
    assert lp.lower_bound <= sol.lower_bound + 1e-12 <= best + 1e-9 * max(abs(best), 1.0)
    # and not vacuous: the planes close a good part of the box envelope's gap (77 % and 43 % here)
    assert sol.lower_bound - lp.lower_bound >= 0.3 * (best - lp.lower_bound)


@pytest.mark.parametrize("case", QUARTER_HOUR_CASES)
def test_the_cutoff_and_the_rebuilt_planes_never_pass_the_brute_force_optimum(case, monkeypatch):
    """optimize()'s whole bound: polytope planes, then the cutoff with planes rebuilt over the tightened
    boxes (forced to run here: these instances are under 1 % without it)."""
    import industriverse.plan.optimize as optimize_module

    monkeypatch.setattr(optimize_module, "CUTOFF_ABOVE_GAP", 0.0)
    monkeypatch.setattr(optimize_module, "REFINE_BELOW_GAP", 0.0)  # the cutoff, not the refined planes
    monkeypatch.setattr(optimize_module, "REPLANE_SHARE", 1.0)
    problem = _quarter_hours(case)
    doc = optimize(problem, "auto", seed=0)
    assert doc["stats"]["cutoff"]["rounds"] >= 1
    best = _brute_force_optimum(problem)
    assert doc["lower_bound"] <= best + 1e-9 * max(abs(best), 1.0)


def _quarter_hours(case) -> object:
    return map_constraint("cold_storage", {"horizon": {"start": "2026-01-13T00:00", "hours": 1.25, "step_minutes": 15},
                                           "initial_state": {"goods": 4.5, "air": 4.5, "wall": 1.0}, **case})


def _brute_force_optimum(problem) -> float:
    """The cheapest feasible plan of a 5-step problem: a 13-level grid of every step's set-point, the 30
    cheapest feasible grid plans polished (feasible between the samples too)."""
    grid = np.linspace(problem.u_lo[0, 0], problem.u_hi[0, 0], 13)  # 13⁵ plans, then polished
    U = np.array(list(itertools.product(grid, repeat=problem.H)))[:, :, None]
    X = problem.predict(U)
    cost = problem.kpis(U, X)["cost"]
    lo, hi = problem.envelope()
    ok = np.all((X[:, 1:] >= lo[1:] - 1e-9) & (X[:, 1:] <= hi[1:] + 1e-9), axis=(1, 2))
    land = Landscape(problem)
    best = np.inf
    for i in np.flatnonzero(ok)[np.argsort(cost[ok])][:30]:
        if substep_violation(problem, U[i]) > 1e-9:
            continue
        best = min(best, float(cost[i]))
        out = polish(problem, U[i], land, IDFSettings())
        if out is not None:
            x = problem.predict(out[0])
            if plan_violation(problem, out[0], x, problem.site_power(out[0], x)) <= 1e-9 and substep_violation(problem, out[0]) <= 1e-9:
                best = min(best, float(problem.kpis(out[0], x)["cost"]))
    assert np.isfinite(best)
    return best


def test_planes_on_some_steps_only(six_hours):
    problem, lp, _ = six_hours
    steps = np.array([3, 4, 10, 17])
    sep = hull_separator(problem, lp.power, lp.program, steps=lambda i, r: steps)
    hull = sep.hulls[0]
    assert np.array_equal(np.flatnonzero(hull.active), steps) and not hull.ok[~hull.active].any()
    u, x = _feasible_plans(problem, 3, seed=4)[0]
    y = hull.points(x, u[:, 0])
    alpha, gamma = hull.cuts_at(y[steps], steps)
    assert np.all(np.einsum("kd,kd->k", alpha, y[steps]) + gamma <= hull.phi(y)[steps])
    rows = sep(lp.z)  # the box-envelope LP's plan is cut, on the chosen steps' q only
    assert rows is not None
    q = lp.program.blocks["q0"]
    cols = rows[0].tocoo().col
    assert set((cols[(cols >= q.start) & (cols < q.stop)] - q.start).tolist()) <= set(steps.tolist())


def test_the_sub_step_rows_hold_every_feasible_plan_and_cut_the_polytopes(six_hours):
    """The band at a control sub-step of the goods (the banded node farthest from the compressor's
    wall) joins each step polytope: every feasible plan (feasible between the samples too) lies in
    the polytopes with those rows, and they cut off vertices of the polytopes without them."""
    from industriverse.plan.step_hull import HULL_SUBSTEPS, lagging_nodes

    problem, lp, hull = six_hours
    r = lp.power.relaxed[0]
    assert list(lagging_nodes(problem, r.node, np.arange(problem.n))) == [problem.nodes.index("goods")]
    assert HULL_SUBSTEPS
    G, lo, hi, T, start = step_polytopes(problem, r, lp.program, substeps=HULL_SUBSTEPS)
    G0, lo0, hi0, _, _ = step_polytopes(problem, r, lp.program, substeps=())
    assert G.shape[1] == G0.shape[1] + 2  # one goods row for each of the polytope's two steps
    plans = _feasible_plans(problem, 8, seed=3)
    for u, x in plans:
        assert substep_violation(problem, u) <= 1e-9
        y = hull.points(x, u[:, 0])
        g = np.einsum("hrd,hd->hr", G, y)
        assert np.all(g >= lo - 1e-9 * (1 + np.abs(lo))) and np.all(g <= hi + 1e-9 * (1 + np.abs(hi)))
    cut = 0
    for k in (5, 12, 23):
        for v in _vertices(G0[k], lo0[k], hi0[k]):
            g = G[k] @ v
            cut += bool(np.any(g < lo[k] - 1e-6) or np.any(g > hi[k] + 1e-6))
    assert cut > 0


def test_the_chosen_sub_step_rows_hold_every_feasible_plan_and_cut_the_vertices_they_were_chosen_for(six_hours):
    """chosen_substeps: one (sub-step, node) row for each of a polytope's two steps, where the plain
    polytope's vertices leave the band most; with them every feasible plan still lies in its
    polytopes, and the rows cut off vertices of the plain polytopes."""
    problem, lp, hull = six_hours
    r = lp.power.relaxed[0]
    chosen = chosen_substeps(problem, r, lp.program)
    H = problem.H
    assert chosen.shape == (H, 2, 3)
    assert set(chosen[1:, :, 0].ravel()) == {0, 1} and np.all((chosen[:, :, 1] >= 1) & (chosen[:, :, 1] <= 14))
    G, lo, hi, _, _ = step_polytopes(problem, r, lp.program, chosen=chosen)
    G0, lo0, hi0, _, _ = step_polytopes(problem, r, lp.program)
    assert G.shape[1] == G0.shape[1] + 2
    for u, x in _feasible_plans(problem, 8, seed=6):
        y = hull.points(x, u[:, 0])
        g = np.einsum("hrd,hd->hr", G, y)
        assert np.all(g >= lo - 1e-9 * (1 + np.abs(lo))) and np.all(g <= hi + 1e-9 * (1 + np.abs(hi)))
    cut = 0
    for k in (5, 12, 23):
        V = _vertices(G0[k], lo0[k], hi0[k])
        g = V @ G[k, -2:].T  # the two chosen rows (the last rows at these steps)
        out = (g < lo[k, -2:] - 1e-6) | (g > hi[k, -2:] + 1e-6)
        cut += int(out.any(axis=0).sum())
    assert cut >= 3


@pytest.mark.parametrize("case", QUARTER_HOUR_CASES)
def test_the_refined_planes_never_pass_the_brute_force_optimum(case, monkeypatch):
    """optimize()'s bound with the planes over polytopes with two chosen sub-step rows per step at
    every step (forced: these instances are under 1 % without them)."""
    import industriverse.plan.optimize as optimize_module

    monkeypatch.setattr(optimize_module, "CUTOFF_ABOVE_GAP", 0.0)
    monkeypatch.setattr(optimize_module, "REFINE_BELOW_GAP", 1.0)
    monkeypatch.setattr(optimize_module, "REFINE_SHARE", 1.0)
    monkeypatch.setattr(optimize_module, "DISJUNCTIVE", False)  # the refined planes, not the splits
    problem = _quarter_hours(case)
    doc = optimize(problem, "auto", seed=0)
    assert "cutoff" not in doc["stats"] and doc["stats"]["refined_planes"]["steps"] >= 4
    best = _brute_force_optimum(problem)
    assert doc["lower_bound"] <= best + 1e-9 * max(abs(best), 1.0)



@pytest.mark.parametrize("case", QUARTER_HOUR_CASES)
def test_the_disjunctive_bound_never_passes_the_brute_force_optimum(case, monkeypatch):
    """optimize()'s bound with the goods-temperature splits (splits.disjunctive_bound) instead of the
    refined planes, forced (these instances are under 1 % without them): above the planes' bound
    and never above the brute-force optimum."""
    import industriverse.plan.optimize as optimize_module

    monkeypatch.setattr(optimize_module, "CUTOFF_ABOVE_GAP", 0.0)
    monkeypatch.setattr(optimize_module, "REFINE_BELOW_GAP", 1.0)
    monkeypatch.setattr(optimize_module, "DISJ_PER_POINT", 1000)
    problem = _quarter_hours(case)
    doc = optimize(problem, "auto", seed=0)
    d = doc["stats"]["disjunctions"]
    assert d["splits"] >= 1 and "refined_planes" not in doc["stats"]
    if d["raised"]:
        assert "splits of the slowest node's temperature" in doc["lower_bound_method"]
    lp = solve_planning_lp(problem, relax=True)
    sol, _ = hull_bound(problem, lp.power, lp.program)
    best = _brute_force_optimum(problem)
    assert sol.lower_bound - 1e-9 <= doc["lower_bound"] <= best + 1e-9 * max(abs(best), 1.0)


def test_the_disjunctive_bound_with_many_splits_stays_under_the_plans(six_hours):
    """Several splits (splits.spacing() apart) in one LP: the bound rises above the planes' and stays under
    the cost of every plan the optimizer finds (its own plan here, and the planes' bound is raised)."""
    import industriverse.plan.splits as splits_module

    problem, lp, _ = six_hours
    sol, _ = hull_bound(problem, lp.power, lp.program)
    node = splits_module.slow_node(problem, lp.power)
    assert node == problem.nodes.index("goods")
    lb, st = splits_module.disjunctive_bound(problem, lp.power, lp.program, sol.z, sol.lower_bound, node, max_splits=6, warm=sol)
    assert st["splits"] >= 3
    assert all(b - a >= splits_module.spacing() for a, b in zip(st["steps"], st["steps"][1:]))
    doc = optimize(problem, "auto", seed=0)
    assert sol.lower_bound - 1e-9 <= lb <= doc["objective"]["cost"] + 1e-9


def test_coarse_to_fine_ranges_are_the_full_ranges_where_solved(six_hours):
    """full_ranges with stride > 1 solves a subset of the range LPs: those it solves give the same
    proven ends as the full sweep, the others stay infinite (the box is kept), and the coarse ones are
    always solved."""
    from industriverse.plan.cutoff import full_ranges

    problem = six_hours[0]
    lp = solve_planning_lp(problem, relax=True)  # its own: other tests add rows to the fixture's program
    prog, r = lp.program, lp.power.relaxed[0]
    H, m, n = problem.H, problem.m, problem.n
    steps = np.arange(1, H)
    targets = np.concatenate([prog.blocks["u"].start + steps * m + r.actuator, prog.blocks["x"].start + steps * n + r.node])
    ref = (np.concatenate([r.u_lo[steps], r.t_lo[steps]]), np.concatenate([r.u_hi[steps], r.t_hi[steps]]))
    cost = lp.lower_bound + 0.02 * abs(lp.lower_bound)  # a cutoff that shrinks some ranges and not others
    lo1, hi1, n1 = full_ranges(prog, targets, cost)
    lo4, hi4, n4 = full_ranges(prog, targets, cost, lines=[steps.size, steps.size], stride=4, ref=ref)
    assert n1 == 2 * targets.size and n4 < n1
    for a, b in ((lo4, lo1), (hi4, hi1)):
        solved = np.isfinite(a)
        assert np.allclose(a[solved], b[solved], rtol=1e-6, atol=1e-6)
    coarse = np.zeros(targets.size, dtype=bool)
    coarse[0:steps.size:4] = coarse[steps.size - 1] = coarse[steps.size::4] = coarse[-1] = True
    assert np.all(np.isfinite(lo4[coarse])) and np.all(np.isfinite(hi4[coarse]))


def test_shrunk_steps_are_the_neighbours_of_a_shrunk_box():
    import dataclasses

    from industriverse.plan.cutoff import shrunk_steps
    from industriverse.plan.power import RelaxedActuator

    H = 10
    one = np.ones(H)
    old = RelaxedActuator(0, 0, one, one, [], -one, one, 0 * one, 4 * one, one)
    t_hi = one.copy()
    t_hi[4] = 0.5  # 25 % of the temperature box's width gone at step 4
    u_lo = 0 * one
    u_lo[8] = 0.2  # 5 % of the set-point box's at step 8
    new = dataclasses.replace(old, t_hi=t_hi, u_lo=u_lo)
    assert list(shrunk_steps(old, new, 0.1)) == [3, 4, 5]
    assert list(shrunk_steps(old, new, 0.04)) == [3, 4, 5, 7, 8, 9]
    assert shrunk_steps(old, old, 0.01).size == 0
