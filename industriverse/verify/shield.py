"""The shield (ThermodynamicAIConstraints): safety and physics checks of a plan and its ensemble.

:func:`check_plan` rebuilds the planning problem from the optimization JSON's ``request``
(:func:`industriverse.plan.optimize.load_plan`), so every limit comes from the client's
constraint and the domain model, never from the figures of the documents under test.  The
nominal trajectory is recomputed from the plan (the documented ``states`` are compared with
it, not trusted).  Every check reports::

    {name, value, limit, margin, passed, detail}

``value`` is the measured figure at the worst point (the step and node or actuator are
named in ``detail``), ``limit`` the bound it is held to (``None`` where the client set
none), ``margin`` the slack (positive = inside the limit; ``None`` without a limit).
Values are in the units of the quantity: °C (thermal nodes), kWh (storage nodes, energy),
kW (power), dimensionless (probabilities, COP ratios).  A plan passes only if every check
passes.

Checks
------
``finite_values``
    the plan, the initial and nominal states, the forecast, the actuator limits and every envelope
    bound are finite numbers, and each side of a band the constraint declares holds a bound at every
    step (independent of input validation: NaN compares false, so it could pass every other check).
``envelope``
    nominal states k = 1..H inside the client's envelope (incl. terminal bounds; not the
    planning back-off) to ``ENVELOPE_TOL``.
``envelope_between_samples``
    the nominal trajectory (the plan held over each step, the forecast disturbances) at every
    control sub-step (the tracking law's rate, ``baseline.control_minutes``, 1 minute by default)
    inside the band in force: the band of step k binds over [t_k, t_{k+1}], its end approached
    from the left included, so a band that changes at t_{k+1} does not excuse the end of step k.
    ``value`` is the largest excess outside the band between (and at the end of) the samples,
    state units, held to ``ENVELOPE_TOL``; the detail names where, and in how many steps the
    tolerance is exceeded.  A node whose initial state lies outside its first band is not held
    to that band during the first step (the initial state is given, not planned).
``complementarity``
    no battery charges and discharges in the same step, and no node is heated (heater, heat
    pump) and cooled (chiller) in the same step: the smaller of the two opposing set-points is
    ≤ ``COMPLEMENTARITY_TOL_KW`` at every step (doing both only burns energy in losses).
``nominal_states``
    the optimization's documented ``states`` equal the recomputed trajectory to ``STATES_TOL``.
``actuator_limits``, ``ramp_limits``
    the plan inside the client's actuator bounds and ramp limits (kW, kW per step).
``chance_constraint``
    the simulated plan's one-sided Clopper–Pearson upper bound of the violation
    probability ≤ the client's ``uncertainty.max_violation_probability``.  The simulation
    must be of this plan (same domain, request hash and horizon; its noise-free run applies
    this plan's set-points), otherwise :class:`~industriverse.errors.BadInput`.
``energy_budget``, ``peak_budget``
    nominal imported energy (kWh) and 15-minute peak (kW) within the client's budgets.
``first_law``
    the energy balance of the nominal trajectory closes (|stored + lost − supplied|,
    :func:`industriverse.verify.balance.energy_balance`) to ``FIRST_LAW_RTOL`` of the energy
    throughput; the simulator's nominal trajectory of the plan (``simulation.plan.nominal``)
    is held to the same flows, so a simulator whose trajectory creates or destroys heat is
    caught.  ``value`` is the relative residual, rounded to 1e-12 (round-off below that depends on
    the BLAS build and thread count and would make proofs irreproducible across machines).
``second_law_cop``
    every heat pump's and chiller's COP at every step ≤ the Carnot COP between its node and
    the other side of the lift (nominal node temperature, boundary forecast).
``second_law_heat_flow``
    every passive conductance carries heat from hot to cold: the entropy production
    ``q·(1/T_cold − 1/T_hot)`` of each conductance (and radiation term) at every step of
    the nominal trajectory is ≥ 0.  A negative conductance is already refused by the network
    schema (exit 2); this check guards the model the other checks rely on.
``optimizer_feasible``
    the optimizer declared the plan feasible; its gap to the proven lower bound is stated.
``domain.*``
    hvac — ``domain.heater_rating``: heater electric draw (u/efficiency) ≤ the heater's rated
    electric power (the network's ``max_kw``/efficiency), even if the client's limit is higher.
    cold_storage — ``domain.goods_food_safety``: the goods temperature never above 8 °C in the
    simulated p99 band.  8 °C is the legal ceiling for chilled food in the UK (Food Safety
    (Temperature Control) Regulations 1995, reg. 4) and the usual HACCP critical limit; the
    p99 band is used rather than the nominal trajectory because the product must stay safe
    under the plant's noise, and rather than the maximum of the ensemble because the maximum
    of a finite ensemble grows with its size.  The goods node is the node named ``goods``,
    else every thermal node with an envelope.
    microgrid — ``domain.soc_capacity`` (every storage node in
    [0, capacity_kwh]), ``domain.grid_import`` (site import ≤ ``site.import_max_kw``),
    ``domain.grid_export`` (export ≤ ``site.export_max_kw``), on the nominal trajectory.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from industriverse.model.canonical import required_field as _get, sha256_of
from industriverse.errors import BadInput
from industriverse.model.network import KELVIN, STEFAN_BOLTZMANN, cop

ENVELOPE_TOL = 1e-6  # state units: LP solvers meet constraints to ~1e-7
STATES_TOL = 1e-6  # state units (+ 1e-9 relative): documented vs recomputed nominal states
ACTUATOR_TOL = 1e-6  # kW
FIRST_LAW_RTOL = 1e-6  # relative to the energy throughput (Σ|flows|): exact ZOH closes to ~1e-12
FIRST_LAW_RTOL_NONLINEAR = 1e-3  # the simulator's stochastic Heun on radiation networks
FIRST_LAW_DIGITS = 12  # the relative residual is reported to 1e-12: round-off below that varies with the BLAS
FEASIBILITY_TOL = 1e-6  # optimizer's reported max_violation, state units
COMPLEMENTARITY_TOL_KW = 1e-6  # kW: the smaller of two opposing set-points (charge/discharge, heat/cool)
FOOD_SAFETY_LIMIT_C = 8.0
FOOD_SAFETY_PERCENTILE = "p99"
SIMULATION_PLAN_TOL = 1e-6  # kW (+ 1e-9 relative): set-points of the simulation's noise-free run vs the plan


# --- small helpers -----------------------------------------------------------------------------
def _num(x: Any) -> float | None:
    """A JSON-safe float (None for None, NaN or ±inf)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _check(name: str, value, limit, passed: bool, detail: str, *, upper: bool = True) -> dict:
    """A check record; ``margin = limit − value`` for an upper limit, ``value − limit`` for a lower one."""
    v, lim = _num(value), _num(limit)
    margin = None if v is None or lim is None else (lim - v if upper else v - lim)
    return {"name": name, "value": v, "limit": lim, "margin": margin, "passed": bool(passed), "detail": detail}




