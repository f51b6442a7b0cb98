"""URDB v8 tariffs: energy schedules, flat and time-of-use demand, fixed charge, tiers refused."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from strike_helpers import one_zone_heater

from industriverse.errors import BadInput
from industriverse.model.mapping import map_constraint

RATE = Path(__file__).resolve().parents[1] / "examples" / "building" / "rate_sce_gs2_tou_b.json"


@pytest.fixture(autouse=True)
def _examples_are_a_data_root(monkeypatch, tmp_path):
    """Rates are named by absolute path here: the examples and the test's own directory are data roots."""
    monkeypatch.setenv("INDUSTRIVERSE_DATA_ROOTS", os.pathsep.join([str(RATE.parent), str(tmp_path)]))


def _constraint(start: str, tariff: dict, hours: float = 24) -> dict:
    return {
        "horizon": {"start": start, "hours": hours, "step_minutes": 60},
        **one_zone_heater(),
        "disturbances": {"ambient": 5.0},
        "tariff": tariff,
    }


def test_winter_weekday_schedule_and_flat_demand():
    p = map_constraint("hvac", _constraint("2026-01-13T00:00", {"type": "urdb", "path": str(RATE)}), file="c.json")
    expected = np.array([0.0712] * 8 + [0.09368] * 13 + [0.0712] * 3)  # the record's January weekday row
    np.testing.assert_allclose(p.price, expected)
    # flat only (winter has no time-of-use demand charge), on the month's peak
    assert p.demand_charge == 0 and [(n, r, m.all()) for n, r, m in p.demand_groups] == [("flat demand, 2026-01", 13.2, True)]
    t = p.constraint.tariff
    assert t.fixed_monthly_charge == pytest.approx(259.2) and "GS-2 TOU B" in t.name


def test_summer_weekday_adds_the_on_peak_demand_rate_and_weekends_are_off_peak():
    p = map_constraint("hvac", _constraint("2026-07-14T00:00", {"type": "urdb", "path": "rate_sce_gs2_tou_b.json"}),
                       file="c.json", base_dir=RATE.parent)
    assert p.price[0] == pytest.approx(0.066) and p.price[9] == pytest.approx(0.08888) and p.price[13] == pytest.approx(0.1355)
    # one peak per demand period: the flat charge on the whole day, mid-peak (5.3) and on-peak (18.11) on their hours
    groups = {n: (r, np.flatnonzero(m)) for n, r, m in p.demand_groups}
    assert set(groups) == {"flat demand, 2026-07", "demand period 1, 2026-07", "demand period 2, 2026-07"}
    assert groups["flat demand, 2026-07"][0] == pytest.approx(13.2) and len(groups["flat demand, 2026-07"][1]) == 24
    assert groups["demand period 2, 2026-07"][0] == pytest.approx(18.11)
    assert list(groups["demand period 2, 2026-07"][1]) == list(np.flatnonzero(np.isclose(p.price, 0.1355)))  # on-peak, 12–18 h
    assert [d["rate_per_kw"] for d in p.constraint.tariff.demand_periods] == [0.0, 5.3, 18.11]
    sat = map_constraint("hvac", _constraint("2026-07-18T00:00", {"type": "urdb", "path": str(RATE)}), file="c.json")
    np.testing.assert_allclose(sat.price, 0.066)
    assert [(n, r) for n, r, _ in sat.demand_groups] == [("flat demand, 2026-07", 13.2)]


def _hand_made_rate(path: Path) -> Path:
    """Energy 0.10 $/kWh at every hour; a flat demand charge of 2 $/kW on the month's peak; a
    time-of-use demand charge of 20 $/kW on the weekday 12:00–18:00 peak (period 1), none otherwise
    (period 0); a fixed charge of 25 $/month."""
    rate = {"utility": "Hand-made", "name": "TOU demand test", "energyratestructure": [[{"rate": 0.10}]],
            "energyweekdayschedule": [[0] * 24] * 12, "energyweekendschedule": [[0] * 24] * 12,
            "flatdemandstructure": [[{"rate": 2.0}]], "flatdemandmonths": [0] * 12,
            "demandratestructure": [[{"rate": 0.0}], [{"rate": 20.0}]],
            "demandweekdayschedule": [[0] * 12 + [1] * 6 + [0] * 6] * 12, "demandweekendschedule": [[0] * 24] * 12,
            "fixedmonthlycharge": 25.0}
    path.write_text(json.dumps({"items": [rate]}))
    return path


