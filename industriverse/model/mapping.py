"""Map: a client constraint plus a domain model becomes a planning problem.

The planning problem holds everything the optimizer, the simulator and the shield need as
arrays over the horizon: exact discrete dynamics, the linear prediction ``x = x_free + G u``,
the envelope, actuator limits, prices, emission factors and the noise model.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from industriverse.model.catalog import Domain, load_domain
from industriverse.model.constraint import ClientConstraint, build_constraint, read_constraint_file
from industriverse.model.discretize import zoh
from industriverse.model.kpis import energy_kpis
from industriverse.model.network import Network, electric_power
from industriverse.model.series import at, sample

SECONDS_PER_HOUR = 3600.0
PLAN_MEMORY_LIMIT_GB = 4.0  # default; INDUSTRIVERSE_PLAN_MEMORY_GB overrides


def planning_memory_bytes(H: int, n: int, m: int, nnz_Ad: int, nnz_Bd: int) -> float:
    """Estimated peak memory (bytes) of the sparse planning LP over ``H`` steps solved by HiGHS.

    Per step: ``n + m`` state and input columns plus a few power columns, ``n`` dynamics rows
    with ``n + nnz(Ad) + nnz(Bd)`` nonzeros, ramp and power rows.  The per-nonzero and per-row
    constants are set above the peaks measured by ``benchmarks/optimizer.py`` (model build, HiGHS
    presolve copies, IPM factor): 150 bytes per nonzero, 300 per row or column, 100 MB for the
    process (measured: 25 MB above the process for one zone over 8064 steps, where this estimates
    46 MB; 264 MB for 50 zones over 672 steps, estimated 345 MB).
    """
    nnz = H * (n + nnz_Ad + nnz_Bd + 6 * m + 8)
    dims = H * (2 * n + 3 * m + 6)
    return 150.0 * nnz + 300.0 * dims + 100e6


def plan_memory_limit_bytes() -> float:
    import os

    return float(os.environ.get("INDUSTRIVERSE_PLAN_MEMORY_GB", PLAN_MEMORY_LIMIT_GB)) * 1e9


@dataclass
class PlanningProblem:
    """A planning problem over ``H`` steps of ``dt_s`` seconds (states k = 0..H, inputs k = 0..H-1).

    Array shapes: ``x_lo, x_hi``: (H+1, n) in state units (±inf where free; row 0 is not
    enforced, the initial state is given); ``u_lo, u_hi``: (H, m) kW; ``ramp``: (m,) kW per
    step (inf where free); ``d``: (H, n_d) disturbance forecast at step starts; ``price``,
    ``export_price``, ``emission``: (H,).
    """

    domain: str
    kind: str
    constraint: ClientConstraint
    request: dict
    network: Network
    start: datetime
    H: int
    dt_s: float
    x0: np.ndarray
    d: np.ndarray
    x_lo: np.ndarray
    x_hi: np.ndarray
    u_lo: np.ndarray
    u_hi: np.ndarray
    ramp: np.ndarray
    price: np.ndarray
    export_price: np.ndarray
    emission: np.ndarray
    demand_charge: float
    export_max: float
    import_max: float
    energy_budget: float | None
    peak_budget: float | None
    Ad: np.ndarray
    Bd: np.ndarray
    Ed: np.ndarray
    process_noise: np.ndarray  # (n,) state units/√h
    backoff: np.ndarray = field(default=None)  # (n,) tightening of the envelope for planning, state units
    #: the tariff's demand charges, each ``(name, currency/kW, (H,) bool mask of its plan steps)``:
    #: one peak each (a URDB demand period within a month); ``demand_charge`` is on the horizon's peak
    demand_groups: list = field(default_factory=list)

    # --- sizes and labels ------------------------------------------------------------------
    @property
    def n(self) -> int:
        return self.Ad.shape[0]

    @property
    def m(self) -> int:
        return self.Bd.shape[1]

    @property
    def dt_h(self) -> float:
        return self.dt_s / SECONDS_PER_HOUR

    @property
    def nodes(self) -> list[str]:
        return self.network.node_names

    @property
    def actuators(self) -> list[str]:
        return self.network.actuator_names

    @property
    def is_linear(self) -> bool:
        return self.network.is_linear

    def step_times(self, k: np.ndarray | None = None) -> list[str]:
        """ISO local times of states (or step starts) ``k``."""
        ks = range(self.H + 1) if k is None else k
        return [at(self.start, float(i) * self.dt_s / 3600.0).isoformat(timespec="minutes") for i in ks]

    @property
    def thermal(self) -> np.ndarray:
        """(n,) True for thermal nodes (False for storage nodes)."""
        return np.array([not nd.is_storage for nd in self.network.nodes])

    @property
    def banded(self) -> np.ndarray:
        """(n,) True for nodes with a finite envelope bound at some state k = 1..H."""
        return np.isfinite(self.x_lo[1:]).any(axis=0) | np.isfinite(self.x_hi[1:]).any(axis=0)

    # --- prediction ------------------------------------------------------------------------
    @property
    def x_free(self) -> np.ndarray:
        """(H+1, n) states with every actuator at zero (recursion through the exact dynamics)."""
        if getattr(self, "_x_free", None) is None:
            self._x_free = self.simulate_nominal(np.zeros((self.H, self.m)))
        return self._x_free

    def _build_prediction(self) -> None:
        H, n, m = self.H, self.n, self.m
        # G[k, :, j, :] = Ad^(k-1-j) Bd for j < k: column blocks are shifted copies of the impulse response
        impulse = np.empty((H, n, m))
        impulse[0] = self.Bd
        for i in range(1, H):
            impulse[i] = self.Ad @ impulse[i - 1]
        G = np.zeros((H + 1, n, H, m))
        for j in range(H):
            G[j + 1:, :, j, :] = impulse[: H - j]
        self._G = G

    @property
    def G(self) -> np.ndarray:
        """(H+1, n, H, m) response of the states to the inputs: ``x = x_free + G·u``.

        Dense and O(H²·n·m) in memory: built only on first use (the planning LP and ``predict``
        never need it; it is there for callers that want the full sensitivity matrix)."""
        if getattr(self, "_G", None) is None:
            self._build_prediction()
        return self._G

    @property
    def G_flat(self) -> np.ndarray:
        """``G`` as a ((H+1)·n, H·m) matrix."""
        return self.G.reshape((self.H + 1) * self.n, self.H * self.m)

    def simulate_nominal(self, u: np.ndarray) -> np.ndarray:
        """States (..., H+1, n) of plans ``u`` (..., H, m) by the recursion
        ``x[k+1] = Ad x[k] + Bd u[k] + Ed d[k]`` from ``x0`` (O(H·n·(n+m)) per plan)."""
        u = np.asarray(u, dtype=float)
        batch = u.shape[:-2]
        U = u.reshape((-1, self.H, self.m))
        drive = self.d @ self.Ed.T  # (H, n)
        X = np.empty((U.shape[0], self.H + 1, self.n))
        X[:, 0] = self.x0
        BU = U @ self.Bd.T + drive  # (P, H, n)
        AdT = self.Ad.T
        for k in range(self.H):
            X[:, k + 1] = X[:, k] @ AdT + BU[:, k]
        return X.reshape(batch + (self.H + 1, self.n))

    def predict(self, u: np.ndarray) -> np.ndarray:
        """Nominal states (..., H+1, n) of plans ``u`` (..., H, m) under the forecast (linearised network)."""
        return self.simulate_nominal(u)

    # --- power, cost ----------------------------------------------------------------------
    def site_power(self, u: np.ndarray, x: np.ndarray | None = None) -> np.ndarray:
        """Electric site power (..., H) in kW of plans ``u`` (..., H, m) with states ``x`` (..., H+1, n)."""
        if x is None:
            x = self.predict(u)
        return electric_power(self.network, u, x[..., :-1, :], self.d)

    def kpis(self, u: np.ndarray, x: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Energy, cost, emissions, peak of plans ``u`` (see :func:`industriverse.model.kpis.energy_kpis`)."""
        return energy_kpis(self.site_power(u, x), self.dt_h, self.price, self.export_price, self.emission, self.demand_charge,
                           demand_groups=[(r, mask) for _, r, mask in self.demand_groups])

    def linear_power(self, *, nonlinear: str = "raise") -> tuple[np.ndarray, np.ndarray]:
        """``P = p0 + Σ_a W[:, a] u[:, a]`` in kW: (p0 (H,) = load − PV, W (H, m)).

        Exact for actuators whose electric power does not depend on temperature.  An actuator
        with a temperature-dependent COP has no such column: ``nonlinear="raise"`` refuses it,
        ``nonlinear="zero"`` leaves its column 0 for the caller to fill (the LP relaxation and
        the linearisation around a plan in :mod:`industriverse.plan.lp`).
        """
        net, dist = self.network, self.network.disturbance_names
        p0 = np.zeros(self.H)
        if net.site.load is not None:
            p0 += self.d[:, dist.index(net.site.load)]
        if net.site.pv is not None:
            p0 -= self.d[:, dist.index(net.site.pv)]
        W = np.zeros((self.H, self.m))
        for a_i, a in enumerate(net.actuators):
            if a.kind == "heater":
                W[:, a_i] = 1.0 / a.efficiency
            elif a.kind == "battery_charge":
                W[:, a_i] = 1.0
            elif a.kind == "battery_discharge":
                W[:, a_i] = -1.0
            elif a.cop.model == "constant":
                W[:, a_i] = 1.0 / a.cop.value
            elif nonlinear == "raise":
                raise ValueError(f"actuator '{a.name}' has a temperature-dependent COP: its power is not affine")
        return p0, W

    def envelope(self, backoff: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(x_lo, x_hi) tightened by the planning back-off when ``backoff``."""
        if not backoff or self.backoff is None or not np.any(self.backoff):
            return self.x_lo, self.x_hi
        return self.x_lo + self.backoff, self.x_hi - self.backoff

    def with_backoff(self, backoff) -> "PlanningProblem":
        """A copy planning against the envelope tightened by ``backoff`` (scalar or (n,), state units)."""
        import copy

        other = copy.copy(self)
        other.backoff = np.broadcast_to(np.asarray(backoff, dtype=float), (self.n,)).copy()
        return other


def map_constraint(domain: str | Domain, raw: dict, *, file: str | None = None, base_dir: Path | None = None,
                   backoff: float | np.ndarray = 0.0) -> PlanningProblem:
    """Turn a constraint (a dict read from ``file``) plus a domain into a :class:`PlanningProblem`.

    Raises :class:`industriverse.errors.BadInput` naming the file and the field.
    """
    dom = load_domain(domain) if isinstance(domain, str) else domain
    c = build_constraint(raw, dom.defaults, file=file, base_dir=base_dir)
    net = c.network
    H, dt_s = c.horizon.steps, c.horizon.step_seconds
    dt_h = dt_s / SECONDS_PER_HOUR
    t_steps = np.arange(H) * dt_h
    t_states = np.arange(H + 1) * dt_h
    start = c.horizon.start

    def series(spec, t, name):
        return sample(spec, start, t, dt_h, field=name, base_dir=base_dir, file=file)

    n, m = len(net.nodes), len(net.actuators)
    A, B, E = net.matrices
    Ad, BEd = zoh(A, np.hstack([B, E]), dt_s)
    need = planning_memory_bytes(H, n, m, int(np.count_nonzero(Ad)), int(np.count_nonzero(BEd[:, :m])))
    if need > plan_memory_limit_bytes():
        from industriverse.errors import BadInput

        raise BadInput(file, "horizon", f"{H} steps × {n} nodes need about {need / 1e9:.1f} GB to plan, above the limit of "
                                         f"{plan_memory_limit_bytes() / 1e9:.1f} GB (INDUSTRIVERSE_PLAN_MEMORY_GB); "
                                         "use fewer or longer steps")
    d = np.column_stack([series(c.disturbances[n], t_steps, f"disturbances.{n}") for n in net.disturbance_names]) \
        if net.disturbance_names else np.zeros((H, 0))
    x_lo = np.full((H + 1, n), -np.inf)
    x_hi = np.full((H + 1, n), np.inf)
    for name, band in c.envelope.items():
        i = net.index(name)
        if band.min is not None:
            x_lo[:, i] = series(band.min, t_states, f"envelope.{name}.min")
        if band.max is not None:
            x_hi[:, i] = series(band.max, t_states, f"envelope.{name}.max")
    for name, band in c.terminal.items():
        i = net.index(name)
        if band.min is not None:
            x_lo[H, i] = max(x_lo[H, i], series(band.min, t_states[-1:], f"terminal.{name}.min")[0])
        if band.max is not None:
            x_hi[H, i] = min(x_hi[H, i], series(band.max, t_states[-1:], f"terminal.{name}.max")[0])
    bad = np.argwhere(x_lo > x_hi)
    if len(bad):
        k, i = bad[0]
        from industriverse.errors import BadInput

        raise BadInput(file, f"envelope.{net.node_names[i]}", f"min {x_lo[k, i]:g} is above max {x_hi[k, i]:g} at step {k}")
    u_lo = np.empty((H, m))
    u_hi = np.empty((H, m))
    ramp = np.full(m, np.inf)
    for j, a in enumerate(net.actuators):
        lim = c.actuators.get(a.name)
        lo = lim.min_kw if lim and lim.min_kw is not None else a.min_kw
        hi = lim.max_kw if lim and lim.max_kw is not None else a.max_kw
        if lo > hi or lo < 0:
            from industriverse.errors import BadInput

            raise BadInput(file, f"actuators.{a.name}.min_kw", f"must be between 0 and max_kw ({hi:g}), got {lo:g}")
        u_lo[:, j], u_hi[:, j] = lo, hi
        r = lim.ramp_kw_per_step if lim and lim.ramp_kw_per_step is not None else a.ramp_kw_per_step
        if r is not None:
            ramp[j] = r
    price = series(c.tariff.energy, t_steps, "tariff.energy")
    export_price = series(c.tariff.export, t_steps, "tariff.export")
    if np.any(export_price > price + 1e-12):
        from industriverse.errors import BadInput

        k = int(np.argmax(export_price > price))
        raise BadInput(file, "tariff.export", f"export price {export_price[k]:g} is above the import price {price[k]:g} at step {k}")
    emission = series(c.emission_factor, t_steps, "emission_factor")
    groups = []
    for i, dc in enumerate(c.tariff.demand_charges):
        mask = np.zeros(H, dtype=bool)
        for k0, k1 in dc.steps:
            if not k0 < k1 <= H:
                from industriverse.errors import BadInput

                raise BadInput(file, f"tariff.demand_charges[{i}].steps", f"range [{k0}, {k1}) is not within the {H} plan steps")
            mask[k0:k1] = True
        if dc.rate_per_kw > 0:
            groups.append((dc.name or f"demand charge {i}", float(dc.rate_per_kw), mask))
    pn = c.uncertainty.process_noise
    noise = np.array([0.0 if nd.is_storage else (pn.get(nd.name, 0.0) if isinstance(pn, dict) else pn) for nd in net.nodes])
    x0 = np.array([c.initial_state[name] for name in net.node_names], dtype=float)
    return PlanningProblem(
        domain=dom.name, kind=dom.kind, constraint=c, request=raw, network=net, start=start, H=H, dt_s=dt_s,
        x0=x0, d=d, x_lo=x_lo, x_hi=x_hi, u_lo=u_lo, u_hi=u_hi, ramp=ramp, price=price,
        export_price=export_price, emission=emission, demand_charge=c.tariff.demand_charge_per_kw,
        export_max=net.site.export_max_kw, import_max=net.site.import_max_kw or np.inf,
        energy_budget=c.budgets.energy_kwh, peak_budget=c.budgets.peak_kw,
        Ad=Ad, Bd=BEd[:, :m], Ed=BEd[:, m:], process_noise=noise,
        backoff=np.broadcast_to(np.asarray(backoff, dtype=float), (n,)).copy(), demand_groups=groups,
    )


def load_problem(domain: str, constraint_path: str | Path, **kw) -> PlanningProblem:
    """Read ``constraint_path`` and map it for ``domain`` (relative CSV paths resolve next to the file)."""
    path = Path(constraint_path)
    raw = read_constraint_file(path)
    return map_constraint(domain, raw, file=str(path), base_dir=path.parent, **kw)
