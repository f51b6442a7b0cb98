"""The console's REST API in process (FastAPI's test client over a real store and the embedded
bus): auth, 422 naming the field, a strike from submission to its report, rollback."""
from __future__ import annotations

import json
import time

import pytest

from strike_helpers import example

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    home = tmp_path_factory.mktemp("console-home")
    mp = pytest.MonkeyPatch()
    mp.setenv("INDUSTRIVERSE_HOME", str(home))
    mp.delenv("INDUSTRIVERSE_DB_URL", raising=False)
    from console.app import ConsoleConfig, create_app
    from console.auth import new_token

    tokens = {"operator": new_token("ops", "operator"), "viewer": new_token("view", "viewer")}
    app = create_app(ConsoleConfig(runs_dir=home / "runs"))
    with TestClient(app) as client:
        yield client, {role: {"Authorization": f"Bearer {t}"} for role, t in tokens.items()}, home
    mp.undo()


def _wait(client, headers, sid, timeout=90.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = client.get(f"/api/v1/strikes/{sid}", headers=headers).json()
        if view["status"] in ("completed", "rejected", "failed"):
            return view
        time.sleep(0.3)
    raise AssertionError(f"strike {sid} did not end in {timeout} s: {view}")


def test_only_healthz_is_anonymous(console):
    client, auth, _ = console
    assert client.get("/healthz").status_code == 200
    for path in ("/api/v1/strikes", "/api/v1/capsules", "/api/v1/activities", "/api/v1/alerts", "/api/v1/contracts",
                 "/openapi.json", "/events", "/static/htmx.min.js"):
        r = client.get(path)
        assert r.status_code == 401, path
        assert client.get(path, headers={"Authorization": "Bearer iv_wrong"}).status_code == 401
    assert client.get("/", follow_redirects=False).status_code == 303  # pages send you to /login


def test_token_is_stored_hashed(console):
    _, auth, home = console
    from industriverse.fleet import store

    token = auth["viewer"]["Authorization"].split()[1]
    dump = "\n".join(str(r) for r in store.list_api_tokens())
    assert token not in dump
    import sqlalchemy as sa

    with store.read_transaction(store.get_engine()) as conn:
        hashes = [r[0] for r in conn.execute(sa.select(store.api_tokens.c.token_sha256))]
    assert token not in hashes and all(len(h) == 64 for h in hashes)


def test_viewer_cannot_submit_and_bad_bodies_name_the_field(console):
    client, auth, _ = console
    raw = example("hvac", ensemble=20, hours=6)
    assert client.post("/api/v1/strikes", json={"domain": "hvac", "constraint": raw}, headers=auth["viewer"]).status_code == 403
    bad = json.loads(json.dumps(raw))
    bad["envelope"]["zone"]["min"] = "cold"
    r = client.post("/api/v1/strikes", json={"domain": "hvac", "constraint": bad}, headers=auth["operator"])
    assert r.status_code == 422
    body = r.json()
    assert body["detail"][0]["loc"][:3] == ["body", "constraint", "envelope"]
    assert "field 'envelope.zone.min'" in body["error"]
    r = client.post("/api/v1/strikes", json={"domain": "nope", "constraint": raw}, headers=auth["operator"])
    assert r.status_code == 422 and "unknown domain 'nope'" in r.json()["error"]
    r = client.post("/api/v1/strikes", json={"constraint": raw}, headers=auth["operator"])
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "domain"]


