"""The planning LP: optimum against an independent model, proven bounds, infeasibility reports."""
from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from scipy import sparse
from scipy.optimize import linprog

from industriverse.errors import Infeasible
from industriverse.plan.idf import IDFSettings, Landscape, idf, polish
from industriverse.plan.lp import build_planning_lp, dual_bound, solve
from industriverse.plan.power import exact_power, relaxed_power, state_intervals, tighten_intervals
from industriverse.plan.optimize import solve_planning_lp
from industriverse.model.mapping import load_problem, map_constraint
from industriverse.plan.optimize import optimize

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "hvac_testcase1.json"
DAY = {"start": "2026-01-13T00:00", "hours": 24, "step_minutes": 15}
DOMAINS = ["hvac", "hvac_two_zone", "cold_storage", "microgrid"]


def _independent_testcase1_lp() -> float:
    """BOPTEST testcase1 as a state-space LP written from the physics, not from the project's code.

    R1C1: C dT/dt = (T_amb − T)/R + Q, Q = heater output (W).  With Q and T_amb held over a step of
    dt seconds the exact update is T[k+1] = a T[k] + (1 − a)(T_amb[k] + R Q[k]), a = exp(−dt/(R C)).
    """
    C, R, dt = 1e6, 0.01, 900.0
    H = 96
    a = np.exp(-dt / (R * C))
    start = datetime(2026, 1, 13)
    hours = np.arange(H) * 0.25
    t_amb = 5 + 5 * np.sin(2 * np.pi * hours / 24)
    price = np.empty(H)
    for k in range(H):
        when = start + timedelta(hours=float(hours[k]))
        h = when.hour + when.minute / 60
        weekday = when.weekday() < 5
        if weekday and 14 <= h < 18:
            price[k] = 0.0888
        elif weekday and (9 <= h < 14 or 18 <= h < 21):
            price[k] = 0.05413
        else:
            price[k] = 0.0444
    # variables: q[0..H-1] kW thermal, T[1..H] °C
    nq, nT = H, H
    c = np.concatenate([price * 0.25 / 0.99, np.zeros(nT)])
    rows, cols, vals, rhs = [], [], [], []
    for k in range(H):  # T[k+1] − a T[k] − (1 − a) R 1000 q[k] = (1 − a) T_amb[k]   (T[0] = 21 known)
        rows += [k, k]
        cols += [nq + k, k]
        vals += [1.0, -(1 - a) * R * 1000.0]
        if k > 0:
            rows.append(k)
            cols.append(nq + k - 1)
            vals.append(-a)
        rhs.append((1 - a) * t_amb[k] + (a * 21.0 if k == 0 else 0.0))
    A_eq = sparse.csr_matrix((vals, (rows, cols)), shape=(H, nq + nT))
    bounds = [(0.0, 10.0)] * nq + [(21.0, 24.0)] * nT
    res = linprog(c, A_eq=A_eq, b_eq=rhs, bounds=bounds, method="highs")
    assert res.status == 0
    return float(res.fun)


def test_testcase1_optimum_matches_an_independent_linprog_model():
    reference = _independent_testcase1_lp()
    problem = load_problem("hvac", EXAMPLE)
    doc = optimize(problem, method="lp")
    assert doc["method"] == "lp" and doc["feasible"]
    assert doc["objective"]["cost"] == pytest.approx(reference, rel=1e-6)
    assert doc["lower_bound"] <= doc["objective"]["cost"] + 1e-12
    assert doc["lower_bound"] == pytest.approx(reference, rel=1e-6)
    assert doc["gap"] < 1e-6
    assert doc["max_violation"] < 1e-6


def test_dual_bound_is_computed_from_marginals_and_is_valid():
    # min −x − 2y  s.t. x + y ≤ 4, x + 3y ≤ 6, 0 ≤ x ≤ 3, 0 ≤ y: optimum −5 at (3, 1)
    from industriverse.plan.lp import LinearProgram

    lp = LinearProgram(c=np.array([-1.0, -2.0]), A_ub=sparse.csr_matrix([[1.0, 1.0], [1.0, 3.0]]), b_ub=np.array([4.0, 6.0]),
                       A_eq=sparse.csr_matrix((0, 2)), b_eq=np.zeros(0), lb=np.zeros(2), ub=np.array([3.0, 10.0]),
                       blocks={"z": slice(0, 2)}, rows={}, row_info={})
    sol = solve(lp)
    assert sol.objective == pytest.approx(-5.0)
    assert sol.lower_bound <= -5.0 + 1e-12
    assert sol.lower_bound == pytest.approx(-5.0, abs=1e-9)
    assert sol.dual_objective == pytest.approx(-5.0, abs=1e-9)
    assert sol.dual_residual < 1e-9
    # a perturbed (dual infeasible) multiplier still gives a valid, lower bound
    res = linprog(lp.c, A_ub=lp.A_ub, b_ub=lp.b_ub, bounds=np.column_stack([lp.lb, lp.ub]), method="highs")
    res.ineqlin.marginals = res.ineqlin.marginals * 0.7
    bound, _, residual = dual_bound(lp, res)
    assert residual > 0.1
    assert bound <= -5.0