def _array(doc: Any, dotted: str, file: str, shape: tuple[int, ...]) -> np.ndarray:
    raw = _get(doc, dotted, file)
    if isinstance(raw, list) and any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in raw):
        raise BadInput(file, dotted, "must be a list of numbers")
    try:
        arr = np.asarray(raw, dtype=float)
    except (TypeError, ValueError):
        raise BadInput(file, dotted, "must be a list of numbers") from None
    if arr.shape != shape:
        raise BadInput(file, dotted, f"has shape {arr.shape}, expected {shape}")
    if not np.all(np.isfinite(arr)):
        raise BadInput(file, dotted, "holds a value that is not a finite number")
    return arr


def _fmt(x: float) -> str:
    return f"{x:.6g}"


# --- the nominal trajectory ----------------------------------------------------------------------
def nominal_states(problem, u: np.ndarray) -> np.ndarray:
    """States (H+1, n) of plan ``u`` (H, m) under the disturbance forecast, without noise.

    Linear networks: the exact discrete dynamics ``x⁺ = Ad x + Bd u + Ed d`` (as ``problem.predict``,
    summed in a fixed order so the figures are the same on every BLAS).  Networks with
    radiation: the exact nonlinear law, integrated over each step (inputs held) with
    ``scipy.integrate.solve_ivp`` (RK45, rtol 1e-9).
    """
    if not problem.network.has_nonlinear_dynamics:
        # The recurrence with numpy's own reductions, not a BLAS product: a threaded BLAS sums in an
        # order that depends on its thread count, and the proof's figures must not.
        x = np.empty((problem.H + 1, problem.n))
        x[0] = problem.x0
        drive = (problem.Bd[None, :, :] * u[:, None, :]).sum(axis=2) + (problem.Ed[None, :, :] * problem.d[:, None, :]).sum(axis=2)
        for k in range(problem.H):
            x[k + 1] = (problem.Ad * x[k][None, :]).sum(axis=1) + drive[k]
        return x
    from scipy.integrate import solve_ivp

    A, B, E = problem.network.matrices
    x = np.empty((problem.H + 1, problem.n))
    x[0] = problem.x0
    for k in range(problem.H):
        uk, dk = u[k], problem.d[k]
        drive = B @ uk + E @ dk

        def rhs(_t, xs, dk=dk, drive=drive):
            return A @ xs + drive + problem.network.radiation_correction(xs, dk)

        sol = solve_ivp(rhs, (0.0, problem.dt_s), x[k], rtol=1e-9, atol=1e-9)
        x[k + 1] = sol.y[:, -1]
    return x


def substep_states(problem, u: np.ndarray) -> tuple[np.ndarray, int, float]:
    """The nominal trajectory at every control sub-step: ``(xs (H·S+1, n), S, h seconds)``.

    The plan ``u`` (H, m) held over each step, the forecast held over each step (as the planning
    model), sampled every ``h = dt / S`` (:func:`industriverse.plan.tracking.control_substeps`);
    ``xs[k·S]`` is the state at t_k.  Linear networks: the exact sub-step recursion summed in a
    fixed order (reproducible on every BLAS); networks with radiation: ``solve_ivp`` (RK45, rtol
    1e-9) over each step, read at the sub-steps.
    """
    from industriverse.plan.tracking import substep_model

    model = substep_model(problem)
    S, h, H, n = model.S, model.h, problem.H, problem.n
    xs = np.empty((H * S + 1, n))
    xs[0] = problem.x0
    if not problem.network.has_nonlinear_dynamics:
        drive = (model.Bd[None, :, :] * u[:, None, :]).sum(axis=2) + (model.Ed[None, :, :] * problem.d[:, None, :]).sum(axis=2)
        x = xs[0]
        for k in range(H):
            for s in range(S):
                x = (model.Ad * x[None, :]).sum(axis=1) + drive[k]
                xs[k * S + s + 1] = x
        return xs, S, h
    from scipy.integrate import solve_ivp

    A, B, E = problem.network.matrices
    t_eval = h * np.arange(1, S + 1)
    t_eval[-1] = problem.dt_s
    for k in range(H):
        uk, dk = u[k], problem.d[k]
        drive = B @ uk + E @ dk

        def rhs(_t, x, dk=dk, drive=drive):
            return A @ x + drive + problem.network.radiation_correction(x, dk)

        sol = solve_ivp(rhs, (0.0, problem.dt_s), xs[k * S], rtol=1e-9, atol=1e-9, t_eval=t_eval)
        xs[k * S + 1:(k + 1) * S + 1] = sol.y.T
    return xs, S, h


