"""The controllers a site runs today, as vectorised controllers over an ensemble.

Selected by the constraint's ``baseline`` dict (``controller`` + settings; defaults in the
domain YAML).  Each runs every control sub-step (``control_minutes``), sees the measured state
``x`` (N, n) and the measured disturbances ``d`` (N, n_d) of N trajectories at once, and returns
set-points (N, m) in kW clipped to the actuator limits (ramp limits are a planning constraint
and are not imposed on what the site does today):

* ``proportional`` (hvac): every heater or heat pump heats its own node with
  ``gain_kw_per_k · (lower band + offset_k − T)``; a chiller cools with
  ``gain_kw_per_k · (T − (upper band − offset_k))``.  The band is the one in force at the time.
* ``hysteresis`` (cold_storage): a thermostat on one measured ``node``; chillers go full on above
  ``on_above`` and off below ``off_below`` (heaters: full on below ``on_below``, off above
  ``off_above``); in between each trajectory keeps its own on/off state.  Missing thresholds
  sit ``deadband_k`` inside the node's band.
* ``self_consumption`` (microgrid): the battery charges from the PV surplus and discharges to
  cover the deficit (load − PV), within its power limits and its state-of-charge band (the
  envelope in force, else 0..capacity), keeping the terminal state of charge in reserve.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from industriverse.errors import BadInput
from industriverse.plan.tracking import DEFAULT_CONTROL_MINUTES, SubstepModel, substep_model


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    control_minutes: float = Field(DEFAULT_CONTROL_MINUTES, gt=0, description="controller period, minutes")


class ProportionalSettings(_Settings):
    controller: Literal["proportional"]
    gain_kw_per_k: float = Field(10.0, gt=0, description="kW per K below the set-point")
    offset_k: float = Field(0.5, description="set-point above the lower band (below the upper band for chillers), K")


class HysteresisSettings(_Settings):
    controller: Literal["hysteresis"]
    node: str | None = Field(None, description="the measured node (default: the first banded node)")
    on_above: float | None = Field(None, description="chillers switch on above this, °C")
    off_below: float | None = Field(None, description="chillers switch off below this, °C")
    on_below: float | None = Field(None, description="heaters switch on below this, °C")
    off_above: float | None = Field(None, description="heaters switch off above this, °C")
    deadband_k: float = Field(1.0, ge=0, description="distance of missing thresholds inside the band, K")


class SelfConsumptionSettings(_Settings):
    controller: Literal["self_consumption"]
    terminal_reserve: bool = Field(True, description="never discharge below the final-state bound (the "
                                   "constraint's terminal state of charge), so the baseline ends the horizon with "
                                   "what the plan must keep and the two are compared on equal terms")


SETTINGS = {"proportional": ProportionalSettings, "hysteresis": HysteresisSettings,
            "self_consumption": SelfConsumptionSettings}


def baseline_settings(problem, file: str | None = None) -> BaseModel:
    """Validate ``problem.constraint.baseline``; errors name ``baseline.<field>`` in ``file``."""
    raw = dict(problem.constraint.baseline or {})
    name = raw.get("controller")
    if name not in SETTINGS:
        raise BadInput(file, "baseline.controller",
                       f"unknown controller {name!r} (known: {', '.join(SETTINGS)})" if name else "is required")
    try:
        return SETTINGS[name].model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = "baseline." + ".".join(str(p) for p in err["loc"])
        msg = "is not a known setting of the " + name + " controller" if err["type"] == "extra_forbidden" \
            else err["msg"].removeprefix("Value error, ")
        raise BadInput(file, field, msg) from None


def make_baseline(problem, model: SubstepModel | None = None, file: str | None = None):
    """The baseline controller named by ``problem.constraint.baseline``."""
    settings = baseline_settings(problem, file)
    model = model or substep_model(problem)
    cls = {"proportional": Proportional, "hysteresis": Hysteresis, "self_consumption": SelfConsumption}[settings.controller]
    return cls(problem, model, settings, file)


class _Baseline:
    def __init__(self, problem, model: SubstepModel, settings: BaseModel, file: str | None):
        self.problem, self.model = problem, model
        self.settings = settings.model_dump()
        self.name = settings.controller
        self.kinds = [a.kind for a in problem.network.actuators]
        self.act_node = np.array([problem.network.index(a.node) for a in problem.network.actuators], dtype=int)

    def start(self, N: int) -> None:
        """Reset the per-trajectory controller state for ``N`` trajectories."""

    def step_of(self, j: int) -> int:
        return j // self.model.S

    def clip(self, u: np.ndarray, k: int) -> np.ndarray:
        # max then min: np.clip's numbers without its per-call overhead (called every sub-step)
        out = np.maximum(u, self.problem.u_lo[k])
        return np.minimum(out, self.problem.u_hi[k], out=out)


class Proportional(_Baseline):
    """Proportional thermostat on each actuator's own node (see the module docstring)."""

    def __init__(self, problem, model, settings: ProportionalSettings, file=None):
        super().__init__(problem, model, settings, file)
        self.gain, self.offset = settings.gain_kw_per_k, settings.offset_k
        # per plan step and actuator: u = (x_node − target) · slope where the thermostat acts, u_lo elsewhere
        # (a heater's gain·(lo + offset − x) is (x − (lo + offset))·(−gain) to the bit: negation is exact)
        H, m = problem.H, problem.m
        self.target, self.slope = np.zeros((H, m)), np.zeros((H, m))
        self.acts = np.zeros((H, m), dtype=bool)
        for a, (kind, i) in enumerate(zip(self.kinds, self.act_node)):
            lo, hi = problem.x_lo[:H, i], problem.x_hi[:H, i]
            if kind in ("heater", "heat_pump"):
                on = np.isfinite(lo)
                self.target[on, a], self.slope[on, a] = lo[on] + self.offset, -self.gain
            elif kind == "chiller":
                on = np.isfinite(hi)
                self.target[on, a], self.slope[on, a] = hi[on] - self.offset, self.gain
            else:
                on = np.zeros(H, dtype=bool)
            self.acts[:, a] = on
        self.all_act = self.acts.all(axis=1)
        first = int(self.act_node[0]) if m else 0  # the measured nodes as a slice where they are consecutive (a view)
        self.measured = slice(first, first + m) if np.array_equal(self.act_node, np.arange(first, first + m)) else self.act_node

    def __call__(self, j: int, x: np.ndarray, d: np.ndarray) -> np.ndarray:
        k = self.step_of(j)
        u = x[..., self.measured] - self.target[k]
        u *= self.slope[k]
        if not self.all_act[k]:
            u = np.where(self.acts[k], u, self.problem.u_lo[k])
        return self.clip(u, k)


