"""The baseline controllers: each does what the site's controller does today."""
from __future__ import annotations

import numpy as np
import pytest

from industriverse.verify.baselines import Hysteresis, Proportional, SelfConsumption, make_baseline
from industriverse.errors import BadInput
from industriverse.model.mapping import map_constraint
from industriverse.verify.simulate import run_ensemble, simulate

HORIZON = {"start": "2026-01-13T00:00", "hours": 24, "step_minutes": 15}


def problem(domain, **extra):
    return map_constraint(domain, {"horizon": HORIZON, **extra})


def test_proportional_law_and_limits():
    p = problem("hvac")
    ctrl = make_baseline(p)
    assert isinstance(ctrl, Proportional)
    ctrl.start(4)
    x = np.array([[18.0], [21.0], [21.4], [23.0]])
    u = ctrl(0, x, p.d[0][None, :])
    # 10 kW/K below 21 + 0.5 °C, clipped to the heater's 0..10 kW
    np.testing.assert_allclose(u[:, 0], [10.0, 5.0, 1.0, 0.0])


def test_proportional_keeps_the_zone_at_its_lower_band():
    p = problem("hvac")
    doc = simulate(p, None, ensemble_size=50, seed=0)
    zone = np.array(doc["baseline"]["nominal"]["states"]["zone"])
    assert np.all(zone[1:] >= 21.0) and np.all(zone[1:] <= 21.5)
    # steady state: the heat loss to the ambient is G (T − T_amb) = gain (21.5 − T)
    amb = p.d[:, 0]
    k = 40  # well past the initial transient, ambient changes slowly
    expected = (10.0 * 21.5 + 0.1 * amb[k]) / (10.0 + 0.1)
    assert zone[k + 1] == pytest.approx(expected, abs=0.05)
    power = np.array(doc["baseline"]["nominal"]["power_kw"])
    assert np.all(power >= 0) and np.all(power <= 10 / 0.99 + 1e-9)


def test_proportional_cools_with_a_chiller():
    # node and boundary names of the hvac domain: its defaults (initial state, band) merge into a client network
    raw = {
        "horizon": HORIZON,
        "network": {"nodes": [{"name": "zone", "capacity_j_per_k": 5e5}],
                    "boundaries": [{"name": "ambient", "disturbance": "ambient"}],
                    "conductances": [{"between": ["zone", "ambient"], "w_per_k": 150.0}],
                    "actuators": [{"name": "ac", "node": "zone", "kind": "chiller", "max_kw": 8.0,
                                   "cop": {"model": "constant", "value": 3.0}}]},
        "initial_state": {"zone": 27.0},
        "envelope": {"zone": {"min": 20.0, "max": 25.0}},
        "disturbances": {"ambient": 32.0},
        "uncertainty": {"forecast_error": {"ambient": {"std": 0.0, "correlation_hours": 1.0}}},
    }
    p = map_constraint("hvac", raw)
    ctrl = make_baseline(p)
    ctrl.start(2)
    u = ctrl(0, np.array([[24.0], [25.2]]), p.d[0][None, :])
    np.testing.assert_allclose(u[:, 0], [0.0, 10.0 * (25.2 - 24.5)])
    doc = simulate(p, None, ensemble_size=10, seed=0)
    zone = doc["baseline"]["nominal"]["states"]["zone"]
    assert zone[-1] < 25.0
    power = np.array(doc["baseline"]["nominal"]["power_kw"])
    np.testing.assert_allclose(power, np.array(doc["baseline"]["nominal"]["plan_kw"]["ac"]) / 3.0, rtol=1e-12)


def test_hysteresis_switches_per_trajectory():
    p = problem("cold_storage", baseline={"controller": "hysteresis", "node": "air", "on_above": 4.0, "off_below": 1.0})
    ctrl = make_baseline(p)
    assert isinstance(ctrl, Hysteresis) and ctrl.on_above == 4.0 and ctrl.off_below == 1.0
    ctrl.start(3)
    air = p.nodes.index("air")

    def at(*temps):
        x = np.tile(p.x0, (len(temps), 1))
        x[:, air] = temps
        return ctrl(0, x, p.d[0][None, :])[:, 0]

    np.testing.assert_allclose(at(4.5, 2.0, 0.5), [6.0, 0.0, 0.0])   # on above 4 °C, off below 1 °C
    np.testing.assert_allclose(at(3.0, 3.0, 3.0), [6.0, 0.0, 0.0])   # in between: each keeps its state
    np.testing.assert_allclose(at(0.9, 4.1, 3.0), [0.0, 6.0, 0.0])


