"""The shared store on SQLite and on the running PostgreSQL (each test in its own schema)."""
from __future__ import annotations

import math
import multiprocessing as mp
import uuid

import pytest
import sqlalchemy as sa

from industriverse.fleet import store
from industriverse.model.canonical import sha256_of


def _pg_schema_url(pg_url: str):
    """A fresh schema on the test database; yields a URL whose search_path is that schema."""
    schema = "t_" + uuid.uuid4().hex[:12]
    admin = sa.create_engine(pg_url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in pg_url else "?"
    try:
        yield f"{pg_url}{sep}options=-csearch_path%3D{schema}"
    finally:
        store.dispose_engines()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        store.dispose_engines()
        return
    pg_url = request.getfixturevalue("pg_url")
    yield from _pg_schema_url(pg_url)


@pytest.fixture()
def engine(db_url):
    return store.get_engine(db_url)


def test_engine_is_cached_per_url_and_default_lives_in_home(home):
    default = store.get_engine()
    assert store.get_engine() is default
    assert default.url.database == str(home / "industriverse.db")
    with default.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == store.SQLITE_BUSY_TIMEOUT_MS
    assert set(sa.inspect(default).get_table_names()) >= {
        "stage_results", "artifacts", "strikes", "contract_runs", "capsules", "capsule_versions", "activities",
    }


def test_env_url_wins(home, tmp_path, monkeypatch):
    monkeypatch.setenv("INDUSTRIVERSE_DB_URL", f"sqlite:///{tmp_path / 'other.db'}")
    assert store.get_engine().url.database == str(tmp_path / "other.db")


def test_stage_result_first_writer_wins(engine):
    first = {"plan": {"heater": [1.5, 2.0]}, "cost": 0.1 + 0.2}
    assert store.put_stage_result("s-1", "optimizer", first, engine=engine) == first
    # a redelivered message that redid the work gets the first result back, unchanged
    assert store.put_stage_result("s-1", "optimizer", {"plan": {}, "cost": 9}, engine=engine) == first
    assert store.get_stage_result("s-1", "optimizer", engine=engine) == first
    assert store.get_stage_result("s-1", "simulator", engine=engine) is None
    store.put_stage_result("s-1", "simulator", {"ensemble_size": 64}, engine=engine)
    store.put_stage_result("s-2", "optimizer", {"other": True}, engine=engine)
    assert store.list_stage_results("s-1", engine=engine) == {"optimizer": first, "simulator": {"ensemble_size": 64}}
    assert store.list_stage_results("nope", engine=engine) == {}


def test_stage_result_refuses_nan(engine):
    with pytest.raises(ValueError):
        store.put_stage_result("s-nan", "optimizer", {"cost": math.nan}, engine=engine)
    assert store.get_stage_result("s-nan", "optimizer", engine=engine) is None


def test_artifacts_are_content_addressed(engine):
    data = b'{"a":1}'
    key = store.put_artifact(data, engine=engine)
    assert key == "015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862"
    assert store.put_artifact(data, engine=engine) == key
    assert store.get_artifact(key, engine=engine) == data
    with pytest.raises(KeyError):
        store.get_artifact("0" * 64, engine=engine)
    doc = {"z": [1, 2.5], "a": "kälte"}
    jkey = store.put_json_artifact(doc, engine=engine)
    assert jkey == sha256_of(doc)
    assert store.get_json_artifact(jkey, engine=engine) == doc


def test_strike_status_moves_forward_only(engine):
    row = store.record_strike("s-9", contract_id="c-1", domain="hvac", engine=engine)
    assert (row["status"], row["contract_id"], row["domain"]) == ("requested", "c-1", "hvac")
    # a redelivered request keeps the status and fills in what was missing only
    row = store.record_strike("s-9", contract_id="c-other", run_dir="/runs/s-9", engine=engine)
    assert (row["status"], row["contract_id"], row["run_dir"]) == ("requested", "c-1", "/runs/s-9")
    assert store.update_strike("s-9", status="running", engine=engine)["status"] == "running"
    done = store.update_strike("s-9", status="rejected", reason="chance constraint", engine=engine)
    assert (done["status"], done["reason"]) == ("rejected", "chance constraint")
    # a late message cannot revive a finished strike
    assert store.update_strike("s-9", status="running", engine=engine)["status"] == "rejected"
    assert store.update_strike("s-9", status="failed", reason="late", engine=engine)["reason"] == "chance constraint"
    assert store.update_strike("s-9", status="running", force=True, engine=engine)["status"] == "running"
    with pytest.raises(ValueError):
        store.update_strike("s-9", status="done", engine=engine)
    # an update for a strike never recorded creates it
    assert store.update_strike("s-new", status="failed", reason="boom", engine=engine)["status"] == "failed"
    assert store.get_strike("missing", engine=engine) is None
    store.record_strike("s-10", contract_id="c-2", engine=engine)
    assert {r["strike_id"] for r in store.list_strikes(engine=engine)} == {"s-9", "s-new", "s-10"}
    assert [r["strike_id"] for r in store.list_strikes("c-2", engine=engine)] == ["s-10"]
    assert len(store.list_strikes(limit=2, engine=engine)) == 2


def test_contract_period_claimed_once(engine):
    assert store.claim_contract_period("c-1", "2024-05-01", "s-a", engine=engine) is True
    assert store.claim_contract_period("c-1", "2024-05-01", "s-b", engine=engine) is False
    assert store.claim_contract_period("c-1", "2024-05-02", "s-c", engine=engine) is True
    assert store.claim_contract_period("c-2", "2024-05-01", "s-d", engine=engine) is True
    store.record_strike("s-a", contract_id="c-1", domain="hvac", engine=engine)
    store.update_strike("s-a", status="completed", engine=engine)
    runs = store.list_contract_runs("c-1", engine=engine)
    # the winner's strike is recorded with its claim; the loser's never is
    assert [(r["period_key"], r["strike_id"], r["status"]) for r in runs] == [
        ("2024-05-01", "s-a", "completed"),
        ("2024-05-02", "s-c", "requested"),
    ]
    assert store.get_strike("s-b", engine=engine) is None
    assert len(store.list_contract_runs(engine=engine)) == 3


def test_a_claim_and_its_outbox_message_commit_together(engine):
    msg = {"message_id": "m-1", "type": "strike.requested", "strike_id": "s-a"}
    assert store.claim_contract_period("c-1", "p-1", "s-a", message=msg, engine=engine) is True
    # the loser of the claim writes nothing to the outbox
    assert store.claim_contract_period("c-1", "p-1", "s-b", message={**msg, "message_id": "m-2"}, engine=engine) is False
    assert [(r["message_id"], r["payload"]) for r in store.pending_outbox(engine=engine)] == [("m-1", msg)]
    store.note_outbox_failure("m-1", "broker away", engine=engine)
    assert store.pending_outbox(engine=engine)[0]["attempts"] == 1
    assert store.list_contract_runs(engine=engine)[0]["published_at"] is None
    store.mark_outbox_sent("m-1", engine=engine)
    store.mark_outbox_sent("m-1", engine=engine)  # idempotent
    assert store.pending_outbox(engine=engine) == []
    assert store.list_contract_runs(engine=engine)[0]["published_at"] is not None
    # a message the store cannot hold (NaN) is refused before anything is written: no claim without its message
    with pytest.raises(ValueError):
        store.claim_contract_period("c-1", "p-2", "s-c", message={**msg, "message_id": "m-3", "x": math.nan}, engine=engine)
    assert [r["period_key"] for r in store.list_contract_runs(engine=engine)] == ["p-1"]


def test_a_pass_claims_every_due_period_once_in_one_transaction(engine):
    def claims(n, period):
        return [{"contract_id": f"c-{i}", "period_key": period, "strike_id": f"s-{i}-{period}", "domain": "hvac",
                 "message": {"message_id": f"m-{i}-{period}", "strike_id": f"s-{i}-{period}"}} for i in range(n)]

    n = 1203  # more than one multi-row statement (CLAIM_ROWS_PER_STATEMENT)
    store.claim_contract_period("c-7", "p-1", "s-7-early", message={"message_id": "m-early"}, engine=engine)
    won = store.claim_contract_periods(claims(n, "p-1"), engine=engine)
    assert won == [f"s-{i}-p-1" for i in range(n) if i != 7]  # c-7's period was taken before the pass
    assert store.claim_contract_periods(claims(n, "p-1"), engine=engine) == []  # a second pass claims none
    outbox = store.pending_outbox(limit=10 * n, engine=engine)
    assert sorted(r["message_id"] for r in outbox) == sorted(["m-early"] + [f"m-{i}-p-1" for i in range(n) if i != 7])
    assert len({r["strike_id"] for r in outbox}) == n
    assert store.get_strike("s-3-p-1", engine=engine)["status"] == "requested"
    assert store.get_strike("s-7-p-1", engine=engine) is None  # the loser's strike is never recorded
    # the same period twice in one pass: the first claim wins, the second writes nothing
    twice = claims(1, "p-2") + [{**claims(1, "p-2")[0], "strike_id": "s-other", "message": {"message_id": "m-other"}}]
    assert store.claim_contract_periods(twice, engine=engine) == ["s-0-p-2"]
    assert len(store.pending_outbox(limit=10 * n, engine=engine)) == n + 1
    # a message the store cannot hold refuses the whole pass before anything is written
    bad = claims(2, "p-3")
    bad[1]["message"]["x"] = math.nan
    with pytest.raises(ValueError):
        store.claim_contract_periods(bad, engine=engine)
    assert not [r for r in store.list_contract_runs(engine=engine) if r["period_key"] == "p-3"]


# --- several processes at the same moment ----------------------------------------------
def _race(url, barrier, queue, worker):
    store.dispose_engines()  # never reuse the parent's pooled connections
    engine = store.get_engine(url)
    barrier.wait()
    claimed = store.claim_contract_period("c-race", "p-1", f"s-{worker}", engine=engine)
    stored = store.put_stage_result("s-race", "optimizer", {"worker": worker}, engine=engine)
    queue.put((worker, claimed, stored["worker"]))


def test_concurrent_processes_agree(db_url):
    store.get_engine(db_url)  # schema exists before the race (creation itself is also serialised)
    ctx = mp.get_context("fork")
    n = 4
    barrier, queue = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(db_url, barrier, queue, i)) for i in range(n)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert sum(claimed for _, claimed, _ in results) == 1
    winners = {stored for _, _, stored in results}
    assert len(winners) == 1  # every process sees the first writer's payload
    assert store.get_stage_result("s-race", "optimizer", engine=store.get_engine(db_url)) == {"worker": winners.pop()}
