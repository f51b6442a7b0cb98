"""Monte-Carlo simulation of the stochastic plant under a plan and under the baseline controller.

The ensemble is vectorised over trajectories (and over controllers): the only Python loops run
over plan steps and control sub-steps.  Per control sub-step of ``h`` seconds
(:func:`industriverse.plan.tracking.control_substeps`):

* the controllers see the measured (true) state and disturbances and set the actuators
  (the plan through the tracking law of :mod:`industriverse.plan.tracking`, the baseline through
  :mod:`industriverse.verify.baselines`);
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
  :mod:`industriverse.model.kpis` use it at that resolution (so the 15-minute peak is real).
* the envelope and the discomfort are evaluated at every sub-step too: the band of plan step k
  is in force over [t_k, t_{k+1}), its end approached from the left included, and discomfort is
  BOPTEST's time integral of the deviation outside that band (state linear between sub-steps).

The plan and the baseline run in the same pass on the same random draws (common random
numbers), so their per-trajectory differences are paired.  The draws are standard normals
generated in float32 (the arithmetic is float64) from ``numpy.random.SeedSequence(seed)``, one
child per chunk of trajectories, so a result depends on the seed and the ensemble size only.
What does not depend on the controllers (draws, true disturbances, noise increments) is
prepared one plan step ahead on a helper thread.
"""
from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from industriverse.verify.baselines import make_baseline
from industriverse.model.kpis import actuator_travel_kw, band_excess, energy_kpis, excess_integral_h
from industriverse.model.network import electric_power
from industriverse.verify.stats import (BAND_PERCENTILES, clopper_pearson_lower, clopper_pearson_upper, percentile_bands, summary,
                                       t_interval)
from industriverse.plan.tracking import PEAK_WINDOW_S, PlanTracking, SubstepModel, substep_model

VIOLATION_TOL = 1e-6        # state units; excesses below this are round-off, not violations
CHUNK = 8192                # trajectories per vectorised pass (bounds memory; results depend on seed and N only)
HEUN_STIFFNESS = 0.25       # inner step × fastest rate of the linearised network
MAX_MEMORY_ENV = "INDUSTRIVERSE_MAX_MEMORY_MB"  # the memory an ensemble may take (default 2048 MiB)
DEFAULT_MAX_MEMORY_MB = 2048.0


def ensemble_memory_bytes(H: int, n: int, m: int, N: int, C: int = 2) -> float:
    """Peak memory (bytes) of simulating ``C`` controllers over ``N`` trajectories of ``H`` steps with
    ``n`` nodes and ``m`` actuators and summarising them (states, power, set-points, band excess,
    percentiles).  Measured (peak RSS over the import baseline, ``simulate`` of the examples):
    C·N·(H+1)·(16 + 40·n + 12·m) bytes over-estimates each of hvac, hvac_two_zone, microgrid and
    cold_storage by 1.1-1.6x (hvac, 2000 steps × 20 000 trajectories: 5.4 GB estimated, 4.85 GB peak)."""
    return float(C) * N * (H + 1) * (16 + 40 * n + 12 * m)


def max_memory_bytes() -> float:
    """The memory limit of an ensemble: ``$INDUSTRIVERSE_MAX_MEMORY_MB`` MiB (default 2048)."""
    import os

    from industriverse.errors import BadInput

    text = os.environ.get(MAX_MEMORY_ENV) or str(DEFAULT_MAX_MEMORY_MB)
    try:
        mb = float(text)
    except ValueError:
        mb = math.nan
    if not (math.isfinite(mb) and mb > 0):
        raise BadInput(None, MAX_MEMORY_ENV, f"must be a positive number of MiB, got {text[:40]!r}")
    return mb * 2**20


def check_ensemble_memory(problem, N: int, C: int = 2, *, file: str | None = None) -> None:
    """Refuse (:class:`BadInput`, exit 2, the limit named) an ensemble whose estimated peak memory
    (:func:`ensemble_memory_bytes`) is over :func:`max_memory_bytes` -- before any of it is allocated."""
    from industriverse.errors import BadInput

    need, limit = ensemble_memory_bytes(problem.H, problem.n, problem.m, N, C), max_memory_bytes()
    if need > limit:
        raise BadInput(file, "uncertainty.ensemble_size",
                       f"{N} trajectories × {problem.H} steps × {problem.n} node(s) need about {need / 2**20:,.0f} MiB, "
                       f"over the limit of {limit / 2**20:,.0f} MiB (${MAX_MEMORY_ENV}); use fewer trajectories or steps")
KPI_BLOCK_SUBSTEPS = 32     # sub-steps per KPI block (rounded up to whole 15-minute windows): stays in cache
HELPER_THREAD = True        # prepare the next step's noise on a helper thread (False: everything on one core)
FUSED = "auto"              # the compiled kernel: "auto" (large ensembles), "always" or "never" (the numpy path)
OUT_BLOCK = 8               # plan steps per call of the fused kernel (their draws and outputs buffered)
NOMINAL_ROWS = 8             # rows the nominal trajectory takes beside the noisy ones (see run_ensemble)
FUSED_MIN_PATH_STEPS = 1_000_000  # below this the numpy path is as fast as importing numba and loading the kernel
KPI_NAMES = ("energy_kwh", "cost", "emissions_kg", "peak_kw", "discomfort_kh", "travel_kw", "export_kwh")


