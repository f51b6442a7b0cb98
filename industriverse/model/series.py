"""Time series of the constraint: disturbances, tariffs, emission factors, envelope bounds.

A series spec is a number (constant) or one of::

    {"type": "constant", "value": v}
    {"type": "sinusoid", "mean": m, "amplitude": a, "period_hours": 24, "phase_hours": 0}
        value = m + a·sin(2π (t − phase) / period), t in hours since the horizon start
    {"type": "series", "values": [...], "step_minutes": s}     held over s minutes (default: the horizon step)
    {"type": "csv", "path": "file.csv", "column": "name", "time_column": "time" (optional)}
        rows per step, or with time_column the last row at or before each instant (ISO times)
    {"type": "time_of_use", "periods": [{"days": "weekdays", "hours": [14, 18], "value": v}, ...], "default": v}
        days: "all", "weekdays", "weekends" or a list of weekday numbers (0 = Monday);
        hours: [start, end) local clock hours, may wrap past midnight; first matching period wins
    {"type": "daily_profile", "values": [24 hourly values]}
    {"type": "pv", "path": "site.epw", "kw_peak": 5, "tilt": 30, "azimuth": 180}
        AC output in kW of a declared PV array under that weather: pvlib's solar position,
        transposition to the plane of the array (isotropic sky), SAPM cell temperature (open
        rack) and PVWatts DC model, less ``losses_percent`` (14) and the inverter efficiency
        (0.96); hourly, held, mapped like the EPW fields below.
    {"type": "epw", "path": "site.epw", "field": "temp_air", "scale": 1.0 (optional)}
        an EnergyPlus weather file read with pvlib (pvlib.iotools.read_epw); field one of
        temp_air (°C), ghi, dni, dhi (W/m²), relative_humidity (%), wind_speed (m/s), times
        ``scale`` (e.g. 0.001 turns W/m² into kW/m², so a gain's ``scale`` is the effective
        area in m²).  Typical years mix years: each instant of the horizon takes the record of
        its month, day and hour (29 February takes the 28th), in the file's standard time
        (an aware horizon is converted; a naive one is read as local standard time).
        Temperature, humidity and wind are interpolated between hours; irradiance is the
        hour's mean, held.

All series are sampled at instants (a step's start for inputs and prices; a state's time for
envelope bounds) and held over a step (zero-order hold).
"""
from __future__ import annotations

import csv
import io
import math
import os
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from industriverse.errors import BadInput


