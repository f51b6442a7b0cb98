"""The runtime monitor (ThermodynamicRuntimeMonitor): telemetry of a deployed capsule against its limits.

Armed at deployment (:func:`arm_monitor`, called by ``deploy_sovereign_dac.py``) from the
capsule: the client's envelope per node and step (rebuilt from the capsule's plan.json with
:func:`industriverse.plan.optimize.load_plan`), the predicted band of the plan (p1..p99 of the
simulated ensemble, the capsule's bands.json) and the energy budget
(``runtime_budgets.energy_kwh``).  The armed configuration is stored in the deployment
activity's payload under ``monitor``.

:meth:`ThermodynamicRuntimeMonitor.observe` takes timestamped readings
``{"time": ISO, "nodes": {node: value}, "power_kw": kW}`` and finds

* ``envelope`` breaches (severity ``hard``): a node outside the client's envelope at the
  state in force (the plan step at or before the reading's time; step 0 is not enforced);
* ``band`` breaches (``soft``): a node outside the predicted band.  The simulation's p1..p99
  band is per step; a healthy plant watched over H steps and n nodes leaves some per-step
  98 % band almost surely, so the band is widened about its median by ``z / z₀.₉₉`` with
  ``z = Φ⁻¹(1 − α / (2M))``: Bonferroni over the ``M`` watched (step, node) pairs, Gaussian
  tails, so a healthy plant raises a band alert over the whole horizon with probability
  ≤ ``band_false_alarm`` (α, default 1 %).  The p1/p99 of a small ensemble are noisy order
  statistics, so each side takes the wider of the p1/p99 and the p5/p95 estimates;
* ``energy`` breaches (``hard``): imported energy so far above the budget to date plus an
  allowance.  The budget to date follows the plan's own profile — ``budget × planned energy
  to date / planned energy`` (linear in time if the plan imports nothing) — so pre-heating
  is not an overrun.  The allowance is what the closed loop under noise may use beyond the
  nominal plan: the ensemble's mean + 3 standard deviations of the plan's energy (from the
  capsule's proof) minus the planned energy, and at least ``energy_tolerance`` (10 %) of the
  budget;
* ``sensor_stuck`` (``soft``): a node with process noise reporting the identical value
  ``stuck_readings`` times in a row (default 4; 0 turns it off) — a real temperature under
  noise never does.  Sensors that report coarsely rounded values repeat legitimately: raise
  ``stuck_readings`` for them.

Each breach episode (a kind on a node starting to breach) is recorded once as a gateway
``alert`` activity.  After ``consecutive`` readings in a row with a hard breach (default 3)
the monitor rolls the capsule back (``gateway.rollback``) — only while this capsule's
version is the active one — and stops watching: the plan no longer runs.  Soft breaches
alert but never roll back on their own: the band is a per-step 98 % band, so a healthy
plant leaves it now and then.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import ndtri  # the normal quantile (scipy.stats takes ~0.4 s to import)

from industriverse.errors import BadInput

DEFAULT_CONSECUTIVE = 3
DEFAULT_ENERGY_TOLERANCE = 0.10
DEFAULT_STUCK_READINGS = 4
DEFAULT_BAND_FALSE_ALARM = 0.01
ENERGY_SPREAD_Z = 3.0
BAND_KEYS = ("p1", "p5", "p50", "p95", "p99")
BAND_FLOOR = 1e-6  # state units: a zero-width band (a node without noise) still allows round-off
MONITOR_KEY = "monitor"


def _finite_or_none(a) -> list:
    return [[float(v) if math.isfinite(v) else None for v in row] for row in np.asarray(a, dtype=float)]


def _array(rows: list | None) -> np.ndarray | None:
    if rows is None:
        return None
    return np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=float)


@dataclass
class MonitorConfig:
    """What the monitor holds a deployed capsule to (JSON-serialisable, stored at deployment).

    ``x_lo``/``x_hi``: (H+1) × n envelope (None = unbounded); ``band_lo``/``band_hi``: the
    predicted p1/p99 band widened by ``band_factor`` (see the module docstring), (H+1) × n
    (None where there is no band); ``planned_energy_kwh``: the plan's cumulative imported
    energy at each state time (H+1); ``energy_allowance_kwh``: what the closed loop may use
    beyond the budget to date.
    """

    capsule_id: str
    version: int
    domain: str
    start: str
    step_minutes: float
    steps: int
    nodes: list[str]
    noisy_nodes: list[str]
    x_lo: list
    x_hi: list
    band_lo: list | None
    band_hi: list | None
    band_percentiles: list[str] | None
    energy_budget_kwh: float | None
    planned_energy_kwh: list[float]
    energy_allowance_kwh: float = 0.0
    band_factor: float | None = None
    band_false_alarm: float = DEFAULT_BAND_FALSE_ALARM
    consecutive: int = DEFAULT_CONSECUTIVE
    energy_tolerance: float = DEFAULT_ENERGY_TOLERANCE
    stuck_readings: int = DEFAULT_STUCK_READINGS
    activity_id: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> "MonitorConfig":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in raw.items() if k in known})


def config_from_capsule(capsule_dir: str | Path, *, consecutive: int = DEFAULT_CONSECUTIVE,
                        energy_tolerance: float = DEFAULT_ENERGY_TOLERANCE,
                        stuck_readings: int = DEFAULT_STUCK_READINGS,
                        band_false_alarm: float = DEFAULT_BAND_FALSE_ALARM) -> MonitorConfig:
    """Build the monitor's configuration from a capsule (manifest.yaml or its directory)."""
    from industriverse.model.canonical import read_json
    from industriverse.trust.capsule import resolve_inside
    from industriverse.plan.optimize import load_plan
    from industriverse.operate.twin import capsule_plan

    if consecutive < 1:
        raise BadInput(None, "--consecutive", f"must be at least 1, got {consecutive}")
    manifest, plan, root = capsule_plan(capsule_dir)
    problem, u = load_plan(plan)
    u = np.asarray(u, dtype=float)
    power = problem.site_power(u)
    cum = np.concatenate([[0.0], np.cumsum(np.maximum(power, 0.0)) * problem.dt_h])
    band_lo = band_hi = percentiles = factor = None
    entry = next((f for f in manifest["files"] if f["role"] == "predicted_band"), None)
    if entry is not None:
        bands_doc = read_json(resolve_inside(root, entry["path"]))
        bands = bands_doc.get("bands") if isinstance(bands_doc, dict) else None
        if isinstance(bands, dict):
            shape = (problem.H + 1, problem.n)
            q = {k: np.full(shape, np.nan) for k in BAND_KEYS}
            for i, nd in enumerate(problem.nodes):
                b = bands.get(nd)
                if isinstance(b, dict) and all(k in b for k in BAND_KEYS):
                    for k in BAND_KEYS:
                        q[k][:, i] = np.asarray(b[k], dtype=float)
            watched = int(np.isfinite(q["p50"][1:]).sum())
            if watched:
                z = float(ndtri(1.0 - band_false_alarm / (2.0 * watched)))
                factor = z / float(ndtri(0.99))
                f95 = z / float(ndtri(0.95))
                # p1/p99 of a small ensemble are noisy order statistics: take the wider of the two estimates
                below = np.maximum(factor * (q["p50"] - q["p1"]), f95 * (q["p50"] - q["p5"]))
                above = np.maximum(factor * (q["p99"] - q["p50"]), f95 * (q["p95"] - q["p50"]))
                lo = q["p50"] - np.maximum(below, 0.0) - BAND_FLOOR
                hi = q["p50"] + np.maximum(above, 0.0) + BAND_FLOOR
                band_lo, band_hi, percentiles = _finite_or_none(lo), _finite_or_none(hi), list(BAND_KEYS)
    budget = (manifest.get("runtime_budgets") or {}).get("energy_kwh")
    allowance = 0.0
    if budget is not None:
        allowance = energy_tolerance * float(budget)
        entry = next((f for f in manifest["files"] if f["role"] == "proof"), None)
        proof = read_json(resolve_inside(root, entry["path"])) if entry is not None else None
        stats = (((proof or {}).get("kpis") or {}).get("optimized") or {}).get("energy_kwh") if isinstance(proof, dict) else None
        if isinstance(stats, dict) and isinstance(stats.get("mean"), (int, float)) and isinstance(stats.get("std"), (int, float)):
            allowance = max(allowance, stats["mean"] + ENERGY_SPREAD_Z * stats["std"] - float(cum[-1]))
    return MonitorConfig(
        capsule_id=manifest["id"], version=int(manifest["version"]), domain=manifest["domain"],
        start=problem.start.isoformat(), step_minutes=problem.dt_s / 60.0, steps=problem.H,
        nodes=list(problem.nodes),
        noisy_nodes=[nd for nd, s in zip(problem.nodes, problem.process_noise) if s > 0],
        x_lo=_finite_or_none(problem.x_lo), x_hi=_finite_or_none(problem.x_hi),
        band_lo=band_lo, band_hi=band_hi, band_percentiles=percentiles,
        energy_budget_kwh=None if budget is None else float(budget),
        planned_energy_kwh=[float(v) for v in cum],
        energy_allowance_kwh=float(allowance), band_factor=factor, band_false_alarm=float(band_false_alarm),
        consecutive=int(consecutive), energy_tolerance=float(energy_tolerance), stuck_readings=int(stuck_readings),
    )