class Hysteresis(_Baseline):
    """On/off thermostat on one measured node, with per-trajectory switch state."""

    def __init__(self, problem, model, settings: HysteresisSettings, file=None):
        super().__init__(problem, model, settings, file)
        lo, hi = problem.x_lo[1:], problem.x_hi[1:]
        node = settings.node
        if node is None:
            banded = np.flatnonzero(problem.banded)
            if banded.size == 0:
                raise BadInput(file, "baseline.node", "no node has a band: name the node the thermostat measures")
            node = problem.nodes[banded[0]]
        if node not in problem.nodes:
            raise BadInput(file, "baseline.node", f"unknown node '{node}' (nodes: {', '.join(problem.nodes)})")
        self.node = problem.nodes.index(node)
        band_lo = float(np.median(lo[:, self.node])) if np.isfinite(lo[:, self.node]).all() else None
        band_hi = float(np.median(hi[:, self.node])) if np.isfinite(hi[:, self.node]).all() else None
        db = settings.deadband_k

        def threshold(value, band, sign, field):
            if value is not None:
                return float(value)
            if band is None:
                raise BadInput(file, f"baseline.{field}", f"is required: node '{node}' has no band to derive it from")
            return band + sign * db

        self.cooling = [a for a, kind in enumerate(self.kinds) if kind == "chiller"]
        self.heating = [a for a, kind in enumerate(self.kinds) if kind in ("heater", "heat_pump")]
        if not self.cooling and not self.heating:
            raise BadInput(file, "baseline.controller", "the hysteresis thermostat needs a heater, heat pump or chiller")
        if self.cooling:
            self.on_above = threshold(settings.on_above, band_hi, -1.0, "on_above")
            self.off_below = threshold(settings.off_below, band_lo, +1.0, "off_below")
            if self.off_below >= self.on_above:
                raise BadInput(file, "baseline.off_below", f"{self.off_below:g} must be below on_above ({self.on_above:g})")
        if self.heating:
            self.on_below = threshold(settings.on_below, band_lo, +1.0, "on_below")
            self.off_above = threshold(settings.off_above, band_hi, -1.0, "off_above")
            if self.on_below >= self.off_above:
                raise BadInput(file, "baseline.on_below", f"{self.on_below:g} must be below off_above ({self.off_above:g})")
        self.settings["node"] = node
        self._cool_on = self._heat_on = None

    def start(self, N: int) -> None:
        t0 = self.problem.x0[self.node]
        self._cool_on = np.full(N, bool(self.cooling) and t0 > self.on_above)
        self._heat_on = np.full(N, bool(self.heating) and t0 < self.on_below)

    def __call__(self, j: int, x: np.ndarray, d: np.ndarray) -> np.ndarray:
        k = self.step_of(j)
        t = x[..., self.node]
        if self._cool_on.shape != t.shape:
            self._cool_on = np.broadcast_to(self._cool_on, t.shape).copy()
            self._heat_on = np.broadcast_to(self._heat_on, t.shape).copy()
        u = np.broadcast_to(self.problem.u_lo[k], t.shape + (self.problem.m,)).copy()
        if self.cooling:
            self._cool_on = np.where(t > self.on_above, True, np.where(t < self.off_below, False, self._cool_on))
            for a in self.cooling:
                u[..., a] = np.where(self._cool_on, self.problem.u_hi[k, a], self.problem.u_lo[k, a])
        if self.heating:
            self._heat_on = np.where(t < self.on_below, True, np.where(t > self.off_above, False, self._heat_on))
            for a in self.heating:
                u[..., a] = np.where(self._heat_on, self.problem.u_hi[k, a], self.problem.u_lo[k, a])
        return u