# Every value of a series (°C, kWh, kW, price per kWh, kg CO₂/kWh, W) lies within ±MAX_SERIES_VALUE:
# far beyond any physical figure of a building or site, yet far from float overflow in the dynamics.
MAX_SERIES_VALUE = 1e6
Value = Annotated[float, Field(ge=-MAX_SERIES_VALUE, le=MAX_SERIES_VALUE)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Constant(_Spec):
    type: Literal["constant"]
    value: Value


class Sinusoid(_Spec):
    type: Literal["sinusoid"]
    mean: Value
    amplitude: Value
    period_hours: float = Field(24.0, gt=0, le=1e6)
    phase_hours: float = Field(0.0, ge=-1e6, le=1e6)


class Series(_Spec):
    type: Literal["series"]
    values: list[Value] = Field(min_length=1, max_length=1_000_000)
    step_minutes: float | None = Field(None, gt=0, le=1e6)


class CsvSeries(_Spec):
    type: Literal["csv"]
    path: str
    column: str
    time_column: str | None = None


class Period(_Spec):
    days: Literal["all", "weekdays", "weekends"] | list[Annotated[int, Field(ge=0, le=6)]] = "all"
    hours: list[float] = Field(min_length=2, max_length=2, description="[start, end) clock hours")
    value: Value

    @field_validator("hours")
    @classmethod
    def _clock(cls, v):
        if not all(0 <= h <= 24 for h in v):
            raise ValueError("hours must be clock hours between 0 and 24")
        if v[0] == v[1]:
            raise ValueError("an empty period: start equals end")
        return v


class TimeOfUse(_Spec):
    type: Literal["time_of_use"]
    periods: list[Period] = Field(min_length=1)
    default: Value


class DailyProfile(_Spec):
    type: Literal["daily_profile"]
    values: list[Value] = Field(min_length=24, max_length=24)


EPW_FIELDS = ("temp_air", "ghi", "dni", "dhi", "relative_humidity", "wind_speed")


class EpwSeries(_Spec):
    type: Literal["epw"]
    path: str
    field: Literal["temp_air", "ghi", "dni", "dhi", "relative_humidity", "wind_speed"]
    scale: float = 1.0


class PvSeries(_Spec):
    """AC output (kW) of a declared PV array under the weather of an EPW file (pvlib PVWatts)."""

    type: Literal["pv"]
    path: str = Field(description="the EPW weather file")
    kw_peak: float = Field(gt=0, description="DC rating at 1000 W/m² and 25 °C, kW")
    tilt: float = Field(30.0, ge=0, le=90, description="degrees from horizontal")
    azimuth: float = Field(180.0, ge=0, lt=360, description="degrees clockwise from north (180 = south)")
    gamma_pdc: float = Field(-0.004, description="power temperature coefficient, 1/K")
    losses_percent: float = Field(14.0, ge=0, lt=100, description="system losses (PVWatts default 14 %)")
    inverter_efficiency: float = Field(0.96, gt=0, le=1)


SeriesSpec = Union[
    Value,
    Annotated[Union[Constant, Sinusoid, Series, CsvSeries, TimeOfUse, DailyProfile, EpwSeries, PvSeries],
              Field(discriminator="type")],
]


def at(start: datetime, hours: float) -> datetime:
    """The instant ``hours`` of elapsed time after ``start``, on ``start``'s local clock.

    Aware times count in UTC (so a step across a DST change lasts its real length and the
    local clock jumps); naive times are plain clock arithmetic."""
    if start.tzinfo is None:
        return start + timedelta(hours=float(hours))
    return (start.astimezone(timezone.utc) + timedelta(hours=float(hours))).astimezone(start.tzinfo)


def _day_matches(days, weekday: int) -> bool:
    if days == "all":
        return True
    if days == "weekdays":
        return weekday < 5
    if days == "weekends":
        return weekday >= 5
    return weekday in days


def sample(spec: SeriesSpec, start: datetime, offsets_h: np.ndarray, step_h: float, *, field: str,
           base_dir: Path | None = None, file: str | None = None) -> np.ndarray:
    """Values of ``spec`` at ``start + offsets_h`` hours.

    ``field`` and ``file`` name the spec in errors (a CSV that is missing, too short, ...).
    """
    t = np.asarray(offsets_h, dtype=float)
    if isinstance(spec, (int, float)):
        return np.full(t.shape, float(spec))
    if isinstance(spec, Constant):
        return np.full(t.shape, spec.value)
    if isinstance(spec, Sinusoid):
        return spec.mean + spec.amplitude * np.sin(2 * np.pi * (t - spec.phase_hours) / spec.period_hours)
    if isinstance(spec, Series):
        hold_h = (spec.step_minutes / 60.0) if spec.step_minutes else step_h
        idx = np.floor(t / hold_h + 1e-9).astype(int)
        if idx.max(initial=0) >= len(spec.values):
            need = int(idx.max()) + 1
            raise BadInput(file, f"{field}.values", f"has {len(spec.values)} values, the horizon needs {need}")
        return np.asarray(spec.values, dtype=float)[idx]
    if isinstance(spec, DailyProfile):
        clock = np.array([at(start, h).hour for h in t])
        return np.asarray(spec.values, dtype=float)[clock]
    if isinstance(spec, TimeOfUse):
        out = np.full(t.shape, spec.default)
        for i, h in enumerate(t):
            when = at(start, h)
            clock = when.hour + when.minute / 60.0 + when.second / 3600.0
            for p in spec.periods:
                a, b = p.hours
                inside = a <= clock < b if a < b else (clock >= a or clock < b)
                if inside and _day_matches(p.days, when.weekday()):
                    out[i] = p.value
                    break
        return out
    if isinstance(spec, CsvSeries):
        return _sample_csv(spec, start, t, step_h, field=field, base_dir=base_dir, file=file)
    if isinstance(spec, EpwSeries):
        return _sample_epw(spec, start, t, field=field, base_dir=base_dir, file=file)
    if isinstance(spec, PvSeries):
        return _sample_epw(spec, start, t, field=field, base_dir=base_dir, file=file)
    raise BadInput(file, field, f"unknown series spec {spec!r}")


DATA_ROOTS_ENV = "INDUSTRIVERSE_DATA_ROOTS"  # further directories CSV files may be read from (os.pathsep-separated)
MAX_CSV_BYTES = 64 * 1024 * 1024
_extra_roots: ContextVar[tuple[Path, ...]] = ContextVar("industriverse_data_roots", default=())


@contextmanager
def data_roots_allowed(dirs):
    """Let CSV series under ``dirs`` be read in this context (the embedded bus's workers read the
    client's constraint directory, as the client itself did)."""
    token = _extra_roots.set(_extra_roots.get() + tuple(Path(d).resolve() for d in dirs))
    try:
        yield
    finally:
        _extra_roots.reset(token)


def data_roots(base_dir: Path | None) -> list[Path]:
    """Directories a CSV series may be read from: the constraint's own directory, ``$INDUSTRIVERSE_HOME/data``,
    the directories in ``$INDUSTRIVERSE_DATA_ROOTS`` and those allowed by :func:`data_roots_allowed`."""
    from industriverse import data_home

    roots = [Path(base_dir).resolve()] if base_dir is not None else []
    roots.append((data_home() / "data").resolve())
    roots += [Path(p).resolve() for p in os.environ.get(DATA_ROOTS_ENV, "").split(os.pathsep) if p]
    return roots + list(_extra_roots.get())


def resolve_data_path(raw: str, base_dir: Path | None, *, field: str, file: str | None) -> Path:
    """The real path of a data file a constraint names (CSV and EPW series, a URDB rate, a network
    file, telemetry): relative to ``base_dir`` (else ``$INDUSTRIVERSE_HOME/data``), and after following
    every symlink inside one of :func:`data_roots`; anything else is :class:`BadInput` on ``field``."""
    from industriverse import data_home

    given = Path(raw)
    if ".." in given.parts:
        raise BadInput(file, field, "must not contain '..' (a data file stays in the constraint's directory)")
    path = given if given.is_absolute() else (Path(base_dir) if base_dir is not None else data_home() / "data") / given
    real = path.resolve()
    roots = data_roots(base_dir)
    if not any(real.is_relative_to(r) for r in roots):
        raise BadInput(file, field, "is outside the data directories (the constraint's directory, "
                                             f"$INDUSTRIVERSE_HOME/data or ${DATA_ROOTS_ENV})")
    return real


def _sample_csv(spec: CsvSeries, start, t, step_h, *, field, base_dir, file) -> np.ndarray:
    # Errors name the file, the column and the row, never the file's content (the path could point anywhere).
    from industriverse.model.canonical import read_text_checked

    path = resolve_data_path(spec.path, base_dir, field=f"{field}.path", file=file)
    try:
        text = read_text_checked(path, max_bytes=MAX_CSV_BYTES, what="CSV file")
    except BadInput as exc:
        raise BadInput(file, f"{field}.path", f"cannot read CSV '{spec.path}': {exc.problem}") from None
    try:
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
    except csv.Error:
        raise BadInput(str(path), None, "not a valid CSV file") from None
    if not rows or spec.column not in rows[0]:
        n = len(rows[0]) if rows else 0
        raise BadInput(str(path), spec.column, f"column not found (the header has {n} column(s))")
    values = np.empty(len(rows))
    for i, r in enumerate(rows):
        try:
            values[i] = float(r[spec.column])
        except (TypeError, ValueError):
            values[i] = np.nan
        if not (math.isfinite(values[i]) and abs(values[i]) <= MAX_SERIES_VALUE):
            raise BadInput(str(path), spec.column, f"row {i + 2} is not a finite number within ±{MAX_SERIES_VALUE:g}")
    if spec.time_column is None:
        idx = np.floor(t / step_h + 1e-9).astype(int)
        if idx.max(initial=0) >= len(values):
            raise BadInput(str(path), spec.column, f"has {len(values)} rows, the horizon needs {int(idx.max()) + 1}")
        return values[idx]
    if spec.time_column not in rows[0]:
        raise BadInput(str(path), spec.time_column, "time column not found")
    try:
        stamps = np.array([(datetime.fromisoformat(r[spec.time_column]) - start).total_seconds() / 3600 for r in rows])
    except (TypeError, ValueError):
        raise BadInput(str(path), spec.time_column, "a row is not an ISO time") from None
    if np.any(np.diff(stamps) <= 0):
        raise BadInput(str(path), spec.time_column, "times must increase")
    pos = np.searchsorted(stamps, t + 1e-9, side="right") - 1
    if pos.min(initial=0) < 0:
        raise BadInput(str(path), spec.time_column, "the first row is after the horizon start")
    held_h = float(np.median(np.diff(stamps))) if len(stamps) > 1 else step_h  # the last row holds one spacing
    if stamps[-1] + held_h < t.max(initial=0) + step_h - 1e-9:
        raise BadInput(str(path), spec.time_column, "the rows end before the horizon does")
    return values[pos]


def read_epw(path: Path) -> tuple[dict[tuple[int, int, int], int], dict[str, np.ndarray], float]:
    """An EPW file as ``(index, fields, tz)``: ``index[(month, day, hour 0–23)]`` is the row of
    the hour starting then; ``fields[name]`` the values; ``tz`` the file's standard-time offset
    in hours.  Cached per path and modification time."""
    stat = path.stat()
    return _read_epw_cached(str(path), stat.st_mtime_ns)


@lru_cache(maxsize=8)
def _read_epw_cached(path: str, _mtime: int):
    import pvlib  # heavy (pandas): only when a constraint names an EPW file

    data, meta = pvlib.iotools.read_epw(path)
    idx = data.index
    keys = list(zip(idx.month, idx.day, idx.hour))
    index = {k: i for i, k in enumerate(keys)}
    fields = {f: data[f].to_numpy(dtype=float) for f in EPW_FIELDS}
    return index, fields, float(meta.get("TZ", 0.0))


def _sample_epw(spec: EpwSeries, start: datetime, t: np.ndarray, *, field, base_dir, file) -> np.ndarray:
    from industriverse.model.canonical import check_regular_file

    path = resolve_data_path(spec.path, base_dir, field=f"{field}.path", file=file)  # inside the data roots
    if not path.exists():
        raise BadInput(file, f"{field}.path", f"no such EPW file '{spec.path}'")
    check_regular_file(path, max_bytes=MAX_CSV_BYTES, what="EPW file")
    try:
        index, fields, tz = read_epw(path)
    except (OSError, ValueError, KeyError, IndexError) as exc:  # the reader's message may quote the file: not shown
        raise BadInput(str(path), None, f"not a readable EPW file ({type(exc).__name__})") from None
    if isinstance(spec, PvSeries):
        values = _pv_output(str(path), path.stat().st_mtime_ns, spec.model_dump_json())
        smooth, scale = False, 1.0
    else:
        values = fields[spec.field]
        smooth, scale = spec.field in ("temp_air", "relative_humidity", "wind_speed"), spec.scale
    if not np.all(np.isfinite(values)):
        raise BadInput(str(path), getattr(spec, "field", "pv"), "has missing values")
    std = timezone(timedelta(hours=tz))

    def row(when: datetime) -> int:
        m, d = when.month, when.day
        if (m, d) == (2, 29):
            d = 28
        key = (m, d, when.hour)
        if key not in index:
            raise BadInput(file, field, f"the weather file {path.name} has no record for {when:%d %B %H:00} "
                                        "(standard time), which the horizon needs")
        return index[key]

    out = np.empty(len(t))
    for i, h in enumerate(t):
        when = at(start, h)
        when = when.astimezone(std).replace(tzinfo=None) if when.tzinfo is not None else when
        k = row(when)
        frac = (when.minute * 60 + when.second) / 3600.0
        if smooth and frac > 0:
            # a temperature is a reading at the hour: interpolate to the next hour's record
            out[i] = (1 - frac) * values[k] + frac * values[row(when + timedelta(hours=1))]
        else:
            out[i] = values[k]
    return out * scale


@lru_cache(maxsize=8)
def _pv_output(path: str, _mtime: int, spec_json: str) -> np.ndarray:
    """AC kW of the array for every hour of the EPW file (solar position at mid-hour)."""
    import pandas as pd
    import pvlib

    spec = PvSeries.model_validate_json(spec_json)
    data, meta = pvlib.iotools.read_epw(path)
    loc = pvlib.location.Location(meta["latitude"], meta["longitude"], altitude=meta.get("altitude", 0.0))
    mid = data.index + pd.Timedelta(minutes=30)  # the records are hour means
    sun = loc.get_solarposition(mid)
    poa = pvlib.irradiance.get_total_irradiance(spec.tilt, spec.azimuth, sun["apparent_zenith"].to_numpy(),
                                                sun["azimuth"].to_numpy(), data["dni"].to_numpy(),
                                                data["ghi"].to_numpy(), data["dhi"].to_numpy())["poa_global"]
    poa = np.nan_to_num(np.asarray(poa, dtype=float), nan=0.0).clip(min=0.0)
    params = pvlib.temperature.TEMPERATURE_MODEL_PARAMETERS["sapm"]["open_rack_glass_glass"]
    cell = pvlib.temperature.sapm_cell(poa, data["temp_air"].to_numpy(), data["wind_speed"].to_numpy(), **params)
    dc = pvlib.pvsystem.pvwatts_dc(poa, cell, spec.kw_peak, spec.gamma_pdc)
    ac = np.asarray(dc, dtype=float) * (1 - spec.losses_percent / 100.0) * spec.inverter_efficiency
    return np.clip(ac, 0.0, spec.kw_peak)