# --- arming -----------------------------------------------------------------------------------------
def arm_monitor(gateway, capsule_dir: str | Path, activity_id: str, *, consecutive: int = DEFAULT_CONSECUTIVE) -> str:
    """Arm the runtime monitor for a deployed capsule; store its config in the deployment activity.

    Returns a short description of what is watched (the deployer prints it).
    """
    config = config_from_capsule(capsule_dir, consecutive=consecutive)
    config.activity_id = activity_id
    gateway.record_monitor(activity_id, config.to_dict())
    bounded = sum(1 for i in range(len(config.nodes)) if any(r[i] is not None for r in config.x_lo + config.x_hi))
    parts = [f"envelope on {bounded} node(s)"]
    if config.band_lo is not None:
        parts.append(f"predicted band p1..p99 widened x{config.band_factor:.3g}")
    if config.energy_budget_kwh is not None:
        parts.append(f"energy budget {config.energy_budget_kwh:.4g} kWh")
    parts.append(f"rollback after {config.consecutive} consecutive hard breaches")
    return ", ".join(parts)


def armed_config(gateway, capsule_dir: str | Path, *, consecutive: int | None = None,
                 stuck_readings: int | None = None) -> tuple[MonitorConfig, dict | None]:
    """The config the monitor was armed with for this capsule's deployment (else built from the capsule).

    Returns ``(config, deployment)`` where ``deployment`` is the gateway's row of this
    capsule's version (None if the capsule was never registered).
    """
    import sqlalchemy as sa

    from industriverse.fleet import store

    config = None
    base = config_from_capsule(capsule_dir)
    with store.read_transaction(gateway.engine) as conn:
        row = conn.execute(sa.select(store.capsule_versions).where(
            store.capsule_versions.c.capsule_id == base.capsule_id,
            store.capsule_versions.c.version == base.version)).first()
    deployment = store.row_dict(row)
    if deployment is not None:
        activity = gateway.get_activity(deployment["deployment_activity_id"])
        stored = (activity or {}).get("payload", {}).get(MONITOR_KEY)
        if isinstance(stored, dict):
            config = MonitorConfig.from_dict(stored)
        base.activity_id = deployment["deployment_activity_id"]
    config = config or base
    if consecutive is not None:
        if consecutive < 1:
            raise BadInput(None, "--consecutive", f"must be at least 1, got {consecutive}")
        config.consecutive = int(consecutive)
    if stuck_readings is not None:
        if stuck_readings < 0:
            raise BadInput(None, "--stuck-readings", f"must be 0 (off) or more, got {stuck_readings}")
        config.stuck_readings = int(stuck_readings)
    return config, deployment


