"""The envelope in continuous time: a band binds the state at every control sub-step of its step.

Definition (shared by the planning LP, IDF's polish and the shield):

* The band in force over ``[t_k, t_{k+1})`` is the envelope sampled at ``t_k`` (``x_lo[k]``,
  ``x_hi[k]``; tightened by the planning back-off when planning).  It binds the state at every
  control sub-step ``t_k + j·δ``, ``j = 1..S`` (``δ = dt/S``, ``S`` from
  :func:`industriverse.plan.tracking.control_substeps`, 1 minute by default) — ``j = S`` is the
  end of the step approached from the left, i.e. ``x[k+1]`` must meet band ``k`` as well as its
  own band ``k+1``.
* Between plan samples the plan and the forecast are held (zero-order hold), so the nominal state
  at a sub-step is affine in the step's start: ``x(t_k + jδ) = Φ_j x_k + Γ_j u_k + Λ_j d_k`` with
  ``(Φ_j, [Γ_j Λ_j]) = zoh(A, [B E], jδ)``, exact.
* Step 0 starts from the given initial state: a node that starts outside band 0 is not bound
  over step 0 (it cannot be), as the sample at ``k = 0`` is not.
* The terminal band binds only ``x[H]`` (at its own time).

With one node the response over a step is monotone (``e^{as}`` between ``x_k`` and its
equilibrium), so the two ends bind it; with several nodes a node can overshoot inside the step,
and the sub-step rows are needed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from industriverse.model.discretize import zoh
from industriverse.plan.tracking import control_substeps


@dataclass
class SubstepResponse:
    """``x(t_k + jδ) = Phi[j-1] x_k + Gam[j-1] u_k + Lam[j-1] d_k`` for ``j = 1..S−1`` (interior sub-steps)."""

    S: int
    Phi: np.ndarray  # (S−1, n, n)
    Gam: np.ndarray  # (S−1, n, m)
    Lam: np.ndarray  # (S−1, n, n_d)


def substep_response(problem) -> SubstepResponse:
    """The exact affine maps from a step's start to its interior control sub-steps."""
    S = control_substeps(problem)
    A, B, E = problem.network.matrices
    n, m = B.shape
    h = problem.dt_s / S
    Phi, Gam, Lam = np.empty((S - 1, n, n)), np.empty((S - 1, n, m)), np.empty((S - 1, n, E.shape[1]))
    for j in range(1, S):
        Ad, BE = zoh(A, np.hstack([B, E]), j * h)
        Phi[j - 1], Gam[j - 1], Lam[j - 1] = Ad, BE[:, :m], BE[:, m:]
    return SubstepResponse(S, Phi, Gam, Lam)


def bands_in_force(problem, backoff: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi), each (H, n): the band of each step ``k`` (in force over ``[t_k, t_{k+1})``), with
    step 0 left free (±inf) for nodes whose initial state is outside band 0."""
    x_lo, x_hi = problem.envelope(backoff=backoff)
    lo, hi = x_lo[:-1].copy(), x_hi[:-1].copy()
    outside = (problem.x0 < lo[0]) | (problem.x0 > hi[0])
    lo[0, outside], hi[0, outside] = -np.inf, np.inf
    return lo, hi


def continuous_envelope(problem, backoff: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi), each (H+1, n): the bounds of the sample states ``x[k]``, ``k = 1..H``, under the
    continuous-time definition — its own band and the band of the step it ends (row 0 as given)."""
    x_lo, x_hi = problem.envelope(backoff=backoff)
    b_lo, b_hi = bands_in_force(problem, backoff=backoff)
    lo, hi = x_lo.copy(), x_hi.copy()
    lo[1:] = np.maximum(lo[1:], b_lo)
    hi[1:] = np.minimum(hi[1:], b_hi)
    return lo, hi


def substep_states(problem, u: np.ndarray, x: np.ndarray | None = None, resp: SubstepResponse | None = None) -> np.ndarray:
    """Nominal states (H, S−1, n) at the interior sub-steps of plan ``u`` (H, m) with sample states ``x``."""
    resp = resp or substep_response(problem)
    x = problem.predict(u) if x is None else x
    return (np.einsum("jab,kb->kja", resp.Phi, x[:-1]) + np.einsum("jab,kb->kja", resp.Gam, u)
            + np.einsum("jab,kb->kja", resp.Lam, problem.d))


def substep_violation(problem, u: np.ndarray, *, backoff: bool = False, x: np.ndarray | None = None) -> float:
    """Largest excess (state units) of plan ``u``'s nominal states over the band in force, over
    every control sub-step and step end (the definition above); 0 if none."""
    x = problem.predict(u) if x is None else x
    lo, hi = bands_in_force(problem, backoff=backoff)
    ends = np.maximum(lo - x[1:], x[1:] - hi)
    worst = float(np.max(ends, initial=0.0))
    if control_substeps(problem) > 1:
        X = substep_states(problem, u, x)
        inner = np.maximum(lo[:, None, :] - X, X - hi[:, None, :])
        worst = max(worst, float(np.max(inner, initial=0.0)))
    return max(worst, 0.0)


def substep_rows(problem, resp: SubstepResponse, backoff: bool = True, only: np.ndarray | None = None):
    """Sparse rows ``a·z ≤ b`` over the LP's ``x`` ((H+1)·n) and ``u`` (H·m) blocks binding the
    interior sub-steps of banded nodes: returns ``(Ax, Au, b, info)``.

    ``only``: boolean (H, S−1, n, 2) mask of (step, sub-step, node, side [min, max]) to emit;
    default every finite one.
    """
    from scipy import sparse

    H, n, m = problem.H, problem.n, problem.m
    lo, hi = bands_in_force(problem, backoff=backoff)
    J = resp.S - 1
    drive = np.einsum("jab,kb->kja", resp.Lam, problem.d)  # (H, J, n)
    fin = np.stack([np.broadcast_to(np.isfinite(lo)[:, None, :], (H, J, n)),
                    np.broadcast_to(np.isfinite(hi)[:, None, :], (H, J, n))], axis=-1)
    mask = fin if only is None else (fin & only)
    k, j, i, side = np.nonzero(mask)
    r = len(k)
    sign = np.where(side == 1, 1.0, -1.0)  # max: +x ≤ hi − drive; min: −x ≤ −(lo − drive)
    bound = np.where(side == 1, hi[k, i], lo[k, i])
    rhs = sign * (bound - drive[k, j, i])
    rows_x = np.repeat(np.arange(r), n)
    cols_x = (k[:, None] * n + np.arange(n)[None, :]).ravel()
    vals_x = (sign[:, None] * resp.Phi[j, i, :]).ravel()
    rows_u = np.repeat(np.arange(r), m)
    cols_u = (k[:, None] * m + np.arange(m)[None, :]).ravel()
    vals_u = (sign[:, None] * resp.Gam[j, i, :]).ravel()
    Ax = sparse.csr_matrix((vals_x, (rows_x, cols_x)), shape=(r, (H + 1) * n))
    Au = sparse.csr_matrix((vals_u, (rows_u, cols_u)), shape=(r, H * m))
    Ax.eliminate_zeros()
    Au.eliminate_zeros()
    info = {"k": k, "substep": j + 1, "node": i, "side": np.where(side == 1, "max", "min"), "bound": bound}
    return Ax, Au, rhs, info
