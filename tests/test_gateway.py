"""The capsule gateway on SQLite and on the running PostgreSQL, and the deploy/gateway commands."""
from __future__ import annotations

import importlib.util
import json
import multiprocessing as mp
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cli import deploy_sovereign_dac as deploy_cli
from cli import gateway as gateway_cli
from industriverse.fleet import store
from industriverse.trust.capsule import pack_capsule, read_manifest_dict
from industriverse.operate.gateway import CapsuleGatewayService, DeploymentRefused, GatewayError
from test_signing_proof import make_run
from test_store import _pg_schema_url

ROOT = Path(__file__).resolve().parent.parent
MONITOR_PRESENT = importlib.util.find_spec("industriverse.operate.monitor") is not None


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path, home):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gateway.db'}"
        store.dispose_engines()
        return
    yield from _pg_schema_url(request.getfixturevalue("pg_url"))


@pytest.fixture()
def gateway(db_url):
    return CapsuleGatewayService(db_url)


def _capsule(tmp_path, name, day=15, **kw):
    run = make_run(tmp_path / name, created_at=f"2024-01-{day:02d}T05:55:00+00:00", strike_id=f"s-{name}", **kw)
    return pack_capsule(run).parent


def test_register_is_idempotent(gateway, tmp_path):
    cap = _capsule(tmp_path, "r1")
    first = gateway.register(cap)
    assert gateway.register(cap) == first
    assert gateway.register(cap / "manifest.yaml") == first
    pack_capsule(tmp_path / "r1")  # re-packing the same run: same content, same activity
    assert gateway.register(cap) == first
    deployments = gateway.list_activities("hvac-acme-cold-rooms", activity_type="deployment")
    assert [a["id"] for a in deployments] == [first]
    assert deployments[0]["status"] == "active" and deployments[0]["payload"]["strike_id"] == "s-r1"
    assert set(deployments[0]) == {"id", "capsule_id", "version", "activity_type", "status", "payload",
                                   "created_at", "updated_at"}
    assert gateway.active_version("hvac-acme-cold-rooms") == 20240115055500000
    assert gateway.active_deployment("hvac-acme-cold-rooms")["capsule_dir"] == str(cap.resolve())


def test_new_version_supersedes_and_rollback_restores(gateway, tmp_path):
    cid = "hvac-acme-cold-rooms"
    v1 = gateway.register(_capsule(tmp_path, "v1", day=15))
    v2 = gateway.register(_capsule(tmp_path, "v2", day=16, heater_scale=1.1))
    assert v2 != v1 and gateway.active_version(cid) == 20240116055500000
    kinds = [(a["activity_type"], a["status"]) for a in gateway.list_activities(cid)]
    assert kinds == [("deployment", "superseded"), ("deployment", "active"), ("supersede", "completed")]
    supersede = gateway.list_activities(cid, activity_type="supersede")[0]["payload"]
    assert (supersede["superseded_activity_id"], supersede["deployment_activity_id"]) == (v1, v2)
    [capsule] = gateway.list_capsules()
    assert (capsule["capsule_id"], capsule["versions"], capsule["active_activity_id"]) == (cid, 2, v2)

    rb = gateway.rollback(cid, "door left open: 3 breaches")
    assert gateway.active_version(cid) == 20240115055500000
    payload = gateway.get_activity(rb)["payload"]
    assert payload["reason"] == "door left open: 3 breaches"
    assert (payload["withdrawn_activity_id"], payload["restored_activity_id"]) == (v2, v1)
    assert gateway.get_activity(v1)["status"] == "active" and gateway.get_activity(v2)["status"] == "rolled_back"
    assert [v["status"] for v in gateway.list_versions(cid)] == ["active", "rolled_back"]
    # re-registering the withdrawn content does not bring it back
    assert gateway.register(tmp_path / "v2" / "capsule") == v2
    assert gateway.active_version(cid) == 20240115055500000

    # rolling back the first version leaves nothing active (the baseline controller runs)
    gateway.rollback(cid, "again")
    assert gateway.active_version(cid) is None
    with pytest.raises(GatewayError, match="no active version"):
        gateway.rollback(cid, "nothing left")
    with pytest.raises(GatewayError, match="unknown capsule"):
        gateway.rollback("nope", "x")

    v3 = gateway.register(_capsule(tmp_path, "v3", day=17, heater_scale=0.9))
    assert gateway.active_version(cid) == 20240117055500000 and gateway.get_activity(v3)["status"] == "active"


