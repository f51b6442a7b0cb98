"""Splits of the slowest banded node's temperature (``x_k ≤ v`` or ``x_k ≥ v``) at several steps, taken
together in one LP by their extended (Balas) formulations: the proven bound's last tightening for the
cold-storage family (:func:`industriverse.plan.optimize.tightened_bound` calls :func:`disjunctive_bound`
when the step-polytope planes leave a gap between 1 and 1.5 %).

Every feasible plan lies on one side of every split, and each side's LP gets new step-polytope planes
(:mod:`industriverse.plan.step_hull`) only near its split, so the gains of the splits add up without a
tree; the bound is the big LP's dual bound.
"""
from __future__ import annotations

import time

import numpy as np

def window_cols(problem, program, k: int, w: int) -> np.ndarray:
    """The columns of ``program``'s per-step variables (x of steps k−w … k+w+1, every other block of
    H·m or H columns at steps k−w … k+w) around step ``k``."""
    H, n = problem.H, problem.n
    steps = np.arange(max(k - w, 0), min(k + w, H - 1) + 1)
    cols = []
    for name, sl in program.blocks.items():
        size = sl.stop - sl.start
        if name == "x":
            xs = np.arange(max(k - w, 0), min(k + w + 1, H) + 1)
            cols.append(sl.start + (xs[:, None] * n + np.arange(n)[None, :]).ravel())
        elif size % H == 0 and size // H <= 4:
            per = size // H
            cols.append(sl.start + (steps[:, None] * per + np.arange(per)[None, :]).ravel())
    return np.unique(np.concatenate(cols))


def disjunctive_program(program, disjunctions):
    """``program`` with, for each ``(J, children)`` in ``disjunctions``, the extended (Balas)
    formulation of ``z_J ∈ conv(Q_1 ∪ Q_2)``: ``Q_i`` = the rows of the child LP ``children[i]`` (same
    columns as ``program`` first) whose support lies in the columns ``J``, with the child's bounds.
    Every feasible plan lies in one child, so in its ``Q_i``: a relaxation of the feasible set."""
    import dataclasses

    from scipy import sparse

    nv = program.c.size
    A_ub, b_ub, A_eq, b_eq = [program.A_ub], [program.b_ub], [program.A_eq], [program.b_eq]
    lb, ub, c = [program.lb], [program.ub], [program.c]
    col0 = nv
    span: dict = {}
    for J, children in disjunctions:
        nJ = J.size
        # new columns: z_1 (nJ), z_2 (nJ), λ_1, λ_2
        base = col0
        tot = 2 * nJ + 2
        ncols_before = col0
        rows_ub, rhs_ub, rows_eq, rhs_eq = [], [], [], []
        # z_J − z_1 − z_2 = 0
        E = sparse.lil_matrix((nJ, ncols_before + tot))
        E[np.arange(nJ), J] = 1.0
        E[np.arange(nJ), base + np.arange(nJ)] = -1.0
        E[np.arange(nJ), base + nJ + np.arange(nJ)] = -1.0
        rows_eq.append(E.tocsr())
        rhs_eq.append(np.zeros(nJ))
        L = sparse.lil_matrix((1, ncols_before + tot))
        L[0, base + 2 * nJ] = 1.0
        L[0, base + 2 * nJ + 1] = 1.0
        rows_eq.append(L.tocsr())
        rhs_eq.append(np.ones(1))
        inJ = np.zeros(children[0].c.size, dtype=bool)
        inJ[J] = True
        pos = np.full(children[0].c.size, -1)
        pos[J] = np.arange(nJ)
        for i, ch in enumerate(children):
            zc = base + i * nJ
            lam = base + 2 * nJ + i
            for M, b, out, rhs in ((ch.A_ub, ch.b_ub, rows_ub, rhs_ub), (ch.A_eq, ch.b_eq, rows_eq, rhs_eq)):
                key = id(M)
                if key not in span:  # each row's lowest and highest column (children often share matrices)
                    Mr = sparse.csr_matrix(M)
                    Mc = Mr.tocoo()
                    lo_c = np.full(Mr.shape[0], np.iinfo(np.int64).max)
                    hi_c = np.full(Mr.shape[0], -1)
                    np.minimum.at(lo_c, Mc.row, Mc.col)
                    np.maximum.at(hi_c, Mc.row, Mc.col)
                    span[key] = (Mr, Mc, lo_c, hi_c)
                M, Mc, lo_c, hi_c = span[key]
                cand = np.flatnonzero((lo_c >= J[0]) & (hi_c <= J[-1]))
                Ms = M[cand]
                ok = np.ones(cand.size, dtype=bool)
                if Ms.nnz:
                    Msc = Ms.tocoo()
                    ok[Msc.row[~inJ[Msc.col]]] = False
                keep = cand[ok]
                keep = keep[np.isfinite(b[keep])]  # a row without a finite right-hand side binds nothing
                if keep.size == 0:
                    continue
                S = M[keep].tocoo()
                R = sparse.coo_matrix((np.concatenate([S.data, -b[keep]]),
                                       (np.concatenate([S.row, np.arange(keep.size)]),
                                        np.concatenate([zc + pos[S.col], np.full(keep.size, lam)]))),
                                      shape=(keep.size, ncols_before + tot)).tocsr()
                out.append(R)
                rhs.append(np.zeros(keep.size))
            # the child's bounds: lo λ ≤ z_i ≤ hi λ
            for bnd, sgn in ((ch.ub[J], 1.0), (ch.lb[J], -1.0)):
                f = np.flatnonzero(np.isfinite(bnd))
                R = sparse.coo_matrix((np.concatenate([np.full(f.size, sgn), -sgn * bnd[f]]),
                                       (np.concatenate([np.arange(f.size)] * 2),
                                        np.concatenate([zc + f, np.full(f.size, lam)]))),
                                      shape=(f.size, ncols_before + tot)).tocsr()
                rows_ub.append(R)
                rhs_ub.append(np.zeros(f.size))
        # widen the earlier matrices to the new column count
        A_ub = [sparse.csr_matrix((M.data, M.indices, M.indptr), shape=(M.shape[0], ncols_before + tot)) for M in map(sparse.csr_matrix, A_ub)] + rows_ub
        b_ub = b_ub + rhs_ub
        A_eq = [sparse.csr_matrix((M.data, M.indices, M.indptr), shape=(M.shape[0], ncols_before + tot)) for M in map(sparse.csr_matrix, A_eq)] + rows_eq
        b_eq = b_eq + rhs_eq
        zlo = np.minimum(program.lb[J], 0.0)
        zhi = np.maximum(program.ub[J], 0.0)
        lb.append(np.concatenate([zlo, zlo, [0.0, 0.0]]))
        ub.append(np.concatenate([zhi, zhi, [1.0, 1.0]]))
        c.append(np.zeros(tot))
        col0 += tot
    rows = {kk: v for kk, v in program.rows.items()}
    return dataclasses.replace(program, c=np.concatenate(c), A_ub=sparse.vstack(A_ub, format="csr"), b_ub=np.concatenate(b_ub),
                               A_eq=sparse.vstack(A_eq, format="csr"), b_eq=np.concatenate(b_eq), lb=np.concatenate(lb),
                               ub=np.concatenate(ub), rows=rows, row_info=dict(program.row_info))


