"""The proven lower bound of plans with a temperature-dependent COP: envelope planes under the true
power on their box, set-point intervals that hold every feasible plan, and a bound that never
passes the best plan found by brute force, while being much tighter than the old relaxation."""
from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pytest

from industriverse.model.mapping import map_constraint
from industriverse.plan.idf import IDFSettings, Landscape, polish
from industriverse.plan.optimize import optimize, plan_violation, solve_planning_lp
from industriverse.plan.power import envelope_cut, inverse_cop_and_slope, state_intervals, window_bounds
from industriverse.plan.substeps import substep_violation

ROOT = Path(__file__).resolve().parent.parent


def _chiller(problem):
    a = problem.network.actuators[0]
    return a, problem.d[:, problem.network.boundary_columns[a.cop.boundary]]


def test_envelope_planes_lie_under_the_power_on_their_box_and_touch_it():
    problem = map_constraint("cold_storage", {"horizon": {"start": "2026-01-13T00:00", "hours": 6, "step_minutes": 60}})
    act, _ = _chiller(problem)
    rng = np.random.default_rng(3)
    N = 200
    other = rng.uniform(0.0, 35.0, N)  # outdoor, °C (covers the lift clamp at cold weather)
    u0 = np.where(rng.uniform(size=N) < 0.3, 0.0, rng.uniform(0.0, 3.0, N))
    u1 = u0 + rng.uniform(0.0, 5.0, N)
    t0 = rng.uniform(-15.0, 5.0, N)
    t1 = t0 + rng.uniform(0.0, 15.0, N)
    ua, ta = rng.uniform(u0, u1), rng.uniform(t0, t1)
    alpha, beta, gamma = envelope_cut(act, other, u0, u1, t0, t1, ua, ta)
    s = np.linspace(0.0, 1.0, 61)
    U = u0[:, None, None] + s[None, :, None] * (u1 - u0)[:, None, None]
    T = t0[:, None, None] + s[None, None, :] * (t1 - t0)[:, None, None]
    power = U * inverse_cop_and_slope(act, T, np.broadcast_to(other[:, None, None], T.shape))[0]
    plane = alpha[:, None, None] * U + beta[:, None, None] * T + gamma[:, None, None]
    slack = (power - plane).reshape(N, -1)
    assert slack.min() >= -1e-9  # a proof: never above the power anywhere on the box
    assert np.all(slack.min(axis=1) <= 1e-3 * np.maximum(power.reshape(N, -1).max(axis=1), 1e-3))  # and it touches
    # at the point it is at least as high as the plane through the box's corners (McCormick-like)
    f_at = ua * inverse_cop_and_slope(act, ta, other)[0]
    assert np.all(alpha * ua + beta * ta + gamma <= f_at + 1e-9)


def test_set_point_intervals_hold_every_feasible_plan():
    problem = map_constraint("cold_storage", {"horizon": {"start": "2026-01-13T00:00", "hours": 24, "step_minutes": 15},
                                              "tariff": {"energy": 0.2}})
    lo, hi = state_intervals(problem)
    lo, hi, ulo, uhi, _ = window_bounds(problem, lo, hi, [problem.nodes.index("wall")], [0])
    assert np.all(ulo <= uhi) and np.mean(uhi - ulo) < 0.8 * np.mean(problem.u_hi - problem.u_lo)  # really tighter
    land = Landscape(problem)
    rng = np.random.default_rng(11)
    for _ in range(6):
        u0 = problem.u_lo + rng.uniform(size=(problem.H, problem.m)) * (problem.u_hi - problem.u_lo)
        u = polish(problem, u0, land, IDFSettings(polish_iterations=0))[0]
        assert np.all(u >= ulo - 1e-6) and np.all(u <= uhi + 1e-6)