def test_time_of_use_demand_charges_are_priced_per_period(tmp_path, monkeypatch):
    """Per-period pricing pre-heats a heavy zone before the on-peak hours (their demand costs 20 $/kW,
    the rest of the day's only the flat 2 $/kW); the single-peak upper bound (22 $/kW on the
    day's peak) flattens the load instead.  The plan's cost is the bill computed by hand."""
    from industriverse.plan.optimize import optimize

    c = _constraint("2026-01-13T00:00", {"type": "urdb", "path": str(_hand_made_rate(tmp_path / "rate.json"))})
    c["network"]["nodes"][0]["capacity_j_per_k"] = 2e7  # 22 kWh per 4 K of band: worth pre-heating
    per_period = map_constraint("hvac", c, file="c.json")
    assert [(n, r) for n, r, _ in per_period.demand_groups] == [("flat demand, 2026-01", 2.0), ("demand period 1, 2026-01", 20.0)]
    single = map_constraint("hvac", c | {"tariff": {"energy": 0.10, "demand_charge_per_kw": 22.0}}, file="c.json")
    u_pp = np.array([optimize(per_period)["plan"]["heater"]]).T
    u_sp = np.array([optimize(single)["plan"]["heater"]]).T

    def bill(u):  # by hand: hourly steps, so each 15-minute window is one step
        P = per_period.site_power(u)
        return 0.10 * P.sum() + 2.0 * P.max() + 20.0 * P[12:18].max()

    P_pp, P_sp = per_period.site_power(u_pp), per_period.site_power(u_sp)
    assert float(per_period.kpis(u_pp)["cost"]) == pytest.approx(bill(u_pp), rel=1e-9)
    assert float(per_period.kpis(u_sp)["cost"]) == pytest.approx(bill(u_sp), rel=1e-9)
    opt = optimize(per_period)
    assert opt["objective"]["cost"] == pytest.approx(bill(u_pp), rel=1e-6)
    assert [d["peak_kw"] for d in opt["objective"]["demand_charges"]] == pytest.approx([P_pp.max(), P_pp[12:18].max()], rel=1e-6)
    # the plans differ: per period, the on-peak hours draw less and the morning more
    assert P_pp[12:18].max() < P_sp[12:18].max() - 0.5
    assert P_pp.max() > P_sp.max() + 0.5
    assert bill(u_pp) < bill(u_sp) - 5.0  # the single-peak plan pays more on the real tariff
    # the simulator charges each period on its own peak too (no noise here: every trajectory is the plan)
    from industriverse.verify.simulate import simulate

    no_noise = {"process_noise": 0.0, "forecast_error": {"ambient": {"std": 0.0, "correlation_hours": 1.0}}}
    quiet = map_constraint("hvac", c | {"uncertainty": no_noise}, file="c.json")
    import industriverse.verify.simulate as simulate_module

    for kernel in ("never", "always"):  # the compiled kernel keeps one peak: per-period charges take the numpy path
        monkeypatch.setattr(simulate_module, "FUSED", kernel)
        sim = simulate(quiet, u_pp, ensemble_size=2, seed=0)
        P_sim = np.array(sim["plan"]["nominal"]["power_kw"])
        assert sim["plan"]["per_trajectory"]["cost"][0] == pytest.approx(
            0.10 * P_sim.sum() + 2.0 * P_sim.max() + 20.0 * P_sim[12:18].max(), rel=1e-6), kernel
        assert sim["plan"]["per_trajectory"]["cost"][0] == pytest.approx(bill(u_pp), rel=1e-3), kernel
    # and the single-peak price is an upper bound of the real charge for every plan
    for u in (u_pp, u_sp):
        assert float(single.kpis(u)["cost"]) >= bill(u) - 1e-9


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