def _step_label(problem, k: int) -> str:
    return f"step {k} ({problem.step_times([k])[0]})"


# --- the checks ----------------------------------------------------------------------------------
def check_envelope(problem, x: np.ndarray) -> dict:
    """Nominal states k = 1..H inside the client's envelope (not the planning back-off)."""
    lo, hi = problem.x_lo, problem.x_hi
    with np.errstate(invalid="ignore"):
        # only -inf/+inf mean "no bound"; a NaN bound or state (or a bound of the wrong infinity) fails
        slack_lo = np.where(lo == -np.inf, np.inf, x - lo)[1:]
        slack_hi = np.where(hi == np.inf, np.inf, hi - x)[1:]
    slack_lo = np.where(np.isnan(slack_lo), -np.inf, slack_lo)
    slack_hi = np.where(np.isnan(slack_hi), -np.inf, slack_hi)
    if np.all(np.minimum(slack_lo, slack_hi) == np.inf):
        return _check("envelope", None, None, True, "the constraint bounds no node")
    use_lo = slack_lo <= slack_hi
    slack = np.where(use_lo, slack_lo, slack_hi)
    k, i = np.unravel_index(int(np.argmin(slack)), slack.shape)
    k1 = k + 1
    bound = lo[k1, i] if use_lo[k, i] else hi[k1, i]
    side = "min" if use_lo[k, i] else "max"
    detail = (f"tightest: {problem.nodes[i]} at {_step_label(problem, k1)} is {_fmt(x[k1, i])} against {side} "
              f"{_fmt(bound)} (tolerance {ENVELOPE_TOL:g})")
    return _check("envelope", x[k1, i], bound, slack[k, i] >= -ENVELOPE_TOL, detail, upper=not use_lo[k, i])


def check_finite_values(problem, u: np.ndarray, x: np.ndarray) -> dict:
    """Every figure the other checks rely on is a finite number, and every bound the client declared is there.

    Independent of input validation: a plan (kW), an initial or recomputed state, a forecast, an
    actuator limit or an envelope bound that is NaN or infinite where a number must be, or a side of
    an envelope band the constraint declares that holds no finite bound, fails this check (a
    comparison with NaN is false, so every other check could pass on it).
    """
    problems: list[str] = []

    def finite(name: str, arr) -> None:
        a = np.asarray(arr, dtype=float)
        if not np.all(np.isfinite(a)):
            idx = np.argwhere(~np.isfinite(a))[0]
            problems.append(f"{name} holds {a[tuple(idx)]} at index {tuple(int(i) for i in idx)}")

    finite("plan", u)
    finite("initial state", problem.x0)
    finite("nominal states", x)
    finite("disturbance forecast", problem.d)
    finite("actuator min_kw", problem.u_lo)
    finite("actuator max_kw", problem.u_hi)
    for name, arr, bad in (("envelope min", problem.x_lo, np.inf), ("envelope max", problem.x_hi, -np.inf)):
        a = np.asarray(arr, dtype=float)
        if np.any(np.isnan(a) | (a == bad)):
            problems.append(f"{name} holds NaN or {bad} (an impossible bound)")
    if np.any(np.isnan(np.asarray(problem.ramp, dtype=float))):
        problems.append("a ramp limit is NaN")
    for node, band in getattr(problem.constraint, "envelope", {}).items():
        i = problem.nodes.index(node) if node in problem.nodes else None
        if i is None:
            problems.append(f"envelope names unknown node {node}")
            continue
        for side, arr in (("min", problem.x_lo), ("max", problem.x_hi)):
            declared = getattr(band, side, None) is not None
            if declared and not np.all(np.isfinite(arr[1:, i])):
                problems.append(f"envelope.{node}.{side} is declared but not a finite bound at every step")
        if getattr(band, "min", None) is None and getattr(band, "max", None) is None:
            problems.append(f"envelope.{node} declares no bound")
    detail = "; ".join(problems[:3]) + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else "") \
        if problems else "plan, states, forecast, limits and every declared bound are finite numbers"
    return _check("finite_values", len(problems), 0, not problems, detail)

