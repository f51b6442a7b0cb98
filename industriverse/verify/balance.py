"""The first law for a nominal trajectory: stored = supplied − lost, per node and per step, in kWh.

The flows are assembled from the network's own data (conductances, gains, actuators,
radiation), independently of the system matrices that move the state, so a balance that does
not close reveals a model whose matrices disagree with its physics.

Linear networks are exact: with inputs and disturbances held over a step (ZOH), the augmented
system ``ż = M z``, ``z = [x; u; d]``, gives ``x(t_k+1)`` from ``expm(M dt)`` and the exact integral
``∫ x dt`` from the upper-right block of ``expm([[M, I], [0, 0]] dt)`` (Van Loan's construction),
so every flow (``G ∫ (x_i − x_j) dt``) is exact and the residual is round-off (~1e-12 relative).
Networks with radiation are integrated with ``scipy.integrate.solve_ivp`` (DOP853, rtol 1e-10)
on the state augmented with ``∫ x dt`` and ``∫ T⁴ dt``; Runge–Kutta methods keep linear
invariants, so the residual is again round-off while the trajectory is accurate to rtol.

Sign conventions (kWh over the horizon): ``actuators`` heat delivered to the nodes (a chiller's
is negative; a battery's is the energy that reaches the cell), ``gains`` heat gains, ``supplied``
= actuators + gains, ``lost`` net heat to the boundaries (ambient, ground, store; positive =
leaving the plant), ``exchanged`` (per node) net heat to other nodes, ``stored`` the rise of the
nodes' energy content, ``residual = stored − (supplied − lost)``.
"""
from __future__ import annotations

import numpy as np
from scipy.linalg import expm

from industriverse.model.network import J_PER_KWH, KELVIN, STEFAN_BOLTZMANN, _heat_sign, electric_power


def _nominal_linear(A: np.ndarray, Bc: np.ndarray, x0: np.ndarray, w: np.ndarray, dt: float):
    """States (H+1, n) and exact integrals ∫x dt (H, n) over each ZOH step, in state units·s."""
    n, p = Bc.shape
    M = np.zeros((n + p, n + p))
    M[:n, :n], M[:n, n:] = A, Bc
    big = np.zeros((2 * (n + p), 2 * (n + p)))
    big[: n + p, : n + p] = M
    big[: n + p, n + p:] = np.eye(n + p)
    F = expm(big * dt)
    Phi, Gam = F[: n + p, : n + p], F[: n + p, n + p:]  # expm(M dt), ∫_0^dt expm(M s) ds
    H = w.shape[0]
    xs, ints = np.empty((H + 1, n)), np.empty((H, n))
    xs[0] = x0
    for k in range(H):
        z = np.concatenate([xs[k], w[k]])
        xs[k + 1] = (Phi @ z)[:n]
        ints[k] = (Gam @ z)[:n]
    return xs, ints, None


def _nominal_radiation(net, A, Bc, x0, w, dt, d):
    """Like :func:`_nominal_linear` for networks with radiation, plus ∫(T+273.15)⁴ dt per term."""
    n = A.shape[0]
    rad_nodes = [net.index(r.node) for r in net.radiation]
    H = w.shape[0]
    from scipy.integrate import solve_ivp  # here: ~0.2-0.4 s of import that networks without radiation never need

    xs, ints, t4 = np.empty((H + 1, n)), np.empty((H, n)), np.empty((H, len(rad_nodes)))
    xs[0] = x0
    for k in range(H):
        drive = Bc @ w[k]

        def rhs(_t, y, drive=drive, dk=d[k]):
            x = y[:n]
            dx = A @ x + drive + net.radiation_correction(x, dk)
            return np.concatenate([dx, x, (x[rad_nodes] + KELVIN) ** 4])

        y0 = np.concatenate([xs[k], np.zeros(n + len(rad_nodes))])
        sol = solve_ivp(rhs, (0.0, dt), y0, method="DOP853", rtol=1e-10, atol=1e-10)
        if not sol.success:
            raise RuntimeError(f"integration failed at step {k}: {sol.message}")
        y = sol.y[:, -1]
        xs[k + 1], ints[k], t4[k] = y[:n], y[n:2 * n], y[2 * n:]
    return xs, ints, t4


