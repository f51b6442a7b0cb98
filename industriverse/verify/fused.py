"""The fused integration kernel: one compiled pass per plan step for linear networks.

:func:`industriverse.verify.simulate.run_ensemble` steps an ensemble sub-step by sub-step; in
numpy every sub-step costs a dozen array passes and Python calls (controllers, power, noise,
state update, envelope, discomfort, KPIs), which on a few thousand trajectories costs more than
the arithmetic.  Here the same arithmetic runs in one compiled call per block of plan steps (numba,
``cache=True``, ``nogil=True`` so the helper thread can draw the next block's normals meanwhile):
per trajectory and sub-step the true disturbances (forecast + exact Ornstein–Uhlenbeck error,
clipped), the controllers (the tracking law, the proportional and the hysteresis thermostats),
the electric site power, the exact ZOH step with the Van Loan noise, the envelope excess, the
discomfort integral and the energy KPIs.  The draws are the numpy ones of the numpy path, in the
same order, so both paths give the same numbers up to the rounding of a different summation
order (tested to 1e-9).  Networks with radiation, the self-consumption baseline and any other
controller stay on the numpy path (:func:`supported`).

numba is imported with this module only, and this module only when an ensemble is large enough
to repay it (:data:`industriverse.verify.simulate.FUSED_MIN_PATH_STEPS`).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from industriverse.model.network import KELVIN
from industriverse.plan.tracking import PlanTracking
from industriverse.verify.baselines import Hysteresis, Proportional

TRACKING, PROPORTIONAL, HYSTERESIS = 0, 1, 2
HEATER, COP, CHARGE, DISCHARGE = 0, 1, 2, 3
TILE = 256  # trajectories per tile of the kernel (a few KiB per array: the L1 cache)
CONTROLLER_TYPES = {PlanTracking: TRACKING, Proportional: PROPORTIONAL, Hysteresis: HYSTERESIS}


def supported(problem, controllers) -> bool:
    """True when the kernel can run ``controllers`` on ``problem``: a linear network, known controller kinds,
    and no per-period demand charges (the kernel keeps one peak; URDB's per-period peaks run the numpy path)."""
    return (not problem.network.has_nonlinear_dynamics and not problem.demand_groups
            and all(type(c) in CONTROLLER_TYPES for c in controllers))


class Controllers:
    """The controllers' parameters and per-trajectory state as arrays for :func:`step` (C controllers)."""

    def __init__(self, problem, model, controllers, Nc: int):
        C, m, n, S, H = len(controllers), problem.m, problem.n, model.S, problem.H
        self.kind = np.array([CONTROLLER_TYPES[type(c)] for c in controllers], dtype=np.int64)
        # tracking: gain (m, n), reference path (H·S+1, n), plan (H, m), ramp history (S, Nc, m)
        self.K = np.zeros((C, m, n))
        self.x_ref = np.zeros((C, H * S + 1, n))
        self.plan = np.zeros((C, H, m))
        self.ramped = np.zeros(C, dtype=np.bool_)
        self.history = np.zeros((C, S, Nc, m))
        # thermostats: per-actuator role (+1 heats its node / the measured node, -1 cools, 0 none)
        self.role = np.zeros((C, m), dtype=np.int64)
        self.node = np.zeros(C, dtype=np.int64)
        self.params = np.zeros((C, 6))  # gain, offset | on_above, off_below, on_below, off_above
        self.on = np.zeros((C, 2, Nc), dtype=np.bool_)  # hysteresis: cooling on, heating on
        for c, ctrl in enumerate(controllers):
            if isinstance(ctrl, PlanTracking):
                self.K[c], self.x_ref[c], self.plan[c] = ctrl.K, ctrl.x_ref, ctrl.plan
                self.ramped[c] = ctrl._ramped
            elif isinstance(ctrl, Proportional):
                self.params[c, :2] = ctrl.gain, ctrl.offset
                self.role[c] = [1 if k in ("heater", "heat_pump") else -1 if k == "chiller" else 0 for k in ctrl.kinds]
            else:
                ctrl.start(Nc)
                self.node[c] = ctrl.node
                self.params[c, 2:] = [getattr(ctrl, a, np.nan) for a in ("on_above", "off_below", "on_below", "off_above")]
                for a in ctrl.cooling:
                    self.role[c, a] = -1
                for a in ctrl.heating:
                    self.role[c, a] = 1
                self.on[c, 0], self.on[c, 1] = ctrl._cool_on, ctrl._heat_on
        self.act_node = np.array([problem.network.index(a.node) for a in problem.network.actuators], dtype=np.int64)


class Power:
    """The site's electric power law (:func:`industriverse.model.network.electric_power`) as arrays."""

    def __init__(self, problem):
        net = problem.network
        names = net.disturbance_names
        self.load = names.index(net.site.load) if net.site.load is not None else -1
        self.pv = names.index(net.site.pv) if net.site.pv is not None else -1
        m = len(net.actuators)
        self.kind = np.zeros(m, dtype=np.int64)
        self.node = np.zeros(m, dtype=np.int64)
        self.other = np.full(m, -1, dtype=np.int64)  # the COP's boundary column (-1: 0 °C)
        # efficiency | COP: constant (nan: Carnot), eta, min lift, evaporator and condenser approach, chiller
        self.coef = np.zeros((m, 7))
        for j, a in enumerate(net.actuators):
            if a.kind == "heater":
                self.kind[j], self.coef[j, 0] = HEATER, a.efficiency
            elif a.kind in ("heat_pump", "chiller"):
                self.kind[j], self.node[j] = COP, net.index(a.node)
                if a.cop.boundary:
                    self.other[j] = net.boundary_columns[a.cop.boundary]
                cm = a.cop
                if cm.model == "constant":
                    self.coef[j, 1] = cm.value
                else:
                    self.coef[j, 1:6] = np.nan, cm.eta, cm.min_lift_k, cm.evaporator_approach_k, cm.condenser_approach_k
                self.coef[j, 6] = a.kind == "chiller"
            elif a.kind == "battery_charge":
                self.kind[j] = CHARGE
            else:
                self.kind[j] = DISCHARGE


@njit(cache=True, nogil=True)
def step(k0, S, X, err, xi_all, kicks_all, noisy_state, noisy_dist,
         AdT, BdT, fdrive_all, LT, EdT, err_drive, ou_a, ou_s, fe, d_all, d_lo, d_hi_all, clip_d, with_w, need_d,
         ckind, K, x_ref, plan, ramped, history, role, cnode, cpar, on, act_node, u_lo_all, u_hi_all, ramp,
         x_lo_all, x_hi_all, pkind, pnode, pother, pcoef, load, pv, export_floor,
         kpis, comfort, h_h, per, last_j, price_all, export_price_all, emission_all,
         x_next_all, sub_excess_all, discomfort, p_mean_all, u_mean_all,
         imp_sum, exp_sum, cost_imp, cost_exp, emis, peak, win, travel, u_last):
    """Integrate plan steps ``k0 .. k0 + B − 1`` (S sub-steps each) of C controllers × Nc trajectories in place.

    ``X`` (C, Nc, n) states at t_k0, overwritten by those at t_{k0+B}; ``err`` (Nc, q) the forecast
    errors, advanced; ``xi_all`` (B, S, 1, Nc, n) and ``kicks_all`` (B, S, Nc, q) the steps' float32
    standard normals.  Per step of the block writes ``x_next_all[b]`` (C, Nc, n) the states at its end,
    ``sub_excess_all[b]`` (C, Nc, n), ``p_mean_all[b]`` (C, Nc) kW and ``u_mean_all[b]`` (C, Nc, m) kW;
    adds to ``discomfort`` (K·h) and, with ``kpis``, to the running sums (site import/export kW·steps,
    price-weighted, emissions), the peak of the 15-minute window means (``per`` sub-steps a window,
    ``win`` its running sum), the travel and the last set-points ``u_last`` (C, Nc, m).  The per-step
    inputs (``fdrive_all``, ``d_all``, ``d_hi_all``, ``u_lo_all``, ``u_hi_all``, ``x_lo_all``, ``x_hi_all``,
    prices) are the whole horizon's, indexed by step.  One call per block of steps: the call itself
    (sixty-odd arguments) costs more than a step's work on a small ensemble.
    Every loop over the trajectories is innermost and elementwise, so it compiles to SIMD code.
    """
    C, Nc, n = X.shape
    m = u_lo_all.shape[1]
    q = fe.shape[0]
    n_d = d_all.shape[1]
    nk = x_next_all.shape[0]  # steps in this block
    nc = comfort.shape[0]
    D = np.empty((n_d, Nc))
    W = np.zeros((n, Nc))
    E = np.empty((q, Nc))
    x = np.empty((n, Nc))
    xn = np.empty((n, Nc))
    u = np.empty((m, Nc))
    p = np.empty(Nc)
    inc = np.empty(Nc)
    vt = np.empty(Nc)
    step_imp, step_exp = np.empty((C, Nc)), np.empty((C, Nc))  # kW·sub-steps of this plan step
    worst = np.empty((C, n, Nc))  # the largest excess of each controller over the step's sub-steps
    for kk in range(nk):
        k = k0 + kk
        fdrive, d_k, d_hi = fdrive_all[k], d_all[k], d_hi_all[k]
        u_lo, u_hi, x_lo, x_hi = u_lo_all[k], u_hi_all[k], x_lo_all[k], x_hi_all[k]
        price, export_price, emission = price_all[k], export_price_all[k], emission_all[k]
        xi, kicks = xi_all[kk], kicks_all[kk]
        x_next, sub_excess, p_mean, u_mean = x_next_all[kk], sub_excess_all[kk], p_mean_all[kk], u_mean_all[kk]
        for t0 in range(0, Nc, TILE):  # a tile of trajectories at a time: its working set stays in the L1 cache
            i0, i1 = np.uint64(t0), np.uint64(min(Nc, t0 + TILE))  # unsigned: no negative-index checks, SIMD loops
            for r in range(q):
                for i in range(i0, i1):
                    E[r, i] = err[i, r]
            for s in range(S):
                j = k * S + s
                # the true disturbances and the noise increment of the sub-step (shared by the controllers)
                for l in range(n_d if need_d else 0):  # only the power law and the clipping read them
                    for i in range(i0, i1):
                        D[l, i] = d_k[l]
                if noisy_dist and need_d:
                    for r in range(q):
                        dl = d_k[fe[r]]
                        for i in range(i0, i1):
                            D[fe[r], i] = dl + E[r, i]
                if clip_d:
                    for l in range(n_d):
                        lo, hi = d_lo[l], d_hi[l]
                        for i in range(i0, i1):
                            D[l, i] = min(max(D[l, i], lo), hi)
                if with_w:
                    for a in range(n):  # each sum starts from its first term (0 + t = t: the same numbers, one pass less)
                        if clip_d:
                            for l in range(n_d):
                                g, dl = EdT[l, a], d_k[l]
                                if l == 0:
                                    for i in range(i0, i1):
                                        W[a, i] = (D[l, i] - dl) * g
                                else:
                                    for i in range(i0, i1):
                                        W[a, i] += (D[l, i] - dl) * g
                        elif noisy_dist:
                            for r in range(q):
                                g = err_drive[r, a]
                                if r == 0:
                                    for i in range(i0, i1):
                                        W[a, i] = E[r, i] * g
                                else:
                                    for i in range(i0, i1):
                                        W[a, i] += E[r, i] * g
                        else:
                            for i in range(i0, i1):
                                W[a, i] = 0.0
                        if noisy_state:
                            for l in range(n):
                                g = LT[l, a]
                                for i in range(i0, i1):
                                    W[a, i] += np.float64(xi[s, 0, i, l]) * g
                for c in range(C):
                    for a in range(n):
                        for i in range(i0, i1):
                            x[a, i] = X[c, i, a]
                    # the controller
                    kind = ckind[c]
                    if kind == 0:  # tracking: clip(plan_k + K (x − x_pred))
                        for b in range(m):
                            lo, hi, pk = u_lo[b], u_hi[b], plan[c, k, b]
                            for a in range(n):
                                g, ref = K[c, b, a], x_ref[c, j, a]
                                if a == 0:
                                    for i in range(i0, i1):
                                        u[b, i] = (x[a, i] - ref) * g
                                else:
                                    for i in range(i0, i1):
                                        u[b, i] += (x[a, i] - ref) * g
                            for i in range(i0, i1):
                                u[b, i] = min(max(u[b, i] + pk, lo), hi)
                            if ramped[c]:
                                if k > 0:
                                    rb = ramp[b]
                                    for i in range(i0, i1):
                                        before = history[c, s, i, b]
                                        u[b, i] = min(max(u[b, i], before - rb), before + rb)
                                for i in range(i0, i1):
                                    history[c, s, i, b] = u[b, i]
                    elif kind == 1:  # proportional thermostat on each actuator's own node
                        gain, offset = cpar[c, 0], cpar[c, 1]
                        for b in range(m):
                            lo, hi, nd = u_lo[b], u_hi[b], act_node[b]
                            if role[c, b] == 1 and np.isfinite(x_lo[nd]):
                                sp = x_lo[nd] + offset
                                for i in range(i0, i1):
                                    u[b, i] = min(max(gain * (sp - x[nd, i]), lo), hi)
                            elif role[c, b] == -1 and np.isfinite(x_hi[nd]):
                                sp = x_hi[nd] - offset
                                for i in range(i0, i1):
                                    u[b, i] = min(max(gain * (x[nd, i] - sp), lo), hi)
                            else:
                                for i in range(i0, i1):
                                    u[b, i] = min(max(lo, lo), hi)
                    else:  # hysteresis on one measured node, per-trajectory on/off state
                        nd = cnode[c]
                        for i in range(i0, i1):
                            t = x[nd, i]
                            if t > cpar[c, 2]:
                                on[c, 0, i] = True
                            elif t < cpar[c, 3]:
                                on[c, 0, i] = False
                            if t < cpar[c, 4]:
                                on[c, 1, i] = True
                            elif t > cpar[c, 5]:
                                on[c, 1, i] = False
                        for b in range(m):
                            lo, hi, rl = u_lo[b], u_hi[b], role[c, b]
                            for i in range(i0, i1):
                                if rl == -1:
                                    u[b, i] = hi if on[c, 0, i] else lo
                                elif rl == 1:
                                    u[b, i] = hi if on[c, 1, i] else lo
                                else:
                                    u[b, i] = lo
                    # electric site power at the sub-step's start, export beyond the limit curtailed; the sum starts
                    # from its first term (0 + t = t), the floor and the step mean in one pass
                    started = False
                    if load >= 0:
                        for i in range(i0, i1):
                            p[i] = D[load, i]
                        started = True
                    if pv >= 0:
                        if started:
                            for i in range(i0, i1):
                                p[i] = p[i] - D[pv, i]
                        else:
                            for i in range(i0, i1):
                                p[i] = 0.0 - D[pv, i]
                        started = True
                    for b in range(m):
                        pk = pkind[b]
                        if not started:
                            for i in range(i0, i1):
                                p[i] = 0.0
                            started = True
                        if pk == 0:
                            eff = pcoef[b, 0]
                            for i in range(i0, i1):
                                p[i] = p[i] + u[b, i] / eff
                        elif pk == 1:
                            const = pcoef[b, 1]
                            if not np.isnan(const):
                                for i in range(i0, i1):
                                    p[i] = p[i] + u[b, i] / const
                            else:  # a Carnot fraction; the node is the cold side of a chiller, the hot side of a heat pump
                                eta, min_lift, evap, cond = pcoef[b, 2], pcoef[b, 3], pcoef[b, 4], pcoef[b, 5]
                                chiller, nd, ob = pcoef[b, 6] != 0.0, pnode[b], pother[b]
                                for i in range(i0, i1):
                                    tn = x[nd, i]
                                    to = D[ob, i] if ob >= 0 else 0.0
                                    if chiller:
                                        cold, hot = tn - evap, to + cond
                                        ref = cold + KELVIN
                                    else:
                                        cold, hot = to - evap, tn + cond
                                        ref = hot + KELVIN
                                    p[i] = p[i] + u[b, i] / (eta * (ref / max(hot - cold, min_lift)))
                        elif pk == 2:
                            for i in range(i0, i1):
                                p[i] = p[i] + u[b, i]
                        else:
                            for i in range(i0, i1):
                                p[i] = p[i] - u[b, i]
                    if not started:
                        for i in range(i0, i1):
                            p[i] = 0.0
                    if s == 0:
                        for i in range(i0, i1):
                            v = max(p[i], export_floor)
                            p[i] = v
                            p_mean[c, i] = v
                    else:
                        for i in range(i0, i1):
                            v = max(p[i], export_floor)
                            p[i] = v
                            p_mean[c, i] += v
                    # the exact step: x⁺ = Ad x + Bd u + Ed d + w
                    for a in range(n):
                        for l in range(n):
                            g = AdT[l, a]
                            if l == 0:
                                for i in range(i0, i1):
                                    xn[a, i] = x[l, i] * g
                            else:
                                for i in range(i0, i1):
                                    xn[a, i] += x[l, i] * g
                        fd = fdrive[a]
                        if m == 1:  # one actuator: Ad x + Bd u + Ed d + w in one pass
                            g = BdT[0, a]
                            for i in range(i0, i1):
                                xn[a, i] = xn[a, i] + u[0, i] * g + fd + W[a, i]
                        else:
                            for b in range(m):
                                g = BdT[b, a]
                                if b == 0:
                                    for i in range(i0, i1):
                                        inc[i] = u[b, i] * g
                                else:
                                    for i in range(i0, i1):
                                        inc[i] += u[b, i] * g
                            for i in range(i0, i1):
                                xn[a, i] = xn[a, i] + inc[i] + fd + W[a, i]
                    # the envelope between the samples
                    for a in range(n):
                        lo, hi = x_lo[a], x_hi[a]
                        if s == 0:
                            for i in range(i0, i1):
                                worst[c, a, i] = max(lo - xn[a, i], xn[a, i] - hi)
                        else:
                            for i in range(i0, i1):
                                worst[c, a, i] = max(worst[c, a, i], max(lo - xn[a, i], xn[a, i] - hi))
                    # the discomfort integral (state linear between the samples), averaged over the comfort nodes
                    # mean excess below lo plus above hi over the segment (kpis.mean_positive_part; an infinite bound
                    # gives 0): the no-crossing formula for all (no division: SIMD), the triangle formula where a
                    # segment crosses a bound (rare); a tile whose excess is 0 everywhere adds nothing
                    touched = False
                    for r in range(nc if kpis else 0):
                        a = comfort[r]
                        lo, hi = x_lo[a], x_hi[a]
                        crossing = 0
                        positive = 0
                        for i in range(i0, i1):
                            a1, b1, a2, b2 = lo - x[a, i], lo - xn[a, i], x[a, i] - hi, xn[a, i] - hi
                            v = (max(a1, 0.0) + max(b1, 0.0)) * 0.5 + (max(a2, 0.0) + max(b2, 0.0)) * 0.5
                            vt[i] = v
                            crossing |= (a1 * b1 < 0.0) | (a2 * b2 < 0.0)
                            positive |= v > 0.0
                        if crossing:
                            for i in range(i0, i1):
                                a1, b1, a2, b2 = lo - x[a, i], lo - xn[a, i], x[a, i] - hi, xn[a, i] - hi
                                if a1 * b1 < 0.0 or a2 * b2 < 0.0:
                                    vt[i] = _mean_positive_part(a1, b1) + _mean_positive_part(a2, b2)
                        if not positive:  # (a crossing has a positive part too)
                            continue
                        if not touched:  # 0 + t = t: the same numbers as summing from 0
                            for i in range(i0, i1):
                                inc[i] = vt[i] * h_h
                            touched = True
                        else:
                            for i in range(i0, i1):
                                inc[i] += vt[i] * h_h
                    if touched:
                        for i in range(i0, i1):
                            discomfort[c, i] += inc[i] / nc
                    # step means, and the KPIs at the sub-step
                    if s == 0:
                        for b in range(m):
                            for i in range(i0, i1):
                                u_mean[c, i, b] = u[b, i]
                    else:
                        for b in range(m):
                            for i in range(i0, i1):
                                u_mean[c, i, b] += u[b, i]
                    if kpis:
                        if s == 0:
                            for i in range(i0, i1):
                                im = max(p[i], 0.0)
                                step_imp[c, i] = im
                                step_exp[c, i] = im - p[i]
                                win[c, i] += p[i]
                        else:
                            for i in range(i0, i1):
                                im = max(p[i], 0.0)
                                step_imp[c, i] += im
                                step_exp[c, i] += im - p[i]
                                win[c, i] += p[i]
                        if j % per == per - 1 or j == last_j:  # a 15-minute window ends
                            count = j % per + 1
                            for i in range(i0, i1):
                                peak[c, i] = max(peak[c, i], win[c, i] / count)
                                win[c, i] = 0.0
                        for b in range(m):
                            if j > 0:
                                for i in range(i0, i1):
                                    travel[c, i] += abs(u[b, i] - u_last[c, i, b])
                            for i in range(i0, i1):
                                u_last[c, i, b] = u[b, i]
                    for a in range(n):
                        for i in range(i0, i1):
                            X[c, i, a] = xn[a, i]
                if noisy_dist:  # exact OU step of the forecast error
                    for r in range(q):
                        ga, gs = ou_a[r], ou_s[r]
                        for i in range(i0, i1):
                            E[r, i] = ga * E[r, i] + gs * np.float64(kicks[s, i, r])
            for c in range(C):
                if kpis:  # the step's import and export, and their prices (held over the step)
                    for i in range(i0, i1):
                        imp_sum[c, i] += step_imp[c, i]
                        exp_sum[c, i] += step_exp[c, i]
                        cost_imp[c, i] += price * step_imp[c, i]
                        cost_exp[c, i] += export_price * step_exp[c, i]
                        emis[c, i] += emission * step_imp[c, i]
                for i in range(i0, i1):
                    p_mean[c, i] /= S
                    for a in range(n):
                        x_next[c, i, a] = X[c, i, a]
                        sub_excess[c, i, a] = max(worst[c, a, i], 0.0)
                    for b in range(m):
                        u_mean[c, i, b] /= S
            for r in range(q):
                for i in range(i0, i1):
                    err[i, r] = E[r, i]


@njit(cache=True, nogil=True)
def _mean_positive_part(a, b):
    """Mean of max(f, 0) over an interval where f runs linearly from a to b (see kpis.mean_positive_part)."""
    if a * b < 0.0:
        top = max(a, b)
        return top * top / (2.0 * abs(a - b))
    return (max(a, 0.0) + max(b, 0.0)) * 0.5
