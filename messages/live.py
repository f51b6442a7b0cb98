"""Messages of the live loop on MQTT (plant ↔ operate daemon), schema version 1.

Topics under ``industriverse/<site>/``:

``telemetry``  plant → us, every control step (QoS 0: the next reading supersedes a lost one)
``setpoints``  us → plant, one per telemetry reading (QoS 1: a lost set-point would leave the plant on stale
               values); ``mode: baseline`` tells the plant to run its own baseline controller (rollback)
``status``     the plant's ``online``/``offline`` (retained; ``offline`` is also its MQTT last will);
               ``status/operator`` the same for the operate daemon

Times are the plant's local clock, ISO 8601 (``2026-01-13T06:15:00``), the clock of the plan.
"""
from __future__ import annotations

import math
from datetime import datetime
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

TOPIC_ROOT = "industriverse"
SITE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


def topic(site: str, kind: str) -> str:
    """``industriverse/<site>/<kind>`` (kind: telemetry, setpoints, status, status/operator)."""
    return f"{TOPIC_ROOT}/{site}/{kind}"


class _Live(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    TYPE: ClassVar[str] = ""
    schema_version: Literal[1] = 1


def _finite(values: dict[str, float], what: str) -> dict[str, float]:
    for k, v in values.items():
        if not math.isfinite(v):
            raise ValueError(f"{what}.{k} must be a finite number, got {v!r}")
    return values


class Telemetry(_Live):
    """A plant reading at the end of one control step (plant → us)."""

    TYPE: ClassVar[str] = "live.telemetry"

    site: str = Field(pattern=SITE_PATTERN)
    time: datetime = Field(description="plant time of the reading (the state's time), local ISO 8601")
    step: int = Field(ge=0, description="control steps since the plant started")
    nodes: dict[str, float] = Field(description="measured node states: °C for thermal nodes, kWh for storage nodes")
    actuators: dict[str, float] = Field(default_factory=dict, description="kW applied over the step that ended")
    disturbances: dict[str, float] = Field(default_factory=dict, description="measured disturbances over the step that ended (°C, kW)")
    power_kw: float = Field(description="mean electric site power over the step that ended, kW (+ import)")
    controller: Literal["setpoints", "baseline"] = Field("setpoints", description="what drove the actuators: our set-points or the plant's own baseline")
    setpoint_version: int | None = Field(None, description="capsule_version of the set-points applied (None on the baseline)")
    faults: list[str] = Field(default_factory=list, description="active injected faults (emulated plant only)")

    _nodes = field_validator("nodes")(lambda v: _finite(v, "nodes"))
    _acts = field_validator("actuators")(lambda v: _finite(v, "actuators"))
    _dist = field_validator("disturbances")(lambda v: _finite(v, "disturbances"))

    @field_validator("power_kw")
    @classmethod
    def _power(cls, v):
        if not math.isfinite(v):
            raise ValueError("power_kw must be finite")
        return v


class Setpoints(_Live):
    """Actuator set-points for the plant (us → plant), valid from ``time`` until ``valid_until``."""

    TYPE: ClassVar[str] = "live.setpoints"

    site: str = Field(pattern=SITE_PATTERN)
    time: datetime = Field(description="plant time the set-points answer (the reading's time)")
    valid_until: datetime = Field(description="plant time after which the plant must fall back to its baseline")
    mode: Literal["capsule", "baseline"] = Field("capsule", description="baseline: run your own baseline controller (rollback, or no plan)")
    activity_id: str | None = Field(None, description="the gateway's deployment activity of the capsule dispatched")
    capsule_version: int | None = Field(None, description="version of the capsule dispatched")
    actuators: dict[str, float] = Field(default_factory=dict, description="{actuator: kW} (empty in baseline mode)")
    reason: str | None = Field(None, description="why the plant is sent to its baseline")

    _acts = field_validator("actuators")(lambda v: _finite(v, "actuators"))


class Status(_Live):
    """``online``/``offline`` of a plant or an operate daemon (retained; ``offline`` is the last will)."""

    TYPE: ClassVar[str] = "live.status"

    site: str = Field(pattern=SITE_PATTERN)
    role: Literal["plant", "operator"]
    state: Literal["online", "offline"]
    detail: str | None = None


LIVE_MODELS: tuple[type[_Live], ...] = (Telemetry, Setpoints, Status)


def live_json_schemas() -> dict[str, dict]:
    """JSON Schema of each live message, keyed by its type (``live.telemetry`` ...)."""
    out = {}
    for model in LIVE_MODELS:
        schema = model.model_json_schema()
        schema["title"] = model.TYPE
        schema["description"] = (model.__doc__ or "").strip().splitlines()[0]
        out[model.TYPE] = schema
    return out


__all__ = ["LIVE_MODELS", "Setpoints", "Status", "Telemetry", "TOPIC_ROOT", "live_json_schemas", "topic"]
