"""The thermodynamic network (TNN): nodes, conductances, boundaries, actuators.

A plant is ``C ẋ = −L x + B u + E d (+ nonlinear terms)`` where

* ``x`` are node states: temperatures in °C for thermal nodes (capacity in J/K), stored energy
  in kWh for storage nodes (capacity given in kWh; the state is the energy content),
* ``u`` are actuator set-points in kW (thermal output for heaters, heat pumps and chillers;
  electric power for battery charge/discharge),
* ``d`` are disturbances: boundary temperatures in °C (ambient, ground, ...) and heat gains or
  site power in kW.

Electric site power (kW, positive = import) is ``load − pv + Σ electric(u_a)``; heaters draw
``u/efficiency``, heat pumps and chillers ``u/COP``, battery charge ``+u``, discharge ``−u``.

Radiation terms ``σ ε A (T⁴ − T_b⁴)`` are the optional nonlinear part: planning uses their
linearisation at ``linearize_at_c``; the simulator integrates the exact law.
"""
from __future__ import annotations

from functools import cached_property
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

KELVIN = 273.15
STEFAN_BOLTZMANN = 5.670374419e-8  # W m⁻² K⁻⁴
J_PER_KWH = 3.6e6


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Node(_Model):
    name: str
    capacity_j_per_k: float | None = Field(None, ge=1.0, le=1e12, description="thermal capacity C_i, J/K")
    capacity_kwh: float | None = Field(None, gt=0, le=1e9, description="storage node: energy capacity, kWh")

    @model_validator(mode="after")
    def _one_capacity(self):
        if (self.capacity_j_per_k is None) == (self.capacity_kwh is None):
            raise ValueError("give exactly one of capacity_j_per_k (thermal node) or capacity_kwh (storage node)")
        return self

    @property
    def is_storage(self) -> bool:
        return self.capacity_kwh is not None

    @property
    def capacity(self) -> float:
        """Capacity in J per state unit (J/K, or J/kWh for storage)."""
        return self.capacity_j_per_k if self.capacity_kwh is None else J_PER_KWH


class Boundary(_Model):
    name: str
    disturbance: str = Field(description="disturbance series giving this boundary's temperature, °C")


class Conductance(_Model):
    between: tuple[str, str]
    w_per_k: float = Field(gt=0, le=1e9, description="conductance G_ij, W/K (1/R)")


class Gain(_Model):
    node: str
    disturbance: str = Field(description="disturbance series in kW injected at the node")
    scale: float = Field(1.0, ge=-1e6, le=1e6)


class Radiation(_Model):
    node: str
    boundary: str
    emissivity: float = Field(gt=0, le=1)
    area_m2: float = Field(gt=0, le=1e7)
    linearize_at_c: float = Field(20.0, gt=-273.15, le=1e4)


class COPModel(_Model):
    """Coefficient of performance.

    ``constant``: COP = ``value``.  ``carnot_fraction``: COP = ``eta`` × Carnot COP between the
    evaporator and the condenser, which sit ``evaporator_approach_k`` and
    ``condenser_approach_k`` beyond the cold and hot sides; the lift is at least ``min_lift_k``,
    so the COP is finite and never above Carnot.
    """

    model: Literal["constant", "carnot_fraction"] = "carnot_fraction"
    value: float | None = Field(None, gt=0, le=1e3)
    eta: float = Field(0.5, gt=0, le=1)
    boundary: str | None = Field(None, description="the other side of the lift (a boundary name)")
    evaporator_approach_k: float = Field(5.0, ge=0, le=1e3)
    condenser_approach_k: float = Field(10.0, ge=0, le=1e3)
    min_lift_k: float = Field(10.0, gt=0, le=1e3)

    @model_validator(mode="after")
    def _complete(self):
        if self.model == "constant" and self.value is None:
            raise ValueError("a constant COP needs 'value'")
        if self.model == "carnot_fraction" and self.boundary is None:
            raise ValueError("a carnot_fraction COP needs 'boundary' (the hot side for a chiller, the source for a heat pump)")
        return self


class Actuator(_Model):
    name: str
    node: str
    kind: Literal["heater", "heat_pump", "chiller", "battery_charge", "battery_discharge"]
    min_kw: float = Field(0.0, ge=-1e6, le=1e6)
    max_kw: float = Field(gt=0, le=1e6)
    ramp_kw_per_step: float | None = Field(None, gt=0, le=1e6)
    efficiency: float = Field(1.0, gt=0, le=1, description="heater: heat/electricity; battery: one-way efficiency")
    cop: COPModel | None = None

    @model_validator(mode="after")
    def _consistent(self):
        if self.min_kw > self.max_kw:
            raise ValueError(f"min_kw {self.min_kw} is above max_kw {self.max_kw}")
        if self.kind in ("heat_pump", "chiller") and self.cop is None:
            raise ValueError(f"a {self.kind} needs a 'cop' model")
        return self

    @property
    def nonlinear(self) -> bool:
        return self.cop is not None and self.cop.model == "carnot_fraction"


