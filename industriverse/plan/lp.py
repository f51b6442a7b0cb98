"""The planning LP through HiGHS, with a lower bound proven from the dual values.

Variables (all in kW, per step ``k = 0..H-1`` of ``dt_h`` hours)::

    u     (H·m)   actuator set-points, index k·m + a (C order of the (H, m) plan)
    q     (r·H)   relaxation only: the electric power of each temperature-dependent COP actuator
    imp   (H)     grid import   }  P_k = imp_k − exp_k  (site electric power)
    exp   (H)     grid export   }  0 ≤ exp ≤ export_max (left out when export is forbidden)
    peak  (1)     15-minute peak, ≥ each window's mean of P (only with a demand charge or peak budget)

Constraints: the power balance (equality), the envelope on the predicted states ``k = 1..H``
(``x = x_free + G·u``, tightened by the back-off), ramp limits, the energy budget
(``Σ dt·imp``), the peak budget and import limit (bounds), and for a relaxation the
sandwich ``g_lo·u ≤ q ≤ g_hi·u`` with perspective (tangent) cuts.  Minimise
``Σ dt·(price·imp − export_price·exp) + demand_charge·peak``: exactly
:func:`industriverse.model.kpis.energy_kpis`' cost of the plan.

The lower bound is computed from the dual values HiGHS returns, not taken from its primal
objective: with ``y_ub ≤ 0`` and ``y_eq`` the marginals, the reduced costs are
``r = c − A_ubᵀ y_ub − A_eqᵀ y_eq`` and every point ``z`` with ``A_ub z ≤ b_ub``,
``A_eq z = b_eq``, ``l ≤ z ≤ h`` satisfies ``cᵀz ≥ y_ubᵀ b_ub + y_eqᵀ b_eq + Σ_j min(r_j l_j, r_j h_j)``
(weak duality with the bound terms absorbing any residual dual infeasibility), minus a
floating-point rounding allowance.  Every variable has finite bounds implied by the actuator box,
so the bound is finite whenever the LP is solved.

Temperature-dependent COPs (``relax=True``): the power ``u·f(x)`` with ``f = 1/COP`` is
bounded below using a proven interval ``[lo_k, hi_k]`` of the node temperature over every plan
that meets the envelope (:func:`state_intervals`, interval arithmetic through the exact
discrete dynamics, intersected with the band): ``f ≥ 1/max COP`` over the interval, plus, where
``f`` is convex (chillers), tangent cuts of the perspective of ``f``.  Every feasible plan of the
real problem, lifted with its true power, is feasible for the relaxed LP, so the relaxed optimum
and its dual bound are lower bounds on the real optimal cost.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.optimize import linprog

from industriverse.model.kpis import PEAK_WINDOW_H
from industriverse.plan.power import HIGHS_OPTIONS, PowerModel, safe_sum

# --------------------------------------------------------------------------------------------
# the LP
# --------------------------------------------------------------------------------------------
@dataclass
class LinearProgram:
    """``min cᵀz`` s.t. ``A_ub z ≤ b_ub``, ``A_eq z = b_eq``, ``lb ≤ z ≤ ub`` with named blocks.

    ``blocks``: variable slices by name; ``rows``: inequality-row slices by name with
    ``row_info[name]``: dict of per-row arrays (``k``, ``node``, ``side``, ``bound``, ...).
    """

    c: np.ndarray
    A_ub: sparse.csr_matrix
    b_ub: np.ndarray
    A_eq: sparse.csr_matrix
    b_eq: np.ndarray
    lb: np.ndarray
    ub: np.ndarray
    blocks: dict[str, slice]
    rows: dict[str, slice]
    row_info: dict[str, dict[str, np.ndarray]]


class _Assembler:
    """Collects variable blocks and constraint rows, then freezes them into a LinearProgram."""

    def __init__(self):
        self.nvar = 0
        self.blocks: dict[str, slice] = {}
        self.c, self.lb, self.ub = [], [], []
        self.ub_rows: list[tuple[str, sparse.spmatrix, np.ndarray, dict]] = []
        self.eq_rows: list[tuple[sparse.spmatrix, np.ndarray]] = []

    def var(self, name: str, size: int, cost, lo, hi) -> slice:
        sl = slice(self.nvar, self.nvar + size)
        self.nvar += size
        self.blocks[name] = sl
        self.c.append(np.broadcast_to(np.asarray(cost, dtype=float), (size,)))
        self.lb.append(np.broadcast_to(np.asarray(lo, dtype=float), (size,)))
        self.ub.append(np.broadcast_to(np.asarray(hi, dtype=float), (size,)))
        return sl

    def rows_le(self, name: str, parts: dict[str, sparse.spmatrix], rhs: np.ndarray, info: dict | None = None):
        """``Σ parts[block] @ z[block] ≤ rhs``; ``parts`` maps block names to (rows × block) matrices."""
        if len(rhs) == 0:
            return
        self.ub_rows.append((name, parts, np.asarray(rhs, dtype=float), info or {}))

    def rows_eq(self, parts: dict[str, sparse.spmatrix], rhs: np.ndarray):
        self.eq_rows.append((parts, np.asarray(rhs, dtype=float)))

    def _stack(self, items) -> sparse.csr_matrix:
        mats = []
        for parts, rhs in items:
            cols = []
            for name, sl in self.blocks.items():
                size = sl.stop - sl.start
                mat = parts.get(name)
                cols.append(sparse.csr_matrix((len(rhs), size)) if mat is None else sparse.csr_matrix(mat))
            mats.append(sparse.hstack(cols, format="csr"))
        return sparse.vstack(mats, format="csr") if mats else sparse.csr_matrix((0, self.nvar))

    def build(self) -> LinearProgram:
        rows, info, start = {}, {}, 0
        for name, _, rhs, inf in self.ub_rows:
            rows[name] = slice(start, start + len(rhs))
            info[name] = inf
            start += len(rhs)
        A_ub = self._stack([(p, r) for _, p, r, _ in self.ub_rows])
        b_ub = np.concatenate([r for _, _, r, _ in self.ub_rows]) if self.ub_rows else np.zeros(0)
        A_eq = self._stack(self.eq_rows)
        b_eq = np.concatenate([r for _, r in self.eq_rows]) if self.eq_rows else np.zeros(0)
        return LinearProgram(np.concatenate(self.c), A_ub, b_ub, A_eq, b_eq, np.concatenate(self.lb),
                             np.concatenate(self.ub), self.blocks, rows, info)


def _select(H: int, m: int, a: int) -> sparse.csr_matrix:
    """(H, H·m): actuator ``a``'s set-point at every step, from the flat plan."""
    return sparse.csr_matrix((np.ones(H), (np.arange(H), np.arange(H) * m + a)), shape=(H, H * m))