def check_envelope_between_samples(problem, xs: np.ndarray, S: int, h: float) -> dict:
    """The nominal trajectory inside the band in force at every control sub-step (see the module docstring).

    ``xs`` (H·S+1, n) from :func:`substep_states`; sample j = k·S + s (s = 1..S) is held to the band
    of step k, the one in force over [t_k, t_{k+1}).  ``value`` is the largest excess (state units).
    """
    from datetime import timedelta

    lo = np.repeat(problem.x_lo[:-1], S, axis=0)  # (H·S, n): the band of the step each sample closes
    hi = np.repeat(problem.x_hi[:-1], S, axis=0)
    x = xs[1:]
    with np.errstate(invalid="ignore"):
        below = np.where(np.isfinite(lo), lo - x, -np.inf)
        above = np.where(np.isfinite(hi), x - hi, -np.inf)
    gap = np.maximum(below, above)  # > 0 outside the band, −inf where no bound binds
    x0, lo0, hi0 = problem.x0, problem.x_lo[0], problem.x_hi[0]
    outside_at_start = (np.isfinite(lo0) & (x0 < lo0 - ENVELOPE_TOL)) | (np.isfinite(hi0) & (x0 > hi0 + ENVELOPE_TOL))
    gap[:S, outside_at_start] = -np.inf  # the initial state is given: its first step cannot be held to the band
    if not np.isfinite(gap).any():
        return _check("envelope_between_samples", None, None, True, "the constraint bounds no node between the samples")
    j, i = np.unravel_index(int(np.argmax(gap)), gap.shape)
    worst = max(float(gap[j, i]), 0.0)
    excess = np.maximum(gap, 0.0)
    k, s = divmod(j, S)
    s += 1
    when = (problem.start + timedelta(seconds=k * problem.dt_s + s * h)).isoformat(timespec="seconds")
    side = "min" if below[j, i] >= above[j, i] else "max"
    bound = lo[j, i] if side == "min" else hi[j, i]
    steps = int((excess.reshape(problem.H, S, problem.n) > ENVELOPE_TOL).any(axis=(1, 2)).sum())
    edge = " (the end of the step, approached from the left)" if s == S else ""
    what = "largest excess" if worst > 0 else "closest approach"
    how = f"{_fmt(worst)} outside" if worst > 0 else f"{_fmt(-float(gap[j, i]))} inside"
    detail = (f"{what} between samples: {problem.nodes[i]} at {when}{edge}, in {_step_label(problem, k)}, is "
              f"{_fmt(x[j, i])} against the step's {side} {_fmt(bound)} ({how}); checked at {S} control "
              f"sub-steps of {_fmt(h / 60.0)} min per step; {steps} of {problem.H} steps exceed the tolerance "
              f"{ENVELOPE_TOL:g}")
    return _check("envelope_between_samples", worst, ENVELOPE_TOL, worst <= ENVELOPE_TOL, detail)


def check_complementarity(problem, u: np.ndarray) -> dict:
    """No node charged and discharged, or heated and cooled, in the same step (kW, see the module docstring)."""
    net = problem.network
    kinds = [a.kind for a in net.actuators]
    opposing = (("battery_charge", "battery_discharge", "charges and discharges"),
                ("heater", "chiller", "heats and cools"), ("heat_pump", "chiller", "heats and cools"))
    pairs = [(a, b, what) for one, other, what in opposing
             for a in range(len(kinds)) if kinds[a] == one
             for b in range(len(kinds)) if kinds[b] == other and net.actuators[a].node == net.actuators[b].node]
    if not pairs:
        return _check("complementarity", None, None, True, "no node has opposing actuators (charge/discharge, heat/cool)")
    both = np.column_stack([np.minimum(u[:, a], u[:, b]) for a, b, _ in pairs])  # (H, pairs)
    k, p = np.unravel_index(int(np.argmax(both)), both.shape)
    a, b, what = pairs[p]
    worst = float(both[k, p])
    steps = int((both > COMPLEMENTARITY_TOL_KW).any(axis=1).sum())
    detail = (f"largest simultaneous power: {net.actuators[a].node} {what} at {_step_label(problem, k)}: "
              f"{net.actuators[a].name} {_fmt(u[k, a])} kW and {net.actuators[b].name} {_fmt(u[k, b])} kW; "
              f"{steps} of {problem.H} steps do both beyond {COMPLEMENTARITY_TOL_KW:g} kW")
    return _check("complementarity", worst, COMPLEMENTARITY_TOL_KW, worst <= COMPLEMENTARITY_TOL_KW, detail)


def check_nominal_states(problem, x: np.ndarray, documented: np.ndarray) -> dict:
    """The optimization's documented ``states`` are the plan's recomputed trajectory."""
    diff = np.abs(documented - x)
    tol = STATES_TOL + 1e-9 * np.abs(x)
    k, i = np.unravel_index(int(np.argmax(diff - tol)), diff.shape)
    passed = bool(np.all(diff <= tol))
    detail = (f"largest difference: {problem.nodes[i]} at {_step_label(problem, k)}: documented {_fmt(documented[k, i])}, "
              f"recomputed from the plan {_fmt(x[k, i])}")
    if not passed:
        detail = "the optimization's 'states' are not the plan's trajectory; " + detail
    return _check("nominal_states", diff[k, i], tol[k, i], passed, detail)


def check_actuator_limits(problem, u: np.ndarray) -> dict:
    """Every set-point inside the client's actuator bounds [u_lo, u_hi] (kW)."""
    slack_lo, slack_hi = u - problem.u_lo, problem.u_hi - u
    use_lo = slack_lo < slack_hi
    slack = np.where(use_lo, slack_lo, slack_hi)
    k, j = np.unravel_index(int(np.argmin(slack)), slack.shape)
    bound = problem.u_lo[k, j] if use_lo[k, j] else problem.u_hi[k, j]
    side = "min_kw" if use_lo[k, j] else "max_kw"
    detail = (f"tightest: {problem.actuators[j]} at {_step_label(problem, k)} is {_fmt(u[k, j])} kW against {side} "
              f"{_fmt(bound)} kW")
    return _check("actuator_limits", u[k, j], bound, slack[k, j] >= -ACTUATOR_TOL, detail, upper=not use_lo[k, j])


