"""Name the constraints that contradict each other when no plan meets them.

An elastic LP (:func:`industriverse.plan.lp.build_planning_lp` with ``elastic=True``) gives every
envelope row (terminal rows included), the energy and peak budgets and the import and export
limits a slack ``s ≥ 0`` and minimises ``Σ s`` (per state unit, kWh or kW): the smallest
relaxation of the constraints under which a plan exists.  Each run of consecutive steps where a
bound needed slack becomes one line naming the node, the bound, the steps and their times, by
how much it must give, and — where the actuators alone explain it — what the actuators at their
limits can reach, e.g.::

    envelope zone.min 30 °C at steps 1–20 (00:15–05:00): the heater at full power reaches at most 27.4 °C (short by 2.6 K)
"""
from __future__ import annotations

import numpy as np
from scipy import sparse


SLACK_TOL = 1e-6


def _unit(problem, i: int) -> tuple[str, str]:
    """(level unit, difference unit) of node ``i``."""
    return ("kWh", "kWh") if not problem.thermal[i] else ("°C", "K")


def _clock(problem, ks) -> list[str]:
    times = problem.step_times(ks)
    if problem.H * problem.dt_h <= 24 + 1e-9:
        return [t[11:16] if t[11:16] != "00:00" or k == 0 else "24:00" for t, k in zip(times, ks)]
    return [t[5:16].replace("T", " ") for t in times]


def _span(problem, k1: int, k2: int, what: str = "steps") -> str:
    c = _clock(problem, [k1, k2])
    if k1 == k2:
        return f"{what[:-1]} {k1} ({c[0]})"
    return f"{what} {k1}–{k2} ({c[0]}–{c[1]})"


def _runs(ks: np.ndarray) -> list[tuple[int, int]]:
    """Consecutive runs of sorted integers as (first, last)."""
    out = []
    for k in ks:
        if out and k == out[-1][1] + 1:
            out[-1] = (out[-1][0], k)
        else:
            out.append((k, k))
    return out


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 100 else f"{v:.1f}"


def response_row(problem, k: int, i: int) -> np.ndarray:
    """(H, m): ``∂x[k, i]/∂u[j, a]`` = ``(Ad^(k−1−j) Bd)[i, a]`` for ``j < k`` (0 after): a row of
    the prediction matrix without forming it, from node ``i``'s impulse response
    ``R[p] = e_iᵀ Ad^p Bd`` (computed once per node by ``v ← v·Ad``, O(H·n²))."""
    cache = problem.__dict__.setdefault("_impulse_rows", {})
    if i not in cache:
        R = np.empty((problem.H, problem.m))
        v = np.zeros(problem.n)
        v[i] = 1.0
        for p in range(problem.H):
            R[p] = v @ problem.Bd
            v = v @ problem.Ad
        cache[i] = R
    g = np.zeros((problem.H, problem.m))
    if k > 0:
        g[:k] = cache[i][k - 1::-1]
    return g


def _reachable(problem, k: int, i: int, side: str) -> tuple[float, np.ndarray]:
    """The most the actuators within their limits (box and ramp) can push node ``i`` at state
    ``k`` towards the violated bound: max of ``x[k, i]`` for a ``min`` bound, min for ``max``.
    Returns the value and the plan (H, m) that reaches it."""
    H, m = problem.H, problem.m
    g = response_row(problem, k, i).ravel()
    sign = 1.0 if side == "min" else -1.0  # maximise sign·x
    lo, hi = problem.u_lo.ravel(), problem.u_hi.ravel()
    if not np.any(np.isfinite(problem.ramp)):
        u = np.where(sign * g > 0, hi, lo)
    else:
        from industriverse.plan.lp import ramp_matrix

        rows = []
        for a in range(m):
            r = problem.ramp[a]
            if np.isfinite(r) and H > 1:
                Da = ramp_matrix(H, m, a)
                rows += [(Da, np.full(H - 1, r)), (-Da, np.full(H - 1, r))]
        A = sparse.vstack([r[0] for r in rows], format="csr")
        b = np.concatenate([r[1] for r in rows])
        from scipy.optimize import linprog  # here: scipy.optimize costs a worker ~0.4 s to import
        res = linprog(-sign * g, A_ub=A, b_ub=b, bounds=np.column_stack([lo, hi]), method="highs")
        u = res.x if res.status == 0 else np.where(sign * g > 0, hi, lo)
    return float(problem.x_free[k, i] + g @ u), u.reshape(H, m)