def ramp_matrix(H: int, m: int, a: int) -> sparse.csr_matrix:
    """(H−1, H·m): ``u[k, a] − u[k−1, a]`` for ``k = 1..H−1``, from the flat plan."""
    D = sparse.diags([-np.ones(H - 1), np.ones(H - 1)], [0, 1], shape=(H - 1, H), format="csr")
    return D @ _select(H, m, a)


def peak_windows(problem) -> list[np.ndarray]:
    """Steps of each 15-minute window (as :func:`industriverse.model.kpis.fifteen_minute_means`)."""
    if problem.dt_h >= PEAK_WINDOW_H - 1e-12:
        return [np.array([k]) for k in range(problem.H)]
    per = int(round(PEAK_WINDOW_H / problem.dt_h))
    return [np.arange(s, min(s + per, problem.H)) for s in range(0, problem.H, per)]


def _power_range(problem, power: PowerModel, u_lo: np.ndarray, u_hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of ``P_k`` over the actuator box (kW), for finite bounds of imp/exp/peak."""
    J = power.J.tocsr()
    Jp, Jn = J.maximum(0), J.minimum(0)
    lo_f, hi_f = u_lo.ravel(), u_hi.ravel()
    pmin = power.p_const + Jp @ lo_f + Jn @ hi_f
    pmax = power.p_const + Jp @ hi_f + Jn @ lo_f
    for r in power.relaxed:
        U = u_hi[:, r.actuator]
        pmax = pmax + np.where(np.isfinite(r.g_hi), r.g_hi * U, np.inf)
    return pmin, pmax


def build_planning_lp(problem, power: PowerModel, *, backoff: bool = True, u_lo: np.ndarray | None = None,
                      u_hi: np.ndarray | None = None, elastic: bool = False, cost_scale: float = 1.0,
                      anchor: tuple[np.ndarray, np.ndarray] | None = None,
                      soft_power: float | None = None) -> LinearProgram:
    """Assemble the planning LP (see the module docstring).

    ``u_lo``/``u_hi``: (H, m) bounds replacing the actuator box (a trust region inside it).
    ``cost_scale`` multiplies the cost; ``anchor = (u0, w)`` ((H, m) each) adds ``Σ w·|u − u0|``
    to the objective (variables ``t ≥ |u − u0|``): the nearest feasible plan to ``u0``.
    ``soft_power = μ``: the import and export limits and the energy and peak budgets may be
    exceeded at a price of μ per kW per step (or per kWh, per kW of peak): an ℓ1 exact penalty for
    sequential LP, where the power is only a linearisation and may leave those limits artificially.
    ``elastic``: every envelope row, budget, import and export limit gets a slack ``s ≥ 0``
    and the objective becomes ``Σ s`` (per state unit, kWh or kW): the smallest relaxation that
    makes the problem feasible (see :mod:`industriverse.plan.infeasibility`).
    """
    H, m, n = problem.H, problem.m, problem.n
    dt = problem.dt_h
    box_lo = problem.u_lo if u_lo is None else u_lo
    box_hi = problem.u_hi if u_hi is None else u_hi
    pmin, pmax = _power_range(problem, power, problem.u_lo, problem.u_hi)
    demand = problem.demand_charge > 0 or problem.peak_budget is not None
    export = problem.export_max > 0 or elastic
    imp_max = np.minimum(np.maximum(pmax + (problem.export_max if export else 0.0), 0.0), problem.import_max)
    if elastic:
        imp_max = np.maximum(pmax + np.maximum(-pmin, 0.0), 0.0)  # the import limit becomes a soft row
    exp_max = np.maximum(-pmin, 0.0) if elastic else np.minimum(problem.export_max, np.maximum(imp_max - pmin, 0.0))

    asm = _Assembler()
    asm.var("u", H * m, 0.0, box_lo.ravel(), box_hi.ravel())
    for i, r in enumerate(power.relaxed):
        U = problem.u_hi[:, r.actuator]
        asm.var(f"q{i}", H, 0.0, 0.0, np.where(np.isfinite(r.g_hi), r.g_hi * U, np.inf))
    asm.var("imp", H, 0.0 if elastic else cost_scale * dt * problem.price, 0.0, imp_max)
    if export:
        asm.var("exp", H, 0.0 if elastic else -cost_scale * dt * problem.export_price, 0.0, exp_max)
    if demand:
        peak_hi = max(float(np.max(pmax)), 0.0)
        if problem.peak_budget is not None and not elastic and soft_power is None:
            peak_hi = min(peak_hi, problem.peak_budget)
        asm.var("peak", 1, 0.0 if elastic else cost_scale * problem.demand_charge, 0.0, max(peak_hi, 0.0))
    if soft_power is not None:
        asm.var("sig_lo", H, soft_power, 0.0, np.inf)
        asm.var("sig_hi", H, soft_power, 0.0, np.inf)
        if problem.energy_budget is not None:
            asm.var("sig_energy", 1, soft_power, 0.0, np.inf)
        if demand and problem.peak_budget is not None:
            asm.var("sig_peak", 1, soft_power, 0.0, np.inf)
    if anchor is not None:
        u0, w = (np.asarray(v, dtype=float).ravel() for v in anchor)
        asm.var("t", H * m, w, 0.0, np.maximum(box_hi.ravel() - u0, u0 - box_lo.ravel()).clip(min=0.0))
        I = sparse.identity(H * m, format="csr")
        asm.rows_le("anchor_up", {"u": I, "t": -I}, u0)
        asm.rows_le("anchor_down", {"u": -I, "t": -I}, -u0)

    # power balance: imp − exp − J u − Σ q = p_const
    eye = sparse.identity(H, format="csr")
    parts = {"imp": eye, "u": -power.J}
    if export:
        parts["exp"] = -eye
    for i, _ in enumerate(power.relaxed):
        parts[f"q{i}"] = -eye
    if soft_power is not None:  # imp − exp = P + σ_lo − σ_hi
        parts["sig_lo"], parts["sig_hi"] = -eye, eye
    asm.rows_eq(parts, power.p_const)

    slack_rows: list[tuple[str, int]] = []  # (row block, count) that get slack columns

    # envelope on predicted states k = 1..H
    x_lo, x_hi = problem.envelope(backoff=backoff)
    Gs = problem.G.reshape(H + 1, n, H * m)
    xf = problem.x_free
    terminal = set(problem.constraint.terminal) if problem.constraint is not None else set()
    for side, bound, sign in (("max", x_hi, 1.0), ("min", x_lo, -1.0)):
        ks, ids = np.nonzero(np.isfinite(bound[1:]))
        ks = ks + 1
        if len(ks) == 0:
            continue
        rows = Gs[ks, ids]  # (r, H·m)
        rhs = bound[ks, ids] - xf[ks, ids]
        keep = np.any(rows != 0, axis=1) | (sign * rhs < 0) if not elastic else np.ones(len(ks), bool)
        ks, ids, rows, rhs = ks[keep], ids[keep], rows[keep], rhs[keep]
        name = f"envelope_{side}"
        is_term = np.array([(k == H and problem.nodes[i] in terminal) for k, i in zip(ks, ids)], dtype=bool)
        asm.rows_le(name, {"u": sparse.csr_matrix(sign * rows)}, sign * rhs,
                    {"k": ks, "node": ids, "side": np.full(len(ks), side), "bound": bound[ks, ids], "terminal": is_term})
        if elastic:
            slack_rows.append((name, len(ks)))

    # ramp limits
    for a in range(m):
        r = problem.ramp[a]
        if not np.isfinite(r) or H < 2:
            continue
        Da = ramp_matrix(H, m, a)
        asm.rows_le(f"ramp_up_{a}", {"u": Da}, np.full(H - 1, r), {"k": np.arange(1, H), "actuator": np.full(H - 1, a)})
        asm.rows_le(f"ramp_down_{a}", {"u": -Da}, np.full(H - 1, r), {"k": np.arange(1, H), "actuator": np.full(H - 1, a)})

    # peak: mean of P over each 15-minute window ≤ peak
    if demand:
        wins = peak_windows(problem)
        rows_i = np.concatenate([np.full(len(w), j) for j, w in enumerate(wins)])
        cols = np.concatenate(wins)
        vals = np.concatenate([np.full(len(w), 1.0 / len(w)) for w in wins])
        Mw = sparse.csr_matrix((vals, (rows_i, cols)), shape=(len(wins), H))
        parts = {"imp": Mw, "peak": -sparse.csr_matrix(np.ones((len(wins), 1)))}
        if export:
            parts["exp"] = -Mw
        asm.rows_le("peak_window", parts, np.zeros(len(wins)), {"k": np.array([w[0] for w in wins])})
        if elastic and problem.peak_budget is not None:
            asm.rows_le("peak_budget", {"peak": sparse.csr_matrix([[1.0]])}, [problem.peak_budget], {"bound": np.array([problem.peak_budget])})
            slack_rows.append(("peak_budget", 1))
        elif soft_power is not None and problem.peak_budget is not None:
            asm.rows_le("peak_budget", {"peak": sparse.csr_matrix([[1.0]]), "sig_peak": sparse.csr_matrix([[-1.0]])},
                        [problem.peak_budget], {"bound": np.array([problem.peak_budget])})

    if problem.energy_budget is not None:
        parts = {"imp": sparse.csr_matrix(np.full((1, H), dt))}
        if soft_power is not None:
            parts["sig_energy"] = sparse.csr_matrix([[-1.0]])
        asm.rows_le("energy_budget", parts, [problem.energy_budget], {"bound": np.array([problem.energy_budget])})
        if elastic:
            slack_rows.append(("energy_budget", 1))

    if elastic:
        if np.isfinite(problem.import_max):
            asm.rows_le("import_max", {"imp": eye}, np.full(H, problem.import_max), {"k": np.arange(H), "bound": np.full(H, problem.import_max)})
            slack_rows.append(("import_max", H))
        asm.rows_le("export_max", {"exp": eye}, np.full(H, problem.export_max), {"k": np.arange(H), "bound": np.full(H, problem.export_max)})
        slack_rows.append(("export_max", H))

    # relaxation of temperature-dependent COPs: g_lo·u ≤ q ≤ g_hi·u, perspective cuts
    for i, r in enumerate(power.relaxed):
        sel = _select(H, m, r.actuator)
        asm.rows_le(f"relax_lo_{i}", {"u": sel.multiply(r.g_lo[:, None]).tocsr(), f"q{i}": -eye}, np.zeros(H))
        fin = np.isfinite(r.g_hi)
        if fin.any():
            asm.rows_le(f"relax_hi_{i}", {"u": -sel[fin].multiply(r.g_hi[fin][:, None]).tocsr(), f"q{i}": eye[fin]}, np.zeros(int(fin.sum())))
        Gn = Gs[:H, r.node]  # x_node[k] = xf[k] + Gn[k] u for k = 0..H-1
        for j, (alpha, beta, gamma) in enumerate(r.cuts):
            # q ≥ α u + β x + γ  ⇔  α u + β Gn u − q ≤ −β xf − γ
            A = sel.multiply(alpha[:, None]).tocsr() + sparse.csr_matrix(beta[:, None] * Gn)
            asm.rows_le(f"relax_cut_{i}_{j}", {"u": A, f"q{i}": -eye}, -beta * xf[:H, r.node] - gamma)

    if elastic:
        total = sum(cnt for _, cnt in slack_rows)
        asm.var("slack", total, 1.0, 0.0, np.inf)
        offset = 0
        new_rows = []
        for name, parts, rhs, info in asm.ub_rows:
            cnt = dict(slack_rows).get(name)
            if cnt is not None:
                S = sparse.csr_matrix((-np.ones(cnt), (np.arange(cnt), offset + np.arange(cnt))), shape=(cnt, total))
                parts = dict(parts, slack=S)
                info = dict(info, slack_offset=offset)
                offset += cnt
            new_rows.append((name, parts, rhs, info))
        asm.ub_rows = new_rows
    return asm.build()


@dataclass
class LPSolution:
    """A solved LP: ``z`` primal, ``objective`` HiGHS' primal objective, ``lower_bound`` the
    dual bound proven from the marginals (see :func:`dual_bound`)."""

    status: int
    message: str
    z: np.ndarray | None
    objective: float | None
    lower_bound: float | None
    dual_objective: float | None
    dual_residual: float | None
    iterations: int
    seconds: float


def dual_bound(lp: LinearProgram, res) -> tuple[float, float, float]:
    """``(bound, dual_objective, dual_residual)`` from HiGHS marginals.

    ``dual_objective = Σ y·rhs`` over rows plus ``Σ`` bound marginals × finite bounds (the value
    the brief asks for); ``dual_residual`` = ∞-norm of ``c − Aᵀy − λ_lo − λ_hi`` (dual
    feasibility).  ``bound`` is the safe version that stays valid with a residual: the row
    marginals alone with the reduced costs minimised over the variable box, minus a rounding
    allowance.
    """
    y_ub = np.minimum(res.ineqlin.marginals, 0.0) if lp.b_ub.size else np.zeros(0)
    y_eq = res.eqlin.marginals if lp.b_eq.size else np.zeros(0)
    lam_lo, lam_hi = res.lower.marginals, res.upper.marginals
    r = lp.c.copy()
    if lp.b_ub.size:
        r -= lp.A_ub.T @ y_ub
    if lp.b_eq.size:
        r -= lp.A_eq.T @ y_eq
    fin_lo, fin_hi = np.isfinite(lp.lb), np.isfinite(lp.ub)
    dual_obj = float(y_ub @ lp.b_ub + y_eq @ lp.b_eq + lam_lo[fin_lo] @ lp.lb[fin_lo] + lam_hi[fin_hi] @ lp.ub[fin_hi])
    residual = float(np.max(np.abs(r - lam_lo - lam_hi), initial=0.0))
    # min over l ≤ z ≤ h of r_j z_j (−∞ if the needed bound is infinite and r_j pushes to it)
    with np.errstate(invalid="ignore"):
        at_lo = np.where(r > 0, r * lp.lb, 0.0)
        at_hi = np.where(r < 0, r * lp.ub, 0.0)
    terms = np.concatenate([y_ub * lp.b_ub, y_eq * lp.b_eq, at_lo, at_hi])
    if not np.all(np.isfinite(terms)):
        return -np.inf, dual_obj, residual
    return safe_sum(terms), dual_obj, residual


def solve(lp: LinearProgram, options: dict | None = None) -> LPSolution:
    """Solve with HiGHS (``scipy.optimize.linprog(method="highs")``) and prove the dual bound."""
    t0 = time.perf_counter()
    res = linprog(lp.c, A_ub=lp.A_ub if lp.b_ub.size else None, b_ub=lp.b_ub if lp.b_ub.size else None,
                  A_eq=lp.A_eq if lp.b_eq.size else None, b_eq=lp.b_eq if lp.b_eq.size else None,
                  bounds=np.column_stack([lp.lb, lp.ub]), method="highs", options={**HIGHS_OPTIONS, **(options or {})})
    seconds = time.perf_counter() - t0
    iters = int(getattr(res, "nit", 0) or 0)
    if res.status != 0:
        return LPSolution(res.status, res.message, None, None, None, None, None, iters, seconds)
    bound, dual_obj, resid = dual_bound(lp, res)
    return LPSolution(0, res.message, res.x, float(res.fun), bound, dual_obj, resid, iters, seconds)


