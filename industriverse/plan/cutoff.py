"""A tighter proven bound for temperature-dependent COPs from the plan's own cost: bound tightening
with the incumbent's cost as a cutoff, then the envelope planes again on the smaller boxes.

The convex envelope of a chiller's power ``u·f(T)`` over the box of set-point × node temperature
(:func:`industriverse.plan.power.envelope_cut`) is loose when the box is wide.  An optimal plan
costs no more than the plan found (the incumbent, cost ``C``), so every step's set-point and node
temperature of an optimal plan lie in the range the relaxation allows *with its cost ≤ C*.  Each
range end is the optimum of the relaxed LP plus the row ``cost ≤ C`` with the set-point (or the
temperature) as objective, re-solved from the previous basis (HiGHS, only the objective changes)
and proven from the dual values (:func:`industriverse.plan.lp.dual_bound`), never from the primal
value.  The envelope planes on the smaller boxes hold for every feasible plan of cost ≤ C, so the
re-solved relaxation's dual bound ``L`` proves: optimum ≥ min(L, C).  Rounds repeat while the
bound rises.
"""
from __future__ import annotations

import dataclasses
import time
from types import SimpleNamespace

import numpy as np
from scipy import sparse

from industriverse.plan.power import PowerModel


def full_ranges(lp, targets: np.ndarray, cutoff: float, *, lines: list[int] | None = None, stride: int = 1,
                ref: tuple[np.ndarray, np.ndarray] | None = None,
                min_shrink: float = 0.02) -> tuple[np.ndarray, np.ndarray, int]:
    """Proven ``(lo, hi, solves)`` of each variable in ``targets`` over ``lp``'s feasible set with
    the row ``cᵀz ≤ cutoff``: one LP per target and sense, re-solved from the previous basis (only
    the objective changes; primal simplex), each proven from its dual values.  Infinite where
    HiGHS does not solve one (or, coarse to fine, where it was not asked).

    Coarse to fine (``stride > 1``): ``targets`` is ``lines`` (their lengths, in order) of
    neighbouring steps; each sense first solves every ``stride``-th target of a line (and its last),
    then the ones between two of them only where one of the two moved its side of ``ref``
    (``(lo, hi)`` per target, the box before) by more than ``min_shrink`` of its width: where the
    cutoff does not shrink a box it rarely shrinks its neighbours'.  Skipping a range only keeps
    the wider box, so the result stays proven."""
    import highspy

    from industriverse.plan.lp import dual_bound, highs_model, new_highs

    pad = 1e-9 * max(abs(cutoff), 1.0)  # rounding: loosen the cutoff, never tighten it
    cut = dataclasses.replace(lp, A_ub=sparse.vstack([lp.A_ub, sparse.csr_matrix(lp.c)], format="csr"),
                              b_ub=np.concatenate([lp.b_ub, [cutoff + pad]]), c=np.zeros(lp.c.size))
    h = new_highs({"solver": "simplex", "simplex_strategy": 4, "presolve": "off"})
    h.passModel(*highs_model(cut))
    nu, ne = cut.b_ub.size, cut.b_eq.size
    MS = highspy.HighsModelStatus
    lo = np.full(len(targets), -np.inf)
    hi = np.full(len(targets), np.inf)
    prev = None
    solves = 0
    if stride > 1 and ref is not None:
        lines = [len(targets)] if lines is None else list(lines)
        starts = np.concatenate([[0], np.cumsum(lines)[:-1]]).astype(int)
        coarse = np.zeros(len(targets), dtype=bool)
        for s0, ln in zip(starts, lines):
            coarse[s0:s0 + ln:stride] = True
            if ln:
                coarse[s0 + ln - 1] = True
        width = np.maximum(ref[1] - ref[0], 1e-12)
    else:
        coarse = np.ones(len(targets), dtype=bool)

    def order(sense):
        """Every coarse target, then the fine ones next to a coarse one that moved (this sense)."""
        yield from np.flatnonzero(coarse)
        if coarse.all():
            return
        moved = np.zeros(len(targets), dtype=bool)
        if sense > 0:
            moved[coarse] = lo[coarse] - ref[0][coarse] > min_shrink * width[coarse]
        else:
            moved[coarse] = ref[1][coarse] - hi[coarse] > min_shrink * width[coarse]
        for s0, ln in zip(starts, lines):
            cs = np.flatnonzero(coarse[s0:s0 + ln]) + s0
            for a, b in zip(cs[:-1], cs[1:]):
                if moved[a] or moved[b]:
                    yield from range(a + 1, b)

    # one sweep per sense along the horizon: neighbouring steps' optima are a few pivots apart
    for sense in (1.0, -1.0):
        for i in order(sense):
            j = targets[i]
            if prev is not None:
                h.changeColCost(prev, 0.0)
            h.changeColCost(int(j), sense)
            prev = int(j)
            h.run()
            solves += 1
            if h.getModelStatus() != MS.kOptimal:
                continue
            sol = h.getSolution()
            row_dual = np.asarray(sol.row_dual, dtype=float)
            col_dual = np.asarray(sol.col_dual, dtype=float)
            res = SimpleNamespace(ineqlin=SimpleNamespace(marginals=row_dual[:nu]),
                                  eqlin=SimpleNamespace(marginals=row_dual[nu:nu + ne]),
                                  lower=SimpleNamespace(marginals=np.maximum(col_dual, 0.0)),
                                  upper=SimpleNamespace(marginals=np.minimum(col_dual, 0.0)))
            c = np.zeros(cut.c.size)
            c[j] = sense
            bound = dual_bound(dataclasses.replace(cut, c=c), res)[0]
            if sense > 0:
                lo[i] = bound
            else:
                hi[i] = -bound
    return lo, hi, solves