def test_strike_through_the_api_to_report_and_rollback(console):
    client, auth, _ = console
    raw = example("hvac", ensemble=100)
    r = client.post("/api/v1/strikes", json={"domain": "hvac", "constraint": raw}, headers=auth["operator"])
    assert r.status_code == 202
    sid = r.json()["strike_id"]
    view = _wait(client, auth["viewer"], sid)
    assert view["status"] == "completed" and view["outcome"]["outcome"] == "deployed"
    labels = [t["label"] for t in view["timeline"]]
    # a chance-constraint rejection re-optimizes with more back-off: "optimize (round 1)", ... before deploying
    stages = [lab.split(" (round ")[0] for lab in labels]
    assert stages[:3] == ["optimize", "simulate", "verify"] and stages[-2:] == ["deploy", "report"]
    assert stages[3:-2] == ["optimize", "simulate", "verify"] * ((len(stages) - 5) // 3)
    assert all(t["seconds"] >= 0 for t in view["timeline"])
    assert abs(sum(t["seconds"] for t in view["timeline"]) - view["total_seconds"]) < 0.01
    assert {"report.pdf", "report.html", "value.json", "states.png"} <= set(view["report_files"])
    pdf = client.get(f"/api/v1/strikes/{sid}/report/report.pdf", headers=auth["viewer"])
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF") and pdf.headers["content-type"] == "application/pdf"
    proof = client.get(f"/api/v1/strikes/{sid}/documents/proof", headers=auth["viewer"]).json()
    assert proof["strike_id"] == sid
    assert client.get(f"/api/v1/strikes/{sid}/documents/nope", headers=auth["viewer"]).status_code == 422
    assert client.get("/api/v1/strikes/0000/report/report.pdf", headers=auth["viewer"]).status_code == 404

    # an alert the runtime monitor raised shows on the API, the alerts page and the overview
    from industriverse.operate.gateway import CapsuleGatewayService

    alert = CapsuleGatewayService().record_alert(view["outcome"]["capsule_id"], {"message": "zone above its band for 3 readings"})
    alerts = client.get("/api/v1/alerts?status=open", headers=auth["viewer"]).json()
    assert [a["id"] for a in alerts] == [alert]
    assert "zone above its band for 3 readings" in client.get("/alerts", headers=auth["viewer"]).text
    assert "Open alerts (1)" in client.get("/", headers=auth["viewer"]).text
    assert client.post(f"/api/v1/alerts/{alert}/resolve", headers=auth["viewer"]).status_code == 403
    assert "Resolve</button>" not in client.get("/alerts", headers=auth["viewer"]).text
    assert "Resolve</button>" in client.get("/alerts", headers=auth["operator"]).text
    r = client.post(f"/alerts/{alert}/resolve", headers=auth["operator"])  # the page's htmx button
    assert r.status_code == 200 and 'data-status="resolved"' in r.text and "Resolve</button>" not in r.text
    assert client.post(f"/api/v1/alerts/{alert}/resolve", headers=auth["operator"]).json()["status"] == "resolved"
    assert client.get("/api/v1/alerts?status=open", headers=auth["viewer"]).json() == []
    page = client.get(f"/strikes/{sid}", headers=auth["viewer"]).text
    assert view["headline"] in page and "/report/states.png" in page and "/documents/proof" in page

    activity = view["outcome"]["activity_id"]
    url = f"/api/v1/activities/{activity}/rollback"
    assert client.post(url, headers=auth["viewer"]).status_code == 403
    assert client.post(f"/api/v1/alerts/{activity}/resolve", headers=auth["operator"]).status_code == 409  # not an alert
    assert client.get(f"/api/v1/activities/{activity}", headers=auth["viewer"]).json()["status"] == "active"
    r = client.post(url, json={"reason": "test"}, headers=auth["operator"])
    assert r.status_code == 200 and r.json()["activity"]["status"] == "rolled_back"
    assert client.post(url, headers=auth["operator"]).status_code == 409  # nothing active to withdraw any more
    kinds = [a["activity_type"] for a in client.get(f"/api/v1/activities?capsule_id={view['outcome']['capsule_id']}",
                                                     headers=auth["viewer"]).json()]
    assert kinds[-1] == "rollback"


def test_openapi_lists_the_api(console):
    client, auth, _ = console
    spec = client.get("/openapi.json", headers=auth["viewer"]).json()
    for path in ("/api/v1/strikes", "/api/v1/strikes/{strike_id}", "/api/v1/activities/{activity_id}/rollback",
                 "/api/v1/capsules", "/api/v1/alerts", "/api/v1/contracts"):
        assert path in spec["paths"]
    docs = client.get("/docs", headers=auth["viewer"])
    assert docs.status_code == 200 and "http://" not in docs.text and "https://" not in docs.text  # vendored, no CDN
    assert client.get("/static/swagger/swagger-ui-bundle.js", headers=auth["viewer"]).status_code == 200


def test_token_cli_prints_once_and_rejects_empty_names(home, capsys):
    from cli.main import main
    from console.auth import identify

    assert main(["token", "create", "--name", "ci", "--role", "viewer"]) == 0
    out, err = capsys.readouterr()
    token = out.strip()
    assert token.startswith("iv_") and "only time" in err
    assert identify(token)["role"] == "viewer"
    assert main(["token", "create", "--name", " ", "--role", "viewer"]) == 2
    assert "field '--name'" in capsys.readouterr().err


@pytest.mark.broker
def test_strike_from_the_api_is_published_on_rabbitmq(amqp_url, prefix, home):
    """With a broker the console publishes strike.requested (confirmed) for the worker fleet: the
    message waits in the optimizer queue, and the overview's queue depths show it."""
    from console.app import ConsoleConfig, create_app
    from console.auth import new_token

    token = new_token("ops", "operator")
    headers = {"Authorization": f"Bearer {token}"}
    app = create_app(ConsoleConfig(broker=amqp_url, prefix=prefix))
    with TestClient(app) as client:
        r = client.post("/api/v1/strikes", json={"domain": "hvac", "constraint": example("hvac", ensemble=20)}, headers=headers)
        assert r.status_code == 202 and r.json()["bus"] == "rabbitmq"
        sid = r.json()["strike_id"]
        depths = client.get("/api/v1/queues", headers=headers).json()
        assert depths[f"{prefix}.optimizer"] == 1
        view = client.get(f"/api/v1/strikes/{sid}", headers=headers).json()
        assert view["status"] == "requested" and view["timeline"] == []
        assert "optimizer" in client.get("/", headers=headers).text  # the overview lists the queues


@pytest.mark.postgres
def test_api_tokens_on_postgresql(pg_url):
    import uuid

    from console.auth import token_hash
    from industriverse.fleet import store

    engine = store.get_engine(pg_url)
    name, token = f"pg-{uuid.uuid4().hex[:8]}", f"iv_{uuid.uuid4().hex}"
    store.create_api_token(name, "operator", token_hash(token), engine=engine)
    assert store.find_api_token(token_hash(token), engine=engine)["role"] == "operator"
    assert name in [r["name"] for r in store.list_api_tokens(engine=engine)]
    store.create_api_token(name, "viewer", token_hash(token + "x"), engine=engine)  # a new token replaces the old
    assert store.find_api_token(token_hash(token), engine=engine) is None
    assert store.revoke_api_token(name, engine=engine) and not store.revoke_api_token(name, engine=engine)


def test_serve_bad_flags_exit_2_with_one_line(home, tmp_path, capsys):
    from cli.main import main

    assert main(["serve", "--port", "0"]) == 2
    assert "field '--port'" in capsys.readouterr().err
    bad = tmp_path / "contracts.yaml"
    bad.write_text("contracts: [{id: 1}]\n")
    assert main(["serve", "--contracts", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(bad) in err and "Traceback" not in err
