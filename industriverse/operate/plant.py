"""The emulated site: the stochastic plant, one control step at a time, with a model mismatch.

What a real site looks like to the live loop: a plant whose physics differ from the model we
plan with (:func:`mismatched_constraint` scales every thermal capacity and every conductance
by its own factor drawn uniformly in ``1 ± mismatch``), driven by disturbances that differ
from the forecast (the constraint's Ornstein–Uhlenbeck forecast error), with process noise,
optional faults (:mod:`industriverse.operate.twin`'s ``door_open``, ``sensor_stuck``,
``heater_failure``), and its own baseline controller (:mod:`industriverse.verify.baselines`)
that runs whenever it is given no valid set-points — as a building's BMS does.

:class:`EmulatedPlant` advances one control sub-step per :meth:`EmulatedPlant.step` with the
same discretisation as the simulator and the twin (exact ZOH at the sub-step, Van Loan noise,
exact OU forecast error, Euler on the radiation remainder) and returns the reading at the
step's end.  Where the time comes from (a wall clock × speed-up, or a benchmark loop) is the
caller's business.
"""
from __future__ import annotations

import copy
from datetime import datetime, timedelta

import numpy as np

from industriverse.errors import BadInput
from industriverse.model.discretize import zoh
from industriverse.model.mapping import map_constraint
from industriverse.model.network import electric_power
from industriverse.operate.twin import Fault, _actuator_arg, _door, _node_arg
from industriverse.plan.tracking import substep_model
from industriverse.verify.baselines import make_baseline
from industriverse.verify.simulate import disturbance_limits


def with_horizon(raw: dict, *, start: datetime | str | None = None, hours: float | None = None) -> dict:
    """A copy of constraint ``raw`` with its horizon moved to ``start`` and/or stretched to ``hours``."""
    out = copy.deepcopy(raw)
    horizon = out.setdefault("horizon", {})
    if start is not None:
        horizon["start"] = start if isinstance(start, str) else start.isoformat(timespec="seconds")
    if hours is not None:
        horizon["hours"] = float(hours)
    return out


def mismatched_constraint(domain: str, raw: dict, mismatch: float, seed: int, *, file: str | None = None,
                          base_dir=None) -> tuple[dict, dict]:
    """``(raw with the perturbed network, {parameter: factor})``: the plant's true physics.

    Each thermal capacity (J/K) and each conductance (W/K) is multiplied by its own factor,
    uniform in ``[1 − mismatch, 1 + mismatch]`` from ``seed``.  Storage capacities (kWh) and
    actuator ratings stay: they are on the nameplate, the thermal parameters are not.
    """
    if not 0.0 <= mismatch < 1.0:
        raise BadInput(None, "--mismatch", f"must be in [0, 1), got {mismatch:g}")
    problem = map_constraint(domain, raw, file=file, base_dir=base_dir)
    net = problem.network.model_dump(mode="json", exclude_none=True)
    rng = np.random.default_rng([seed, 7919])
    factors: dict[str, float] = {}
    for nd in net["nodes"]:
        if nd.get("capacity_j_per_k") is not None:
            f = float(rng.uniform(1 - mismatch, 1 + mismatch))
            nd["capacity_j_per_k"] *= f
            factors[f"C[{nd['name']}]"] = f
    for c in net["conductances"]:
        f = float(rng.uniform(1 - mismatch, 1 + mismatch))
        c["w_per_k"] *= f
        factors[f"G[{'-'.join(c['between'])}]"] = f
    out = copy.deepcopy(raw)
    out["network"] = net
    return out, factors