def costly_steps(problem, r, i: int, lp, z: np.ndarray, share: float) -> np.ndarray:
    """The steps (sorted) whose cost error ``price·(u f(T) − q)`` at the LP solution ``z`` makes up
    ``share`` of the total: where a tighter box can raise the bound."""
    from industriverse.plan.power import inverse_cop_and_slope

    H, n, m = problem.H, problem.n, problem.m
    u = z[lp.blocks["u"]].reshape(H, m)[:, r.actuator]
    t = z[lp.blocks["x"]].reshape(H + 1, n)[:-1, r.node]
    q = z[lp.blocks[f"q{i}"]]
    err = np.maximum(problem.price * (u * inverse_cop_and_slope(problem.network.actuators[r.actuator], t, r.other)[0] - q), 0.0)
    order = np.argsort(err)[::-1]
    cum = np.cumsum(err[order])
    k = int(np.searchsorted(cum, share * cum[-1])) + 1 if cum[-1] > 0 else H
    return np.sort(order[:k])


NO_SHRINK = 0.01  # a round whose boxes all keep 99 % of their widths ends the tightening (no re-solve)


def shrunk_steps(old, new, frac: float) -> np.ndarray:
    """The steps (sorted) whose step polytope (:func:`industriverse.plan.step_hull.step_polytopes`:
    the boxes of the steps before, at and after it) the cutoff shrank: the set-point's or the node
    temperature's box of one of those steps lost at least ``frac`` of its width from ``old`` to
    ``new`` (:class:`industriverse.plan.power.RelaxedActuator`).  Planes rebuilt elsewhere would be
    the ones the LP has."""
    def loss(a0, a1, b0, b1):
        w = np.maximum(a1 - a0, 1e-12)
        return 1.0 - np.clip((b1 - b0) / w, 0.0, 1.0)

    s = np.maximum(loss(old.u_lo, old.u_hi, new.u_lo, new.u_hi), loss(old.t_lo, old.t_hi, new.t_lo, new.t_hi))
    near = s.copy()
    near[1:] = np.maximum(near[1:], s[:-1])
    near[:-1] = np.maximum(near[:-1], s[1:])
    return np.flatnonzero(near >= frac)