def _problems():
    out = [(d, map_constraint(d, {"horizon": DAY})) for d in DOMAINS]
    for path in sorted((ROOT / "examples").glob("*.json")):
        raw = json.loads(path.read_text())
        if raw.get("domain") in DOMAINS and "horizon" in raw:
            out.append((path.name, load_problem(raw["domain"], path)))
    return out


@pytest.mark.parametrize("name,problem", _problems(), ids=lambda v: v if isinstance(v, str) else "")
def test_lower_bound_never_above_the_cost_of_any_plan_found(name, problem):
    costs = []
    lp_doc = optimize(problem, method="lp")
    costs.append(lp_doc["objective"]["cost"])
    bounds = [lp_doc["lower_bound"]]
    for seed in (0, 1):
        doc = optimize(problem, method="idf", seed=seed, settings=IDFSettings(particles=16, iterations=150, polish=2))
        assert doc["feasible"]
        costs.append(doc["objective"]["cost"])
        bounds.append(doc["lower_bound"])
        if problem.is_linear:  # the LP's dual bound alone (a nonlinear bound also uses the plan's cost as cutoff)
            assert doc["lower_bound"] == pytest.approx(lp_doc["lower_bound"], rel=1e-9, abs=1e-12)
    lb = lp_doc["lower_bound"]
    assert all(b is not None and np.isfinite(b) for b in bounds)
    for c in costs:  # every run's bound lies below every plan any run found
        assert max(bounds) <= c + 1e-9 * max(abs(c), 1.0)
    if problem.is_linear:
        assert min(costs) == pytest.approx(lb, rel=1e-6, abs=1e-9)


def test_relaxation_bound_holds_for_many_feasible_plans_of_the_nonlinear_problem():
    """Random feasible cold-storage plans (random starts made feasible and polished) never beat the bound,
    and their states stay inside the proven intervals the relaxation relies on."""
    problem = map_constraint("cold_storage", {"horizon": DAY, "tariff": {"energy": 0.2, "demand_charge_per_kw": 2.0}})
    res = solve_planning_lp(problem, relax=True)
    assert res.relaxed and res.premise["holds"]
    lo, hi = state_intervals(problem)
    lo, hi, _ = tighten_intervals(problem, lo, hi, [problem.nodes.index("wall")])
    land = Landscape(problem)
    rng = np.random.default_rng(7)
    settings = IDFSettings(polish_iterations=0)  # phase 1 only: the nearest feasible plan, not an optimum
    checked = 0
    for _ in range(8):
        u0 = problem.u_lo + rng.uniform(size=(problem.H, problem.m)) * (problem.u_hi - problem.u_lo)
        out = polish(problem, u0, land, settings)
        assert out is not None
        u = out[0]
        x = problem.predict(u)
        assert np.all(x[:-1] >= lo[:-1] - 1e-6) and np.all(x[:-1] <= hi[:-1] + 1e-6)
        cost = float(problem.kpis(u)["cost"])
        assert res.lower_bound <= cost + 1e-9
        checked += 1
    assert checked == 8
    # the bound is tight enough to be useful: within 20 % of the best plan IDF finds
    best = idf(problem, seed=0).cost
    assert res.lower_bound <= best and res.lower_bound >= 0.8 * best


def test_state_intervals_contain_every_simulated_plan():
    problem = map_constraint("hvac_two_zone", {"horizon": DAY})
    lo, hi = state_intervals(problem, backoff=False)
    rng = np.random.default_rng(3)
    U = problem.u_lo + rng.uniform(size=(50, problem.H, problem.m)) * (problem.u_hi - problem.u_lo)
    X = problem.predict(U)
    lo_box, hi_box = problem.x_lo.copy(), problem.x_hi.copy()
    inside = np.all((X >= lo_box - 1e-9) & (X <= hi_box + 1e-9), axis=(1, 2))
    # every plan that keeps the band stays inside the intervals (and plans that leave the band may leave them)
    for x, ok in zip(X, inside):
        if ok:
            assert np.all(x >= lo - 1e-9) and np.all(x <= hi + 1e-9)
    # without the band, the interval arithmetic bounds every plan
    free = map_constraint("hvac_two_zone", {"horizon": DAY, "envelope": {"north": {"min": -100, "max": 100}, "south": {"min": -100, "max": 100}}})
    lo, hi = state_intervals(free)
    X = free.predict(U)
    assert np.all(X >= lo - 1e-9) and np.all(X <= hi + 1e-9)


