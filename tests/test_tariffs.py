"""URDB v8 tariffs: energy schedules, flat and time-of-use demand, fixed charge, tiers refused."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from industriverse.errors import BadInput
from industriverse.model.mapping import map_constraint

RATE = Path(__file__).resolve().parents[1] / "examples" / "building" / "rate_sce_gs2_tou_b.json"


def _constraint(start: str, tariff: dict, hours: float = 24) -> dict:
    return {
        "horizon": {"start": start, "hours": hours, "step_minutes": 60},
        "network": {"nodes": [{"name": "zone", "capacity_j_per_k": 1e6}],
                    "boundaries": [{"name": "ambient", "disturbance": "ambient"}],
                    "conductances": [{"between": ["zone", "ambient"], "w_per_k": 100.0}],
                    "actuators": [{"name": "heater", "node": "zone", "kind": "heater", "max_kw": 10.0}]},
        "initial_state": {"zone": 21.0},
        "envelope": {"zone": {"min": 20.0, "max": 24.0}},
        "disturbances": {"ambient": 5.0},
        "tariff": tariff,
    }


def test_winter_weekday_schedule_and_flat_demand():
    p = map_constraint("hvac", _constraint("2026-01-13T00:00", {"type": "urdb", "path": str(RATE)}), file="c.json")
    expected = np.array([0.0712] * 8 + [0.09368] * 13 + [0.0712] * 3)  # the record's January weekday row
    np.testing.assert_allclose(p.price, expected)
    assert p.demand_charge == pytest.approx(13.2)  # flat only: winter has no time-of-use demand charge
    t = p.constraint.tariff
    assert t.fixed_monthly_charge == pytest.approx(259.2) and "GS-2 TOU B" in t.name


def test_summer_weekday_adds_the_on_peak_demand_rate_and_weekends_are_off_peak():
    p = map_constraint("hvac", _constraint("2026-07-14T00:00", {"type": "urdb", "path": "rate_sce_gs2_tou_b.json"}),
                       file="c.json", base_dir=RATE.parent)
    assert p.price[0] == pytest.approx(0.066) and p.price[9] == pytest.approx(0.08888) and p.price[13] == pytest.approx(0.1355)
    assert p.demand_charge == pytest.approx(13.2 + 18.11)
    assert [d["rate_per_kw"] for d in p.constraint.tariff.demand_periods] == [0.0, 5.3, 18.11]
    sat = map_constraint("hvac", _constraint("2026-07-18T00:00", {"type": "urdb", "path": str(RATE)}), file="c.json")
    np.testing.assert_allclose(sat.price, 0.066)
    assert sat.demand_charge == pytest.approx(13.2)


def test_tiers_beyond_the_first_are_refused_unless_the_consumption_stays_in_tier_one(tmp_path):
    doc = json.loads(RATE.read_text())
    doc["items"][0]["energyratestructure"][1] = [{"max": 500, "rate": 0.09, "unit": "kWh"}, {"rate": 0.12, "unit": "kWh"}]
    tiered = tmp_path / "tiered.json"
    tiered.write_text(json.dumps(doc))
    with pytest.raises(BadInput, match=r"energyratestructure\[1\].*2 tiers.*monthly_kwh"):
        map_constraint("hvac", _constraint("2026-01-13T00:00", {"type": "urdb", "path": str(tiered)}), file="c.json")
    with pytest.raises(BadInput, match="exceeds"):
        map_constraint("hvac", _constraint("2026-01-13T00:00", {"type": "urdb", "path": str(tiered), "monthly_kwh": 900}),
                       file="c.json")
    p = map_constraint("hvac", _constraint("2026-01-13T00:00", {"type": "urdb", "path": str(tiered), "monthly_kwh": 400}),
                       file="c.json")
    assert p.price[10] == pytest.approx(0.09)


def test_bad_urdb_input_names_the_field(tmp_path):
    with pytest.raises(BadInput, match="tariff.path.*no such URDB file"):
        map_constraint("hvac", _constraint("2026-01-13T00:00", {"type": "urdb", "path": "missing.json"}), file="c.json")
    doc = json.loads(RATE.read_text())
    doc["items"][0]["energyweekdayschedule"][3][5] = 7
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(BadInput, match=r"energyweekdayschedule\[3\]\[5\].*period 7"):
        map_constraint("hvac", _constraint("2026-01-13T00:00", {"type": "urdb", "path": str(bad)}), file="c.json")
    with pytest.raises(BadInput, match="tariff.rates"):
        map_constraint("hvac", _constraint("2026-01-13T00:00", {"type": "urdb", "path": str(RATE), "rates": 1}), file="c.json")
