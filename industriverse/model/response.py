"""The state response to a plan without the prediction matrix.

``x[k+1] = Ad x[k] + Bd u[k] (+ Ed d[k])`` applied by recursion, never folding the states into the
dense (H+1, n, H, m) prediction matrix ``G`` (whose size grows as H²).  The recursion runs over
blocks of ``L`` steps: inside a block the response to the block's own inputs is one small
lower-block-triangular matrix ``Γ`` (L·n, L·m) applied to every block and every plan of a
population in one product, and the state carried between blocks needs ``H/L`` small products.
Work is ``O(P·H·(L·n·m + n²))`` and memory ``O(P·H·(n + m))``: linear in the horizon ``H``.
:meth:`StateResponse.adjoint` applies ``Gᵀ`` the same way backwards (the adjoint recursion that
gives gradients with respect to the plan).
"""
from __future__ import annotations

import math

import numpy as np


def free_response(Ad: np.ndarray, x0: np.ndarray, drive: np.ndarray) -> np.ndarray:
    """States (H+1, n) from ``x0`` (n,) under ``x[k+1] = Ad x[k] + drive[k]``, ``drive`` (H, n)."""
    H = drive.shape[0]
    x = np.empty((H + 1, Ad.shape[0]))
    x[0] = x0
    AdT = Ad.T
    for k in range(H):
        x[k + 1] = x[k] @ AdT + drive[k]
    return x


def impulse_response(Ad: np.ndarray, Bd: np.ndarray, steps: int) -> np.ndarray:
    """``h[i] = Ad^i Bd`` for ``i = 0..steps-1``: (steps, n, m), the state ``i+1`` steps after a unit input."""
    h = np.empty((steps,) + Bd.shape)
    if steps:
        h[0] = Bd
    for i in range(1, steps):
        h[i] = Ad @ h[i - 1]
    return h


class StateResponse:
    """``x = G u`` (states driven by the plan from ``x[0] = 0``) and ``Gᵀ λ`` by blocked recursion.

    ``Ad`` (n, n), ``Bd`` (n, m): the exact discrete dynamics; ``H`` steps.  ``block``: steps per
    block.  The default balances the two costs, measured on populations of 32 plans: a turn of the
    Python loop costs about as much as a ``Γ`` product with ``64² `` entries, so ``L ≈ 64/√(n·m)``
    (64 steps for one zone and one actuator, 2 for fifty), at least ``H/max_blocks`` steps, and
    ``Γ`` under ``max_gamma`` entries.
    """

    def __init__(self, Ad: np.ndarray, Bd: np.ndarray, H: int, block: int | None = None,
                 max_blocks: int = 1024, max_gamma: int = 250_000):
        n, m = Bd.shape
        self.n, self.m, self.H = n, m, H
        if block is None:
            cap = max(1, int(math.isqrt(max(max_gamma // max(n * m, 1), 1))))
            block = min(max(int(64 / math.sqrt(max(n * m, 1))), 2, math.ceil(H / max_blocks)), cap)
        L = self.L = max(1, min(int(block), max(H, 1)))
        self.nb = math.ceil(H / L) if H else 0
        h = impulse_response(Ad, Bd, L)
        # Γ[i, :, j, :] = Ad^(i-j) Bd for j ≤ i: block state i+1 from block input j
        gamma = np.zeros((L, n, L, m))
        for j in range(L):
            gamma[j:, :, j, :] = h[: L - j]
        self.gamma = gamma.reshape(L * n, L * m)
        # Φ[i] = Ad^(i+1): block state i+1 from the state at the block's start
        phi = np.empty((L, n, n))
        phi[0] = Ad
        for i in range(1, L):
            phi[i] = Ad @ phi[i - 1]
        self.phi = phi.reshape(L * n, n)
        self.AL = phi[-1]  # Ad^L

    def _pad(self, a: np.ndarray, steps: int) -> np.ndarray:
        """(P, steps, c) → (P, nb·L, c) with zeros after ``steps``."""
        extra = self.nb * self.L - steps
        return a if extra == 0 else np.concatenate([a, np.zeros((a.shape[0], extra, a.shape[2]))], axis=1)

    def apply(self, U: np.ndarray) -> np.ndarray:
        """States (P, H+1, n) driven by plans ``U`` (P, H, m) from ``x[0] = 0``."""
        P = U.shape[0]
        n, L, nb = self.n, self.L, self.nb
        Y = (self._pad(U, self.H).reshape(P, nb, L * self.m) @ self.gamma.T)  # (P, nb, L·n)
        S = np.zeros((P, nb, n))  # state at each block's start
        last = Y[:, :, (L - 1) * n:]
        ALT = self.AL.T
        for b in range(nb - 1):
            S[:, b + 1] = S[:, b] @ ALT + last[:, b]
        Y += S @ self.phi.T
        X = np.empty((P, self.H + 1, n))
        X[:, 0] = 0.0
        X[:, 1:] = Y.reshape(P, nb * L, n)[:, : self.H]
        return X

    def adjoint(self, Lam: np.ndarray) -> np.ndarray:
        """``Gᵀ λ``: (P, H, m) from ``Lam`` (P, H+1, n), the sensitivities to the states (row 0 ignored)."""
        P = Lam.shape[0]
        n, L, nb = self.n, self.L, self.nb
        lam = self._pad(Lam[:, 1:], self.H).reshape(P, nb, L * n).copy()
        # σ_b = ∂/∂s_b: Φᵀ λ_b + (Ad^L)ᵀ σ_{b+1}; s_{b+1} reads block b's last state, so λ_b's last rows gain σ_{b+1}
        direct = lam @ self.phi  # (P, nb, n)
        sigma = direct[:, -1].copy()
        AL = self.AL
        for b in range(nb - 2, -1, -1):
            lam[:, b, (L - 1) * n:] += sigma
            sigma = direct[:, b] + sigma @ AL
        G = lam @ self.gamma  # (P, nb, L·m)
        return G.reshape(P, nb * L, self.m)[:, : self.H]

    def columns(self) -> np.ndarray:
        """The dense ``G`` as ((H+1)·n, H·m), for small problems only (its columns are responses to unit inputs)."""
        Hm = self.H * self.m
        eye = np.eye(Hm).reshape(Hm, self.H, self.m)
        return self.apply(eye).reshape(Hm, -1).T
