"""Exact zero-order-hold discretisation of linear stochastic networks.

For ``dx/dt = A x + B w + noise`` with ``w`` held constant over a step of ``dt`` seconds,
``x[k+1] = Ad x[k] + Bd w[k]`` is exact (matrix exponential of the augmented matrix), and the
covariance of the integrated white noise is exact by Van Loan's method.
"""
from __future__ import annotations

import numpy as np
from scipy.linalg import expm


def zoh(A: np.ndarray, B: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Discretise ``dx/dt = A x + B w`` with ``w`` held over ``dt``.

    Parameters
    ----------
    A : (n, n) array, 1/s
    B : (n, p) array, state units per second per input unit
    dt : float, step length in seconds

    Returns
    -------
    Ad : (n, n) array, ``expm(A dt)``
    Bd : (n, p) array, ``∫_0^dt expm(A s) ds B``
    """
    A = np.atleast_2d(np.asarray(A, dtype=float))
    B = np.asarray(B, dtype=float).reshape(A.shape[0], -1)
    n, p = B.shape
    M = np.zeros((n + p, n + p))
    M[:n, :n] = A
    M[:n, n:] = B
    F = expm(M * dt)
    return F[:n, :n], F[:n, n:]


def van_loan(A: np.ndarray, Qc: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact discretisation of ``dx = A x dt + dW`` with ``Cov(dW) = Qc dt``.

    Parameters
    ----------
    A : (n, n) array, 1/s
    Qc : (n, n) array, spectral density of the noise, state units² per second
    dt : float, seconds

    Returns
    -------
    Ad : (n, n) array, ``expm(A dt)``
    Qd : (n, n) array, ``∫_0^dt expm(A s) Qc expm(A s)ᵀ ds`` — the covariance added per step

    Notes
    -----
    Van Loan (1978): with ``M = [[-A, Qc], [0, Aᵀ]] dt``, ``expm(M) = [[·, F12], [0, F22]]``,
    ``Ad = F22ᵀ`` and ``Qd = Ad F12``.
    """
    A = np.atleast_2d(np.asarray(A, dtype=float))
    n = A.shape[0]
    M = np.zeros((2 * n, 2 * n))
    M[:n, :n] = -A
    M[:n, n:] = np.asarray(Qc, dtype=float)
    M[n:, n:] = A.T
    F = expm(M * dt)
    Ad = F[n:, n:].T
    Qd = Ad @ F[:n, n:]
    return Ad, 0.5 * (Qd + Qd.T)


def ou_step(tau: np.ndarray, sigma: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact one-step coefficients of the stationary Ornstein–Uhlenbeck process.

    ``e[k+1] = a e[k] + s ξ`` with ``a = exp(-dt/τ)`` and ``s = σ sqrt(1 - a²)`` keeps the
    stationary standard deviation ``σ`` (same units as ``σ``) for correlation time ``τ`` (same
    time unit as ``dt``).
    """
    a = np.exp(-dt / np.asarray(tau, dtype=float))
    return a, np.asarray(sigma, dtype=float) * np.sqrt(1.0 - a * a)
