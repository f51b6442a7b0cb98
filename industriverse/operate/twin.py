"""The digital twin: telemetry of a deployed capsule from one stochastic trajectory, with faults.

:func:`twin_telemetry` runs the capsule's plan through the stochastic plant model the
simulator uses — the network discretised at the control sub-step (exact ZOH, Van Loan process
noise, exact Ornstein–Uhlenbeck forecast error on the disturbances; :mod:`industriverse.plan.tracking`)
— executed by the plan's tracking law (:class:`industriverse.plan.tracking.PlanTracking`), for one
trajectory, and returns one reading per plan step::

    {"time": ISO local time of state k, "step": k, "nodes": {node: measured value},
     "power_kw": mean electric site power over step k−1 (kW, + import), "faults": [active faults]}

for k = 1..H.  The controller sees what the sensors report, so a stuck sensor also misleads
the tracking law, as it would on site.

Faults (``NAME@HOUR[:ARG]``, ``HOUR`` in hours since the plan's start):

``door_open@H[:KW]``
    a door to the outside opens at hour H on the main thermal node (the thermal node with the
    largest conductance to the boundaries): an extra conductance ``G_door`` between the node
    and that boundary, sized so that the extra heat load at the fault's start is ``KW``
    (default: 1.5 × the total rating of the node network's thermal actuators, which no
    controller can compensate, so the envelope breaks).  Modelled as a conductance, the load
    fades as the node approaches the outside temperature, never past it.
``sensor_stuck@H[:NODE]``
    the sensor of ``NODE`` (default: the main thermal node, or the first node) freezes at its
    reading at hour H.
``heater_failure@H[:ACTUATOR]``
    the actuator (default: the first heater, heat pump or chiller) delivers nothing from hour H.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from industriverse.model.discretize import zoh
from industriverse.errors import BadInput
from industriverse.model.network import electric_power
from industriverse.verify.simulate import disturbance_limits
from industriverse.plan.tracking import PlanTracking, substep_model

FAULTS = ("door_open", "sensor_stuck", "heater_failure")
DOOR_SIZE_FACTOR = 1.5  # × the thermal actuators' total rating
_FAULT_RE = re.compile(r"^(?P<name>[a-z_]+)@(?P<hour>[0-9]*\.?[0-9]+)(?::(?P<arg>.+))?$")


@dataclass(frozen=True)
class Fault:
    """A fault injected at ``hour`` (hours since the start); ``arg`` is its optional parameter."""

    name: str
    hour: float
    arg: str | None = None

    def __str__(self) -> str:
        return f"{self.name}@{self.hour:g}" + (f":{self.arg}" if self.arg else "")


def parse_fault(text: str, *, field: str = "--fault") -> Fault:
    """``"door_open@6"``, ``"door_open@6:12"``, ``"sensor_stuck@3:zone"`` → :class:`Fault`."""
    m = _FAULT_RE.match(text.strip())
    if not m:
        raise BadInput(None, field, f"'{text}' is not NAME@HOUR[:ARG] (e.g. door_open@6, sensor_stuck@3:zone)")
    if m["name"] not in FAULTS:
        raise BadInput(None, field, f"unknown fault '{m['name']}' (known: {', '.join(FAULTS)})")
    return Fault(m["name"], float(m["hour"]), m["arg"])


# --- resolving faults against a network -------------------------------------------------------
def main_thermal_node(problem) -> int | None:
    """Index of the thermal node with the largest conductance to the boundaries (None: no thermal node)."""
    net = problem.network
    bounds = {b.name for b in net.boundaries}
    best, best_g = None, -1.0
    for i, nd in enumerate(net.nodes):
        if nd.is_storage:
            continue
        g = sum(c.w_per_k for c in net.conductances if nd.name in c.between and (set(c.between) - {nd.name}) & bounds)
        if g > best_g:
            best, best_g = i, g
    return best


def _door(problem, fault: Fault, x_at: np.ndarray):
    """(node index, boundary disturbance index, G_door W/K) of a door_open fault."""
    net = problem.network
    i = main_thermal_node(problem)
    if i is None or not net.boundaries:
        raise BadInput(None, "--fault", f"{fault}: the network has no thermal node with a boundary to open a door to")
    node = net.node_names[i]
    links = [(c.w_per_k, (set(c.between) - {node}).pop()) for c in net.conductances if node in c.between]
    bounds = {b.name: b.disturbance for b in net.boundaries}
    to_bound = [(g, b) for g, b in links if b in bounds]
    boundary = max(to_bound)[1] if to_bound else net.boundaries[0].name
    j = net.disturbance_names.index(bounds[boundary])
    k = min(int(fault.hour / problem.dt_h), problem.H - 1)
    dT = abs(problem.d[k, j] - x_at[i])
    if fault.arg is not None:
        try:
            load_kw = float(fault.arg)
        except ValueError:
            raise BadInput(None, "--fault", f"{fault}: the door's load must be a number of kW") from None
        if load_kw <= 0:
            raise BadInput(None, "--fault", f"{fault}: the door's load must be positive kW")
    else:
        rating = sum(float(np.max(problem.u_hi[:, a])) for a, act in enumerate(net.actuators) if not act.kind.startswith("battery"))
        load_kw = DOOR_SIZE_FACTOR * max(rating, 1.0)
    return i, j, 1000.0 * load_kw / max(dT, 1.0)


def _node_arg(problem, fault: Fault) -> int:
    if fault.arg is None:
        i = main_thermal_node(problem)
        return 0 if i is None else i
    if fault.arg not in problem.nodes:
        raise BadInput(None, "--fault", f"{fault}: unknown node '{fault.arg}' (nodes: {', '.join(problem.nodes)})")
    return problem.nodes.index(fault.arg)


def _actuator_arg(problem, fault: Fault) -> int:
    names = problem.actuators
    if fault.arg is None:
        thermal = [a for a, act in enumerate(problem.network.actuators) if not act.kind.startswith("battery")]
        if not thermal:
            raise BadInput(None, "--fault", f"{fault}: the network has no heater, heat pump or chiller")
        return thermal[0]
    if fault.arg not in names:
        raise BadInput(None, "--fault", f"{fault}: unknown actuator '{fault.arg}' (actuators: {', '.join(names)})")
    return names.index(fault.arg)


# --- the twin ---------------------------------------------------------------------------------------
def twin_telemetry(problem, u: np.ndarray, *, faults: list[Fault] | tuple = (), seed: int = 0) -> list[dict]:
    """Readings (one per plan step k = 1..H) of one trajectory of plan ``u`` (H, m, kW) with ``faults``.

    Same seed, same faults: the same telemetry.  See the module docstring for the reading's fields.
    """
    u = np.asarray(u, dtype=float).reshape(problem.H, problem.m)
    for f in faults:
        if not 0 <= f.hour < problem.H * problem.dt_h:
            raise BadInput(None, "--fault", f"{f}: hour {f.hour:g} is outside the plan's {problem.H * problem.dt_h:g} hours")
    model = substep_model(problem)
    S, h, H = model.S, model.h, problem.H
    ctrl = PlanTracking(problem, u, model)
    ctrl.start(1)
    net = problem.network
    n, q = problem.n, len(model.fe_index)
    rng = np.random.default_rng(seed)
    d_lo, d_hi = disturbance_limits(problem)
    steps_h = h / 3600.0

    x = problem.x0.astype(float).copy()
    e = np.zeros(q)
    stuck: dict[int, float | None] = {}  # node -> frozen reading (None until the fault starts)
    failed: set[int] = set()
    door_model = None  # (Ad, Bd, Ed) with the door's conductance, once open
    pending = sorted(faults, key=lambda f: f.hour)
    active: list[str] = []
    readings: list[dict] = []
    power_acc = 0.0

    for j in range(H * S):
        k = j // S
        t_h = j * steps_h
        while pending and pending[0].hour <= t_h + 1e-9:
            f = pending.pop(0)
            active.append(str(f))
            if f.name == "door_open":
                i, di, g = _door(problem, f, x)
                A, B, E = (M.copy() for M in net.matrices)
                C = net.capacities[i]
                A[i, i] -= g / C
                E[i, di] += g / C
                Ad, BE = zoh(A, np.hstack([B, E]), h)
                door_model = (Ad, BE[:, : problem.m], BE[:, problem.m:])
            elif f.name == "sensor_stuck":
                stuck[_node_arg(problem, f)] = None
            else:
                failed.add(_actuator_arg(problem, f))
        d = problem.d[k].copy()
        if q:
            d[model.fe_index] += e
        d = np.clip(d, d_lo, d_hi[k])  # the simulator's physical limits: no negative load or PV, no PV at night
        measured = x.copy()
        for i in stuck:
            if stuck[i] is None:
                stuck[i] = float(x[i])
            measured[i] = stuck[i]
        uj = ctrl(j, measured[None, :], d[None, :])[0].copy()
        for a in failed:
            uj[a] = 0.0
        power_acc += max(float(electric_power(net, uj[None, :], x[None, :], d[None, :])[0]), -problem.export_max)
        Ad, Bd, Ed = door_model if door_model is not None else (model.Ad, model.Bd, model.Ed)
        x_next = Ad @ x + Bd @ uj + Ed @ d
        if net.has_nonlinear_dynamics:
            x_next = x_next + h * net.radiation_correction(x, d)  # Euler on the small nonlinear remainder
        if np.any(model.Qd):
            x_next = x_next + model.noise_factor @ rng.standard_normal(n)
        if q:
            e = model.ou_a * e + model.ou_s * rng.standard_normal(q)
        x = x_next
        if (j + 1) % S == 0:
            shown = x.copy()
            for i, v in stuck.items():
                if v is not None:
                    shown[i] = v
            readings.append({
                "time": problem.step_times([k + 1])[0],
                "step": k + 1,
                "nodes": {name: float(shown[i]) for i, name in enumerate(problem.nodes)},
                "power_kw": power_acc / S,
                "faults": list(active),
            })
            power_acc = 0.0
    return readings


def capsule_plan(manifest_path: str | Path) -> tuple[dict, dict, Path]:
    """(manifest dict, plan document, capsule directory) of a capsule (manifest or its directory)."""
    from industriverse.model.canonical import read_json
    from industriverse.trust.capsule import (CapsuleManifest, LegacyManifest, load_manifest, manifest_path_of, resolve_inside)

    mpath = manifest_path_of(manifest_path)
    manifest = load_manifest(mpath)
    if isinstance(manifest, LegacyManifest):
        raise BadInput(str(mpath), None, "; ".join(manifest.problems()))
    assert isinstance(manifest, CapsuleManifest)
    entry = manifest.file("plan")
    if entry is None:
        raise BadInput(str(mpath), "files", "names no plan (role: plan)")
    try:
        plan_path = resolve_inside(mpath.parent, entry.path)
    except ValueError as exc:
        raise BadInput(str(mpath), "files", str(exc)) from None
    plan = read_json(plan_path)
    if not isinstance(plan, dict):
        raise BadInput(str(plan_path), None, "must be a JSON object")
    return manifest.model_dump(mode="json"), plan, mpath.parent


def twin_for_capsule(manifest_path: str | Path, *, faults: list[Fault] | tuple = (), seed: int = 0) -> list[dict]:
    """Telemetry of the capsule's plan (see :func:`twin_telemetry`)."""
    from industriverse.plan.optimize import load_plan

    _, plan, _ = capsule_plan(manifest_path)
    problem, u = load_plan(plan)
    return twin_telemetry(problem, u, faults=faults, seed=seed)


__all__ = ["Fault", "FAULTS", "parse_fault", "main_thermal_node", "twin_telemetry", "twin_for_capsule", "capsule_plan"]
