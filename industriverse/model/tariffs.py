"""Utility tariffs in the OpenEI Utility Rate Database (URDB) v8 JSON layout.

A constraint names one with ``{"tariff": {"type": "urdb", "path": "rate.json"}}`` (the file is
one rate, or an API response ``{"items": [rate, ...]}`` whose first item is used).  What is read:

* ``energyweekdayschedule`` / ``energyweekendschedule`` — 12 × 24 period indices (month ×
  local clock hour), and ``energyratestructure`` — per period a list of tiers
  ``{"rate": $/kWh, "adj": $/kWh, "max": kWh, "unit": ...}``; the price is ``rate + adj`` of
  the first tier.  A period with several tiers is refused unless the tariff spec gives
  ``"monthly_kwh"`` (the client's known monthly consumption) and that stays within the first
  tier of every period: tiers depend on the whole month's consumption, which one horizon
  does not know.
* ``flatdemandstructure`` + ``flatdemandmonths`` — a demand charge ($/kW) on the month's peak,
  and ``demandratestructure`` + ``demandweekdayschedule`` / ``demandweekendschedule`` —
  time-of-use demand charges: one peak per demand period per month, charged at that period's
  rate.  Both become the tariff's ``demand_charges`` (one per month for the flat charge, one
  per period and month for the time-of-use ones, each with the plan steps it covers): the
  planner gives each its own peak variable and the KPIs charge each on its own peak.  A
  horizon shorter than the month charges the peaks it sees (the month's other days are not
  known to it).
* ``fixedmonthlycharge`` (or ``fixedchargefirstmeter`` with ``fixedchargeunits``) — reported,
  not optimised (no plan changes it).

Holidays (URDB has no calendar of them) are treated as the weekdays they fall on.  Prices in
the rate's currency (URDB: USD).
"""
from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from industriverse.errors import BadInput
from industriverse.model.series import at


def load_urdb(path: Path, *, field: str = "tariff.path", file: str | None = None) -> dict:
    """The rate of a URDB JSON file (a rate object, or ``{"items": [rate, ...]}``)."""
    from industriverse.model.canonical import read_json  # the bounded reader: size, depth, finite numbers

    if not Path(path).exists():
        raise BadInput(file, field, f"no such URDB file '{Path(path).name}'")
    doc = read_json(path)
    if isinstance(doc, dict) and isinstance(doc.get("items"), list):
        if not doc["items"]:
            raise BadInput(str(path), "items", "is empty: no rate in this file")
        doc = doc["items"][0]
    if not isinstance(doc, dict):
        raise BadInput(str(path), None, "a URDB rate must be a JSON object")
    return doc


def _schedule(rate: dict, key: str, path: Path, n_periods: int) -> list[list[int]]:
    sch = rate.get(key)
    if not (isinstance(sch, list) and len(sch) == 12 and all(isinstance(r, list) and len(r) == 24 for r in sch)):
        raise BadInput(str(path), key, "must be 12 rows (months) of 24 period indices (hours)")
    for m, row in enumerate(sch):
        for h, p in enumerate(row):
            if not isinstance(p, int) or not 0 <= p < n_periods:
                raise BadInput(str(path), f"{key}[{m}][{h}]", f"period {p!r} is not one of 0..{n_periods - 1}")
    return sch


def _tier_price(tier: Any, path: Path, where: str) -> float:
    if not isinstance(tier, dict) or not isinstance(tier.get("rate", 0.0), (int, float)):
        raise BadInput(str(path), where, "a tier must be an object with a numeric 'rate'")
    return float(tier.get("rate", 0.0)) + float(tier.get("adj", 0.0) or 0.0)


def _structure(rate: dict, key: str, path: Path) -> list[list[dict]]:
    st = rate.get(key)
    if not (isinstance(st, list) and st and all(isinstance(p, list) and p for p in st)):
        raise BadInput(str(path), key, "must be a non-empty list of periods, each a non-empty list of tiers")
    return st


class UrdbRate:
    """A parsed URDB rate: prices and demand charges by local time."""

    def __init__(self, rate: dict, path: Path, *, monthly_kwh: float | None = None):
        self.rate, self.path = rate, path
        energy = _structure(rate, "energyratestructure", path)
        for i, tiers in enumerate(energy):
            if len(tiers) > 1:
                first = tiers[0].get("max")
                unit = str(tiers[0].get("unit", "kWh"))
                limit = None if first is None else float(first) * (28 if "daily" in unit.lower() else 1)
                if monthly_kwh is None or limit is None or monthly_kwh > limit:
                    known = "" if monthly_kwh is None else f"; the given monthly_kwh {monthly_kwh:g} exceeds it"
                    raise BadInput(str(path), f"energyratestructure[{i}]",
                                   f"has {len(tiers)} tiers (the first up to {first} {unit}): tiered energy rates are not "
                                   f"supported, give the tariff's \"monthly_kwh\" when the consumption is known to stay "
                                   f"in the first tier{known}")
        self.energy = [_tier_price(t[0], path, f"energyratestructure[{i}][0]") for i, t in enumerate(energy)]
        self.weekday = _schedule(rate, "energyweekdayschedule", path, len(self.energy))
        self.weekend = _schedule(rate, "energyweekendschedule", path, len(self.energy))
        self.flat = []
        if rate.get("flatdemandstructure"):
            flat = _structure(rate, "flatdemandstructure", path)
            self.flat = [_tier_price(t[0], path, f"flatdemandstructure[{i}][0]") for i, t in enumerate(flat)]
            months = rate.get("flatdemandmonths", [0] * 12)
            if not (isinstance(months, list) and len(months) == 12 and all(isinstance(p, int) and 0 <= p < len(self.flat) for p in months)):
                raise BadInput(str(path), "flatdemandmonths", f"must be 12 period indices in 0..{len(self.flat) - 1}")
            self.flat_months = months
        self.tou = []
        if rate.get("demandratestructure"):
            tou = _structure(rate, "demandratestructure", path)
            self.tou = [_tier_price(t[0], path, f"demandratestructure[{i}][0]") for i, t in enumerate(tou)]
            self.d_weekday = _schedule(rate, "demandweekdayschedule", path, len(self.tou))
            self.d_weekend = _schedule(rate, "demandweekendschedule", path, len(self.tou))

    def price(self, when: datetime) -> float:
        """Energy price ($/kWh) at local time ``when``."""
        sch = self.weekend if when.weekday() >= 5 else self.weekday
        return self.energy[sch[when.month - 1][when.hour]]

    def demand_period(self, when: datetime) -> int | None:
        if not self.tou:
            return None
        sch = self.d_weekend if when.weekday() >= 5 else self.d_weekday
        return sch[when.month - 1][when.hour]

    def flat_demand(self, when: datetime) -> float:
        return self.flat[self.flat_months[when.month - 1]] if self.flat else 0.0

    def fixed_monthly_charge(self) -> float:
        r = self.rate
        if isinstance(r.get("fixedmonthlycharge"), (int, float)):
            return float(r["fixedmonthlycharge"])
        if isinstance(r.get("fixedchargefirstmeter"), (int, float)):
            units = str(r.get("fixedchargeunits", "$/month"))
            per_day = "day" in units
            return float(r["fixedchargefirstmeter"]) * (30.4375 if per_day else 1.0)
        return 0.0


