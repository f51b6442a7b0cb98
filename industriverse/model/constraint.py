"""The client constraint: what the engineer receives, as a validated pydantic model.

A constraint JSON names the horizon, the initial state, the envelope, actuator limits, the
tariff, the emission factor, the disturbances, the uncertainty and the budgets.  Whatever it
leaves out comes from the domain's defaults (``industriverse/model/domains/<domain>.yaml``); a
``network`` key replaces the domain's network with the client's own.  See
``examples/*.json`` and the README for complete files.

Units: temperatures °C, stored energy kWh, power kW, prices currency/kWh, demand charge
currency/kW, emission factor kg CO₂/kWh, process noise in state units per √hour.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from industriverse.errors import BadInput
from industriverse.model.canonical import read_json
from industriverse.model.network import Network
from industriverse.model.series import SeriesSpec, Value, at


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


RELATIVE_STARTS = ("now", "next_hour", "tomorrow")


def _zone(name: str | None):
    if name is None:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone '{name}' (e.g. Europe/Berlin, America/New_York)") from None


def resolve_start(start: str, *, timezone: str | None = None, step_minutes: float = 60.0,
                  now: datetime | None = None) -> datetime:
    """The instant a relative ``horizon.start`` means.

    ``now``: the current time floored to the step (on the local clock); ``next_hour``: the next
    full hour; ``tomorrow``: the coming local midnight.  With ``timezone`` (IANA) the result is
    aware in that zone (DST included); without, it is the machine's naive local time.
    """
    tz = _zone(timezone)
    now = now if now is not None else datetime.now(tz)
    if tz is not None and now.tzinfo is None:
        now = now.replace(tzinfo=tz)
    elif tz is not None:
        now = now.astimezone(tz)
    naive = now.replace(tzinfo=None)
    if start == "now":
        step_s = step_minutes * 60.0
        midnight = naive.replace(hour=0, minute=0, second=0, microsecond=0)
        secs = (naive - midnight).total_seconds()
        naive = midnight + timedelta(seconds=step_s * int(secs // step_s))
    elif start == "next_hour":
        naive = naive.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    elif start == "tomorrow":
        naive = naive.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    else:
        raise ValueError(f"'{start}' is not one of {', '.join(RELATIVE_STARTS)} or an ISO 8601 time")
    return naive.replace(tzinfo=tz) if tz is not None else naive


def local_day_hours(start: datetime) -> float:
    """Hours from ``start`` to the same clock time on the next day: 23 or 25 across a DST change."""
    if start.tzinfo is None:
        return 24.0
    nxt = (start.replace(tzinfo=None) + timedelta(days=1)).replace(tzinfo=start.tzinfo)
    return (nxt.astimezone(dt_timezone.utc) - start.astimezone(dt_timezone.utc)).total_seconds() / 3600.0


class Horizon(_Model):
    start: datetime = Field(description="local time of the first step, ISO 8601; or now, next_hour, tomorrow")
    hours: float = Field(gt=0, le=24 * 366, description='length in hours, at most a year (the size limit comes from the '
                         'planning model\'s memory estimate, industriverse.model.mapping.planning_memory_bytes); '
                         '"day" = one local day (23/24/25 h)')
    step_minutes: float = Field(gt=0, le=24 * 60)
    timezone: str | None = Field(None, description="IANA time zone of start (DST handled); default: naive local time")

    @model_validator(mode="before")
    @classmethod
    def _relative(cls, data):
        if not isinstance(data, dict):
            return data
        data = dict(data)
        tz = data.get("timezone")
        if tz is not None and not isinstance(tz, str):
            raise ValueError("timezone must be an IANA name such as Europe/Berlin")
        zone = _zone(tz)
        start = data.get("start")
        step = data.get("step_minutes")
        step = float(step) if isinstance(step, (int, float)) and not isinstance(step, bool) and step > 0 else 60.0
        if isinstance(start, str) and start.strip().lower() in RELATIVE_STARTS:
            data["start"] = resolve_start(start.strip().lower(), timezone=tz, step_minutes=step)
        elif zone is not None and isinstance(start, (str, datetime)):
            try:
                when = datetime.fromisoformat(start) if isinstance(start, str) else start
            except ValueError:
                return data  # the field's own validation reports it
            data["start"] = when.replace(tzinfo=zone) if when.tzinfo is None else when.astimezone(zone)
        elif isinstance(start, str):
            # what this validator returns is validated as Python objects, where strict mode takes
            # no string for a datetime: parse ISO 8601 here (a bad string is left to the field)
            try:
                data["start"] = datetime.fromisoformat(start)
            except ValueError:
                pass
        if data.get("hours") == "day" and isinstance(data.get("start"), datetime):
            data["hours"] = local_day_hours(data["start"])
        elif data.get("hours") == "day":
            data["hours"] = 24.0
        return data

    @model_validator(mode="after")
    def _whole_steps(self):
        steps = self.hours * 60 / self.step_minutes
        if abs(steps - round(steps)) > 1e-9:
            raise ValueError(f"hours ({self.hours}) is not a whole number of {self.step_minutes}-minute steps")
        return self

    @property
    def steps(self) -> int:
        return int(round(self.hours * 60 / self.step_minutes))

    @property
    def step_seconds(self) -> float:
        return self.step_minutes * 60.0


class Band(_Model):
    """A lower and/or upper bound; a side left out is free (an explicit null is refused, it is no bound)."""

    min: SeriesSpec = None
    max: SeriesSpec = None

    @field_validator("min", "max", mode="before")
    @classmethod
    def _not_null(cls, v):
        if v is None:
            raise ValueError("must be a number or a series spec (leave the key out for no bound; null is not a bound)")
        return v


class ActuatorLimits(_Model):
    min_kw: float | None = Field(None, ge=-1e6, le=1e6)
    max_kw: float | None = Field(None, gt=0, le=1e6)
    ramp_kw_per_step: float | None = Field(None, gt=0, le=1e6)


class DemandCharge(_Model):
    """A demand charge on the largest 15-minute mean import over some plan steps (a URDB demand
    period within one month, or a month for the flat charge)."""

    name: str = ""
    rate_per_kw: float = Field(ge=0, le=1e6, description="currency per kW of the peak over these steps")
    steps: list[tuple[Annotated[int, Field(ge=0)], Annotated[int, Field(ge=0)]]] = Field(
        description="half-open ranges [k0, k1) of plan steps; a 15-minute window counts where its first step does")


class Tariff(_Model):
    energy: SeriesSpec = Field(description="import price, currency/kWh")
    export: SeriesSpec = Field(0.0, description="export price, currency/kWh (not above the import price)")
    demand_charge_per_kw: float = Field(0.0, ge=0, le=1e6, description="currency per kW of the horizon's 15-minute peak")
    currency: str = "USD"
    # read from a URDB rate (industriverse.model.tariffs): reported, not optimised
    fixed_monthly_charge: float = Field(0.0, ge=0, description="currency per month, reported only")
    name: str = ""
    demand_periods: list[dict[str, Any]] = Field(default_factory=list, description="time-of-use demand periods the horizon touches")
    demand_charges: list[DemandCharge] = Field(default_factory=list, description="one peak each, charged at its rate")


class ForecastError(_Model):
    std: float = Field(ge=0, le=1e3, description="stationary standard deviation, in the disturbance's unit")
    correlation_hours: float = Field(gt=0, le=1e4)


class Uncertainty(_Model):
    process_noise: Annotated[float, Field(le=1e3)] | dict[str, Annotated[float, Field(le=1e3)]] = Field(
        0.0, description="diffusion of node states, state units/√h; a number applies to every thermal node")
    forecast_error: dict[str, ForecastError] = {}
    ensemble_size: int = Field(200, ge=10, le=100_000)
    confidence: float = Field(0.95, gt=0.5, lt=1)
    max_violation_probability: float = Field(0.05, gt=0, lt=1)
    seed: int = Field(0, ge=0, le=2**63 - 1)

    @field_validator("process_noise")
    @classmethod
    def _non_negative(cls, v):
        values = v.values() if isinstance(v, dict) else [v]
        if any(x < 0 for x in values):
            raise ValueError("process noise must not be negative")
        return v


class Budgets(_Model):
    energy_kwh: float | None = Field(None, gt=0, le=1e12)
    peak_kw: float | None = Field(None, gt=0, le=1e9)


class ClientConstraint(_Model):
    """A client's constraint after the domain defaults were merged in."""

    client: str = "client"
    contract_id: str | None = Field(None, description="the regiment contract this strike serves")
    description: str = ""
    source: str = ""
    domain: str | None = None
    horizon: Horizon
    network: Network
    initial_state: dict[str, Value]
    envelope: dict[str, Band] = {}
    terminal: dict[str, Band] = Field(default_factory=dict, description="bounds on the final state only (e.g. battery back to its start)")
    actuators: dict[str, ActuatorLimits] = {}
    disturbances: dict[str, SeriesSpec] = {}
    tariff: Tariff
    emission_factor: SeriesSpec = Field(0.0, description="kg CO₂ per kWh imported")
    uncertainty: Uncertainty = Uncertainty()
    budgets: Budgets = Budgets()
    baseline: dict[str, Any] = Field(default_factory=dict, description="the baseline controller and its settings")