def explain_infeasible(problem, power=None, *, backoff: bool = True, continuous: bool = True) -> list[str]:
    """One line per conflicting constraint (see the module docstring); [] if the problem is feasible.

    ``power``: the :class:`industriverse.plan.lp.PowerModel` used (the relaxation for
    temperature-dependent COPs, whose power is an under-estimate, so a conflict it finds is real).
    """
    from industriverse.plan.lp import build_planning_lp, solve
    from industriverse.plan.power import exact_power, relaxed_power

    empty = _empty_bands(problem) if backoff else []
    if empty:
        return empty
    if power is None:
        power = relaxed_power(problem, backoff=backoff) if not problem.is_linear else exact_power(problem)
    lp = build_planning_lp(problem, power, backoff=backoff, elastic=True, continuous=continuous)
    sol = solve(lp, {"solver": "simplex"})  # the slacks make IPM crawl here (10× slower at 8064 steps)
    if sol.status != 0:
        return [f"no plan exists and the elastic LP could not locate the conflict ({sol.message})"]
    slack = sol.z[lp.blocks["slack"]]
    if slack.max(initial=0.0) <= SLACK_TOL:
        return []
    lines: list[str] = []
    named: list[str] = []
    bo = problem.backoff if (backoff and problem.backoff is not None) else np.zeros(problem.n)
    for side in ("min", "max"):
        name = f"envelope_{side}"
        if name not in lp.rows:
            continue
        info = lp.row_info[name]
        s = slack[info["slack_offset"]: info["slack_offset"] + len(info["k"])]
        for i in np.unique(info["node"]):
            for term in (False, True):
                sel = (info["node"] == i) & (s > SLACK_TOL) & (info["terminal"] == term)
                if not sel.any():
                    continue
                order = np.argsort(info["k"][sel])
                ks, ss, bs = info["k"][sel][order], s[sel][order], info["bound"][sel][order]
                lines.append(_envelope_line(problem, int(i), side, ks, ss, bs, term, bo[i]))
                named.append(f"{'terminal' if term else 'envelope'} {problem.nodes[i]}.{side}")
    for name, label, unit in (("energy_budget", "budget energy_kwh", "kWh"), ("peak_budget", "budget peak_kw", "kW")):
        if name in lp.rows:
            info = lp.row_info[name]
            s = float(slack[info["slack_offset"]])
            if s > SLACK_TOL:
                b = float(info["bound"][0])
                lines.append(f"{label} {_fmt(b)} {unit}: meeting the other constraints needs at least {_fmt(b + s)} {unit} "
                             f"(over by {_fmt(s)} {unit})")
                named.append(label)
    for name, label in (("import_max", "import limit"), ("export_max", "export limit")):
        if name not in lp.rows:
            continue
        info = lp.row_info[name]
        s = slack[info["slack_offset"]: info["slack_offset"] + len(info["k"])]
        ks = info["k"][s > SLACK_TOL]
        for k1, k2 in _runs(ks):
            part = s[k1:k2 + 1]
            b = float(info["bound"][0])
            what = "the site needs up to" if name == "import_max" else "the surplus to export reaches"
            lines.append(f"{label} {_fmt(b)} kW at {_span(problem, k1, k2)}: {what} {_fmt(b + part.max())} kW "
                         f"(over by {_fmt(part.max())} kW)")
            named.append(label)
    if len(set(named)) > 1:
        lines = [ln + f" [together with: {', '.join(sorted(set(named) - {nm}))}]" for ln, nm in zip(lines, named)]
    return lines


def _empty_bands(problem) -> list[str]:
    """Bands the back-off tightens to nothing (min + back-off above max − back-off)."""
    lo, hi = problem.envelope(backoff=True)
    out = []
    for i, node in enumerate(problem.nodes):
        ks = np.nonzero(lo[1:, i] > hi[1:, i] + 1e-12)[0] + 1
        if len(ks):
            unit, dunit = _unit(problem, i)
            width = float(np.min(problem.x_hi[ks, i] - problem.x_lo[ks, i]))
            out.append(f"envelope {node} {_fmt(float(problem.x_lo[ks[0], i]))}–{_fmt(float(problem.x_hi[ks[0], i]))} {unit} at "
                       f"{_steps_summary(problem, ks)}: the back-off of {_fmt(float(problem.backoff[i]))} {dunit} on each side "
                       f"leaves no room (the band is {_fmt(width)} {dunit} wide)")
    return out