def cutoff_bound(problem, power: PowerModel, lp, lower_bound: float, cost: float, *, rounds: int = 1,
                 min_gain: float = 1e-3, z: np.ndarray | None = None, share: float = 1.0,
                 keep_rows: bool = False, range_lp=None, more_cuts=None, stride: int = 1) -> tuple[float, dict]:
    """A lower bound on the optimal cost ≥ ``lower_bound`` from bound tightening with the cutoff
    ``cost`` (the incumbent plan's true cost) on the solved relaxed planning LP ``lp`` (with any
    rows added while solving it).  Returns ``(bound, stats)``; the bound is never above ``cost``.
    Rounds stop when the bound rises by less than ``min_gain`` of the remaining gap.
    ``z``: the LP's solution; with ``share < 1`` only the steps that make that share of the
    relaxation's cost error (price × (true power − relaxed power) at ``z``) are tightened.
    ``keep_rows``: re-solve ``lp`` itself with the new bounds (every row it has stays, e.g. the
    step-polytope planes of :mod:`industriverse.plan.step_hull`, valid for every feasible plan)
    instead of a planning LP rebuilt with the envelope planes of the new boxes; those planes are
    added where the plan sits either way.  ``range_lp``: a relaxation of ``lp`` (fewer rows, e.g.
    only its binding cuts) for the range LPs of the first round, faster to re-solve.
    ``more_cuts(lp, power)``: a separator of further cuts valid for every plan of cost ≤ ``cost``,
    built on the re-solved LP's new bounds and boxes (e.g.
    :func:`industriverse.plan.step_hull.hull_separator`); or None.  ``stride``: the range LPs go
    coarse to fine (:func:`full_ranges`; 1: every range)."""
    from industriverse.plan.lp import build_planning_lp, chain_cuts, solve, substep_cuts
    from industriverse.plan.power import ENVELOPE_ROUNDS, envelope_separator

    t0 = time.perf_counter()
    H, n, m = problem.H, problem.n, problem.m
    acts = problem.network.actuators
    chillers = [i for i, r in enumerate(power.relaxed) if acts[r.actuator].kind == "chiller" and r.u_lo is not None]
    stats = {"rounds": 0, "lp_solves": 0, "bounds": [float(lower_bound)]}
    best = float(lower_bound)
    if not chillers or not np.isfinite(cost) or not np.isfinite(lower_bound) or lower_bound >= cost:
        return min(best, cost), stats
    relaxed = list(power.relaxed)
    for _ in range(rounds):
        us, xs = lp.blocks["u"], lp.blocks["x"]
        new = list(relaxed)
        for i in chillers:
            r = relaxed[i]
            steps = np.arange(H)
            if z is not None and share < 1.0:
                steps = costly_steps(problem, r, i, lp, z, share)
            tu = us.start + steps * m + r.actuator
            sx = steps[steps >= 1]  # x[0] is the given initial state
            tt = xs.start + sx * n + r.node
            ref = (np.concatenate([r.u_lo[steps], r.t_lo[sx]]), np.concatenate([r.u_hi[steps], r.t_hi[sx]]))
            lo_s, hi_s, nsolve = full_ranges(lp if range_lp is None else range_lp, np.concatenate([tu, tt]), cost,
                                             lines=[tu.size, tt.size], stride=stride, ref=ref)
            stats["lp_solves"] += nsolve
            lo, hi = np.full(2 * H, -np.inf), np.full(2 * H, np.inf)
            lo[steps], hi[steps] = lo_s[:steps.size], hi_s[:steps.size]
            lo[H + sx], hi[H + sx] = lo_s[steps.size:], hi_s[steps.size:]
            ulo, uhi = np.maximum(r.u_lo, lo[:H]), np.minimum(r.u_hi, hi[:H])
            tlo, thi = np.maximum(r.t_lo, lo[H:]), np.minimum(r.t_hi, hi[H:])
            if np.any(ulo > uhi) or np.any(tlo > thi):  # nothing cheaper than the plan: keep the proven bound
                return min(best, cost), stats
            new[i] = dataclasses.replace(r, u_lo=ulo, u_hi=uhi, t_lo=tlo, t_hi=thi, cuts=[])
            if keep_rows:  # the LP keeps its rows: the planes over the old (larger) box still hold
                new[i].cuts = r.cuts
            else:  # a fresh LP: a 3×3 grid of planes over the new box
                act = acts[r.actuator]
                fr = np.linspace(0.0, 1.0, 5)[1:-1]
                new[i].cuts = [new[i].cut_at(act, ulo + a * (uhi - ulo), tlo + b * (thi - tlo)) for a in fr for b in fr]
        if keep_rows and all(shrunk_steps(relaxed[i], new[i], NO_SHRINK).size == 0 for i in chillers):
            stats["unchanged"] = True  # no box moved: the LP, and so its bound, would be the same
            break
        relaxed = new
        range_lp = None  # later rounds: the re-solved LP itself
        pw = dataclasses.replace(power, relaxed=relaxed)
        if keep_rows:
            lp = dataclasses.replace(lp, lb=lp.lb.copy(), ub=lp.ub.copy(), rows=dict(lp.rows), row_info=dict(lp.row_info))
        else:
            lp = build_planning_lp(problem, pw)
        # every plan of cost ≤ C has its set-points and temperatures in the new boxes: use them as bounds
        for r in relaxed:
            if r.u_lo is None:
                continue
            ucols = us.start + np.arange(H) * m + r.actuator
            tcols = xs.start + np.arange(H) * n + r.node
            for cols, a, b in ((ucols, r.u_lo, r.u_hi), (tcols[1:], r.t_lo[1:], r.t_hi[1:])):
                lp.lb[cols] = np.maximum(lp.lb[cols], a - 1e-9 * (1 + np.abs(a)))
                lp.ub[cols] = np.minimum(lp.ub[cols], b + 1e-9 * (1 + np.abs(b)))
        extra = None if more_cuts is None else more_cuts(lp, pw)
        sol = solve(lp, cuts=chain_cuts(substep_cuts(problem, lp), envelope_separator(problem, pw, lp.blocks), extra),
                    max_rounds=ENVELOPE_ROUNDS if extra is None else 2 * ENVELOPE_ROUNDS)
        stats["rounds"] += 1
        stats["lp_solves"] += 1
        if sol.status != 0 or sol.lower_bound is None:
            break
        z = sol.z
        gain = sol.lower_bound - best
        stats["bounds"].append(float(sol.lower_bound))
        best = max(best, float(sol.lower_bound))
        if best >= cost or gain < min_gain * (cost - best + gain):
            break
    stats["seconds"] = time.perf_counter() - t0
    return min(best, cost), stats
