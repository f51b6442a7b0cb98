"""State estimation: the continuous–discrete Kalman filter of a thermal network.

The plant is the linear part of the network (radiation linearised, see
:attr:`industriverse.model.network.Network.matrices`) driven by white process noise::

    dx = (A x + B u + E d) dt + dW,   Cov(dW) = Qc dt,   Qc = diag(q²) / 3600
    y_k = H x(t_k) + v_k,             v_k ~ N(0, diag(r²))

* ``q`` — process noise per node, state units per √hour (the constraint's
  ``uncertainty.process_noise``),
* ``r`` — measurement noise per node, state units (°C or kWh),
* ``u``, ``d`` — held from their last sample over each interval (zero-order hold),
* ``H`` selects the nodes measured at ``t_k`` (any subset, possibly none).

Each interval is discretised exactly (:func:`industriverse.model.discretize.zoh` and
:func:`~industriverse.model.discretize.van_loan`), once per distinct interval length, so
irregular sampling and gaps are exact.  The batch filter runs in a compiled loop and reuses
the converged gain while the interval and the set of measured nodes stay the same (the
steady-state filter), which makes a year of 5-minute data take milliseconds.

Two ways in:

* :func:`estimate_state` — filter a whole :class:`~industriverse.model.telemetry.Telemetry`
  and return the mean and covariance of the state at its last sample;
* :class:`StateEstimator` — step-wise, online: ``predict(dt, u, d)`` then
  ``update({"zone": 21.3})``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
from numba import njit

from industriverse.errors import BadInput
from industriverse.model.discretize import van_loan, zoh
from industriverse.model.network import Network
from industriverse.model.telemetry import Telemetry, input_names, read_telemetry

#: default measurement noise, state units (a good room sensor: 0.1 K)
DEFAULT_MEASUREMENT_NOISE = 0.1
#: default process noise, state units per √h
DEFAULT_PROCESS_NOISE = 0.1
#: prior standard deviation of a node nobody measured yet, state units
DEFAULT_INITIAL_STD = 10.0


def _per_node(network: Network, value, default: float, label: str) -> np.ndarray:
    """A number for every node, or a {node: number} mapping (others get ``default``) → (n,) array."""
    names = network.node_names
    if value is None:
        return np.full(len(names), float(default))
    if isinstance(value, Mapping):
        for k in value:
            if k not in names:
                raise BadInput(None, f"{label}.{k}", f"unknown node (nodes: {', '.join(names)})")
        out = np.array([float(value.get(k, default)) for k in names])
    else:
        out = np.broadcast_to(np.asarray(value, dtype=float), (len(names),)).copy()
    if np.any(~np.isfinite(out)) or np.any(out < 0):
        raise BadInput(None, label, "must be finite and not negative")
    return out


def continuous_model(network: Network) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(A, G, c)``: ``ẋ = A x + G w`` with ``w = [u; d]`` (actuators kW, then disturbances),
    and the capacities ``c`` (J per state unit) that make ``A`` symmetrisable."""
    A, B, E = network.matrices
    return A, np.hstack([B, E]), network.capacities


