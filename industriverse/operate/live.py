"""The live loop's core: estimate, dispatch, monitor and re-plan for one site, driven by plant time.

:class:`LiveOperator` is fed the plant's readings one by one (:meth:`LiveOperator.on_reading`)
and answers each with a :class:`Decision`: the set-points for the next control step and,
when one is due, the constraint of a re-planning strike.  It does no I/O of its own beyond
the store and the gateway; the transport (MQTT, the message bus) is the caller's
(:mod:`workers.live`).  Every reading:

1. **estimate** — the Kalman filter of the contract's network
   (:class:`industriverse.model.estimate.StateEstimator`) predicts over the step that ended
   with the actuators and disturbances the plant reports, then corrects with the measured
   nodes.  Its process noise is the constraint's, raised to at least ``model_error`` per
   node (state units per √h): the plant is not the model we plan with, and a filter that
   trusts a wrong model lags the truth.  The filter's model carries a ``model_bias_<node>``
   heat input at each thermal node, fed the missing heat learned so far (:class:`ModelBias`,
   a disturbance observer: offset-free estimation);
2. **monitor** — the active capsule's runtime monitor
   (:class:`industriverse.operate.monitor.ThermodynamicRuntimeMonitor`, armed at deployment)
   checks the readings at the plan's own steps (with the mean power since the previous one:
   its envelope, band and ``consecutive`` count are per plan step); alerts are gateway activities; a rollback withdraws the capsule and
   the site goes back to its baseline (``mode: baseline`` on the set-points, with the reason)
   until a later re-plan deploys a new version;
3. **dispatch** — the active capsule's tracking law
   (:class:`industriverse.plan.tracking.PlanTracking`) at the reading's step, fed the
   *estimated* state (feedback, not replay), plus the feedforward of the heat the plan did not
   foresee (:func:`feedforward`: the disturbances now off the plan's forecast, the missing
   heat now off the plan's — without it the proportional law leaves an offset of heat / gain
   that rides under the band); the set-points are valid for one plan step;
4. **re-plan** — every ``replan_minutes`` of plant time (and at once when no capsule
   covers the present): the contract's constraint with the horizon rolled to the reading's
   time, the estimate as ``initial_state`` and the heat the planning model misses, learned
   from the filter's innovations, as a constant gain at each thermal node
   (:class:`ModelBias`: offset-free receding horizon).  Only one re-plan is in flight at a time.
   A deployed result (:meth:`LiveOperator.on_strike`) supersedes the running capsule at its
   first valid step, i.e. the first reading at or after its start.

The state a restarted daemon needs — the estimate and its covariance, the reading time, the
active capsule, when it last re-planned — is written to the store after every reading
(:func:`industriverse.fleet.store.put_live_state`), so a restart resumes where it stopped.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from industriverse.errors import BadInput
from industriverse.fleet import store
from industriverse.fleet.contracts import Contract, contract_request
from industriverse.model.estimate import StateEstimator
from industriverse.model.mapping import map_constraint
from industriverse.operate.monitor import ThermodynamicRuntimeMonitor, armed_config
from industriverse.operate.plant import with_horizon
from industriverse.operate.twin import capsule_plan
from industriverse.plan.optimize import load_plan
from industriverse.plan.tracking import PlanTracking, substep_model

DEFAULT_REPLAN_MINUTES = 60.0
DEFAULT_MODEL_ERROR = 0.5       # state units per √h: the least process noise the filter assumes
DEFAULT_MEASUREMENT_NOISE = 0.05  # state units: a good sensor


def naive(t: datetime) -> datetime:
    """Plant times are local wall-clock times: compare them without a zone."""
    return t.replace(tzinfo=None) if t.tzinfo is not None else t


BIAS_HOURS = 2.0  # memory of the model-error estimate, hours
BIAS_PREFIX = "model_bias_"
FAST_BIAS_HOURS = 0.25  # memory of the dispatch's estimate of the missing heat now, hours


class ModelBias:
    """The heat the planning model misses at each thermal node, learned from the filter's innovations.

    The plant is not the model (capacities, conductances off by tens of per cent), so a plan
    tracked from the estimate sits off its reference by a steady offset, and re-planning from
    the estimate alone never removes it.  Offset-free receding-horizon control adds the missing
    input: after each reading the filter's correction of node ``i`` (posterior − prediction,
    ``c_i`` state units over ``dt`` seconds — in steady state exactly what the model missed,
    whereas the raw innovation overstates it by the filter's gain) is worth ``C_i · c_i / dt``
    W of unexplained heat; its exponential average over ``hours`` (kW) enters the next plan as
    a constant heat gain at the node (:meth:`apply`).  Storage nodes (kWh) are left alone: a battery's energy is metered.
    """

    def __init__(self, network, hours: float = BIAS_HOURS, fast_hours: float = FAST_BIAS_HOURS):
        self.nodes = [nd.name for nd in network.nodes]
        self.capacity = {nd.name: nd.capacity_j_per_k for nd in network.nodes if not nd.is_storage}
        self.tau_s = hours * 3600.0
        self.fast_tau_s = fast_hours * 3600.0
        self.kw = {name: 0.0 for name in self.capacity}
        self.weight = 0.0  # seconds of evidence so far (the average is unbiased from the start)
        #: the same average over ``fast_hours``: the missing heat *now*, for the dispatch's feedforward
        self.kw_now = {name: 0.0 for name in self.capacity}
        self.fast_weight = 0.0

    def update(self, corrections: dict[str, float], dt: float, used: dict[str, float] | None = None) -> None:
        """Add one reading: ``corrections`` {node: posterior − prediction} over ``dt`` seconds.

        ``used`` {node: kW}: the missing heat the filter's prediction already included (its
        ``model_bias_<node>`` inputs, :meth:`filter_inputs`); the correction is then only the rest.
        """
        if dt <= 0 or not corrections:
            return
        used = used or {}
        a, af = math.exp(-dt / self.tau_s), math.exp(-dt / self.fast_tau_s)
        new_weight, new_fast = a * self.weight + dt, af * self.fast_weight + dt
        for name, e in corrections.items():
            if name in self.kw:
                sample = float(used.get(name, 0.0)) + self.capacity[name] * float(e) / dt / 1000.0
                self.kw[name] = (a * self.weight * self.kw[name] + dt * sample) / new_weight
                self.kw_now[name] = (af * self.fast_weight * self.kw_now[name] + dt * sample) / new_fast
        self.weight, self.fast_weight = new_weight, new_fast

    def filter_inputs(self) -> dict[str, float]:
        """The missing heat now as the filter's known inputs {``model_bias_<node>``: kW} (a Kalman
        filter of :meth:`network` predicts with them: its estimate no longer lags a persistent error)."""
        return {BIAS_PREFIX + name: float(kw) for name, kw in self.kw_now.items()}

    def network(self, raw: dict, network, domain: str, base_dir=None):
        """The network of ``raw`` with a ``model_bias_<node>`` heat input at each thermal node."""
        return map_constraint(domain, self.apply(raw, network), base_dir=base_dir).network

    def now_kw(self) -> np.ndarray:
        """(n,) the missing heat at each node now (kW, the short-memory average; 0 on storage nodes)."""
        return np.array([self.kw_now.get(nd, 0.0) for nd in self.nodes])

    def apply(self, raw: dict, network) -> dict:
        """A copy of constraint ``raw`` whose network gains the learned heat at each thermal node."""
        out = dict(raw)
        net = network.model_dump(mode="json", exclude_none=True)
        gains = [g for g in net.get("gains", []) if not g["disturbance"].startswith(BIAS_PREFIX)]
        dist = dict(out.get("disturbances") or {})
        for name, kw in self.kw.items():
            series = BIAS_PREFIX + name
            gains.append({"node": name, "disturbance": series})
            dist[series] = {"type": "constant", "value": round(float(kw), 6)}
        net["gains"] = gains
        out["network"], out["disturbances"] = net, dist
        return out

    def to_dict(self) -> dict:
        return {"kw": dict(self.kw), "weight": self.weight, "kw_now": dict(self.kw_now),
                "fast_weight": self.fast_weight}

    def restore(self, doc: dict | None) -> None:
        if doc:
            self.kw.update({k: float(v) for k, v in doc.get("kw", {}).items() if k in self.kw})
            self.weight = float(doc.get("weight", 0.0))
            self.kw_now.update({k: float(v) for k, v in doc.get("kw_now", {}).items() if k in self.kw_now})
            self.fast_weight = float(doc.get("fast_weight", 0.0))


def feedforward(network, problem, k: int, d_now: np.ndarray, missing_kw: np.ndarray) -> np.ndarray:
    """Actuator correction (m,) kW that cancels the heat the plan in force did not foresee.

    The tracking law corrects deviations only in proportion (``K (x − x_pred)``), so a heat input
    the plan did not count on leaves a steady offset of ``heat / K`` — enough, with ±20 % model
    error, to ride under a band the plan keeps a few hundredths of a kelvin inside.  The unforeseen
    heat is (i) the disturbances now (``d_now``, in ``network.disturbance_names`` order) off the
    plan's forecast for its step ``k``, and (ii) the model's missing heat now (``missing_kw`` (n,)
    kW, :meth:`ModelBias.now_kw`) off the value the plan was made with (its ``model_bias_<node>``
    disturbances, 0 if it has none).  Cancelling it through the actuators (least squares over
    ``ẋ = … + B u + E d``, ``network`` the nominal one, without the bias gains) is the
    disturbance-rejection half of offset-free MPC: the tracking law then acts on the plant the
    plan assumed.
    """
    _, B, E = network.matrices
    names = list(problem.network.disturbance_names)
    row = problem.d[min(max(k, 0), problem.H - 1)]
    d_plan = np.array([row[names.index(nm)] if nm in names else float(v)
                       for nm, v in zip(network.disturbance_names, d_now)])
    planned = np.array([row[names.index(BIAS_PREFIX + nd.name)] if BIAS_PREFIX + nd.name in names else 0.0
                        for nd in network.nodes])
    rate = E @ (np.asarray(d_now, dtype=float) - d_plan) + 1000.0 * (np.asarray(missing_kw) - planned) / network.capacities
    return -np.linalg.lstsq(B, rate, rcond=None)[0]


@dataclass
class ActivePlan:
    """A deployed capsule as the dispatcher runs it."""

    capsule_id: str
    version: int
    activity_id: str | None
    capsule_dir: str
    problem: object
    tracker: PlanTracking
    monitor: ThermodynamicRuntimeMonitor | None
    start: datetime
    h: float  # control step, s
    steps: int  # control steps in the plan
    S: int = 1  # control steps per plan step
    energy_kwh: float = 0.0  # imported since the monitor's last reading
    since: datetime | None = None  # time of the monitor's last reading

    def index(self, t: datetime) -> int | None:
        """Control step of the plan at plant time ``t`` (None outside the plan)."""
        j = math.floor((naive(t) - self.start).total_seconds() / self.h + 1e-6)
        return j if 0 <= j < self.steps else None

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.steps * self.h)

    def ref(self) -> dict:
        return {"capsule_id": self.capsule_id, "version": self.version, "activity_id": self.activity_id,
                "capsule_dir": self.capsule_dir}


def load_active_plan(capsule_dir: str | Path, gateway=None, *, activity_id: str | None = None) -> ActivePlan:
    """Load a capsule's plan, its tracking law and its armed monitor (see the module docstring)."""
    manifest, plan_doc, root = capsule_plan(capsule_dir)
    problem, u = load_plan(plan_doc)
    model = substep_model(problem)
    monitor = None
    if gateway is not None:
        config, deployment = armed_config(gateway, root)
        monitor = ThermodynamicRuntimeMonitor(config, gateway)
        activity_id = activity_id or (deployment or {}).get("deployment_activity_id")
    tracker = PlanTracking(problem, u, model)
    tracker.start(1)
    return ActivePlan(capsule_id=manifest["id"], version=int(manifest["version"]), activity_id=activity_id,
                      capsule_dir=str(root), problem=problem, tracker=tracker, monitor=monitor,
                      start=naive(problem.start), h=model.h, steps=problem.H * model.S, S=model.S)