def _steps_summary(problem, ks: np.ndarray) -> str:
    runs = _runs(ks)
    if len(runs) == 1:
        return _span(problem, *runs[0])
    if len(runs) <= 3:
        spans = [f"{a}–{b}" if a != b else f"{a}" for a, b in runs]
        times = [f"{t[0]}–{t[1]}" if a != b else t[0] for (a, b), t in zip(runs, (_clock(problem, [a, b]) for a, b in runs))]
        return f"steps {', '.join(spans)} ({', '.join(times)})"
    c = _clock(problem, [int(ks[0]), int(ks[-1])])
    return f"{len(ks)} steps between {ks[0]} and {ks[-1]} ({c[0]}–{c[1]})"


def _envelope_line(problem, i: int, side: str, ks: np.ndarray, short: np.ndarray, bounds: np.ndarray,
                   terminal: bool, backoff: float) -> str:
    """One line for one violated bound of node ``i`` (all its steps): which steps, why, by how much."""
    node = problem.nodes[i]
    unit, dunit = _unit(problem, i)
    b = f"{_fmt(bounds.min())}–{_fmt(bounds.max())}" if np.ptp(bounds) > 1e-9 else _fmt(float(bounds[0]))
    what = f"terminal {node}.{side} {b} {unit}" if terminal else f"envelope {node}.{side} {b} {unit}"
    if backoff > 0:
        what += f" (tightened by the back-off of {_fmt(backoff)} {dunit})"
    where = f"at the end ({_clock(problem, [int(ks[-1])])[0]})" if terminal else f"at {_steps_summary(problem, ks)}"
    # the actuators alone cannot reach the bound at some steps: name the worst of those
    reasons, explained = [], np.zeros(len(ks), bool)
    worst_gap, worst = 0.0, None
    for j, k in enumerate(ks):
        reach, plan = _reachable(problem, int(k), i, side)
        gap = (bounds[j] - reach) if side == "min" else (reach - bounds[j])
        if gap > SLACK_TOL:
            explained[j] = True
            if gap > worst_gap:
                worst_gap, worst = float(gap), (int(k), reach, plan)
    if worst is not None:
        k, reach, plan = worst
        who = _setting(problem, plan, i, k)
        plural = " and " in who
        verb = ("reach at most" if plural else "reaches at most") if side == "min" else ("get down to only" if plural else "gets down to only")
        start = "from the initial state " if ks[0] == 1 and explained[0] else ""
        reasons.append(f"{start}{who} {verb} {_fmt(reach)} {unit} at {_clock(problem, [k])[0]} "
                       f"({'short' if side == 'min' else 'over'} by {_fmt(worst_gap)} {dunit})")
    if not explained.all():
        rest = short[~explained]
        other = "at the other steps it" if explained.any() else "it"
        reasons.append(f"{other} cannot be held together with the other constraints (misses by up to {_fmt(float(rest.max()))} {dunit})")
    return f"{what} {where}: " + "; ".join(reasons)


def _setting(problem, u: np.ndarray, i: int, k: int) -> str:
    """The actuators acting on node ``i`` before state ``k`` as plan ``u`` sets them ("the heater at full power")."""
    m = problem.m
    parts = []
    g = response_row(problem, k, i)
    for a in range(m):
        steps = np.nonzero(g[:, a] != 0)[0]
        if len(steps) == 0:
            continue
        name, ua = problem.actuators[a], u[steps, a]
        if np.allclose(ua, problem.u_hi[steps, a]):
            parts.append(f"the {name} at full power")
        elif np.allclose(ua, problem.u_lo[steps, a]):
            parts.append(f"the {name} off" if np.all(problem.u_lo[steps, a] == 0) else f"the {name} at its minimum")
        else:
            parts.append(f"the {name} within its limits")
    return " and ".join(parts) if parts else "no actuator"
