"""Key performance indicators, after BOPTEST's core KPIs, over arrays of trajectories.

Every function broadcasts over leading (ensemble) axes; the last axis is time.

* energy: electricity imported, kWh (for hvac and cold storage, the actuators' electric use)
* cost: import at the import price minus export at the export price, plus the demand charge on
  the peak, in the tariff's currency
* emissions: kg CO₂ of the imported electricity
* peak: the largest 15-minute mean of the import power, kW
* discomfort: K·h outside the band, summed over time, averaged over the banded thermal nodes
* travel: Σ|Δu|, kW, summed over actuators
"""
from __future__ import annotations

import numpy as np

PEAK_WINDOW_H = 0.25


def fifteen_minute_means(power_kw: np.ndarray, dt_h: float) -> np.ndarray:
    """Means of ``power_kw`` (..., T) over 15-minute windows (steps of ``dt_h`` hours, held).

    Steps of 15 minutes or longer are already constant over every 15-minute window.
    """
    if dt_h >= PEAK_WINDOW_H - 1e-12:
        return power_kw
    per = int(round(PEAK_WINDOW_H / dt_h))
    if abs(per * dt_h - PEAK_WINDOW_H) > 1e-9:
        raise ValueError(f"a step of {dt_h * 60:g} min does not divide 15 minutes")
    T = power_kw.shape[-1]
    full = (T // per) * per
    blocks = power_kw[..., :full].reshape(power_kw.shape[:-1] + (T // per, per)).mean(axis=-1)
    if full < T:
        blocks = np.concatenate([blocks, power_kw[..., full:].mean(axis=-1, keepdims=True)], axis=-1)
    return blocks


def energy_kpis(power_kw: np.ndarray, dt_h: float, price: np.ndarray, export_price: np.ndarray,
                emission_factor: np.ndarray, demand_charge_per_kw: float = 0.0) -> dict[str, np.ndarray]:
    """Energy, cost, emissions and peak of site power trajectories.

    Parameters
    ----------
    power_kw : (..., T) electric site power, kW, positive = import, held over each step
    dt_h : step length, hours
    price, export_price : (T,) currency/kWh
    emission_factor : (T,) kg CO₂/kWh of imported electricity
    demand_charge_per_kw : currency per kW of the 15-minute peak

    Returns
    -------
    dict with ``energy_kwh``, ``export_kwh``, ``cost``, ``emissions_kg``, ``peak_kw``, each (...,)
    """
    imp = np.maximum(power_kw, 0.0)
    exp = np.maximum(-power_kw, 0.0)
    peak = np.maximum(fifteen_minute_means(power_kw, dt_h).max(axis=-1), 0.0)
    energy = imp.sum(axis=-1) * dt_h
    cost = (imp * price - exp * export_price).sum(axis=-1) * dt_h + demand_charge_per_kw * peak
    return {
        "energy_kwh": energy,
        "export_kwh": exp.sum(axis=-1) * dt_h,
        "cost": cost,
        "emissions_kg": (imp * emission_factor).sum(axis=-1) * dt_h,
        "peak_kw": peak,
    }


def band_excess(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """How far states lie outside [lo, hi], ≥ 0, same shape as ``x`` (inf bounds never bind)."""
    with np.errstate(invalid="ignore"):
        below = np.where(np.isfinite(lo), lo - x, -np.inf)
        above = np.where(np.isfinite(hi), x - hi, -np.inf)
    return np.maximum(np.maximum(below, above), 0.0)


def discomfort_kh(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, dt_h: float, thermal: np.ndarray) -> np.ndarray:
    """Thermal discomfort, K·h, averaged over the banded thermal nodes.

    ``x``: (..., H+1, n) states at step boundaries; ``lo``/``hi``: (H+1, n); ``thermal``: (n,)
    bool mask of the nodes that count (thermal nodes with a band).  The initial state (k = 0)
    is given, not controlled, and does not count.
    """
    if not np.any(thermal):
        return np.zeros(x.shape[:-2])
    ex = band_excess(x[..., 1:, :], lo[1:], hi[1:])[..., thermal]
    return ex.sum(axis=-2).mean(axis=-1) * dt_h


def actuator_travel_kw(u: np.ndarray) -> np.ndarray:
    """Σ over steps and actuators of |u[k+1] − u[k]|, kW; ``u``: (..., H, m)."""
    return np.abs(np.diff(u, axis=-2)).sum(axis=(-2, -1))
