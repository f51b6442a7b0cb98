"""Fail closed (issue 9): the cases of the issue, one named test each.

Every bad input ends in one ``error:`` line and exit 2 (never a traceback), nothing unsafe is
deployed, infrastructure failures are exit 3 naming the service without its password, and a
deployment that does not become active says so and exits 1.
"""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from cli.capsule import main as capsule_main
from cli.deploy_sovereign_dac import main as deploy_main
from cli.gateway import main as gateway_main
from cli.orchestrate_full_regiment import main as regiment_main
from cli.run_client_strike_loop import main as strike_main
from cli.worker import main as worker_main
from industriverse.errors import BadInput
from industriverse.model.canonical import MAX_FILE_BYTES, parse_json, parse_yaml, read_json
from industriverse.model.mapping import map_constraint
from industriverse.operate.gateway import CapsuleGatewayService
from industriverse.trust.capsule import load_manifest
from industriverse.verify.shield import check_envelope, check_finite_values, nominal_states
from strike_helpers import example, write_constraint


def one_error_line(capsys) -> str:
    """The command's stderr, asserted to be exactly one ``error:`` line without a traceback."""
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if not line.startswith("strike ")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def strike(tmp_path, raw, *extra) -> int:
    path = write_constraint(tmp_path, raw)
    return strike_main(["--domain", "hvac", "--constraint_json", str(path), "--output_dir", str(tmp_path / "run"), *extra])


def nothing_deployed() -> bool:
    gw = CapsuleGatewayService()
    return gw.list_capsules() == [] and gw.list_activities() == []


# --- 1. one validation boundary ------------------------------------------------------------------------
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), None])
def test_nan_envelope_is_refused_and_nothing_is_deployed(home, tmp_path, capsys, value):
    raw = example("hvac", ensemble=20, hours=2)
    raw["envelope"]["zone"]["min"] = value
    assert strike(tmp_path, raw) == 2
    line = one_error_line(capsys)
    assert "field 'envelope.zone.min'" in line and str(tmp_path / "constraint.json") in line
    gw = CapsuleGatewayService()
    assert nothing_deployed() and gw.active_deployment("hvac-boptest-testcase1") is None


def test_nan_anywhere_in_a_json_document_names_its_field(tmp_path):
    (tmp_path / "doc.json").write_text('{"plan": {"heater": [1.0, NaN]}}')
    with pytest.raises(BadInput, match=r"field 'plan.heater.1': must be a finite number, not nan"):
        read_json(tmp_path / "doc.json")
    with pytest.raises(BadInput, match="field 'a': must be a finite number, not inf"):
        parse_json('{"a": 1e999}', "f")
    with pytest.raises(BadInput, match="field 'a': must be a finite number"):
        parse_yaml("a: .nan\n", "f")


def test_the_shield_refuses_a_nan_envelope_on_its_own(tmp_path):
    """Handed a problem whose envelope bound is NaN (validation bypassed), the shield fails, never passes."""
    problem = map_constraint("hvac", example("hvac", hours=2))
    u = np.full((problem.H, problem.m), 2.0)
    x = nominal_states(problem, u)
    problem.x_lo[:, 0] = np.nan
    assert check_envelope(problem, x)["passed"] is False
    finite = check_finite_values(problem, u, x)
    assert finite["passed"] is False and "envelope min" in finite["detail"]
    problem.x_lo[:, 0] = -np.inf  # the declared min is gone: a missing bound, not "no bound"
    assert check_finite_values(problem, u, x)["passed"] is False
    x_nan = x.copy()
    x_nan[3, 0] = np.nan
    assert check_envelope(map_constraint("hvac", example("hvac", hours=2)), x_nan)["passed"] is False


def test_the_shield_passes_finite_values_of_a_sound_plan():
    problem = map_constraint("hvac", example("hvac", hours=2))
    u = np.full((problem.H, problem.m), 2.0)
    assert check_finite_values(problem, u, nominal_states(problem, u))["passed"] is True


# --- 1. outputs checked before the deploy stage -----------------------------------------------------------
def test_output_dir_that_is_a_file_is_refused_before_anything_is_deployed(home, tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("not a directory")
    path = write_constraint(tmp_path, example("hvac", ensemble=20, hours=2))
    assert strike_main(["--domain", "hvac", "--constraint_json", str(path), "--output_dir", str(target)]) == 2
    assert "field '--output_dir'" in one_error_line(capsys)
    assert nothing_deployed()


# --- 2. resource limits before parsing ----------------------------------------------------------------
def test_special_and_oversized_files_are_refused_by_stat(home, tmp_path, capsys):
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)  # reading it would block for ever
    huge = tmp_path / "huge.json"
    with open(huge, "wb") as fh:
        fh.truncate(MAX_FILE_BYTES + 1)  # sparse: the size is what stat reports
    for path, text in ((fifo, "is a FIFO"), (tmp_path, "is a directory"), (huge, f"over the {MAX_FILE_BYTES}-byte limit")):
        assert strike_main(["--domain", "hvac", "--constraint_json", str(path)]) == 2
        assert text in one_error_line(capsys)


