"""Horizons in real time: now, next_hour, tomorrow, IANA time zones with DST, past dates refused."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from industriverse.errors import BadInput
from industriverse.model.constraint import Horizon, freeze_horizon, local_day_hours, past_start, resolve_start
from industriverse.model.mapping import map_constraint

ROOT = Path(__file__).resolve().parents[1]
BERLIN = "Europe/Berlin"


def test_relative_starts():
    now = datetime(2026, 3, 28, 14, 37, 12, tzinfo=ZoneInfo(BERLIN))
    assert resolve_start("now", timezone=BERLIN, step_minutes=15, now=now) == datetime(2026, 3, 28, 14, 30, tzinfo=ZoneInfo(BERLIN))
    assert resolve_start("next_hour", timezone=BERLIN, now=now) == datetime(2026, 3, 28, 15, 0, tzinfo=ZoneInfo(BERLIN))
    assert resolve_start("tomorrow", timezone=BERLIN, now=now) == datetime(2026, 3, 29, 0, 0, tzinfo=ZoneInfo(BERLIN))
    # "now" given in another zone is read on the horizon's clock
    utc = datetime(2026, 3, 28, 23, 30, tzinfo=timezone.utc)  # 00:30 on the 29th in Berlin
    assert resolve_start("tomorrow", timezone=BERLIN, now=utc).day == 30
    h = Horizon.model_validate({"start": "tomorrow", "hours": 24, "step_minutes": 60, "timezone": BERLIN})
    assert h.start.tzinfo is not None and h.start.hour == 0 and h.start > datetime.now(ZoneInfo(BERLIN))


def test_dst_days_have_23_and_25_hours_and_clock_series_follow_the_local_clock():
    spring = datetime(2026, 3, 29, tzinfo=ZoneInfo(BERLIN))  # clocks jump 02:00 -> 03:00
    autumn = datetime(2026, 10, 25, tzinfo=ZoneInfo(BERLIN))  # clocks fall back 03:00 -> 02:00
    assert local_day_hours(spring) == 23 and local_day_hours(autumn) == 25
    assert local_day_hours(datetime(2026, 3, 30, tzinfo=ZoneInfo(BERLIN))) == 24
    raw = {
        "horizon": {"start": "2026-03-29T00:00", "hours": "day", "step_minutes": 60, "timezone": BERLIN},
        "network": {"nodes": [{"name": "zone", "capacity_j_per_k": 1e6}],
                    "boundaries": [{"name": "ambient", "disturbance": "ambient"}],
                    "conductances": [{"between": ["zone", "ambient"], "w_per_k": 100.0}],
                    "actuators": [{"name": "heater", "node": "zone", "kind": "heater", "max_kw": 10.0}]},
        "initial_state": {"zone": 21.0}, "disturbances": {"ambient": 5.0},
        "tariff": {"energy": {"type": "daily_profile", "values": list(range(24))}},
    }
    p = map_constraint("hvac", raw, file="c.json")
    assert p.H == 23
    # step k starts k real hours after midnight: the local clock skips 02:00
    np.testing.assert_array_equal(p.price, [0, 1] + list(range(3, 24)))
    raw["horizon"]["start"] = "2026-10-25T00:00"
    p = map_constraint("hvac", raw, file="c.json")
    assert p.H == 25
    np.testing.assert_array_equal(p.price, [0, 1, 2, 2] + list(range(3, 24)))  # 02:00 twice


def test_freeze_and_bad_zone():
    frozen = freeze_horizon({"horizon": {"start": "next_hour", "hours": "day", "step_minutes": 30, "timezone": BERLIN}})
    start = datetime.fromisoformat(frozen["horizon"]["start"])
    assert start.minute == 0 and start.utcoffset() is not None and frozen["horizon"]["hours"] in (23.0, 24.0, 25.0)
    with pytest.raises(BadInput, match="horizon.*unknown IANA time zone 'Mars/Olympus'"):
        map_constraint("hvac", {"horizon": {"start": "now", "hours": 24, "step_minutes": 60, "timezone": "Mars/Olympus"}},
                       file="c.json")


def test_past_start():
    h = Horizon.model_validate({"start": "2026-01-13T00:00", "hours": 24, "step_minutes": 15})
    assert past_start(h, now=datetime(2026, 1, 13, 0, 10)) is None  # still inside the first step
    assert past_start(h, now=datetime(2026, 1, 13, 0, 15)) is not None
    h = Horizon.model_validate({"start": "now", "hours": 24, "step_minutes": 15, "timezone": BERLIN})
    assert past_start(h) is None


def test_strike_loop_refuses_a_past_horizon_unless_allowed(tmp_path):
    c = json.loads((ROOT / "examples" / "hvac_testcase1.json").read_text())
    path = tmp_path / "c.json"
    path.write_text(json.dumps(c))
    env = {k: v for k, v in os.environ.items() if k != "INDUSTRIVERSE_ALLOW_PAST"}
    env["INDUSTRIVERSE_HOME"] = str(tmp_path / "home")
    done = subprocess.run([sys.executable, str(ROOT / "cli" / "run_client_strike_loop.py"), "--domain", "hvac",
                           "--constraint_json", str(path), "--quiet"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "field 'horizon.start'" in done.stderr and "--allow-past" in done.stderr and "Traceback" not in done.stderr
