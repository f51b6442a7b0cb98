"""The value of a strike: what the plan saves against the baseline, how robust it is, and
the honest sentences that say so (DESIGN.md §4 "value.json", §5 "KPIs", "Stability score").

Savings are **paired**: the simulator runs plan and baseline on the same noise draws
(common random numbers), so trajectory *i* of the plan and trajectory *i* of the baseline
saw the same weather, load and sensor noise.  Every saving is computed per trajectory as
``baseline_i − plan_i`` and summarised by its mean and a two-sided 95 % Student-t interval
(:func:`industriverse.verify.stats.t_interval`).  A saving is *significant* when its interval excludes zero.

The stability score is recomputed here from the violation counts: the one-sided 95 %
Clopper–Pearson lower bound (:func:`industriverse.verify.stats.clopper_pearson_lower`) of the probability that a trajectory
stays inside every envelope constraint over the whole horizon.

Units: energy kWh, power kW, emissions kg CO2, cost in the tariff's currency, discomfort
K·h, percentages in % (0–100).

Every number a report shows goes through :func:`format_number` / :func:`format_figure`, so
Markdown, HTML, PDF and the ``display`` strings of value.json print the same digits.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from industriverse.errors import BadInput
from industriverse.model.canonical import required_field as _need
from industriverse.verify.stats import clopper_pearson_lower, clopper_pearson_upper, t_interval

VALUE_VERSION = 1
INTERVAL_LEVEL = 0.95
STABILITY_CONFIDENCE = 0.95
STABILITY_DEFINITION = (
    "one-sided 95% Clopper–Pearson lower bound of P(every envelope constraint holds over the whole horizon)"
)
PCT_DEFINITION = "100 × energy_saved_kwh / the baseline's mean energy (kWh); the interval is scaled likewise"

# KPI of the simulation -> (value.json field, unit label; None = the currency)
SAVINGS = {
    "energy_kwh": ("energy_saved_kwh", "kWh"),
    "cost": ("cost_saved", None),
    "emissions_kg": ("emissions_saved_kg", "kg CO2"),
    "peak_kw": ("peak_reduction_kw", "kW"),
}
# what "shifting consumption in time" means in each domain kind (for the opposite-sign explanation)
SHIFT_WORDS = {
    "hvac": "pre-heating the building before the price peak",
    "cold_storage": "pre-cooling the goods before the price peak",
    "microgrid": "charging the battery when power is cheap and discharging it at the price peak",
}


# --- statistics ------------------------------------------------------------------------
def paired_savings(baseline: np.ndarray, plan: np.ndarray, level: float = INTERVAL_LEVEL) -> dict:
    """Mean and two-sided Student-t interval of ``baseline − plan`` over paired trajectories.

    ``baseline``, ``plan``: (N,) per-trajectory values of one KPI on the same noise draws.
    Returns ``{mean, ci95: [lo, hi], significant, std, n}``; ``significant`` is True when the
    interval excludes zero.  With a single trajectory or zero spread the interval is the mean.
    """
    baseline = np.asarray(baseline, dtype=float)
    plan = np.asarray(plan, dtype=float)
    saved = baseline - plan
    n = saved.size
    mean = float(saved.mean())
    std = float(saved.std(ddof=1)) if n > 1 else 0.0
    lo, hi = t_interval(saved, level)
    return {"mean": mean, "ci95": [lo, hi], "significant": bool(lo > 0 or hi < 0), "std": std, "n": int(n)}


def ensemble_needed(limit: float, confidence: float) -> int:
    """Smallest ensemble whose Clopper–Pearson upper bound can fall to ``limit`` (with no violation at all)."""
    # upper bound with zero failures is 1 − (1 − confidence)^(1/N)
    return int(math.ceil(math.log(1.0 - confidence) / math.log(1.0 - limit)))


# --- formatting: the one place numbers become text ---------------------------------------
# Nothing a client reads needs more: 0.0001 kWh, USD, kg or K·h is below any meter's resolution.
MAX_DECIMALS = 4

def _decimals(x: float, significant: int) -> int:
    return max(0, _place(x, significant))


def _place(x: float, significant: int) -> int:
    """Decimal place that keeps ``significant`` digits of ``x``; negative = round to tens, hundreds, ..."""
    if x == 0 or not math.isfinite(x):
        return 0
    return significant - 1 - int(math.floor(math.log10(abs(x))))


def format_number(x: float | None, decimals: int | None = None, significant: int = 3) -> str:
    """``x`` as text: ``decimals`` places, or ``significant`` significant digits (at least the integer part,
    trailing zeros dropped, at most :data:`MAX_DECIMALS` places, so 0.00000429 prints as 0).

    ASCII minus sign; never "-0"; thousands are not grouped (so the text is easy to search).
    """
    if x is None:
        return "n/a"
    x = float(x)
    if not math.isfinite(x):
        return "n/a"
    d = min(_decimals(x, significant), MAX_DECIMALS) if decimals is None else min(decimals, 8)
    if d < 0:  # rounded to tens, hundreds, ...: keep only the digits the interval supports
        x, d = round(x, d), 0
    text = f"{x:.{d}f}"
    if decimals is None and "." in text:  # free-standing number: no trailing zeros (0.05, not 0.0500)
        text = text.rstrip("0").rstrip(".")
    if float(text) == 0.0:
        text = text.lstrip("-")
        if decimals is not None and decimals > 2:  # nothing there: '0', not '0.0000'
            text = "0"
    return text


def figure_decimals(fig: dict) -> int:
    """Decimals a figure's interval supports: at most 3 significant digits on the largest of mean and
    bounds, and no more than 2 significant digits of the interval's half-width (so ``0.527 (0.526 to
    0.528)``, never ``0.5271 (0.5261 to 0.5281)``); never more than :data:`MAX_DECIMALS`."""
    lo, hi = fig["ci95"]
    half = (hi - lo) / 2.0
    d = _place(max(abs(fig["mean"]), abs(lo), abs(hi)), 3)
    if half > 0:
        d = min(d, _place(half, 2))
    return min(d, MAX_DECIMALS)  # negative: 1770 (1800 to 1740), not 1770 (1796 to 1745)


def format_figure(fig: dict, unit: str, *, scale: float = 1.0) -> dict[str, str]:
    """The display strings of a figure: ``{mean, lo, hi, text}``, e.g. text = '12.3 kWh (95% CI 10.1 to 14.5)'.

    ``scale`` multiplies every number first (e.g. -1 to show an increase as a positive amount).
    """
    d = figure_decimals(fig)
    mean = format_number(scale * fig["mean"], d)
    lo, hi = sorted((scale * fig["ci95"][0], scale * fig["ci95"][1]))
    lo_s, hi_s = format_number(lo, d), format_number(hi, d)
    unit_s = f" {unit}" if unit else ""
    return {"mean": mean, "lo": lo_s, "hi": hi_s, "text": f"{mean}{unit_s} (95% CI {lo_s} to {hi_s}{unit_s})"}


def spread_decimals(summary: dict) -> int:
    """Decimals for an ensemble summary ``{mean, p5, p95}``: 3 significant digits of the largest."""
    values = [summary["mean"], summary["p5"], summary["p95"]]
    return min(_decimals(max(abs(v) for v in values), 3), MAX_DECIMALS)


def format_spread(summary: dict) -> str:
    """An ensemble summary as 'mean; 5–95 %: p5 to p95' (one number of decimals for all three).

    The mean is not put in brackets with the percentiles: for a skewed KPI (a few trajectories
    with discomfort, most with none) the mean lies outside its own 5–95 % range."""
    d = spread_decimals(summary)
    return f"{format_number(summary['mean'], d)}; 5–95 %: {format_number(summary['p5'], d)} to {format_number(summary['p95'], d)}"


def format_probability(p: float | None) -> str:
    """A probability (0–1) with 3 decimals, e.g. '0.942'."""
    return format_number(p, 3)


def format_percent(fraction: float | None) -> str:
    """A fraction as a percentage: 2 significant digits, 1 or 2 decimals, e.g. '0.37 %', '10.5 %'."""
    if fraction is None:
        return "n/a"
    pct = 100.0 * float(fraction)
    return f"{format_number(pct, min(2, max(1, _decimals(pct, 2))))} %"


# --- reading the run's documents ---------------------------------------------------------


def _per_trajectory(sim: dict, side: str, kpi: str) -> np.ndarray:
    values = _need(sim, f"{side}.per_trajectory.{kpi}", "simulation.json")
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)):
        raise BadInput("simulation.json", f"{side}.per_trajectory.{kpi}", "must be a non-empty list of finite numbers")
    return arr


def _kpi_summary(sim: dict, side: str, kpi: str) -> dict:
    arr = _per_trajectory(sim, side, kpi)
    return {"mean": float(arr.mean()), "p5": float(np.percentile(arr, 5)), "p95": float(np.percentile(arr, 95))}


def _shield(run: dict) -> dict | None:
    """``{passed, checks}`` from verdict.json, else from the proof's shield section."""
    for source in (run.get("verdict"), (run.get("proof") or {}).get("shield")):
        if isinstance(source, dict) and isinstance(source.get("passed"), bool):
            checks = [
                {k: c.get(k) for k in ("name", "value", "limit", "margin", "passed")}
                | ({"detail": c["detail"]} if c.get("detail") else {})
                for c in source.get("checks") or [] if isinstance(c, dict)
            ]
            return {"passed": source["passed"], "checks": checks}
    return None


