"""Site electric power as a function of the plan: the exact affine model, the convex relaxation of
temperature-dependent COPs over proven intervals, and the linearisation at a plan.

Temperature-dependent COPs: the power ``u·f(x)`` with ``f = 1/COP`` is bounded below using proven
intervals of the node temperature ``[lo_k, hi_k]`` (:func:`state_intervals`, interval arithmetic
through the exact discrete dynamics intersected with the band, then window LPs) and, for chillers,
of the set-point (:func:`window_bounds`), valid for every plan that meets the envelope:
``f ≥ 1/max COP`` over the interval, plus, where ``f`` is convex (chillers), planes of the convex
envelope of ``u·f(x)`` over the box (:func:`envelope_cut`), more of them where the LP's solution
sits (:func:`envelope_separator`).  Every feasible plan of the real problem, lifted with its true
power, is feasible for the relaxed LP (:mod:`industriverse.plan.lp`), so the relaxed optimum and
its dual bound are lower bounds on the real optimal cost.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse

from industriverse.model.network import KELVIN, Actuator, carnot_terms, cop

ENVELOPE_ROUNDS = 20  # re-solves adding envelope cuts where the relaxed plan sits
HIGHS_OPTIONS = {"primal_feasibility_tolerance": 1e-9, "dual_feasibility_tolerance": 1e-9}


@dataclass
class PowerModel:
    """Site electric power as an affine function of the plan and its states, plus relaxed COP terms.

    ``P_k = p_const[k] + (J @ u_flat)[k] + (Jx @ x_flat)[k] + Σ_r q[r, k]`` in kW, ``J``:
    (H, H·m) sparse over the plan, ``Jx``: (H, (H+1)·n) sparse over the states ``x[0..H]``
    (None when the power does not depend on them; the linearisation of a temperature-dependent
    COP does).  ``relaxed``: one entry per temperature-dependent COP actuator replaced by a
    variable ``q`` (see :func:`relaxed_power`); empty for an exact model.
    """

    p_const: np.ndarray
    J: sparse.csr_matrix
    relaxed: list["RelaxedActuator"] = field(default_factory=list)
    Jx: sparse.csr_matrix | None = None

    @property
    def exact(self) -> bool:
        return not self.relaxed


@dataclass
class RelaxedActuator:
    """``g_lo·u ≤ q ≤ g_hi·u`` and cuts ``q ≥ α·u + β·x_node + γ`` (per step, rows of ``cuts``)."""

    actuator: int
    node: int
    g_lo: np.ndarray  # (H,) 1/COP lower bound, kW electric per kW thermal
    g_hi: np.ndarray  # (H,) upper bound (inf where unknown)
    cuts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # each (α, β, γ), (H,) arrays
    t_lo: np.ndarray  # (H,) proven node temperature interval at step starts, °C
    t_hi: np.ndarray
    u_lo: np.ndarray | None = None  # (H,) proven set-point interval of every feasible plan, kW
    u_hi: np.ndarray | None = None
    other: np.ndarray | None = None  # (H,) the COP's other temperature (the boundary), °C

    def cut_at(self, act: Actuator, u_at: np.ndarray, t_at: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The envelope cut (α, β, γ) of :func:`envelope_cut` on this actuator's box at ``(u_at, t_at)``."""
        return envelope_cut(act, self.other, self.u_lo, self.u_hi, self.t_lo, self.t_hi, u_at, t_at)


def _diag_power(W: np.ndarray) -> sparse.csr_matrix:
    """``J`` of a power that is ``Σ_a W[k, a]·u[k, a]``: (H, H·m)."""
    H, m = W.shape
    rows = np.repeat(np.arange(H), m)
    cols = np.arange(H * m)
    return sparse.csr_matrix((W.ravel(), (rows, cols)), shape=(H, H * m))


def exact_power(problem) -> PowerModel:
    """The exact affine power of a network whose COPs do not depend on temperature."""
    p0, W = problem.linear_power()
    return PowerModel(p0, _diag_power(W))