class SelfConsumption(_Baseline):
    """Charge from PV surplus, discharge to cover the deficit, within power and SoC limits."""

    def __init__(self, problem, model, settings: SelfConsumptionSettings, file=None):
        super().__init__(problem, model, settings, file)
        net = problem.network
        if net.site.load is None and net.site.pv is None:
            raise BadInput(file, "baseline.controller", "self_consumption needs a site load or PV series")
        self.charge = [a for a, kind in enumerate(self.kinds) if kind == "battery_charge"]
        self.discharge = [a for a, kind in enumerate(self.kinds) if kind == "battery_discharge"]
        if not self.charge and not self.discharge:
            raise BadInput(file, "baseline.controller", "self_consumption needs battery_charge/battery_discharge actuators")
        names = net.disturbance_names
        self.load = names.index(net.site.load) if net.site.load is not None else None
        self.pv = names.index(net.site.pv) if net.site.pv is not None else None
        # physical SoC range per storage node where the envelope leaves it open
        self.capacity = {i: nd.capacity_kwh for i, nd in enumerate(net.nodes) if nd.is_storage}
        self.reserve = settings.terminal_reserve

    def _soc_limits(self, k: int, i: int) -> tuple[float, float]:
        lo, hi = self.problem.x_lo[k, i], self.problem.x_hi[k, i]
        if self.reserve:
            lo = max(lo, self.problem.x_lo[-1, i])
        return (float(lo) if np.isfinite(lo) else 0.0, float(hi) if np.isfinite(hi) else self.capacity[i])

    def __call__(self, j: int, x: np.ndarray, d: np.ndarray) -> np.ndarray:
        k = self.step_of(j)
        shape = np.broadcast_shapes(x.shape[:-1], d.shape[:-1])
        net_load = np.zeros(shape)  # kW the site needs from the grid without the battery (negative: surplus)
        if self.load is not None:
            net_load = net_load + d[..., self.load]
        if self.pv is not None:
            net_load = net_load - d[..., self.pv]
        u = np.broadcast_to(self.problem.u_lo[k], shape + (self.problem.m,)).copy()
        surplus, deficit = np.maximum(-net_load, 0.0), np.maximum(net_load, 0.0)
        x = np.broadcast_to(x, shape + (x.shape[-1],))
        for a in self.charge:
            i = self.act_node[a]
            lo, hi = self._soc_limits(k, i)
            room = np.maximum(hi - x[..., i], 0.0) / self.model.Bd[i, a]  # kW that fills the band in one sub-step
            u[..., a] = np.clip(np.minimum(surplus, room), self.problem.u_lo[k, a], self.problem.u_hi[k, a])
            surplus = np.maximum(surplus - u[..., a], 0.0)
        for a in self.discharge:
            i = self.act_node[a]
            lo, hi = self._soc_limits(k, i)
            avail = np.maximum(x[..., i] - lo, 0.0) / -self.model.Bd[i, a]
            u[..., a] = np.clip(np.minimum(deficit, avail), self.problem.u_lo[k, a], self.problem.u_hi[k, a])
            deficit = np.maximum(deficit - u[..., a], 0.0)
        return u
