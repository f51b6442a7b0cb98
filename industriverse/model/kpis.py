"""Key performance indicators, after BOPTEST's core KPIs, over arrays of trajectories.

Every function broadcasts over leading (ensemble) axes; the last axis is time.

* energy: electricity imported, kWh (for hvac and cold storage, the actuators' electric use)
* cost: import at the import price minus export at the export price, plus the demand charge on
  the peak and each demand group's charge on its own peak (a URDB demand period), in the
  tariff's currency
* emissions: kg CO₂ of the imported electricity
* peak: the largest 15-minute mean of the import power, kW
* discomfort: K·h, the time integral of the deviation outside the band in force (BOPTEST's tdis),
  averaged over the banded thermal nodes; the state is sampled at the control sub-step
* travel: Σ|Δu|, kW, summed over actuators
"""
from __future__ import annotations

import numpy as np

PEAK_WINDOW_H = 0.25


def fifteen_minute_means(power_kw: np.ndarray, dt_h: float, axis: int = -1) -> np.ndarray:
    """Means of ``power_kw`` over 15-minute windows (steps of ``dt_h`` hours, held) along ``axis``
    (time, the last by default); a trailing partial window is averaged over its own steps.

    Steps of 15 minutes or longer are already constant over every 15-minute window.
    """
    if dt_h >= PEAK_WINDOW_H - 1e-12:
        return power_kw
    per = int(round(PEAK_WINDOW_H / dt_h))
    if abs(per * dt_h - PEAK_WINDOW_H) > 1e-9:
        raise ValueError(f"a step of {dt_h * 60:g} min does not divide 15 minutes")
    power_kw = np.asarray(power_kw, dtype=float)
    T = power_kw.shape[axis]
    starts = np.arange(0, T, per)
    counts = np.minimum(per, T - starts).astype(float)
    shape = [1] * power_kw.ndim
    shape[axis] = len(starts)
    return np.add.reduceat(power_kw, starts, axis=axis) / counts.reshape(shape)


def window_starts(T: int, dt_h: float) -> np.ndarray:
    """First step of each 15-minute window of ``T`` steps of ``dt_h`` hours (as :func:`fifteen_minute_means`)."""
    per = 1 if dt_h >= PEAK_WINDOW_H - 1e-12 else int(round(PEAK_WINDOW_H / dt_h))
    return np.arange(0, T, per)


def energy_kpis(power_kw: np.ndarray, dt_h: float, price: np.ndarray, export_price: np.ndarray,
                emission_factor: np.ndarray, demand_charge_per_kw: float = 0.0, axis: int = -1,
                demand_groups=()) -> dict[str, np.ndarray]:
    """Energy, cost, emissions and peak of site power trajectories.

    Parameters
    ----------
    power_kw : (..., T) electric site power, kW, positive = import, held over each step
        (time along ``axis``, the last by default; time first is the fastest layout)
    dt_h : step length, hours
    price, export_price : (T,) currency/kWh
    emission_factor : (T,) kg CO₂/kWh of imported electricity
    demand_charge_per_kw : currency per kW of the 15-minute peak
    demand_groups : ``(currency/kW, (T,) bool mask)`` pairs: each charged on the largest 15-minute
        mean within its steps (a window belongs where its first step does)

    Returns
    -------
    dict with ``energy_kwh``, ``export_kwh``, ``cost``, ``emissions_kg``, ``peak_kw``, each the shape
    of ``power_kw`` without its time axis; with ``demand_groups`` also ``demand_peaks_kw``
    (G, ...), each group's peak (0 where the group has no step here)
    """
    P = np.moveaxis(np.asarray(power_kw, dtype=float), axis, 0)
    rest = P.shape[1:]
    P = P.reshape(P.shape[0], -1)  # (T, trajectories): a copy only when time is not the outer axis in memory
    imp = np.maximum(P, 0.0)
    exp = imp - P  # = max(−P, 0)
    means = fifteen_minute_means(P, dt_h, axis=0)
    peak = np.maximum(means.max(axis=0), 0.0)
    # the weighted sums over time summed step by step for each trajectory, as the energy is: a trajectory's
    # figures do not depend on how many others are summed beside it (a BLAS product rounds a column by
    # where it falls in the kernel's blocks, so a baseline alone and next to a plan would differ in the last bit)
    def weighted(weights, values):
        return np.multiply(values, np.asarray(weights, dtype=float)[:, None]).sum(axis=0)

    cost = (weighted(price, imp) - weighted(export_price, exp)) * dt_h + demand_charge_per_kw * peak
    out = {
        "energy_kwh": imp.sum(axis=0) * dt_h,
        "export_kwh": exp.sum(axis=0) * dt_h,
        "cost": cost,
        "emissions_kg": weighted(emission_factor, imp) * dt_h,
        "peak_kw": peak,
    }
    if len(demand_groups):
        starts = window_starts(P.shape[0], dt_h)
        gp = np.zeros((len(demand_groups), P.shape[1]))
        for g, (rate, mask) in enumerate(demand_groups):
            win = np.asarray(mask, dtype=bool)[starts]
            if win.any():
                gp[g] = np.maximum(means[win].max(axis=0), 0.0)
            out["cost"] = out["cost"] + rate * gp[g]
        out["demand_peaks_kw"] = gp.reshape(len(demand_groups), *rest)
    return {name: v if name == "demand_peaks_kw" else v.reshape(rest) for name, v in out.items()}