def energy_balance(problem, u: np.ndarray, *, x0: np.ndarray | None = None, d: np.ndarray | None = None,
                   tolerance: float | None = None) -> dict:
    """First-law balance of the noise-free trajectory of plan ``u`` (H, m) kW under forecast ``d``.

    Parameters
    ----------
    problem : PlanningProblem
    u : (H, m) actuator set-points, kW, held over each step
    x0 : (n,) initial state (default ``problem.x0``)
    d : (H, n_d) disturbances held over each step (default the forecast ``problem.d``)
    tolerance : when given, ``closes`` says whether ``relative_residual ≤ tolerance``

    Returns
    -------
    dict with ``stored_kwh``, ``supplied_kwh``, ``actuators_kwh``, ``gains_kwh``, ``lost_kwh``,
    ``residual_kwh``, ``throughput_kwh`` (Σ |flows| over nodes and steps), ``relative_residual``
    (largest |residual|, total or per node, over the throughput), ``actuator_electric_kwh``,
    ``per_node`` {node: {stored_kwh, actuators_kwh, gains_kwh, lost_kwh, exchanged_kwh, residual_kwh}},
    ``per_step`` {stored_kwh, supplied_kwh, lost_kwh, residual_kwh: [H]}, ``states`` {node: [H+1]},
    ``method``; and ``tolerance``, ``closes`` when a tolerance is given.
    """
    net = problem.network
    u = np.asarray(u, dtype=float).reshape(problem.H, problem.m)
    d = problem.d if d is None else np.asarray(d, dtype=float)
    x0 = problem.x0 if x0 is None else np.asarray(x0, dtype=float)
    A, B, E = net.matrices
    Bc = np.hstack([B, E])
    w = np.hstack([u, d])
    dt, H, n = problem.dt_s, problem.H, problem.n
    nodes, dist = net.node_names, net.disturbance_names
    bound_dist = net.boundary_columns
    if net.has_nonlinear_dynamics:
        xs, ints, t4 = _nominal_radiation(net, A, Bc, x0, w, dt, d)
        method = "solve_ivp DOP853 (rtol 1e-10) on the exact radiation law, flows from the augmented integrals"
    else:
        xs, ints, t4 = _nominal_linear(A, Bc, x0, w, dt)
        method = "exact: augmented matrix exponential (ZOH), flows from the exact integral of the state"

    # flows in J per step and node
    C = net.capacities
    stored = (xs[1:] - xs[:-1]) * C
    act = np.zeros((H, n))
    for j, a in enumerate(net.actuators):
        act[:, net.index(a.node)] += 1000.0 * _heat_sign(a) * u[:, j] * dt
    gains = np.zeros((H, n))
    for g in net.gains:
        gains[:, net.index(g.node)] += 1000.0 * g.scale * d[:, dist.index(g.disturbance)] * dt
    lost = np.zeros((H, n))
    exch = np.zeros((H, n))
    pair_flux = []
    for c in net.conductances:
        a, b = c.between
        if a in bound_dist or b in bound_dist:
            node, bnd = (b, a) if a in bound_dist else (a, b)
            i = nodes.index(node)
            lost[:, i] += c.w_per_k * (ints[:, i] - d[:, bound_dist[bnd]] * dt)
        else:
            i, jn = nodes.index(a), nodes.index(b)
            q = c.w_per_k * (ints[:, i] - ints[:, jn])  # i → j
            exch[:, i] += q
            exch[:, jn] -= q
            pair_flux.append(np.abs(q))
    for r_i, r in enumerate(net.radiation):
        i = nodes.index(r.node)
        tb4 = (d[:, bound_dist[r.boundary]] + KELVIN) ** 4
        lost[:, i] += STEFAN_BOLTZMANN * r.emissivity * r.area_m2 * (t4[:, r_i] - tb4 * dt)
    resid = stored - (act + gains - lost - exch)

    kwh = 1.0 / J_PER_KWH
    throughput = (np.abs(act).sum() + np.abs(gains).sum() + np.abs(lost).sum() + sum(p.sum() for p in pair_flux)
                  + np.abs(stored).sum()) * kwh
    total_resid = resid.sum() * kwh
    worst = max(abs(total_resid), float(np.abs(resid.sum(axis=0)).max()) * kwh)
    electric = (electric_power(net, u, xs[:-1], d) - electric_power(net, np.zeros_like(u), xs[:-1], d)).sum() * problem.dt_h
    out = {
        "stored_kwh": float(stored.sum() * kwh),
        "supplied_kwh": float((act + gains).sum() * kwh),
        "actuators_kwh": float(act.sum() * kwh),
        "gains_kwh": float(gains.sum() * kwh),
        "lost_kwh": float(lost.sum() * kwh),
        "residual_kwh": float(total_resid),
        "throughput_kwh": float(throughput),
        "relative_residual": float(worst / throughput) if throughput > 0 else 0.0,
        "actuator_electric_kwh": float(electric),
        "per_node": {
            node: {
                "stored_kwh": float(stored[:, i].sum() * kwh),
                "actuators_kwh": float(act[:, i].sum() * kwh),
                "gains_kwh": float(gains[:, i].sum() * kwh),
                "lost_kwh": float(lost[:, i].sum() * kwh),
                "exchanged_kwh": float(exch[:, i].sum() * kwh),
                "residual_kwh": float(resid[:, i].sum() * kwh),
            }
            for i, node in enumerate(nodes)
        },
        "per_step": {
            "stored_kwh": [float(v) for v in stored.sum(axis=1) * kwh],
            "supplied_kwh": [float(v) for v in (act + gains).sum(axis=1) * kwh],
            "lost_kwh": [float(v) for v in lost.sum(axis=1) * kwh],
            "residual_kwh": [float(v) for v in resid.sum(axis=1) * kwh],
        },
        "states": {node: [float(v) for v in xs[:, i]] for i, node in enumerate(nodes)},
        "method": method,
    }
    if tolerance is not None:
        out["tolerance"] = float(tolerance)
        out["closes"] = bool(out["relative_residual"] <= tolerance)
    return out