def check_ramp_limits(problem, u: np.ndarray) -> dict:
    """|u[k+1] − u[k]| ≤ the client's ramp limit (kW per step) for every actuator that has one."""
    limited = np.isfinite(problem.ramp)
    if not limited.any() or problem.H < 2:
        return _check("ramp_limits", None, None, True, "no ramp limit set")
    step = np.abs(np.diff(u, axis=0))[:, limited]
    ramp = problem.ramp[limited]
    slack = ramp - step
    k, jj = np.unravel_index(int(np.argmin(slack)), slack.shape)
    name = [a for a, lim in zip(problem.actuators, limited) if lim][jj]
    detail = f"tightest: {name} from step {k} to {k + 1} moves {_fmt(step[k, jj])} kW against {_fmt(ramp[jj])} kW per step"
    return _check("ramp_limits", step[k, jj], ramp[jj], slack[k, jj] >= -ACTUATOR_TOL, detail)


def check_chance_constraint(problem, simulation: dict, sim_file: str) -> dict:
    """Upper confidence bound of the violation probability ≤ the client's maximum."""
    vp = _get(simulation, "plan.violation_probability", sim_file)
    upper = _get(vp, "upper", sim_file + " plan.violation_probability")
    estimate = vp.get("estimate")
    if not isinstance(upper, (int, float)) or isinstance(upper, bool) or not 0 <= upper <= 1:
        raise BadInput(sim_file, "plan.violation_probability.upper", f"must be a probability, got {upper!r}")
    limit = problem.constraint.uncertainty.max_violation_probability
    conf = simulation.get("confidence", problem.constraint.uncertainty.confidence)
    count = (simulation.get("plan", {}).get("violations") or {}).get("count")
    detail = (f"{count if count is not None else '?'} of {simulation.get('ensemble_size', '?')} trajectories violate the "
              f"envelope (estimate {_fmt(estimate) if isinstance(estimate, (int, float)) else '?'}); one-sided "
              f"{_fmt(100 * float(conf))}% upper bound {_fmt(upper)} against the client's maximum {_fmt(limit)}")
    return _check("chance_constraint", upper, limit, upper <= limit, detail)


def check_budget(name: str, value: float, budget: float | None, unit: str, what: str) -> dict:
    if budget is None:
        return _check(name, value, None, True, f"nominal {what} {_fmt(value)} {unit}; the client set no budget")
    detail = f"nominal {what} {_fmt(value)} {unit} against the budget {_fmt(budget)} {unit}"
    return _check(name, value, budget, value <= budget + 1e-9 * max(1.0, abs(budget)), detail)


def check_first_law(problem, u: np.ndarray, sim_states: np.ndarray | None) -> dict:
    """Stored + lost = supplied (kWh) over the nominal trajectory, and over the simulator's.

    The plan's balance is :func:`industriverse.verify.balance.energy_balance` (flows assembled from
    the network's data, independently of the matrices that move the state).  The simulator's
    nominal trajectory of the plan is held to the same flows: per node and step, the energy it
    stores beyond what the plan's flows supply is its residual.
    """
    from industriverse.verify.balance import energy_balance
    from industriverse.model.network import J_PER_KWH

    bal = energy_balance(problem, u)
    throughput = max(bal["throughput_kwh"], 1e-12)
    rows = [("the plan's nominal trajectory", bal["relative_residual"], FIRST_LAW_RTOL, bal["residual_kwh"])]
    if sim_states is not None:
        x_bal = np.column_stack([bal["states"][nd] for nd in problem.nodes])
        r = (np.diff(sim_states, axis=0) - np.diff(x_bal, axis=0)) * problem.network.capacities / J_PER_KWH  # (H, n) kWh
        worst = max(abs(r.sum()), float(np.abs(r.sum(axis=0)).max()), float(np.abs(r).max()))
        # Networks with radiation are integrated by the simulator with stochastic Heun: its truncation error counts.
        tol = FIRST_LAW_RTOL if not problem.network.has_nonlinear_dynamics else FIRST_LAW_RTOL_NONLINEAR
        rows.append(("the simulation's nominal trajectory", worst / throughput, tol, float(r.sum())))
    label, rel, tol, resid = max(rows, key=lambda row: row[1] / row[2])
    rel = round(rel, FIRST_LAW_DIGITS)
    detail = (f"{label}: residual {_fmt(resid)} kWh, {_fmt(rel)} of the throughput {_fmt(throughput)} kWh "
              f"(stored {_fmt(bal['stored_kwh'])} kWh, supplied {_fmt(bal['supplied_kwh'])} kWh, lost "
              f"{_fmt(bal['lost_kwh'])} kWh)")
    if len(rows) > 1:
        detail += "; the plan's and the simulation's nominal trajectories both checked"
    return _check("first_law", rel, tol, rel <= tol, detail)


def _boundary_temps(problem) -> dict[str, np.ndarray]:
    dist = problem.network.disturbance_names
    return {b.name: problem.d[:, dist.index(b.disturbance)] for b in problem.network.boundaries}


