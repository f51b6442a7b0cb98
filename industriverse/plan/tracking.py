"""Executing a plan under noise: the tracking law, the control sub-step model and the back-off.

A plan ``u_k`` (kW per plan step) is executed by feedback on the deviation of the measured
state from the plan's predicted state, every control sub-step::

    u(t) = clip( plan_k + K · (x(t) − x_pred(t)),  actuator limits,  ramp )

``x_pred`` is the linear (planning) model's prediction of the plan under the forecast, at the
sub-step resolution; ``K`` (kW per state unit) comes from a discrete LQR at the sub-step that
weighs the banded nodes by their band width and the actuators by their range.

The same sub-step model (exact ZOH, Van Loan noise, exact Ornstein–Uhlenbeck forecast error)
gives the closed-loop deviation statistics from which :func:`noise_backoff` derives how far
the optimizer must keep the nominal plan inside the envelope for the chance constraint.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import LinAlgError, cholesky, eigh, solve_discrete_are
from scipy.special import ndtri  # the normal quantile (scipy.stats takes ~0.4 s to import)

from industriverse.model.discretize import ou_step, van_loan, zoh
from industriverse.model.kpis import PEAK_WINDOW_H
from industriverse.model.mapping import SECONDS_PER_HOUR

DEFAULT_CONTROL_MINUTES = 1.0
TRACKING_WEIGHT = 10.0      # weight of a band-wide deviation against a full-range actuator move
UNBANDED_WEIGHT = 1e-6      # keeps (A, Q) detectable on nodes without a band
PEAK_WINDOW_S = PEAK_WINDOW_H * SECONDS_PER_HOUR


# --- the control sub-step -----------------------------------------------------------------
def control_substeps(problem) -> int:
    """Sub-steps per plan step: controllers act every ``baseline.control_minutes`` (default 1 min).

    The sub-step divides the plan step exactly and, when shorter than 15 minutes, also divides
    the 15-minute peak window; the first count at or above ``step / control_minutes`` that
    satisfies both is used.
    """
    minutes = float(problem.constraint.baseline.get("control_minutes", DEFAULT_CONTROL_MINUTES) or DEFAULT_CONTROL_MINUTES)
    S = max(1, int(np.ceil(problem.dt_s / (minutes * 60.0) - 1e-9)))
    for cand in range(S, 16 * S + 1):
        h = problem.dt_s / cand
        if h >= PEAK_WINDOW_S - 1e-9 or abs(PEAK_WINDOW_S / h - round(PEAK_WINDOW_S / h)) < 1e-9:
            return cand
    return S


@dataclass
class SubstepModel:
    """The stochastic plant at the control sub-step of ``h`` seconds (``S`` per plan step).

    ``x⁺ = Ad x + Bd u + Ed (d + e) + w`` with ``w ~ N(0, Qd)`` (``noise_factor @ noise_factorᵀ = Qd``,
    Van Loan, exact), and the forecast error ``e`` of the disturbances ``fe_index`` an
    Ornstein–Uhlenbeck process, ``e⁺ = ou_a e + ou_s ξ`` (exact), ``e = 0`` at the start
    (the current value is measured).  ``A, B, E`` are the continuous matrices (1/s).
    """

    S: int
    h: float
    A: np.ndarray
    B: np.ndarray
    E: np.ndarray
    Ad: np.ndarray
    Bd: np.ndarray
    Ed: np.ndarray
    Qc: np.ndarray
    Qd: np.ndarray
    noise_factor: np.ndarray
    fe_index: np.ndarray
    fe_std: np.ndarray
    ou_a: np.ndarray
    ou_s: np.ndarray


def substep_model(problem) -> SubstepModel:
    """Discretise ``problem``'s network at its control sub-step (see :func:`control_substeps`)."""
    S = control_substeps(problem)
    h = problem.dt_s / S
    A, B, E = problem.network.matrices
    n, m = B.shape
    Ad, BE = zoh(A, np.hstack([B, E]), h)
    Qc = np.diag(np.asarray(problem.process_noise, dtype=float) ** 2 / SECONDS_PER_HOUR)
    Qd = van_loan(A, Qc, h)[1] if np.any(Qc) else np.zeros((n, n))
    names = problem.network.disturbance_names
    fe = problem.constraint.uncertainty.forecast_error
    idx = np.array([i for i, name in enumerate(names) if name in fe and fe[name].std > 0], dtype=int)
    std = np.array([fe[names[i]].std for i in idx], dtype=float)
    tau = np.array([fe[names[i]].correlation_hours for i in idx], dtype=float)
    a, s = ou_step(tau, std, h / SECONDS_PER_HOUR)
    return SubstepModel(S=S, h=h, A=A, B=B, E=E, Ad=Ad, Bd=BE[:, :m], Ed=BE[:, m:], Qc=Qc, Qd=Qd,
                        noise_factor=matrix_sqrt(Qd), fe_index=idx, fe_std=std,
                        ou_a=np.atleast_1d(a), ou_s=np.atleast_1d(s))