# --- watching ------------------------------------------------------------------------------------------
@dataclass
class Breach:
    kind: str  # envelope | band | energy | sensor_stuck
    severity: str  # hard | soft
    node: str | None
    value: float
    bound: float | None
    message: str


@dataclass
class Observation:
    """What one reading showed: its breaches, the alerts recorded and whether it rolled back."""

    time: str
    step: int | None
    breaches: list[Breach] = field(default_factory=list)
    alerts: list[dict] = field(default_factory=list)  # alert payloads raised by this reading, with "id" when recorded
    rollback: str | None = None


def _parse_time(text: Any, start: datetime, where: str) -> datetime:
    if not isinstance(text, str):
        raise BadInput(where, "time", f"must be an ISO time string, got {text!r}")
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadInput(where, "time", f"is not an ISO time: {text!r}") from None
    if (t.tzinfo is None) != (start.tzinfo is None):
        t = t.replace(tzinfo=start.tzinfo)  # the plan's times are local; read the reading's clock the same way
    return t


class ThermodynamicRuntimeMonitor:
    """Watches readings of one deployed capsule; alerts and rolls back through ``gateway``.

    ``gateway`` may be None (evaluate only: nothing is recorded, no rollback).
    """

    def __init__(self, config: MonitorConfig, gateway=None):
        self.config = config
        self.gateway = gateway
        self.start = datetime.fromisoformat(config.start)
        self.dt = timedelta(minutes=config.step_minutes)
        self.x_lo, self.x_hi = _array(config.x_lo), _array(config.x_hi)
        self.band_lo, self.band_hi = _array(config.band_lo), _array(config.band_hi)
        self.planned = np.asarray(config.planned_energy_kwh, dtype=float)
        self.energy_kwh = 0.0
        self.last_time: datetime | None = None
        self.consecutive_hard = 0
        self.breaching: set[tuple[str, str | None]] = set()
        self.same_count: dict[str, int] = {}
        self.last_value: dict[str, float] = {}
        self.alerts: list[dict] = []  # payloads of the alerts raised
        self.alert_ids: list[str] = []
        self.rollback_id: str | None = None
        self.stopped = False
        self.readings = 0
        self.breached_readings = 0

    # -- budget to date
    def budget_to_date(self, t: datetime) -> float | None:
        """Energy budget (kWh) the capsule may have used by time ``t``, before the tolerance."""
        c = self.config
        if c.energy_budget_kwh is None:
            return None
        pos = min(max((t - self.start) / self.dt, 0.0), float(c.steps))
        total = self.planned[-1]
        if total > 1e-12:
            frac = float(np.interp(pos, np.arange(c.steps + 1), self.planned)) / total
        else:
            frac = pos / c.steps
        return c.energy_budget_kwh * frac

    def observe(self, reading: dict, *, where: str = "reading") -> Observation:
        """Check one reading; record alerts; roll back after ``consecutive`` hard breaches in a row."""
        c = self.config
        if not isinstance(reading, dict):
            raise BadInput(where, None, "a reading must be a JSON object {time, nodes, power_kw}")
        t = _parse_time(reading.get("time"), self.start, where)
        nodes = reading.get("nodes", {})
        if not isinstance(nodes, dict):
            raise BadInput(where, "nodes", "must be an object {node: value}")
        for name, v in nodes.items():
            if name not in c.nodes:
                raise BadInput(where, f"nodes.{name}", f"unknown node (the capsule's nodes: {', '.join(c.nodes)})")
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                raise BadInput(where, f"nodes.{name}", f"must be a finite number, got {v!r}")
        power = reading.get("power_kw")
        if power is not None and (not isinstance(power, (int, float)) or isinstance(power, bool) or not math.isfinite(power)):
            raise BadInput(where, "power_kw", f"must be a finite number, got {power!r}")
        if self.last_time is not None and t < self.last_time:
            raise BadInput(where, "time", f"{reading['time']} is before the previous reading: readings must be in time order")
        pos = (t - self.start) / self.dt
        step = int(math.floor(pos + 1e-9)) if 0 <= pos <= c.steps + 1e-9 else None
        obs = Observation(time=str(reading["time"]), step=step)
        if self.stopped:
            return obs
        self.readings += 1

        # energy since the last reading (the reading's power is the mean since then)
        if power is not None:
            since = self.last_time if self.last_time is not None else max(self.start, t - self.dt)
            self.energy_kwh += max(float(power), 0.0) * max((t - since).total_seconds(), 0.0) / 3600.0
        self.last_time = t

        if step is not None:
            for name, v in nodes.items():
                i = c.nodes.index(name)
                lo, hi = self.x_lo[step, i], self.x_hi[step, i]
                if step >= 1 and not np.isnan(lo) and v < lo:
                    obs.breaches.append(Breach("envelope", "hard", name, v, lo, f"{name} {v:.4g} below the envelope's min {lo:.4g}"))
                elif step >= 1 and not np.isnan(hi) and v > hi:
                    obs.breaches.append(Breach("envelope", "hard", name, v, hi, f"{name} {v:.4g} above the envelope's max {hi:.4g}"))
                if self.band_lo is not None:
                    blo, bhi = self.band_lo[step, i], self.band_hi[step, i]
                    if not np.isnan(blo) and v < blo:
                        obs.breaches.append(Breach("band", "soft", name, v, blo, f"{name} {v:.4g} below the predicted band ({blo:.4g})"))
                    elif not np.isnan(bhi) and v > bhi:
                        obs.breaches.append(Breach("band", "soft", name, v, bhi, f"{name} {v:.4g} above the predicted band ({bhi:.4g})"))
        for name, v in nodes.items():
            if name not in c.noisy_nodes or c.stuck_readings < 1:
                continue
            self.same_count[name] = self.same_count.get(name, 1) + 1 if self.last_value.get(name) == v else 1
            self.last_value[name] = v
            if self.same_count[name] >= c.stuck_readings:
                obs.breaches.append(Breach("sensor_stuck", "soft", name, v, None,
                                           f"{name} reported {v:.6g} {self.same_count[name]} times in a row: sensor stuck?"))
        allowed = self.budget_to_date(t)
        if allowed is not None and power is not None:
            limit = allowed + c.energy_allowance_kwh
            if self.energy_kwh > limit:
                obs.breaches.append(Breach("energy", "hard", None, self.energy_kwh, limit,
                                           f"{self.energy_kwh:.4g} kWh imported, budget to date {allowed:.4g} kWh "
                                           f"+ allowance {c.energy_allowance_kwh:.4g} kWh"))

        hard = any(b.severity == "hard" for b in obs.breaches)
        self.consecutive_hard = self.consecutive_hard + 1 if hard else 0
        if obs.breaches:
            self.breached_readings += 1
        now = {(b.kind, b.node) for b in obs.breaches}
        for b in obs.breaches:
            if (b.kind, b.node) in self.breaching:
                continue  # the same episode: alerted when it began
            payload = {
                "monitor": "ThermodynamicRuntimeMonitor", "kind": b.kind, "severity": b.severity, "node": b.node,
                "time": obs.time, "step": step, "value": b.value, "bound": b.bound, "message": b.message,
                "consecutive_hard": self.consecutive_hard, "capsule_version": c.version,
                "deployment_activity_id": c.activity_id,
            }
            self.alerts.append(payload)
            if self.gateway is not None:
                aid = self.gateway.record_alert(c.capsule_id, payload)
                self.alert_ids.append(aid)
                payload = dict(payload, id=aid)
            obs.alerts.append(payload)
        self.breaching = now
        if self.consecutive_hard >= c.consecutive:
            obs.rollback = self._roll_back(obs)
        return obs

    def _roll_back(self, obs: Observation) -> str | None:
        c = self.config
        self.stopped = True  # the plan stops running either way
        reason = (f"runtime monitor: {self.consecutive_hard} consecutive readings with hard breaches up to {obs.time}: "
                  + "; ".join(b.message for b in obs.breaches if b.severity == "hard"))
        if self.gateway is None:
            return None
        active = self.gateway.active_version(c.capsule_id)
        if active != c.version:
            note = {"monitor": "ThermodynamicRuntimeMonitor", "kind": "rollback_skipped", "severity": "hard",
                    "message": f"version {c.version} is not the active one ({active}); not rolling back", "time": obs.time}
            self.alerts.append(note)
            aid = self.gateway.record_alert(c.capsule_id, note)
            self.alert_ids.append(aid)
            obs.alerts.append(dict(note, id=aid))
            return None
        self.rollback_id = self.gateway.rollback(c.capsule_id, reason)
        return self.rollback_id

    def summary(self) -> dict:
        return {
            "capsule_id": self.config.capsule_id, "version": self.config.version, "readings": self.readings,
            "breached_readings": self.breached_readings, "alerts": len(self.alerts), "alert_ids": self.alert_ids,
            "rolled_back": self.rollback_id is not None, "rollback_activity_id": self.rollback_id,
            "energy_kwh": self.energy_kwh, "stopped": self.stopped,
        }


__all__ = ["ThermodynamicRuntimeMonitor", "MonitorConfig", "arm_monitor", "armed_config", "config_from_capsule",
           "DEFAULT_CONSECUTIVE"]