def _deployment(run: dict) -> dict | None:
    dep = run.get("deployment") or {}
    manifest = run.get("manifest") or {}
    activity_id = dep.get("activity_id") or dep.get("deployed_activity_id")
    capsule_id = dep.get("capsule_id") or manifest.get("id") or manifest.get("dac_id")
    if not activity_id and not capsule_id:
        return None
    return {"activity_id": activity_id, "capsule_id": capsule_id,
            "capsule_version": dep.get("version") or manifest.get("version")}


def _proof_summary(proof: dict | None) -> dict | None:
    if not isinstance(proof, dict):
        return None
    sig = proof.get("signature") or {}
    return {
        "strike_id": proof.get("strike_id"),
        "inputs_sha256": proof.get("inputs_sha256"),
        "plan_sha256": proof.get("plan_sha256"),
        "signature_algorithm": sig.get("algorithm"),
        "signature_key_id": sig.get("key_id"),
        "code_version": proof.get("code_version"),
        "created_at": proof.get("created_at"),
    }


# --- what the engineer could relax --------------------------------------------------------
def relaxation_advice(check: dict, value: dict) -> str:
    """One sentence: what the engineer could relax so that the failed ``check`` can pass.

    Matched on the shield's check names (envelope, actuator_limits, ramp_limits,
    chance_constraint, energy_budget, peak_budget, first_law, second_law_*,
    optimizer_feasible, domain.*); numbers come from the check itself.
    """
    name = str(check.get("name", "")).lower()
    v, lim = check.get("value"), check.get("limit")
    num = lambda x: isinstance(x, (int, float)) and not isinstance(x, bool)
    n = value.get("ensemble_size") or 0
    conf = value.get("confidence") or STABILITY_CONFIDENCE
    if "chance" in name or "violation" in name:
        advice = ((f"raise uncertainty.max_violation_probability to at least {format_number(v)}, " if num(v) else
                   "raise uncertainty.max_violation_probability, ")
                  + "widen the band, or re-plan with a larger envelope back-off (a more conservative plan)")
        if num(lim) and 0 < lim < 1 and n:
            floor = 1.0 - (1.0 - conf) ** (1.0 / n)
            if floor > lim:
                advice = (f"raise uncertainty.ensemble_size to at least {ensemble_needed(lim, conf)}: with {n} "
                          f"trajectories even zero violations give an upper bound of {format_number(floor)}, above the "
                          f"limit {format_number(lim)}; or " + advice)
        return advice
    if name == "envelope" or "band" in name:
        return ("widen the band (envelope.<node>.min/max) where the planned trajectory leaves it, "
                "or allow more actuator power (actuators.<name>.max_kw)")
    if "energy_budget" in name:
        return f"raise budgets.energy_kwh to at least {format_number(v)} kWh" if num(v) else "raise budgets.energy_kwh"
    if "peak_budget" in name:
        return f"raise budgets.peak_kw to at least {format_number(v)} kW" if num(v) else "raise budgets.peak_kw"
    if "grid_import" in name:
        return f"raise the site's import limit (network.site.import_max_kw) to at least {format_number(v)} kW" if num(v) \
            else "raise the site's import limit (network.site.import_max_kw)"
    if "food_safety" in name:
        return ("nothing on food safety can be relaxed: tighten the goods band or allow more compressor power so the "
                "goods stay below the legal limit, or re-plan with a larger back-off")
    if "ramp" in name:
        return "raise actuators.<name>.ramp_kw_per_step, or re-optimize (the plan breaks the ramp limit it was given)"
    if "rating" in name:
        return "lower actuators.<name>.max_kw to the equipment's rating and re-optimize"
    if "actuator" in name:
        return "raise actuators.<name>.max_kw, or re-optimize (the plan breaks the actuator limits it was given)"
    if "optimizer" in name or "feasib" in name:
        return "widen the band, raise the actuator limits or the budgets until the optimizer finds a feasible plan"
    if "first_law" in name or "balance" in name:
        return "relax nothing: the energy balance does not close, so the model or the plan is inconsistent; check the network data"
    if "second_law" in name or "carnot" in name or "cop" in name:
        return "relax nothing: a physical law is broken; check the COP model and the network data"
    vs = f" ({format_number(v)} against the limit {format_number(lim)})" if num(v) and num(lim) else ""
    return f"review the check '{check.get('name')}'{vs}" + (f": {check['detail']}" if check.get("detail") else "")