def test_exact_lp_matches_a_brute_force_check_of_its_constraints():
    problem = map_constraint("microgrid", {"horizon": DAY, "tariff": {"energy": {"type": "time_of_use", "periods": [{"hours": [17, 20], "value": 0.5}], "default": 0.2},
                                                                         "export": 0.05, "demand_charge_per_kw": 1.5},
                                           "budgets": {"peak_kw": 4.0}})
    res = solve_planning_lp(problem)
    u = res.u
    k = problem.kpis(u)
    assert res.objective == pytest.approx(float(k["cost"]), rel=1e-7, abs=1e-9)
    assert float(k["peak_kw"]) <= 4.0 + 1e-6
    x = problem.predict(u)
    assert np.all(x[1:, 0] >= problem.x_lo[1:, 0] - 1e-7) and np.all(x[1:, 0] <= problem.x_hi[1:, 0] + 1e-7)
    assert res.lower_bound <= float(k["cost"]) + 1e-9


def test_infeasible_band_names_node_bound_steps_and_shortfall():
    problem = map_constraint("hvac", {"horizon": DAY, "envelope": {"zone": {"min": 30, "max": 35}}})
    with pytest.raises(Infeasible) as exc:
        solve_planning_lp(problem)
    (line,) = exc.value.conflicts
    assert "envelope zone.min 30 °C" in line
    assert "step 1 (00:15)" in line
    assert "heater at full power" in line
    assert "reaches at most 28.2 °C" in line
    assert "short by 1.77 K" in line


def test_infeasible_budget_and_band_conflicts_are_named():
    problem = map_constraint("hvac", {"horizon": DAY, "budgets": {"energy_kwh": 20}})
    with pytest.raises(Infeasible) as exc:
        optimize(problem)
    assert any(c.startswith("budget energy_kwh 20 kWh") and "over by" in c for c in exc.value.conflicts)
    two = map_constraint("hvac_two_zone", {"horizon": DAY, "envelope": {"north": {"min": 26, "max": 30}, "south": {"min": 10, "max": 14}}})
    with pytest.raises(Infeasible) as exc:
        optimize(two)
    text = "\n".join(exc.value.conflicts)
    assert "envelope north.min 26 °C" in text and "envelope south.max 14 °C" in text
    tight = map_constraint("hvac", {"horizon": DAY}, backoff=2.0)
    with pytest.raises(Infeasible) as exc:
        optimize(tight)
    assert "back-off of 2 K" in exc.value.conflicts[0] and "leaves no room" in exc.value.conflicts[0]


def test_nonlinear_problem_needs_the_relaxation():
    problem = map_constraint("cold_storage", {"horizon": DAY})
    with pytest.raises(ValueError):
        solve_planning_lp(problem)
    lp = build_planning_lp(problem, relaxed_power(problem))
    assert any(name.startswith("relax_lo") for name in lp.rows)
    with pytest.raises(ValueError):
        exact_power(problem)


# --- the sparse model: long horizons, warm starts, the horizon limit ----------------------------
def _independent_one_zone_lp(problem) -> float:
    """The hvac zone as a compact LP written from the physics (exact R1C1 update, states as
    variables, band and heater box as bounds), solved by scipy's linprog."""
    C, R, dt = 1e6, 0.01, problem.dt_s
    H = problem.H
    a = np.exp(-dt / (R * C))
    t_amb = problem.d[:, 0]
    c = np.concatenate([problem.price * problem.dt_h / 0.99, np.zeros(H)])
    rows = np.concatenate([np.arange(H), np.arange(H), np.arange(1, H)])
    cols = np.concatenate([H + np.arange(H), np.arange(H), H + np.arange(H - 1)])
    vals = np.concatenate([np.ones(H), np.full(H, -(1 - a) * R * 1000.0), np.full(H - 1, -a)])
    A_eq = sparse.csr_matrix((vals, (rows, cols)), shape=(H, 2 * H))
    rhs = (1 - a) * t_amb
    rhs[0] += a * problem.x0[0]
    bounds = [(0.0, 10.0)] * H + list(zip(problem.x_lo[1:, 0], problem.x_hi[1:, 0]))
    res = linprog(c, A_eq=A_eq, b_eq=rhs, bounds=bounds, method="highs")
    assert res.status == 0
    return float(res.fun)


