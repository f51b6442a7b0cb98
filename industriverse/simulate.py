"""Monte-Carlo simulation of the stochastic plant under a plan and under the baseline controller.

The ensemble is vectorised over trajectories (and over controllers): the only Python loops run
over plan steps and control sub-steps.  Per control sub-step of ``h`` seconds
(:func:`industriverse.tracking.control_substeps`):

* the controllers see the measured (true) state and disturbances and set the actuators
  (the plan through the tracking law of :mod:`industriverse.tracking`, the baseline through
  :mod:`industriverse.baselines`);
* the true disturbance is the forecast (held over the plan step) plus an Ornstein–Uhlenbeck
  forecast error (exact one-step law, zero at the start because the present is measured);
  site load, PV and non-negative heat gains are clipped at zero, and PV is zero where its
  forecast is zero (night);
* linear networks step exactly: ``x⁺ = Ad x + Bd u + Ed d + w`` (ZOH at the sub-step) with the
  process noise ``w ~ N(0, Qd)``, ``Qd`` by Van Loan (exact), factored by Cholesky;
  networks with radiation step by stochastic Heun (additive noise, strong order 1) on inner
  steps short enough for the fastest node;
* electric site power is evaluated at the sub-step (actuators at the state of the sub-step's
  start), export beyond the site's export limit is curtailed, and the KPIs of
  :mod:`industriverse.kpis` use it at that resolution (so the 15-minute peak is real).

The plan and the baseline run in the same pass on the same random draws (common random
numbers), so their per-trajectory differences are paired.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .baselines import make_baseline
from .kpis import actuator_travel_kw, band_excess, discomfort_kh, energy_kpis
from .network import electric_power
from .stats import clopper_pearson_lower, clopper_pearson_upper, percentile_bands, summary, t_interval
from .tracking import PlanTracking, SubstepModel, substep_model

VIOLATION_TOL = 1e-6        # state units; excesses below this are round-off, not violations
CHUNK = 4096                # trajectories per vectorised pass (bounds memory; results depend on seed and N only)
HEUN_STIFFNESS = 0.25       # inner step × fastest rate of the linearised network
MAX_BYTES = 3e9             # refuse ensembles whose state storage would not fit in memory
KPI_NAMES = ("energy_kwh", "cost", "emissions_kg", "peak_kw", "discomfort_kh", "travel_kw", "export_kwh")


@dataclass
class Ensemble:
    """Raw ensemble paths of C controllers over N trajectories.

    ``x``: (C, N, H+1, n) states at the plan steps; ``power``: (C, N, H·S) electric site power
    per sub-step, kW; ``travel``: (C, N) actuator travel Σ|Δu| over the sub-steps, kW;
    ``u_mean``: (C, N, H, m) set-points averaged over each plan step, kW; ``path_steps``:
    trajectories × sub-steps × controllers integrated.
    """

    names: list[str]
    x: np.ndarray
    power: np.ndarray
    travel: np.ndarray
    u_mean: np.ndarray
    S: int
    h: float
    path_steps: int
    method: str


def _disturbance_clips(problem) -> tuple[np.ndarray, np.ndarray]:
    """Lower (n_d,) and upper (H, n_d) physical limits of the true disturbances."""
    net, names = problem.network, problem.network.disturbance_names
    lo = np.full(len(names), -np.inf)
    hi = np.full((problem.H, len(names)), np.inf)
    nonneg = {net.site.load, net.site.pv} | {g.disturbance for g in net.gains}
    for i, name in enumerate(names):
        if name in nonneg and np.all(problem.d[:, i] >= 0.0):
            lo[i] = 0.0
        if name == net.site.pv:
            hi[problem.d[:, i] <= 0.0, i] = 0.0  # no sun, no PV
    return lo, hi


def _heun_substeps(model: SubstepModel) -> int:
    rate = float(np.max(np.abs(np.linalg.eigvals(model.A)))) if model.A.size else 0.0
    return max(1, int(np.ceil(model.h * rate / HEUN_STIFFNESS)))


def run_ensemble(problem, controllers: Sequence, N: int, seed: int | None, *, model: SubstepModel | None = None,
                 noise: bool = True, progress: Callable[[float], None] | None = None) -> Ensemble:
    """Simulate ``controllers`` (each ``start(N)``, ``__call__(j, x, d) -> u``) on the same draws.

    ``noise=False`` gives the nominal run (forecast disturbances, no process noise).
    """
    model = model or substep_model(problem)
    net = problem.network
    H, S, n, m, C = problem.H, model.S, problem.n, problem.m, len(controllers)
    if C * N * ((H + 1) * n + H * S + H * m) * 8 > MAX_BYTES:
        from .errors import BadInput

        raise BadInput(None, "uncertainty.ensemble_size", f"{N} trajectories over {H} steps need more than {MAX_BYTES / 1e9:g} GB")
    nonlinear = net.has_nonlinear_dynamics
    J = _heun_substeps(model) if nonlinear else 1
    d_lo, d_hi = _disturbance_clips(problem)
    fe, q = model.fe_index, len(model.fe_index)
    noisy_state = noise and bool(np.any(model.Qd if not nonlinear else model.Qc))
    noisy_dist = noise and q > 0
    sq_qc = np.sqrt(np.diag(model.Qc) * model.h / J)  # Heun: Wiener increments per inner step
    L = model.noise_factor
    export_floor = -float(problem.export_max)

    x_out = np.empty((C, N, H + 1, n))
    p_out = np.empty((C, N, H * S))
    travel = np.zeros((C, N))
    u_mean = np.empty((C, N, H, m))
    children = np.random.SeedSequence(seed).spawn((N + CHUNK - 1) // CHUNK)
    for c_i, c0 in enumerate(range(0, N, CHUNK)):
        c1 = min(N, c0 + CHUNK)
        Nc = c1 - c0
        rng = np.random.default_rng(children[c_i])
        X = np.broadcast_to(problem.x0.astype(float), (C, Nc, n)).copy()
        err = np.zeros((Nc, q))
        for ctrl in controllers:
            ctrl.start(Nc)
        x_out[:, c0:c1, 0] = X
        u_buf = np.empty((C, Nc, S + 1, m))  # the step's set-points, after the last one of the step before
        for k in range(H):
            xi_w = rng.standard_normal((S, J, Nc, n)) if noisy_state else None
            xi_e = rng.standard_normal((S, Nc, q)) if noisy_dist else None
            for s in range(S):
                j = k * S + s
                D = problem.d[k] + np.zeros((Nc, 1))
                if q:
                    D[:, fe] += err
                D = np.clip(D, d_lo, d_hi[k])
                U = np.stack([ctrl(j, X[c], D) for c, ctrl in enumerate(controllers)])
                u_buf[:, :, s + 1] = U
                P = electric_power(net, U, X, D)
                p_out[:, c0:c1, j] = np.maximum(P, export_floor)
                drive = U @ model.B.T + (D @ model.E.T) if nonlinear else U @ model.Bd.T + D @ model.Ed.T
                if not nonlinear:
                    X = X @ model.Ad.T + drive
                    if noisy_state:
                        X += xi_w[s, 0] @ L.T
                else:
                    hh = model.h / J
                    for i in range(J):
                        dW = xi_w[s, i] * sq_qc if noisy_state else 0.0
                        f0 = X @ model.A.T + drive + net.radiation_correction(X, D)
                        Xp = X + f0 * hh + dW
                        f1 = Xp @ model.A.T + drive + net.radiation_correction(Xp, D)
                        X = X + 0.5 * (f0 + f1) * hh + dW
                if noisy_dist:
                    err = model.ou_a * err + model.ou_s * xi_e[s]
            x_out[:, c0:c1, k + 1] = X
            first = 1 if k == 0 else 0  # no set-point before the horizon
            travel[:, c0:c1] += actuator_travel_kw(u_buf[:, :, first:])
            u_mean[:, c0:c1, k] = u_buf[:, :, 1:].mean(axis=2)
            u_buf[:, :, 0] = u_buf[:, :, S]
            if progress is not None:
                progress((c0 + Nc * (k + 1) / H) / N)
    method = (f"stochastic Heun, {J} inner steps per {model.h:g} s control sub-step (radiation)" if nonlinear
              else f"exact ZOH + Van Loan at the {model.h:g} s control sub-step")
    return Ensemble(names=[c.name for c in controllers], x=x_out, power=p_out, travel=travel, u_mean=u_mean,
                    S=S, h=model.h, path_steps=C * N * H * S * J, method=method)


# --- the simulation JSON ------------------------------------------------------------------
def _kpis(problem, ens: Ensemble) -> dict[str, np.ndarray]:
    """Per-trajectory KPIs (C, N) of an ensemble."""
    S = ens.S
    rep = lambda a: np.repeat(np.asarray(a, dtype=float), S)  # noqa: E731  (held over the sub-steps)
    out = dict(energy_kpis(ens.power, ens.h / 3600.0, rep(problem.price), rep(problem.export_price),
                           rep(problem.emission), problem.demand_charge))
    banded = np.isfinite(problem.x_lo[1:]).any(axis=0) | np.isfinite(problem.x_hi[1:]).any(axis=0)
    out["discomfort_kh"] = discomfort_kh(ens.x, problem.x_lo, problem.x_hi, problem.dt_h, problem.thermal & banded)
    out["travel_kw"] = ens.travel
    return {name: out[name] for name in KPI_NAMES}


def _violations(problem, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, n) bool: state k=1..H of node i is outside its band by more than the tolerance."""
    return band_excess(x[:, 1:, :], problem.x_lo[1:], problem.x_hi[1:]) > VIOLATION_TOL


