"""IDF, the energy-based diffusion engine (DESIGN.md §5).

A plan ``u`` (H, m) kW is a particle in the landscape::

    E(u) = cost(u) / c_ref + ρ · penalty(u)

``cost`` is :func:`industriverse.model.kpis.energy_kpis`' cost of the site power (import at the
price, export at the export price, demand charge on the 15-minute peak), ``c_ref`` the cost of
every actuator at full power over the horizon (so ``E`` is of order one), and ``penalty`` the
squared violations of the predicted states against the (tightened) envelope (per K or kWh) and
of the import/export limits and the energy/peak budgets.

A population of particles follows annealed, preconditioned Langevin dynamics in the plan
normalised to the actuator box, ``z = (u − u_lo)/(u_hi − u_lo)``::

    z ← proj(z − η M ∇E + √(2 η T) M^½ ξ),    ξ ~ N(0, I)

with a constant metric ``M = (G_zᵀ G_z + λ I)⁻¹`` built from the state response of the
envelope rows (so a step moves the constrained states, where the landscape is stiff; see
:func:`metric`: dense for small problems, a vector (Jacobi) otherwise),
restricted to the coordinates the gradient does not hold at a bound
(two-metric projection), the drift step normalised per particle, the temperature ``T`` annealed to
0 and the penalty weight ``ρ`` raised geometrically; ``proj`` is the projection onto the actuator
box and the ramp limits.  The gradient comes from the adjoint of the discrete dynamics, for the
whole population at once: with ``x = x_free + G u``, ``∇_u E = ∂E/∂u|_x + Gᵀ ∂E/∂x``, where ``G u``
and ``Gᵀ λ`` are applied by (blocked) recursion over ``Ad``, ``Bd``
(:class:`industriverse.model.response.StateResponse`) and ``G`` itself is never formed, so an
evaluation costs ``O(P·H)`` for a fixed network; a temperature-dependent COP adds ``∂P/∂x`` to ``∂E/∂x``.

The best particles are then polished to exact feasibility by a deterministic local solver:
the nearest feasible plan in ℓ1 (one LP), then sequential linear programming with a trust
region on the true cost (HiGHS; the power is linearised around the current plan, the envelope,
box and ramp rows are exact; the sparse planning LP of :mod:`industriverse.plan.lp`, re-solves
warm-started from the previous basis).  The best feasible polished plan wins.  Where the power is
affine the problem is convex, so only the best particle is polished (every local optimum is
global), by one LP over the whole box.  Everything random comes
from ``numpy.random.default_rng(seed)``: the same seed gives the same plan.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy.linalg import cho_solve, cholesky, solve_triangular

from industriverse.model.response import StateResponse, free_response, impulse_response
from industriverse.plan.lp import build_planning_lp, peak_windows, solve, substep_cuts
from industriverse.plan.power import inverse_cop_and_slope, linearized_power
from industriverse.plan.substeps import substep_violation

FEAS_TOL = 1e-6  # state units / kW / kWh: what counts as meeting a constraint
DENSE_G_MAX = 8_000_000  # entries of G formed for a dense metric (64 MB); above it the metric is diagonal


@dataclass
class IDFSettings:
    """Knobs of the engine (defaults suit 1–4 actuators over a day in 15-minute steps)."""

    particles: int = 32
    iterations: int = 300
    step: float = 0.05  # η₀: RMS step of the drift, in box fractions
    step_end: float = 0.02  # η decays linearly to step_end·η₀
    noise_start: float = 0.1  # RMS diffusion per step at T₀, box fractions (calibrates T₀)
    quench: float = 0.5  # T = T₀ (1 − t/(quench·N))², then 0: the rest is preconditioned descent
    rho_start: float = 1.0
    rho_end: float = 1e4
    metric_damping: float = 0.1  # λ of the metric K = GᵀG/mean + λ I (relative)
    dense_metric_max: int = 2000  # above this many plan variables the metric is diagonal (a vector)
    polish: int = 3  # particles polished
    polish_iterations: int = 25
    trust_radius: float = 0.25  # initial trust region, box fractions
    polish_tol: float = 1e-7  # stop when the LP model predicts less than this relative improvement


@dataclass
class IDFResult:
    u: np.ndarray  # (H, m) kW, best feasible plan (or the least violating one)
    cost: float
    feasible: bool
    violation: float
    evaluations: int
    iterations: int
    particles: int
    lp_solves: int
    seconds: float
    best_start: str
    candidates: list[dict] = field(default_factory=list)
    langevin_seconds: float = 0.0
    polish_seconds: float = 0.0


class Landscape:
    """``E(u)`` and ``∇E`` for a population of plans, from a :class:`PlanningProblem`."""

    def __init__(self, problem, backoff: bool = True):
        self.p = problem
        H = problem.H
        self.response = StateResponse(problem.Ad, problem.Bd, H)  # x = x_free + G u without G
        self.xf = free_response(problem.Ad, problem.x0, problem.d @ problem.Ed.T)  # (H+1, n)
        lo, hi = problem.envelope(backoff=backoff)
        self.lo, self.hi = lo.copy(), hi.copy()
        self.lo[0], self.hi[0] = -np.inf, np.inf  # the initial state is given
        self.p0, self.W = problem.linear_power(nonlinear="zero")
        net = problem.network
        self.cops = [(a_i, net.index(a.node), a, problem.d[:, net.boundary_columns[a.cop.boundary]])
                     for a_i, a in enumerate(net.actuators) if a.nonlinear]
        self.convex = not self.cops  # affine power, linear dynamics: a convex (LP-representable) problem
        self.dt = problem.dt_h
        self.demand = problem.demand_charge > 0 or problem.peak_budget is not None
        wins = peak_windows(problem)
        self.Mw = np.zeros((len(wins), H))
        for j, w in enumerate(wins):
            self.Mw[j, w] = 1.0 / len(w)
        # each demand group's windows (a URDB demand period within a month): its own peak, its rate
        first = np.array([w[0] for w in wins])
        self.groups = [(rate, self.Mw[mask[first]]) for _, rate, mask in problem.demand_groups if mask[first].any()]
        # cost of every actuator at full power (COP at its value for the initial state)
        w_ref = self.W.copy()
        for a_i, node, act, other in self.cops:
            w_ref[:, a_i] = inverse_cop_and_slope(act, np.full(H, problem.x0[node]), other)[0]
        p_ref = np.abs(self.p0) + (np.abs(w_ref) * problem.u_hi).sum(axis=1)
        charges = problem.demand_charge + sum(rate for rate, _ in self.groups)
        self.c_ref = max(float(self.dt * np.sum(problem.price * p_ref) + charges * p_ref.max()), 1e-9)
        self.p_ref = max(float(p_ref.max()), 1e-9)

    def states(self, U: np.ndarray) -> np.ndarray:
        """Predicted states (P, H+1, n) of plans ``U`` (P, H, m) kW under the forecast."""
        return self.xf + self.response.apply(U)

    def power(self, U: np.ndarray, X: np.ndarray):
        """Site power (P, H) and the per-actuator electric factors w (P, H, m) and their slopes."""
        w = np.broadcast_to(self.W, U.shape).copy()
        slopes = []
        for a_i, node, act, other in self.cops:
            f, df = inverse_cop_and_slope(act, X[:, :-1, node], other)
            w[:, :, a_i] = f
            slopes.append((a_i, node, df))
        return self.p0 + np.einsum("phm,phm->ph", U, w), w, slopes

    def evaluate(self, U: np.ndarray, rho: float, grad: bool = True):
        """``(E, ∇E, cost, violation)`` of plans ``U`` (P, H, m): E and cost (P,), ∇E (P, H, m),
        violation (P,) the largest violation of any constraint (state units, kW or kWh)."""
        pr = self.p
        Pn, H, m = U.shape
        X = self.states(U)
        P, w, slopes = self.power(U, X)
        pos = P > 0
        cost = self.dt * (np.where(pos, P, 0.0) @ pr.price + np.where(pos, 0.0, P) @ pr.export_price)
        dcost = self.dt * np.where(pos, pr.price, pr.export_price)
        pen = np.zeros(Pn)
        dpen = np.zeros_like(P)
        viol = np.zeros(Pn)
        if self.demand:
            means = P @ self.Mw.T
            j = np.argmax(means, axis=1)
            peak = np.maximum(means[np.arange(Pn), j], 0.0)
            dpeak = self.Mw[j] * (peak > 0)[:, None]
            cost = cost + pr.demand_charge * peak
            dcost = dcost + pr.demand_charge * dpeak
            if pr.peak_budget is not None:
                v = np.maximum(peak - pr.peak_budget, 0.0)
                pen += v * v
                dpen += 2 * v[:, None] * dpeak
                viol = np.maximum(viol, v)
        for rate, Mg in self.groups:
            means = P @ Mg.T
            j = np.argmax(means, axis=1)
            peak = np.maximum(means[np.arange(Pn), j], 0.0)
            cost = cost + rate * peak
            dcost = dcost + rate * Mg[j] * (peak > 0)[:, None]
        vhi = np.maximum(X - self.hi, 0.0)
        vlo = np.maximum(self.lo - X, 0.0)
        pen += (vhi * vhi + vlo * vlo).sum(axis=(1, 2))
        viol = np.maximum(viol, np.maximum(vhi, vlo).max(axis=(1, 2)))
        v_imp = np.maximum(P - pr.import_max, 0.0)
        v_exp = np.maximum(-P - pr.export_max, 0.0)
        pen += (v_imp * v_imp + v_exp * v_exp).sum(axis=1)
        dpen += 2 * (v_imp - v_exp)
        viol = np.maximum(viol, np.maximum(v_imp, v_exp).max(axis=1))
        if pr.energy_budget is not None:
            v = np.maximum(self.dt * np.where(pos, P, 0.0).sum(axis=1) - pr.energy_budget, 0.0)
            pen += v * v
            dpen += 2 * v[:, None] * self.dt * pos
            viol = np.maximum(viol, v)
        E = cost / self.c_ref + rho * pen
        if not grad:
            return E, None, cost, viol
        dEdP = dcost / self.c_ref + rho * dpen  # (P, H)
        g = dEdP[:, :, None] * w
        dEdX = 2 * rho * (vhi - vlo)
        for a_i, node, df in slopes:
            dEdX[:, :-1, node] += dEdP * U[:, :, a_i] * df
        g += self.response.adjoint(dEdX)  # the adjoint recursion: Gᵀ ∂E/∂x
        return E, g, cost, viol


def project(problem, U: np.ndarray, block: int | None = None, rounds: int = 4) -> np.ndarray:
    """Clip plans (..., H, m) into the actuator box, then into the ramp limits step by step.

    The forward pass ``u[k] ← clip(u[k], u[k−1] − ramp, u[k−1] + ramp)`` keeps
    ``|u[k] − u[k−1]| ≤ ramp`` and the box (the two always intersect because ``u[k−1]`` is inside
    the box), so every output is admissible.

    It runs on all blocks of ``block`` steps (default ≈ √H) at once, each from a guess of the step
    before it (its input), then again from what the block before it produced, until no block's
    starting value changes: a fixed point is the forward pass itself, to the bit (same operations
    on the same numbers).  The pass forgets its start wherever it meets the input, so one or two
    rounds usually do: ``O(√H)`` Python steps per round instead of ``H``.  After ``rounds`` rounds
    the blocks not yet settled are finished step by step (a ramp longer than the rounds reach).
    """
    U = np.clip(U, problem.u_lo, problem.u_hi)
    H = problem.H
    if not np.any(np.isfinite(problem.ramp)) or H < 2:
        return U
    r = problem.ramp
    B = max(1, min(H, int(block) if block else max(8, int(np.sqrt(H)))))
    C = -(-H // B)
    lead = U.shape[:-2]
    m = U.shape[-1]
    X = U.reshape((-1, H, m))
    if C * B > H:  # pad with the last step: outputs past H are dropped
        X = np.concatenate([X, np.repeat(X[:, -1:], C * B - H, axis=1)], axis=1)
    Xb = X.reshape(X.shape[0], C, B, m)
    prev = np.concatenate([Xb[:, :1, 0], Xb[:, :-1, -1]], axis=1)  # (P, C, m); block 0 starts from u[0] itself
    Y = np.empty_like(Xb)
    for _ in range(rounds):
        y = prev
        for j in range(B):
            y = np.clip(Xb[:, :, j], y - r, y + r)
            Y[:, :, j] = y
        new = np.concatenate([Xb[:, :1, 0], Y[:, :-1, -1]], axis=1)
        wrong = np.nonzero((new != prev).any(axis=(0, 2)))[0]
        if len(wrong) == 0:
            return Y.reshape(X.shape)[:, :H].reshape(lead + (H, m))
        prev = new
    # a ramp longer than the rounds reach (the pass never meets its input): blocks before the first wrong
    # start are final; finish step by step from there
    Yf = Y.reshape(X.shape)
    for k in range(int(wrong[0]) * B, H):
        Yf[:, k] = np.clip(X[:, k], Yf[:, k - 1] - r, Yf[:, k - 1] + r)
    return Yf[:, :H].reshape(lead + (H, m))


def true_violation(problem, u: np.ndarray, backoff: bool = True) -> float:
    """Largest violation of any constraint by plan ``u`` (H, m) with the true power: envelope
    (tightened when ``backoff``) at the samples and, as the planning LP defines it, between them
    (:func:`industriverse.plan.substeps.substep_violation`), box, ramp, import/export limits, budgets."""
    land = Landscape(problem, backoff=backoff)
    _, _, _, v = land.evaluate(u[None], 0.0, grad=False)
    return max(float(v[0]), actuator_violation(problem, u), substep_violation(problem, u, backoff=backoff))


def actuator_violation(problem, u: np.ndarray) -> float:
    """Largest excess (kW, ≥ 0) of plan ``u`` (H, m) over the actuator box and the ramp limits."""
    box = max(float(np.max(problem.u_lo - u)), float(np.max(u - problem.u_hi)), 0.0)
    ramp = 0.0
    if problem.H > 1 and np.any(np.isfinite(problem.ramp)):
        ramp = max(float(np.max(np.abs(np.diff(u, axis=0)) - problem.ramp)), 0.0)
    return max(box, ramp)


def metric(problem, land: Landscape, settings: IDFSettings) -> tuple[np.ndarray, np.ndarray]:
    """The constant Langevin metric ``M = K⁻¹`` and a square root ``S`` (``S Sᵀ = M``) in box
    fractions, ``K = G_zᵀ G_z / mean diag + λ I`` over the envelope rows of ``G`` (``G_z`` = ``G``
    scaled by the actuator ranges): moving the plan along ``M ∇E`` moves the constrained states,
    which is where the landscape is stiff.

    Dense (``M``, ``S`` of shape (H·m, H·m)) only for small problems (at most ``dense_metric_max``
    plan variables and a ``G`` of at most ``DENSE_G_MAX`` entries); otherwise diagonal (Jacobi),
    returned as vectors (H·m,): ``diag K`` is the envelope-masked energy of the impulse response,
    a correlation along the horizon (FFT), so no ``G`` is formed and the work is ``O(H log H)``.
    """
    H, m, n = problem.H, problem.m, problem.n
    span = (problem.u_hi - problem.u_lo).ravel()
    env = np.isfinite(land.lo) | np.isfinite(land.hi)  # (H+1, n)
    if H * m <= settings.dense_metric_max and (H + 1) * n * H * m <= DENSE_G_MAX:
        Gz = land.response.columns()[env.ravel()] * span
        K = Gz.T @ Gz
        scale = float(np.mean(np.diag(K)))
        K = (K / scale if scale > 0 else K) + settings.metric_damping * np.eye(H * m)
        L = cholesky(K, lower=True)
        M = cho_solve((L, True), np.eye(H * m))
        S = solve_triangular(L, np.eye(H * m), lower=True, trans="T")  # L⁻ᵀ: S Sᵀ = (L Lᵀ)⁻¹
        return M, S
    # diag K[j, a] = span² Σ_i Σ_{t ≥ 0} env[j+1+t, i] h[t, i, a]²: a correlation of the mask with h²
    h2 = impulse_response(problem.Ad, problem.Bd, H) ** 2  # (H, n, m)
    mask = env[1:].astype(float)[::-1]  # reversed (H, n)
    nfft = 2 * H  # ≥ 2H − 1: the linear convolution, no wrap-around (numpy's FFT: scipy.signal costs 1 s to import)
    conv = np.fft.irfft(np.fft.rfft(mask, nfft, axis=0)[:, :, None] * np.fft.rfft(h2, nfft, axis=0), nfft, axis=0)
    corr = conv[H - 1::-1]  # corr[j] = Σ_t env[j+1+t] h²[t]
    k = np.clip(corr.sum(axis=1), 0.0, None).ravel() * span ** 2  # FFT round-off can dip below 0
    k = k / max(float(k.mean()), 1e-300) + settings.metric_damping
    return 1.0 / k, 1.0 / np.sqrt(k)


def langevin(problem, land: Landscape, settings: IDFSettings, rng: np.random.Generator,
             progress: Callable[[str, int, int, float, float], None] | None = None):
    """Annealed, preconditioned Langevin dynamics of a population of plans.

    In box fractions ``z``: ``z ← proj(z − η_t d + √(2 η_t T_t) S ξ)`` with ``d = M_F ∇E / rms(M_F ∇E)``
    (the drift normalised to an RMS step ``η_t`` per particle) and ``M_F`` the metric restricted to
    the coordinates that are not held at a bound by the gradient (the two-metric projection of
    Gafni and Bertsekas: the restricted metric stays positive definite, so ``−d`` is a descent
    direction of the projected step); the noise has covariance ``2 η_t T_t M_F``.  ``T_t`` is
    annealed to 0 and the penalty weight ``ρ`` rises geometrically.

    Returns the final population (P, H, m) kW with its energies at the final ``ρ``, costs and
    violations.
    """
    H, m = problem.H, problem.m
    Pn, N = settings.particles, settings.iterations
    span = problem.u_hi - problem.u_lo
    free = (span > 0).ravel()
    span_safe = np.where(span > 0, span, 1.0)
    M, S = metric(problem, land, settings)
    diagonal = M.ndim == 1  # a vector: the Jacobi metric, applied elementwise
    # T₀ such that the first steps diffuse by noise_start (RMS, box fractions)
    T0 = settings.noise_start ** 2 / (2 * settings.step * max(float(np.mean(M if diagonal else np.diag(M))), 1e-300))
    level = rng.uniform(0.0, 1.0, size=(Pn, 1, m))
    Z = np.clip(level + 0.15 * rng.standard_normal((Pn, H, m)), 0.0, 1.0)
    U = project(problem, problem.u_lo + Z * span)
    for t in range(N):
        frac = t / max(N - 1, 1)
        rho = settings.rho_start * (settings.rho_end / settings.rho_start) ** frac
        eta = settings.step * (settings.step_end + (1 - settings.step_end) * (1 - frac))
        T = T0 * max(0.0, 1 - frac / settings.quench) ** 2
        E, gU, cost, viol = land.evaluate(U, rho)
        z = ((U - problem.u_lo) / span_safe).reshape(Pn, -1)
        g = (gU * span).reshape(Pn, -1)
        held = ((z <= 1e-9) & (g > 0)) | ((z >= 1 - 1e-9) & (g < 0)) | ~free
        mask = ~held
        d = (g * mask * M) if diagonal else ((g * mask) @ M) * mask
        d /= np.sqrt(np.mean(d * d, axis=1, keepdims=True)) + 1e-300
        z = z - eta * d
        if T > 0:
            xi = rng.standard_normal((Pn, H * m))
            z = z + np.sqrt(2 * eta * T) * (xi * S if diagonal else xi @ S.T) * mask
        U = project(problem, problem.u_lo + np.clip(z, 0.0, 1.0).reshape(Pn, H, m) * span)
        if progress is not None and (t % 25 == 0 or t == N - 1):
            i = int(np.argmin(E))
            progress("langevin", t + 1, N, float(cost[i]), float(viol[i]))
    E, _, cost, viol = land.evaluate(U, settings.rho_end, grad=False)
    return U, E, cost, viol


def power_side_violation(problem, P: np.ndarray) -> np.ndarray:
    """ℓ1 excess of site powers ``P`` (..., H) kW over the import/export limits (kW summed over
    steps), the energy budget (kWh) and the peak budget (kW): the soft part of the polish LP."""
    from industriverse.model.kpis import fifteen_minute_means

    v = np.maximum(P - problem.import_max, 0.0).sum(axis=-1) + np.maximum(-P - problem.export_max, 0.0).sum(axis=-1)
    if problem.energy_budget is not None:
        v = v + np.maximum(problem.dt_h * np.maximum(P, 0.0).sum(axis=-1) - problem.energy_budget, 0.0)
    if problem.peak_budget is not None:
        peak = np.maximum(fifteen_minute_means(P, problem.dt_h).max(axis=-1), 0.0)
        v = v + np.maximum(peak - problem.peak_budget, 0.0)
    return v


def _merit(problem, land: Landscape, u: np.ndarray, mu: float) -> tuple[float, float, float]:
    """(merit, cost, violation): the true cost plus μ × the ℓ1 power-side violation (the LP's
    exact-penalty model of the same quantities), and the largest violation of any constraint."""
    X = land.states(u[None])
    P = land.power(u[None], X)[0]
    _, _, cost, viol = land.evaluate(u[None], 0.0, grad=False)
    return float(cost[0] + mu * power_side_violation(problem, P)[0]), float(cost[0]), float(viol[0])


def polish(problem, u0: np.ndarray, land: Landscape, settings: IDFSettings, *, backoff: bool = True,
           radius: float | None = None):
    """Polish plan ``u0`` to exact feasibility and local optimality.

    1. the nearest feasible plan in ℓ1 (LP, power linearised at ``u0``);
    2. sequential LP with an ∞-norm trust region on the true cost (ratio test on the merit).

    The envelope, box and ramp rows are exact in every LP, so every iterate meets them; the
    limits on the power (import, export, budgets) enter through the linearised power as an ℓ1
    exact penalty, so no LP is made infeasible by the linearisation.

    Where the power is affine and ``radius ≥ 1`` (the whole box) the LP is the problem itself: it
    is solved once, without phase 1 or trust region.  Re-solves start from the previous basis, and
    the band binds between the samples as in the planning LP (lazy sub-step rows).

    Returns ``(u, merit, cost, violation, lp_solves, evaluations)``, or None when no plan meets
    the envelope near ``u0`` (the phase-1 LP is infeasible).
    """
    H, m = problem.H, problem.m
    span = problem.u_hi - problem.u_lo
    w = 1.0 / (np.maximum(span, 1e-9) * H * m)
    mu = 1e2 * land.c_ref / land.p_ref  # per kW·step: above any marginal value of power
    if land.convex and radius is not None and radius >= 1.0:
        # affine power: the LP over the whole box is the problem itself (no phase 1, no trust region):
        # one solve gives the global optimum
        lp = build_planning_lp(problem, linearized_power(problem, u0), backoff=backoff, soft_power=mu)
        sol = solve(lp, cuts=substep_cuts(problem, lp, backoff=backoff))
        if sol.status != 0:
            return None
        uc = np.clip(sol.z[lp.blocks["u"]].reshape(H, m), problem.u_lo, problem.u_hi)
        merit_c, cost_c, viol_c = _merit(problem, land, uc, mu)
        return uc, merit_c, cost_c, viol_c, 1, 1
    lp = build_planning_lp(problem, linearized_power(problem, u0), backoff=backoff, cost_scale=1e-3 / land.c_ref,
                           anchor=(u0, w), soft_power=1e3 / land.p_ref)
    sol = solve(lp, cuts=substep_cuts(problem, lp, backoff=backoff))  # the band binds between samples too
    solves, evals = 1, 0
    if sol.status != 0:
        return None
    uc = np.clip(sol.z[lp.blocks["u"]].reshape(H, m), problem.u_lo, problem.u_hi)
    merit_c, cost_c, viol_c = _merit(problem, land, uc, mu)
    evals += 1
    radius = settings.trust_radius if radius is None else radius
    prev = None  # the last re-solve: same rows and columns, so its basis starts the next one
    for _ in range(settings.polish_iterations):
        lo = np.maximum(problem.u_lo, uc - radius * span)
        hi = np.minimum(problem.u_hi, uc + radius * span)
        lp = build_planning_lp(problem, linearized_power(problem, uc), backoff=backoff, u_lo=lo, u_hi=hi, soft_power=mu)
        sol = solve(lp, warm_start=prev, cuts=substep_cuts(problem, lp, backoff=backoff))
        solves += 1
        if sol.status != 0:
            radius *= 0.25
            if radius < 1e-6:
                break
            continue
        prev = sol
        un = np.clip(sol.z[lp.blocks["u"]].reshape(H, m), lo, hi)
        pred = merit_c - sol.objective
        if pred <= settings.polish_tol * max(abs(merit_c), 1e-9):  # first-order stationary on the LP model
            break
        merit_n, cost_n, viol_n = _merit(problem, land, un, mu)
        evals += 1
        ratio = (merit_c - merit_n) / pred
        at_edge = np.any(np.isclose(np.abs(un - uc), radius * span) & (span > 0))
        if ratio > 0.1:
            uc, merit_c, cost_c, viol_c = un, merit_n, cost_n, viol_n
            if land.convex and np.all(lo <= problem.u_lo) and np.all(hi >= problem.u_hi):
                break  # affine power, whole box: the LP was the problem itself, its optimum is global
        if ratio < 0.25:
            radius *= 0.25
        elif ratio > 0.75 and at_edge:
            radius = min(2 * radius, 1.0)
        if radius < 1e-6:
            break
    return uc, merit_c, cost_c, viol_c, solves, evals


def _distinct(U: np.ndarray, order: np.ndarray, span: np.ndarray, k: int, tol: float = 0.02) -> list[int]:
    """The first ``k`` indices of ``order`` whose plans differ by more than ``tol`` (RMS box fraction)."""
    chosen: list[int] = []
    s = np.where(span > 0, span, 1.0)
    for i in order:
        if all(np.sqrt(np.mean(((U[i] - U[j]) / s) ** 2)) > tol for j in chosen):
            chosen.append(int(i))
        if len(chosen) == k:
            break
    return chosen


def idf(problem, *, seed: int = 0, settings: IDFSettings | None = None, backoff: bool = True,
        extra_starts: dict[str, np.ndarray] | None = None,
        progress: Callable[[str, int, int, float, float], None] | None = None) -> IDFResult:
    """Optimise a plan with IDF (see the module docstring).

    ``extra_starts``: named plans (H, m) polished alongside the best particles (e.g. the
    relaxation's optimum).  Returns the best feasible plan found; if none is feasible, the least
    violating one with ``feasible=False``.
    """
    settings = settings or IDFSettings()
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    land = Landscape(problem, backoff=backoff)
    U, E, cost, viol = langevin(problem, land, settings, rng, progress)
    t1 = time.perf_counter()
    span = problem.u_hi - problem.u_lo
    order = np.argsort(E, kind="stable")
    convex = land.convex
    # affine power: the problem is convex, every local optimum is global: polish the best particle only,
    # with the trust region open from the start (the LP model is exact, so every step is accepted)
    n_polish = 1 if convex else settings.polish
    starts = [(f"particle {i}", U[i]) for i in _distinct(U, order, span, n_polish)]
    starts += list((extra_starts or {}).items())
    candidates, solves, evals = [], 0, settings.particles * (settings.iterations + 1)
    best = None
    for j, (name, u0) in enumerate(starts):
        out = polish(problem, u0, land, settings, backoff=backoff, radius=1.0 if convex else None)
        if progress is not None:
            progress("polish", j + 1, len(starts), float("nan") if out is None else out[2],
                     float("nan") if out is None else out[3])
        if out is None:
            solves += 1
            candidates.append({"start": name, "cost": None, "violation": None})
            continue
        u, merit, c, v, s, e = out
        v = max(v, substep_violation(problem, u, backoff=backoff))  # the band between samples, as the LP has it
        solves += s
        evals += e
        candidates.append({"start": name, "cost": c, "violation": v})
        key = (v > FEAS_TOL, c if v <= FEAS_TOL else v)
        if best is None or key < best[0]:
            best = (key, name, u, c, v)
    if best is None:  # no start could be made feasible: return the least violating particle
        i = int(np.argmin(viol))
        best = ((True, float(viol[i])), f"particle {i}", U[i], float(cost[i]), float(viol[i]))
    _, name, u, c, v = best
    t2 = time.perf_counter()
    return IDFResult(u=u, cost=c, feasible=v <= FEAS_TOL, violation=v, evaluations=int(evals),
                     iterations=settings.iterations, particles=settings.particles, lp_solves=solves,
                     seconds=t2 - t0, best_start=name, candidates=candidates,
                     langevin_seconds=t1 - t0, polish_seconds=t2 - t1)
