"""Planes under a chiller's power over the polytope of one step's state and its and the previous
step's set-points, so the relaxation sees how a set-point sets the next wall temperature.

The envelope cuts of :mod:`industriverse.plan.power` bound the power ``u_k·f(T_k)`` (``f = 1/COP``
of the node temperature ``T_k`` at the step start) over a *box* of set-point × temperature.  A
box forgets how ``T_k`` came about: the wall's temperature at a step start is an affine function
of the previous state and set-point, and the box envelope mixes a high set-point at a warm wall
with a low one at a cold wall — pairs each feasible, but not with the same previous step.  Here
the domain of step ``k`` is the polytope ``P_k`` of ``y = (x_{k−1}, u_{k−1}, u_k)`` (every node's
state one step earlier and the chiller's last two set-points, :func:`step_polytopes`)::

    x_{k−1} in its LP bounds (band, proven intervals),   u_{k−1}, u_k in their proven intervals,
    x_k = A x_{k−1} + B u_{k−1} + c_{k−1} and x_{k+1} = A x_k + B u_k + c_k in their bounds,
    v·x_{k−1} in the range A x_{k−2} + c gives it over the bounds of x_{k−2}, for v ⊥ B,
    Φ_j x_s + Γ_j u_s + Λ_j d_s in the band in force over step s (s = k−1, k) at a control sub-step j

(``c``: forecast, and the other actuators' range), which holds every feasible plan; ``T_k`` is an
affine function of ``y``.  The last rows are the continuous-time band of :mod:`industriverse.plan.substeps`
(exact zero-order-hold response, so they hold every feasible plan) at one control sub-step of each of the
polytope's steps, the (sub-step, node) that the plain polytope's vertices leave most
(:func:`chosen_substeps`; with several actuators: fixed fractions of the step for the banded nodes farthest
from the chiller, :func:`lagging_nodes`): without them the planes mix points such as "goods at their lower
limit, air and wall cold, compressor off then on hard" that meet the band at the samples while the goods
leave it within the step (cold-storage family, 96 steps, instance 1: the planes' gap 2.79 → 2.18 % with
the goods' band 3 minutes into each step).  A plane ``q_k ≥ α·y + γ`` under ``φ(y) = u_k·f(T_k(y))`` on ``P_k``:

* ``φ − α·y`` is linear in ``y`` on each slice ``T_k = const``, so its minimum over ``P_k`` lies
  at a vertex of a slice, i.e. on an edge of ``P_k`` (a line where ``d − 1`` independent rows hold
  at a side, clipped by the others; every such line is enumerated, :func:`step_edges`, on the
  polytope loosened by a rounding margin).
* On an edge ``u_k`` is affine in ``T_k``, so ``φ − α·y`` is ``K0 + K1·t + K2/t`` in the
  evaporator's absolute temperature ``t`` on each side of the lift clamp: its minimum is at an
  end or at ``sqrt(K2/K1)`` (:func:`edge_minimum`), exact up to rounding, for which ``γ`` keeps a
  margin.

The slopes ``α`` come from a small LP over the polytope's vertices (:class:`PlaneFitter`: the
plane of their lower convex hull at the relaxation's point); whatever they are, ``γ`` is the
proven minimum, so the cut holds for every feasible plan.  :func:`hull_bound` adds the planes as
lazy cuts where the relaxed plan sits (Kelley), and the LP's dual bound stays the proof.
"""
from __future__ import annotations

import itertools
import time

import numpy as np
from scipy import sparse

from industriverse.model.network import KELVIN
from industriverse.plan.power import inverse_cop_and_slope

MAX_DIM = 5  # y = (x_{k−1}, u_{k−1}, u_k) up to 3 nodes; 4 nodes drop u_{k−1}; more: no planes
HULL_ROUNDS = 30  # re-solves adding step-polytope planes where the relaxed plan sits
# the polytope also holds the band at these fractions of each of its steps (rounded to a control
# sub-step), for the banded nodes farthest from the chiller's node (see :func:`lagging_nodes`)
HULL_SUBSTEPS: tuple = (0.2,)
# instead (where it applies: one actuator), this many rows for each of the polytope's steps, the
# (sub-step, node) whose band the plain polytope's vertices leave by the most (:func:`chosen_substeps`):
# on the cold-storage family (96 steps) the final gaps of instances 0-7 go from 0.07/0.90/0.44/0.74/
# 1.26/0.98/0.59/1.18 % (HULL_SUBSTEPS alone) to 0.08/0.99/0.40/0.79/1.11/0.84/0.56/1.00 % for one more
# enumeration of the plain polytopes' edges (~0.3 s)
HULL_CHOSEN = 1
CHOOSE_STRIDE = 2  # rows chosen from the vertices of every 2nd step (the next step takes the same): the same bounds to ±0.01 points on instances 1, 4, 7, half the extra enumeration; 4: 7 loses 0.03
LAG = 1  # set-points before the step in y (1: the previous step's, whose choice sets the wall temperature)


def lagging_nodes(problem, node: int, banded: np.ndarray) -> np.ndarray:
    """The banded nodes farthest from ``node`` in the network's conductance graph (the nonzero
    off-diagonal entries of its continuous-time ``A``): heat from the chiller reaches them last, so
    their extremes within a step lag most behind the step's ends, where the sample rows bind."""
    A = problem.network.matrices[0]
    n = A.shape[0]
    adj = (np.abs(A) > 0) & ~np.eye(n, dtype=bool)
    dist = np.full(n, -1)
    dist[node] = 0
    front = [node]
    while front:
        nxt = []
        for i in front:
            for j in np.flatnonzero(adj[i]):
                if dist[j] < 0:
                    dist[j] = dist[i] + 1
                    nxt.append(j)
        front = nxt
    reach = [i for i in banded if dist[i] >= 0]
    if not reach:
        return np.zeros(0, dtype=int)
    far = max(dist[i] for i in reach)
    return np.array([i for i in reach if dist[i] == far], dtype=int)