def _step_power(power: np.ndarray, H: int) -> np.ndarray:
    return power.reshape(power.shape[:-1] + (H, -1)).mean(axis=-1)


def _controller_result(problem, ens: Ensemble, nom: Ensemble, c: int, kpis: dict, ctrl, confidence: float) -> dict:
    N, H = ens.x.shape[1], problem.H
    x = ens.x[c]
    viol = _violations(problem, x)
    any_viol = viol.any(axis=(1, 2))
    count = int(any_viol.sum())
    first = {}
    for i, node in enumerate(problem.nodes):
        steps = np.flatnonzero(viol[:, :, i].any(axis=0))
        first[node] = int(steps[0]) + 1 if steps.size else None
    earliest = [v for v in first.values() if v is not None]
    upper = clopper_pearson_upper(count, N, confidence)
    return {
        "controller": ens.names[c],
        "settings": ctrl.settings,
        "bands": {node: percentile_bands(x[:, :, i]) for i, node in enumerate(problem.nodes)},
        "power_bands": percentile_bands(_step_power(ens.power[c], H)),
        "violations": {
            "count": count,
            "by_node": {node: int(viol[:, :, i].any(axis=1).sum()) for i, node in enumerate(problem.nodes)},
            "first_steps": first,
            "first_step": min(earliest) if earliest else None,
            "tolerance": VIOLATION_TOL,
        },
        "violation_probability": {
            "estimate": count / N,
            "upper": upper,
            "confidence": confidence,
            "limit": problem.constraint.uncertainty.max_violation_probability,
        },
        "kpis": {name: summary(v[c]) for name, v in kpis.items()},
        "per_trajectory": {name: [float(a) for a in v[c]] for name, v in kpis.items()},
        "nominal": {
            "states": {node: [float(a) for a in nom.x[c, 0, :, i]] for i, node in enumerate(problem.nodes)},
            "power_kw": [float(a) for a in _step_power(nom.power[c, 0], H)],
            "plan_kw": {a: [float(v) for v in nom.u_mean[c, 0, :, j]] for j, a in enumerate(problem.actuators)},
            "violation": bool(_violations(problem, nom.x[c]).any()),
        },
        "stability_score": {
            "value": clopper_pearson_lower(N - count, N, confidence),
            "definition": (f"one-sided {confidence:g} Clopper-Pearson lower bound of P(every envelope bound holds at "
                           f"every step k=1..{H}) from {N - count} of {N} simulated trajectories without violation "
                           f"(tolerance {VIOLATION_TOL:g})"),
        },
    }


