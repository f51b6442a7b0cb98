"""optimize_diffusion_service.py: output fields, exit codes 0/1/2, field-naming errors, load_plan."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cli.optimize_diffusion_service import main
from industriverse.plan.optimize import load_plan

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "hvac_testcase1.json"
DAY = {"start": "2026-01-13T00:00", "hours": 24, "step_minutes": 15}
FIELDS = {"request", "request_dir", "domain", "kind", "method", "seed", "backoff", "horizon", "plan", "states", "power_kw",
          "objective", "lower_bound", "lower_bound_method", "gap", "feasible", "max_violation", "stats"}


def _write(tmp_path: Path, raw, name="c.json") -> Path:
    p = tmp_path / name
    p.write_text(raw if isinstance(raw, str) else json.dumps(raw))
    return p


def test_script_runs_as_a_file_and_writes_the_optimization_json(tmp_path):
    out = tmp_path / "deep" / "opt.json"
    proc = subprocess.run([sys.executable, str(ROOT / "cli" / "optimize_diffusion_service.py"), "--domain", "hvac",
                           "--constraint_json", str(EXAMPLE), "--output", str(out)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert FIELDS <= set(doc)
    H = doc["horizon"]["steps"]
    assert H == 96 and len(doc["horizon"]["times"]) == H + 1 and doc["horizon"]["times"][0] == "2026-01-13T00:00"
    assert doc["horizon"]["step_minutes"] == 15
    assert list(doc["plan"]) == ["heater"] and len(doc["plan"]["heater"]) == H
    assert len(doc["states"]["zone"]) == H + 1 and len(doc["power_kw"]) == H
    assert doc["method"] == "lp" and doc["feasible"] is True and doc["domain"] == "hvac" and doc["kind"] == "hvac"
    assert doc["request"] == json.loads(EXAMPLE.read_text())
    assert doc["request_dir"] == str(EXAMPLE.parent)
    assert doc["lower_bound"] <= doc["objective"]["cost"] and doc["gap"] < 1e-6
    assert set(doc["objective"]) >= {"cost", "energy_kwh", "emissions_kg", "peak_kw", "currency"}
    for key in ("seconds", "evaluations", "iterations", "particles"):
        assert key in doc["stats"]


def test_stdout_and_idf_method_and_seed(capsys):
    assert main(["--domain", "hvac", "--constraint_json", str(EXAMPLE), "--method", "idf", "--seed", "4"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["method"] == "idf" and doc["seed"] == 4 and doc["stats"]["particles"] > 0
    assert doc["feasible"] and doc["gap"] < 0.03


def test_nonlinear_domain_reports_the_relaxation_bound(tmp_path, capsys):
    c = _write(tmp_path, {"horizon": DAY})
    assert main(["--domain", "cold_storage", "--constraint_json", str(c), "--method", "auto"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["method"] == "idf" and doc["kind"] == "cold_storage"
    assert doc["lower_bound"] is not None and doc["lower_bound"] <= doc["objective"]["cost"]
    assert doc["lower_bound_method"].startswith("relaxation")
    assert 0 <= doc["gap"] < 0.2
    assert doc["stats"]["relaxation_premise"]["holds"] is True


def test_backoff_tightens_the_plan_and_load_plan_rebuilds_it(tmp_path, capsys):
    out = tmp_path / "o.json"
    assert main(["--domain", "hvac", "--constraint_json", str(EXAMPLE), "--backoff", "0.5", "--output", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["backoff"] == {"zone": 0.5}
    assert min(doc["states"]["zone"][1:]) >= 21.5 - 1e-6
    problem, u = load_plan(doc)
    assert u.shape == (96, 1)
    np.testing.assert_allclose(problem.backoff, [0.5])
    np.testing.assert_allclose(problem.predict(u)[:, 0], doc["states"]["zone"], atol=1e-9)
    assert float(problem.kpis(u)["cost"]) == pytest.approx(doc["objective"]["cost"], rel=1e-12)


def test_load_plan_resolves_csv_next_to_the_request(tmp_path, capsys):
    d = tmp_path / "client"
    d.mkdir()
    hours = np.arange(96) * 0.25
    (d / "weather.csv").write_text("ambient\n" + "\n".join(f"{2 + 3 * np.sin(2 * np.pi * h / 24):.3f}" for h in hours) + "\n")
    c = _write(d, {"horizon": DAY, "disturbances": {"ambient": {"type": "csv", "path": "weather.csv", "column": "ambient"}}})
    out = tmp_path / "o.json"
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)  # the CSV path is relative to the constraint file, not to the working directory
        assert main(["--domain", "hvac", "--constraint_json", str(c), "--output", str(out)]) == 0
    finally:
        os.chdir(cwd)
    doc = json.loads(out.read_text())
    assert doc["request_dir"] == str(d.resolve())
    problem, u = load_plan(doc)
    np.testing.assert_allclose(problem.predict(u)[:, 0], doc["states"]["zone"], atol=1e-9)


def test_infeasible_exits_1_and_names_each_conflict_on_its_own_line(tmp_path, capsys):
    c = _write(tmp_path, {"horizon": DAY, "envelope": {"zone": {"min": 30, "max": 35}}})
    assert main(["--domain", "hvac", "--constraint_json", str(c)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("infeasible:")
    assert any("envelope zone.min 30 °C" in ln and "step 1 (00:15)" in ln and "short by" in ln for ln in err[1:])
    c2 = _write(tmp_path, {"horizon": DAY, "envelope": {"north": {"min": 26, "max": 30}, "south": {"min": 10, "max": 14}}}, "two.json")
    assert main(["--domain", "hvac_two_zone", "--constraint_json", str(c2)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "north.min" in err[1] + err[2] and "south.max" in err[1] + err[2]


@pytest.mark.parametrize("raw,field", [
    ({"horizon": DAY, "envelope": {"kitchen": {"min": 20}}}, "envelope"),
    ({"horizon": {**DAY, "hours": -3}}, "horizon.hours"),
    ({"horizon": DAY, "tariff": {"energy": "cheap"}}, "tariff.energy"),
    ({"horizon": DAY, "actuators": {"heater": {"max_kw": -1}}}, "actuators.heater.max_kw"),
    ({"horizon": DAY, "envelope": {"zone": {"min": 25, "max": 20}}}, "envelope.zone"),
    ({"horizon": DAY, "initial_state": {"zone": "warm"}}, "initial_state.zone"),
    ({"envelope": {"zone": {"min": 20}}}, "horizon"),
    ({"horizon": DAY, "domain": "microgrid"}, "domain"),
    ({"horizon": DAY, "disturbances": {"ambient": {"type": "csv", "path": "missing.csv", "column": "t"}}}, "disturbances.ambient.path"),
])
def test_bad_constraint_exits_2_naming_file_and_field(tmp_path, capsys, raw, field):
    c = _write(tmp_path, raw)
    assert main(["--domain", "hvac", "--constraint_json", str(c)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert str(c) in err and f"field '{field}" in err


@pytest.mark.parametrize("argv,needle", [
    (["--domain", "nope"], "--domain"),
    (["--domain", "hvac", "--seed", "-2"], "--seed"),
    (["--domain", "hvac", "--backoff", "lots"], "--backoff"),
    (["--domain", "hvac", "--backoff", "-1"], "--backoff"),
    (["--domain", "hvac", "--backoff", "attic=1"], "--backoff"),
])
def test_bad_flags_exit_2(argv, needle, capsys):
    assert main(argv + ["--constraint_json", str(EXAMPLE)]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_missing_or_broken_file_exits_2(tmp_path, capsys):
    assert main(["--domain", "hvac", "--constraint_json", str(tmp_path / "none.json")]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = _write(tmp_path, "{not json")
    assert main(["--domain", "hvac", "--constraint_json", str(bad)]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_argparse_errors_and_help(capsys):
    assert main(["--domain", "hvac", "--constraint_json", str(EXAMPLE), "--method", "simplex"]) == 2
    err = capsys.readouterr().err.strip()  # one line, as every other bad input
    assert err.startswith("error: field '--method': invalid choice") and len(err.splitlines()) == 1
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--domain", "--constraint_json", "--method", "--seed", "--backoff", "--output"):
        assert flag in text
    assert "kW" in text and "°C" in text and "kWh" in text and "exit codes" in text