def state_intervals(problem, backoff: bool = True, band: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Proven bounds ``(lo, hi)``, each (H+1, n), on the nominal states of every plan that
    respects the actuator limits and (``band=True``) the tightened envelope.

    Interval arithmetic through ``x[k+1] = Ad x[k] + Bd u[k] + Ed d[k]`` from the given initial
    state, intersected with the band at every step ``k ≥ 1`` (the plan must keep it).  With
    ``band=False`` the bounds hold for every plan in the actuator box (the reachable set).
    """
    x_lo, x_hi = problem.envelope(backoff=backoff)
    Ad, Bd = problem.Ad, problem.Bd
    ApT, AnT = np.maximum(Ad, 0.0).T, np.minimum(Ad, 0.0).T
    drive = problem.d @ problem.Ed.T
    # the input and disturbance terms of every step at once (H, n)
    lo_in = np.minimum(problem.u_lo[:, None, :] * Bd, problem.u_hi[:, None, :] * Bd).sum(axis=2) + drive
    hi_in = np.maximum(problem.u_lo[:, None, :] * Bd, problem.u_hi[:, None, :] * Bd).sum(axis=2) + drive
    lo = np.empty((problem.H + 1, problem.n))
    hi = np.empty_like(lo)
    lo[0] = hi[0] = problem.x0
    if problem.n == 1:  # scalar recursion: plain floats are ~10× faster than tiny numpy calls
        ap, an = float(ApT[0, 0]), float(AnT[0, 0])
        l, h = float(problem.x0[0]), float(problem.x0[0])
        bl = x_lo[:, 0].tolist() if band else [-np.inf] * (problem.H + 1)
        bh = x_hi[:, 0].tolist() if band else [np.inf] * (problem.H + 1)
        li, hj = lo_in[:, 0].tolist(), hi_in[:, 0].tolist()
        out_lo, out_hi = [l], [h]
        for k in range(problem.H):
            nl = ap * l + an * h + li[k]
            nh = ap * h + an * l + hj[k]
            l2, h2 = max(nl, bl[k + 1]), min(nh, bh[k + 1])
            if l2 > h2:  # no plan keeps the band here: the LP will say infeasible
                l2, h2 = nl, nh
            l, h = l2, h2
            out_lo.append(l)
            out_hi.append(h)
        return np.array(out_lo)[:, None], np.array(out_hi)[:, None]
    for k in range(problem.H):
        nlo = lo[k] @ ApT + hi[k] @ AnT + lo_in[k]
        nhi = hi[k] @ ApT + lo[k] @ AnT + hi_in[k]
        if band:
            lo[k + 1] = np.maximum(nlo, x_lo[k + 1])
            hi[k + 1] = np.minimum(nhi, x_hi[k + 1])
            empty = lo[k + 1] > hi[k + 1]  # no plan keeps the band here: the LP will say infeasible
            lo[k + 1, empty], hi[k + 1, empty] = nlo[empty], nhi[empty]
        else:
            lo[k + 1], hi[k + 1] = nlo, nhi
    return lo, hi


def tighten_intervals(problem, lo: np.ndarray, hi: np.ndarray, nodes: list[int], *, backoff: bool = True,
                      decay: float = 1e-3, max_window: int = 6) -> tuple[np.ndarray, np.ndarray, dict]:
    """Tighter proven bounds on the states of ``nodes`` at steps ``1..H-1`` by optimisation
    (:func:`window_bounds` without inputs).  Returns new ``(lo, hi)`` and stats."""
    lo, hi, _, _, stats = window_bounds(problem, lo, hi, nodes, [], backoff=backoff, decay=decay, max_window=max_window)
    return lo, hi, stats


def window_bounds(problem, lo: np.ndarray, hi: np.ndarray, nodes: list[int], actuators: list[int], *,
                  backoff: bool = True, decay: float = 1e-3,
                  max_window: int = 6) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
    """Tighter proven bounds on the states of ``nodes`` at steps ``1..H-1`` and on the set-points
    of ``actuators`` at steps ``0..H-1``, by optimisation (optimality-based bound tightening).

    For each (step k, target, sense) a window LP over states ``x[a..b]`` and inputs ``u[a..b-1]``
    (``a = k − L``, ``b = k + L'``) with the exact dynamics as equalities, every state inside the
    valid interval ``[lo, hi]`` (which already holds the band) and the actuator box maximises or
    minimises the target.  Dropping what lies outside the window, ramp limits and budgets only
    enlarges the feasible set, so each window's optimum bounds every feasible plan.  All windows
    are independent blocks of ONE LP; each block's bound is proven from its own dual values
    (the safe bound of :func:`dual_bound` restricted to the block), never from the primal value.

    Returns ``(lo, hi, u_lo, u_hi, stats)``: states (H+1, n) and set-points (H, m).
    """
    t0 = time.perf_counter()
    H, n, m = problem.H, problem.n, problem.m
    rho = float(np.max(np.abs(np.linalg.eigvals(problem.Ad)))) if n else 0.0
    back = max_window if rho >= 1 else int(min(max_window, max(2, np.ceil(np.log(decay) / np.log(max(rho, 1e-12))))))
    fwd = min(back, 12)
    drive = problem.d @ problem.Ed.T
    blocks = []  # (k, kind, index, sense, var slice, row slice)
    c_parts, lb_parts, ub_parts = [], [], []
    rows, cols, vals, rhs = [], [], [], []
    nvar = nrow = 0
    Ad, Bd = problem.Ad, problem.Bd
    Ai, Aj = np.nonzero(Ad)
    Bi, Bj = np.nonzero(Bd)
    for k in range(0, H):
        targets = [("x", i) for i in nodes if k >= 1] + [("u", a) for a in actuators]
        if not targets:
            continue
        a, b = max(0, k - back), min(H, k + fwd)
        T = b - a + 1  # states a..b, inputs a..b-1
        nx, nu = T * n, (T - 1) * m
        bounds_lo = np.concatenate([lo[a:b + 1].ravel(), problem.u_lo[a:b].ravel()])
        bounds_hi = np.concatenate([hi[a:b + 1].ravel(), problem.u_hi[a:b].ravel()])
        # dynamics rows x[j+1] − Ad x[j] − Bd u[j] = drive[j] in window-local indices
        t = np.arange(T - 1)[:, None]
        loc_r = np.concatenate([(t * n + np.arange(n)).ravel(), (t * n + Ai).ravel(), (t * n + Bi).ravel()])
        loc_c = np.concatenate([((t + 1) * n + np.arange(n)).ravel(), (t * n + Aj).ravel(), (nx + t * m + Bj).ravel()])
        loc_v = np.concatenate([np.ones((T - 1) * n), np.tile(-Ad[Ai, Aj], T - 1), np.tile(-Bd[Bi, Bj], T - 1)])
        rhs_blk = drive[a:b].ravel()
        for kind, idx in targets:
            for sense in (-1.0, 1.0):  # −1: maximise the target, +1: minimise it
                rows.append(loc_r + nrow)
                cols.append(loc_c + nvar)
                vals.append(loc_v)
                rhs.append(rhs_blk)
                c = np.zeros(nx + nu)
                c[(k - a) * n + idx if kind == "x" else nx + (k - a) * m + idx] = sense
                c_parts.append(c)
                lb_parts.append(bounds_lo)
                ub_parts.append(bounds_hi)
                blocks.append((k, kind, idx, sense, slice(nvar, nvar + nx + nu), slice(nrow, nrow + (T - 1) * n)))
                nvar += nx + nu
                nrow += (T - 1) * n
    new_lo, new_hi = lo.copy(), hi.copy()
    u_lo, u_hi = problem.u_lo.astype(float).copy(), problem.u_hi.astype(float).copy()
    if not blocks:
        return new_lo, new_hi, u_lo, u_hi, {"seconds": time.perf_counter() - t0, "windows": 0}
    A_eq = sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(nrow, nvar))
    b_eq = np.concatenate(rhs)
    c = np.concatenate(c_parts)
    lbv, ubv = np.concatenate(lb_parts), np.concatenate(ub_parts)
    from scipy.optimize import linprog  # here: scipy.optimize costs a worker ~0.4 s to import
    res = linprog(c, A_eq=A_eq, b_eq=b_eq, bounds=np.column_stack([lbv, ubv]), method="highs", options=HIGHS_OPTIONS)
    if res.status != 0:  # infeasible windows: the planning LP will report it; keep the interval bounds
        return new_lo, new_hi, u_lo, u_hi, {"seconds": time.perf_counter() - t0, "status": res.message}
    y = res.eqlin.marginals
    r = c - A_eq.T @ y
    for k, kind, idx, sense, vs, rs in blocks:
        rv = r[vs]
        terms = np.concatenate([y[rs] * b_eq[rs], np.where(rv > 0, rv * lbv[vs], 0.0), np.where(rv < 0, rv * ubv[vs], 0.0)])
        bound = safe_sum(terms)
        L, Hh = (new_lo, new_hi) if kind == "x" else (u_lo, u_hi)
        if sense > 0:
            L[k, idx] = max(L[k, idx], bound)
        else:
            Hh[k, idx] = min(Hh[k, idx], -bound)
    return new_lo, new_hi, u_lo, u_hi, {"seconds": time.perf_counter() - t0, "window_back": back,
                                         "window_forward": fwd, "windows": len(blocks)}


def safe_sum(terms: np.ndarray) -> float:
    """``Σ terms`` minus a floating-point rounding allowance, so a bound summed from dual terms stays a bound."""
    return float(np.sum(terms)) - 8 * np.finfo(float).eps * (terms.size + 10) * float(np.sum(np.abs(terms)))


def _cop_breakpoint(act: Actuator, other: np.ndarray) -> np.ndarray:
    """Node temperature (°C) at which the lift reaches ``min_lift_k`` (COP is monotone on each side)."""
    m = act.cop
    if act.kind == "chiller":  # lift = other + ca − (x − ea)
        return other + m.condenser_approach_k + m.evaporator_approach_k - m.min_lift_k
    return other - m.evaporator_approach_k + m.min_lift_k - m.condenser_approach_k


def cop_range(act: Actuator, t_lo: np.ndarray, t_hi: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Smallest and largest COP over node temperatures in ``[t_lo, t_hi]`` (elementwise).

    The Carnot-fraction COP is monotone on either side of the lift clamp, so the extremes are at
    the interval ends or at the clamp's breakpoint.
    """
    cands = [t_lo, t_hi]
    if act.cop.model == "carnot_fraction":
        cands.append(np.clip(_cop_breakpoint(act, other), t_lo, t_hi))
    vals = np.stack([cop(act, t, other) for t in cands])
    return vals.min(axis=0), vals.max(axis=0)


def inverse_cop_and_slope(act: Actuator, t_node: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``f = 1/COP`` and ``df/dT_node`` (1/K) of a heat pump or chiller, elementwise.

    Carnot fraction, chiller: ``f = lift / (η (T_cold + 273.15))`` with ``T_cold = T_node − approach``;
    heat pump: ``f = lift / (η (T_hot + 273.15))`` with ``T_hot = T_node + approach``; the lift is
    clamped below at ``min_lift_k`` (where it is flat, only the denominator varies).
    """
    t_node = np.asarray(t_node, dtype=float)
    other = np.broadcast_to(np.asarray(other, dtype=float), t_node.shape)
    m = act.cop
    if m.model == "constant":
        return np.full(t_node.shape, 1.0 / m.value), np.zeros(t_node.shape)
    raw, ref = carnot_terms(act, t_node, other)
    lift = np.maximum(raw, m.min_lift_k)
    f = lift / (m.eta * ref)
    # d/dT of lift/(η ref): lift' = −1 (chiller) or +1 (heat pump) where unclamped, 0 where clamped; ref' = 1
    dlift = np.where(raw > m.min_lift_k, -1.0 if act.kind == "chiller" else 1.0, 0.0)
    df = (dlift * ref - lift) / (m.eta * ref * ref)
    return f, df


def _bisect_increasing(fun, a: np.ndarray, b: np.ndarray, iters: int = 60) -> np.ndarray:
    """Where the nondecreasing ``fun`` (elementwise) crosses 0 in ``[a, b]`` (clipped to the ends)."""
    a, b = a.copy(), b.copy()
    for _ in range(iters):
        mid = 0.5 * (a + b)
        neg = fun(mid) < 0
        a = np.where(neg, mid, a)
        b = np.where(neg, b, mid)
    return 0.5 * (a + b)


def _edge_min(act: Actuator, other: np.ndarray, ue: np.ndarray, beta: np.ndarray, t0: np.ndarray,
              t1: np.ndarray) -> np.ndarray:
    """A proven lower bound on ``min over T in [t0, t1] of ue·f(T) − β·T`` for a Carnot-fraction
    chiller (all (H,) arrays).  ``f`` is the larger of two smooth convex branches (the lift, or its
    clamp at ``min_lift_k``) that meet at the breakpoint; on each side of it the function is
    smooth and convex, so its minimum there is bounded below by the tangent at the (approximate)
    stationary point, whatever the error of that point."""
    m = act.cop
    hot = other + m.condenser_approach_k
    bp = _cop_breakpoint(act, other)  # colder than this, the lift is above the clamp

    def branch(t, clamped):
        ref = t - m.evaporator_approach_k + KELVIN
        lift = np.full(t.shape, m.min_lift_k) if clamped else hot - (t - m.evaporator_approach_k)
        dlift = 0.0 if clamped else -1.0
        return lift / (m.eta * ref), (dlift * ref - lift) / (m.eta * ref * ref)

    out = np.full(t0.shape, np.inf)
    for clamped, a, b in ((False, t0, np.minimum(t1, bp)), (True, np.maximum(t0, bp), t1)):
        live = a <= b
        a, b = np.where(live, a, t0), np.where(live, b, t0)
        ts = _bisect_increasing(lambda t: ue * branch(t, clamped)[1] - beta, a.astype(float), b.astype(float))
        fs, dfs = branch(ts, clamped)
        h = ue * fs - beta * ts
        dh = ue * dfs - beta
        low = h + np.minimum(np.minimum(dh * (a - ts), dh * (b - ts)), 0.0)
        out = np.where(live, np.minimum(out, low), out)
    return out


def envelope_cut(act: Actuator, other: np.ndarray, u0: np.ndarray, u1: np.ndarray, t0: np.ndarray, t1: np.ndarray,
                 u_at: np.ndarray, t_at: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A plane ``q ≥ α·u + β·T + γ`` under the chiller power ``u·f(T)`` (``f = 1/COP``, convex in
    the node temperature ``T``) over the box ``[u0, u1] × [t0, t1]``, touching its convex envelope
    near ``(u_at, t_at)``; all (H,) arrays, u in kW thermal, T in °C.

    ``u·f(T) − α u − β T`` is linear in ``u`` for each ``T``, so the plane is below ``u·f`` on the
    box iff it is on the edges ``u = u0`` and ``u = u1``; on each edge ``u_e f(T) − β T`` is convex
    in ``T`` and its minimum over ``[t0, t1]`` is bounded below by the tangent at the (approximate)
    stationary point.  ``γ`` takes the smaller edge bound (less a rounding allowance), so the cut
    is proven whatever the slopes; the slopes are those of the envelope's tangent plane at the
    point (its two contact points on the edges share the slope ``β = u0 f'(T0) = u1 f'(T1)``).
    """
    def f(t):
        return inverse_cop_and_slope(act, t, other)

    span = np.maximum(u1 - u0, 0.0)
    lam = np.clip((np.clip(u_at, u0, u1) - u0) / np.where(span > 0, span, 1.0), 0.02, 0.98)
    lam = np.where(span > 0, lam, 0.5)
    tw = np.clip(t_at, t0, t1)
    # contact point T1 on the edge u1 (T0 on u0 follows from λ T1 + (1 − λ) T0 = T)
    lo1 = np.maximum(t0, (tw - (1 - lam) * t1) / lam)
    hi1 = np.minimum(t1, (tw - (1 - lam) * t0) / lam)
    hi1 = np.maximum(hi1, lo1)

    def rep(a, k: int) -> np.ndarray:  # ``a`` over the boxes, ``k`` times end to end (k boxes' worth in one call)
        return np.tile(np.broadcast_to(np.asarray(a, dtype=float), u0.shape), k)

    other2 = rep(other, 2)

    def d_env(w1):  # both contact points' slopes in one call
        df = inverse_cop_and_slope(act, np.concatenate([w1, (tw - lam * w1) / (1 - lam)]), other2)[1]
        return u1 * df[:w1.size] - u0 * df[w1.size:]

    w1 = _bisect_increasing(d_env, lo1, hi1)
    w0 = np.clip((tw - lam * w1) / (1 - lam), t0, t1)
    f1, df1 = f(w1)
    f0, df0 = f(w0)
    # at an interior optimum both edges give the same slope; where a contact point sits on the
    # box's side only the other edge's slope is the envelope's: try both, keep the higher plane
    betas = [u1 * df1, u0 * df0]
    alphas = [np.where(span > 1e-12, (u1 * f1 - u0 * f0 - b * (w1 - w0)) / np.where(span > 1e-12, span, 1.0), f1)
              for b in betas]
    # the four (slope, edge) minima in one call: both slopes on both edges u0 and u1
    edge = _edge_min(act, rep(other, 4), np.concatenate([u0, u1, u0, u1]), np.concatenate([betas[0], betas[0], betas[1], betas[1]]),
                     rep(t0, 4), rep(t1, 4)).reshape(4, *u0.shape)
    best = None
    for j, (alpha, beta) in enumerate(zip(alphas, betas)):
        gamma = np.minimum(edge[2 * j] - alpha * u0, edge[2 * j + 1] - alpha * u1)
        scale = 1.0 + np.abs(gamma) + np.abs(alpha) * np.maximum(np.abs(u0), np.abs(u1)) \
            + np.abs(beta) * np.maximum(np.abs(t0), np.abs(t1))
        gamma = gamma - 1e-9 * scale
        if best is None:
            best = (alpha, beta, gamma)
        else:
            better = alpha * u_at + beta * t_at + gamma > best[0] * u_at + best[1] * t_at + best[2]
            best = tuple(np.where(better, new, old) for new, old in zip((alpha, beta, gamma), best))
    return best


def relaxed_power(problem, backoff: bool = True, n_cuts: int = 3, tighten: bool = True) -> PowerModel:
    """A power model whose feasible set contains every real plan with its true power.

    Linear actuators and the site load enter exactly; each temperature-dependent COP actuator
    gets a variable ``q`` with ``u/COP_max ≤ q ≤ u/COP_min`` over the proven temperature interval
    of its node.  For chillers (``1/COP`` convex and decreasing in the node temperature) the
    set-point's interval is proven too (:func:`window_bounds`: a feasible plan cannot cool much
    more or less than the band allows), and ``n_cuts²`` planes of the convex envelope of
    ``u·f(T)`` over the box of set-point × node temperature (:func:`envelope_cut`) bound ``q``
    from below; :func:`envelope_separator` adds more where the LP's solution sits.
    """
    net = problem.network
    p0, W = problem.linear_power(nonlinear="zero")
    relaxed: list[RelaxedActuator] = []
    lo = hi = ulo = uhi = None
    for a_i, a in enumerate(net.actuators):
        if a.nonlinear:
            if lo is None:
                lo, hi = state_intervals(problem, backoff=backoff)
                ulo, uhi = problem.u_lo.astype(float), problem.u_hi.astype(float)
                if tighten:
                    cop_nodes = sorted({net.index(b.node) for b in net.actuators if b.nonlinear})
                    cop_acts = [j for j, b in enumerate(net.actuators) if b.nonlinear]
                    lo, hi, ulo, uhi, _ = window_bounds(problem, lo, hi, cop_nodes, cop_acts, backoff=backoff)
                    crossed = ulo > uhi  # no feasible plan: the LP will say so; keep the box there
                    ulo, uhi = np.where(crossed, problem.u_lo, ulo), np.where(crossed, problem.u_hi, uhi)
            node = net.index(a.node)
            other = problem.d[:, net.boundary_columns[a.cop.boundary]]
            t_lo, t_hi = lo[:-1, node].copy(), hi[:-1, node].copy()
            c_min, c_max = cop_range(a, t_lo, t_hi, other)
            g_lo = 1.0 / c_max
            g_hi = np.where(c_min > 0, 1.0 / np.where(c_min > 0, c_min, 1.0), np.inf)
            r = RelaxedActuator(a_i, node, g_lo, g_hi, [], t_lo, t_hi, ulo[:, a_i].copy(), uhi[:, a_i].copy(), other)
            ref_cold = t_lo - (a.cop.evaporator_approach_k if a.kind == "chiller" else 0.0) + KELVIN
            if a.kind == "chiller" and n_cuts > 0 and np.all(ref_cold > 0):
                fracs = np.linspace(0.0, 1.0, n_cuts + 2)[1:-1]
                for fu in fracs:
                    for ft in fracs:
                        r.cuts.append(r.cut_at(a, r.u_lo + fu * (r.u_hi - r.u_lo), t_lo + ft * (t_hi - t_lo)))
            relaxed.append(r)
    return PowerModel(p0, _diag_power(W), relaxed)


def envelope_separator(problem, power: PowerModel, blocks: dict[str, slice], rel_tol: float = 1e-6):
    """``sep(z) -> (rows, rhs) | None``: envelope cuts (:func:`envelope_cut`) at the relaxed LP's
    solution ``z`` (variable ``blocks`` of :func:`industriverse.plan.lp.build_planning_lp`) for
    every step whose ``q`` lies below the envelope by more than ``rel_tol`` (relative), as sparse
    rows ``α u + β x − q ≤ −γ`` over the whole variable vector (outer approximation refined where
    the plan sits: Kelley's cutting planes on the convex envelope)."""
    H, n, m = problem.H, problem.n, problem.m
    acts = problem.network.actuators
    chillers = [(i, r) for i, r in enumerate(power.relaxed)
                if acts[r.actuator].kind == "chiller" and r.u_lo is not None and r.cuts]
    if not chillers:
        return None
    nvar = max(sl.stop for sl in blocks.values())

    def sep(z):
        R, C, V, rhs = [], [], [], []
        row = 0
        for i, r in chillers:
            u = z[blocks["u"]].reshape(H, m)[:, r.actuator]
            t = z[blocks["x"]].reshape(H + 1, n)[:-1, r.node]
            q = z[blocks[f"q{i}"]]
            alpha, beta, gamma = r.cut_at(acts[r.actuator], u, t)
            viol = alpha * u + beta * t + gamma - q > rel_tol * np.maximum(np.abs(q), 1e-3)
            ks = np.nonzero(viol)[0]
            for k in ks:
                R += [row] * 3
                C += [blocks["u"].start + k * m + r.actuator, blocks["x"].start + k * n + r.node, blocks[f"q{i}"].start + k]
                V += [alpha[k], beta[k], -1.0]
                rhs.append(-gamma[k])
                row += 1
        if not row:
            return None
        return sparse.csr_matrix((V, (R, C)), shape=(row, nvar)), np.array(rhs)

    return sep


def linearized_power(problem, u: np.ndarray) -> PowerModel:
    """First-order model of the true power around plan ``u`` (H, m) (exact for linear networks).

    ``P(v, y) ≈ P(u) + W (v − u) + D (y − x)`` on the plan ``v`` and its states ``y`` (the LP's
    state variables), with ``W = f(x)`` per COP actuator and ``D = u·f'(x)`` on its node's state at
    the step start: sparse, no prediction matrix.
    """
    net = problem.network
    x = problem.predict(u)
    P = problem.site_power(u, x)
    H, n = problem.H, problem.n
    W = problem.linear_power(nonlinear="zero")[1]
    rows, cols, vals = [], [], []
    for a_i, a in enumerate(net.actuators):
        if a.kind in ("heat_pump", "chiller") and a.cop.model == "carnot_fraction":
            node = net.index(a.node)
            other = problem.d[:, net.boundary_columns[a.cop.boundary]]
            f, df = inverse_cop_and_slope(a, x[:-1, node], other)
            W[:, a_i] = f
            rows.append(np.arange(H))
            cols.append(np.arange(H) * n + node)
            vals.append(u[:, a_i] * df)
    J = _diag_power(W)
    Jx = None
    p_const = P - J @ u.ravel()
    if rows:
        Jx = sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(H, (H + 1) * n))
        p_const = p_const - Jx @ x.ravel()
    return PowerModel(p_const, J, Jx=Jx)