# --- the figures --------------------------------------------------------------------------
def compute_value(run: dict) -> dict:
    """The value.json of a run.

    ``run`` holds the run's documents as dicts: ``optimization`` and ``simulation``
    (required; the simulation made with the plan), and when present ``verdict``, ``proof``,
    ``manifest`` (capsule/manifest.yaml), ``deployment`` ({activity_id, capsule_id}),
    ``request`` and ``strike_id``.  Missing required fields raise :class:`BadInput`.

    Returns a JSON-ready dict: the savings (``energy_saved_kwh``, ``energy_saved_pct``,
    ``cost_saved``, ``emissions_saved_kg``, ``peak_reduction_kw``: each {mean, ci95,
    significant, ...}), ``kpis`` of both sides, ``discomfort_kh``, ``stability_score``,
    ``violation_probability``, ``optimizer``, ``shield``, ``deployment``, ``proof``,
    ``outcome`` (deployed | rejected | verified | unverified), ``currency``, ``relax``
    (advice when rejected), ``display`` (the formatted headline strings) and ``summary``
    (:func:`summary_sentences`).
    """
    opt = run.get("optimization")
    sim = run.get("simulation")
    if not isinstance(opt, dict):
        raise BadInput("optimization.json", None, "is missing from the run")
    if not isinstance(sim, dict):
        raise BadInput("simulation.json", None, "is missing from the run")
    if not isinstance(sim.get("plan"), dict):
        raise BadInput("simulation.json", "plan", "is missing: the value report needs the simulation of a plan (simulate with --plan)")
    _need(sim, "baseline", "simulation.json")

    sizes = {len(_per_trajectory(sim, side, "energy_kwh")) for side in ("plan", "baseline")}
    if len(sizes) != 1:
        raise BadInput("simulation.json", "per_trajectory", "plan and baseline have different ensemble sizes: they cannot be paired")
    n = sizes.pop()
    request = run.get("request") or opt.get("request") or sim.get("request") or {}
    currency = ((opt.get("objective") or {}).get("currency") or (request.get("tariff") or {}).get("currency") or "USD")

    value: dict[str, Any] = {
        "value_version": VALUE_VERSION,
        "strike_id": run.get("strike_id") or (run.get("proof") or {}).get("strike_id"),
        "domain": opt.get("domain") or sim.get("domain"),
        "kind": opt.get("kind") or sim.get("kind"),
        "client": request.get("client"),
        "currency": currency,
        "horizon": {k: (opt.get("horizon") or {}).get(k) for k in ("start", "steps", "step_minutes")},
        "ensemble_size": int(n),
        "seed": sim.get("seed"),
        "confidence": float(sim.get("confidence") or STABILITY_CONFIDENCE),
        "interval": f"two-sided {int(INTERVAL_LEVEL * 100)}% Student-t interval of the per-trajectory paired savings (baseline − plan, same noise draws)",
    }

    for kpi, (field, _unit) in SAVINGS.items():
        value[field] = paired_savings(_per_trajectory(sim, "baseline", kpi), _per_trajectory(sim, "plan", kpi))
    base_energy = float(_per_trajectory(sim, "baseline", "energy_kwh").mean())
    e = value["energy_saved_kwh"]
    if base_energy > 0:
        value["energy_saved_pct"] = {
            "mean": 100.0 * e["mean"] / base_energy,
            "ci95": [100.0 * e["ci95"][0] / base_energy, 100.0 * e["ci95"][1] / base_energy],
            "significant": e["significant"],
            "baseline_mean_kwh": base_energy,
            "definition": PCT_DEFINITION,
        }
    else:  # a baseline that imports nothing has no percentage to save
        value["energy_saved_pct"] = {"mean": None, "ci95": [None, None], "significant": False,
                                     "baseline_mean_kwh": base_energy, "definition": PCT_DEFINITION}

    value["kpis"] = {
        kpi: {side: _kpi_summary(sim, side, kpi) for side in ("plan", "baseline")}
        for kpi in ("energy_kwh", "cost", "emissions_kg", "peak_kw", "discomfort_kh")
        if kpi in (sim["plan"].get("per_trajectory") or {}) and kpi in (sim["baseline"].get("per_trajectory") or {})
    }
    value["discomfort_kh"] = {side: value["kpis"].get("discomfort_kh", {}).get(side) for side in ("plan", "baseline")}
    # average price paid per imported kWh: the number behind "the plan shifts load to cheaper hours"
    value["average_price_per_kwh"] = {
        side: (value["kpis"]["cost"][side]["mean"] / value["kpis"]["energy_kwh"][side]["mean"]
               if value["kpis"]["energy_kwh"][side]["mean"] > 0 else None)
        for side in ("plan", "baseline")
    }

    # stability score and chance constraint, recomputed from the violation counts
    violations = {side: _need(sim, f"{side}.violations.count", "simulation.json") for side in ("plan", "baseline")}
    for side, count in violations.items():
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= n:
            raise BadInput("simulation.json", f"{side}.violations.count", f"must be between 0 and the ensemble size {n}, got {count}")
    reported = {side: ((sim[side].get("stability_score") or {}).get("value")) for side in ("plan", "baseline")}
    value["stability_score"] = {
        "plan": clopper_pearson_lower(n - violations["plan"], n, STABILITY_CONFIDENCE),
        "baseline": clopper_pearson_lower(n - violations["baseline"], n, STABILITY_CONFIDENCE),
        "definition": STABILITY_DEFINITION,
        "confidence": STABILITY_CONFIDENCE,
        "ensemble_size": int(n),
        "violating_trajectories": violations,
        "simulation_reported": reported,
    }
    limit = ((sim["plan"].get("violation_probability") or {}).get("limit")
             or (request.get("uncertainty") or {}).get("max_violation_probability"))
    value["violation_probability"] = {
        side: {
            "estimate": violations[side] / n,
            "upper": clopper_pearson_upper(violations[side], n, value["confidence"]),
            "confidence": value["confidence"],
        }
        for side in ("plan", "baseline")
    }
    value["violation_probability"]["limit"] = limit

    value["tariff"] = tariff_summary(opt)
    value["optimizer"] = {
        "method": opt.get("method"),
        "cost": (opt.get("objective") or {}).get("cost"),
        "lower_bound": opt.get("lower_bound"),
        "lower_bound_method": opt.get("lower_bound_method"),
        "gap": opt.get("gap"),
        "feasible": opt.get("feasible"),
        "seconds": (opt.get("stats") or {}).get("seconds"),
    }

    shield = _shield(run)
    deployment = _deployment(run)
    value["shield"] = shield
    value["deployment"] = deployment
    value["proof"] = _proof_summary(run.get("proof"))
    if deployment and deployment.get("activity_id"):
        value["outcome"] = "deployed"
    elif shield is not None and not shield["passed"]:
        value["outcome"] = "rejected"
    elif shield is not None:
        value["outcome"] = "verified"
    else:
        value["outcome"] = "unverified"
    value["relax"] = []
    if shield is not None and not shield["passed"]:
        value["relax"] = [{"check": c["name"], "advice": relaxation_advice(c, value)} for c in shield["checks"] if not c["passed"]]

    hours = horizon_hours(value)
    if hours:
        for key, factor in (("per_day", 24.0 / hours), ("per_year", 24.0 * 365.0 / hours)):
            value[key] = {field: scaled_figure(value[field], factor) for field in ("cost_saved", "energy_saved_kwh", "emissions_saved_kg")}
        value["extrapolation"] = (f"the horizon's savings × 24 h / {format_number(hours)} h per day, × 365 per year: "
                                  "as if every day followed this day's pattern (weather, tariff, occupancy)")
    value["display"] = display_strings(value)
    value["headline"] = headline_sentence(value)
    value["summary"] = summary_sentences(value)
    return value