class Site(_Model):
    load: str | None = Field(None, description="disturbance series of the site load, kW")
    pv: str | None = Field(None, description="disturbance series of PV output, kW")
    import_max_kw: float | None = Field(None, gt=0, le=1e6)
    export_max_kw: float = Field(0.0, ge=0, le=1e6, description="0 forbids export")


class Network(_Model):
    name: str = "custom"
    nodes: list[Node] = Field(min_length=1)
    boundaries: list[Boundary] = []
    conductances: list[Conductance] = []
    gains: list[Gain] = []
    radiation: list[Radiation] = []
    actuators: list[Actuator] = Field(min_length=1)
    site: Site = Site()

    @model_validator(mode="after")
    def _references(self):
        nodes = [n.name for n in self.nodes]
        bounds = [b.name for b in self.boundaries]
        names = nodes + bounds
        for label, seq in (("node", nodes), ("boundary", bounds), ("actuator", [a.name for a in self.actuators])):
            dup = {x for x in seq if seq.count(x) > 1}
            if dup:
                raise ValueError(f"duplicate {label} name(s): {sorted(dup)}")
        if set(nodes) & set(bounds):
            raise ValueError(f"names used for both a node and a boundary: {sorted(set(nodes) & set(bounds))}")
        storage = {n.name for n in self.nodes if n.is_storage}
        for c in self.conductances:
            for end in c.between:
                if end not in names:
                    raise ValueError(f"conductance {list(c.between)} names unknown node or boundary '{end}'")
                if end in storage:
                    raise ValueError(f"conductance {list(c.between)} touches storage node '{end}'")
            if c.between[0] == c.between[1]:
                raise ValueError(f"conductance {list(c.between)} connects a node to itself")
            if c.between[0] in bounds and c.between[1] in bounds:
                raise ValueError(f"conductance {list(c.between)} joins two boundaries")
        for g in self.gains:
            if g.node not in nodes:
                raise ValueError(f"gain names unknown node '{g.node}'")
        for r in self.radiation:
            if r.node not in nodes or r.boundary not in bounds:
                raise ValueError(f"radiation term names unknown node '{r.node}' or boundary '{r.boundary}'")
        for a in self.actuators:
            if a.node not in nodes:
                raise ValueError(f"actuator '{a.name}' acts on unknown node '{a.node}'")
            battery = a.kind.startswith("battery")
            if battery != (a.node in storage):
                raise ValueError(f"actuator '{a.name}' ({a.kind}) cannot act on node '{a.node}'")
            if a.cop is not None and a.cop.boundary is not None and a.cop.boundary not in bounds:
                raise ValueError(f"actuator '{a.name}' COP names unknown boundary '{a.cop.boundary}'")
        return self

    # --- names and sizes -------------------------------------------------------------------
    @property
    def node_names(self) -> list[str]:
        return [n.name for n in self.nodes]

    @property
    def actuator_names(self) -> list[str]:
        return [a.name for a in self.actuators]

    @cached_property
    def disturbance_names(self) -> list[str]:
        """Every disturbance series the network reads, in a fixed order."""
        names: list[str] = []
        for ref in [b.disturbance for b in self.boundaries] + [g.disturbance for g in self.gains] + [self.site.load, self.site.pv]:
            if ref is not None and ref not in names:
                names.append(ref)
        return names

    @cached_property
    def boundary_columns(self) -> dict[str, int]:
        """Boundary name → the column of its temperature series in ``d`` (see :attr:`disturbance_names`)."""
        dist = self.disturbance_names
        return {b.name: dist.index(b.disturbance) for b in self.boundaries}

    @property
    def is_linear(self) -> bool:
        """True when both the dynamics and the electric power are linear in (x, u, d)."""
        return not self.radiation and not any(a.nonlinear for a in self.actuators)

    @property
    def has_nonlinear_dynamics(self) -> bool:
        return bool(self.radiation)

    def index(self, node: str) -> int:
        return self.node_names.index(node)

    # --- continuous-time matrices ----------------------------------------------------------
    @cached_property
    def capacities(self) -> np.ndarray:
        """C_i, J per state unit."""
        return np.array([n.capacity for n in self.nodes])

    @cached_property
    def matrices(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(A, B, E)`` of ``ẋ = A x + B u + E d`` in 1/s, state units/s per kW, per disturbance unit.

        Radiation enters linearised (``4 σ ε A T_ref³`` W/K); see :func:`radiation_correction`.
        """
        n, nodes = len(self.nodes), self.node_names
        bounds = self.boundary_columns
        dist = self.disturbance_names
        L = np.zeros((n, n))
        Ed = np.zeros((n, len(dist)))  # W per disturbance unit

        def couple(a: str, b: str, g: float):
            if a in bounds:
                a, b = b, a
            i = nodes.index(a)
            L[i, i] += g
            if b in bounds:
                Ed[i, bounds[b]] += g
            else:
                j = nodes.index(b)
                L[j, j] += g
                L[i, j] -= g
                L[j, i] -= g

        for c in self.conductances:
            couple(*c.between, c.w_per_k)
        for r in self.radiation:
            couple(r.node, r.boundary, _radiation_conductance(r))
        for g in self.gains:
            Ed[nodes.index(g.node), dist.index(g.disturbance)] += 1000.0 * g.scale
        Bw = np.zeros((n, len(self.actuators)))
        for k, a in enumerate(self.actuators):
            Bw[nodes.index(a.node), k] = 1000.0 * _heat_sign(a)
        C = self.capacities[:, None]
        return -L / C, Bw / C, Ed / C

    def radiation_correction(self, x: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Exact minus linearised radiation, as ``ẋ`` in state units/s; shape of ``x``.

        ``x``: (..., n) node states; ``d``: (..., n_d) disturbances.
        """
        out = np.zeros_like(x, dtype=float)
        for r in self.radiation:
            i = self.index(r.node)
            t = x[..., i] + KELVIN
            tb = d[..., self.boundary_columns[r.boundary]] + KELVIN
            exact = STEFAN_BOLTZMANN * r.emissivity * r.area_m2 * (t**4 - tb**4)
            linear = _radiation_conductance(r) * (t - tb)
            out[..., i] -= (exact - linear) / self.capacities[i]
        return out


def _heat_sign(a: Actuator) -> float:
    """Heat (or stored energy) delivered to the node per kW of set-point."""
    return {
        "heater": 1.0,
        "heat_pump": 1.0,
        "chiller": -1.0,
        "battery_charge": a.efficiency,
        "battery_discharge": -1.0 / a.efficiency,
    }[a.kind]


def _radiation_conductance(r: Radiation) -> float:
    return 4.0 * STEFAN_BOLTZMANN * r.emissivity * r.area_m2 * (r.linearize_at_c + KELVIN) ** 3


def cop(act: Actuator, t_node: np.ndarray, t_other: np.ndarray) -> np.ndarray:
    """COP of a heat pump or chiller (dimensionless), broadcast over the temperatures (°C).

    Chiller: cold side = node, hot side = ``t_other``.  Heat pump: hot side = node.
    Never above the Carnot COP of the node/boundary pair.
    """
    m = act.cop
    if m.model == "constant":
        return np.full(np.broadcast(t_node, t_other).shape, m.value)
    raw, ref = carnot_terms(act, t_node, t_other)
    lift = np.maximum(raw, m.min_lift_k)
    carnot = ref / lift
    return m.eta * carnot


def carnot_terms(act: Actuator, t_node: np.ndarray, t_other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(hot − cold, reference)`` of a Carnot-fraction COP: the unclamped lift (K) between the
    evaporator and the condenser, and the temperature (K) over the lift — the cold side for a
    chiller (node = cold side), the hot side for a heat pump (node = hot side)."""
    m = act.cop
    if act.kind == "chiller":
        cold, hot = np.asarray(t_node) - m.evaporator_approach_k, np.asarray(t_other) + m.condenser_approach_k
        return hot - cold, cold + KELVIN
    cold, hot = np.asarray(t_other) - m.evaporator_approach_k, np.asarray(t_node) + m.condenser_approach_k
    return hot - cold, hot + KELVIN


def electric_power(net: Network, u: np.ndarray, x: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Electric site power in kW (positive = import from the grid), before export limits.

    ``u``: (..., m) set-points in kW; ``x``: (..., n) states at the step's start; ``d``: (..., n_d).
    """
    dist = net.disturbance_names
    if u.shape[-1] and x.shape[-1] and d.shape[-1]:  # np.broadcast of one column each: a fifth of broadcast_shapes' time
        shape = np.broadcast(u[..., 0], x[..., 0], d[..., 0]).shape
    else:
        shape = np.broadcast_shapes(u.shape[:-1], x.shape[:-1], d.shape[:-1])
    p = np.zeros(shape)
    if net.site.load is not None:
        p = p + d[..., dist.index(net.site.load)]
    if net.site.pv is not None:
        p = p - d[..., dist.index(net.site.pv)]
    for k, a in enumerate(net.actuators):
        uk = u[..., k]
        if a.kind == "heater":
            p = p + uk / a.efficiency
        elif a.kind in ("heat_pump", "chiller"):
            other = d[..., net.boundary_columns[a.cop.boundary]] if a.cop.boundary else 0.0
            p = p + uk / cop(a, x[..., net.index(a.node)], other)
        elif a.kind == "battery_charge":
            p = p + uk
        else:
            p = p - uk
    return p
