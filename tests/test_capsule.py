"""Packing, reading and verifying capsules (current and legacy manifest layouts)."""
from __future__ import annotations

import json
import os

import pytest
import yaml

from cli import capsule as capsule_cli
from industriverse.trust import signing
from industriverse.model.canonical import sha256_bytes
from industriverse.trust.capsule import (CapsuleManifest, LegacyManifest, load_manifest, pack_capsule, read_manifest_dict, verify_capsule)
from industriverse.errors import BadInput
from test_signing_proof import make_run


def _resign(capsule_dir, edit=None, keys_dir=None):
    """Rewrite the manifest after ``edit(raw)`` with fresh file hashes and a fresh signature by a trusted key."""
    raw = read_manifest_dict(capsule_dir)
    if edit:
        edit(raw)
    for entry in raw["files"]:
        path = capsule_dir / entry["path"]
        if path.is_file():
            entry["sha256"] = sha256_bytes(path.read_bytes())
    signed = signing.sign_document(raw, keys_dir=keys_dir)
    (capsule_dir / "manifest.yaml").write_text(yaml.safe_dump(signed, sort_keys=False, allow_unicode=True))


def test_pack_writes_a_signed_capsule(home, tmp_path):
    run = make_run(tmp_path / "run")
    mpath = pack_capsule(run)
    assert mpath == run / "capsule" / "manifest.yaml"
    assert sorted(p.name for p in mpath.parent.iterdir()) == ["bands.json", "manifest.yaml", "plan.json", "proof.json"]
    assert (mpath.parent / "plan.json").read_bytes() == (run / "optimization.json").read_bytes()
    manifest = load_manifest(mpath)
    assert isinstance(manifest, CapsuleManifest)
    assert manifest.id == "hvac-acme-cold-rooms"
    assert manifest.version == 20240115055500125  # the proof's UTC time, to the millisecond
    assert manifest.strike_id == "s-0001" and manifest.domain == "hvac"
    assert manifest.envelope == {"zone": {"min": 20.0, "max": 23.0}}
    assert manifest.runtime_budgets.model_dump() == {"energy_kwh": 30.0, "peak_kw": 10.0, "runtime_budget_ms": 7_200_000}
    assert [(f.path, f.role) for f in manifest.files] == [
        ("plan.json", "plan"), ("proof.json", "proof"), ("bands.json", "predicted_band")]
    bands = json.loads((mpath.parent / "bands.json").read_text())
    assert set(bands["bands"]["zone"]) == {"1", "5", "50", "95", "99"} and bands["controller"] == "plan"
    assert signing.verify_document(read_manifest_dict(mpath)) == (True, "ok")
    assert verify_capsule(mpath.parent) == []


def test_envelope_and_budgets_left_to_the_domain_come_from_its_defaults(home, tmp_path):
    run = make_run(tmp_path / "run")
    opt = json.loads((run / "optimization.json").read_text())
    del opt["request"]["envelope"], opt["request"]["budgets"]
    (run / "optimization.json").write_text(json.dumps(opt))
    manifest = load_manifest(pack_capsule(run))
    assert manifest.envelope == {"zone": {"min": 21.0, "max": 24.0}}  # hvac catalog default
    # no client budget: the plan's own energy and peak are what the runtime holds it to
    assert (manifest.runtime_budgets.energy_kwh, manifest.runtime_budgets.peak_kw) == (
        opt["objective"]["energy_kwh"], opt["objective"]["peak_kw"])


def test_repacking_is_deterministic(home, tmp_path):
    run = make_run(tmp_path / "run")
    first = pack_capsule(run).read_bytes()
    assert pack_capsule(run).read_bytes() == first