def check_second_law_cop(problem, x: np.ndarray) -> dict:
    """COP ≤ Carnot COP between the node and the other side of the lift, at every step.

    The other side is the COP model's ``boundary``; a constant COP without one is held to
    the most lenient boundary (the coldest for a chiller, the warmest for a heat pump).
    """
    bounds = _boundary_temps(problem)
    worst = None  # (ratio, name, k, cop, carnot)
    for j, a in enumerate(problem.network.actuators):
        if a.kind not in ("heat_pump", "chiller"):
            continue
        t_node = x[:-1, problem.network.index(a.node)]
        if a.cop.boundary is not None:
            other = bounds[a.cop.boundary]
        elif bounds:
            stack = np.vstack(list(bounds.values()))
            other = stack.min(axis=0) if a.kind == "chiller" else stack.max(axis=0)
        else:
            other = t_node  # no boundary: no lift is needed, Carnot is unbounded
        c = np.broadcast_to(cop(a, t_node, other), t_node.shape)
        hot, cold = (other, t_node) if a.kind == "chiller" else (t_node, other)
        lift = hot - cold
        with np.errstate(divide="ignore", invalid="ignore"):
            carnot = np.where(lift > 0, ((cold if a.kind == "chiller" else hot) + KELVIN) / np.where(lift > 0, lift, 1.0), np.inf)
        ratio = np.where(np.isfinite(carnot), c / carnot, 0.0)
        k = int(np.argmax(ratio))
        if worst is None or ratio[k] > worst[0]:
            worst = (float(ratio[k]), a.name, k, float(c[k]), float(carnot[k]))
    if worst is None:
        return _check("second_law_cop", None, None, True, "no heat pump or chiller in the network")
    ratio, name, k, c, carnot = worst
    carnot_text = _fmt(carnot) if math.isfinite(carnot) else "unbounded (no lift)"
    detail = (f"highest COP/Carnot: {name} at {_step_label(problem, k)}: COP {_fmt(c)} against Carnot {carnot_text}")
    return _check("second_law_cop", ratio, 1.0, ratio <= 1.0 + 1e-12, detail)


def check_second_law_heat_flow(problem, x: np.ndarray) -> dict:
    """Heat flows from hot to cold on every conductance and radiation term of the nominal trajectory.

    Entropy production of a flow q (W, from i to j) is ``q (1/T_j − 1/T_i)`` (W/K, T in
    kelvin); the second law demands it is ≥ 0 at every step.
    """
    net = problem.network
    temps = {name: x[:-1, i] for i, name in enumerate(net.node_names)}
    temps.update(_boundary_temps(problem))
    storage = {nd.name for nd in net.nodes if nd.is_storage}
    worst = None  # (sigma, label, k, q)
    terms = [(c.between[0], c.between[1], lambda ti, tj, g=c.w_per_k: g * (ti - tj)) for c in net.conductances]
    for r in net.radiation:
        terms.append((r.node, r.boundary, lambda ti, tj, r=r: STEFAN_BOLTZMANN * r.emissivity * r.area_m2 *
                      ((ti + KELVIN) ** 4 - (tj + KELVIN) ** 4)))
    for a, b, flow in terms:
        if a in storage or b in storage:
            continue
        ti, tj = temps[a], temps[b]
        q = flow(ti, tj)  # W from a to b
        sigma = q * (1.0 / (tj + KELVIN) - 1.0 / (ti + KELVIN))
        k = int(np.argmin(sigma))
        if worst is None or sigma[k] < worst[0]:
            worst = (float(sigma[k]), f"{a}–{b}", k, float(q[k]))
    if worst is None:
        return _check("second_law_heat_flow", None, None, True, "no passive conductance between thermal nodes")
    sigma, label, k, q = worst
    detail = (f"lowest entropy production: {label} at {_step_label(problem, k)}, {_fmt(sigma)} W/K "
              f"(flow {_fmt(q)} W); every passive flow must run down the temperature gradient")
    return _check("second_law_heat_flow", sigma, 0.0, sigma >= -1e-12, detail, upper=False)


def check_optimizer(optimization: dict, opt_file: str) -> dict:
    feasible = _get(optimization, "feasible", opt_file)
    if not isinstance(feasible, bool):
        raise BadInput(opt_file, "feasible", f"must be true or false, got {feasible!r}")
    max_violation = _get(optimization, "max_violation", opt_file)
    if not isinstance(max_violation, (int, float)) or isinstance(max_violation, bool):
        raise BadInput(opt_file, "max_violation", f"must be a number, got {max_violation!r}")
    cost = _get(optimization, "objective.cost", opt_file)
    bound, gap = optimization.get("lower_bound"), optimization.get("gap")
    method = optimization.get("lower_bound_method") or "unstated method"
    if isinstance(bound, (int, float)) and isinstance(gap, (int, float)):
        gap_text = f"cost {_fmt(cost)}, proven lower bound {_fmt(bound)} ({method}), gap {_fmt(100 * gap)}%"
    else:
        gap_text = f"cost {_fmt(cost)}, no proven lower bound: the gap is unknown"
    detail = (f"optimizer ({optimization.get('method', '?')}) says {'feasible' if feasible else 'INFEASIBLE'}, max "
              f"violation {_fmt(max_violation)}; {gap_text}")
    return _check("optimizer_feasible", max_violation, FEASIBILITY_TOL, feasible and max_violation <= FEASIBILITY_TOL, detail)


# --- domain limits ----------------------------------------------------------------------------------
def _worst_upper(name: str, values: np.ndarray, limits: np.ndarray, labels: list[str], problem, unit: str,
                 what: str, tol: float = ACTUATOR_TOL) -> dict:
    """Check ``values`` (H, p) ≤ ``limits`` (p,), reporting the tightest entry."""
    slack = limits[None, :] - values
    k, j = np.unravel_index(int(np.argmin(slack)), slack.shape)
    detail = f"tightest: {labels[j]} {what} at {_step_label(problem, k)} is {_fmt(values[k, j])} {unit} against {_fmt(limits[j])} {unit}"
    return _check(name, values[k, j], limits[j], slack[k, j] >= -tol, detail)