def test_hysteresis_keeps_the_air_in_band():
    p = problem("cold_storage")
    doc = simulate(p, None, ensemble_size=100, seed=1)
    r = doc["baseline"]
    air = np.array(r["nominal"]["states"]["air"])
    assert np.all(air[1:] >= 0.0) and np.all(air[1:] <= 6.0)
    assert np.all(np.array(r["bands"]["air"]["p50"][1:]) >= 0.0) and np.all(np.array(r["bands"]["air"]["p50"][1:]) <= 6.0)
    # it cycles: within each 15-minute step the compressor is on (6 kW) for whole control minutes only
    mean_kw = np.array(r["nominal"]["plan_kw"]["compressor"])
    minutes_on = mean_kw / 6.0 * 15
    np.testing.assert_allclose(minutes_on, np.round(minutes_on), atol=1e-9)
    assert np.all((minutes_on > 0) & (minutes_on < 15))
    assert r["kpis"]["travel_kw"]["mean"] > 96 * 2 * 6.0  # at least one on and one off per step


def test_hysteresis_thresholds_default_to_the_band():
    p = problem("cold_storage", baseline={"controller": "hysteresis", "node": "goods", "on_above": None, "off_below": None,
                                          "deadband_k": 0.5})
    ctrl = make_baseline(p)
    assert (ctrl.on_above, ctrl.off_below) == (4.5, 2.5)  # goods band 2..5


def test_self_consumption_rule():
    p = problem("microgrid")
    ctrl = make_baseline(p)
    assert isinstance(ctrl, SelfConsumption)
    ctrl.start(5)
    names = p.network.disturbance_names
    load, pv = names.index("load"), names.index("pv")
    d = np.zeros((5, len(names)))
    d[:, load] = [0.5, 0.5, 4.0, 9.0, 2.0]
    d[:, pv] = [3.5, 9.0, 1.0, 0.0, 0.0]
    soc = np.array([[9.0], [9.0], [9.0], [9.0], [6.75]])
    u = ctrl(0, soc, d)
    charge, discharge = u[:, 0], u[:, 1]
    np.testing.assert_allclose(charge, [3.0, 5.0, 0.0, 0.0, 0.0])      # surplus, capped at 5 kW
    np.testing.assert_allclose(discharge, [0.0, 0.0, 3.0, 5.0, 0.0])   # deficit, capped; nothing below the reserve
    # the terminal state of charge (6.75 kWh) is kept in reserve; without the reserve, down to the band (1.35)
    assert ctrl(0, np.array([[6.0]]), d[3:4])[0, 1] == 0.0
    p.constraint.baseline["terminal_reserve"] = False
    assert make_baseline(p)(0, np.array([[6.0]]), d[3:4])[0, 1] == 5.0
    # a full battery takes no more than what fills it
    u = ctrl(0, np.array([[13.5], [13.4], [13.4], [13.4], [13.4]]), d)
    assert u[0, 0] == 0.0 and 0 < u[1, 0] < 5.0
    room_kwh = 0.1
    assert u[1, 0] * 0.949 * 0.25 == pytest.approx(room_kwh)  # 15-minute control step, 0.949 one-way


def test_self_consumption_keeps_soc_in_band_and_avoids_imports():
    p = problem("microgrid")
    ens = run_ensemble(p, [make_baseline(p)], 50, seed=2)
    soc = ens.x[0, :, :, 0]
    assert soc.min() >= 1.35 - 1e-9 and soc.max() <= 13.5 + 1e-9
    assert soc[:, -1].min() >= 6.75 - 1e-6  # ends the day with the reserve the plan must keep too
    # during the sunny middle of the day the battery takes the surplus: the site imports nothing
    noon = slice(int(10 / 0.25), int(14 / 0.25))
    room = soc[:, noon] < 13.5 - 1e-6
    assert np.all(ens.power[0, :, noon][room[:, :]] <= 1e-9)


@pytest.mark.parametrize("baseline,field", [
    ({"controller": "pid"}, "baseline.controller"),
    ({"controller": "proportional", "gain": 3}, "baseline.gain"),
    ({"controller": "proportional", "gain_kw_per_k": 0}, "baseline.gain_kw_per_k"),
    ({"controller": "proportional", "control_minutes": -1}, "baseline.control_minutes"),
])
def test_bad_baseline_settings(baseline, field):
    p = map_constraint("hvac", {"horizon": HORIZON, "baseline": baseline})
    p.constraint.baseline.clear()
    p.constraint.baseline.update(baseline)  # replace, not merge over the domain's defaults
    with pytest.raises(BadInput) as exc:
        make_baseline(p, file="c.json")
    assert exc.value.field == field and exc.value.file == "c.json"


def test_bad_hysteresis_settings():
    for settings, field in (({"node": "attic"}, "baseline.node"), ({"on_above": 1.0, "off_below": 2.0}, "baseline.off_below")):
        p = problem("cold_storage", baseline=settings)
        with pytest.raises(BadInput) as exc:
            make_baseline(p, file="c.json")
        assert exc.value.field == field