# split steps at least this far apart (and at least spacing()): a side LP's planes near one split
# do not see another's box, and no plane of another split lies in a split's window
DISJ_SPACING = 4
DISJ_WINDOW = 2  # the columns of steps k ± this enter a split's extended formulation
DISJ_MAX = 24  # splits at most
DISJ_ROUNDS = 3  # cut rounds of each side's LP
DISJ_STEPS = (-1, 2)  # the sides' new planes at steps k + DISJ_STEPS[0] … k + DISJ_STEPS[1] (whose polytopes see x_k)
DISJ_CHOSEN = 0  # chosen sub-step rows per polytope step of the sides' planes (0: the fixed HULL_SUBSTEPS rows; better and faster here than 1)


def disjunctive_bound(problem, power, program, z, lower_bound: float, node: int, max_splits: int = DISJ_MAX, warm=None) -> tuple[float, dict]:
    """A lower bound ≥ ``lower_bound`` from disjunctions ``x_k[node] ≤ v_k ∨ x_k[node] ≥ v_k`` at the
    steps ``k`` with the largest cost error at the solved LP ``program``'s solution ``z`` (``v_k``: its
    value there), taken together in one LP (:func:`disjunctive_program`).  Both sides' rows come from
    two copies of ``program``, one with every ``x_k[node] ≤ v_k``, one with every ``≥``, each with new
    step-polytope planes at the steps ``k − 1 … k + 2`` (their polytopes see the boxes of
    ``x_{k−3} … x_{k+3}`` only, and the split steps are ``spacing()`` apart, so the planes near ``k``
    hold for every plan on that side of ``k``'s split whatever it does at the others).  Every
    feasible plan is on one side of each split: the LP is a relaxation of the feasible set and its
    dual bound a bound."""
    import dataclasses

    from industriverse.plan.lp import chain_cuts, solve, substep_cuts
    from industriverse.plan.power import envelope_separator, inverse_cop_and_slope
    from industriverse.plan.step_hull import hull_separator

    t0 = time.process_time()
    H, n, m = problem.H, problem.n, problem.m
    acts = problem.network.actuators
    chill = [(i, r) for i, r in enumerate(power.relaxed) if acts[r.actuator].kind == "chiller" and r.u_lo is not None]
    stats: dict = {"splits": 0}
    if not chill or z is None or H < 4:
        return float(lower_bound), stats
    err = np.zeros(H)
    for i, r in chill:
        u = z[program.blocks["u"]].reshape(H, m)[:, r.actuator]
        t = z[program.blocks["x"]].reshape(H + 1, n)[:-1, r.node]
        q = z[program.blocks[f"q{i}"]]
        err += np.maximum(problem.price * (u * inverse_cop_and_slope(acts[r.actuator], t, r.other)[0] - q), 0.0)
    picked: list[int] = []
    for k in np.argsort(err)[::-1]:
        k = int(k)
        if len(picked) >= max_splits or err[k] <= 0:
            break
        if 1 <= k and all(abs(k - s) >= spacing() for s in picked):
            picked.append(k)
    if not picked:
        return float(lower_bound), stats
    picked.sort()
    xs = program.blocks["x"]
    cols = np.array([xs.start + k * n + node for k in picked])
    vals = z[cols]
    touched = np.unique(np.concatenate([np.arange(max(k + DISJ_STEPS[0], 0), min(k + DISJ_STEPS[1] + 1, H)) for k in picked]))
    from industriverse.plan.step_hull import without_slack_cuts

    # the sides' LPs only make planes: from ``warm``'s basis (same rows), else their binding rows suffice
    base = program if warm is not None else without_slack_cuts(program, z)
    sides = []
    for side in (-1, 1):
        lp = dataclasses.replace(base, lb=program.lb.copy(), ub=program.ub.copy(), rows=dict(base.rows),
                                 row_info=dict(base.row_info))
        if side < 0:
            lp.ub[cols] = np.minimum(lp.ub[cols], vals)
        else:
            lp.lb[cols] = np.maximum(lp.lb[cols], vals)
        sep = hull_separator(problem, power, lp, steps=lambda i, r: touched, chosen=DISJ_CHOSEN)
        sol = solve(lp, cuts=chain_cuts(substep_cuts(problem, lp), envelope_separator(problem, power, lp.blocks), sep),
                    max_rounds=DISJ_ROUNDS, warm_start=warm)
        if sol.status not in (0, 2):
            return float(lower_bound), stats
        sides.append(lp)
        stats[f"side{side}_seconds"] = time.process_time() - t0
        stats[f"side{side}_build"] = sum(h.seconds for h in sep.hulls) if sep is not None else 0.0
        stats[f"side{side}_iters"] = sol.iterations
    # each split's children: a side's rows, with ``program``'s bounds but the split's own
    dis = []
    for k, col, v in zip(picked, cols, vals):
        kids = []
        for side, lp in zip((-1, 1), sides):
            lb_, ub_ = program.lb.copy(), program.ub.copy()
            if side < 0:
                ub_[col] = min(ub_[col], v)
            else:
                lb_[col] = max(lb_[col], v)
            kids.append(dataclasses.replace(lp, lb=lb_, ub=ub_))
        dis.append((window_cols(problem, program, k, DISJ_WINDOW), kids))
    big = disjunctive_program(program, dis)
    stats["build_seconds"] = time.process_time() - t0
    sol = solve(big)
    stats.update(splits=len(picked), steps=picked, seconds=time.process_time() - t0,
                 lower_bound=None if sol.lower_bound is None else float(sol.lower_bound))
    if sol.status != 0 or sol.lower_bound is None or not np.isfinite(sol.lower_bound):
        return float(lower_bound), stats
    return max(float(lower_bound), float(sol.lower_bound)), stats