def _check_references(c: ClientConstraint, file: str | None) -> None:
    """Names in the constraint must exist in the network; each error names its field."""
    nodes = c.network.node_names
    for label, bands in (("initial_state", c.initial_state), ("envelope", c.envelope), ("terminal", c.terminal),
                         ("uncertainty.process_noise", c.uncertainty.process_noise if isinstance(c.uncertainty.process_noise, dict) else {})):
        for name in bands:
            if name not in nodes:
                raise BadInput(file, f"{label}.{name}", f"unknown node (nodes: {', '.join(nodes)})")
    for name in nodes:
        if name not in c.initial_state:
            raise BadInput(file, f"initial_state.{name}", "is required (the node's state at the start)")
    for name in c.actuators:
        if name not in c.network.actuator_names:
            raise BadInput(file, f"actuators.{name}", f"unknown actuator (actuators: {', '.join(c.network.actuator_names)})")
    for name in c.network.disturbance_names:
        if name not in c.disturbances:
            raise BadInput(file, f"disturbances.{name}", "is required: the network reads this series")
    for name in c.uncertainty.forecast_error:
        if name not in c.network.disturbance_names:
            raise BadInput(file, f"uncertainty.forecast_error.{name}",
                           f"unknown disturbance (disturbances: {', '.join(c.network.disturbance_names)})")