def matrix_sqrt(Q: np.ndarray) -> np.ndarray:
    """``L`` with ``L Lᵀ = Q`` for a covariance: Cholesky, or the symmetric root when Q is singular."""
    if not np.any(Q):
        return np.zeros_like(Q)
    try:
        return cholesky(Q, lower=True)
    except LinAlgError:  # nodes without noise make Q semidefinite
        w, V = eigh(Q)
        return V * np.sqrt(np.clip(w, 0.0, None))


# --- the tracking law ---------------------------------------------------------------------
def lqr_gain(problem, model: SubstepModel | None = None, weight: float = TRACKING_WEIGHT) -> np.ndarray:
    """Feedback gain ``K`` (m, n), kW per state unit, of ``u = plan + K (x − x_pred)``.

    Discrete LQR at the sub-step: state weight ``weight / w_i²`` on each banded node (``w_i``
    the median width of its band over the horizon, 1 state unit for a one-sided band), a
    negligible weight on the others; input weight ``1 / range_j²`` per actuator.  Actuators
    whose range is zero get no feedback.  Returns zeros if the Riccati equation has no
    stabilising solution.
    """
    model = model or substep_model(problem)
    n, m = model.Bd.shape
    lo, hi = problem.x_lo[1:], problem.x_hi[1:]
    q = np.full(n, UNBANDED_WEIGHT)
    for i in range(n):
        both = np.isfinite(lo[:, i]) & np.isfinite(hi[:, i])
        if both.any():
            q[i] = weight / max(float(np.median(hi[both, i] - lo[both, i])), 1e-6) ** 2
        elif np.isfinite(lo[:, i]).any() or np.isfinite(hi[:, i]).any():
            q[i] = weight
    rng = np.max(problem.u_hi - problem.u_lo, axis=0)
    active = rng > 1e-9
    K = np.zeros((m, n))
    if not active.any():
        return K
    Bd = model.Bd[:, active]
    R = np.diag(1.0 / rng[active] ** 2)
    try:
        P = solve_discrete_are(model.Ad, Bd, np.diag(q), R)
    except (LinAlgError, ValueError):
        return K
    K[active] = -np.linalg.solve(R + Bd.T @ P @ Bd, Bd.T @ P @ model.Ad)
    return K


def reference_path(problem, u: np.ndarray, model: SubstepModel | None = None) -> np.ndarray:
    """Predicted states (H·S + 1, n) of plan ``u`` (H, m) under the forecast, every sub-step.

    The linear planning model (radiation linearised), inputs and forecast held over each plan step.
    """
    model = model or substep_model(problem)
    S, H = model.S, problem.H
    out = np.empty((H * S + 1, problem.n))
    out[0] = problem.x0
    drive = np.asarray(u, dtype=float) @ model.Bd.T + problem.d @ model.Ed.T  # (H, n)
    x = problem.x0.astype(float)
    for k in range(H):
        for s in range(S):
            x = model.Ad @ x + drive[k]
            out[k * S + s + 1] = x
    return out