def test_four_weeks_of_five_minute_steps_plan_exactly_without_the_prediction_matrix():
    tou = {"type": "time_of_use", "periods": [{"hours": [7, 11], "value": 0.25}, {"hours": [17, 21], "value": 0.3}], "default": 0.1}
    problem = map_constraint("hvac", {"horizon": {"start": "2026-01-12T00:00", "hours": 672, "step_minutes": 5},
                                      "tariff": {"energy": tou}})
    assert problem.H == 8064
    res = solve_planning_lp(problem)
    reference = _independent_one_zone_lp(problem)
    assert res.objective == pytest.approx(reference, rel=1e-7)
    assert reference - 1e-7 * abs(reference) <= res.lower_bound <= res.objective + 1e-12
    assert getattr(problem, "_G", None) is None  # the dense (H+1, n, H, m) matrix was never built
    x = problem.predict(res.u)
    assert np.all(x[1:, 0] >= 21.0 - 1e-7) and np.all(x[1:, 0] <= 24.0 + 1e-7)


def test_horizon_limit_comes_from_a_memory_estimate():
    from industriverse.errors import BadInput

    year = map_constraint("hvac", {"horizon": {"start": "2026-01-01T00:00", "hours": 8760, "step_minutes": 60}})
    assert year.H == 8760
    sys_path = ROOT / "benchmarks"
    import sys

    sys.path.insert(0, str(sys_path))
    try:
        from optimizer import chain_constraint
    finally:
        sys.path.remove(str(sys_path))
    wide = map_constraint("hvac", chain_constraint(50, 168, 15))
    assert (wide.H, wide.n) == (672, 50)
    with pytest.raises(BadInput) as exc:  # 50 zones over a year of 15-minute steps: ~15 GB
        map_constraint("hvac", chain_constraint(50, 8760, 15))
    assert exc.value.field == "horizon" and "GB to plan" in str(exc.value)


def test_warm_start_resolves_from_the_previous_basis():
    problem = map_constraint("hvac_two_zone", {"horizon": DAY})
    lp = build_planning_lp(problem, exact_power(problem))
    cold = solve(lp)
    # a trust region around the optimum, as the polish's re-solves do: same shape, new bounds
    u = cold.z[lp.blocks["u"]].reshape(problem.H, problem.m)
    span = problem.u_hi - problem.u_lo
    lp2 = build_planning_lp(problem, exact_power(problem), u_lo=np.maximum(problem.u_lo, u - 0.1 * span),
                            u_hi=np.minimum(problem.u_hi, u + 0.1 * span))
    warm = solve(lp2, warm_start=cold)
    again = solve(lp2)
    assert warm.objective == pytest.approx(again.objective, rel=1e-9)
    assert warm.objective == pytest.approx(cold.objective, rel=1e-9)
    assert warm.iterations < again.iterations


# --- the envelope in continuous time ----------------------------------------------------------
def test_a_band_that_rises_binds_the_state_up_to_its_change_from_the_left():
    from industriverse.plan.substeps import substep_violation

    band = {"min": {"type": "time_of_use", "periods": [{"hours": [8, 18], "value": 21.0}], "default": 16.0}, "max": 24.0}
    problem = map_constraint("hvac", {"horizon": DAY, "envelope": {"zone": band}, "initial_state": {"zone": 21.0}})
    sampled = solve_planning_lp(problem, continuous=False)
    cont = solve_planning_lp(problem)
    # sampled: the 18:00 state obeys the night band, so the heater stops before 18:00 and the zone
    # leaves the 21 °C band while it is still in force
    assert substep_violation(problem, sampled.u) > 0.1
    assert substep_violation(problem, cont.u) <= 1e-6
    assert cont.objective > sampled.objective
    assert cont.lower_bound <= cont.objective + 1e-12
    assert cont.lower_bound == pytest.approx(cont.objective, rel=1e-7)