def _brute_force(problem, levels: int) -> float:
    """The cheapest plan on a grid of ``levels`` set-points per step meeting every constraint the
    planner enforces (samples and sub-steps), then polished on the true cost (sequential LP)."""
    grid = np.linspace(problem.u_lo[0, 0], problem.u_hi[0, 0], levels)
    U = np.array(list(itertools.product(grid, repeat=problem.H)))[:, :, None]
    X = problem.predict(U)
    cost = problem.kpis(U, X)["cost"]
    lo, hi = problem.envelope()
    ok = np.all((X[:, 1:] >= lo[1:] - 1e-9) & (X[:, 1:] <= hi[1:] + 1e-9), axis=(1, 2))
    best = np.inf
    land = Landscape(problem)
    for i in np.flatnonzero(ok)[np.argsort(cost[ok])][:40]:
        u = U[i]
        if substep_violation(problem, u) > 1e-9:
            continue
        best = min(best, float(cost[i]))
        out = polish(problem, u, land, IDFSettings())
        if out is not None:
            x = problem.predict(out[0])
            feasible = plan_violation(problem, out[0], x, problem.site_power(out[0], x)) <= 1e-9
            if feasible and substep_violation(problem, out[0]) <= 1e-9:
                best = min(best, float(problem.kpis(out[0], x)["cost"]))
    assert np.isfinite(best), "no grid plan is feasible: the instance is too tight for this check"
    return best


@pytest.mark.parametrize("case", [
    {"tariff": {"energy": 0.25}},
    {"tariff": {"energy": {"type": "time_of_use", "periods": [{"days": "all", "hours": [1, 3], "value": 0.4}], "default": 0.1},
                "demand_charge_per_kw": 2.0},
     "disturbances": {"outdoor": {"type": "sinusoid", "mean": 28.0, "amplitude": 6.0, "period_hours": 4.0, "phase_hours": 1.0}}},
    {"tariff": {"energy": 0.15}, "disturbances": {"outdoor": 2.0}},  # cold: the lift clamp binds
])
def test_bound_never_passes_the_brute_force_optimum_of_small_instances(case):
    problem = map_constraint("cold_storage", {"horizon": {"start": "2026-01-13T00:00", "hours": 4, "step_minutes": 60}, **case})
    lp = solve_planning_lp(problem, relax=True)
    doc = optimize(problem, "auto", seed=0)  # the reported bound: the LP's, tightened with the plan's cost
    best = _brute_force(problem, levels=41)
    assert lp.lower_bound <= doc["lower_bound"] <= best + 1e-9 * max(abs(best), 1.0)
    assert doc["lower_bound"] <= doc["objective"]["cost"]
    assert lp.lower_bound >= 0.9 * best  # and it is not vacuous


def test_cold_storage_benchmark_gap_is_far_below_the_old_relaxation():
    sys.path.insert(0, str(ROOT))
    import benchmarks.optimizer as family

    problem, _, _ = family.cold_storage_instance(0)  # 24 h in 15-minute steps; the old bound left 7.1 %
    lp = solve_planning_lp(problem, relax=True)
    doc = optimize(problem, "auto", seed=0)
    assert lp.lower_bound <= doc["lower_bound"] <= doc["objective"]["cost"]
    assert (doc["objective"]["cost"] - lp.lower_bound) / doc["objective"]["cost"] < 0.03  # the envelope alone
    assert doc["gap"] < 0.01  # with the step-polytope planes (plan/step_hull.py): 0.14 %
    assert doc["lower_bound_method"].startswith("relaxation-lp-dual (convex envelope")
    assert "planes over each step's polytope of states and set-points" in doc["lower_bound_method"]


def test_hourly_cold_storage_benchmark_gap_is_below_one_percent(monkeypatch):
    sys.path.insert(0, str(ROOT))
    import benchmarks.optimizer as family

    monkeypatch.setattr(family, "DAY", {**family.DAY, "step_minutes": 60})  # the 24-step family: old bound 2.8 %
    problem, _, _ = family.cold_storage_instance(1)
    doc = optimize(problem, "auto", seed=0)
    assert problem.H == 24
    assert doc["lower_bound"] <= doc["objective"]["cost"] and doc["gap"] < 0.01