_UNION_TAGS = {"float", "int", "constant", "sinusoid", "series", "csv", "time_of_use", "daily_profile", "epw", "pv"}


def _field_path(loc: tuple) -> str:
    return ".".join(str(p) for p in loc if not (isinstance(p, str) and (p in _UNION_TAGS or p.startswith(("tagged-union", "function-", "constrained-")))))


def _best_error(errors: list[dict]) -> dict:
    """The most telling error: a failed union tries every member, so prefer the member the input meant
    (a JSON object meant a series spec, anything else meant a number)."""
    def score(e):
        via_number = any(p in ("float", "int") or (isinstance(p, str) and p.startswith("constrained-")) for p in e["loc"])
        meant_spec = isinstance(e.get("input"), dict) or any(isinstance(p, str) and p.startswith("tagged-union") for p in e["loc"][:-1]) and not via_number
        return (via_number == meant_spec, -len(e["loc"]))
    return min(errors, key=score)


def _merge(base: Any, over: Any) -> Any:
    """Deep-merge ``over`` onto ``base`` (dicts merge key by key; anything else replaces)."""
    if isinstance(base, dict) and isinstance(over, dict) and not ("type" in over and "type" in base):
        out = dict(base)
        for k, v in over.items():
            out[k] = _merge(base.get(k), v) if k in base else v
        return out
    return over


def _defaults_for(defaults: dict, network: Any) -> dict:
    """The domain defaults that name only what the client's own ``network`` has.

    A client network may reuse the domain's names (then their defaults apply) or bring its own
    (then a default about a node, actuator or series it lacks would be a false error).
    """
    if not isinstance(network, dict):
        return defaults  # validation reports the malformed network itself

    def names(items, *keys):
        out = set()
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict):
                out.update(item.get(k) for k in keys if isinstance(item.get(k), str))
        return out

    site = network.get("site") if isinstance(network.get("site"), dict) else {}
    nodes = names(network.get("nodes"), "name")
    actuators = names(network.get("actuators"), "name")
    series = names(network.get("boundaries"), "disturbance") | names(network.get("gains"), "disturbance") | {
        site.get(k) for k in ("load", "pv") if isinstance(site.get(k), str)}
    keep = {"initial_state": nodes, "envelope": nodes, "terminal": nodes, "actuators": actuators, "disturbances": series}
    out = dict(defaults)
    for key, known in keep.items():
        if isinstance(out.get(key), dict):
            out[key] = {k: v for k, v in out[key].items() if k in known}
    unc = out.get("uncertainty")
    if isinstance(unc, dict):
        unc = dict(unc)
        if isinstance(unc.get("forecast_error"), dict):
            unc["forecast_error"] = {k: v for k, v in unc["forecast_error"].items() if k in series}
        if isinstance(unc.get("process_noise"), dict):
            unc["process_noise"] = {k: v for k, v in unc["process_noise"].items() if k in nodes}
        out["uncertainty"] = unc
    return out