def domain_checks(problem, u: np.ndarray, x: np.ndarray, simulation: dict, sim_file: str) -> list[dict]:
    kind, net = problem.kind, problem.network
    out: list[dict] = []
    if kind == "hvac":
        heaters = [(j, a) for j, a in enumerate(net.actuators) if a.kind == "heater"]
        if heaters:
            values = np.column_stack([u[:, j] / a.efficiency for j, a in heaters])
            rated = np.array([a.max_kw / a.efficiency for _, a in heaters])
            check = _worst_upper("domain.heater_rating", values, rated, [a.name for _, a in heaters], problem, "kW",
                                 "electric draw")
            check["detail"] += " (rated electric power = the network's max_kw / efficiency)"
            out.append(check)
    elif kind == "cold_storage":
        bands = _get(simulation, "plan.bands", sim_file)
        names = ["goods"] if "goods" in net.node_names else [
            nd for nd, th in zip(net.node_names, problem.thermal) if th and (
                np.isfinite(problem.x_lo[:, net.index(nd)]).any() or np.isfinite(problem.x_hi[:, net.index(nd)]).any())]
        worst = None
        for nd in names:
            band = _array(bands, f"{nd}.{FOOD_SAFETY_PERCENTILE}", f"{sim_file} plan.bands", (problem.H + 1,))
            k = int(np.argmax(band[1:])) + 1  # the initial state is given, not planned
            if worst is None or band[k] > worst[0]:
                worst = (float(band[k]), nd, k)
        if worst is not None:
            value, nd, k = worst
            detail = (f"highest {FOOD_SAFETY_PERCENTILE} of {nd}: {_fmt(value)} °C at {_step_label(problem, k)} against the "
                      f"chilled-food limit {FOOD_SAFETY_LIMIT_C:g} °C")
            out.append(_check("domain.goods_food_safety", value, FOOD_SAFETY_LIMIT_C, value <= FOOD_SAFETY_LIMIT_C, detail))
    elif kind == "microgrid":
        storage = [(i, nd) for i, nd in enumerate(net.nodes) if nd.is_storage]
        if storage:
            soc = x[1:, [i for i, _ in storage]]
            caps = np.array([nd.capacity_kwh for _, nd in storage])
            slack = np.minimum(soc, caps[None, :] - soc)
            k, jj = np.unravel_index(int(np.argmin(slack)), slack.shape)
            low = soc[k, jj] <= caps[jj] - soc[k, jj]
            detail = (f"tightest: {storage[jj][1].name} at {_step_label(problem, k + 1)} holds {_fmt(soc[k, jj])} kWh, "
                      f"physical range [0, {_fmt(caps[jj])}] kWh")
            out.append(_check("domain.soc_capacity", soc[k, jj], 0.0 if low else caps[jj], slack[k, jj] >= -ENVELOPE_TOL,
                              detail, upper=not low))
        power = problem.site_power(u, x)
        k = int(np.argmax(power))
        imax = problem.import_max if np.isfinite(problem.import_max) else None
        detail = f"highest import {_fmt(max(power[k], 0.0))} kW at {_step_label(problem, k)}"
        detail += f" against site.import_max_kw {_fmt(imax)} kW" if imax is not None else "; the site sets no import limit"
        out.append(_check("domain.grid_import", max(power[k], 0.0), imax,
                          imax is None or power[k] <= imax + ACTUATOR_TOL, detail))
        k = int(np.argmin(power))
        export = max(-power[k], 0.0)
        detail = f"highest export {_fmt(export)} kW at {_step_label(problem, k)} against site.export_max_kw {_fmt(problem.export_max)} kW"
        out.append(_check("domain.grid_export", export, problem.export_max, export <= problem.export_max + ACTUATOR_TOL, detail))
    return out


# --- binding the documents -----------------------------------------------------------------------------
def _horizon_key(doc: dict, file: str) -> tuple:
    """(start, steps, step_minutes) of a document's horizon, parsed so that spellings compare equal."""
    from datetime import datetime

    h = _get(doc, "horizon", file)
    if not isinstance(h, dict):
        raise BadInput(file, "horizon", "must be an object")
    start, steps, minutes = (_get(h, f, f"{file} horizon") for f in ("start", "steps", "step_minutes"))
    try:
        return datetime.fromisoformat(str(start)), int(steps), round(float(minutes), 9)
    except (TypeError, ValueError):
        raise BadInput(file, "horizon", f"cannot read start/steps/step_minutes {start!r}, {steps!r}, {minutes!r}") from None


def check_simulation_matches(optimization: dict, simulation: dict, problem, u: np.ndarray, *,
                             opt_file: str = "optimization", sim_file: str = "simulation") -> np.ndarray | None:
    """Refuse (:class:`BadInput`) a simulation of another request, domain, horizon or plan.

    The plan is identified by the set-points of the simulation's noise-free run
    (``plan.nominal.plan_kw``: the tracking law on the forecast applies the plan itself).  Returns the simulation's nominal
    states of the plan ((H+1, n)), or None where the simulation records none.
    """
    if _get(simulation, "domain", sim_file) != optimization.get("domain"):
        raise BadInput(sim_file, "domain", f"is '{simulation.get('domain')}', the plan is for '{optimization.get('domain')}'")
    if sha256_of(_get(simulation, "request", sim_file)) != sha256_of(optimization["request"]):
        raise BadInput(sim_file, "request", "is not the request the plan answers (SHA-256 differs): a simulation of another constraint")
    sim_h, opt_h = _horizon_key(simulation, sim_file), _horizon_key(optimization, opt_file)
    if sim_h != opt_h:
        raise BadInput(sim_file, "horizon", f"start {sim_h[0].isoformat()}, {sim_h[1]} steps of {sim_h[2]:g} min differ "
                       f"from the plan's start {opt_h[0].isoformat()}, {opt_h[1]} steps of {opt_h[2]:g} min")
    plan = _get(simulation, "plan", sim_file)
    if not isinstance(plan, dict):
        raise BadInput(sim_file, "plan", "is missing: simulate with --plan to verify a plan")
    nominal = plan.get("nominal")
    if not isinstance(nominal, dict) or "states" not in nominal:
        return None
    applied = nominal.get("plan_kw")
    if isinstance(applied, dict):
        if set(applied) != set(problem.actuators):
            raise BadInput(sim_file, "plan.nominal.plan_kw", f"must hold the actuators {problem.actuators}")
        sim_u = np.column_stack([_array(applied, a, f"{sim_file} plan.nominal.plan_kw", (problem.H,)) for a in problem.actuators])
        diff = np.abs(sim_u - u)
        if np.any(diff > SIMULATION_PLAN_TOL + 1e-9 * np.abs(u)):
            k, j = np.unravel_index(int(np.argmax(diff)), diff.shape)
            raise BadInput(sim_file, "plan.nominal.plan_kw",
                           f"is not this plan ({problem.actuators[j]} at step {k}: {_fmt(sim_u[k, j])} kW simulated, "
                           f"{_fmt(u[k, j])} kW planned): a simulation of another plan")
    names = problem.nodes
    states = _get(nominal, "states", f"{sim_file} plan.nominal")
    if not isinstance(states, dict) or set(states) != set(names):
        raise BadInput(sim_file, "plan.nominal.states", f"must hold the nodes {names}")
    sim_x = np.column_stack([_array(states, nd, f"{sim_file} plan.nominal.states", (problem.H + 1,)) for nd in names])
    return sim_x


