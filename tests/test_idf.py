"""IDF, the energy-based diffusion engine: gradients, feasibility, quality, reproducibility."""
from __future__ import annotations

import numpy as np
import pytest

from industriverse.plan.idf import IDFSettings, Landscape, idf, langevin, project, true_violation
from industriverse.plan.optimize import solve_planning_lp
from industriverse.model.mapping import map_constraint
from industriverse.plan.optimize import optimize

DAY = {"start": "2026-01-13T00:00", "hours": 24, "step_minutes": 15}
DOMAINS = ["hvac", "hvac_two_zone", "cold_storage", "microgrid"]


@pytest.mark.parametrize("domain,extra", [
    ("cold_storage", {"tariff": {"energy": 0.2, "demand_charge_per_kw": 3.0}, "budgets": {"energy_kwh": 11.0}}),
    ("microgrid", {"budgets": {"peak_kw": 2.0}}),
    ("hvac_two_zone", {}),
])
def test_adjoint_gradient_matches_finite_differences(domain, extra):
    problem = map_constraint(domain, {"horizon": DAY, **extra})
    land = Landscape(problem)
    rng = np.random.default_rng(1)
    U = problem.u_lo + rng.uniform(size=(3, problem.H, problem.m)) * (problem.u_hi - problem.u_lo)
    E, g, _, _ = land.evaluate(U, 10.0)
    h = 1e-6
    for p, k, a in [(0, 5, 0), (1, 40, problem.m - 1), (2, 90, 0), (0, 60, problem.m - 1)]:
        up, um = U.copy(), U.copy()
        up[p, k, a] += h
        um[p, k, a] -= h
        fd = (land.evaluate(up, 10.0, False)[0][p] - land.evaluate(um, 10.0, False)[0][p]) / (2 * h)
        assert g[p, k, a] == pytest.approx(fd, rel=1e-4, abs=1e-6 * max(1.0, abs(fd)))


def test_energy_cost_is_the_kpi_cost():
    problem = map_constraint("microgrid", {"horizon": DAY, "tariff": {"energy": 0.3, "export": 0.1, "demand_charge_per_kw": 2.0}})
    rng = np.random.default_rng(2)
    U = problem.u_lo + rng.uniform(size=(4, problem.H, problem.m)) * (problem.u_hi - problem.u_lo)
    _, _, cost, _ = Landscape(problem).evaluate(U, 0.0, grad=False)
    np.testing.assert_allclose(cost, problem.kpis(U)["cost"], rtol=1e-12)


def test_projection_respects_box_and_ramp():
    problem = map_constraint("hvac", {"horizon": DAY, "actuators": {"heater": {"ramp_kw_per_step": 1.5}}})
    rng = np.random.default_rng(0)
    U = project(problem, rng.uniform(-5, 15, size=(8, problem.H, problem.m)))
    assert np.all(U >= problem.u_lo) and np.all(U <= problem.u_hi)
    assert np.all(np.abs(np.diff(U, axis=1)) <= 1.5 + 1e-12)


@pytest.mark.parametrize("block,rounds", [(1, 4), (5, 1), (7, 4), (None, 1), (None, 4), (None, 100), (96, 4), (200, 4)])
def test_projection_is_the_forward_pass_to_the_bit(block, rounds):
    problem = map_constraint("hvac_two_zone", {"horizon": DAY, "actuators": {"heater_north": {"ramp_kw_per_step": 0.7}}})
    rng = np.random.default_rng(5)
    walks = 5 + np.cumsum(rng.normal(scale=0.5, size=(6, problem.H, problem.m)), axis=1)
    for U in (rng.uniform(-5, 15, size=(6, problem.H, problem.m)), walks):
        ref = np.clip(U, problem.u_lo, problem.u_hi)
        for k in range(1, problem.H):  # the definition: one step at a time
            ref[:, k] = np.clip(ref[:, k], ref[:, k - 1] - problem.ramp, ref[:, k - 1] + problem.ramp)
        assert np.array_equal(project(problem, U.copy(), block=block, rounds=rounds), ref)


@pytest.mark.parametrize("domain", DOMAINS)
def test_idf_is_feasible_and_close_to_the_lp(domain):
    problem = map_constraint(domain, {"horizon": DAY})
    res = idf(problem, seed=0)
    assert res.feasible and true_violation(problem, res.u) <= 1e-6
    lp = solve_planning_lp(problem, relax=not problem.is_linear)
    assert lp.lower_bound <= res.cost + 1e-9
    if problem.is_linear:
        assert res.cost <= lp.objective * 1.03 + 1e-9
    else:  # the relaxation's plan, evaluated with the true COP, is a feasible plan IDF should match
        relax_plan_cost = float(problem.kpis(lp.u)["cost"])
        assert res.cost <= relax_plan_cost * 1.01