def build_constraint(raw: dict, domain_defaults: dict | None, *, file: str | None = None,
                     base_dir: Path | None = None) -> ClientConstraint:
    """Validate ``raw`` merged over the domain's defaults; errors name ``file`` and the field.

    ``base_dir`` resolves relative file paths (a URDB tariff); default: the working directory."""
    if not isinstance(raw, dict):
        raise BadInput(file, None, "the constraint must be a JSON object")
    merged = dict(domain_defaults or {})
    if "network" in raw:  # the client's own network replaces the domain's, not merges into it
        merged.pop("network", None)
        merged = _defaults_for(merged, raw["network"])
    merged = _merge(merged, raw)
    if isinstance(raw.get("tariff"), dict) and raw["tariff"].get("type") == "urdb":
        from industriverse.model.tariffs import expand_urdb

        try:  # the tariff is laid on the horizon's concrete dates
            horizon = Horizon.model_validate(merged.get("horizon")).model_dump()
        except (ValidationError, TypeError):
            horizon = {}  # validation below reports the horizon itself
        if horizon:
            merged["tariff"] = expand_urdb(raw["tariff"], horizon, base_dir=base_dir, file=file)
    try:
        # strict JSON validation: a number is a JSON number (not true, not "21"), finite, in range
        c = ClientConstraint.model_validate_json(json.dumps(merged, default=str), strict=True)
    except ValidationError as exc:
        err = _best_error(exc.errors())
        field = _field_path(err["loc"]) or None
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            msg = "is required"
        elif err["type"] == "extra_forbidden":
            msg = "is not a known field"
        # other members of the same union are alternatives, not further problems
        fields = {_field_path(e["loc"]) for e in exc.errors() if not (field or "").startswith(_field_path(e["loc"]))} | {field}
        more = f" (and problems in {len(fields) - 1} more field(s))" if len(fields) > 1 else ""
        raise BadInput(file, field, msg + more) from None
    _check_references(c, file)
    return c


def read_constraint_file(path: str | Path) -> dict:
    """Read a constraint JSON file; a missing file or bad JSON is :class:`BadInput`."""
    path = Path(path)
    raw = read_json(path)  # stat, size, depth, integer-length and finite-number limits
    if not isinstance(raw, dict):
        raise BadInput(str(path), None, "the constraint must be a JSON object")
    return inline_files(raw, path)


def inline_files(raw: dict, path: Path) -> dict:
    """Replace file references of a constraint read from ``path`` by their content.

    * ``"network": "fitted.json"`` — a network file (``industriverse fit`` output, or a bare
      network): its ``network``, and its ``uncertainty.process_noise`` unless the constraint
      gives one;
    * ``"initial_state": {"from_telemetry": "FILE.csv", "columns": "old=new,..."}`` — the state
      at the horizon's start estimated by the network's Kalman filter
      (:func:`industriverse.model.estimate.estimate_state`) from the readings up to it (a start
      after the last reading is reached by the model with the last inputs held).
    """
    base, file = path.parent, str(path)
    raw = dict(raw)
    if isinstance(raw.get("network"), str):
        from industriverse.model.canonical import read_json  # the bounded reader: size, depth, finite numbers
        from industriverse.model.series import resolve_data_path

        npath = resolve_data_path(raw["network"], base, field="network", file=file)
        if not npath.exists():
            raise BadInput(file, "network", f"no such network file '{raw['network']}'")
        doc = read_json(npath)
        if not isinstance(doc, dict):
            raise BadInput(str(npath), None, "a network file must be a JSON object")
        raw["network"] = doc.get("network", doc)
        noise = (doc.get("uncertainty") or {}).get("process_noise") if isinstance(doc.get("uncertainty"), dict) else None
        unc = raw.get("uncertainty") if isinstance(raw.get("uncertainty"), dict) else {}
        if noise is not None and "process_noise" not in unc:
            raw["uncertainty"] = {**unc, "process_noise": noise}
    init = raw.get("initial_state")
    if isinstance(init, dict) and "from_telemetry" in init:
        raw["initial_state"] = _state_from_telemetry(raw, init, base, file)
    return raw