@dataclass
class Ensemble:
    """Raw ensemble paths of C controllers over N trajectories.

    ``x``: (C, N, H+1, n) states at the plan steps; ``sub_excess``: (C, N, H, n) the largest excess
    outside the band of step k (in force over [t_k, t_{k+1}), its end approached from the left
    included) over the control sub-steps s = 1..S of step k, state units;
    ``discomfort``: (C, N) K·h, the time integral of the deviation outside the band in force
    (:func:`industriverse.model.kpis.discomfort_kh`, state linear between sub-steps);
    ``power``: (C, N, H) electric site power
    averaged over each plan step, kW; ``energy``: the :func:`industriverse.model.kpis.energy_kpis` of the
    site power at the sub-step resolution, each (C, N); ``travel``: (C, N) actuator travel
    Σ|Δu| over the sub-steps, kW; ``u_mean``: (C, N, H, m) set-points averaged over each plan
    step, kW; ``path_steps``: trajectories × sub-steps × controllers integrated.
    """

    names: list[str]
    x: np.ndarray
    sub_excess: np.ndarray
    discomfort: np.ndarray
    power: np.ndarray
    energy: dict
    travel: np.ndarray
    u_mean: np.ndarray
    S: int
    h: float
    path_steps: int
    method: str


def disturbance_limits(problem) -> tuple[np.ndarray, np.ndarray]:
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


def _kpi_block_steps(problem, h: float, S: int) -> int:
    """Plan steps per KPI block.

    A block starts on a 15-minute window boundary and spans whole windows, so the block-wise
    :func:`industriverse.model.kpis.energy_kpis` (sums add up, the peak is the largest block peak)
    equals the whole-horizon one.
    """
    base = 1 if h >= PEAK_WINDOW_S - 1e-9 else math.lcm(S, int(round(PEAK_WINDOW_S / h))) // S
    return min(problem.H, base * max(1, math.ceil(KPI_BLOCK_SUBSTEPS / (base * S))))


def _add_energy(acc: dict, block: dict) -> None:
    for name, v in block.items():
        if name in ("peak_kw", "demand_peaks_kw"):  # peaks: the largest over the blocks
            acc[name] = np.maximum(acc[name], v) if name in acc else v
        else:
            acc[name] = acc[name] + v if name in acc else v


