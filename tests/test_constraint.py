"""The client constraint and Map: the example's numbers, every class of bad input named."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from industriverse.model.catalog import list_domains, load_domain
from industriverse.errors import BadInput
from industriverse.model.mapping import load_problem, map_constraint

ROOT = Path(__file__).resolve().parents[1]
HVAC = json.loads((ROOT / "examples" / "hvac_testcase1.json").read_text())


def test_hvac_testcase1_maps_to_the_published_numbers():
    p = load_problem("hvac", ROOT / "examples" / "hvac_testcase1.json")
    assert (p.H, p.dt_s) == (96, 900.0)
    A, B, E = p.network.matrices
    assert A[0, 0] == pytest.approx(-1 / (0.01 * 1e6))          # -1/RC
    assert B[0, 0] == pytest.approx(1000 / 1e6)                  # 1 kW of heat into 1e6 J/K
    t = np.arange(96) * 0.25
    np.testing.assert_allclose(p.d[:, 0], 5 + 5 * np.sin(2 * np.pi * t / 24))
    # 2026-01-13 is a Tuesday: 14-18 h peak, 9-14 and 18-21 shoulder, else off-peak
    hours = t % 24
    expected = np.where((hours >= 14) & (hours < 18), 0.0888,
                        np.where(((hours >= 9) & (hours < 14)) | ((hours >= 18) & (hours < 21)), 0.05413, 0.0444))
    np.testing.assert_allclose(p.price, expected)
    np.testing.assert_allclose(p.emission, 0.6618)
    assert p.x_lo[1:, 0].min() == 21 and p.x_hi[1:, 0].max() == 24
    assert p.u_hi.max() == 10 and p.u_lo.min() == 0
    # electric power of 1 kW of heat at efficiency 0.99
    p0, W = p.linear_power()
    np.testing.assert_allclose(W, 1 / 0.99)


def test_weekend_gets_the_off_peak_price():
    raw = copy.deepcopy(HVAC)
    raw["horizon"]["start"] = "2026-01-17T00:00"  # a Saturday
    p = map_constraint("hvac", raw)
    np.testing.assert_allclose(p.price, 0.0444)


@pytest.mark.parametrize("domain", list_domains())
def test_every_domain_maps_with_its_defaults(domain):
    p = map_constraint(domain, {"horizon": {"start": "2026-01-13T00:00", "hours": 6, "step_minutes": 15}})
    assert p.H == 24 and np.all(np.isfinite(p.Ad)) and p.x0.shape == (p.n,)
    assert load_domain(domain).source  # every shipped domain cites where its parameters come from


def test_client_network_replaces_the_domain_network():
    raw = copy.deepcopy(HVAC)
    raw["network"]["nodes"][0]["capacity_j_per_k"] = 2e6
    p = map_constraint("hvac", raw)
    assert p.network.matrices[0][0, 0] == pytest.approx(-100 / 2e6)


def test_csv_disturbance_relative_to_the_constraint_file(tmp_path):
    raw = copy.deepcopy(HVAC)
    (tmp_path / "weather.csv").write_text("time,temp\n" + "".join(
        f"2026-01-13T{h:02d}:00,{h / 2}\n" for h in range(24)))
    raw["disturbances"]["ambient"] = {"type": "csv", "path": "weather.csv", "column": "temp", "time_column": "time"}
    f = tmp_path / "c.json"
    f.write_text(json.dumps(raw))
    p = load_problem("hvac", f)
    np.testing.assert_allclose(p.d[::4, 0], np.arange(24) / 2)
    np.testing.assert_allclose(p.d[1::4, 0], np.arange(24) / 2)  # held over the hour


def _mutate(path: str, value):
    raw = copy.deepcopy(HVAC)
    keys = path.split(".")
    node = raw
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node.setdefault(k, {})
    if value is _DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return raw


_DELETE = object()

BAD = [
    ("horizon", _DELETE, "horizon"),
    ("horizon.hours", -1, "horizon.hours"),
    ("horizon.hours", "x", "horizon.hours"),
    ("horizon.step_minutes", 7, "horizon"),
    ("horizon.start", "yesterday", "horizon.start"),
    ("envelope.zone.min", "warm", "envelope.zone.min"),
    ("envelope.zone.min", 25, "envelope.zone"),
    ("envelope.kitchen", {"min": 1}, "envelope.kitchen"),
    ("initial_state.zone", "hot", "initial_state.zone"),
    ("initial_state.attic", 3, "initial_state.attic"),
    ("disturbances.ambient", {"type": "sinusoid", "mean": 5}, "disturbances.ambient.amplitude"),
    ("disturbances.ambient", {"type": "wave"}, "disturbances.ambient"),
    ("disturbances.ambient", {"type": "series", "values": [1, 2]}, "disturbances.ambient.values"),
    ("disturbances.ambient", {"type": "csv", "path": "missing.csv", "column": "t"}, "disturbances.ambient.path"),
    ("tariff.energy", {"type": "time_of_use", "periods": [{"hours": [25, 3], "value": 1}], "default": 0}, "tariff.energy.periods.0.hours"),
    ("tariff.energy", None, "tariff.energy"),
    ("tariff.export", 1.0, "tariff.export"),
    ("tariff.demand_charge_per_kw", -1, "tariff.demand_charge_per_kw"),
    ("colour", "red", "colour"),
    ("network.actuators.0.max_kw", -3, "network.actuators.0.max_kw"),
    ("network.actuators.0.kind", "fusion", "network.actuators.0.kind"),
    ("network.conductances.0.between", ["zone", "moon"], "network"),
    ("network.nodes.0.capacity_j_per_k", 0, "network.nodes.0.capacity_j_per_k"),
    ("network.nodes", [], "network.nodes"),
    ("actuators.fan", {"max_kw": 2}, "actuators.fan"),
    ("actuators.heater", {"min_kw": 5, "max_kw": 2}, "actuators.heater.min_kw"),
    ("uncertainty.ensemble_size", 2, "uncertainty.ensemble_size"),
    ("uncertainty.max_violation_probability", 1.5, "uncertainty.max_violation_probability"),
    ("uncertainty.confidence", 0.3, "uncertainty.confidence"),
    ("uncertainty.process_noise", -0.1, "uncertainty.process_noise"),
    ("uncertainty.forecast_error.wind", {"std": 1, "correlation_hours": 1}, "uncertainty.forecast_error.wind"),
    ("uncertainty.forecast_error.ambient", {"std": 1, "correlation_hours": 0}, "uncertainty.forecast_error.ambient.correlation_hours"),
    ("budgets.energy_kwh", 0, "budgets.energy_kwh"),
    ("network.boundaries.0.disturbance", "sun", "disturbances.sun"),
]


@pytest.mark.parametrize("path,value,field", BAD, ids=[f"{p}={v!r}"[:60] for p, v, _ in BAD])
def test_bad_input_names_the_file_and_the_field(path, value, field):
    with pytest.raises(BadInput) as err:
        map_constraint("hvac", _mutate(path, value), file="client.json")
    assert err.value.field == field
    line = str(err.value)
    assert line.startswith("client.json: field ") and "\n" not in line


def test_unknown_domain_is_bad_input():
    with pytest.raises(BadInput, match="unknown domain 'nuclear'"):
        map_constraint("nuclear", HVAC)


@pytest.mark.parametrize("text,problem", [("{", "not valid JSON"), ("[1, 2]", "JSON object")])
def test_unreadable_files_are_bad_input(tmp_path, text, problem):
    f = tmp_path / "c.json"
    f.write_text(text)
    with pytest.raises(BadInput, match=problem):
        load_problem("hvac", f)
    with pytest.raises(BadInput, match="no such file"):
        load_problem("hvac", tmp_path / "absent.json")


def test_client_network_with_its_own_names_needs_none_of_the_domain_names():
    raw = {
        "horizon": {"start": "2026-01-13T00:00", "hours": 6, "step_minutes": 30},
        "network": {
            "nodes": [{"name": "room", "capacity_j_per_k": 5e5}],
            "boundaries": [{"name": "outside", "disturbance": "t_out"}],
            "conductances": [{"between": ["room", "outside"], "w_per_k": 50.0}],
            "actuators": [{"name": "radiator", "node": "room", "kind": "heater", "max_kw": 4.0}],
        },
        "initial_state": {"room": 20.0},
        "envelope": {"room": {"min": 19.0, "max": 23.0}},
        "disturbances": {"t_out": 0.0},
        "tariff": {"energy": 0.2},
    }
    p = map_constraint("hvac", raw, file="mine.json")
    assert p.nodes == ["room"] and p.actuators == ["radiator"] and p.H == 12
    assert p.constraint.uncertainty.forecast_error == {}  # the domain's (ambient) would name an unknown series