def _state_from_telemetry(raw: dict, spec: dict, base: Path, file: str) -> dict[str, float]:
    import numpy as np

    from industriverse.model.estimate import StateEstimator, estimate_state
    from industriverse.model.telemetry import parse_columns, read_telemetry

    extra = set(spec) - {"from_telemetry", "columns", "measurement_noise"}
    if extra:
        raise BadInput(file, f"initial_state.{sorted(extra)[0]}", "is not a field (from_telemetry, columns, measurement_noise)")
    if not isinstance(raw.get("network"), dict):
        raise BadInput(file, "initial_state.from_telemetry", "needs the constraint's own 'network' (a dict or a network file)")
    try:
        net = Network.model_validate(raw["network"])
    except ValidationError:
        return spec  # the constraint's validation reports the network
    from industriverse.model.series import resolve_data_path

    tpath = resolve_data_path(str(spec["from_telemetry"]), base, field="initial_state.from_telemetry", file=file)
    unc = raw.get("uncertainty") if isinstance(raw.get("uncertainty"), dict) else {}
    tel = read_telemetry(tpath, net, columns=parse_columns(spec.get("columns"), field_name="initial_state.columns"))
    # the state at the horizon's start: readings after it are not used (a replay); a start after
    # the last reading is reached by the model with the last inputs held
    ahead = 0.0
    try:
        start = Horizon.model_validate(raw.get("horizon")).start if isinstance(raw.get("horizon"), dict) else None
    except ValidationError:
        start = None
    if start is not None and tel.start is not None:
        if (start.tzinfo is None) != (tel.start.tzinfo is None):
            raise BadInput(file, "initial_state.from_telemetry", "the telemetry's times and horizon.start must both "
                                                                 "carry a UTC offset (or a timezone), or neither")
        since = (start - tel.start).total_seconds()
        keep = int(np.searchsorted(tel.t, since, side="right"))
        if keep == 0:
            raise BadInput(file, "initial_state.from_telemetry", f"the telemetry starts after horizon.start {start}")
        tel = tel.slice(0, keep)
        ahead = since - float(tel.t[-1])
    mean, cov = estimate_state(net, tel, process_noise=unc.get("process_noise"), measurement_noise=spec.get("measurement_noise"))
    if ahead > 0:
        est = StateEstimator(net, process_noise=unc.get("process_noise"), initial=mean)
        est.P = cov
        m = len(net.actuator_names)
        est.predict(ahead, u=tel.w[-1, :m], d=tel.w[-1, m:])
        mean = est.mean
    return {name: round(float(v), 4) for name, v in zip(net.node_names, mean)}


def absolute_csv_paths(raw: Any, base: Path) -> Any:
    """``raw`` with every CSV series path made absolute against ``base`` (the constraint file's
    folder), so that a worker anywhere, in any working directory, reads the same file."""
    if isinstance(raw, dict):
        if raw.get("type") in ("csv", "epw", "urdb", "pv") and isinstance(raw.get("path"), str) and not Path(raw["path"]).is_absolute():
            raw = {**raw, "path": str((base / raw["path"]).resolve())}
        return {k: absolute_csv_paths(v, base) for k, v in raw.items()}
    if isinstance(raw, list):
        return [absolute_csv_paths(v, base) for v in raw]
    return raw


def freeze_horizon(raw: dict) -> dict:
    """``raw`` with a relative ``horizon.start`` (now, next_hour, tomorrow) and ``hours: "day"``
    replaced by the concrete values, so every worker that reads the request plans the same
    instants.  A horizon that does not validate is left for the validation to report."""
    h = raw.get("horizon") if isinstance(raw, dict) else None
    if not isinstance(h, dict):
        return raw
    try:
        parsed = Horizon.model_validate(h)
    except ValidationError:
        return raw
    out = dict(h)
    out["start"] = parsed.start.isoformat(timespec="minutes") if parsed.start.tzinfo is None else parsed.start.isoformat()
    out["hours"] = parsed.hours
    return {**raw, "horizon": out}


def past_start(horizon: Horizon, now: datetime | None = None) -> datetime | None:
    """``now`` when the horizon's first step is already over (a replay of history), else None."""
    start = horizon.start
    now = now if now is not None else (datetime.now(start.tzinfo) if start.tzinfo else datetime.now())
    end_first = at(start, horizon.step_minutes / 60.0)
    if start.tzinfo is not None and now.tzinfo is None:
        now = now.replace(tzinfo=start.tzinfo)
    return now if end_first <= now else None