def tariff_summary(opt: dict) -> dict | None:
    """The tariff's charges that the savings table does not show on their own, from the plan's
    objective: a URDB rate's demand charges (each demand period's planned peak and rate; their
    cost is inside every cost figure) and its fixed charge.

    The fixed charge is stated **per month, as the utility bills it, not prorated** to the
    horizon: no plan changes it, so it is in none of the costs or savings (plan and baseline pay
    it alike).  ``None`` when the tariff has neither.
    """
    obj = opt.get("objective") or {}
    fixed = obj.get("fixed_monthly_charge") or 0.0
    demand = [d for d in obj.get("demand_charges") or [] if isinstance(d, dict)]
    if not fixed and not demand:
        return None
    return {"name": obj.get("tariff") or "", "fixed_monthly_charge": float(fixed), "fixed_charge_basis": "per month, not prorated",
            "demand_charges": demand}


def horizon_hours(value: dict) -> float | None:
    """Length of the planning horizon (h), or None when the run does not say."""
    hz = value.get("horizon") or {}
    if hz.get("steps") and hz.get("step_minutes"):
        return float(hz["steps"]) * float(hz["step_minutes"]) / 60.0
    return None


def scaled_figure(fig: dict, factor: float) -> dict:
    """A saving figure (mean, ci95, significant) multiplied by ``factor`` (e.g. per horizon → per day)."""
    if fig.get("mean") is None:
        return {"mean": None, "ci95": [None, None], "significant": False}
    return {"mean": fig["mean"] * factor, "ci95": [fig["ci95"][0] * factor, fig["ci95"][1] * factor],
            "significant": fig["significant"]}