def _ranges(steps: list[int]) -> list[list[int]]:
    """Sorted step indices as half-open ranges ``[k0, k1)``."""
    out: list[list[int]] = []
    for k in steps:
        if out and out[-1][1] == k:
            out[-1][1] = k + 1
        else:
            out.append([k, k + 1])
    return out


def demand_charges(rate: UrdbRate, times: list[datetime]) -> list[dict]:
    """The demand charges of the plan steps starting at local ``times``: the flat charge on
    each month's peak, and each time-of-use demand period's charge on its peak within each
    month (rates of zero are left out)."""
    groups: dict[tuple, tuple[str, float, list[int]]] = {}
    for k, t in enumerate(times):
        month = f"{t.year:04d}-{t.month:02d}"
        flat = rate.flat_demand(t)
        if flat > 0:
            groups.setdefault(("flat", month), (f"flat demand, {month}", flat, []))[2].append(k)
        p = rate.demand_period(t)
        if p is not None and rate.tou[p] > 0:
            groups.setdefault(("tou", month, p), (f"demand period {p}, {month}", rate.tou[p], []))[2].append(k)
    return [{"name": name, "rate_per_kw": r, "steps": _ranges(ks)} for name, r, ks in groups.values()]


def expand_urdb(spec: dict, horizon: Any, *, base_dir: Path | None = None, file: str | None = None) -> dict:
    """The ``tariff`` of a constraint from ``{"type": "urdb", "path": ..., "monthly_kwh": ...}``.

    ``horizon`` is the constraint's horizon (``start`` already a concrete local time).  Returns
    ``{"energy": {"type": "series", ...}, "demand_charges": [...], "fixed_monthly_charge": ...,
    "name": ..., "demand_periods": [...], "currency": "USD"}`` (see :func:`demand_charges`).
    """
    allowed = {"type", "path", "monthly_kwh", "export", "currency"}
    extra = set(spec) - allowed
    if extra:
        raise BadInput(file, f"tariff.{sorted(extra)[0]}", f"is not a field of a URDB tariff (fields: {', '.join(sorted(allowed))})")
    if not isinstance(spec.get("path"), str):
        raise BadInput(file, "tariff.path", "is required: the URDB JSON file")
    from industriverse.model.series import resolve_data_path  # inside the data roots, as CSV series

    path = resolve_data_path(spec["path"], base_dir, field="tariff.path", file=file)
    mk = spec.get("monthly_kwh")
    if mk is not None and (isinstance(mk, bool) or not isinstance(mk, (int, float)) or mk < 0):
        raise BadInput(file, "tariff.monthly_kwh", f"must be a non-negative number of kWh, got {mk!r}")
    rate = UrdbRate(load_urdb(path, file=file), path, monthly_kwh=mk)
    try:
        start = horizon["start"] if isinstance(horizon["start"], datetime) else datetime.fromisoformat(str(horizon["start"]))
        hours, step_min = float(horizon["hours"]), float(horizon["step_minutes"])
        steps = int(round(hours * 60 / step_min))
        if steps <= 0 or steps > 100_000:
            raise ValueError
    except (KeyError, TypeError, ValueError):
        raise BadInput(file, "horizon", "a URDB tariff needs a valid horizon (start, hours, step_minutes)") from None
    times = [at(start, step_min * k / 60.0) for k in range(steps)]
    prices = [rate.price(t) for t in times]
    periods = sorted({p for p in (rate.demand_period(t) for t in times) if p is not None})
    out = {
        "energy": {"type": "series", "values": prices, "step_minutes": step_min},
        "demand_charges": demand_charges(rate, times),
        "fixed_monthly_charge": rate.fixed_monthly_charge(),
        "name": " · ".join(str(rate.rate[k]) for k in ("utility", "name") if rate.rate.get(k)) or path.name,
        "demand_periods": [{"period": p, "rate_per_kw": rate.tou[p]} for p in periods],
        "currency": spec.get("currency", "USD"),
    }
    if "export" in spec:
        out["export"] = spec["export"]
    return out