def spacing() -> int:
    """The least distance of two split steps: the planes at ``k + a … k + b`` (``DISJ_STEPS``) see the
    boxes of ``x_{k+a−2} … x_{k+b+1}`` (step_hull.step_polytopes with lag 1: the history row reaches
    two steps back, the next state one ahead), which must not hold another split's step, and no
    plane of another split may lie inside a split's columns (steps ``k ± DISJ_WINDOW``)."""
    a, b = DISJ_STEPS
    w = DISJ_WINDOW
    return max(DISJ_SPACING, 3 - a, b + 2, w + 1 - a, w + b)


def slow_node(problem, power) -> int | None:
    """The banded node the first relaxed chiller reaches last (:func:`industriverse.plan.step_hull.lagging_nodes`,
    e.g. the goods), or None."""
    from industriverse.plan.step_hull import lagging_nodes
    from industriverse.plan.substeps import bands_in_force

    acts = problem.network.actuators
    rs = [r for r in power.relaxed if acts[r.actuator].kind == "chiller" and r.u_lo is not None]
    if not rs or problem.n < 2:
        return None
    b_lo, b_hi = bands_in_force(problem)
    banded = np.flatnonzero(np.isfinite(b_lo).any(axis=0) | np.isfinite(b_hi).any(axis=0))
    far = lagging_nodes(problem, rs[0].node, banded)
    return int(far[0]) if far.size else None
