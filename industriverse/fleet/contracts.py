"""Client contracts of the regiment: who gets a strike, for which constraint, how often.

A contracts file (YAML)::

    contracts:
      - id: boptest-zone              # unique; names the contract in the store and the capsule
        client: BOPTEST testcase1
        domain: hvac
        constraint: hvac_testcase1.json   # relative to the contracts file
        schedule: {every_minutes: 60}     # or {daily_at: "05:30"} (local time)
        active: true
        roll_horizon: false               # true: each strike plans from the start of its period

A contract is *due* once per period: the period of an interval schedule is
``floor(epoch_seconds / interval)``; of a daily schedule, the calendar day of the latest
``daily_at`` instant at or before now.  The store deduplicates ``(contract, period)``, so a
restarted daemon never publishes twice for one period.
"""
from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from industriverse.model.constraint import absolute_csv_paths, read_constraint_file
from industriverse.errors import BadInput
from industriverse.model.canonical import read_yaml


class Schedule(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    every_minutes: float | None = Field(None, gt=0)
    daily_at: str | None = None

    @field_validator("daily_at")
    @classmethod
    def _clock(cls, v):
        if v is not None and not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", v):
            raise ValueError("daily_at must be a local clock time HH:MM")
        return v

    @model_validator(mode="after")
    def _exactly_one(self):
        if (self.every_minutes is None) == (self.daily_at is None):
            raise ValueError("give exactly one of every_minutes or daily_at")
        return self

    def period(self, now: datetime) -> tuple[str, datetime]:
        """``(period key, period start)`` containing ``now`` (local time, naive)."""
        if self.every_minutes is not None:
            seconds = self.every_minutes * 60
            n = int(now.timestamp() // seconds)
            return f"every{self.every_minutes:g}m:{n}", datetime.fromtimestamp(n * seconds)
        at = time.fromisoformat(self.daily_at)
        start = datetime.combine(now.date(), at)
        if start > now:
            start -= timedelta(days=1)
        return f"daily{self.daily_at}:{start.date().isoformat()}", start


class Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    client: str = Field(min_length=1)
    domain: str = Field(min_length=1)
    constraint: str = Field(min_length=1, description="constraint JSON, relative to the contracts file")
    schedule: Schedule
    active: bool = True
    roll_horizon: bool = False


class ContractsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    contracts: list[Contract]

    @model_validator(mode="after")
    def _unique(self):
        ids = [c.id for c in self.contracts]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"duplicate contract id(s): {', '.join(dup)}")
        return self


def load_contracts(path: str | Path) -> tuple[list[Contract], Path]:
    """Read and validate a contracts file; every problem is :class:`BadInput` naming the field.

    Also checks that each contract's domain exists and its constraint file is valid for it.
    Returns the contracts and the directory constraint paths are relative to.
    """
    from industriverse.model.catalog import list_domains
    from industriverse.model.mapping import map_constraint

    path = Path(path)
    raw = read_yaml(path)  # stat, size, depth, integer-length and finite-number limits
    try:
        parsed = ContractsFile.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = err["loc"]
        if len(loc) >= 2 and loc[0] == "contracts" and isinstance(loc[1], int) and isinstance(raw, dict):
            try:
                cid = raw["contracts"][loc[1]].get("id")
                loc = ("contracts", cid or loc[1]) + tuple(loc[2:])
            except (AttributeError, IndexError, KeyError, TypeError):
                pass
        field = ".".join(str(p) for p in loc) or "contracts"  # the file-level check is on the list
        msg = "is required" if err["type"] == "missing" else err["msg"].removeprefix("Value error, ")
        raise BadInput(str(path), field, msg) from None
    base = path.parent
    for c in parsed.contracts:
        if c.domain not in list_domains():
            raise BadInput(str(path), f"contracts.{c.id}.domain", f"unknown domain '{c.domain}' (known: {', '.join(list_domains())})")
        cpath = base / c.constraint
        map_constraint(c.domain, read_constraint_file(cpath), file=str(cpath), base_dir=cpath.parent)
    return parsed.contracts, base


def contract_request(contract: Contract, base: Path, period_start: datetime) -> dict:
    """The constraint JSON of one strike of ``contract`` (horizon rolled to the period when asked)."""
    path = base / contract.constraint
    raw = absolute_csv_paths(read_constraint_file(path), path.parent)
    raw.setdefault("client", contract.client)
    raw["contract_id"] = contract.id
    if contract.roll_horizon:
        raw.setdefault("horizon", {})["start"] = period_start.isoformat(timespec="minutes")
    return raw