def _phi(s: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """``(exp(s dt) − 1) / s``, equal to ``dt`` at ``s = 0``; ``s ≤ 0`` here, so nothing overflows."""
    z = s * dt
    safe = np.where(np.abs(s) > 0, s, 1.0)
    return np.where(np.abs(z) > 1e-12, np.expm1(z) / safe, dt * (1 + z / 2))


class Discretization:
    """Exact discretisation of ``ẋ = A x + G w + noise`` over a fixed set of interval lengths.

    With the node ``capacities`` (J per state unit), ``A = −C⁻¹L`` with ``L`` symmetric is
    diagonalised once through the symmetric ``C^½ A C^-½ = U Λ Uᵀ``; then for every ``dt`` at
    once ``Ad = V e^{Λdt} V⁻¹``, ``Gd = V φ(Λ, dt) V⁻¹ G`` and
    ``Qd = V [(V⁻¹ Qc V⁻ᵀ) ∘ φ(λᵢ+λⱼ, dt)] Vᵀ`` with ``V = C^-½ U``, ``φ(s, dt) = (e^{s dt} − 1)/s``
    — the same result as :func:`~industriverse.model.discretize.zoh` and
    :func:`~industriverse.model.discretize.van_loan`, without their overflow for stiff
    networks (Van Loan's ``expm(−A dt)`` blows up when ``|λ| dt`` is large).  The noise part
    :meth:`Qd` is cheap once the rest is built, which is what a likelihood over noise
    parameters needs.  Without capacities (or when ``A`` is not of that form) it falls back to
    those two functions per interval.
    """

    def __init__(self, A: np.ndarray, G: np.ndarray, dts, capacities: np.ndarray | None = None):
        self.A, self.G = A, G
        self.dts = np.asarray(dts, dtype=float).reshape(-1)
        n, p = G.shape
        self.eigen = False
        if capacities is not None:
            h = np.sqrt(np.asarray(capacities, dtype=float))
            S = h[:, None] * A / h[None, :]
            if np.abs(S - S.T).max(initial=0.0) <= 1e-10 * max(np.abs(S).max(initial=0.0), 1e-300):
                lam, U = np.linalg.eigh(0.5 * (S + S.T))
                lam = np.minimum(lam, 0.0)  # −L is negative semi-definite; clip round-off
                self.V, self.Vi = U / h[:, None], U.T * h[None, :]
                T = self.dts[:, None]
                self.Ad = (self.V[None] * np.exp(lam[None, :] * T)[:, None, :]) @ self.Vi
                self.Gd = (self.V[None] * _phi(lam[None, :], T)[:, None, :]) @ (self.Vi @ G)
                self.Phi2 = _phi((lam[:, None] + lam[None, :])[None], self.dts[:, None, None])
                self.eigen = True
                return
        self.Ad = np.empty((len(self.dts), n, n))
        self.Gd = np.empty((len(self.dts), n, p))
        for j, dt in enumerate(self.dts):
            self.Ad[j], self.Gd[j] = zoh(A, G, dt)

    def Qd(self, Qc: np.ndarray) -> np.ndarray:
        """(K, n, n) covariance added over each interval for the noise spectral density ``Qc``."""
        if self.eigen:
            M = self.Vi @ Qc @ self.Vi.T
            Qd = self.V @ (M[None] * self.Phi2) @ self.V.T
            return 0.5 * (Qd + np.swapaxes(Qd, 1, 2))
        return np.array([van_loan(self.A, Qc, dt)[1] for dt in self.dts]).reshape(len(self.dts), *self.A.shape)


def discretize_intervals(A: np.ndarray, G: np.ndarray, Qc: np.ndarray, dts, capacities: np.ndarray | None = None
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact ``(Ad, Gd, Qd)`` stacked over the interval lengths ``dts`` (seconds); see :class:`Discretization`."""
    d = Discretization(A, G, dts, capacities)
    return d.Ad, d.Gd, d.Qd(Qc)


@njit(cache=True)
def _filter(Ad, Gd, Qd, idx, y, w, r2, x0, P0, store, xp, xf, e, s, xend, Pend):
    """Kalman filter over all samples; returns (log-likelihood, number of scalar innovations).

    With ``store``: ``xp``/``xf`` prior/posterior means, ``e`` innovations, ``s`` their
    variances (NaN where nothing was measured), each (N, n).  Written with explicit loops
    and preallocated buffers: the matrices are tiny and allocation would dominate.
    """
    N, n = y.shape
    m = w.shape[1]
    x = x0.copy()
    xn = np.empty(n)
    P = P0.copy()
    T = np.empty((n, n))
    Pprev = np.zeros((n, n))
    K = np.zeros((n, n))
    Sinv = np.zeros((n, n))
    Sd = np.zeros(n)
    Ppost = np.zeros((n, n))
    PHt = np.zeros((n, n))
    S = np.zeros((n, n))
    innov = np.zeros(n)
    Lc = np.zeros((n, n))
    Si = np.zeros((n, n))
    zbuf = np.zeros(n)
    obs = np.empty(n, np.int64)
    ll = 0.0
    count = 0
    last_j = -1
    last_mask = -1
    converged = False
    logdet = 0.0
    log2pi = np.log(2.0 * np.pi)
    for k in range(N):
        j = -1
        if k > 0:
            j = idx[k - 1]
            for a in range(n):
                acc = 0.0
                for b in range(n):
                    acc += Ad[j, a, b] * x[b]
                for b in range(m):
                    acc += Gd[j, a, b] * w[k - 1, b]
                xn[a] = acc
            x[:] = xn
        mask = 0
        p = 0
        for i in range(n):
            if not np.isnan(y[k, i]):
                obs[p] = i
                p += 1
                mask += 1 << i
        same = converged and j == last_j and mask == last_mask
        if not same:
            converged = False
            if k > 0:
                # P <- Ad P Adᵀ + Qd
                for a in range(n):
                    for b in range(n):
                        acc = 0.0
                        for c in range(n):
                            acc += Ad[j, a, c] * P[c, b]
                        T[a, b] = acc
                for a in range(n):
                    for b in range(a, n):
                        acc = Qd[j, a, b]
                        for c in range(n):
                            acc += T[a, c] * Ad[j, b, c]
                        P[a, b] = acc
                        P[b, a] = acc
            # the prior covariance repeats: the steady-state gain applies from now on
            if j == last_j and mask == last_mask and k > 1:
                diff = 0.0
                scale = 0.0
                for a in range(n):
                    for b in range(n):
                        diff = max(diff, abs(P[a, b] - Pprev[a, b]))
                        scale = max(scale, abs(P[a, b]))
                if diff <= 1e-11 * scale:
                    converged = True
            Pprev[:, :] = P
        if store:
            xp[k, :] = x
        if p > 0:
            if not same:
                for a in range(p):
                    for b in range(p):
                        S[a, b] = P[obs[a], obs[b]]
                    S[a, a] += r2[obs[a]]
                    Sd[a] = S[a, a]
                # Cholesky S = L Lᵀ in place (lower triangle of Lc), then S⁻¹ column by column
                ld = 0.0
                for a in range(p):
                    for b in range(a + 1):
                        acc = S[a, b]
                        for c in range(b):
                            acc -= Lc[a, c] * Lc[b, c]
                        if a == b:
                            if acc <= 0.0:
                                return -np.inf, count
                            Lc[a, a] = np.sqrt(acc)
                        else:
                            Lc[a, b] = acc / Lc[b, b]
                    ld += 2.0 * np.log(Lc[a, a])
                for col in range(p):
                    for a in range(p):  # forward: L z = e_col
                        acc = 1.0 if a == col else 0.0
                        for c in range(a):
                            acc -= Lc[a, c] * zbuf[c]
                        zbuf[a] = acc / Lc[a, a]
                    for a in range(p - 1, -1, -1):  # backward: Lᵀ s = z
                        acc = zbuf[a]
                        for c in range(a + 1, p):
                            acc -= Lc[c, a] * Si[c, col]
                        Si[a, col] = acc / Lc[a, a]
                for a in range(n):
                    for b in range(p):
                        PHt[a, b] = P[a, obs[b]]
                for a in range(n):
                    for b in range(p):
                        acc = 0.0
                        for c in range(p):
                            acc += PHt[a, c] * Si[c, b]
                        K[a, b] = acc
                for a in range(n):
                    for b in range(a, n):
                        acc = P[a, b]
                        for c in range(p):
                            acc -= K[a, c] * PHt[b, c]
                        Ppost[a, b] = acc
                        Ppost[b, a] = acc
                for a in range(p):
                    for b in range(p):
                        Sinv[a, b] = Si[a, b]
                logdet = ld
            P[:, :] = Ppost
            for a in range(p):
                innov[a] = y[k, obs[a]] - x[obs[a]]
            quad = 0.0
            for a in range(p):
                for b in range(p):
                    quad += innov[a] * Sinv[a, b] * innov[b]
            ll += -0.5 * (logdet + quad + p * log2pi)
            count += p
            for a in range(n):
                acc = 0.0
                for b in range(p):
                    acc += K[a, b] * innov[b]
                x[a] += acc
            if store:
                for a in range(p):
                    e[k, obs[a]] = innov[a]
                    s[k, obs[a]] = Sd[a]
        if store:
            xf[k, :] = x
        last_j = j
        last_mask = mask
    xend[:] = x
    Pend[:, :] = P
    return ll, count


@dataclass
class FilterResult:
    """What :func:`run_filter` returns.  Arrays are (N, n), NaN where a node was not measured."""

    loglik: float
    count: int
    prior: np.ndarray | None = None
    posterior: np.ndarray | None = None
    innovations: np.ndarray | None = None
    innovation_var: np.ndarray | None = None
    mean: np.ndarray | None = None  # (n,) state estimate at the last sample
    covariance: np.ndarray | None = None  # (n, n) its covariance


def initial_guess(y0: np.ndarray, r: np.ndarray | None = None, initial_std: float = DEFAULT_INITIAL_STD
                  ) -> tuple[np.ndarray, np.ndarray]:
    """A prior for the first sample: measured nodes at their reading, the others at the mean
    reading, all with ``initial_std`` (the first update then pulls them to the readings)."""
    fill = np.nanmean(y0) if np.any(np.isfinite(y0)) else 0.0
    x0 = np.where(np.isfinite(y0), y0, fill)
    return x0, np.eye(len(y0)) * initial_std**2


def run_filter(A: np.ndarray, G: np.ndarray, q: np.ndarray, r: np.ndarray, tel: Telemetry, *,
               store: bool = False, x0: np.ndarray | None = None, P0: np.ndarray | None = None,
               cache: dict | None = None, capacities: np.ndarray | None = None,
               disc: "Discretization | None" = None) -> FilterResult:
    """Filter ``tel`` through ``ẋ = A x + G w`` with process noise ``q`` (state units/√h per node)
    and measurement noise ``r`` (state units per node).  ``cache`` (a dict kept by the caller)
    holds the distinct intervals of ``tel`` between calls; ``disc`` a :class:`Discretization`
    of ``A, G`` on those intervals (``cache["dts"][0]``), reused across noise values."""
    n = A.shape[0]
    Qc = np.diag(np.asarray(q, dtype=float) ** 2 / 3600.0)
    if cache is not None and "dts" in cache:
        keys, idx, guess = cache["dts"]
    else:
        keys, idx = np.unique(np.round(np.diff(tel.t), 3), return_inverse=True)
        idx = idx.astype(np.int64)
        guess = initial_guess(tel.y[0])
        if cache is not None:
            cache["dts"] = (keys, idx, guess)
    if disc is None:
        disc = Discretization(A, G, keys, capacities)
    Ad, Gd, Qd = disc.Ad, disc.Gd, disc.Qd(Qc)
    x0 = guess[0] if x0 is None else x0
    P0 = guess[1] if P0 is None else P0
    N = len(tel.t)
    shape = (N, n) if store else (1, n)
    xp, xf = np.full(shape, np.nan), np.full(shape, np.nan)
    e, s = np.full(shape, np.nan), np.full(shape, np.nan)
    w = np.ascontiguousarray(tel.w if tel.w.shape[1] else np.zeros((N, 0)))
    xend, Pend = np.zeros(n), np.zeros((n, n))
    ll, count = _filter(Ad, Gd, Qd, idx if len(idx) else np.zeros(0, np.int64), np.ascontiguousarray(tel.y), w,
                        np.asarray(r, float) ** 2, np.asarray(x0, float), np.asarray(P0, float), store, xp, xf, e, s,
                        xend, Pend)
    if not store:
        return FilterResult(float(ll), int(count), mean=xend, covariance=Pend)
    return FilterResult(float(ll), int(count), xp, xf, e, s, mean=xend, covariance=Pend)


class StateEstimator:
    """Online Kalman filter of a network: ``predict`` over an interval, ``update`` with readings.

    Parameters
    ----------
    network : the plant
    process_noise : number or {node: number}, state units per √h (default 0.1)
    measurement_noise : number or {node: number}, state units (default 0.1)
    initial : {node: value} or (n,) array, the state at the start (default: unknown, filled
        from the first readings by :meth:`update`)
    initial_std : number or {node: number}, prior standard deviation, state units (default 10)

    Example
    -------
    >>> est = StateEstimator(net, process_noise=0.2, measurement_noise=0.1)
    >>> est.update({"zone": 20.7})                      # first reading
    >>> est.predict(300, u={"heater": 4.0}, d={"ambient": 3.0})
    >>> est.update({"zone": 20.9})
    >>> est.state, est.std                              # {node: °C}, {node: °C}
    """

    def __init__(self, network: Network, *, process_noise=None, measurement_noise=None,
                 initial: Mapping[str, float] | np.ndarray | None = None, initial_std=DEFAULT_INITIAL_STD):
        self.network = network
        self.names = network.node_names
        self.inputs = input_names(network)
        self.q = _per_node(network, process_noise, DEFAULT_PROCESS_NOISE, "process_noise")
        self.r = _per_node(network, measurement_noise, DEFAULT_MEASUREMENT_NOISE, "measurement_noise")
        self.A, self.G, self.c = continuous_model(network)
        self.Qc = np.diag(self.q**2 / 3600.0)
        n = len(self.names)
        std = _per_node(network, initial_std, DEFAULT_INITIAL_STD, "initial_std")
        self.P = np.diag(std**2)
        self._unset = initial is None
        if initial is None:
            self.x = np.full(n, np.nan)
        elif isinstance(initial, Mapping):
            self._unset = any(k not in initial for k in self.names)
            self.x = np.array([float(initial.get(k, np.nan)) for k in self.names])
        else:
            self.x = np.asarray(initial, dtype=float).reshape(n).copy()
        self._cache: dict[float, tuple] = {}
        self.last_input: np.ndarray | None = None
        #: log-likelihood of every innovation so far (Gaussian), for model comparison
        self.loglik = 0.0

    # ------------------------------------------------------------------------------------
    def _vector(self, values, names: list[str], label: str) -> np.ndarray:
        if values is None:
            if self.last_input is None and names:
                raise BadInput(None, label, f"needs a value for every input ({', '.join(names)}) at the first predict")
            return self.last_input
        if isinstance(values, Mapping):
            out = self.last_input.copy() if self.last_input is not None else np.full(len(names), np.nan)
            for k, v in values.items():
                if k not in names:
                    raise BadInput(None, f"{label}.{k}", f"unknown input (inputs: {', '.join(names)})")
                out[names.index(k)] = float(v)
        else:
            out = np.asarray(values, dtype=float).reshape(len(names))
        if np.any(~np.isfinite(out)):
            missing = [names[i] for i in np.flatnonzero(~np.isfinite(out))]
            raise BadInput(None, f"{label}.{missing[0]}", "has no value (give it once; it is held afterwards)")
        return out

    def _discrete(self, dt: float):
        key = round(float(dt), 3)
        if key not in self._cache:
            if len(self._cache) > 256:
                self._cache.clear()
            Ad, Gd, Qd = discretize_intervals(self.A, self.G, self.Qc, [key], self.c)
            self._cache[key] = (Ad[0], Gd[0], Qd[0])
        return self._cache[key]

    def predict(self, dt: float, u=None, d=None) -> None:
        """Advance by ``dt`` seconds with actuators ``u`` (kW) and disturbances ``d`` held.

        ``u`` and ``d`` are {name: value} (names not given keep their last value) or arrays in
        ``network.actuator_names`` / ``network.disturbance_names`` order.
        """
        if not np.isfinite(dt) or dt < 0:
            raise BadInput(None, "dt", f"must be a finite number of seconds ≥ 0, got {dt}")
        if dt == 0:
            return
        m = len(self.network.actuator_names)
        if isinstance(u, Mapping) or isinstance(d, Mapping) or u is None or d is None:
            merged: dict[str, float] = {}
            for part in (u, d):
                if isinstance(part, Mapping):
                    merged.update(part)
                elif part is not None:
                    arr = np.asarray(part, dtype=float).ravel()
                    names = self.inputs[:m] if part is u else self.inputs[m:]
                    merged.update(dict(zip(names, arr)))
            w = self._vector(merged if merged else None, self.inputs, "input")
        else:
            w = np.concatenate([np.asarray(u, float).ravel(), np.asarray(d, float).ravel()])
            w = self._vector(w, self.inputs, "input")
        self.last_input = w
        if self._unset:
            raise BadInput(None, "initial", "the state is unknown: give 'initial' or call update() with readings first")
        Ad, Gd, Qd = self._discrete(dt)
        self.x = Ad @ self.x + (Gd @ w if len(w) else 0.0)
        P = Ad @ self.P @ Ad.T + Qd
        self.P = 0.5 * (P + P.T)

    def update(self, readings: Mapping[str, float]) -> dict[str, float]:
        """Correct with readings {node: value} of any subset of nodes; returns the innovations."""
        obs, vals = [], []
        for k, v in readings.items():
            if k not in self.names:
                raise BadInput(None, f"readings.{k}", f"unknown node (nodes: {', '.join(self.names)})")
            if v is None or not np.isfinite(v):
                continue
            obs.append(self.names.index(k))
            vals.append(float(v))
        if not obs:
            return {}
        obs_a, y = np.array(obs), np.array(vals)
        if self._unset:  # first readings: fill the unknown nodes from them
            fill = float(np.mean(y))
            self.x = np.where(np.isfinite(self.x), self.x, fill)
            self.x[obs_a] = y
            self._unset = False
        e = y - self.x[obs_a]
        S = self.P[np.ix_(obs_a, obs_a)] + np.diag(self.r[obs_a] ** 2)
        PHt = self.P[:, obs_a]
        K = np.linalg.solve(S, PHt.T).T
        self.loglik += -0.5 * (np.linalg.slogdet(S)[1] + e @ np.linalg.solve(S, e) + len(e) * np.log(2 * np.pi))
        self.x = self.x + K @ e
        P = self.P - K @ PHt.T
        self.P = 0.5 * (P + P.T)
        return {self.names[i]: float(v) for i, v in zip(obs_a, e)}

    # ------------------------------------------------------------------------------------
    @property
    def mean(self) -> np.ndarray:
        """(n,) state estimate, state units, in ``network.node_names`` order."""
        return self.x.copy()

    @property
    def covariance(self) -> np.ndarray:
        """(n, n) covariance of the estimate, state units²."""
        return self.P.copy()

    @property
    def state(self) -> dict[str, float]:
        return dict(zip(self.names, map(float, self.x)))

    @property
    def std(self) -> dict[str, float]:
        return dict(zip(self.names, map(float, np.sqrt(np.diag(self.P)))))


def noise_of(doc: Mapping | None) -> tuple[dict | None, dict | None]:
    """``(process_noise, measurement_noise)`` from a fitted network file (``industriverse fit``
    output) or a constraint dict; ``None`` where it says nothing."""
    if not isinstance(doc, Mapping):
        return None, None
    unc = doc.get("uncertainty") if isinstance(doc.get("uncertainty"), Mapping) else {}
    return unc.get("process_noise"), unc.get("measurement_noise")


def estimate_state(network: Network, readings: Telemetry | str | Path, *, process_noise=None,
                   measurement_noise=None, columns: dict[str, str] | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The state at the last reading, filtered through every reading before it.

    Parameters
    ----------
    network : the plant
    readings : a :class:`Telemetry` or the path of a telemetry CSV (see
        :mod:`industriverse.model.telemetry`)
    process_noise, measurement_noise : as in :class:`StateEstimator`
    columns : CSV column renames {old: new}

    Returns
    -------
    mean : (n,) state units (°C, kWh), in ``network.node_names`` order
    covariance : (n, n) state units²
    """
    tel = readings if isinstance(readings, Telemetry) else read_telemetry(readings, network, columns=columns)
    q = _per_node(network, process_noise, DEFAULT_PROCESS_NOISE, "process_noise")
    r = _per_node(network, measurement_noise, DEFAULT_MEASUREMENT_NOISE, "measurement_noise")
    A, G, c = continuous_model(network)
    res = run_filter(A, G, q, r, tel, capacities=c)
    return res.mean, res.covariance