def band_excess(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """How far states lie outside [lo, hi], ≥ 0, same shape as ``x`` (inf bounds never bind)."""
    with np.errstate(invalid="ignore"):
        below = np.where(np.isfinite(lo), lo - x, -np.inf)
        above = np.where(np.isfinite(hi), x - hi, -np.inf)
    return np.maximum(np.maximum(below, above), 0.0)


def mean_positive_part(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean of ``max(f, 0)`` over an interval on which ``f`` runs linearly from ``a`` to ``b``.

    Exact for the linear segment: ``(a⁺ + b⁺) / 2`` when ``f`` keeps its sign, and
    ``max(a, b)² / (2 |a − b|)`` when it crosses zero inside the interval (the part above 0 is a
    triangle).  Elementwise; ``-inf`` (a bound that does not bind) gives 0.
    """
    shape = np.broadcast_shapes(np.shape(a), np.shape(b))
    a, b = np.broadcast_arrays(np.atleast_1d(np.asarray(a, dtype=float)), np.atleast_1d(np.asarray(b, dtype=float)))
    ap, bp = np.maximum(a, 0.0), np.maximum(b, 0.0)
    out = np.add(ap, bp)
    out *= 0.5
    with np.errstate(invalid="ignore"):
        cross = a * b < 0.0  # strictly opposite signs (so a ≠ b); -inf·0 is NaN, not a crossing
    if cross.any():  # few elements: only these pay for the triangle
        top = np.maximum(a[cross], b[cross])
        out[cross] = top * top / (2.0 * np.abs(a[cross] - b[cross]))
    return out.reshape(shape)


def excess_integral_h(x0: np.ndarray, x1: np.ndarray, lo: np.ndarray, hi: np.ndarray, h_h: float) -> np.ndarray:
    """Time integral (state units × h) of the excess outside [lo, hi] over one sample interval.

    The state runs linearly from ``x0`` to ``x1`` over ``h_h`` hours; ``lo``/``hi`` are the band in
    force over the whole interval (its end included, approached from the left); infinite bounds
    never bind.  Same shape as ``x0``.
    """
    def side(bound, first, second):
        """Mean excess beyond one bound; ``None`` where it is exactly 0 everywhere (a bound that is nowhere
        finite, or never exceeded at either end of the interval: then the segment never crosses it)."""
        finite = np.isfinite(bound)
        if not finite.any():
            return None
        if not finite.all():
            with np.errstate(invalid="ignore"):
                first, second = np.where(finite, first, -np.inf), np.where(finite, second, -np.inf)
        first, second = np.asarray(first), np.asarray(second)
        if first.size and second.size and np.max(first) <= 0.0 and np.max(second) <= 0.0:  # NaN fails the test
            return None
        return mean_positive_part(first, second)

    with np.errstate(invalid="ignore"):
        below = side(lo, lo - x0, lo - x1) if np.isfinite(lo).any() else None
        above = side(hi, x0 - hi, x1 - hi) if np.isfinite(hi).any() else None
    if below is None and above is None:
        return np.zeros(np.broadcast_shapes(np.shape(x0), np.shape(x1), np.shape(lo), np.shape(hi)))
    total = above if below is None else below if above is None else below + above
    return total * h_h


def discomfort_kh(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, h_h: float, thermal: np.ndarray) -> np.ndarray:
    """Thermal discomfort after BOPTEST: K·h of the time integral of the deviation outside the band.

    ``x``: (..., H·S+1, n) states sampled every ``h_h`` hours (``S`` samples per plan step, the
    control sub-step; ``S = 1`` for states at the plan steps only); ``lo``/``hi``: (H+1, n) the
    band at the plan steps: the band of step k is in force over [t_k, t_{k+1}), its end approached
    from the left included, so the samples k·S..(k+1)·S are held to row k.  Between samples the
    state is taken linear (:func:`excess_integral_h`, exact on crossings of the band).  Averaged over
    the ``thermal`` (n,) nodes (BOPTEST's K·h per zone).  The integral starts at the initial state,
    as BOPTEST's does.
    """
    if not np.any(thermal):
        return np.zeros(x.shape[:-2])
    H = lo.shape[0] - 1
    T = x.shape[-2] - 1
    if H < 1 or T % H:
        raise ValueError(f"{T + 1} state samples do not fall on {H} plan steps")
    S = T // H
    lo_s = np.repeat(lo[:-1], S, axis=0)[:, thermal]  # (T, n_thermal): the band of each sample interval
    hi_s = np.repeat(hi[:-1], S, axis=0)[:, thermal]
    xs = x[..., thermal]
    ex = excess_integral_h(xs[..., :-1, :], xs[..., 1:, :], lo_s, hi_s, h_h)
    return ex.sum(axis=-2).mean(axis=-1)


def actuator_travel_kw(u: np.ndarray, axis: int = -2) -> np.ndarray:
    """Σ over steps and actuators of |u[k+1] − u[k]|, kW; ``u``: (..., H, m), steps along ``axis``
    (``-2`` by default; ``0`` for the time-first (H, ..., m) layout)."""
    du = np.diff(u, axis=axis)
    return np.abs(du, out=du).sum(axis=(axis, -1))