# --- the whole shield ------------------------------------------------------------------------------------
def check_plan(optimization: dict, simulation: dict, *, opt_file: str = "optimization",
               sim_file: str = "simulation") -> dict:
    """Run every check on a plan (optimization JSON) and its ensemble (simulation JSON).

    Returns ``{"passed": bool, "checks": [{name, value, limit, margin, passed, detail}]}``.
    ``opt_file``/``sim_file`` name the documents in errors.  Missing or malformed fields,
    and a simulation that is not of this plan, raise :class:`~industriverse.errors.BadInput`.
    """
    from industriverse.plan.optimize import load_plan

    for doc, file in ((optimization, opt_file), (simulation, sim_file)):
        if not isinstance(doc, dict):
            raise BadInput(file, None, "must be a JSON object")
    for f in ("request", "domain", "plan", "states"):
        _get(optimization, f, opt_file)
    if not isinstance(optimization["request"], dict):
        raise BadInput(opt_file, "request", "must be the constraint object the plan answers")
    plan = optimization["plan"]
    if not isinstance(plan, dict):
        raise BadInput(opt_file, "plan", "must be an object {actuator: [kW per step]}")
    for name, values in plan.items():
        if not isinstance(values, list) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
            raise BadInput(opt_file, f"plan.{name}", "must be a list of finite numbers (kW per step)")
    try:
        problem, u = load_plan(optimization)
    except BadInput as exc:
        if exc.file is not None:
            raise
        # load_plan names the document's own fields; everything else is a field of the request it maps
        own = exc.field is None or exc.field.split(".")[0] in ("domain", "request", "plan", "backoff")
        field = "domain" if exc.field == "--domain" else (exc.field if own else f"request.{exc.field}")
        raise BadInput(opt_file, field, exc.problem) from None
    u = np.asarray(u, dtype=float)
    H = problem.H
    if u.shape != (H, problem.m) or not np.all(np.isfinite(u)):
        raise BadInput(opt_file, "plan", f"must give {H} finite values for each of {problem.actuators}")
    states = _get(optimization, "states", opt_file)
    if not isinstance(states, dict) or not set(problem.nodes) <= set(states):
        raise BadInput(opt_file, "states", f"must hold the nodes {problem.nodes}")
    documented = np.column_stack([_array(states, nd, f"{opt_file} states", (H + 1,)) for nd in problem.nodes])
    x = nominal_states(problem, u)
    xs, S, h = substep_states(problem, u)
    sim_x = check_simulation_matches(optimization, simulation, problem, u, opt_file=opt_file, sim_file=sim_file)
    kpis = problem.kpis(u, x)

    checks = [
        check_finite_values(problem, u, x),
        check_envelope(problem, x),
        check_envelope_between_samples(problem, xs, S, h),
        check_complementarity(problem, u),
        check_nominal_states(problem, x, documented),
        check_actuator_limits(problem, u),
        check_ramp_limits(problem, u),
        check_chance_constraint(problem, simulation, sim_file),
        check_budget("energy_budget", float(kpis["energy_kwh"]), problem.energy_budget, "kWh", "imported energy"),
        check_budget("peak_budget", float(kpis["peak_kw"]), problem.peak_budget, "kW", "15-minute peak"),
        check_first_law(problem, u, sim_x),
        check_second_law_cop(problem, x),
        check_second_law_heat_flow(problem, x),
        check_optimizer(optimization, opt_file),
        *domain_checks(problem, u, x, simulation, sim_file),
    ]
    return {"passed": all(c["passed"] for c in checks), "checks": checks}


def summarize(shield: dict) -> str:
    """One line: passed, or the failing checks with their value and limit."""
    failed = [c for c in shield["checks"] if not c["passed"]]
    if not failed:
        return f"passed: all {len(shield['checks'])} checks"
    parts = [f"{c['name']} (value {c['value']}, limit {c['limit']})" for c in failed]
    return f"failed {len(failed)} of {len(shield['checks'])} checks: " + ", ".join(parts)


__all__ = ["check_plan", "nominal_states", "substep_states", "summarize", "FOOD_SAFETY_LIMIT_C"]
