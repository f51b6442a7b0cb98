"""Grey-box identification of a thermal network from telemetry.

See :func:`fit_network`.  :func:`simulate_telemetry` makes telemetry of a known network (the
exact solution of its linear SDE at the sample times, plus sensor noise), for tests, the
benchmark and the example dataset.
"""
from __future__ import annotations

import numpy as np

from industriverse.model.estimate import continuous_model, discretize_intervals
from industriverse.model.network import Network
from industriverse.model.telemetry import Telemetry


def simulate_telemetry(network: Network, t: np.ndarray, w: np.ndarray, *, x0: np.ndarray,
                       process_noise: np.ndarray, measurement_noise: np.ndarray,
                       measured: list[str] | None = None, seed: int = 0) -> tuple[Telemetry, np.ndarray]:
    """Telemetry of ``network`` sampled at ``t`` (s) with inputs ``w`` (N, m + n_d) held between samples.

    ``process_noise`` per node, state units/√h; ``measurement_noise`` per node, state units;
    ``measured`` the nodes with a sensor (default: all).  Returns ``(telemetry, true states)``.
    """
    rng = np.random.default_rng(seed)
    t = np.asarray(t, dtype=float)
    A, G = continuous_model(network)
    q = np.asarray(process_noise, float) * np.ones(A.shape[0])
    keys, idx = np.unique(np.round(np.diff(t), 3), return_inverse=True)
    Ad, Gd, Qd = discretize_intervals(A, G, np.diag(q**2 / 3600.0), keys)
    Lq = np.array([np.linalg.cholesky(Q + 1e-300 * np.eye(len(Q))) for Q in Qd])
    N, n = len(t), A.shape[0]
    X = np.empty((N, n))
    x = np.asarray(x0, dtype=float).copy()
    xi = rng.standard_normal((N, n))
    for k in range(N):
        X[k] = x
        if k + 1 < N:
            j = idx[k]
            x = Ad[j] @ x + Gd[j] @ w[k] + Lq[j] @ xi[k]
    r = np.asarray(measurement_noise, float) * np.ones(n)
    Y = X + rng.standard_normal((N, n)) * r
    if measured is not None:
        for i, name in enumerate(network.node_names):
            if name not in measured:
                Y[:, i] = np.nan
    return Telemetry(t - t[0], Y, np.asarray(w, dtype=float)), X