def test_a_late_older_version_is_recorded_superseded_not_activated(gateway, tmp_path):
    """Concurrent strikes of one client: the older plan arriving last never replaces the newer."""
    new = gateway.register(_capsule(tmp_path, "new", day=16))
    old = gateway.register(_capsule(tmp_path, "old", day=15, heater_scale=1.2))
    assert old != new
    cid = gateway.get_activity(new)["capsule_id"]
    assert gateway.active_version(cid) == 20240116055500000
    assert gateway.get_activity(new)["status"] == "active"
    assert gateway.get_activity(old)["status"] == "superseded"
    assert gateway.register(tmp_path / "old" / "capsule") == old  # idempotent still
    pack_capsule(tmp_path / "old", version=20240116055500000)
    with pytest.raises(DeploymentRefused, match="already registered with other content"):
        gateway.register(tmp_path / "old" / "capsule")


def test_strikes_packing_the_same_version_both_deploy(gateway, tmp_path):
    """Two strikes of one client whose proofs share a millisecond pack the same version number: the
    deployer re-packs the second with the next free number, and a redelivery finds its registration."""
    from workers.deployer import pack_and_register

    first_run = make_run(tmp_path / "a", created_at="2024-01-15T05:55:00+00:00", strike_id="s-a")
    second_run = make_run(tmp_path / "b", created_at="2024-01-15T05:55:00+00:00", strike_id="s-b", heater_scale=1.2)
    _, first = pack_and_register(gateway, first_run)
    checks = []
    manifest, second = pack_and_register(gateway, second_run, before=lambda: checks.append(1))
    assert second != first and len(checks) == 2  # the expiry check before each registration
    assert read_manifest_dict(manifest)["version"] == 20240115055500001
    cid = gateway.get_activity(first)["capsule_id"]
    assert gateway.active_version(cid) == 20240115055500001
    assert gateway.get_activity(first)["status"] == "superseded"
    assert pack_and_register(gateway, second_run)[1] == second  # redelivered: the same deployment
    assert len(gateway.list_activities(cid, activity_type="deployment")) == 2


def test_refusals_name_the_reason_and_record_nothing(gateway, tmp_path):
    bad = _capsule(tmp_path, "rejected", passed=False)
    with pytest.raises(DeploymentRefused) as exc:
        gateway.register(bad)
    assert exc.value.reasons == ["proof did not pass the shield (failed: chance_constraint)"]

    tampered = _capsule(tmp_path, "tampered")
    (tampered / "plan.json").write_text((tampered / "plan.json").read_text().replace("4.2", "0.2"))
    with pytest.raises(DeploymentRefused, match=r"file plan.json \(plan\): sha256 differs"):
        gateway.register(tampered)

    unsigned = _capsule(tmp_path, "unsigned")
    raw = read_manifest_dict(unsigned)
    del raw["signature"]
    (unsigned / "manifest.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(DeploymentRefused, match="manifest signature: unsigned"):
        gateway.register(unsigned)

    stranger = pack_capsule(make_run(tmp_path / "stranger", keys_dir=tmp_path / "k2"), keys_dir=tmp_path / "k2").parent
    with pytest.raises(DeploymentRefused, match="unknown key"):
        gateway.register(stranger)

    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "manifest.yaml").write_text("dac_id: old\nversion: 1\ntnn_solver: rk4\ninputs: []\noutputs: []\n")
    with pytest.raises(DeploymentRefused, match=r"legacy layout \(dac_id/tnn_solver\)"):
        gateway.register(legacy)
    assert gateway.list_activities() == [] and gateway.list_capsules() == []


def test_monitor_config_is_kept_with_the_deployment(gateway, tmp_path):
    dep = gateway.register(_capsule(tmp_path, "m"))
    gateway.record_monitor(dep, {"consecutive": 3, "nodes": ["zone"]})
    gateway.record_monitor(dep, {"consecutive": 5, "nodes": ["zone"]})  # re-arming replaces
    payload = gateway.get_activity(dep)["payload"]
    assert payload["monitor"] == {"consecutive": 5, "nodes": ["zone"]} and payload["strike_id"] == "s-m"
    with pytest.raises(GatewayError):
        gateway.record_monitor("act-missing", {})


def test_alerts(gateway, tmp_path):
    gateway.register(_capsule(tmp_path, "a"))
    alert = gateway.record_alert("hvac-acme-cold-rooms", {"check": "envelope", "node": "zone", "value": 24.1})
    row = gateway.get_activity(alert)
    assert (row["activity_type"], row["status"], row["version"]) == ("alert", "open", 20240115055500000)
    assert row["payload"]["value"] == 24.1
    gateway.resolve_alert(alert)
    assert gateway.get_activity(alert)["status"] == "resolved"
    with pytest.raises(GatewayError):
        gateway.record_alert("unknown", {})


# --- two deployers at the same moment ----------------------------------------------
def _deploy(url, capsule_dir, barrier, queue):
    store.dispose_engines()  # fresh connections in the child
    service = CapsuleGatewayService(url)
    barrier.wait()
    queue.put(service.register(capsule_dir))


