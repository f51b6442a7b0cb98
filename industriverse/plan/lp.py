"""The planning LP through HiGHS (``highspy``), sparse and linear in the horizon, with a lower
bound proven from the dual values.

Variables (per step ``k = 0..H-1`` of ``dt_h`` hours)::

    u     (H·m)      actuator set-points, kW, index k·m + a (C order of the (H, m) plan)
    x     ((H+1)·n)  nominal states, index k·n + i; x[0] fixed to the initial state by its bounds
    q     (r·H)      relaxation only: the electric power of each temperature-dependent COP actuator
    imp   (H)        grid import   }  P_k = imp_k − exp_k  (site electric power, kW)
    exp   (H)        grid export   }  0 ≤ exp ≤ export_max (left out when export is forbidden)
    peak  (1)        15-minute peak, ≥ each window's mean of P (only with a demand charge or peak budget)
    peak_g (1 each)  a demand group's peak (a URDB demand period within a month), ≥ the mean of P
                     over each window of its steps, charged at its rate

Constraints: the exact discretisation ``x[k+1] − Ad x[k] − Bd u[k] = Ed d[k]`` as sparse
equalities (``n`` rows per step), the power balance (equality), the (tightened) envelope as
bounds on the state variables — a band in force over ``[t_k, t_{k+1})`` also binds ``x[k+1]``
(its end approached from the left) — ramp limits, the energy budget (``Σ dt·imp``), the peak
budget and import limit (bounds), and for a relaxation the sandwich ``g_lo·u ≤ q ≤ g_hi·u`` with
perspective (tangent) cuts on ``(u, x)``.  Minimise ``Σ dt·(price·imp − export_price·exp) +
demand_charge·peak + Σ_g rate_g·peak_g``: exactly :func:`industriverse.model.kpis.energy_kpis`' cost of the plan.
The model has O(H·(n² + m)) nonzeros: no prediction matrix is formed.

The lower bound is computed from the dual values HiGHS returns, not taken from its primal
objective: with ``y_ub ≤ 0`` and ``y_eq`` the marginals, the reduced costs are
``r = c − A_ubᵀ y_ub − A_eqᵀ y_eq`` and every point ``z`` with ``A_ub z ≤ b_ub``,
``A_eq z = b_eq``, ``l ≤ z ≤ h`` satisfies ``cᵀz ≥ y_ubᵀ b_ub + y_eqᵀ b_eq + Σ_j min(r_j l_j, r_j h_j)``
(weak duality with the bound terms absorbing any residual dual infeasibility), minus a
floating-point rounding allowance.  Every variable has finite bounds (the actuator box; for the
states the band, or where a node has none the proven interval of :func:`state_intervals`), so
the bound is finite whenever the LP is solved.

Temperature-dependent COPs (``relax=True``): the power ``u·f(x)`` with ``f = 1/COP`` is
bounded below using a proven interval ``[lo_k, hi_k]`` of the node temperature over every plan
that meets the envelope (:func:`state_intervals`, interval arithmetic through the exact
discrete dynamics, intersected with the band): ``f ≥ 1/max COP`` over the interval, plus, where
``f`` is convex (chillers), planes of the convex envelope of ``u·f`` over the box of proven
set-point and temperature intervals (:func:`industriverse.plan.power.envelope_cut`).  Every feasible plan of the
real problem, lifted with its true power, is feasible for the relaxed LP, so the relaxed optimum
and its dual bound are lower bounds on the real optimal cost.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
from scipy import sparse

from industriverse.model.kpis import PEAK_WINDOW_H
from industriverse.plan.power import HIGHS_OPTIONS, PowerModel, safe_sum, state_intervals

# --------------------------------------------------------------------------------------------
# the LP
# --------------------------------------------------------------------------------------------
@dataclass
class LinearProgram:
    """``min cᵀz`` s.t. ``A_ub z ≤ b_ub``, ``A_eq z = b_eq``, ``lb ≤ z ≤ ub`` with named blocks.

    ``blocks``: variable slices by name; ``rows``: inequality-row slices by name with
    ``row_info[name]``: dict of per-row arrays (``k``, ``node``, ``side``, ``bound``, ...).
    ``integer``: indices of variables that must take integer values (a MILP), or None.
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
    integer: np.ndarray | None = None


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
        """One CSR matrix of the row groups: every part's COO triplets shifted to its block's
        columns and its group's rows (no per-block zero matrices)."""
        R, C, V = [], [], []
        r0 = 0
        for parts, rhs in items:
            for name, mat in parts.items():
                coo = mat.tocoo() if sparse.issparse(mat) else sparse.coo_matrix(mat)
                R.append(coo.row + r0)
                C.append(coo.col + self.blocks[name].start)
                V.append(coo.data)
            r0 += len(rhs)
        if not R:
            return sparse.csr_matrix((r0, self.nvar))
        return sparse.csr_matrix((np.concatenate(V), (np.concatenate(R), np.concatenate(C))), shape=(r0, self.nvar))

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