# (value.json field, unit; None = the currency, verb for a saving, verb for a loss, what is not significant)
HEADLINE_FIGURES = (
    ("cost_saved", None, "saves {x}", "costs {x} more", "the cost"),
    ("energy_saved_kwh", "kWh", "saves {x}", "uses {x} more", "the energy"),
    ("emissions_saved_kg", "kg CO2", "avoids {x}", "emits {x} more", "the emissions"),
)


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _clauses(parts: list[tuple[str, str]]) -> str:
    """``[(verb template, amount)]`` as one clause list, amounts of the same verb sharing it:
    'saves 1 USD and 2 kWh, and avoids 3 kg CO2'."""
    groups: list[tuple[str, list[str]]] = []
    for verb, amount in parts:
        if groups and groups[-1][0] == verb and "{x}" in verb and verb.endswith("{x}"):
            groups[-1][1].append(amount)
        else:
            groups.append((verb, [amount]))
    texts = [verb.format(x=" and ".join(amounts)) for verb, amounts in groups]
    return texts[0] if len(texts) == 1 else ", ".join(texts[:-1]) + ", and " + texts[-1]


def headline_sentence(value: dict) -> str:
    """The report's first sentence, in plain words: what the plan saves (or loses) per day in money,
    kWh and kg CO2 with the 95 % interval, and per year at this pattern."""
    per_day, per_year = value.get("per_day"), value.get("per_year")
    scope, source = ("per day", per_day) if per_day else ("over the horizon", value)
    day_parts, year_parts = [], []
    for field, unit, gain, loss, what in HEADLINE_FIGURES:
        fig = source[field]
        if fig.get("mean") is None:
            continue
        unit = unit or value["currency"]
        if not fig["significant"]:
            f = format_figure(fig, unit)
            day_parts.append((f"makes no significant difference to {what} (95% CI {f['lo']} to {f['hi']} {unit})", ""))
            continue
        sign = 1.0 if fig["mean"] > 0 else -1.0
        f = format_figure(fig, unit, scale=sign)
        verb = gain if sign > 0 else loss
        day_parts.append((verb, f"{f['mean']} {unit} (95% CI {f['lo']} to {f['hi']})"))
        if per_year:
            y = format_figure(per_year[field], unit, scale=sign)
            year_parts.append((verb, f"{y['mean']} {unit}"))
    text = f"{scope.capitalize()}, the plan {_clauses(day_parts)} against the baseline controller"
    if year_parts:
        text += f"; over a year at this pattern it {_clauses(year_parts)}"
    return text + "."


