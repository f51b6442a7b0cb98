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
