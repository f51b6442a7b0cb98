"""Contracts files, schedules and periods of the regiment (no broker needed)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from industriverse.fleet.contracts import Schedule, load_contracts
from industriverse.errors import BadInput
from industriverse.fleet.regiment import due_requests, strike_id_for

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_contracts_cover_every_example():
    contracts, base = load_contracts(ROOT / "examples" / "contracts.yaml")
    assert {c.domain for c in contracts} == {"hvac", "hvac_two_zone", "cold_storage", "microgrid"}
    assert all((base / c.constraint).is_file() for c in contracts)


def test_interval_periods_are_fixed_windows():
    s = Schedule(every_minutes=60)
    a = s.period(datetime(2026, 11, 26, 10, 1))
    b = s.period(datetime(2026, 11, 26, 10, 59))
    c = s.period(datetime(2026, 11, 26, 11, 0))
    assert a == b and a[0] != c[0] and a[1] == datetime(2026, 11, 26, 10, 0)


def test_daily_periods_start_at_the_daily_time():
    s = Schedule(daily_at="05:30")
    assert s.period(datetime(2026, 11, 26, 5, 29)) == ("daily05:30:2026-11-25", datetime(2026, 11, 25, 5, 30))
    assert s.period(datetime(2026, 11, 26, 5, 30)) == ("daily05:30:2026-11-26", datetime(2026, 11, 26, 5, 30))


def test_due_requests_skip_inactive_contracts_and_roll_the_horizon(tmp_path):
    shutil.copy(ROOT / "examples" / "hvac_testcase1.json", tmp_path / "c.json")
    (tmp_path / "contracts.yaml").write_text(yaml.safe_dump({"contracts": [
        {"id": "a", "client": "A", "domain": "hvac", "constraint": "c.json", "schedule": {"daily_at": "06:00"}, "roll_horizon": True},
        {"id": "b", "client": "B", "domain": "hvac", "constraint": "c.json", "schedule": {"every_minutes": 30}, "active": False},
    ]}))
    contracts, base = load_contracts(tmp_path / "contracts.yaml")
    due = due_requests(contracts, base, datetime(2026, 11, 26, 7, 0))
    assert [d.contract.id for d in due] == ["a"]
    assert due[0].request["horizon"]["start"] == "2026-11-26T06:00"
    assert due[0].request["contract_id"] == "a"
    assert due[0].strike_id == strike_id_for("a", "daily06:00:2026-11-26")
    assert due_requests(contracts, base, datetime(2026, 11, 26, 23, 0))[0].strike_id == due[0].strike_id


BAD = [
    ({"contracts": [{"id": "a", "client": "A", "domain": "hvac", "constraint": "c.json"}]}, "contracts.a.schedule", "is required"),
    ({"contracts": [{"id": "a", "client": "A", "domain": "hvac", "constraint": "c.json", "schedule": {"daily_at": "25:00"}}]},
     "contracts.a.schedule.daily_at", "HH:MM"),
    ({"contracts": [{"id": "a", "client": "A", "domain": "hvac", "constraint": "c.json", "schedule": {}}]},
     "contracts.a.schedule", "exactly one"),
    ({"contracts": [{"id": "a", "client": "A", "domain": "fusion", "constraint": "c.json", "schedule": {"every_minutes": 5}}]},
     "contracts.a.domain", "unknown domain"),
    ({"contracts": [{"id": "a", "client": "A", "domain": "hvac", "constraint": "nope.json", "schedule": {"every_minutes": 5}}]},
     None, "no such file"),
    ({"contracts": [{"id": "a b", "client": "A", "domain": "hvac", "constraint": "c.json", "schedule": {"every_minutes": 5}}]},
     "contracts.a b.id", "pattern"),
    ({"contracts": [{"id": "a", "client": "A", "domain": "hvac", "constraint": "c.json", "schedule": {"every_minutes": 5}}] * 2},
     "contracts", "duplicate contract id"),
    ({"nothing": 1}, "contracts", "is required"),
]


@pytest.mark.parametrize("doc,field,text", BAD)
def test_bad_contracts_name_the_field(tmp_path, doc, field, text):
    shutil.copy(ROOT / "examples" / "hvac_testcase1.json", tmp_path / "c.json")
    path = tmp_path / "contracts.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(BadInput) as err:
        load_contracts(path)
    assert text in str(err.value)
    if field:
        assert err.value.field == field


def test_regiment_script_bad_input_exits_2(tmp_path):
    path = tmp_path / "contracts.yaml"
    path.write_text("contracts: [\n")
    done = subprocess.run([sys.executable, str(ROOT / "cli" / "orchestrate_full_regiment.py"), "--contracts", str(path), "--once"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "not valid YAML" in done.stderr and "Traceback" not in done.stderr


def test_contract_requests_carry_absolute_csv_paths(tmp_path):
    """Workers run in other folders (and on other machines): a relative CSV path must not reach them."""
    raw = json.loads((ROOT / "examples" / "hvac_testcase1.json").read_text())
    raw["disturbances"]["ambient"] = {"type": "csv", "path": "weather.csv", "column": "t"}
    (tmp_path / "weather.csv").write_text("t\n" + "5.0\n" * 96)
    (tmp_path / "c.json").write_text(json.dumps(raw))
    (tmp_path / "contracts.yaml").write_text(yaml.safe_dump({"contracts": [
        {"id": "a", "client": "A", "domain": "hvac", "constraint": "c.json", "schedule": {"every_minutes": 60}}]}))
    contracts, base = load_contracts(tmp_path / "contracts.yaml")
    request = due_requests(contracts, base, datetime(2026, 11, 26, 7, 0))[0].request
    assert request["disturbances"]["ambient"]["path"] == str((tmp_path / "weather.csv").resolve())