def display_strings(value: dict) -> dict[str, str]:
    """The headline figures as text (the same strings every report format prints)."""
    cur = value["currency"]
    out = {}
    for field, unit in (("energy_saved_kwh", "kWh"), ("cost_saved", cur), ("emissions_saved_kg", "kg CO2"),
                        ("peak_reduction_kw", "kW")):
        out[field] = format_figure(value[field], unit)["text"]
    pct = value["energy_saved_pct"]
    out["energy_saved_pct"] = format_figure(pct, "%")["text"] if pct["mean"] is not None else "n/a"
    s = value["stability_score"]
    out["stability_score_plan"] = format_probability(s["plan"])
    out["stability_score_baseline"] = format_probability(s["baseline"])
    return out


# --- honest wording -------------------------------------------------------------------------
def _saving_sentence(label: str, fig: dict, unit: str, *, gain: str, loss: str, extra: str = "",
                     extra_loss: str | None = None) -> str:
    """One sentence for one paired saving: its number, its interval and whether it is significant.

    ``gain`` / ``loss`` are templates with ``{x}`` (the amount with its unit), e.g.
    "saves {x}" / "uses {x} more than the baseline".
    """
    f = format_figure(fig, unit)
    neg = format_figure(fig, unit, scale=-1.0)
    interval = f"95% CI of the saving {f['lo']} to {f['hi']} {unit}".rstrip()
    if fig["significant"] and fig["mean"] > 0:
        amount = f"{f['mean']} {unit}".rstrip()
        return (f"{label}: the plan {gain.format(x=amount)}{extra} ({interval}); "
                "the interval excludes zero, so the saving is significant.")
    if fig["significant"] and fig["mean"] < 0:
        amount = f"{neg['mean']} {unit}".rstrip()
        return (f"{label}: the plan {loss.format(x=amount)}{extra if extra_loss is None else extra_loss} ({interval}, entirely below zero): "
                "this is a loss against the baseline, not a saving.")
    return (f"{label}: the saving of {f['mean']} {unit} ({interval}) is not significant: "
            "the interval includes zero, so no saving can be claimed.")