@pytest.mark.parametrize("text,needle", [
    ('{"horizon": ' + "[" * 5000 + "]" * 5000 + "}", "over the limit of 64"),
    ('{"uncertainty": {"seed": ' + "9" * 5000 + "}}", "field 'uncertainty.seed': an integer of 5000 digits"),
])
def test_poison_json_is_refused_in_one_line(home, tmp_path, capsys, text, needle):
    (tmp_path / "c.json").write_text(text)
    assert strike_main(["--domain", "hvac", "--constraint_json", str(tmp_path / "c.json")]) == 2
    assert needle in one_error_line(capsys)


def test_a_yaml_alias_bomb_is_refused(tmp_path):
    lines = ["a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    for prev, name in zip("abcdefg", "bcdefgh"):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    with pytest.raises(BadInput, match="values"):
        parse_yaml("\n".join(lines) + "\n", "bomb.yaml")


def test_an_ensemble_too_large_for_memory_is_refused_naming_the_limit(home, tmp_path, capsys):
    raw = example("hvac", ensemble=20000)
    raw["horizon"].update(hours=250, step_minutes=7.5)  # 2000 steps: 4.85 GB peak when it was accepted
    assert strike(tmp_path, raw) == 2
    line = one_error_line(capsys)
    assert "field 'uncertainty.ensemble_size'" in line and "INDUSTRIVERSE_MAX_MEMORY_MB" in line
    assert nothing_deployed()


@pytest.mark.parametrize("flag,value", [("--timeout", "nan"), ("--timeout", "inf"), ("--timeout", "-1"),
                                        ("--seed", "-1"), ("--backoff_factor", "nan")])
def test_strike_flags_must_be_finite_and_in_range(home, tmp_path, capsys, flag, value):
    assert strike(tmp_path, example("hvac"), flag, value) == 2
    assert f"field '{flag}'" in one_error_line(capsys)


def test_regiment_interval_nan_is_refused(home, capsys):
    from strike_helpers import ROOT

    assert regiment_main(["--contracts", str(ROOT / "examples" / "contracts.yaml"), "--interval", "nan"]) == 2
    assert "field '--interval'" in one_error_line(capsys)


# --- 3. data files stay in their place -------------------------------------------------------------------
@pytest.mark.parametrize("csv_path", ["/etc/passwd", "../../../../etc/passwd", "link.csv"])
def test_a_csv_series_cannot_read_outside_its_directory(home, tmp_path, capsys, csv_path):
    (tmp_path / "link.csv").symlink_to("/etc/passwd")
    raw = example("hvac")
    raw["disturbances"]["ambient"] = {"type": "csv", "path": csv_path, "column": "root:x:0:0:root:/root:/bin/bash"}
    assert strike(tmp_path, raw) == 2
    line = one_error_line(capsys)
    assert "field 'disturbances.ambient.path'" in line and "daemon" not in line
    assert nothing_deployed()


@pytest.mark.parametrize("kind", ["epw", "pv", "urdb"])
def test_epw_and_urdb_files_cannot_be_read_outside_the_data_roots(home, tmp_path, capsys, kind):
    """EPW weather, PV from an EPW file and URDB tariffs resolve like CSV series: the shipped
    example files, named by absolute path from a constraint elsewhere, are refused (exit 2, one line)."""
    from strike_helpers import ROOT

    building = ROOT / "examples" / "building"
    raw = example("hvac")
    if kind == "urdb":
        raw["tariff"] = {"type": "urdb", "path": str(building / "rate_sce_gs2_tou_b.json")}
        field = "tariff.path"
    else:
        spec = ({"type": "epw", "path": str(building / "site.epw"), "field": "temp_air"} if kind == "epw" else
                {"type": "pv", "path": str(building / "site.epw"), "kw_peak": 5})
        raw["disturbances"]["ambient"] = spec
        field = "disturbances.ambient.path"
    assert strike(tmp_path, raw) == 2
    line = one_error_line(capsys)
    assert f"field '{field}'" in line and "outside the data directories" in line
    assert nothing_deployed()
    with pytest.raises(BadInput, match="outside the data directories"):
        map_constraint("hvac", raw, file="strike.requested constraint")  # base_dir None, as a worker maps it


def test_a_worker_refuses_an_absolute_csv_path_outside_the_data_roots(home):
    raw = example("hvac")
    raw["disturbances"]["ambient"] = {"type": "csv", "path": "/etc/passwd", "column": "x"}
    with pytest.raises(BadInput, match="outside the data directories"):
        map_constraint("hvac", raw, file="strike.requested constraint")  # base_dir None, as a worker maps it


def test_csv_errors_never_quote_the_file(home, tmp_path):
    secret = "s3cr3t-token"
    (tmp_path / "w.csv").write_text(f"{secret}\n{secret}\n")
    raw = example("hvac")
    raw["disturbances"]["ambient"] = {"type": "csv", "path": "w.csv", "column": secret}
    with pytest.raises(BadInput) as exc:
        map_constraint("hvac", raw, base_dir=tmp_path)
    assert "row 2 is not a finite number" in str(exc.value)
    raw["disturbances"]["ambient"]["column"] = "other"
    with pytest.raises(BadInput) as exc:
        map_constraint("hvac", raw, base_dir=tmp_path)
    assert secret not in str(exc.value)


# --- 5. exit codes --------------------------------------------------------------------------------------
@pytest.mark.parametrize("url,needle", [
    ("postgresql+psycopg://bob:hunter2@127.0.0.1:1/x", "bob:***@127.0.0.1:1"),
    ("sqlite:////proc/no-such-dir/x.db", "sqlite:////proc/no-such-dir/x.db"),
    ("not a url", "not a valid database URL"),
])
def test_a_bad_database_url_is_exit_3_naming_it_without_password(home, capsys, url, needle):
    assert gateway_main(["--db", url, "capsules"]) == 3
    line = one_error_line(capsys)
    assert line.startswith("error: database ") and needle in line and "hunter2" not in line


def test_a_worker_with_an_unusable_database_or_broker_exits_3_at_start(home, monkeypatch, capsys):
    monkeypatch.setenv("INDUSTRIVERSE_DB_URL", "postgresql+psycopg://bob:hunter2@127.0.0.1:1/x")
    assert worker_main(["all", "--broker", "amqp://guest:guest@127.0.0.1:1/%2F"]) == 3
    assert one_error_line(capsys).startswith("error: database ")
    monkeypatch.delenv("INDUSTRIVERSE_DB_URL")
    assert worker_main(["all", "--broker", "amqp://guest:hunter2@127.0.0.1:1/%2F"]) == 3
    line = one_error_line(capsys)
    assert line.startswith("error: broker amqp://guest:***@127.0.0.1:1") and "hunter2" not in line


@pytest.mark.parametrize("version", [str(2**63), str(10**30)])
def test_capsule_versions_are_bounded_to_63_bits(home, tmp_path, capsys, version):
    assert capsule_main(["pack", str(tmp_path), "--version", version]) == 2
    assert "field '--version'" in one_error_line(capsys)


def test_a_manifest_version_of_10_to_the_30_is_bad_input_not_a_traceback(tmp_path):
    (tmp_path / "manifest.yaml").write_text(f"manifest_version: 1\nid: x\nversion: {10**30}\n")
    with pytest.raises(BadInput, match="field 'version'"):
        load_manifest(tmp_path / "manifest.yaml")


def test_a_deployment_that_is_not_activated_exits_1_and_says_so(home, tmp_path, capsys):
    assert strike(tmp_path, example("hvac", ensemble=100, hours=2), "--quiet") == 0
    capsys.readouterr()
    pinned = tmp_path / "pinned"
    shutil.copytree(tmp_path / "run", pinned, ignore=shutil.ignore_patterns("capsule"))
    assert capsule_main(["pack", str(pinned), "--version", str(2**63 - 1)]) == 0
    assert deploy_main(["--manifest", str(pinned / "capsule")]) == 0  # the largest version: active
    capsys.readouterr()
    # the strike's own capsule again: registered, but superseded by the pinned version
    assert deploy_main(["--manifest", str(tmp_path / "run" / "capsule")]) == 1
    assert "not activated: " in capsys.readouterr().err
    # and a new strike is recorded superseded on arrival: it says so and exits 1, not 0 "deployed"
    assert strike(tmp_path, example("hvac", ensemble=100, hours=2), "--quiet") == 1
    err = capsys.readouterr().err
    assert f"superseded on arrival by version {2**63 - 1}" in err
    with open(tmp_path / "run" / "deployment.json") as fh:
        assert json.load(fh)["activity_id"]


@pytest.mark.parametrize("command,argv", [
    ("optimize", ["--domain", "hvac", "--constraint_json", "c.json", "--output", "{dir}"]),
    ("simulate", ["--domain", "hvac", "--constraint_json", "c.json", "--output", "{file}/x.json"]),
    ("verify", ["--plan", "o.json", "--simulation", "s.json", "--output_dir", "{file}"]),
    ("report", ["--run", "{dir}", "--output_dir", "{file}"]),
    ("twin", ["--manifest", "m", "--output", "{dir}"]),
])
def test_every_output_path_is_checked_before_the_work(home, tmp_path, capsys, command, argv):
    from cli.main import main as cli_main

    (tmp_path / "taken").write_text("a file")
    argv = [a.format(dir=tmp_path, file=tmp_path / "taken") for a in argv]
    assert cli_main([command, *argv]) == 2
    assert "field '--output" in one_error_line(capsys)