class EmulatedPlant:
    """One stochastic trajectory of ``problem``'s plant, stepped by the caller (see the module docstring).

    ``problem`` is the *true* plant (already mismatched) over the whole run.  :meth:`step` takes
    the set-points (m,) kW to apply over the next control step, or None for the plant's own
    baseline controller, and returns the reading at the step's end::

        {"time": datetime, "step": j, "nodes": {..}, "actuators": {..}, "disturbances": {..},
         "power_kw": mean electric power over the step, "controller": "setpoints"|"baseline", "faults": [..]}
    """

    def __init__(self, problem, *, faults: list[Fault] | tuple = (), seed: int = 0, noise: bool = True):
        self.problem = problem
        self.model = substep_model(problem)
        self.h = self.model.h
        self.steps = problem.H * self.model.S
        for f in faults:
            if not 0 <= f.hour < problem.H * problem.dt_h:
                raise BadInput(None, "--fault", f"{f}: hour {f.hour:g} is outside the run's {problem.H * problem.dt_h:g} hours")
        self.pending = sorted(faults, key=lambda f: f.hour)
        self.baseline = make_baseline(problem, self.model)
        self.baseline.start(1)
        self.rng = np.random.default_rng(seed)
        self.noise = noise
        self.d_lo, self.d_hi = disturbance_limits(problem)
        self.x = problem.x0.astype(float).copy()
        self.e = np.zeros(len(self.model.fe_index))
        self.j = 0
        self.stuck: dict[int, float | None] = {}
        self.failed: set[int] = set()
        self.door_model = None
        self.active: list[str] = []

    def time_at(self, j: int) -> datetime:
        """Plant time of the state after ``j`` control steps."""
        return self.problem.start + timedelta(seconds=j * self.h)

    @property
    def done(self) -> bool:
        return self.j >= self.steps

    def disturbances_now(self) -> np.ndarray:
        """The realised disturbances (n_d,) over the coming control step (forecast + OU error, clipped)."""
        k = min(self.j // self.model.S, self.problem.H - 1)
        d = self.problem.d[k].copy()
        if len(self.e):
            d[self.model.fe_index] += self.e
        return np.clip(d, self.d_lo, self.d_hi[k])

    def measured(self) -> np.ndarray:
        """What the sensors report now (stuck sensors frozen)."""
        out = self.x.copy()
        for i, v in self.stuck.items():
            if v is not None:
                out[i] = v
        return out

    def _start_faults(self) -> None:
        t_h = self.j * self.h / 3600.0
        problem, net = self.problem, self.problem.network
        while self.pending and self.pending[0].hour <= t_h + 1e-9:
            f = self.pending.pop(0)
            self.active.append(str(f))
            if f.name == "door_open":
                i, di, g = _door(problem, f, self.x)
                A, B, E = (M.copy() for M in net.matrices)
                C = net.capacities[i]
                A[i, i] -= g / C
                E[i, di] += g / C
                Ad, BE = zoh(A, np.hstack([B, E]), self.h)
                self.door_model = (Ad, BE[:, : problem.m], BE[:, problem.m:])
            elif f.name == "sensor_stuck":
                i = _node_arg(problem, f)
                self.stuck[i] = float(self.x[i])
            else:
                self.failed.add(_actuator_arg(problem, f))

    def step(self, u_cmd: np.ndarray | None) -> dict:
        if self.done:
            raise RuntimeError("the plant's run is over")
        problem, model, net = self.problem, self.model, self.problem.network
        k = self.j // model.S
        self._start_faults()
        d = self.disturbances_now()
        if u_cmd is None:
            u = self.baseline(self.j, self.measured()[None, :], d[None, :])[0].copy()
        else:
            u = np.clip(np.asarray(u_cmd, dtype=float), problem.u_lo[k], problem.u_hi[k])
        for a in self.failed:
            u[a] = 0.0
        power = max(float(electric_power(net, u[None, :], self.x[None, :], d[None, :])[0]), -problem.export_max)
        Ad, Bd, Ed = self.door_model if self.door_model is not None else (model.Ad, model.Bd, model.Ed)
        x_next = Ad @ self.x + Bd @ u + Ed @ d
        if net.has_nonlinear_dynamics:
            x_next = x_next + self.h * net.radiation_correction(self.x, d)
        if self.noise and np.any(model.Qd):
            x_next = x_next + model.noise_factor @ self.rng.standard_normal(problem.n)
        if len(self.e):
            self.e = model.ou_a * self.e + (model.ou_s * self.rng.standard_normal(len(self.e)) if self.noise else 0.0)
        self.x = x_next
        self.j += 1
        shown = self.measured()
        return {
            "time": self.time_at(self.j), "step": self.j,
            "nodes": {name: float(shown[i]) for i, name in enumerate(problem.nodes)},
            "actuators": {name: float(u[a]) for a, name in enumerate(problem.actuators)},
            "disturbances": {name: float(d[i]) for i, name in enumerate(net.disturbance_names)},
            "power_kw": power, "controller": "baseline" if u_cmd is None else "setpoints",
            "faults": list(self.active),
        }


__all__ = ["EmulatedPlant", "mismatched_constraint", "with_horizon"]