def summary_sentences(value: dict) -> list[str]:
    """The executive summary: plain sentences, each backed by a number of this run.

    States every saving with its interval and whether it is significant; says plainly when a
    saving is negative or not significant; explains energy and cost savings of opposite sign
    (load shifting before a price peak) with the average prices paid; for a rejected plan
    names each failed check (value against limit) and what could be relaxed.
    """
    cur = value["currency"]
    out: list[str] = []
    shield = value.get("shield")
    outcome = value["outcome"]
    n_checks = len(shield["checks"]) if shield else 0

    if outcome == "deployed":
        out.append(f"Deployed: the plan passed all {n_checks} safety checks and is running on site "
                   "(the activity and capsule IDs are in the appendix).")
    elif outcome == "rejected":
        failed = [c for c in shield["checks"] if not c["passed"]]
        parts = []
        for c in failed:
            v, lim = c.get("value"), c.get("limit")
            if isinstance(v, (int, float)) and isinstance(lim, (int, float)):
                parts.append(f"{c['name']} ({format_number(v)} against the limit {format_number(lim)})")
            else:
                parts.append(str(c["name"]))
        out.append(f"Rejected: the shield failed {len(failed)} of {n_checks} checks, so nothing was deployed: "
                   + "; ".join(parts) + ".")
        out.append("The figures below describe the rejected plan; none of its savings will be realised.")
        for item in value.get("relax") or []:
            out.append(f"To pass '{item['check']}', the engineer could {item['advice']}.")
    elif outcome == "verified":
        out.append(f"The plan passed all {n_checks} shield checks, but this run holds no deployment record: it has not been deployed.")
    else:
        out.append("This run holds no shield verdict: the plan has not been verified and must not be deployed on these figures.")

    e, c = value["energy_saved_kwh"], value["cost_saved"]
    pct = value["energy_saved_pct"]
    base_kwh = format_number(pct.get("baseline_mean_kwh"))
    extra = extra_loss = ""
    if pct["mean"] is not None:
        pct_text = format_figure(pct, "", scale=-1.0 if pct["mean"] < 0 else 1.0)["mean"]
        extra = f", {pct_text} % of the baseline's {base_kwh} kWh"
        extra_loss = f" ({pct_text} % above its {base_kwh} kWh)"
    out.append(_saving_sentence("Energy", e, "kWh", gain="saves {x}", loss="uses {x} more than the baseline",
                                extra=extra, extra_loss=extra_loss))
    out.append(_saving_sentence("Cost", c, cur, gain="saves {x}", loss="costs {x} more than the baseline"))

    # energy and cost of opposite sign: show both (done above) and say why
    if e["mean"] * c["mean"] < 0:
        prices = value.get("average_price_per_kwh") or {}
        pp, pb = prices.get("plan"), prices.get("baseline")
        price_text = (f" it pays {format_number(pp)} {cur}/kWh on average against the baseline's {format_number(pb)} {cur}/kWh"
                      if pp is not None and pb is not None else "")
        shift = SHIFT_WORDS.get(value.get("kind") or "", "shifting consumption into cheaper hours")
        caveat = ""
        weak = [name for name, fig in (("energy", e), ("cost", c)) if not fig["significant"]]
        if weak:
            caveat = f" (the {' and '.join(weak)} difference is not significant, so the sign of that one is uncertain)"
        if e["mean"] < 0 < c["mean"]:
            out.append("Energy and cost move in opposite directions: the plan buys more electricity but pays less for it, "
                       f"because it moves consumption into cheaper hours ({shift}), which costs extra losses;"
                       f"{price_text}{caveat}.")
        else:
            out.append("Energy and cost move in opposite directions: the plan uses less electricity but pays more for it, "
                       f"because it consumes at dearer hours than the baseline;{price_text}{caveat}.")

    viol = value["stability_score"]["violating_trajectories"]
    n_traj = value["stability_score"]["ensemble_size"]
    losses = [name for name, fig in (("energy", e), ("cost", c)) if fig["significant"] and fig["mean"] < 0]
    if losses and viol["baseline"] > viol["plan"]:
        out.append(f"The baseline's lower {' and '.join(losses)} is not like for like: it leaves the envelope in "
                   f"{viol['baseline']} of {n_traj} trajectories against the plan's {viol['plan']}; "
                   "the plan pays for keeping the client's constraints.")
    out.append(_saving_sentence("CO2", value["emissions_saved_kg"], "kg", gain="avoids {x} of emissions",
                                loss="emits {x} more than the baseline"))

    kp = value["kpis"].get("peak_kw")
    if kp:
        out.append(_saving_sentence(
            f"Peak power (15-minute mean; plan {format_number(kp['plan']['mean'])} kW, baseline {format_number(kp['baseline']['mean'])} kW)",
            value["peak_reduction_kw"], "kW", gain="lowers the peak by {x}", loss="raises the peak by {x}"))

    s = value["stability_score"]
    n = s["ensemble_size"]
    sentence = (f"Stability score ({s['definition']}, ensemble of {n}): plan {format_probability(s['plan'])}, "
                f"baseline {format_probability(s['baseline'])}; the plan left the envelope in {viol['plan']} of {n} "
                f"trajectories, the baseline in {viol['baseline']}.")
    if s["plan"] < s["baseline"]:
        sentence += " The plan's stability score is lower than the baseline's."
    out.append(sentence)

    vp = value["violation_probability"]
    if vp.get("limit") is not None:
        ok = vp["plan"]["upper"] <= vp["limit"]
        out.append(f"Chance constraint: the plan's violation probability is at most {format_probability(vp['plan']['upper'])} "
                   f"(one-sided {format_number(100 * vp['plan']['confidence'], 0)}% Clopper–Pearson upper bound) against the client's "
                   f"limit of {format_probability(vp['limit'])}: {'met' if ok else 'NOT met'}.")

    d = value.get("discomfort_kh") or {}
    if value.get("kind") != "microgrid" and d.get("plan") and d.get("baseline"):
        out.append(f"Discomfort outside the band (ensemble mean of the time integral of the deviation outside the band in "
                   f"force, BOPTEST's definition): plan {format_number(d['plan']['mean'])} K·h, "
                   f"baseline {format_number(d['baseline']['mean'])} K·h.")

    return out


def optimizer_sentence(value: dict) -> str | None:
    """The optimizer's cost against its proven lower bound, one sentence (for the appendix)."""
    cur = value["currency"]
    o = value["optimizer"]
    if o.get("cost") is not None:
        text = f"Optimizer ({o.get('method')}): planned cost {format_number(o['cost'])} {cur}"
        if o.get("lower_bound") is not None:
            text += (f"; proven lower bound {format_number(o['lower_bound'])} {cur}"
                     + (f" ({o['lower_bound_method']})" if o.get("lower_bound_method") else "")
                     + (f", so the plan is within {format_percent(o['gap'])} of the optimum." if o.get("gap") is not None else "."))
        else:
            text += "; no proven lower bound exists for this problem, so the distance to the optimum is unknown."
        return text
    return None