class PlanTracking:
    """The tracking law as a vectorised controller: ``u = clip(plan_k + K (x − x_pred))``.

    Called every sub-step ``j`` with measured states ``x`` (N, n); returns set-points (N, m) in
    kW within the step's actuator limits and, from the second plan step on, within the ramp
    limit of the value applied one plan step earlier (the ramp is in kW per plan step).
    """

    name = "tracking"

    def __init__(self, problem, u: np.ndarray, model: SubstepModel | None = None, K: np.ndarray | None = None):
        self.problem = problem
        self.model = model or substep_model(problem)
        self.plan = np.asarray(u, dtype=float).reshape(problem.H, problem.m)
        self.K = lqr_gain(problem, self.model) if K is None else np.asarray(K, dtype=float)
        self.x_ref = reference_path(problem, self.plan, self.model)
        self.settings = {
            "law": "u = clip(plan_k + K (x - x_pred), actuator limits, ramp)",
            "gain_kw_per_unit": {a: {nd: float(self.K[j, i]) for i, nd in enumerate(problem.nodes)}
                                 for j, a in enumerate(problem.actuators)},
            "control_minutes": self.model.h / 60.0,
            "design": f"discrete LQR at the control sub-step, weight {TRACKING_WEIGHT:g} per band width² on banded nodes, 1 per actuator range²",
        }
        self._history = None
        self._ramped = bool(np.isfinite(problem.ramp).any())

    def start(self, N: int) -> None:
        self._history = np.zeros((self.model.S, N, self.problem.m))

    def __call__(self, j: int, x: np.ndarray, d: np.ndarray) -> np.ndarray:
        S, k = self.model.S, j // self.model.S
        dev = x - self.x_ref[j]
        if self.K.shape == (1, 1):  # in place: no allocation per call beyond dev
            u = np.multiply(dev, self.K[0, 0], out=dev)
        else:
            u = np.dot(dev, self.K.T)
        u += self.plan[k]
        # clip as max then min (the same numbers as np.clip, without its per-call overhead)
        np.maximum(u, self.problem.u_lo[k], out=u)
        np.minimum(u, self.problem.u_hi[k], out=u)
        if self._ramped:
            if k > 0:
                before = self._history[j % S]
                np.maximum(u, before - self.problem.ramp, out=u)
                np.minimum(u, before + self.problem.ramp, out=u)
            self._history[j % S] = u
        return u


# --- robustness back-off ------------------------------------------------------------------
def closed_loop_std(problem, K: np.ndarray | None = None, model: SubstepModel | None = None) -> np.ndarray:
    """Standard deviation (H+1, n) of ``x − x_pred`` at the plan steps under the tracking law.

    Exact for the linear sub-step model without clipping: the deviation and the forecast
    errors form one linear Gaussian system, ``z⁺ = F z + noise``, whose covariance is propagated
    sub-step by sub-step from zero (the initial state and the current disturbances are known).
    Clipping at actuator limits can only widen the real spread.
    """
    model = model or substep_model(problem)
    if K is None:
        K = lqr_gain(problem, model)
    n, q = problem.n, len(model.fe_index)
    F = np.zeros((n + q, n + q))
    F[:n, :n] = model.Ad + model.Bd @ K
    F[:n, n:] = model.Ed[:, model.fe_index]
    F[n:, n:] = np.diag(model.ou_a)
    Qz = np.zeros((n + q, n + q))
    Qz[:n, :n] = model.Qd
    Qz[n:, n:] = np.diag(model.ou_s ** 2)
    P = np.zeros((n + q, n + q))
    out = np.zeros((problem.H + 1, n))
    for k in range(problem.H):
        for _ in range(model.S):
            P = F @ P @ F.T + Qz
        out[k + 1] = np.sqrt(np.clip(np.diag(P)[:n], 0.0, None))
    return out


def noise_backoff(problem, multiplier: float = 1.0) -> np.ndarray:
    """Envelope tightening (n,) in state units so the plan meets the chance constraint.

    ``multiplier × z × max_k σ_k,i`` per banded node, where ``σ`` is :func:`closed_loop_std` and
    ``z = Φ⁻¹(1 − p / M)``: a Bonferroni split of the maximum violation probability ``p`` over the
    ``M`` finite envelope bounds the simulator checks (at steps 1..H and at every control
    sub-step in between, S per step), so the union of the bound violations has probability ≤ p
    under the linear Gaussian model.  Zero on nodes without a band.
    """
    model = substep_model(problem)
    std = closed_loop_std(problem, lqr_gain(problem, model), model)
    lo, hi = problem.x_lo[1:], problem.x_hi[1:]
    M = int(np.isfinite(lo).sum() + np.isfinite(hi).sum()) * model.S
    if M == 0:
        return np.zeros(problem.n)
    p = problem.constraint.uncertainty.max_violation_probability
    z = float(ndtri(1.0 - p / M))
    return np.where(problem.banded, multiplier * z * std[1:].max(axis=0), 0.0)