def _horizon(problem, model: SubstepModel) -> dict:
    return {
        "start": problem.start.isoformat(timespec="minutes"),
        "steps": problem.H,
        "step_minutes": problem.dt_s / 60.0,
        "times": problem.step_times(),
        "control_minutes": model.h / 60.0,
        "substeps": model.S,
    }


def simulate(problem, plan_u: np.ndarray | None = None, *, ensemble_size: int | None = None, seed: int | None = None,
             request_dir: str | None = None, progress: Callable[[float], None] | None = None,
             file: str | None = None) -> dict:
    """Simulate the baseline and, with ``plan_u`` (H, m) in kW, the plan; return the simulation JSON.

    ``ensemble_size`` and ``seed`` default to the constraint's ``uncertainty``; ``file`` names the
    constraint file in errors about the baseline settings; ``progress`` gets the fraction done.
    """
    t0 = time.perf_counter()
    unc = problem.constraint.uncertainty
    N = int(unc.ensemble_size if ensemble_size is None else ensemble_size)
    seed = int(unc.seed if seed is None else seed)
    if N < 2:
        raise ValueError(f"an ensemble needs at least 2 trajectories, got {N}")
    confidence = float(unc.confidence)
    model = substep_model(problem)

    def controllers():
        out = []
        if plan_u is not None:
            out.append(PlanTracking(problem, np.asarray(plan_u, dtype=float), model))
        out.append(make_baseline(problem, model, file))
        return out

    if plan_u is not None:
        u = np.asarray(plan_u, dtype=float)
        if u.shape != (problem.H, problem.m) or not np.all(np.isfinite(u)):
            raise ValueError(f"plan_u must be finite with shape {(problem.H, problem.m)}, got {u.shape}")
    nominal_ctrls = controllers()
    nom = run_ensemble(problem, nominal_ctrls, 1, seed, model=model, noise=False)
    ctrls = controllers()
    ens = run_ensemble(problem, ctrls, N, seed, model=model, progress=progress)
    kpis = _kpis(problem, ens)
    results = [_controller_result(problem, ens, nom, c, kpis, ctrl, confidence) for c, ctrl in enumerate(ctrls)]
    doc = {
        "domain": problem.domain,
        "kind": problem.kind,
        "request": problem.request,
        "request_dir": request_dir,
        "ensemble_size": N,
        "seed": seed,
        "confidence": confidence,
        "horizon": _horizon(problem, model),
        "noise": {
            "process_noise_per_sqrt_h": {node: float(v) for node, v in zip(problem.nodes, problem.process_noise)},
            "forecast_error": {name: {"std": e.std, "correlation_hours": e.correlation_hours}
                               for name, e in unc.forecast_error.items()},
            "method": ens.method,
            "common_random_numbers": plan_u is not None,
        },
        "baseline": results[-1],
    }
    if plan_u is not None:
        doc["plan"] = results[0]
        diffs = {}
        for name, v in kpis.items():
            delta = v[0] - v[1]
            lo, hi = t_interval(delta, 0.95)
            diffs[name] = {"mean": float(delta.mean()), "ci95": [lo, hi], "per_trajectory": [float(a) for a in delta]}
        doc["paired_differences"] = diffs
    doc["stats"] = {"seconds": time.perf_counter() - t0, "path_steps": int(ens.path_steps + nom.path_steps),
                    "trajectories": N, "controllers": len(ctrls)}
    return doc