def step_polytopes(problem, r, lp, lag: int = 1, substeps: tuple = (),
                   chosen: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The polytope of each step ``k`` over ``y = (x_{k−L}, u_{k−L}, …, u_k)`` (``L = lag``, fewer
    at the horizon's start), ``lo[k] ≤ G[k] y ≤ hi[k]``, for relaxed chiller ``r``
    (:class:`industriverse.plan.power.RelaxedActuator`) and the planning LP ``lp`` (its variable
    bounds: the band and the proven state intervals): the state ``x_{k−L}`` and the set-points in
    their boxes, every later state up to ``x_{k+1}`` — affine in ``y`` by the exact dynamics — in
    its bounds, and ``v·x_{k−L}`` in the range ``v·(A x_{k−L−1} + c)`` takes over the bounds of
    ``x_{k−L−1}`` for the directions ``v ⊥ B`` (the set-point drops out exactly: one more step of
    history at no extra dimension).  Holds every feasible plan.  Returns ``(G, lo, hi, T, start)``: ``G`` (H, R, d),
    ``T`` (H, d + 1) the node's temperature at the step start ``x_k[node] = T[k, :d]·y + T[k, d]``,
    ``start`` (H,) the step of ``y``'s state (``max(k − L, 0)``; set-points past ``k`` are pinned to 0).
    With other actuators on the network (their set-points are not in ``y``) ``lag`` must be 0.
    ``substeps``: fractions of a step; at the control sub-step nearest each, the band in force over
    each of the polytope's steps binds the state of the :func:`lagging_nodes` too (one row per
    fraction, node and step; a node without a band there gets a copy of the first row).
    ``chosen``: (H, K, 3) integer rows ``(offset, j, node)`` instead: at step ``k`` the band in force
    over step ``start[k] + offset`` binds ``node``'s state at its sub-step ``j`` (K rows per step,
    e.g. from :func:`chosen_substeps`)."""
    H, n, m = problem.H, problem.n, problem.m
    a, node = r.actuator, r.node
    xs, us = lp.blocks["x"], lp.blocks["u"]
    xlo, xhi = lp.lb[xs].reshape(H + 1, n).copy(), lp.ub[xs].reshape(H + 1, n).copy()
    xlo[:H, node] = np.maximum(xlo[:H, node], r.t_lo)
    xhi[:H, node] = np.minimum(xhi[:H, node], r.t_hi)
    ulo = lp.lb[us].reshape(H, m).copy()
    uhi = lp.ub[us].reshape(H, m).copy()
    if r.u_lo is not None:
        ulo[:, a] = np.maximum(ulo[:, a], r.u_lo)
        uhi[:, a] = np.minimum(uhi[:, a], r.u_hi)
    if m > 1:
        lag = 0  # the other set-points move x_k[node] too: only the state itself is exact
    d = n + lag + 1
    # the next state's forecast drive plus the other actuators' range (their set-points are free here)
    drive = problem.d @ problem.Ed.T  # (H, n)
    c_lo, c_hi = drive.copy(), drive.copy()
    for b in range(m):
        if b != a:
            t1, t2 = ulo[:, b, None] * problem.Bd[None, :, b], uhi[:, b, None] * problem.Bd[None, :, b]
            c_lo += np.minimum(t1, t2)
            c_hi += np.maximum(t1, t2)
    # directions that do not see this chiller's set-point: v·x_{j+1} = v·(A x_j + c) whatever u_j
    Bv = problem.Bd[:, a]
    perp = np.linalg.svd(Bv[None, :])[2][1:] if n > 1 else np.zeros((0, n))  # (n−1, n), orthonormal, ⊥ B
    sub = None
    if chosen is not None and n > 1:
        from industriverse.plan.substeps import bands_in_force, substep_response

        resp = substep_response(problem)
        b_lo, b_hi = bands_in_force(problem)
        sub = (resp, [], np.zeros(0, dtype=int), b_lo, b_hi)
    elif substeps and n > 1:
        from industriverse.plan.substeps import bands_in_force, substep_response

        resp = substep_response(problem)
        js = sorted({min(max(int(round(f * resp.S)), 1), resp.S - 1) for f in substeps}) if resp.S > 1 else []
        b_lo, b_hi = bands_in_force(problem)
        banded = lagging_nodes(problem, node, np.flatnonzero(np.isfinite(b_lo).any(axis=0) | np.isfinite(b_hi).any(axis=0)))
        sub = (resp, js, banded, b_lo, b_hi)
    n_sub = 0 if sub is None else len(sub[1]) * len(sub[2]) * (lag + 1) + (0 if chosen is None else chosen.shape[1])
    R = n + (lag + 1) + n * (lag + 1) + len(perp) + n_sub
    G = np.zeros((H, R, d))
    lo = np.zeros((H, R))
    hi = np.zeros((H, R))
    T = np.zeros((H, d + 1))
    start = np.zeros(H, dtype=int)
    Ad, Ba = problem.Ad, problem.Bd[:, a]
    def sub_row(step, jj, i, Xprev, U, xcp_lo, xcp_hi, k):
        """The band in force over ``step`` at its sub-step ``jj`` on node ``i`` (plan/substeps.py):
        ``Φ_j x_step + Γ_j u_step + Λ_j d_step`` in [band lo, band hi], ``x_step = Xprev y + x_c``
        with ``x_c`` in [xcp_lo, xcp_hi] and the other actuators over their range."""
        resp, _, _, b_lo, b_hi = sub
        Phi, Gam = resp.Phi[jj - 1], resp.Gam[jj - 1][:, a]
        ld = resp.Lam[jj - 1] @ problem.d[step]
        Xs = Phi @ Xprev + np.outer(Gam, U)
        ppos, pneg = np.maximum(Phi, 0.0), np.minimum(Phi, 0.0)
        sc_lo, sc_hi = ppos @ xcp_lo + pneg @ xcp_hi, ppos @ xcp_hi + pneg @ xcp_lo
        for b in range(m):  # the other actuators over the sub-step
            if b != a:
                g1, g2 = ulo[step, b] * resp.Gam[jj - 1][:, b], uhi[step, b] * resp.Gam[jj - 1][:, b]
                sc_lo, sc_hi = sc_lo + np.minimum(g1, g2), sc_hi + np.maximum(g1, g2)
        l_, h_ = b_lo[step, i] - ld[i] - sc_hi[i], b_hi[step, i] - ld[i] - sc_lo[i]
        if np.isfinite(l_) or np.isfinite(h_):
            return Xs[i], (l_ if np.isfinite(l_) else -1e6), (h_ if np.isfinite(h_) else 1e6)
        return G[k, 0].copy(), lo[k, 0], hi[k, 0]  # no band there: a copy of the first box row

    for k in range(H):
        s = max(k - lag, 0)
        start[k] = s
        maps = {}
        G[k, :n, :n] = np.eye(n)
        lo[k, :n], hi[k, :n] = xlo[s], xhi[s]
        X = np.zeros((n, d))  # x_j = X y + x_c, x_c in [xc_lo, xc_hi] (the other actuators' ranges)
        X[:, :n] = np.eye(n)
        xc_lo, xc_hi = np.zeros(n), np.zeros(n)
        row = n
        for j in range(lag + 1):
            col = n + j
            step = s + j
            G[k, row, col] = 1.0
            if step > k:  # a padding set-point (near the horizon's start): fixed at 0
                lo[k, row] = hi[k, row] = 0.0
                row += 1
                continue
            lo[k, row], hi[k, row] = ulo[step, a], uhi[step, a]
            row += 1
        j = 0
        for step in range(s, k + 1):
            if step == k:
                T[k, :d], T[k, d] = X[node], xc_lo[node]
            U = np.zeros(d)
            U[n + j] = 1.0
            Xprev, xcp_lo, xcp_hi = X, xc_lo, xc_hi
            X = Ad @ X + np.outer(Ba, U)
            pos, neg = np.maximum(Ad, 0.0), np.minimum(Ad, 0.0)
            xc_lo, xc_hi = pos @ xc_lo + neg @ xc_hi + c_lo[step], pos @ xc_hi + neg @ xc_lo + c_hi[step]
            if sub is not None:
                maps[step - s] = (step, Xprev, U, xcp_lo, xcp_hi)
                for jj in sub[1]:
                    for i in sub[2]:
                        G[k, row], lo[k, row], hi[k, row] = sub_row(step, jj, i, Xprev, U, xcp_lo, xcp_hi, k)
                        row += 1
            G[k, row:row + n] = X
            lo[k, row:row + n] = xlo[step + 1] - xc_hi
            hi[k, row:row + n] = xhi[step + 1] - xc_lo
            row += n
            j += 1
        if s >= 1:
            # x_s must be reachable from some x_{s−1} in its bounds, along the directions ⊥ B
            pos, neg = np.maximum(perp @ Ad, 0.0), np.minimum(perp @ Ad, 0.0)
            vp, vn = np.maximum(perp, 0.0), np.minimum(perp, 0.0)
            G[k, row:row + len(perp), :n] = perp
            lo[k, row:row + len(perp)] = pos @ xlo[s - 1] + neg @ xhi[s - 1] + vp @ c_lo[s - 1] + vn @ c_hi[s - 1]
            hi[k, row:row + len(perp)] = pos @ xhi[s - 1] + neg @ xlo[s - 1] + vp @ c_hi[s - 1] + vn @ c_lo[s - 1]
            row += len(perp)
        if chosen is not None and sub is not None:
            for off, jj, i in chosen[k]:
                if off in maps and 1 <= jj < sub[0].S:
                    G[k, row], lo[k, row], hi[k, row] = sub_row(maps[off][0], jj, i, *maps[off][1:], k)
                else:  # no such step in this polytope: a copy of the first box row
                    G[k, row], lo[k, row], hi[k, row] = G[k, 0], lo[k, 0], hi[k, 0]
                row += 1
        while row < R:  # pad unused rows (near the start) with copies of the first box row
            G[k, row] = G[k, 0]
            lo[k, row], hi[k, row] = lo[k, 0], hi[k, 0]
            row += 1
    return G, lo, hi, T, start


def chosen_substeps(problem, r, lp, lag: int = 1, per_step: int = 1, steps: np.ndarray | None = None) -> np.ndarray | None:
    """Sub-step band rows for :func:`step_polytopes` (``chosen``), ``per_step`` for each of the
    polytope's steps (offsets ``0..lag``): the (sub-step, banded node) whose band the vertices of the
    polytope *without* sub-step rows leave by the most.  The vertices are the points the planes mix
    (the relaxation's "components"), so these rows cut where it matters.  Only a choice: any rows of
    the continuous-time band hold every feasible plan.  None when there is nothing to choose.
    ``steps``: only these steps get rows (the others get copies of a box row)."""
    from industriverse.plan.substeps import bands_in_force, substep_response

    H, n, m = problem.H, problem.n, problem.m
    if n < 2 or m > 1:
        return None
    resp = substep_response(problem)
    if resp.S < 2:
        return None
    b_lo, b_hi = bands_in_force(problem)
    banded = np.flatnonzero(np.isfinite(b_lo).any(axis=0) | np.isfinite(b_hi).any(axis=0))
    if banded.size == 0:
        return None
    G, lo, hi, T, start = step_polytopes(problem, r, lp, lag=lag)
    d = G.shape[2]
    act = np.arange(H) if steps is None else np.asarray(steps, dtype=int)
    Y0, Y1, ok = np.zeros((H, 1, d)), np.zeros((H, 1, d)), np.zeros((H, 1), dtype=bool)
    # the vertices of every CHOOSE_STRIDE-th step of ``act``; the steps between take its choice
    look = act[::CHOOSE_STRIDE]
    if look.size:
        a0, a1, aok = step_edges(G[look], lo[look], hi[look], T=T[look])
        Y0, Y1, ok = (np.zeros((H,) + a0.shape[1:]), np.zeros((H,) + a0.shape[1:]), np.zeros((H, aok.shape[1]), dtype=bool))
        Y0[look], Y1[look], ok[look] = a0, a1, aok
    ends = np.concatenate([Y0, Y1], axis=1)  # every vertex is an end of some segment
    both = np.concatenate([ok, ok], axis=1)
    verts = [np.unique(np.round(ends[k][both[k]], 6), axis=0) for k in range(H)]
    L = max(max(len(v) for v in verts), 1)
    V = np.zeros((H, L, d))
    live = np.zeros((H, L), dtype=bool)
    for k, v in enumerate(verts):
        V[k, :len(v)], live[k, :len(v)] = v, True
    a = r.actuator
    Ad, Ba = problem.Ad, problem.Bd[:, a]
    drive = problem.d @ problem.Ed.T
    Phi = resp.Phi[:, banded, :]  # (J, nb, n)
    Gam = resp.Gam[:, banded, a]  # (J, nb)
    Lam = np.einsum("jbe,ke->kjb", resp.Lam[:, banded, :], problem.d)  # (H, J, nb)
    offs = lag + 1
    out = np.zeros((H, offs * per_step, 3), dtype=int)
    x = V[..., :n]
    for off in range(offs):
        step = start + off  # (H,)
        valid = step <= np.arange(H)
        stp = np.minimum(step, H - 1)
        u = V[..., n + off]  # (H, 2L)
        val = (np.einsum("jbn,hvn->hvjb", Phi, x) + u[..., None, None] * Gam[None, None]
               + Lam[stp][:, None])  # (H, 2L, J, nb)
        blo, bhi = b_lo[stp][:, banded], b_hi[stp][:, banded]  # (H, nb)
        with np.errstate(invalid="ignore"):
            viol = np.maximum(blo[:, None, None, :] - val, val - bhi[:, None, None, :])
        viol = np.where(live[..., None, None] & np.isfinite(viol), viol, -np.inf).max(axis=1)  # (H, J, nb)
        flat = viol.reshape(H, -1)
        best = np.argsort(-flat, axis=1, kind="stable")[:, :per_step]
        jj, bb = np.unravel_index(best, viol.shape[1:])
        valid &= np.isin(np.arange(H), act)
        out[:, off * per_step:(off + 1) * per_step, 0] = np.where(valid[:, None], off, offs + 1)  # offset past k: padded
        out[:, off * per_step:(off + 1) * per_step, 1] = jj + 1
        out[:, off * per_step:(off + 1) * per_step, 2] = banded[bb]
        x = np.einsum("ij,hvj->hvi", Ad, x) + u[..., None] * Ba + drive[stp][:, None]
    if CHOOSE_STRIDE > 1 and look.size:
        src = look[np.clip(np.searchsorted(look, act, side="right") - 1, 0, look.size - 1)]
        out[act, :, 1:] = out[src, :, 1:]  # (sub-step, node); each step keeps its own offsets
    return out


def step_edges(G: np.ndarray, lo: np.ndarray, hi: np.ndarray, tol: float = 1e-9, chunk: int = 8,
               T: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Segments ``(Y0, Y1, ok)``, (H, L, d), (H, L, d), (H, L): every line where ``d − 1`` of the
    rows ``lo ≤ G[k] y ≤ hi`` hold at one of their sides, clipped to the polytope (loosened by ``tol``
    relative, so rounding never shrinks it).  They contain every edge of every polytope (and so
    every vertex of every slice of it by a hyperplane).  With ``T`` (H, ≥ d; the slicing
    direction in its first ``d`` columns) the lines along which ``T·y`` is constant are left out:
    they hold no vertex of a slice ``T·y = t`` (their rows are dependent on it), and their ends,
    the polytope's vertices, are ends of lines that cross the slices.  Computed ``chunk`` steps at
    a time (small arrays stay in cache)."""
    d = G.shape[2]
    Td = None if T is None else T[:, :d]
    parts = [_edges(G[i:i + chunk], lo[i:i + chunk], hi[i:i + chunk], tol, None if Td is None else Td[i:i + chunk])
             for i in range(0, G.shape[0], chunk)]
    L = max(p[0].shape[1] for p in parts)
    pad = lambda A, v: np.concatenate([A, np.full((A.shape[0], L - A.shape[1]) + A.shape[2:], v, dtype=A.dtype)], axis=1)
    return (np.concatenate([pad(p[0], 0.0) for p in parts]), np.concatenate([pad(p[1], 0.0) for p in parts]),
            np.concatenate([pad(p[2], False) for p in parts]))


FAR = 1e300  # a stand-in bound for rows that do not clip a line (the lines' coordinates are ≪ 1e150)


def _cofactors(Gs: np.ndarray) -> np.ndarray:
    """The generalised cross product (signed maximal minors) of the ``d − 1`` rows of each (…, d−1, d)
    matrix: a vector orthogonal to them, of norm ``sqrt(det(Gs Gsᵀ))``.  For ``d = 5`` by Laplace
    expansion along the first two rows (2×2 minors, elementwise: ~10× faster than batched LU)."""
    d = Gs.shape[-1]
    out = np.empty(Gs.shape[:-2] + (d,))
    if d != 5:
        for i in range(d):
            out[..., i] = (-1) ** i * np.linalg.det(np.delete(Gs, i, axis=-1))
        return out
    a, b, c, e = (Gs[..., i, :] for i in range(4))
    top = {(i, j): a[..., i] * b[..., j] - a[..., j] * b[..., i] for i in range(5) for j in range(i + 1, 5)}
    bot = {(i, j): c[..., i] * e[..., j] - c[..., j] * e[..., i] for i in range(5) for j in range(i + 1, 5)}
    for i in range(5):
        cols = [j for j in range(5) if j != i]
        det = 0.0
        for p, q in itertools.combinations(range(4), 2):  # columns (p, q) of the 4 kept to the first two rows
            rest = [t for t in range(4) if t not in (p, q)]
            sign = (-1) ** (p + q + 1)  # (−1)^((p+1)+(q+1)+1+2) with 1-based rows 1, 2 and columns p+1, q+1
            det = det + sign * top[(cols[p], cols[q])] * bot[(cols[rest[0]], cols[rest[1]])]
        out[..., i] = (-1) ** i * det
    return out


def _edges(G: np.ndarray, lo: np.ndarray, hi: np.ndarray, tol: float, T: np.ndarray | None):
    """:func:`step_edges` on a block of steps."""
    H, R, d = G.shape
    # the lines lie on the constraints loosened by tol; they are clipped by (and checked against)
    # the constraints loosened by 2·tol, so a line's own constraints, met to rounding, never reject it
    pad = tol * (1.0 + np.maximum(np.abs(lo), np.abs(hi)))
    lo_c, hi_c = lo - 2 * pad, hi + 2 * pad
    lo, hi = lo - pad, hi + pad
    sets = np.array(list(itertools.combinations(range(R), d - 1)))  # (S, d−1)
    sides = np.array(list(itertools.product((0, 1), repeat=d - 1)))  # (2^(d−1), d−1)
    Gs = G[:, sets]  # (H, S, d−1, d)
    dirs = _cofactors(Gs)  # the generalised cross product of the d−1 rows
    norm = np.linalg.norm(dirs, axis=2)
    scale = np.prod(np.linalg.norm(Gs, axis=3), axis=2)
    ok_set = norm > 1e-9 * np.maximum(scale, 1e-300)
    dirs = dirs / np.where(ok_set, norm, 1.0)[..., None]
    GGt = np.einsum("hsid,hsjd->hsij", Gs, Gs)
    # dependent rows (to rounding) define no edge: an edge is where d − 1 independent rows hold
    ok_set &= np.linalg.det(GGt) > 1e-24 * np.prod(np.einsum("hsii->hsi", GGt), axis=2)
    if T is not None:  # lines inside a slice (to rounding): no slice vertex on them
        ok_set &= np.abs(np.einsum("hsd,hd->hs", dirs, T)) > 1e-12 * np.linalg.norm(T, axis=1)[:, None]
    live = ok_set.any(axis=0)  # the row sets that give a line at some step of the block
    sets, Gs, dirs, GGt, ok_set = sets[live], Gs[:, live], dirs[:, live], GGt[:, live], ok_set[:, live]
    GGt[~ok_set] = np.eye(d - 1)
    pinv = np.matmul(np.swapaxes(Gs, 2, 3), np.linalg.inv(GGt))  # (H, S, d, d−1)
    bounds = np.stack([lo, hi], axis=-1)  # (H, R, 2)
    rhs = bounds[:, sets[:, None, :], sides[None, :, :]]  # (H, S, P, d−1)
    y0 = np.matmul(rhs, np.swapaxes(pinv, 2, 3))  # (H, S, P, d): the minimum-norm point of each line
    # clip by every row: the side each row meets first along ±dir does not depend on the sides chosen
    gd = np.einsum("hrd,hsd->hsr", G, dirs)  # (H, S, R)
    flat = np.abs(gd) <= 1e-12
    # a row parallel to the line does not clip it (a far stand-in bound, 1e300, takes its place)
    inv = np.where(flat, 1.0, 1.0 / np.where(flat, 1.0, gd))[:, :, None, :]
    up = np.where(flat, FAR, np.where(gd > 0, hi_c[:, None, :], lo_c[:, None, :]))[:, :, None, :]
    down = np.where(flat, -FAR, np.where(gd > 0, lo_c[:, None, :], hi_c[:, None, :]))[:, :, None, :]
    gy = np.matmul(y0, np.swapaxes(G, 1, 2)[:, None])  # (H, S, P, R)
    buf = np.subtract(up, gy)
    tau_hi = np.multiply(buf, inv, out=buf).min(axis=3)
    buf = np.subtract(down, gy, out=buf)
    tau_lo = np.multiply(buf, inv, out=buf).max(axis=3)
    tau_hi[tau_hi >= 0.5 * FAR] = np.inf
    tau_lo[tau_lo <= -0.5 * FAR] = -np.inf
    # a row parallel to the line holds along all of it or nowhere: check it at the line's point.  A
    # line's own rows hold there by construction (to rounding, within the margin) and are not checked,
    # which can only keep more lines
    own = np.zeros((sets.shape[0], R), dtype=bool)
    own[np.arange(sets.shape[0])[:, None], sets] = True
    hh, ss, rr = np.nonzero(flat & ~own[None])
    inside = np.ones(y0.shape[:3], dtype=bool)
    if hh.size:
        g = np.einsum("fpd,fd->fp", y0[hh, ss], G[hh, rr])
        bad = (g < lo_c[hh, rr][:, None]) | (g > hi_c[hh, rr][:, None])
        np.logical_and.at(inside, (hh, ss), ~bad)
    ok = ok_set[:, :, None] & inside & (tau_lo <= tau_hi) & np.isfinite(tau_lo) & np.isfinite(tau_hi)
    tau_lo, tau_hi = np.where(ok, tau_lo, 0.0), np.where(ok, tau_hi, 0.0)
    D = np.broadcast_to(dirs[:, :, None, :], y0.shape)
    Y0 = (y0 + tau_lo[..., None] * D).reshape(H, -1, d)
    Y1 = (y0 + tau_hi[..., None] * D).reshape(H, -1, d)
    ok = ok.reshape(H, -1)
    # keep only the live segments (the same count per step, padded with a dead one)
    cnt = ok.sum(axis=1)
    L = max(int(cnt.max(initial=1)), 1)
    order = np.argsort(~ok, axis=1, kind="stable")[:, :L]
    take = lambda A: np.take_along_axis(A, order[..., None] if A.ndim == 3 else order, axis=1)
    return take(Y0), take(Y1), take(ok)


def _branch_terms(act, other: np.ndarray, clamped: bool):
    """``(P, Q, c0)`` with ``f = (P + Q·t)/(η t)``, ``t = T + c0`` (evaporator, K) on one side of the clamp."""
    cm = act.cop
    c0 = KELVIN - cm.evaporator_approach_k
    if clamped:
        return np.full(other.shape, cm.min_lift_k), 0.0, c0
    return other + cm.condenser_approach_k + KELVIN, -1.0, c0


def edge_minimum(act, other: np.ndarray, T: np.ndarray, U: np.ndarray, alpha: np.ndarray, Y0: np.ndarray,
                 Y1: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Proven ``min over the segments of φ(y) − α·y`` per step (H,), ``φ = u·f(T)`` (chiller,
    Carnot fraction with the lift clamp), ``T = T[k, :d]·y + T[k, d]`` °C and ``u = U[k]·y`` kW;
    ``other`` (H,) the condenser side's temperature, °C; ``alpha`` (H, d); segments (H, L, d)
    with mask ``ok`` (H, L)."""
    cm = act.cop
    bp = other + cm.condenser_approach_k + cm.evaporator_approach_k - cm.min_lift_k  # colder: unclamped lift
    D = Y1 - Y0
    d = Y0.shape[2]
    w0, dw = np.einsum("hld,hd->hl", Y0, T[:, :d]) + T[:, d, None], np.einsum("hld,hd->hl", D, T[:, :d])
    u0, du = np.einsum("hld,hd->hl", Y0, U), np.einsum("hld,hd->hl", D, U)
    L0, dL = np.einsum("hld,hd->hl", Y0, alpha), np.einsum("hld,hd->hl", D, alpha)
    oth = np.broadcast_to(other[:, None], w0.shape)

    def value(tau):
        w, u = w0 + tau * dw, u0 + tau * du
        return u * inverse_cop_and_slope(act, w, oth)[0] - (L0 + tau * dL)

    best = np.minimum(value(0.0), value(1.0))
    moving = ok & (np.abs(dw) > 1e-12)
    sdw = np.where(moving, dw, 1.0)
    r = du / sdw  # u = p + r·T along the edge
    s = dL / sdw  # α·y = L0 + s·(T − w0)
    bpb = np.broadcast_to(bp[:, None], w0.shape)
    wa, wb = np.minimum(w0, w0 + dw), np.maximum(w0, w0 + dw)
    for clamped in (False, True):
        P, Q, c0 = _branch_terms(act, oth, clamped)
        a, b = (wa, np.minimum(wb, bpb)) if not clamped else (np.maximum(wa, bpb), wb)
        live = moving & (a < b)
        e = u0 - r * w0 - r * c0  # u = e + r·t
        K2 = e * P / cm.eta
        K1 = r * Q / cm.eta - s
        with np.errstate(divide="ignore", invalid="ignore"):
            tstar = np.sqrt(np.where((K2 > 0) & (K1 > 0), K2 / np.where(K1 > 0, K1, 1.0), 0.0))
        wstar = np.clip(tstar - c0, a, b)
        tau = np.clip((wstar - w0) / sdw, 0.0, 1.0)
        cand = np.minimum(np.minimum(value(np.clip((a - w0) / sdw, 0, 1)), value(np.clip((b - w0) / sdw, 0, 1))), value(tau))
        best = np.where(live, np.minimum(best, cand), best)
    best = np.where(ok, best, np.inf)
    out = best.min(axis=1)
    # rounding: the stationary point and the sums carry relative errors ~1e-15
    mag = np.max(np.where(ok, np.abs(u0) + np.abs(du) + np.abs(L0) + np.abs(dL), 0.0), axis=1)
    return out - 1e-9 * (1.0 + mag)


class PlaneFitter:
    """Per block ``k``: the plane ``α·y + γ`` of the lower convex hull of sample points at a
    point ``at[k]`` — ``min Σ λ_i values[k, i]`` s.t. ``Σ λ_i (points[k, i], 1) = (at[k], 1)``,
    ``λ ≥ 0`` (with slack on the point rows at ``slope_max``: ``|α| ≤ slope_max``), ``(α, γ)`` its
    row duals.  One HiGHS model for all blocks, kept between calls: a new point only changes
    the right-hand side, so the dual simplex restarts from the last basis.  Not a proof: the
    caller proves its own ``γ``."""

    def __init__(self, points: np.ndarray, values: np.ndarray, mask: np.ndarray, slope_max: float = 1e3):
        from industriverse.plan.lp import new_highs
        import highspy

        K, N, d = points.shape
        self.K, self.d = K, d
        kk, ii = np.nonzero(mask)
        nc = kk.size
        # columns: λ (masked samples), then s+ and s− per block and point row
        rows = (kk[:, None] * (d + 1) + np.arange(d + 1)[None, :]).ravel()
        cols = np.repeat(np.arange(nc), d + 1)
        vals = np.concatenate([points[kk, ii], np.ones((nc, 1))], axis=1).ravel()
        srow = (np.arange(K)[:, None] * (d + 1) + np.arange(d)[None, :]).ravel()
        ns = srow.size
        rows = np.concatenate([rows, srow, srow])
        cols = np.concatenate([cols, nc + np.arange(ns), nc + ns + np.arange(ns)])
        vals = np.concatenate([vals, np.ones(ns), -np.ones(ns)])
        A = sparse.csc_matrix((vals, (rows, cols)), shape=(K * (d + 1), nc + 2 * ns))
        c = np.concatenate([values[kk, ii], np.full(2 * ns, slope_max)])
        # start at each block's first sample (a feasible right-hand side); a block without samples
        # (a step that gets no planes) asks for no weight
        b = np.concatenate([points[:, 0], mask.any(axis=1)[:, None].astype(float)], axis=1).ravel()
        self.h = h = new_highs({"primal_feasibility_tolerance": 1e-7, "dual_feasibility_tolerance": 1e-7,
                                "solver": "simplex", "simplex_strategy": 1})
        inf = highspy.kHighsInf
        h.passModel(int(c.size), int(b.size), int(A.nnz), int(highspy.MatrixFormat.kColwise),
                    int(highspy.ObjSense.kMinimize), 0.0, c, np.zeros(c.size), np.full(c.size, inf), b, b,
                    A.indptr.astype(np.int32), A.indices.astype(np.int32), A.data, np.zeros(c.size, dtype=np.int32))
        self.b = b

    def fit(self, at: np.ndarray, blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(α (K', d), γ (K',))`` at the points ``at`` (K', d) of ``blocks`` (K',)."""
        import highspy

        d = self.d
        b = self.b.reshape(self.K, d + 1)
        b[blocks, :d] = at
        idx = (blocks[:, None] * (d + 1) + np.arange(d)[None, :]).ravel().astype(np.int32)
        v = at.ravel()
        self.h.changeRowsBounds(idx.size, idx, v, v)
        self.h.run()
        if self.h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            return np.zeros((len(blocks), d)), np.full(len(blocks), -np.inf)
        y = np.asarray(self.h.getSolution().row_dual, dtype=float).reshape(self.K, d + 1)[blocks]
        return y[:, :d], y[:, d]


class StepHull:
    """The polytopes (:func:`step_polytopes`), their edges and the samples on them of one relaxed
    chiller, built once; :meth:`cuts_at` gives proven planes at given points."""

    def __init__(self, problem, r, lp, q_block: str, lag: int = LAG, steps: np.ndarray | None = None,
                 chosen: int | None = None):
        self.problem, self.r = problem, r
        self.act = problem.network.actuators[r.actuator]
        self.q_block = q_block
        t0 = time.perf_counter()
        per = HULL_CHOSEN if chosen is None else chosen
        chosen = chosen_substeps(problem, r, lp, lag=lag, per_step=per, steps=steps) if per > 0 else None
        G, lo, hi, self.T, self.start = step_polytopes(problem, r, lp, lag=lag, substeps=HULL_SUBSTEPS, chosen=chosen)
        H, n = problem.H, problem.n
        # ``steps``: only these steps get planes (the others keep no segment)
        self.active = np.ones(H, dtype=bool) if steps is None else np.isin(np.arange(H), steps)
        act = np.flatnonzero(self.active)
        Y0, Y1, ok = step_edges(G[act], lo[act], hi[act], T=self.T[act])
        self.Y0 = np.zeros((H,) + Y0.shape[1:])
        self.Y1 = np.zeros_like(self.Y0)
        self.ok = np.zeros((H, ok.shape[1]), dtype=bool)
        self.Y0[act], self.Y1[act], self.ok[act] = Y0, Y1, ok
        self.d = d = G.shape[2]
        self.lag = d - n - 1
        self.U = np.zeros((H, d))
        self.U[np.arange(H), n + np.arange(H) - self.start] = 1.0  # u_k's coordinate
        # the planes are fitted to the polytopes' vertices (the segments' ends, each once); the
        # curvature along the edges only enters the proven γ
        ends = np.concatenate([self.Y0, self.Y1], axis=1)
        live = np.concatenate([self.ok, self.ok], axis=1)
        verts = [np.unique(np.round(ends[k][live[k]], 6), axis=0) for k in range(H)]
        V = max(max(len(v) for v in verts), 1)
        self.pts = np.zeros((H, V, d))
        self.smask = np.zeros((H, V), dtype=bool)
        for k, v in enumerate(verts):
            self.pts[k, :len(v)] = v
            self.smask[k, :len(v)] = True
        self.vals = np.where(self.smask, self.phi(self.pts), 0.0)
        self.fitter = None
        self.seconds = time.perf_counter() - t0
        self.cuts_added = 0

    def phi(self, y: np.ndarray) -> np.ndarray:
        """The chiller's power ``u_k·f(T_k)`` (kW) at points ``y`` (H, …, d)."""
        extra = (None,) * (y.ndim - 2)
        t = np.einsum("h...d,hd->h...", y, self.T[:, :self.d]) + self.T[(slice(None), self.d) + extra]
        u = np.einsum("h...d,hd->h...", y, self.U)
        oth = np.broadcast_to(self.r.other[(slice(None),) + extra], t.shape)
        return u * inverse_cop_and_slope(self.act, t, oth)[0]

    def points(self, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        """``y`` (H, d) of states ``x`` (H+1, n) and set-points ``u`` (H,) of this chiller."""
        H, n = self.problem.H, self.problem.n
        y = np.zeros((H, self.d))
        y[:, :n] = x[self.start]
        for j in range(self.lag + 1):
            step = self.start + j
            live = step < np.arange(H) + 1
            y[live, n + j] = u[step[live]]
        return y

    def cuts_at(self, y: np.ndarray, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Proven planes ``(α, γ)``, ``q_k ≥ α·y + γ``, fitted at the points ``y`` (K, d) of ``steps`` (K,)."""
        if self.fitter is None:
            self.fitter = PlaneFitter(self.pts, self.vals, self.smask)
        alpha, _ = self.fitter.fit(y, steps)
        gamma = edge_minimum(self.act, self.r.other[steps], self.T[steps], self.U[steps], alpha,
                             self.Y0[steps], self.Y1[steps], self.ok[steps])
        return alpha, gamma


def hull_separator(problem, power, lp, rel_tol: float = 1e-6, lag: int = LAG, steps=None, chosen: int | None = None):
    """``sep(z) -> (rows, rhs) | None``: the step-polytope planes (:class:`StepHull`) where the
    relaxed LP's power ``q`` lies below them at its solution ``z`` (Kelley's cutting planes).
    ``steps(i, r)``: the steps of relaxed actuator ``i`` that get planes (default all)."""
    acts = problem.network.actuators
    n, m, H = problem.n, problem.m, problem.H
    if n + 1 + lag > MAX_DIM:
        lag = max(MAX_DIM - n - 1, 0)
    if n + 1 > MAX_DIM:
        return None
    hulls = [StepHull(problem, r, lp, f"q{i}", lag=lag, steps=None if steps is None else steps(i, r), chosen=chosen)
             for i, r in enumerate(power.relaxed)
             if acts[r.actuator].kind == "chiller" and acts[r.actuator].cop.model == "carnot_fraction" and r.u_lo is not None]
    if not hulls:
        return None
    blocks = lp.blocks
    nvar = max(sl.stop for sl in blocks.values())

    def sep(z):
        R, C, V, rhs = [], [], [], []
        row = 0
        x = z[blocks["x"]].reshape(H + 1, n)
        u = z[blocks["u"]].reshape(H, m)
        for hull in hulls:
            r = hull.r
            q = z[blocks[hull.q_block]]
            y = hull.points(x, u[:, r.actuator])
            true = u[:, r.actuator] * inverse_cop_and_slope(hull.act, x[:H, r.node], r.other)[0]
            below = (true - q > rel_tol * np.maximum(np.abs(true), 1e-3)) & hull.active
            ks = np.flatnonzero(below)
            if ks.size == 0:
                continue
            alpha, gamma = hull.cuts_at(y[ks], ks)
            viol = np.isfinite(gamma) & (np.einsum("kd,kd->k", alpha, y[ks]) + gamma - q[ks]
                                         > rel_tol * np.maximum(np.abs(q[ks]), 1e-3))
            for j in np.nonzero(viol)[0]:
                k = ks[j]
                s0 = hull.start[k]
                cols = [blocks["x"].start + s0 * n + i for i in range(n)]
                coef = list(alpha[j, :n])
                for jj in range(hull.lag + 1):
                    if s0 + jj <= k:
                        cols.append(blocks["u"].start + (s0 + jj) * m + r.actuator)
                        coef.append(alpha[j, n + jj])
                cols.append(blocks[hull.q_block].start + k)
                coef.append(-1.0)
                R += [row] * len(cols)
                C += cols
                V += coef
                rhs.append(-gamma[j])
                row += 1
            hull.cuts_added += int(viol.sum())
        if not row:
            return None
        return sparse.csr_matrix((V, (R, C)), shape=(row, nvar)), np.array(rhs)

    sep.hulls = hulls
    return sep


def hull_bound(problem, power, lp, max_rounds: int = HULL_ROUNDS, lag: int = LAG):
    """Re-solve the solved relaxed planning LP ``lp`` (:class:`industriverse.plan.lp.LinearProgram`,
    with the rows added while solving it) with the step-polytope planes as lazy cuts, next to the
    box envelope's and the sub-step rows.  Returns ``(solution, stats)``
    (:class:`industriverse.plan.lp.LPSolution`: its ``lower_bound`` is the dual bound of the LP
    with every cut, valid for every feasible plan), or ``(None, stats)`` when there is nothing to
    cut (no chiller, or too many nodes)."""
    from industriverse.plan.lp import chain_cuts, solve, substep_cuts
    from industriverse.plan.power import envelope_separator

    t0 = time.perf_counter()
    sep = hull_separator(problem, power, lp, lag=lag)
    if sep is None:
        return None, {"seconds": time.perf_counter() - t0}
    build = sum(h.seconds for h in sep.hulls)
    sol = solve(lp, cuts=chain_cuts(substep_cuts(problem, lp), envelope_separator(problem, power, lp.blocks), sep),
                max_rounds=max_rounds)
    stats = {"seconds": time.perf_counter() - t0, "build_seconds": build, "lag": sep.hulls[0].lag,
             "edges": int(sum(h.ok.sum() for h in sep.hulls)), "cuts": int(sum(h.cuts_added for h in sep.hulls)),
             "lower_bound": sol.lower_bound}
    return sol, stats


def without_slack_cuts(lp, z: np.ndarray, tol: float = 1e-7):
    """A copy of ``lp`` keeping, of its lazy rows (the cuts added while solving it), only those that
    hold with equality at ``z`` (to ``tol``, relative): a relaxation of ``lp`` (fewer rows) with the
    same optimum at ``z``, cheaper to re-solve many times."""
    import dataclasses

    sl = lp.rows.get("lazy")
    if sl is None or z is None:
        return lp
    A = lp.A_ub[sl]
    b = lp.b_ub[sl]
    tight = b - A @ z <= tol * (1.0 + np.abs(b))
    keep = np.concatenate([np.arange(sl.start), sl.start + np.flatnonzero(tight), np.arange(sl.stop, lp.b_ub.size)])
    rows = dict(lp.rows)
    rows["lazy"] = slice(sl.start, sl.start + int(tight.sum()))
    return dataclasses.replace(lp, A_ub=lp.A_ub[keep], b_ub=lp.b_ub[keep], rows=rows, row_info=dict(lp.row_info))