def test_capsule_identity_and_versions(home, tmp_path):
    a1 = load_manifest(pack_capsule(make_run(tmp_path / "a1")))
    a2 = load_manifest(pack_capsule(make_run(tmp_path / "a2", strike_id="s-0002",
                                             created_at="2024-01-16T05:55:00+00:00")))
    b = load_manifest(pack_capsule(make_run(tmp_path / "b", client="Bäckerei Müller GmbH")))
    anon = load_manifest(pack_capsule(make_run(tmp_path / "anon", client="client")))
    assert a1.id == a2.id and a2.version > a1.version  # a later strike for the client: a new version
    assert b.id == "hvac-b-ckerei-m-ller-gmbh"
    assert anon.id.startswith("hvac-") and len(anon.id) == len("hvac-") + 12  # no client named: request hash
    assert load_manifest(pack_capsule(tmp_path / "a1", version=7)).version == 7


def test_pack_without_proof_is_bad_input(home, tmp_path):
    run = make_run(tmp_path / "run")
    (run / "proof.json").unlink()
    with pytest.raises(BadInput, match="proof.json: no such file"):
        pack_capsule(run)


def test_tampered_file_is_named(home, tmp_path):
    cap = pack_capsule(make_run(tmp_path / "run")).parent
    plan = json.loads((cap / "plan.json").read_text())
    plan["plan"]["heater"][2] = 9.5
    (cap / "plan.json").write_text(json.dumps(plan))
    problems = verify_capsule(cap)
    assert "file plan.json (plan): sha256 differs from the manifest (tampered or replaced)" in problems
    assert any(p.startswith("proof: plan_sha256 differs") for p in problems)
    (cap / "bands.json").unlink()
    assert "file bands.json (predicted_band) is missing" in verify_capsule(cap)