def test_two_processes_register_the_same_capsule_once(db_url, tmp_path):
    cap = _capsule(tmp_path, "race")
    CapsuleGatewayService(db_url)  # schema in place (its creation is serialised too)
    ctx = mp.get_context("fork")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_deploy, args=(db_url, cap, barrier, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    ids = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert ids[0] == ids[1]
    deployments = CapsuleGatewayService(db_url).list_activities(activity_type="deployment")
    assert [a["id"] for a in deployments] == [ids[0]]


def test_lost_race_rereads_the_winner(gateway, tmp_path, monkeypatch):
    """The unique key, not the pre-check, is what makes registering idempotent: blind the
    pre-check (as when the other process commits just after it) and the insert conflicts,
    the transaction rolls back and the winner's activity is returned."""
    cap = _capsule(tmp_path, "lost")
    winner = gateway.register(cap)
    real = CapsuleGatewayService._existing_registration
    calls = []

    def blind_first(self, *args):
        calls.append(args)
        return None if len(calls) == 1 else real(self, *args)

    monkeypatch.setattr(CapsuleGatewayService, "_existing_registration", blind_first)
    monkeypatch.setattr(CapsuleGatewayService, "_lock_capsule", lambda self, conn, cid: {"active_version": None})
    assert gateway.register(cap) == winner
    assert len(calls) == 1  # the blinded check ran once; the winner came from the re-read after the conflict
    assert len(gateway.list_activities(activity_type="deployment")) == 1


# --- commands ----------------------------------------------------------------------
def test_deploy_command(db_url, tmp_path, capsys):
    cap = _capsule(tmp_path, "cli")
    rc = deploy_cli.main(["--manifest", str(cap / "manifest.yaml"), "--db", db_url])
    out, err = capsys.readouterr()
    activity = out.strip().splitlines()[-1]
    assert activity.startswith("act-")
    if not MONITOR_PRESENT:
        assert rc == 0 and "monitor: not available" in err
    else:  # the monitor is another part: armed (0), or deployed but not armed (3), never silent
        assert (rc, "monitor: armed" in err) == (0, True) or (rc, "monitor: arming failed" in err) == (3, True)
    assert deploy_cli.main(["--manifest", str(cap), "--db", db_url]) == rc
    assert capsys.readouterr().out.strip().splitlines()[-1] == activity

    bad = _capsule(tmp_path, "cli-bad", passed=False)
    assert deploy_cli.main(["--manifest", str(bad / "manifest.yaml"), "--db", db_url]) == 1
    out, err = capsys.readouterr()
    assert "refused: proof did not pass the shield" in err and activity not in out

    assert deploy_cli.main(["--manifest", str(tmp_path / "missing.yaml"), "--db", db_url]) == 2
    assert "missing.yaml: no such file" in capsys.readouterr().err
    (tmp_path / "broken.yaml").write_text("files: [\n")
    assert deploy_cli.main(["--manifest", str(tmp_path / "broken.yaml"), "--db", db_url]) == 2
    raw = read_manifest_dict(cap)
    raw["files"][0]["sha256"] = "xyz"
    (tmp_path / "field.yaml").write_text(yaml.safe_dump(raw))
    assert deploy_cli.main(["--manifest", str(tmp_path / "field.yaml"), "--db", db_url]) == 2
    assert "field 'files.0.sha256'" in capsys.readouterr().err

    assert gateway_cli.main(["--db", db_url, "activities", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["id"], r["activity_type"]) for r in rows] == [(activity, "deployment")]
    assert gateway_cli.main(["--db", db_url, "capsules"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["capsule_id", "domain", "active_version"]
    assert table[1].split()[:3] == ["hvac-acme-cold-rooms", "hvac", "20240115055500000"]


def test_deploy_reports_the_id_when_arming_fails(home, tmp_path, capsys, monkeypatch):
    def broken(gateway, capsule_dir, activity_id):
        raise OSError("telemetry store unreachable")

    monkeypatch.setattr(deploy_cli, "_arm_monitor", broken)
    cap = _capsule(tmp_path, "arm")
    assert deploy_cli.main(["--manifest", str(cap), "--db", f"sqlite:///{tmp_path / 'arm.db'}"]) == 3
    out, err = capsys.readouterr()
    assert out.strip().splitlines()[-1].startswith("act-")
    assert "monitor: arming failed: OSError: telemetry store unreachable" in err


def test_deploy_script_runs_as_a_file(home, tmp_path):
    cap = _capsule(tmp_path, "script")
    db = f"sqlite:///{tmp_path / 'script.db'}"
    cmd = [sys.executable, str(ROOT / "cli" / "deploy_sovereign_dac.py"), "--manifest", str(cap / "manifest.yaml"), "--db", db]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert first.returncode in (0, 3), first.stderr  # 3: deployed, monitor (another part) not armed
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert second.stdout.splitlines()[-1] == first.stdout.splitlines()[-1]
    assert first.stdout.splitlines()[-1].startswith("act-")