@pytest.mark.parametrize("domain", ["hvac_two_zone", "cold_storage"])
def test_lazy_substep_rows_reach_the_optimum_of_all_rows(domain):
    from industriverse.plan.lp import substep_cuts
    from industriverse.plan.substeps import substep_violation

    problem = map_constraint(domain, {"horizon": DAY})
    power = relaxed_power(problem) if not problem.is_linear else exact_power(problem)
    full = solve(build_planning_lp(problem, power, substeps="all"))
    lp = build_planning_lp(problem, power)
    lazy = solve(lp, cuts=substep_cuts(problem, lp))
    assert lazy.objective == pytest.approx(full.objective, rel=1e-7)
    assert lazy.lower_bound <= full.objective + 1e-9
    assert lp.A_ub.shape[0] < 0.5 * build_planning_lp(problem, power, substeps="all").A_ub.shape[0]
    if problem.is_linear:
        u = lazy.z[lp.blocks["u"]].reshape(problem.H, problem.m)
        assert substep_violation(problem, u, backoff=True) <= 1e-6


# --- complementarity -------------------------------------------------------------------------
def _independent_microgrid_milp(problem) -> float:
    """The PV-battery site as a MILP written from the physics with scipy's milp: stored energy
    ``s[k+1] = s[k] + dt (η c − d/η)``, ``imp − exp = load − pv + c − d``, a binary ``b`` with
    ``c ≤ C b`` and ``d ≤ D (1 − b)``; minimise ``Σ dt (price·imp − export_price·exp)``."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    H, dt, eta = problem.H, problem.dt_h, 0.949
    load, pv = problem.d[:, 0], problem.d[:, 1]
    # columns: c, d, imp, exp, b (H each), s[1..H] (H)
    nv = 6 * H
    C, D, I, X, B, S = (np.arange(H) + j * H for j in range(6))
    rows, cols, vals, lo, hi = [], [], [], [], []
    r = 0
    for k in range(H):  # s[k+1] − s[k] − dt η c + dt d/η = 0
        rows += [r, r, r]
        cols += [S[k], C[k], D[k]]
        vals += [1.0, -dt * eta, dt / eta]
        if k > 0:
            rows.append(r)
            cols.append(S[k - 1])
            vals.append(-1.0)
        rhs = problem.x0[0] if k == 0 else 0.0
        lo.append(rhs)
        hi.append(rhs)
        r += 1
    for k in range(H):  # imp − exp − c + d = load − pv
        rows += [r] * 4
        cols += [I[k], X[k], C[k], D[k]]
        vals += [1.0, -1.0, -1.0, 1.0]
        lo.append(load[k] - pv[k])
        hi.append(load[k] - pv[k])
        r += 1
    for k in range(H):  # c − 5 b ≤ 0, d + 5 b ≤ 5
        rows += [r, r, r + 1, r + 1]
        cols += [C[k], B[k], D[k], B[k]]
        vals += [1.0, -5.0, 1.0, 5.0]
        lo += [-np.inf, -np.inf]
        hi += [0.0, 5.0]
        r += 2
    A = sparse.csr_matrix((vals, (rows, cols)), shape=(r, nv))
    c = np.zeros(nv)
    c[I] = dt * problem.price
    c[X] = -dt * problem.export_price
    lb = np.zeros(nv)
    ub = np.concatenate([np.full(H, 5.0), np.full(H, 5.0), np.full(H, 20.0), np.full(H, 5.0), np.ones(H), np.full(H, 13.5)])
    lb[S] = 1.35
    lb[S[-1]] = 6.75
    integrality = np.zeros(nv)
    integrality[B] = 1
    res = milp(c, constraints=LinearConstraint(A, lo, hi), bounds=Bounds(lb, ub), integrality=integrality,
               options={"mip_rel_gap": 1e-9})
    assert res.status == 0
    return float(res.fun)


def test_negative_export_price_plan_never_charges_and_discharges_at_once():
    from industriverse.plan.lp import simultaneous_use

    tariff = {"energy": 0.2, "export": {"type": "time_of_use", "periods": [{"hours": [10, 15], "value": -0.02}], "default": 0.05}}
    problem = map_constraint("microgrid", {"horizon": DAY, "tariff": tariff})
    relaxed = solve_planning_lp(problem, complementarity=False)
    assert simultaneous_use(problem, relaxed.u).max() > 1.0  # the LP burns surplus in round-trip losses
    doc = optimize(problem, method="lp")
    u = np.column_stack([doc["plan"][a] for a in problem.actuators])
    assert simultaneous_use(problem, u).max() == 0.0
    reference = _independent_microgrid_milp(problem)
    assert doc["objective"]["cost"] == pytest.approx(reference, rel=1e-4)
    assert doc["lower_bound"] <= doc["objective"]["cost"] + 1e-12
    assert doc["lower_bound"] >= reference * (1 - 1e-6)
    assert doc["lower_bound_method"].startswith("milp-dual")
    assert doc["objective"]["cost"] > relaxed.objective  # realisable, and dearer than the relaxation