def _power_range(power: PowerModel, u_lo: np.ndarray, u_hi: np.ndarray, x_lo: np.ndarray,
                 x_hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of ``P_k`` (kW) over the actuator box and the state bounds, for finite bounds of imp/exp/peak."""
    def span(J, lo, hi):
        J = J.tocsr()
        Jp, Jn = J.maximum(0), J.minimum(0)
        return Jp @ lo + Jn @ hi, Jp @ hi + Jn @ lo

    pmin, pmax = span(power.J, u_lo.ravel(), u_hi.ravel())
    pmin, pmax = pmin + power.p_const, pmax + power.p_const
    if power.Jx is not None:
        a, b = span(power.Jx, x_lo.ravel(), x_hi.ravel())
        pmin, pmax = pmin + a, pmax + b
    for r in power.relaxed:
        U = u_hi[:, r.actuator]
        pmax = pmax + np.where(np.isfinite(r.g_hi), r.g_hi * U, np.inf)
    return pmin, pmax


def state_bounds(problem, *, backoff: bool = True, elastic: bool = False,
                 continuous: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Bounds (lo, hi), each (H+1, n), of the LP's state variables.

    Row 0 is the initial state; rows ``k ≥ 1`` the (tightened) band — with ``continuous`` also
    the band of the step each state ends (:func:`industriverse.plan.substeps.continuous_envelope`);
    where that leaves a side
    infinite, the proven interval of :func:`state_intervals` (valid for every feasible plan,
    widened by a rounding margin), so every variable is bounded and the dual bound finite.
    ``elastic``: the reachable set of the actuator box only (the envelope becomes rows with slack).
    """
    if elastic:
        lo, hi = state_intervals(problem, backoff=backoff, band=False)
        lo, hi = _widen(lo, hi)
    else:
        lo, hi = envelope_bounds(problem, backoff=backoff, continuous=continuous)
        lo, hi = lo.copy(), hi.copy()
        lo[0] = hi[0] = problem.x0
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            ilo, ihi = _widen(*state_intervals(problem, backoff=backoff))
            lo = np.where(np.isfinite(lo), lo, ilo)
            hi = np.where(np.isfinite(hi), hi, ihi)
    lo[0] = hi[0] = problem.x0
    return lo, hi


def envelope_bounds(problem, *, backoff: bool = True, continuous: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi), each (H+1, n): the envelope the sample states must meet (see :func:`state_bounds`)."""
    if continuous:
        from industriverse.plan.substeps import continuous_envelope

        return continuous_envelope(problem, backoff=backoff)
    return problem.envelope(backoff=backoff)


def _widen(lo: np.ndarray, hi: np.ndarray, rel: float = 1e-9) -> tuple[np.ndarray, np.ndarray]:
    """Intervals from floating-point recursions, widened so rounding cannot cut a feasible state."""
    pad = rel * (1.0 + np.maximum(np.abs(lo), np.abs(hi)))
    return lo - pad, hi + pad


def dynamics_rows(problem) -> tuple[sparse.csr_matrix, sparse.csr_matrix, np.ndarray]:
    """``(Sx, Su, rhs)``: the exact discretisation ``x[k+1] − Ad x[k] − Bd u[k] = Ed d[k]`` for
    ``k = 0..H−1`` as sparse rows (H·n) over the states ((H+1)·n) and the plan (H·m)."""
    H, n, m = problem.H, problem.n, problem.m
    # entries below 1e-14 of the largest (expm of a long chain fills Ad with ~1e-30 terms) are
    # rounding noise: HiGHS would drop them anyway (small_matrix_value), so they never enter
    Ad = np.where(np.abs(problem.Ad) > 1e-14 * np.abs(problem.Ad).max(initial=0.0), problem.Ad, 0.0)
    ai, aj = np.nonzero(Ad)
    bi, bj = np.nonzero(problem.Bd)
    k = np.arange(H)[:, None]
    # row k·n + i:  x[k+1, i] − Σ_j Ad[i, j] x[k, j]
    rows = np.concatenate([(k * n + np.arange(n)).ravel(), (k * n + ai).ravel()])
    cols = np.concatenate([((k + 1) * n + np.arange(n)).ravel(), (k * n + aj).ravel()])
    vals = np.concatenate([np.ones(H * n), np.tile(-Ad[ai, aj], H)])
    Sx = sparse.csr_matrix((vals, (rows, cols)), shape=(H * n, (H + 1) * n))
    Su = sparse.csr_matrix((np.tile(-problem.Bd[bi, bj], H), ((k * n + bi).ravel(), (k * m + bj).ravel())), shape=(H * n, H * m))
    rhs = (problem.d @ problem.Ed.T).ravel()
    return Sx, Su, rhs


def complementary_pairs(problem) -> list[tuple[int, int]]:
    """Actuator pairs (a, b) that must not run in the same step: a battery's charge and discharge,
    and heating (heater, heat pump) against cooling (chiller) on one node — running both only
    burns energy in losses.  Pairs where either actuator has a positive minimum are left out
    (they must run together by the client's own limits)."""
    acts = problem.network.actuators
    heat, cool = {"heater", "heat_pump", "battery_charge"}, {"chiller", "battery_discharge"}
    pairs = []
    for a, x in enumerate(acts):
        for b, y in enumerate(acts):
            if x.node == y.node and x.kind in heat and y.kind in cool \
                    and x.kind.startswith("battery") == y.kind.startswith("battery") \
                    and not np.any(problem.u_lo[:, a] > 0) and not np.any(problem.u_lo[:, b] > 0):
                pairs.append((a, b))
    return pairs


def simultaneous_use(problem, u: np.ndarray) -> np.ndarray:
    """(H,) kW: the largest ``min(u_a, u_b)`` over the :func:`complementary_pairs` per step of plan
    ``u`` (H, m) — how much both sides of a pair run at once (0 where none does)."""
    out = np.zeros(problem.H)
    for a, b in complementary_pairs(problem):
        out = np.maximum(out, np.minimum(u[:, a], u[:, b]))
    return out


def chain_cuts(*seps):
    """One ``cuts`` callback of several: the rows of every separator that returns some."""
    seps = [s for s in seps if s is not None]
    if not seps:
        return None

    def cuts(z):
        out = [r for r in (s(z) for s in seps) if r is not None and r[0].shape[0]]
        if not out:
            return None
        return sparse.vstack([a for a, _ in out], format="csr"), np.concatenate([b for _, b in out])

    return cuts


def substep_cuts(problem, lp: LinearProgram, backoff: bool = True, tol: float = 1e-9):
    """A ``cuts`` callback for :func:`solve`: the interior sub-step rows (and only those) that the
    LP solution violates by more than ``tol``, each at most once."""
    from industriverse.plan.substeps import substep_response, substep_rows, substep_states, bands_in_force

    if problem.n < 2:  # one node: its response over a step is monotone, the step's ends bind it
        return None
    resp = substep_response(problem)
    if resp.S < 2:
        return None
    lo, hi = bands_in_force(problem, backoff=backoff)
    H, n, m = problem.H, problem.n, problem.m
    added = np.zeros((H, resp.S - 1, n, 2), dtype=bool)
    xs, us = lp.blocks["x"], lp.blocks["u"]

    def cuts(z):
        x = z[xs].reshape(H + 1, n)
        u = z[us].reshape(H, m)
        X = substep_states(problem, u, x, resp)
        viol = np.stack([lo[:, None, :] - X > tol, X - hi[:, None, :] > tol], axis=-1) & ~added
        if not viol.any():
            return None
        added[viol] = True
        Ax, Au, rhs, _ = substep_rows(problem, resp, backoff=backoff, only=viol)
        A = sparse.hstack([Ax if name == "x" else Au if name == "u" else sparse.csr_matrix((len(rhs), sl.stop - sl.start))
                           for name, sl in lp.blocks.items()], format="csr")
        return A, rhs

    return cuts


def build_planning_lp(problem, power: PowerModel, *, backoff: bool = True, u_lo: np.ndarray | None = None,
                      u_hi: np.ndarray | None = None, elastic: bool = False, cost_scale: float = 1.0,
                      anchor: tuple[np.ndarray, np.ndarray] | None = None,
                      soft_power: float | None = None, continuous: bool = True,
                      substeps: str = "lazy", complementarity: bool = False) -> LinearProgram:
    """Assemble the planning LP (see the module docstring).

    ``continuous``: the envelope binds in continuous time (:mod:`industriverse.plan.substeps`):
    each state also meets the band of the step it ends, and ``substeps`` says which interior
    sub-step rows are built up front: ``"all"`` (with more than one node: one node's response is
    monotone, its ends bind it), or ``"lazy"`` (none here: pass ``cuts=substep_cuts(problem, lp)``
    to :func:`solve` to add the violated ones; usually none or few bind).
    ``complementarity``: a binary per step for each :func:`complementary_pairs` pair so that at
    most one of the two is on (a MILP: ``lp.integer`` lists the binaries).

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
    xs_lo, xs_hi = state_bounds(problem, backoff=backoff, elastic=elastic, continuous=continuous)
    pmin, pmax = _power_range(power, problem.u_lo, problem.u_hi, xs_lo, xs_hi)
    demand = problem.demand_charge > 0 or problem.peak_budget is not None
    export = problem.export_max > 0 or elastic
    imp_max = np.minimum(np.maximum(pmax + (problem.export_max if export else 0.0), 0.0), problem.import_max)
    if elastic:
        imp_max = np.maximum(pmax + np.maximum(-pmin, 0.0), 0.0)  # the import limit becomes a soft row
    exp_max = np.maximum(-pmin, 0.0) if elastic else np.minimum(problem.export_max, np.maximum(imp_max - pmin, 0.0))

    asm = _Assembler()
    asm.var("u", H * m, 0.0, box_lo.ravel(), box_hi.ravel())
    asm.var("x", (H + 1) * n, 0.0, xs_lo.ravel(), xs_hi.ravel())
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
    groups = [] if elastic else problem.demand_groups  # elastic: feasibility only, the charges cost nothing
    for g, (_, rate, _) in enumerate(groups):
        asm.var(f"peak_g{g}", 1, cost_scale * rate, 0.0, max(float(np.max(pmax)), 0.0))
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

    # the exact discrete dynamics
    Sx, Su, drive = dynamics_rows(problem)
    asm.rows_eq({"x": Sx, "u": Su}, drive)

    # power balance: imp − exp − J u − Jx x − Σ q = p_const
    eye = sparse.identity(H, format="csr")
    parts = {"imp": eye, "u": -power.J}
    if power.Jx is not None:
        parts["x"] = -power.Jx
    if export:
        parts["exp"] = -eye
    for i, _ in enumerate(power.relaxed):
        parts[f"q{i}"] = -eye
    if soft_power is not None:  # imp − exp = P + σ_lo − σ_hi
        parts["sig_lo"], parts["sig_hi"] = -eye, eye
    asm.rows_eq(parts, power.p_const)

    slack_rows: list[tuple[str, int]] = []  # (row block, count) that get slack columns

    # elastic: the envelope on states k = 1..H as rows with slack (otherwise it is in the bounds)
    if elastic:
        x_lo, x_hi = envelope_bounds(problem, backoff=backoff, continuous=continuous)
        terminal = set(problem.constraint.terminal) if problem.constraint is not None else set()
        for side, bound, sign in (("max", x_hi, 1.0), ("min", x_lo, -1.0)):
            ks, ids = np.nonzero(np.isfinite(bound[1:]))
            ks = ks + 1
            if len(ks) == 0:
                continue
            sel = sparse.csr_matrix((np.full(len(ks), sign), (np.arange(len(ks)), ks * n + ids)), shape=(len(ks), (H + 1) * n))
            name = f"envelope_{side}"
            is_term = np.array([(k == H and problem.nodes[i] in terminal) for k, i in zip(ks, ids)], dtype=bool)
            asm.rows_le(name, {"x": sel}, sign * bound[ks, ids],
                        {"k": ks, "node": ids, "side": np.full(len(ks), side), "bound": bound[ks, ids], "terminal": is_term})
            slack_rows.append((name, len(ks)))

    # the envelope between samples: interior control sub-steps as rows on (x_k, u_k)
    if continuous and not elastic and substeps == "all" and n > 1:
        from industriverse.plan.substeps import substep_response, substep_rows

        resp = substep_response(problem)
        if resp.S > 1:
            Ax, Au, rhs, info = substep_rows(problem, resp, backoff=backoff)
            asm.rows_le("substep", {"x": Ax, "u": Au}, rhs, info)

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

    # each demand group: mean of P over each window of its steps ≤ its peak
    if groups:
        wins = peak_windows(problem)
        for g, (_, _, mask) in enumerate(groups):
            sel = [w for w in wins if mask[w[0]]]
            if not sel:
                continue
            rows_i = np.concatenate([np.full(len(w), j) for j, w in enumerate(sel)])
            vals = np.concatenate([np.full(len(w), 1.0 / len(w)) for w in sel])
            Mw = sparse.csr_matrix((vals, (rows_i, np.concatenate(sel))), shape=(len(sel), H))
            parts = {"imp": Mw, f"peak_g{g}": -sparse.csr_matrix(np.ones((len(sel), 1)))}
            if export:
                parts["exp"] = -Mw
            asm.rows_le(f"peak_group_{g}", parts, np.zeros(len(sel)), {"k": np.array([w[0] for w in sel])})

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

    # relaxation of temperature-dependent COPs: g_lo·u ≤ q ≤ g_hi·u, perspective cuts on (u, x)
    for i, r in enumerate(power.relaxed):
        sel = _select(H, m, r.actuator)
        asm.rows_le(f"relax_lo_{i}", {"u": sel.multiply(r.g_lo[:, None]).tocsr(), f"q{i}": -eye}, np.zeros(H))
        fin = np.isfinite(r.g_hi)
        if fin.any():
            asm.rows_le(f"relax_hi_{i}", {"u": -sel[fin].multiply(r.g_hi[fin][:, None]).tocsr(), f"q{i}": eye[fin]}, np.zeros(int(fin.sum())))
        xsel = sparse.csr_matrix((np.ones(H), (np.arange(H), np.arange(H) * n + r.node)), shape=(H, (H + 1) * n))
        for j, (alpha, beta, gamma) in enumerate(r.cuts):
            # q ≥ α u + β x + γ  ⇔  α u + β x − q ≤ −γ  (x: the node's state at the step start)
            asm.rows_le(f"relax_cut_{i}_{j}", {"u": sel.multiply(alpha[:, None]).tocsr(), "x": xsel.multiply(beta[:, None]).tocsr(),
                                               f"q{i}": -eye}, -gamma)

    # complementarity: one binary per step and pair, the pair's two set-points never both on
    integer = []
    if complementarity and not elastic:
        for j, (a, b) in enumerate(complementary_pairs(problem)):
            Ua, Ub = box_hi[:, a], box_hi[:, b]
            on = asm.var(f"on{j}", H, 0.0, 0.0, 1.0)
            integer.append(np.arange(on.start, on.stop))
            # u_a ≤ U_a·on,  u_b ≤ U_b·(1 − on)
            asm.rows_le(f"compl_a_{j}", {"u": _select(H, m, a), f"on{j}": -sparse.diags(Ua, format="csr")}, np.zeros(H))
            asm.rows_le(f"compl_b_{j}", {"u": _select(H, m, b), f"on{j}": sparse.diags(Ub, format="csr")}, Ub)

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
    lp = asm.build()
    if integer:
        lp.integer = np.concatenate(integer)
    return lp


@dataclass
class LPSolution:
    """A solved LP: ``z`` primal, ``objective`` HiGHS' primal objective, ``lower_bound`` the
    dual bound proven from the marginals (see :func:`dual_bound`; for a MILP HiGHS' own
    ``mip_dual_bound``), ``basis`` the final basis (pass the solution as ``warm_start`` to re-solve
    an LP of the same shape from it)."""

    status: int
    message: str
    z: np.ndarray | None
    objective: float | None
    lower_bound: float | None
    dual_objective: float | None
    dual_residual: float | None
    iterations: int
    seconds: float
    basis: object | None = None
    mip_gap: float | None = None
    duals: tuple[np.ndarray, np.ndarray] | None = None  # (y_ub, y_eq) row marginals of an LP (not a MILP)


def dual_bound(lp: LinearProgram, res) -> tuple[float, float, float]:
    """``(bound, dual_objective, dual_residual)`` from HiGHS marginals.

    ``res`` carries ``ineqlin.marginals``, ``eqlin.marginals``, ``lower.marginals`` and
    ``upper.marginals`` (as :func:`scipy.optimize.linprog` returns them, or :func:`solve` from
    highspy's row and column duals).  ``dual_objective = Σ y·rhs`` over rows plus ``Σ`` bound
    marginals × finite bounds (the value the brief asks for); ``dual_residual`` = ∞-norm of
    ``c − Aᵀy − λ_lo − λ_hi`` (dual feasibility).  ``bound`` is the safe version that stays
    valid with a residual: the row marginals alone with the reduced costs minimised over the
    variable box, minus a rounding allowance.
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


def highs_model(lp: LinearProgram) -> tuple:
    """``lp`` as the array arguments of ``Highs.passModel`` (rows: the inequalities, then the
    equalities; integrality last).  Arrays go to HiGHS without per-element Python conversion."""
    import highspy

    if lp.b_ub.size and lp.b_eq.size:
        A = sparse.vstack([lp.A_ub, lp.A_eq], format="csr")
    else:
        A = (lp.A_ub if lp.b_ub.size else lp.A_eq).tocsr()
    A.sort_indices()
    nrow = int(lp.b_ub.size + lp.b_eq.size)
    row_lo = np.concatenate([np.full(lp.b_ub.size, -np.inf), lp.b_eq]).astype(float)
    row_hi = np.concatenate([lp.b_ub, lp.b_eq]).astype(float)
    integrality = np.zeros(lp.c.size, dtype=np.int32)
    if lp.integer is not None and len(lp.integer):
        integrality[np.asarray(lp.integer)] = int(highspy.HighsVarType.kInteger)
    return (int(lp.c.size), nrow, int(A.nnz), int(highspy.MatrixFormat.kRowwise), int(highspy.ObjSense.kMinimize), 0.0,
            np.ascontiguousarray(lp.c, dtype=float), np.ascontiguousarray(lp.lb, dtype=float),
            np.ascontiguousarray(lp.ub, dtype=float), row_lo, row_hi, A.indptr.astype(np.int32),
            A.indices.astype(np.int32), np.ascontiguousarray(A.data, dtype=float), integrality)


def new_highs(options: dict | None = None):
    """A silent HiGHS instance with the project's tolerances (``highspy._Highs``: the public
    ``Highs`` wrapper prints a banner on stdout when constructed, which would corrupt JSON output)."""
    import highspy

    h = highspy._Highs()
    h.setOptionValue("output_flag", False)
    for k, v in {**HIGHS_OPTIONS, **(options or {})}.items():
        h.setOptionValue(k, v)
    return h


IPM_MIN_NNZ = 20_000


def solve(lp: LinearProgram, options: dict | None = None, warm_start: LPSolution | None = None,
          cuts=None, max_rounds: int = 20) -> LPSolution:
    """Solve with HiGHS (``highspy``) and prove the dual bound.

    ``options``: HiGHS options (e.g. ``{"time_limit": 10}``); ``warm_start``: a previous
    solution of an LP with the same rows and columns (its basis starts the simplex).  An LP with
    integer variables is solved as a MILP; its bound is HiGHS' ``mip_dual_bound``.
    ``cuts(z) -> (A, b) | None``: lazy rows ``A z ≤ b`` that the solution ``z`` violates; they are
    added to the live model and it is re-solved from its basis until none is returned (at most
    ``max_rounds``).  ``lp`` then carries the added rows (block ``"lazy"``), so the bound is
    the dual bound of the final LP, a relaxation of the LP with every possible row.
    Status: 0 solved, 2 infeasible, 3 unbounded, 4 other (message says why).
    """
    import highspy

    t0 = time.perf_counter()
    if np.any(lp.lb > lp.ub):  # crossed bounds (an empty band): infeasible before any solve
        return LPSolution(2, "crossed variable bounds", None, None, None, None, None, 0, time.perf_counter() - t0)
    mip = lp.integer is not None and len(lp.integer) > 0
    opts = dict(options or {})
    warm = warm_start is not None and warm_start.basis is not None and not mip
    if mip:
        opts.setdefault("mip_rel_gap", 1e-7)
    elif not warm and lp.A_ub.nnz + lp.A_eq.nnz >= IPM_MIN_NNZ:
        # large cold solves: the interior point method with crossover (to a vertex, so the duals and
        # the basis are exact) is 2–6× faster than dual simplex on these banded LPs; small ones and
        # warm starts use simplex
        opts.setdefault("solver", "ipm")
    h = new_highs(opts)
    h.passModel(*highs_model(lp))
    MS = highspy.HighsModelStatus

    def run():
        h.run()
        # HiGHS occasionally ends a re-solve (or an IPM crossover) in "unknown" on these
        # badly scaled rows: start the simplex again from scratch before giving up
        if h.getModelStatus() not in (MS.kOptimal, MS.kInfeasible, MS.kUnbounded, MS.kUnboundedOrInfeasible):
            h.setOptionValue("solver", "simplex")
            h.clearSolver()
            h.run()

    if warm:
        h.setBasis(warm_start.basis)
    run()
    nu0, ne = lp.b_ub.size, lp.b_eq.size
    iters = 0
    extra_A, extra_b = [], []
    for _ in range(max_rounds + 1):
        status = h.getModelStatus()
        info = h.getInfo()
        iters += int(max(info.simplex_iteration_count, 0) + max(info.ipm_iteration_count, 0))
        if status != MS.kOptimal or cuts is None or mip:
            break
        new = cuts(np.asarray(h.getSolution().col_value, dtype=float))
        if new is None or new[0].shape[0] == 0:
            break
        A, b = sparse.csr_matrix(new[0]), np.asarray(new[1], dtype=float)
        A.sort_indices()
        h.addRows(A.shape[0], np.full(A.shape[0], -np.inf), b, A.nnz, A.indptr[:-1], A.indices, A.data)
        extra_A.append(A)
        extra_b.append(b)
        h.setOptionValue("solver", "simplex")  # re-solve from the basis (the new rows enter basic)
        run()
    if extra_A:
        lazy = sparse.vstack(extra_A, format="csr")
        lp.rows["lazy"] = slice(nu0, nu0 + lazy.shape[0])
        lp.row_info["lazy"] = {}
        lp.A_ub = sparse.vstack([lp.A_ub, lazy], format="csr")
        lp.b_ub = np.concatenate([lp.b_ub] + extra_b)
    seconds = time.perf_counter() - t0
    code = {MS.kOptimal: 0, MS.kInfeasible: 2, MS.kUnboundedOrInfeasible: 2, MS.kUnbounded: 3}.get(status, 4)
    message = h.modelStatusToString(status)
    if mip and status == MS.kTimeLimit:  # the MILP dual bound is proven at any stop
        bound = float(info.mip_dual_bound)
        if np.isfinite(bound):
            bound -= 8 * np.finfo(float).eps * max(abs(bound), 1.0)
        return LPSolution(4, message, None, None, bound, float(info.mip_dual_bound), None, int(info.mip_node_count),
                          seconds, None, float(info.mip_gap))
    if code != 0:
        return LPSolution(code, message, None, None, None, None, None, iters, seconds)
    sol = h.getSolution()
    z = np.asarray(sol.col_value, dtype=float)
    objective = float(info.objective_function_value)
    if mip:
        bound = float(info.mip_dual_bound)
        bound -= 8 * np.finfo(float).eps * max(abs(bound), 1.0)
        return LPSolution(0, message, z, objective, bound, float(info.mip_dual_bound), None, int(info.mip_node_count),
                          time.perf_counter() - t0, None, float(info.mip_gap))
    row_dual = np.asarray(sol.row_dual, dtype=float)
    col_dual = np.asarray(sol.col_dual, dtype=float)
    # HiGHS row order: the original inequalities, the equalities, then the lazy rows
    y_ub = np.concatenate([row_dual[:nu0], row_dual[nu0 + ne:]])
    res = SimpleNamespace(ineqlin=SimpleNamespace(marginals=y_ub), eqlin=SimpleNamespace(marginals=row_dual[nu0:nu0 + ne]),
                          lower=SimpleNamespace(marginals=np.maximum(col_dual, 0.0)),
                          upper=SimpleNamespace(marginals=np.minimum(col_dual, 0.0)))
    bound, dual_obj, resid = dual_bound(lp, res)
    return LPSolution(0, message, z, objective, bound, dual_obj, resid, iters, time.perf_counter() - t0,
                      None if extra_A else h.getBasis(), duals=(res.ineqlin.marginals, res.eqlin.marginals))