def test_edited_manifest_and_unsigned_manifest(home, tmp_path):
    cap = pack_capsule(make_run(tmp_path / "run")).parent
    raw = read_manifest_dict(cap)
    raw["runtime_budgets"]["energy_kwh"] = 300.0
    (cap / "manifest.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    assert [p for p in verify_capsule(cap) if p.startswith("manifest signature")] == [
        "manifest signature: bad signature: the document was altered after signing or not signed by "
        + raw["signature"]["key_id"]]
    del raw["signature"]
    (cap / "manifest.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    assert verify_capsule(cap) == ["manifest signature: unsigned"]


def test_wrong_key_is_refused(home, tmp_path):
    signing.load_signing_key()
    cap = pack_capsule(make_run(tmp_path / "run"), keys_dir=tmp_path / "stranger").parent
    problems = verify_capsule(cap)
    assert any(p.startswith("manifest signature: unknown key ed25519:") for p in problems)


def test_edited_proof_is_refused_even_with_a_fresh_manifest(home, tmp_path):
    cap = pack_capsule(make_run(tmp_path / "run", passed=False)).parent
    proof = json.loads((cap / "proof.json").read_text())
    proof["shield"]["passed"] = True
    for check in proof["shield"]["checks"]:
        check["passed"] = True
    (cap / "proof.json").write_text(json.dumps(proof))
    _resign(cap)  # the manifest is consistent again, but the proof's own signature is not
    problems = verify_capsule(cap)
    assert any(p.startswith("proof: signature: bad signature") for p in problems)


def test_rejected_plan_cannot_pass(home, tmp_path):
    cap = pack_capsule(make_run(tmp_path / "run", passed=False)).parent
    assert verify_capsule(cap) == ["proof did not pass the shield (failed: chance_constraint)"]


def test_paths_cannot_leave_the_capsule(home, tmp_path):
    cap = pack_capsule(make_run(tmp_path / "run")).parent
    for bad in ("../optimization.json", "/etc/passwd", "sub/../../x"):
        raw = read_manifest_dict(cap)
        raw["files"][0]["path"] = bad
        (cap / "manifest.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        with pytest.raises(BadInput, match="files.0.path"):
            load_manifest(cap)
    # a symlink inside the capsule that points outside it
    pack_capsule(tmp_path / "run")
    os.symlink(tmp_path / "run" / "optimization.json", cap / "outside.json")
    _resign(cap, lambda raw: raw["files"].append({"path": "outside.json", "sha256": "0" * 64, "role": "extra"}))
    problems = verify_capsule(cap)
    assert len(problems) == 1 and "outside.json" in problems[0] and "outside the capsule directory" in problems[0]


LEGACY_DAC = """\
dac_id: cold-room-7
version: 1.2.0
energy_prior: boltzmann
tnn_solver: rk4
inputs: [telemetry/zone.csv]
outputs: [plan/out.json]
"""

LEGACY_TNN = """\
id: chiller-bank
title: Chiller bank optimizer
description: old style capsule
energy_prior: {temperature: 1.0}
tnn_class: ThermalNetwork3
safety:
  energy_budget_j: 36000000
  entropy_threshold: 0.2
  runtime_budget_ms: 500
prin: 3
utid_pattern: "UTID-*"
"""


def test_legacy_layouts_say_what_they_lack(home, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "manifest.yaml").write_text(LEGACY_DAC)
    old = load_manifest(tmp_path / "a")
    assert isinstance(old, LegacyManifest) and old.layout == "dac_id/tnn_solver" and old.id == "cold-room-7"
    assert old.problems() == [
        "legacy layout (dac_id/tnn_solver): no domain, no envelope, no energy or peak budget, no file hashes, "
        "no signature, no proof; repack it from its run directory with 'industriverse capsule pack RUN_DIR'"]
    assert verify_capsule(tmp_path / "a") == old.problems()

    (tmp_path / "b.yaml").write_text(LEGACY_TNN)
    older = load_manifest(tmp_path / "b.yaml")
    assert older.layout == "id/tnn_class/safety" and older.title == "Chiller bank optimizer"
    assert older.runtime_budgets.energy_kwh == pytest.approx(10.0)  # 36 MJ
    assert older.runtime_budgets.runtime_budget_ms == 500
    assert older.lacks == ["no domain", "no envelope", "no file hashes", "no signature", "no proof"]
    assert "entropy_threshold" in older.notes[0]

    (tmp_path / "c.yaml").write_text(LEGACY_DAC.replace("telemetry/zone.csv", "../../etc/shadow"))
    with pytest.raises(BadInput, match=r"field 'inputs\[0\]'.*leaves the capsule"):
        load_manifest(tmp_path / "c.yaml")


def test_unreadable_manifests_are_bad_input(home, tmp_path):
    with pytest.raises(BadInput, match="no such file"):
        load_manifest(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("id: [unclosed\n")
    with pytest.raises(BadInput, match="not valid YAML at line"):
        load_manifest(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(BadInput, match="must be a YAML mapping"):
        load_manifest(tmp_path / "list.yaml")
    (tmp_path / "other.yaml").write_text("name: x\n")
    with pytest.raises(BadInput, match="no known layout"):
        load_manifest(tmp_path / "other.yaml")
    cap = pack_capsule(make_run(tmp_path / "run")).parent
    raw = read_manifest_dict(cap)
    raw["version"] = "latest"
    (cap / "manifest.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(BadInput, match="field 'version'"):
        load_manifest(cap)


def test_cli_pack_and_verify(home, tmp_path, capsys):
    run = make_run(tmp_path / "run")
    assert capsule_cli.main(["pack", str(run)]) == 0
    assert capsys.readouterr().out.strip() == str(run / "capsule" / "manifest.yaml")
    assert capsule_cli.main(["verify", str(run / "capsule")]) == 0
    assert capsys.readouterr().out.startswith("deployable: hvac-acme-cold-rooms version 20240115055500125")
    bad = make_run(tmp_path / "bad", passed=False)
    capsule_cli.main(["pack", str(bad)])
    capsys.readouterr()
    assert capsule_cli.main(["verify", str(bad / "capsule")]) == 1
    assert "proof did not pass the shield" in capsys.readouterr().out
    assert capsule_cli.main(["pack", str(tmp_path / "nowhere")]) == 2