def test_idf_with_ramp_limits_and_demand_charge():
    problem = map_constraint("hvac", {"horizon": DAY, "actuators": {"heater": {"ramp_kw_per_step": 1.0}},
                                      "tariff": {"energy": 0.1, "demand_charge_per_kw": 1.0}})
    res = idf(problem, seed=3, settings=IDFSettings(particles=16, iterations=200))
    assert res.feasible
    lp = solve_planning_lp(problem)
    assert res.cost == pytest.approx(lp.objective, rel=0.03)
    assert np.all(np.abs(np.diff(res.u[:, 0])) <= 1.0 + 1e-6)


def test_langevin_alone_gets_near_the_optimum_on_hvac():
    problem = map_constraint("hvac", {"horizon": DAY})
    land = Landscape(problem)
    U, E, cost, viol = langevin(problem, land, IDFSettings(), np.random.default_rng(0))
    best = int(np.argmin(E))
    lp = solve_planning_lp(problem)
    assert viol[best] < 1e-3
    assert cost[best] <= lp.objective * 1.05


def test_same_seed_gives_the_same_plan():
    problem = map_constraint("cold_storage", {"horizon": DAY})
    settings = IDFSettings(particles=16, iterations=120, polish=2)
    a = optimize(problem, method="idf", seed=11, settings=settings)
    b = optimize(problem, method="idf", seed=11, settings=settings)
    assert a["plan"] == b["plan"]
    assert a["objective"] == b["objective"]
    c = idf(problem, seed=12, settings=settings)
    assert c.feasible


@pytest.mark.parametrize("domain", DOMAINS)
@pytest.mark.parametrize("block", [1, 7, None])
def test_state_response_is_the_prediction_matrix_without_forming_it(domain, block):
    from industriverse.model.response import StateResponse, free_response

    problem = map_constraint(domain, {"horizon": DAY})
    G = problem.G_flat  # the dense reference, small at one day
    resp = StateResponse(problem.Ad, problem.Bd, problem.H, block=block)
    rng = np.random.default_rng(4)
    U = rng.normal(size=(3, problem.H, problem.m))
    lam = rng.normal(size=(3, problem.H + 1, problem.n))
    np.testing.assert_allclose(resp.apply(U).reshape(3, -1), U.reshape(3, -1) @ G.T, atol=1e-12)
    np.testing.assert_allclose(resp.adjoint(lam).reshape(3, -1), lam.reshape(3, -1) @ G, atol=1e-11)
    xf = free_response(problem.Ad, problem.x0, problem.d @ problem.Ed.T)
    np.testing.assert_allclose(xf, problem.x_free, atol=1e-12)


def test_diagonal_metric_is_the_diagonal_of_the_dense_one():
    from industriverse.plan.idf import metric

    problem = map_constraint("hvac_two_zone", {"horizon": DAY})
    land = Landscape(problem)
    M, _ = metric(problem, land, IDFSettings())
    assert M.shape == (problem.H * problem.m,) * 2
    Md, Sd = metric(problem, land, IDFSettings(dense_metric_max=0))
    assert Md.shape == (problem.H * problem.m,)  # a vector, no dense diagonal matrix
    span = (problem.u_hi - problem.u_lo).ravel()
    rows = (np.isfinite(land.lo) | np.isfinite(land.hi)).ravel()
    Gz = problem.G_flat[rows] * span
    k = np.einsum("ij,ij->j", Gz, Gz)
    k = k / k.mean() + IDFSettings().metric_damping
    np.testing.assert_allclose(Md, 1 / k, rtol=1e-10)
    np.testing.assert_allclose(Sd * Sd, Md, rtol=1e-12)


def test_idf_with_the_diagonal_metric_reaches_the_lp_optimum():
    problem = map_constraint("hvac_two_zone", {"horizon": DAY})
    res = idf(problem, seed=0, settings=IDFSettings(dense_metric_max=0, particles=16, iterations=150))
    assert res.feasible
    assert res.cost == pytest.approx(solve_planning_lp(problem).objective, rel=1e-6)


def test_idf_on_weeks_of_five_minute_steps_never_forms_the_prediction_matrix():
    problem = map_constraint("hvac", {"horizon": {"start": "2026-01-12T00:00", "hours": 24 * 14, "step_minutes": 5}})
    res = idf(problem, seed=0, settings=IDFSettings(particles=8, iterations=40))
    assert getattr(problem, "_G", None) is None  # G would be 4033 × 4032 here: IDF works on Ad, Bd only
    assert res.feasible and true_violation(problem, res.u) <= 1e-6
    assert res.cost == pytest.approx(solve_planning_lp(problem).objective, rel=1e-6)
    assert getattr(problem, "_G", None) is None
