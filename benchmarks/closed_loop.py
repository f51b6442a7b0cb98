"""Closed-loop benchmark of the live loop: baseline, day-ahead, receding horizon, oracle.

Run: ``python benchmarks/closed_loop.py [--days 2] [--seeds 0 1] [--domains hvac cold_storage microgrid]``.
Prints a Markdown table (and ``--json FILE``); it is a measurement, not a test.

Each domain's example constraint runs for ``--days`` days on the emulated site of
``industriverse plant`` (:class:`industriverse.operate.plant.EmulatedPlant`): thermal
capacities and conductances scaled by ``1 ± 20 %`` (``--mismatch``), the constraint's process
noise and Ornstein–Uhlenbeck forecast error, 1-minute control steps.  Per seed the plant,
its parameters and every noise draw are the same for every controller (the random draws do
not depend on the inputs: common random numbers).  Controllers:

* ``baseline`` — the site's own controller (the constraint's ``baseline``), all the time;
* ``day-ahead`` — a 24 h plan made at midnight from the estimated state with the planning
  model and the forecast, executed by its tracking law fed the Kalman estimate (what a
  daily strike deploys today: re-planning once a day);
* ``RH 60 min`` / ``RH 15 min`` — the live loop: the same plan re-made every 60 / 15 minutes
  of plant time over a 24 h horizon rolled to now, from the estimated state, with the
  model's missing heat learned from the filter's innovations
  (:class:`industriverse.operate.live.ModelBias`, offset-free receding horizon; the day-ahead
  plan gets it too, once a day), the filter predicting with that learned heat and the tracking
  law completed by the feedforward of the heat the plan did not foresee
  (:func:`industriverse.operate.live.feedforward`), as ``industriverse operate`` does;
  ``RH 15 min, no feedforward``: the learned heat in the plans only (the filter and the
  dispatch without it: the live loop before issue 13b); ``RH 15 min, no offset correction``
  without any of it;
* ``oracle`` — one plan over the whole run with the *true* plant parameters and the
  *realised* disturbances (the only uncertainty left is the process noise), executed by its
  tracking law on the measured state.

Each plan is what the optimizer worker makes of a strike request (``workers.optimizer.plan_for``:
the envelope tightened by the noise back-off, dropped only when it is infeasible; method
``auto`` except cold storage, where the sequential LP replaces IDF for speed); the simulate
and shield stages of a strike are not run here.  The estimator is the live loop's
(:class:`industriverse.model.estimate.StateEstimator`, process noise at least 0.5 per √h,
measurement noise 0.05).

Figures: energy cost (the constraint's tariff, export credited, demand charge if any),
imported energy (kWh), continuous discomfort (K·h outside the comfort band, summed over the
banded thermal nodes, at every control step), envelope violations (plan-step instants with a
banded node — temperature or state of charge — outside its envelope) and the share of the
oracle's saving over the baseline each controller captures, ``(cost_base − cost) /
(cost_base − cost_oracle)``, from the summed costs over seeds.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from industriverse.errors import Infeasible  # noqa: E402
from industriverse.model.estimate import StateEstimator  # noqa: E402
from industriverse.model.mapping import map_constraint  # noqa: E402
from industriverse.operate.live import DEFAULT_MEASUREMENT_NOISE, DEFAULT_MODEL_ERROR, ModelBias, feedforward  # noqa: E402
from industriverse.operate.plant import EmulatedPlant, mismatched_constraint, with_horizon  # noqa: E402
from industriverse.plan.optimize import optimize  # noqa: E402
from industriverse.plan.tracking import PlanTracking, noise_backoff, substep_model  # noqa: E402

EXAMPLES = {"hvac": "hvac_testcase1.json", "cold_storage": "cold_storage_display_case.json",
            "microgrid": "microgrid_pv_battery.json"}
METHOD = {"cold_storage": "lp"}
CONTROLLERS = ("baseline", "day-ahead", "RH 60 min", "RH 15 min", "RH 15 min, no feedforward",
               "RH 15 min, no offset correction", "oracle")
EVERY = {"day-ahead": 24 * 60, "RH 60 min": 60, "RH 15 min": 15, "RH 15 min, no feedforward": 15,
         "RH 15 min, no offset correction": 15}
LOOKAHEAD_H = 24.0
BACKOFF = {"k": 1.0}  # envelope back-off of the plans in noise back-offs (the strikes' default --backoff_factor 1)


def plan(domain: str, raw: dict, seed: int = 0):
    """(problem, u) as the optimizer worker plans a strike request (back-off, dropped if infeasible)."""
    problem = map_constraint(domain, raw, base_dir=ROOT / "examples")
    method = METHOD.get(domain, "auto")
    try:
        doc = optimize(problem.with_backoff(noise_backoff(problem, BACKOFF["k"])), method=method, seed=seed)
    except Infeasible:
        doc = optimize(problem, method=method, seed=seed)
    u = np.column_stack([np.asarray(doc["plan"][a], dtype=float) for a in problem.actuators])
    return problem, u


def run_controller(name: str, domain: str, raw: dict, true_raw: dict, days: float, seed: int,
                   realised: np.ndarray | None = None) -> dict:
    """Run one controller on the emulated site; per control step: power (kW) and true states."""
    run_raw = with_horizon(true_raw, hours=24 * days)
    plant = EmulatedPlant(map_constraint(domain, run_raw, base_dir=ROOT / "examples"), seed=seed)
    nominal = map_constraint(domain, raw, base_dir=ROOT / "examples")
    q = np.maximum(np.asarray(nominal.process_noise, dtype=float), DEFAULT_MODEL_ERROR)
    bias = ModelBias(nominal.network) if name in EVERY and "no offset" not in name else None
    # offset-free: the filter predicts with the missing heat it has learned (disturbance observer)
    offset_free = bias is not None and "no feedforward" not in name
    net = bias.network(raw, nominal.network, domain, ROOT / "examples") if offset_free else nominal.network
    est = StateEstimator(net, process_noise=dict(zip(nominal.nodes, map(float, q))),
                         measurement_noise=DEFAULT_MEASUREMENT_NOISE)
    est.update(dict(zip(nominal.nodes, map(float, plant.measured()))))
    steps, h = plant.steps, plant.h
    power, states, solves = np.zeros(steps), np.zeros((steps + 1, nominal.n)), 0
    states[0] = plant.x
    tracker, t_plan, last = None, None, None
    seconds = time.perf_counter()
    if name == "oracle":
        oracle_raw = copy.deepcopy(run_raw)
        S = plant.model.S
        per_step = realised.reshape(-1, S, realised.shape[1]).mean(axis=1)  # realised, averaged over each plan step
        names = plant.problem.network.disturbance_names
        oracle_raw["disturbances"] = {d: {"type": "series", "values": [float(v) for v in per_step[:, i]]}
                                      for i, d in enumerate(names)}
        oracle_raw.setdefault("uncertainty", {})["forecast_error"] = {}
        k, BACKOFF["k"] = BACKOFF["k"], 1.0
        try:
            problem, u = plan(domain, oracle_raw, seed)
        finally:
            BACKOFF["k"] = k
        tracker, t_plan, solves = PlanTracking(problem, u), plant.problem.start, 1
        tracker.start(1)
    for j in range(steps):
        t = plant.time_at(j)
        if name in EVERY and (last is None or t - last >= timedelta(minutes=EVERY[name])):
            x0 = est.mean
            req = with_horizon(raw, start=t, hours=LOOKAHEAD_H)
            req["initial_state"] = {nd.name: (min(max(float(v), 0.0), nd.capacity_kwh) if nd.is_storage else float(v))
                                    for nd, v in zip(nominal.network.nodes, x0)}
            if bias is not None:
                req = bias.apply(req, nominal.network)
            try:
                problem, u = plan(domain, req, seed)
                tracker, t_plan = PlanTracking(problem, u), t
                tracker.start(1)
                solves += 1
            except (Infeasible, RuntimeError):  # RuntimeError: the LP solver gave up (a failed strike)
                pass  # keep executing the plan in force (or the baseline)
            last = t
        u_cmd = None
        if tracker is not None:
            jj = int(round((t - t_plan).total_seconds() / h))
            if jj < tracker.plan.shape[0] * tracker.model.S:
                x_for = plant.measured() if name == "oracle" else est.mean
                u_cmd = tracker(jj, x_for[None, :], plant.disturbances_now()[None, :])[0]
                if offset_free:
                    k = jj // tracker.model.S
                    u_cmd = u_cmd + feedforward(nominal.network, tracker.problem, k, plant.disturbances_now(),
                                                bias.now_kw())
                    kk = min(k, tracker.problem.H - 1)
                    u_cmd = np.clip(u_cmd, tracker.problem.u_lo[kk], tracker.problem.u_hi[kk])
        reading = plant.step(u_cmd)
        used = bias.filter_inputs() if offset_free else {}
        est.predict(h, u=reading["actuators"], d={**reading["disturbances"], **used})
        prior = est.mean
        est.update(reading["nodes"])
        if bias is not None:
            bias.update(dict(zip(nominal.nodes, est.mean - prior)), h,
                        {k[len("model_bias_"):]: v for k, v in used.items()})
        power[j] = reading["power_kw"]
        states[j + 1] = plant.x
    return {"power": power, "states": states, "solves": solves, "seconds": time.perf_counter() - seconds}


def realised_disturbances(domain: str, true_raw: dict, days: float, seed: int) -> np.ndarray:
    """The disturbances the plant will realise (control steps × n_d): the draws do not depend on the inputs."""
    plant = EmulatedPlant(map_constraint(domain, with_horizon(true_raw, hours=24 * days), base_dir=ROOT / "examples"),
                          seed=seed)
    out = np.zeros((plant.steps, len(plant.problem.network.disturbance_names)))
    for j in range(plant.steps):
        out[j] = plant.disturbances_now()
        plant.step(None)
    return out


def figures(domain: str, raw: dict, days: float, run: dict) -> dict:
    """Cost, energy, discomfort and violations of one run against the client's constraint."""
    p = map_constraint(domain, with_horizon(raw, hours=24 * days), base_dir=ROOT / "examples")
    S = substep_model(p).S
    h_h = p.dt_h / S
    power = run["power"]
    k = np.arange(len(power)) // S
    cost = float(np.sum((p.price[k] * np.maximum(power, 0) - p.export_price[k] * np.maximum(-power, 0)) * h_h))
    peak = float(power.reshape(-1, S).mean(axis=1).max()) if p.demand_charge else 0.0
    cost += p.demand_charge * peak
    x = run["states"][1:]
    rows = np.maximum(np.arange(1, len(power) + 1) // S, 1)
    rows = np.minimum(rows, p.H)
    lo, hi = p.x_lo[rows], p.x_hi[rows]
    out_by = np.nan_to_num(np.maximum(lo - x, 0) + np.maximum(x - hi, 0))
    thermal = p.thermal & p.banded
    discomfort = float(out_by[:, thermal].sum() * h_h)
    at_steps = out_by[S - 1::S][:, p.banded]
    return {"cost": cost, "energy_kwh": float(np.sum(np.maximum(power, 0)) * h_h), "discomfort_kh": discomfort,
            "violations": int((at_steps > 1e-6).any(axis=1).sum()), "steps": int(at_steps.shape[0])}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=float, default=2.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--mismatch", type=float, default=0.2)
    ap.add_argument("--domains", nargs="+", default=list(EXAMPLES), choices=list(EXAMPLES))
    ap.add_argument("--controllers", nargs="+", default=list(CONTROLLERS), choices=list(CONTROLLERS))
    ap.add_argument("--backoff", type=float, default=1.0, metavar="K",
                    help="plans' envelope back-off in noise back-offs (default 1, as a strike); the oracle keeps 1")
    ap.add_argument("--json", metavar="FILE", default=None)
    args = ap.parse_args(argv)
    results: dict = {}
    for domain in args.domains:
        raw = json.loads((ROOT / "examples" / EXAMPLES[domain]).read_text())
        totals = {c: {"cost": 0.0, "energy_kwh": 0.0, "discomfort_kh": 0.0, "violations": 0, "steps": 0, "solves": 0,
                      "seconds": 0.0} for c in args.controllers}
        for seed in args.seeds:
            true_raw, _ = mismatched_constraint(domain, raw, args.mismatch, seed, base_dir=ROOT / "examples")
            realised = realised_disturbances(domain, true_raw, args.days, seed) if "oracle" in args.controllers else None
            for c in args.controllers:
                BACKOFF["k"] = args.backoff
                run = run_controller(c, domain, raw, true_raw, args.days, seed, realised)
                f = figures(domain, raw, args.days, run)
                for key in f:
                    totals[c][key] += f[key]
                totals[c]["solves"] += run["solves"]
                totals[c]["seconds"] += run["seconds"]
                print(f"# {domain} seed {seed} {c}: cost {f['cost']:.3f}, {f['energy_kwh']:.2f} kWh, "
                      f"{f['discomfort_kh']:.3f} K·h, {f['violations']} violations, {run['seconds']:.1f} s", file=sys.stderr)
        results[domain] = totals
    print(f"\n{len(args.seeds)} seed(s) × {args.days:g} days per domain, plant mismatch ±{args.mismatch:.0%}, "
          f"forecast error of the constraint, plans' back-off ×{args.backoff:g}; figures summed over seeds\n")
    print("| domain | controller | cost | energy kWh | discomfort K·h | violations (steps) | share of the oracle's saving | plans |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for domain, totals in results.items():
        base = totals.get("baseline", {}).get("cost")
        oracle = totals.get("oracle", {}).get("cost")
        for c, t in totals.items():
            share = "—"
            if base is not None and oracle is not None and c not in ("baseline", "oracle") and abs(base - oracle) > 1e-9:
                share = f"{100 * (base - t['cost']) / (base - oracle):.1f} %"
            print(f"| {domain} | {c} | {t['cost']:.3f} | {t['energy_kwh']:.2f} | {t['discomfort_kh']:.3f} | "
                  f"{t['violations']} / {t['steps']} | {share} | {t['solves']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