def _dot(X: np.ndarray, MT: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``X @ MT`` for a tall ``X`` (R, k) and a tiny ``MT`` (k, n) (np.matmul is slow on these shapes);
    ``out``: an optional C-contiguous (R, n) float64 array for the result."""
    if MT.shape == (1, 1):
        return np.multiply(X, MT[0, 0], out=out)
    return np.dot(X, MT, out=out)


def _exogenous(problem, model: SubstepModel, rng, Nc: int, noise: bool, J: int):
    """Per plan step k: what does not depend on the controllers, for all S sub-steps at once.

    Yields ``(D, W, xi)``: the true disturbances ``D`` (S, Nc or 1, n_d) (forecast + OU error,
    clipped to physical limits); for linear networks ``W`` (S, Nc, n), the state increment of the
    process noise and of the disturbances' departure from the forecast (``None`` without either);
    for networks with radiation ``xi`` (S, J, Nc, n), the standard normals of the Wiener
    increments.  Draws are standard normals in float32 (the arithmetic is float64), in a fixed
    order: process noise then forecast-error innovations, step by step.
    """
    nonlinear = problem.network.has_nonlinear_dynamics
    H, S, n, n_d = problem.H, model.S, problem.n, problem.d.shape[1]
    d_lo, d_hi = disturbance_limits(problem)
    clip_d = bool(np.isfinite(d_lo).any() or np.isfinite(d_hi).any())
    fe, q = model.fe_index, len(model.fe_index)
    noisy_state = noise and bool(np.any(model.Qd if not nonlinear else model.Qc))
    noisy_dist = noise and q > 0
    LT, EdT = model.noise_factor.T, model.Ed.T
    err_drive = EdT[fe]  # (q, n): state drive per unit of forecast error
    err = np.zeros((Nc, q))
    all_fe = q == n_d and bool(np.array_equal(fe, np.arange(n_d)))  # every disturbance has a forecast error
    for k in range(H):
        # float32 draws enter float64 products directly (exactly as converted first: one pass less)
        xi = rng.standard_normal((S, J, Nc, n), dtype=np.float32) if noisy_state else None
        if nonlinear and xi is not None:
            xi = xi.astype(float)
        E = None
        if noisy_dist:
            kicks = model.ou_s * rng.standard_normal((S, Nc, q), dtype=np.float32)  # scaled innovations, float64
            E = np.empty((S, Nc, q))
            E[0] = err
            for s in range(1, S):  # exact OU steps (elementwise: no BLAS threads next to the integrating thread)
                np.multiply(model.ou_a, E[s - 1], out=E[s])
                E[s] += kicks[s - 1]
            err = model.ou_a * E[S - 1] + kicks[S - 1]
            if all_fe:
                D = E + problem.d[k]
            else:
                D = np.broadcast_to(problem.d[k], (S, Nc, n_d)).copy()
                D[:, :, fe] += E
        else:
            D = np.broadcast_to(problem.d[k], (S, 1, n_d))
        if clip_d:
            D = np.clip(D, d_lo, d_hi[k])
        W = None
        if not nonlinear and (clip_d or E is not None or noisy_state):
            # all S sub-steps in one product (tiny matrices: one BLAS thread, no oversubscription)
            rows = Nc if (E is not None or noisy_state) else 1
            if clip_d:  # the clipped truth's departure from the forecast
                W = _dot((D - problem.d[k]).reshape(-1, n_d), EdT).reshape(S, -1, n)
            elif E is not None:
                W = _dot(E.reshape(S * Nc, q), err_drive).reshape(S, Nc, n)
            if noisy_state:
                w = _dot(xi[:, 0].reshape(S * Nc, n), LT).reshape(S, Nc, n)
                if W is None:
                    W = w
                else:
                    W = W + w if W.shape != w.shape else np.add(W, w, out=W)
            if W.shape[1] != rows:
                W = np.broadcast_to(W, (S, rows, n)).copy()
        yield D, W, (xi if nonlinear else None)


def _draws(problem, model: SubstepModel, rng, Nc: int, noise: bool, B: int = 1):
    """The standard normals of :func:`_exogenous`, drawn in the same order (per plan step: process noise
    (S, 1, Nc, n) then forecast-error innovations (S, Nc, q), float32), for ``B`` plan steps at a time:
    yields ``(xi, kicks)`` of shapes (T, S, 1, Nc, n) and (T, S, Nc, q), T ≤ B steps (``None`` where a term is
    zero); the fused kernel (:mod:`industriverse.verify.fused`) does the rest of the arithmetic."""
    S, n, q, H = model.S, problem.n, len(model.fe_index), problem.H
    noisy_state = noise and bool(np.any(model.Qd))
    noisy_dist = noise and q > 0
    # two sets of buffers, used in turn: the helper thread fills one while the kernel reads the other
    # (drawing into a warm buffer rather than a fresh array each step: the same numbers, no page faults)
    xis = [np.empty((B, S, 1, Nc, n), dtype=np.float32) for _ in range(2)] if noisy_state else [None, None]
    kickss = [np.empty((B, S, Nc, q), dtype=np.float32) for _ in range(2)] if noisy_dist else [None, None]
    for b, k0 in enumerate(range(0, H, B)):
        T = min(B, H - k0)
        xi = xis[b % 2][:T] if noisy_state else None
        kicks = kickss[b % 2][:T] if noisy_dist else None
        for t in range(T):
            if xi is not None:
                rng.standard_normal(dtype=np.float32, out=xi[t])
            if kicks is not None:
                rng.standard_normal(dtype=np.float32, out=kicks[t])
        yield xi, kicks


def _use_fused(problem, controllers, path_steps: int) -> bool:
    """Whether ``run_ensemble`` integrates with the compiled kernel: it applies, :data:`FUSED` allows it and, on
    "auto", the ensemble has at least :data:`FUSED_MIN_PATH_STEPS` path-steps (``path_steps < 0``: any size)."""
    if FUSED == "never" or (FUSED == "auto" and 0 <= path_steps < FUSED_MIN_PATH_STEPS):
        return False
    from industriverse.verify import fused

    return fused.supported(problem, controllers)


def _fused_chunk(problem, model: SubstepModel, controllers, rng, c0: int, c1: int, noise: bool, kpis: bool, helper,
                 x_out, sub_excess, discomfort, p_out, u_mean, energy, travel, progress, N: int) -> None:
    """Trajectories ``c0:c1`` of :func:`run_ensemble` through the compiled kernel (:mod:`industriverse.verify.fused`):
    the same draws, the same arithmetic, one compiled call per block of :data:`OUT_BLOCK` plan steps; writes the
    same outputs."""
    from industriverse.verify import fused

    H, S, n, m, C, Nc = problem.H, model.S, problem.n, problem.m, len(controllers), c1 - c0
    q = len(model.fe_index)
    f64 = lambda a: np.ascontiguousarray(a, dtype=float)  # noqa: E731
    d_lo, d_hi = disturbance_limits(problem)
    clip_d = bool(np.isfinite(d_lo).any() or np.isfinite(d_hi).any())
    noisy_state = noise and bool(np.any(model.Qd))
    noisy_dist = noise and q > 0
    AdT, BdT, LT, EdT = f64(model.Ad.T), f64(model.Bd.T), f64(model.noise_factor.T), f64(model.Ed.T)
    err_drive = f64(EdT[model.fe_index]) if q else np.zeros((0, n))
    fe = np.ascontiguousarray(model.fe_index, dtype=np.int64)
    ou_a, ou_s = (f64(model.ou_a), f64(model.ou_s)) if q else (np.zeros(0), np.zeros(0))
    forecast_drive = f64(problem.d @ model.Ed.T)
    d = f64(problem.d)
    ctl, pw = fused.Controllers(problem, model, controllers, Nc), fused.Power(problem)
    need_d = clip_d or pw.load >= 0 or pw.pv >= 0 or bool(np.any(pw.other >= 0))  # does anything read the true d?
    comfort = np.flatnonzero(problem.thermal & problem.banded).astype(np.int64)
    h_h = model.h / 3600.0
    per = 1 if model.h >= PEAK_WINDOW_S - 1e-9 else int(round(PEAK_WINDOW_S / model.h))
    ramp = f64(np.broadcast_to(problem.ramp, (m,)))
    x_lo, x_hi, u_lo, u_hi = f64(problem.x_lo), f64(problem.x_hi), f64(problem.u_lo), f64(problem.u_hi)
    X = np.broadcast_to(problem.x0.astype(float), (C, Nc, n)).copy()
    x_out[:, c0:c1, 0] = X
    err = np.zeros((Nc, q))
    sums = np.zeros((8, C, Nc))  # import, export, price × import, export price × export, emissions, peak, window, travel
    sums[5] = -np.inf
    u_last = np.zeros((C, Nc, m))
    disc = np.zeros((C, Nc))
    # the step outputs, time first, for a block of OUT_BLOCK steps (one kernel call), then laid out as the
    # Ensemble's (C, N, H, ...): writing a time column of those every step costs more than the kernel; a
    # block of 8 steps fills a cache line per trajectory, and the small buffers stay in the cache
    B = min(H, OUT_BLOCK)
    no_xi, no_kicks = np.zeros((B, 0, 1, 0, n), dtype=np.float32), np.zeros((B, 0, 0, q), dtype=np.float32)
    xs, excess, p_k, u_k = np.empty((B, C, Nc, n)), np.empty((B, C, Nc, n)), np.empty((B, C, Nc)), np.empty((B, C, Nc, m))
    price, export_price, emission = f64(problem.price), f64(problem.export_price), f64(problem.emission)
    exo = _draws(problem, model, rng, Nc, noise, B)
    pending = helper.submit(next, exo) if helper else None
    for k0 in range(0, H, B):
        T = min(B, H - k0)
        if helper:  # this block's draws are ready; the helper draws the next block's while the kernel runs
            xi, kicks = pending.result()
            if k0 + B < H:
                pending = helper.submit(next, exo)
        else:
            xi, kicks = next(exo)
        fused.step(k0, S, X, err, no_xi if xi is None else xi, no_kicks if kicks is None else kicks, noisy_state, noisy_dist,
                   AdT, BdT, forecast_drive, LT, EdT, err_drive, ou_a, ou_s, fe, d, d_lo, d_hi, clip_d,
                   clip_d or noisy_dist or noisy_state, need_d,
                   ctl.kind, ctl.K, ctl.x_ref, ctl.plan, ctl.ramped, ctl.history, ctl.role, ctl.node, ctl.params, ctl.on,
                   ctl.act_node, u_lo, u_hi, ramp, x_lo, x_hi,
                   pw.kind, pw.node, pw.other, pw.coef, pw.load, pw.pv, -float(problem.export_max),
                   kpis, comfort, h_h, per, H * S - 1, price, export_price, emission,
                   xs[:T], excess[:T], disc, p_k[:T], u_k[:T], *sums, u_last)
        x_out[:, c0:c1, k0 + 1:k0 + T + 1] = xs[:T].transpose(1, 2, 0, 3)
        sub_excess[:, c0:c1, k0:k0 + T] = excess[:T].transpose(1, 2, 0, 3)
        p_out[:, c0:c1, k0:k0 + T] = p_k[:T].transpose(1, 2, 0)
        u_mean[:, c0:c1, k0:k0 + T] = u_k[:T].transpose(1, 2, 0, 3)
        if progress is not None:
            progress((c0 + Nc * (k0 + T) / H) / N)
    discomfort[:, c0:c1] = disc
    if kpis:
        imp, exp_, cost_imp, cost_exp, emis, peak, _win, trav = sums
        peak = np.maximum(peak, 0.0)
        acc = {"energy_kwh": imp * h_h, "export_kwh": exp_ * h_h,
               "cost": (cost_imp - cost_exp) * h_h + problem.demand_charge * peak,
               "emissions_kg": emis * h_h, "peak_kw": peak}
        for name, v in acc.items():
            energy.setdefault(name, np.empty((C, N)))[:, c0:c1] = v
        travel[:, c0:c1] = trav


def run_ensemble(problem, controllers: Sequence, N: int, seed: int | None, *, model: SubstepModel | None = None,
                 noise: bool = True, kpis: bool = True, progress: Callable[[float], None] | None = None,
                 fused: bool | None = None, with_nominal: bool = False):
    """Simulate ``controllers`` (each ``start(N)``, ``__call__(j, x, d) -> u``) on the same draws.

    ``noise=False`` gives the nominal run (forecast disturbances, no process noise);
    ``kpis=False`` skips the energy KPIs and the actuator travel (``energy`` stays empty,
    ``travel`` zero: the states and the step-mean power are still computed).  The draws
    come from ``seed`` (see :func:`_exogenous`) and are shared by all controllers; they depend on
    ``seed`` and ``N`` only.  The exogenous inputs of the next plan step are prepared on a helper
    thread while this one integrates (numpy releases the GIL in its loops; one generator, used
    in the same order, gives the same numbers).  ``fused``: integrate with the compiled kernel of
    :mod:`industriverse.verify.fused` where it applies (None: when :data:`FUSED` says so, by default for
    ensembles of at least :data:`FUSED_MIN_PATH_STEPS`); the two paths give the same numbers up to rounding.

    ``with_nominal``: return ``(nominal, ensemble)``, the nominal run (what ``N = 1, noise=False``
    gives) integrated as one more trajectory beside the noisy ones rather than in a pass of its own:
    a pass costs about the same for 1 trajectory as for 200 (numpy's per-call overhead), so this
    saves a third of a strike's simulation.  The noisy trajectories' draws and numbers are unchanged.
    With the compiled kernel the two runs stay apart.
    """
    model = model or substep_model(problem)
    if with_nominal and (fused or (fused is None and _use_fused(problem, controllers, len(controllers) * N * problem.H * model.S))):
        return (run_ensemble(problem, controllers, 1, seed, model=model, noise=False, kpis=kpis, fused=True),
                run_ensemble(problem, controllers, N, seed, model=model, noise=noise, kpis=kpis, progress=progress, fused=True))
    net = problem.network
    H, S, n, m, C = problem.H, model.S, problem.n, problem.m, len(controllers)
    check_ensemble_memory(problem, N, C)
    nonlinear = net.has_nonlinear_dynamics
    J = _heun_substeps(model) if nonlinear else 1
    hh = model.h / J
    sq_qc = np.sqrt(np.diag(model.Qc) * hh)  # Heun: Wiener increments per inner step
    noisy_state = noise and bool(np.any(model.Qc))
    AdT, BdT = model.Ad.T, model.Bd.T
    AT, BT, ET = model.A.T, model.B.T, model.E.T
    forecast_drive = problem.d @ model.Ed.T  # (H, n)
    export_floor = -float(problem.export_max)
    h_h = model.h / 3600.0
    block = _kpi_block_steps(problem, model.h, S)
    rep = lambda a: np.repeat(np.asarray(a, dtype=float), S)  # noqa: E731  (held over the sub-steps)
    price, export_price, emission = rep(problem.price), rep(problem.export_price), rep(problem.emission)
    group_masks = [np.repeat(mask, S) for _, _, mask in problem.demand_groups]  # demand periods, per sub-step

    # the nominal trajectory after the N noisy ones, on NOMINAL_ROWS identical rows: each controller's block of
    # rows keeps its offset mod 8 in memory, so a BLAS kernel that treats rows by their place in its blocks (the
    # state products) rounds every noisy path as without the nominal; the KPIs' sums are per path anyway
    extra = NOMINAL_ROWS if with_nominal else 0
    Nt = N + extra
    x_out = np.empty((C, Nt, H + 1, n))
    sub_excess = np.zeros((C, Nt, H, n))
    discomfort = np.zeros((C, Nt))
    comfort = np.flatnonzero(problem.thermal & problem.banded)  # the nodes discomfort averages over
    x_lo, x_hi = problem.x_lo, problem.x_hi
    p_out = np.empty((C, Nt, H))
    energy: dict[str, np.ndarray] = {}
    travel = np.zeros((C, Nt))
    u_mean = np.empty((C, Nt, H, m))
    children = np.random.SeedSequence(seed).spawn((N + CHUNK - 1) // CHUNK)
    helper = ThreadPoolExecutor(1, thread_name_prefix="exogenous") if noise and HELPER_THREAD else None
    fused = _use_fused(problem, controllers, C * N * H * S) if fused is None else (fused and _use_fused(problem, controllers, -1))
    try:
        for c_i, c0 in enumerate(range(0, N, CHUNK)):
            c1 = min(N, c0 + CHUNK)
            Nc = c1 - c0
            if fused:
                _fused_chunk(problem, model, controllers, np.random.default_rng(children[c_i]), c0, c1, noise, kpis, helper,
                             x_out, sub_excess, discomfort, p_out, u_mean, energy, travel, progress, N)
                continue
            exo = _exogenous(problem, model, np.random.default_rng(children[c_i]), Nc, noise, J)
            if extra and c1 == N:  # the last chunk carries the nominal trajectory
                exo = _with_nominal(exo, _exogenous(problem, model, None, 1, False, J), Nc, extra)
                c1, Nc = c1 + extra, Nc + extra
            pending = helper.submit(next, exo) if helper else None
            X = np.broadcast_to(problem.x0.astype(float), (C, Nc, n)).copy()
            for ctrl in controllers:
                ctrl.start(Nc)
            x_out[:, c0:c1, 0] = X
            # one KPI block of site power and set-points, time first (row 0 of u: the block before's last)
            p_blk = np.empty((block * S, C, Nc))
            u_blk = np.empty((block * S + 1, C, Nc, m))
            acc: dict[str, np.ndarray] = {}
            xs = np.empty((S + 1, C, Nc, n))
            for k in range(H):
                if helper:  # step k's inputs are ready; the helper prepares step k+1 meanwhile
                    Dk, Wk, xik = pending.result()
                    if k + 1 < H:
                        pending = helper.submit(next, exo)
                else:
                    Dk, Wk, xik = next(exo)
                b0 = (k % block) * S
                lo_k, hi_k = x_lo[k], x_hi[k]  # the band in force over [t_k, t_{k+1}]
                xs[0] = X  # the states of this step's sub-steps, for the envelope and discomfort below
                for s in range(S):
                    j = k * S + s
                    D = Dk[s]
                    U = u_blk[b0 + s + 1]
                    for c, ctrl in enumerate(controllers):
                        U[c] = ctrl(j, X[c], D)
                    np.maximum(electric_power(net, U, X, D), export_floor, out=p_blk[b0 + s])
                    if not nonlinear:
                        X_prev, X = X, xs[s + 1]  # written in place: no per-sub-step allocation of the state
                        _dot(X_prev.reshape(C * Nc, n), AdT, out=X.reshape(C * Nc, n))
                        X += _dot(U.reshape(C * Nc, m), BdT).reshape(C, Nc, n)
                        X += forecast_drive[k]
                        if Wk is not None:
                            X += Wk[s]
                    else:
                        drive = _dot(U.reshape(C * Nc, m), BT).reshape(C, Nc, n) + _dot(D, ET)
                        for i in range(J):
                            dW = xik[s, i] * sq_qc if noisy_state else 0.0
                            f0 = X @ AT + drive + net.radiation_correction(X, D)
                            Xp = X + f0 * hh + dW
                            f1 = Xp @ AT + drive + net.radiation_correction(Xp, D)
                            X = X + 0.5 * (f0 + f1) * hh + dW
                        xs[s + 1] = X
                # the envelope and the discomfort between the plan steps, at every sub-step, for the whole step at once
                over = np.maximum(lo_k - xs, xs - hi_k)  # (S+1, C, Nc, n); > 0 outside the band
                worst = sub_excess[:, c0:c1, k]
                np.maximum(over[1:].max(axis=0), 0.0, out=worst)
                if kpis and comfort.size:
                    # only trajectories outside the band at some sub-step of this step contribute (the rest add exactly 0)
                    ci, ni = np.nonzero((over[:, :, :, comfort] > 0.0).any(axis=(0, 3)))
                    if ci.size:
                        seg = xs[:, ci, ni][..., comfort]  # (S+1, K, n_comfort)
                        inc = excess_integral_h(seg[:-1], seg[1:], lo_k[comfort], hi_k[comfort], h_h).mean(axis=-1)
                        acc_d = discomfort[ci, c0 + ni]
                        for s in range(S):  # sub-step by sub-step, as the integral runs (same summation order)
                            acc_d += inc[s]
                        discomfort[ci, c0 + ni] = acc_d
                x_out[:, c0:c1, k + 1] = X
                u_mean[:, c0:c1, k] = u_blk[b0 + 1:b0 + S + 1].mean(axis=0)
                p_out[:, c0:c1, k] = p_blk[b0:b0 + S].mean(axis=0)
                if kpis and ((k + 1) % block == 0 or k == H - 1):  # a whole block of 15-minute windows (or the tail)
                    T, t0 = b0 + S, (k - k % block) * S
                    _add_energy(acc, energy_kpis(p_blk[:T], h_h, price[t0:t0 + T], export_price[t0:t0 + T], emission[t0:t0 + T],
                                                 0.0, axis=0,  # time first, as the block is laid out
                                                 demand_groups=[(0.0, m_[t0:t0 + T]) for m_ in group_masks]))
                    first = 1 if t0 == 0 else 0  # no set-point before the horizon
                    travel[:, c0:c1] += actuator_travel_kw(u_blk[first:T + 1], axis=0)
                    u_blk[0] = u_blk[T]
                if progress is not None:
                    progress((c0 + Nc * (k + 1) / H) / N)
            if kpis:
                acc["cost"] = acc["cost"] + problem.demand_charge * acc["peak_kw"]  # the demand charge on the horizon's peak
                for g, (_, rate, _) in enumerate(problem.demand_groups):  # each demand period's charge on its own peak
                    acc["cost"] = acc["cost"] + rate * acc["demand_peaks_kw"][g]
                acc.pop("demand_peaks_kw", None)
            for name, v in acc.items():
                energy.setdefault(name, np.empty((C, Nt)))[:, c0:c1] = v
    finally:
        if helper:
            helper.shutdown(cancel_futures=True)
    method = (f"stochastic Heun, {J} inner steps per {model.h:g} s control sub-step (radiation)" if nonlinear
              else f"exact ZOH + Van Loan at the {model.h:g} s control sub-step")
    def part(rows: slice, paths: int) -> Ensemble:
        return Ensemble(names=[c.name for c in controllers], x=x_out[:, rows], sub_excess=sub_excess[:, rows],
                        discomfort=discomfort[:, rows], power=p_out[:, rows], energy={k: v[:, rows] for k, v in energy.items()},
                        travel=travel[:, rows], u_mean=u_mean[:, rows], S=S, h=model.h, path_steps=C * paths * H * S * J,
                        method=method)

    if not extra:
        return part(slice(None), N)
    return part(slice(N, N + 1), 1), part(slice(0, N), N)


def _with_nominal(noisy, nominal, Nc: int, rows: int):
    """The exogenous inputs of :func:`_exogenous` for ``Nc`` noisy trajectories followed by ``rows`` copies of
    the nominal one (forecast disturbances, no noise: zero increments), step by step."""
    for (D, W, xi), (Dn, Wn, _) in zip(noisy, nominal):
        S, n_d = D.shape[0], D.shape[-1]
        D = np.concatenate([np.broadcast_to(D, (S, Nc, n_d)), np.broadcast_to(Dn, (S, rows, n_d))], axis=1)
        if W is not None or Wn is not None:
            n = (W if W is not None else Wn).shape[-1]
            W = np.concatenate([np.zeros((S, Nc, n)) if W is None else np.broadcast_to(W, (S, Nc, n)),
                                np.zeros((S, rows, n)) if Wn is None else np.broadcast_to(Wn, (S, rows, n))], axis=1)
        if xi is not None:
            xi = np.concatenate([xi, np.zeros(xi.shape[:2] + (rows,) + xi.shape[3:], dtype=xi.dtype)], axis=2)
        yield D, W, xi


# --- reading a plan -----------------------------------------------------------------------
def plan_from_optimization(problem, doc, file: str | None = None) -> np.ndarray:
    """The plan (H, m) in kW of an optimization JSON ``doc``, checked against ``problem``.

    A document for another domain or another horizon (start, steps, step length), a missing or
    unknown actuator, a wrong length or a non-finite value is :class:`BadInput` naming ``file``
    and the field.
    """
    from datetime import datetime

    from industriverse.errors import BadInput

    if not isinstance(doc, dict):
        raise BadInput(file, None, "an optimization JSON must be an object")
    dom = doc.get("domain")
    if dom is not None and dom != problem.domain:
        raise BadInput(file, "domain", f"the plan is for domain '{dom}', not '{problem.domain}'")
    hz = doc.get("horizon")
    if not isinstance(hz, dict):
        req = doc.get("request")
        hz = req.get("horizon") if isinstance(req, dict) else None
        if isinstance(hz, dict) and "hours" in hz and "step_minutes" in hz:
            try:
                hz = dict(hz, steps=round(float(hz["hours"]) * 60.0 / float(hz["step_minutes"])))
            except (TypeError, ValueError):
                raise BadInput(file, "request.horizon", "hours and step_minutes must be numbers") from None
    if isinstance(hz, dict):
        want = {"start": problem.start, "steps": problem.H, "step_minutes": problem.dt_s / 60.0}
        for key, value in want.items():
            if key not in hz:
                continue
            got = hz[key]
            try:
                same = datetime.fromisoformat(str(got)) == value if key == "start" else abs(float(got) - value) < 1e-9
            except (TypeError, ValueError):
                raise BadInput(file, f"horizon.{key}", f"cannot read {got!r}") from None
            if not same:
                shown = value.isoformat(timespec="minutes") if key == "start" else f"{value:g}"
                raise BadInput(file, f"horizon.{key}", f"the plan's horizon has {key} {got}, the constraint's has {shown}")
    plan = doc.get("plan")
    if not isinstance(plan, dict):
        raise BadInput(file, "plan", "is required: an object {actuator: [kW per step]}")
    for name in plan:
        if name not in problem.actuators:
            raise BadInput(file, f"plan.{name}", f"is not an actuator of this network ({', '.join(problem.actuators)})")
    u = np.empty((problem.H, problem.m))
    for j, name in enumerate(problem.actuators):
        if name not in plan:
            raise BadInput(file, f"plan.{name}", "is missing")
        values = plan[name]
        if not isinstance(values, list) or len(values) != problem.H:
            got = len(values) if isinstance(values, list) else type(values).__name__
            raise BadInput(file, f"plan.{name}", f"needs {problem.H} values (one per step), got {got}")
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
            raise BadInput(file, f"plan.{name}", "values must be numbers (kW)")
        u[:, j] = np.array(values, dtype=float)
        if not np.all(np.isfinite(u[:, j])):
            raise BadInput(file, f"plan.{name}", "values must be finite numbers (kW)")
    return u


# --- the simulation JSON ------------------------------------------------------------------
def _kpis(problem, ens: Ensemble) -> dict[str, np.ndarray]:
    """Per-trajectory KPIs (C, N) of an ensemble."""
    out = dict(ens.energy)
    out["discomfort_kh"] = ens.discomfort
    out["travel_kw"] = ens.travel
    return {name: out[name] for name in KPI_NAMES}


def _violations(problem, ens: Ensemble, c: int) -> np.ndarray:
    """(N, H, n) bool: node i leaves its envelope by more than the tolerance in step k (index k−1 for step k).

    Step k covers the sub-steps of (t_{k−1}, t_k] held to the band in force over [t_{k−1}, t_k) (its end
    approached from the left included), and the state at t_k held to the bound of t_k (terminal
    bounds included).  Between the samples of the first step only the state at t_1 counts: that step
    starts from the measured state (possibly on the edge of its band), and under noise no controller
    can keep it from stepping outside before it acts (the nominal excess of that step is still reported,
    and the shield checks the nominal trajectory at every sub-step).
    """
    at_steps = band_excess(ens.x[c][:, 1:, :], problem.x_lo[1:], problem.x_hi[1:])
    between = ens.sub_excess[c].copy()
    between[:, 0] = 0.0  # the first step starts at the measured state: noise can carry it out before any control acts
    return np.maximum(at_steps, between) > VIOLATION_TOL


def _controller_result(problem, ens: Ensemble, nom: Ensemble, c: int, kpis: dict, ctrl, confidence: float) -> dict:
    N, H = ens.x.shape[1], problem.H
    x = ens.x[c]
    viol = _violations(problem, ens, c)
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
        "power_bands": percentile_bands(ens.power[c]),
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
        "final_state": {node: summary(x[:, -1, i]) for i, node in enumerate(problem.nodes)},
        "per_trajectory": {name: [float(a) for a in v[c]] for name, v in kpis.items()},
        "nominal": {
            "states": {node: [float(a) for a in nom.x[c, 0, :, i]] for i, node in enumerate(problem.nodes)},
            "power_kw": [float(a) for a in nom.power[c, 0]],
            "plan_kw": {a: [float(v) for v in nom.u_mean[c, 0, :, j]] for j, a in enumerate(problem.actuators)},
            "violation": bool(_violations(problem, nom, c).any()),
            "largest_excess_between_samples": float(nom.sub_excess[c, 0].max()),
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

    The JSON: ``domain``, ``kind``, ``request``, ``request_dir``, ``ensemble_size``, ``seed``,
    ``confidence``, ``horizon`` {start, steps, step_minutes, times (H+1), control_minutes,
    substeps}, ``noise`` {process_noise_per_sqrt_h, forecast_error, method,
    common_random_numbers}, ``baseline`` and (with a plan) ``plan``, each:

    * ``controller`` (``tracking`` for the plan) and its ``settings``;
    * ``bands`` {node: {p1, p5, p50, p95, p99: [H+1]}} — state percentiles at k = 0..H;
    * ``power_bands`` {p1..p99: [H]} — site power, kW, averaged over each step;
    * ``violations`` {count: trajectories leaving the envelope by more than ``tolerance`` at t_1
      or at some control sub-step after the first plan step (the band of step k binds over
      [t_k, t_{k+1}], its end approached from the left; the state at t_k also meets the bound
      of t_k, terminal bounds included), by_node: {node: such trajectories}, first_steps: {node: earliest step k ≥ 1 whose
      interval (t_{k−1}, t_k] holds such a departure, or null}, first_step, tolerance};
    * ``violation_probability`` {estimate, upper (one-sided Clopper–Pearson at ``confidence``),
      confidence, limit (the constraint's maximum)};
    * ``kpis`` {energy_kwh, cost, emissions_kg, peak_kw, discomfort_kh, travel_kw, export_kwh:
      {mean, std, p5, p50, p95}} (discomfort: the time integral of the deviation outside the band
      in force, at the sub-step), ``per_trajectory`` {kpi: [N]}, ``final_state`` {node: summary};
    * ``nominal`` {states {node: [H+1]}, power_kw [H], plan_kw {actuator: [H] step means},
      violation, largest_excess_between_samples (state units, over the sub-steps)} — the same
      controller without noise, on the forecast;
    * ``stability_score`` {value: one-sided Clopper–Pearson lower bound of P(no violation), definition}.

    With a plan also ``paired_differences`` {kpi: {mean, ci95 [lo, hi] (Student t on the paired
    per-trajectory differences), percentiles {p1, p5, p50, p95, p99}}} of plan − baseline (a saving
    is negative; the differences themselves are the two ``per_trajectory`` lists subtracted), and
    always ``stats`` {seconds, path_steps, trajectories, controllers}.
    """
    t0 = time.perf_counter()
    unc = problem.constraint.uncertainty
    N = int(unc.ensemble_size if ensemble_size is None else ensemble_size)
    seed = int(unc.seed if seed is None else seed)
    if N < 2:
        raise ValueError(f"an ensemble needs at least 2 trajectories, got {N}")
    confidence = float(unc.confidence)
    model = substep_model(problem)

    ctrls = []
    if plan_u is not None:
        u = np.asarray(plan_u, dtype=float)
        if u.shape != (problem.H, problem.m) or not np.all(np.isfinite(u)):
            raise ValueError(f"plan_u must be finite with shape {(problem.H, problem.m)}, got {u.shape}")
        ctrls.append(PlanTracking(problem, u, model))
    ctrls.append(make_baseline(problem, model, file))
    # one integrator for both runs (the nominal one alone is too small to repay loading the kernel)
    fused = _use_fused(problem, ctrls, len(ctrls) * N * problem.H * model.S)
    nom, ens = run_ensemble(problem, ctrls, N, seed, model=model, progress=progress, fused=fused, with_nominal=True)
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
            # summarised, not dumped: the per-trajectory differences are plan − baseline of the two per_trajectory lists
            diffs[name] = {"mean": float(delta.mean()), "ci95": [lo, hi],
                           "percentiles": {f"p{q:g}": float(v) for q, v in zip(BAND_PERCENTILES, np.percentile(delta, BAND_PERCENTILES))}}
        doc["paired_differences"] = diffs
    doc["stats"] = {"seconds": time.perf_counter() - t0, "path_steps": int(ens.path_steps + nom.path_steps),
                    "trajectories": N, "controllers": len(ctrls)}
    return doc
