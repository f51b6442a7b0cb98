"""The "your own building" example: fitted network file, state from telemetry, EPW weather, URDB tariff."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from industriverse.errors import BadInput
from industriverse.model.constraint import read_constraint_file
from industriverse.model.mapping import load_problem

HERE = Path(__file__).resolve().parents[1] / "examples" / "building"


def test_the_example_constraint_maps_with_every_file_it_names():
    p = load_problem("hvac", HERE / "constraint.json")
    fitted = json.loads((HERE / "fitted.json").read_text())
    assert p.network.nodes[0].capacity_j_per_k == fitted["network"]["nodes"][0]["capacity_j_per_k"]
    assert p.constraint.uncertainty.process_noise == fitted["uncertainty"]["process_noise"]
    last = (HERE / "telemetry.csv").read_text().strip().splitlines()[-1].split(",")
    assert p.x0[0] == pytest.approx(float(last[1]), abs=0.3)  # the zone, filtered to its last reading
    assert 0 < p.x0[1] < 40  # the wall nobody measures, estimated
    assert p.constraint.tariff.fixed_monthly_charge == pytest.approx(259.2)
    assert p.H == 96 and p.start.utcoffset().total_seconds() == -5 * 3600


def test_file_references_report_their_field(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"network": "missing.json"}))
    with pytest.raises(BadInput, match="field 'network': no such network file"):
        read_constraint_file(tmp_path / "c.json")
    (tmp_path / "c.json").write_text(json.dumps({"initial_state": {"from_telemetry": "t.csv"}}))
    with pytest.raises(BadInput, match="initial_state.from_telemetry.*own 'network'"):
        read_constraint_file(tmp_path / "c.json")


def test_state_from_telemetry_is_taken_at_the_horizon_start(tmp_path):
    c = json.loads((HERE / "constraint.json").read_text())
    for name in ("fitted.json", "telemetry.csv", "site.epw", "rate_sce_gs2_tou_b.json"):
        (tmp_path / name).write_bytes((HERE / name).read_bytes())
    rows = (HERE / "telemetry.csv").read_text().splitlines()
    # a replay of 15 January 12:00: the reading then, not the last one of the file
    c["horizon"]["start"] = "2026-01-15T12:00"
    (tmp_path / "c.json").write_text(json.dumps(c))
    at_noon = next(r for r in rows if r.startswith("2026-01-15T12:00:00-05:00")).split(",")
    state = read_constraint_file(tmp_path / "c.json")["initial_state"]
    assert state["zone"] == pytest.approx(float(at_noon[1]), abs=0.3)
    # two hours after the last reading: the model carries the state on with the last inputs
    c["horizon"]["start"] = "2026-01-20T02:00"
    (tmp_path / "c.json").write_text(json.dumps(c))
    later = read_constraint_file(tmp_path / "c.json")["initial_state"]
    c["horizon"]["start"] = "2026-01-20T00:00"
    (tmp_path / "c.json").write_text(json.dumps(c))
    now = read_constraint_file(tmp_path / "c.json")["initial_state"]
    assert later["zone"] != pytest.approx(now["zone"], abs=1e-3)