@dataclass
class Decision:
    """What the operator answers to one reading."""

    setpoints: dict  # fields of messages.live.Setpoints (without site)
    replan: dict | None = None  # the constraint of a re-planning strike, when one is due
    alerts: list[dict] = field(default_factory=list)
    rollback: str | None = None  # rollback activity ID
    adopted: int | None = None  # capsule version that took over at this reading
    estimate: dict[str, float] = field(default_factory=dict)


class LiveOperator:
    """The live loop of one site under one contract (see the module docstring)."""

    def __init__(self, site: str, contract: Contract, base_dir: Path, *, gateway=None, engine=None,
                 model_error: float = DEFAULT_MODEL_ERROR, measurement_noise: float = DEFAULT_MEASUREMENT_NOISE,
                 resume: bool = True, log=None):
        self.site, self.contract, self.gateway, self.engine, self.log = site, contract, gateway, engine, log
        self.raw = contract_request(contract, Path(base_dir), datetime.now())
        self.problem = map_constraint(contract.domain, self.raw, base_dir=Path(base_dir))
        self.h = substep_model(self.problem).h
        self.replan_every = timedelta(minutes=contract.replan_minutes or DEFAULT_REPLAN_MINUTES)
        self.validity = timedelta(seconds=self.problem.dt_s)  # set-points hold for one plan step
        q = np.maximum(np.asarray(self.problem.process_noise, dtype=float), model_error)
        nodes = self.problem.nodes
        self.bias = ModelBias(self.problem.network)
        # offset-free estimation: the filter predicts with the missing heat learned so far (a
        # ``model_bias_<node>`` input at each thermal node), so its estimate does not lag the plant
        self.estimator = StateEstimator(self.bias.network(self.raw, self.problem.network, contract.domain, base_dir),
                                        process_noise=dict(zip(nodes, map(float, q))),
                                        measurement_noise=float(measurement_noise))
        self.last_time: datetime | None = None
        self.last_replan: datetime | None = None
        self.in_flight: str | None = None  # strike ID of the re-plan under way
        self.plan: ActivePlan | None = None
        self.pending: ActivePlan | None = None
        self.baseline_reason: str | None = "no capsule yet"
        self.readings = 0
        self.resumed = False
        if resume:
            self._resume()

    # --- persistence ----------------------------------------------------------------------
    def _state(self) -> dict:
        est = self.estimator
        return {
            "contract_id": self.contract.id, "time": self.last_time.isoformat() if self.last_time else None,
            "x": [float(v) for v in est.x], "P": [[float(v) for v in row] for row in est.P],
            "last_input": None if est.last_input is None else [float(v) for v in est.last_input],
            "last_replan": self.last_replan.isoformat() if self.last_replan else None,
            "plan": self.plan.ref() if self.plan else None,
            "pending": self.pending.ref() if self.pending else None,
            "baseline_reason": self.baseline_reason, "model_bias": self.bias.to_dict(),
        }

    def save(self) -> None:
        store.put_live_state(self.site, self._state(), engine=self.engine)

    def _resume(self) -> None:
        state = store.get_live_state(self.site, engine=self.engine)
        if not state or state.get("contract_id") != self.contract.id or state.get("time") is None:
            return
        est = self.estimator
        x, P = np.asarray(state["x"], dtype=float), np.asarray(state["P"], dtype=float)
        if x.shape != (self.problem.n,) or P.shape != (self.problem.n, self.problem.n):
            return  # the contract's network changed: start afresh
        est.x, est.P, est._unset = x, P, False
        if state.get("last_input") is not None and len(state["last_input"]) == len(est.inputs):
            est.last_input = np.asarray(state["last_input"], dtype=float)  # (a state saved before the bias inputs: none)
        self.last_time = datetime.fromisoformat(state["time"])
        self.last_replan = datetime.fromisoformat(state["last_replan"]) if state.get("last_replan") else None
        self.baseline_reason = state.get("baseline_reason")
        self.bias.restore(state.get("model_bias"))
        for key in ("plan", "pending"):
            ref = state.get(key)
            if not ref:
                continue
            if self.gateway is not None and self.gateway.active_version(ref["capsule_id"]) != ref["version"]:
                continue  # rolled back or superseded while we were away
            try:
                setattr(self, key, load_active_plan(ref["capsule_dir"], self.gateway, activity_id=ref.get("activity_id")))
            except (BadInput, OSError):
                self._log("warning", "stored capsule cannot be loaded; waiting for a re-plan", capsule=ref)
        self.resumed = True
        self._log("info", "resumed from the store", time=state["time"],
                  capsule_version=self.plan.version if self.plan else None)

    def _log(self, level: str, event: str, **kw) -> None:
        if self.log is not None:
            getattr(self.log, level)(event, **kw)

    # --- the loop -------------------------------------------------------------------------
    def on_reading(self, reading: dict) -> Decision | None:
        """Handle one reading ``{time, nodes, actuators, disturbances, power_kw, ...}``.

        Returns None (and logs why) for a reading that cannot be used: out of order, unknown
        node or input names.  Such a reading changes nothing.
        """
        t = naive(reading["time"])
        if self.last_time is not None and t <= self.last_time:
            self._log("warning", "reading skipped: not after the previous one", time=t.isoformat(),
                      previous=self.last_time.isoformat())
            return None
        unknown = set(reading.get("nodes", {})) - set(self.problem.nodes)
        if unknown:
            self._log("warning", "reading skipped: unknown nodes", nodes=sorted(unknown))
            return None
        est = self.estimator
        saved = (est.x.copy(), est.P.copy(), est.last_input, est._unset)
        dt = (t - self.last_time).total_seconds() if self.last_time is not None else 0.0
        try:
            used = self.bias.filter_inputs()
            if self.last_time is not None:
                est.predict(dt, u=reading.get("actuators") or None, d={**(reading.get("disturbances") or {}), **used})
            prior = est.mean
            est.update(reading["nodes"])
        except BadInput as exc:
            est.x, est.P, est.last_input, est._unset = saved
            self._log("warning", "reading skipped", reason=str(exc))
            return None
        if self.readings:  # the first reading corrects the prior, not the model
            self.bias.update(dict(zip(self.problem.nodes, est.mean - prior)), dt,
                             {k[len(BIAS_PREFIX):]: v for k, v in used.items()})
        self.last_time = t
        self.readings += 1
        x_hat = est.mean
        decision = Decision(setpoints={}, estimate=dict(zip(self.problem.nodes, map(float, x_hat))))

        if self.pending is not None and self.pending.index(t) is not None:
            old = self.plan.version if self.plan else None
            self.plan, self.pending, self.baseline_reason = self.pending, None, None
            decision.adopted = self.plan.version
            self._log("info", "capsule version takes over", capsule_id=self.plan.capsule_id,
                      version=self.plan.version, previous=old, time=t.isoformat())
        elif self.pending is not None and t >= self.pending.end:
            self.pending = None

        plan = self.plan
        j = plan.index(t) if plan is not None else None
        if plan is not None and plan.monitor is not None and j is not None:
            # the monitor watches the plan's own resolution: one reading per plan step, with the mean
            # power since the last one (its envelope, band and "consecutive" count are per plan step;
            # fed every control step, three hairline minutes below the band would roll back)
            power = reading.get("power_kw")
            if power is not None and plan.since is not None:
                plan.energy_kwh += max(float(power), 0.0) * dt / 3600.0
            obs = None
            if j % plan.S == 0:
                mean_kw = None
                if power is not None and plan.since is not None and t > plan.since:
                    mean_kw = plan.energy_kwh / ((t - plan.since).total_seconds() / 3600.0)
                try:
                    obs = plan.monitor.observe({"time": t.isoformat(), "nodes": reading["nodes"], "power_kw": mean_kw},
                                               where=f"telemetry {t.isoformat()}")
                except BadInput as exc:
                    self._log("warning", "monitor skipped the reading", reason=str(exc))
                plan.energy_kwh = 0.0
            if plan.since is None or j % plan.S == 0:
                plan.since = t
            if obs is not None:
                decision.alerts = obs.alerts
                for a in obs.alerts:
                    self._log("warning", "monitor alert", kind=a.get("kind"), severity=a.get("severity"),
                              node=a.get("node"), message=a.get("message"), alert_id=a.get("id"))
                if plan.monitor.stopped:
                    decision.rollback = obs.rollback
                    self.baseline_reason = (f"rollback of {plan.capsule_id} v{plan.version} by the runtime monitor at "
                                            f"{t.isoformat()}: {plan.monitor.consecutive_hard} consecutive hard breaches")
                    self._log("error", "rolled back: the site returns to its baseline", capsule_id=plan.capsule_id,
                              version=plan.version, rollback_activity_id=obs.rollback, time=t.isoformat())
                    self.plan = plan = None

        j = plan.index(t) if plan is not None else None
        if j is not None:
            # the disturbances now as the filter holds them (a reading may leave some out: the last value holds)
            held = dict(zip(est.inputs, est.last_input)) if est.last_input is not None else {}
            got = reading.get("disturbances") or {}
            d = np.array([float(got.get(n, held.get(n, np.nan))) for n in self.problem.network.disturbance_names])
            u = plan.tracker(j, x_hat[None, :], d[None, :])[0]
            k = min(j // plan.S, plan.problem.H - 1)
            if np.isfinite(d).all():
                u = np.clip(u + feedforward(self.problem.network, plan.problem, k, d, self.bias.now_kw()),
                            plan.problem.u_lo[k], plan.problem.u_hi[k])
            decision.setpoints = {
                "time": t, "valid_until": t + self.validity, "mode": "capsule", "activity_id": plan.activity_id,
                "capsule_version": plan.version, "actuators": {a: float(v) for a, v in zip(plan.problem.actuators, u)},
            }
        else:
            if plan is not None:
                self.baseline_reason = f"capsule v{plan.version} ended at {plan.end.isoformat()}"
                self.plan = None
            decision.setpoints = {"time": t, "valid_until": t + self.validity, "mode": "baseline",
                                  "reason": self.baseline_reason or "no capsule covers the present"}

        no_plan_ahead = self.plan is None and self.pending is None
        due = self.last_replan is None or t - self.last_replan >= self.replan_every or no_plan_ahead and (
            t - self.last_replan >= timedelta(seconds=self.problem.dt_s))
        if due and self.in_flight is None:
            decision.replan = self.replan_request(t, x_hat)
            self.last_replan = t
        self.save()
        return decision

    def replan_request(self, t: datetime, x_hat: np.ndarray) -> dict:
        """The contract's constraint, horizon rolled to ``t``, the estimate as the initial state,
        and the heat the model misses at each thermal node (:class:`ModelBias`)."""
        raw = self.bias.apply(with_horizon(self.raw, start=t), self.problem.network)
        x0 = {}
        for i, nd in enumerate(self.problem.network.nodes):
            v = float(x_hat[i])
            if nd.is_storage:  # a state of charge outside the battery is an estimation artefact
                v = min(max(v, 0.0), float(nd.capacity_kwh))
            x0[nd.name] = round(v, 6)
        raw["initial_state"] = x0
        return raw

    def strike_started(self, strike_id: str) -> None:
        self.in_flight = strike_id

    def on_strike(self, strike_id: str, *, outcome: str, capsule_dir: str | None = None,
                  activity_id: str | None = None, reason: str | None = None) -> ActivePlan | None:
        """A re-planning strike ended: ``deployed`` (with the capsule), ``rejected`` or ``failed``."""
        if self.in_flight == strike_id:
            self.in_flight = None
        if outcome != "deployed" or capsule_dir is None:
            self._log("warning", "re-plan not deployed; the running capsule (or the baseline) continues",
                      strike_id=strike_id, outcome=outcome, reason=reason)
            return None
        new = load_active_plan(capsule_dir, self.gateway, activity_id=activity_id)
        current = self.pending or self.plan
        if current is not None and new.version <= current.version:
            return None  # an older result arriving late never replaces a newer one
        self.pending = new
        self._log("info", "re-plan deployed; takes over at its first valid step", strike_id=strike_id,
                  capsule_id=new.capsule_id, version=new.version, start=new.start.isoformat())
        self.save()
        return new


__all__ = ["ActivePlan", "Decision", "LiveOperator", "ModelBias", "feedforward", "load_active_plan", "DEFAULT_REPLAN_MINUTES"]
