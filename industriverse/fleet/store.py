"""The shared store: one SQL database through SQLAlchemy Core.

SQLite file by default (``$INDUSTRIVERSE_HOME/industriverse.db``, WAL journal, busy
timeout, ``BEGIN IMMEDIATE`` for write transactions so two processes never deadlock on
a lock upgrade), or any PostgreSQL URL (``postgresql+psycopg://user@host/db``) set in
``INDUSTRIVERSE_DB_URL`` or passed as ``url``.  Tables are created on first use.

What it holds:

* **stage results** keyed by ``(strike_id, stage)`` — the idempotency key of the
  workers: the first writer wins and every later writer gets the stored payload back;
* **artifacts**, content-addressed by SHA-256 (bytes, idempotent);
* **strikes** with their status (requested → running → completed | rejected | failed);
* **contract runs**: which strike served which ``(contract_id, period_key)`` — the
  regiment's claim, so a period is struck once however many daemons run;
* the **outbox**: messages to publish, written in the same transaction as the claim that
  decided them and marked sent once the broker confirmed them (a transactional outbox: a
  crash or a broker outage between the two leaves the row pending, and the relay publishes
  it again, so no claimed strike is lost);
* the **gateway tables** (capsules, capsule versions, activities) used by
  :mod:`industriverse.operate.gateway`;
* **API tokens** of the operator console: name, role and the SHA-256 of the secret (the
  secret itself is shown once, when made, and never stored).

Every function takes ``engine=None`` (the default engine of this process) so that a
worker, a test or a CLI can point it at another database.  Timestamps are UTC and
come back as ISO-8601 strings; JSON payloads come back as Python objects.
"""
from __future__ import annotations

import json
import os
import threading
import weakref
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from industriverse import data_home
from industriverse.errors import ServiceUnavailable
from industriverse.model.canonical import canonical_json, sha256_bytes

STRIKE_STATUSES = ("requested", "running", "completed", "rejected", "failed")
TERMINAL_STATUSES = frozenset({"completed", "rejected", "failed"})
# A status only moves forward; a terminal status is final (see update_strike).
_STATUS_RANK = {"requested": 0, "running": 1, "completed": 2, "rejected": 2, "failed": 2}

SQLITE_BUSY_TIMEOUT_MS = 30_000
_PG_SCHEMA_LOCK_KEY = 0x1D5_7C0DE  # advisory lock id serialising create_all across processes


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _json_dumps(obj: Any) -> str:
    # NaN is not JSON: PostgreSQL refuses it, SQLite would store it; refuse it on both.
    return json.dumps(obj, allow_nan=False, ensure_ascii=False)


metadata = sa.MetaData()

stage_results = sa.Table(
    "stage_results",
    metadata,
    sa.Column("strike_id", sa.String(128), primary_key=True),
    sa.Column("stage", sa.String(64), primary_key=True),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, default=_now),
)

artifacts = sa.Table(
    "artifacts",
    metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("media_type", sa.String(128), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, default=_now),
)

strikes = sa.Table(
    "strikes",
    metadata,
    sa.Column("strike_id", sa.String(128), primary_key=True),
    sa.Column("contract_id", sa.String(200), nullable=True, index=True),
    sa.Column("domain", sa.String(64), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("run_dir", sa.Text, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, default=_now),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, default=_now),
)

contract_runs = sa.Table(
    "contract_runs",
    metadata,
    sa.Column("contract_id", sa.String(200), primary_key=True),
    sa.Column("period_key", sa.String(128), primary_key=True),
    sa.Column("strike_id", sa.String(128), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, default=_now),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("message_id", sa.String(64), primary_key=True),
    sa.Column("strike_id", sa.String(128), nullable=False, index=True),
    sa.Column("payload", sa.JSON, nullable=False),  # the message as its JSON dict
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, default=_now),
    sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True, index=True),  # NULL: not confirmed yet
    sa.Column("attempts", sa.Integer, nullable=False, default=0),  # failed publish attempts
    sa.Column("last_error", sa.Text, nullable=True),
)

# the live loop's state per site (industriverse.operate.live): what a restarted daemon resumes from
live_sites = sa.Table(
    "live_sites",
    metadata,
    sa.Column("site", sa.String(200), primary_key=True),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, default=_now),
)

# --- gateway tables (used by industriverse.operate.gateway) -----------------------------------
capsules = sa.Table(
    "capsules",
    metadata,
    sa.Column("capsule_id", sa.String(200), primary_key=True),
    sa.Column("domain", sa.String(64), nullable=True),
    sa.Column("title", sa.Text, nullable=True),
    sa.Column("active_version", sa.BigInteger, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, default=_now),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, default=_now),
)

capsule_versions = sa.Table(
    "capsule_versions",
    metadata,
    sa.Column("capsule_id", sa.String(200), sa.ForeignKey("capsules.capsule_id"), primary_key=True),
    sa.Column("version", sa.BigInteger, primary_key=True, autoincrement=False),
    # sha256 of the canonical manifest without its signature: "the same capsule content"
    sa.Column("content_sha256", sa.String(64), nullable=False),
    sa.Column("manifest", sa.JSON, nullable=False),
    sa.Column("capsule_dir", sa.Text, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),  # active | superseded | rolled_back
    sa.Column("deployment_activity_id", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, default=_now),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, default=_now),
)

activities = sa.Table(
    "activities",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("capsule_id", sa.String(200), nullable=False, index=True),
    sa.Column("version", sa.BigInteger, nullable=True),
    sa.Column("activity_type", sa.String(16), nullable=False),  # deployment | supersede | rollback | alert
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    # unique idempotency key (deployment: "deployment:<content sha256>"); NULL for the rest
    sa.Column("dedup_key", sa.String(200), nullable=True, unique=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, default=_now),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, default=_now),
)


api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),  # viewer | operator
    sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, default=_now),
)
TOKEN_ROLES = ("viewer", "operator")


# --- engines --------------------------------------------------------------------------
_engines: dict[tuple[int, str], Engine] = {}
_engines_lock = threading.Lock()
_schema_ready: "weakref.WeakSet[Engine]" = weakref.WeakSet()


def default_url() -> str:
    """``$INDUSTRIVERSE_DB_URL``, else the SQLite file under the data directory."""
    url = os.environ.get("INDUSTRIVERSE_DB_URL")
    if url:
        return url
    return f"sqlite:///{data_home() / 'industriverse.db'}"


def _configure_sqlite(engine: Engine, in_memory: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # pragma: no cover - exercised through every query
        # pysqlite's own transaction handling defers BEGIN and breaks transactional DDL;
        # hand transactions to SQLAlchemy's "begin" event below (the documented recipe).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        if not in_memory:
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # pragma: no cover - exercised through every query
        # Writers take the write lock up front: a deferred transaction that reads and then
        # writes fails with SQLITE_BUSY instead of waiting when another process wrote meanwhile.
        immediate = conn.get_execution_options().get("industriverse_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def get_engine(url: str | None = None) -> Engine:
    """The engine for ``url`` (default: :func:`default_url`), one per URL per process.

    The schema is created on first use.  Engines are cached per process id so that a
    forked worker never shares pooled connections with its parent.
    """
    url = url or default_url()
    try:
        return _get_engine(url)
    except (sa.exc.SQLAlchemyError, OSError, ImportError, ValueError) as exc:
        # unreachable server, missing database or driver, unwritable SQLite directory, malformed URL:
        # an infrastructure failure (exit 3) in one line naming the database, never a 100-line traceback
        raise ServiceUnavailable("database", url, _db_problem(exc)) from None


def _db_problem(exc: BaseException) -> str:
    """The first line of what went wrong (the driver's own message where there is one)."""
    orig = getattr(exc, "orig", None) or exc
    text = (str(orig).strip().splitlines() or [""])[0][:200]
    if isinstance(exc, sa.exc.ArgumentError):
        return "not a valid database URL"
    return f"{type(orig).__name__}: {text}" if text else type(orig).__name__


def _get_engine(url: str) -> Engine:
    parsed = sa.engine.make_url(url)
    key = (os.getpid(), parsed.render_as_string(hide_password=False))
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            if parsed.get_backend_name() == "sqlite":
                database = parsed.database or ""
                in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
                if not in_memory:
                    Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
                engine = sa.create_engine(
                    parsed,
                    json_serializer=_json_dumps,
                    connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
                )
                _configure_sqlite(engine, in_memory)
            else:
                engine = sa.create_engine(parsed, json_serializer=_json_dumps, pool_pre_ping=True)
            _engines[key] = engine
    ensure_schema(engine)
    return engine


def dispose_engines() -> None:
    """Close every cached engine of this process (tests, and before a fork)."""
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def ensure_schema(engine: Engine) -> None:
    """Create the tables on ``engine`` if they are missing (once per engine per process)."""
    if engine in _schema_ready:
        return
    with write_transaction(engine) as conn:
        if conn.dialect.name == "postgresql":
            # Two processes creating the schema at once would collide on pg_type; serialise them.
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_SCHEMA_LOCK_KEY})
        metadata.create_all(conn, checkfirst=True)
    _schema_ready.add(engine)


def _resolve(engine: Engine | None) -> Engine:
    if engine is None:
        return get_engine()
    ensure_schema(engine)
    return engine


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection in a write transaction (``BEGIN IMMEDIATE`` on SQLite); commits on exit."""
    with engine.connect() as conn:
        conn.execution_options(industriverse_write=True)
        with conn.begin():
            yield conn


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection in a plain (read) transaction."""
    with engine.connect() as conn:
        with conn.begin():
            yield conn


def _dialect_insert(conn: Connection, table: sa.Table):
    """The dialect's ``INSERT`` (with ``on_conflict_do_nothing``) for ``table``."""
    name = conn.dialect.name
    # each dialect's module is imported where it is used: PostgreSQL's (with asyncio and its
    # async drivers) costs a process on SQLite ~50 ms at start
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert

        return insert(table)
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert

        return insert(table)
    raise NotImplementedError(f"store supports sqlite and postgresql, not {name}")


def insert_ignore(conn: Connection, table: sa.Table, values: dict, conflict_columns: list[str]) -> bool:
    """``INSERT ... ON CONFLICT (conflict_columns) DO NOTHING``; True when the row was inserted.

    Uses ``RETURNING`` rather than ``rowcount``, which some drivers leave at -1 here.
    """
    stmt = _dialect_insert(conn, table).values(**values).on_conflict_do_nothing(index_elements=conflict_columns)
    returned = conn.execute(stmt.returning(*[table.c[name] for name in conflict_columns])).first()
    return returned is not None


def iso(value: Any) -> Any:
    """A datetime as an ISO-8601 UTC string (SQLite hands back naive UTC values)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc).isoformat()
    return value


def row_dict(row: sa.Row | None) -> dict | None:
    """A result row as a plain dict with ISO timestamps."""
    if row is None:
        return None
    return {key: iso(value) for key, value in row._mapping.items()}


# --- stage results --------------------------------------------------------------------
def put_stage_result(strike_id: str, stage: str, payload: dict, *, engine: Engine | None = None) -> dict:
    """Store the result of ``stage`` for ``strike_id`` unless one is stored; return the stored one.

    First writer wins: a redelivered message that redid the work gets the payload of the
    first run back (and should publish that), so downstream stages never see two results.
    """
    _json_dumps(payload)  # refuse NaN/infinity with a ValueError on every dialect, before touching the DB
    engine = _resolve(engine)
    with write_transaction(engine) as conn:
        insert_ignore(
            conn,
            stage_results,
            {"strike_id": strike_id, "stage": stage, "payload": payload, "created_at": _now()},
            ["strike_id", "stage"],
        )
        stored = conn.execute(
            sa.select(stage_results.c.payload).where(
                stage_results.c.strike_id == strike_id, stage_results.c.stage == stage
            )
        ).scalar_one()
    return stored


def get_stage_result(strike_id: str, stage: str, *, engine: Engine | None = None) -> dict | None:
    """The stored result of ``stage`` for ``strike_id``, or None."""
    engine = _resolve(engine)
    with read_transaction(engine) as conn:
        return conn.execute(
            sa.select(stage_results.c.payload).where(
                stage_results.c.strike_id == strike_id, stage_results.c.stage == stage
            )
        ).scalar_one_or_none()


def list_stage_results(strike_id: str, *, engine: Engine | None = None) -> dict[str, dict]:
    """``{stage: payload}`` of every stored stage of ``strike_id``, in the order they were stored."""
    engine = _resolve(engine)
    with read_transaction(engine) as conn:
        rows = conn.execute(
            sa.select(stage_results.c.stage, stage_results.c.payload)
            .where(stage_results.c.strike_id == strike_id)
            .order_by(stage_results.c.created_at, stage_results.c.stage)
        ).all()
    return {stage: payload for stage, payload in rows}


def stage_timeline(strike_id: str, *, engine: Engine | None = None) -> list[dict]:
    """``[{stage, created_at}]`` of every stored stage of ``strike_id``, oldest first: when each
    stage's result was stored (the end of that stage)."""
    engine = _resolve(engine)
    with read_transaction(engine) as conn:
        rows = conn.execute(
            sa.select(stage_results.c.stage, stage_results.c.created_at)
            .where(stage_results.c.strike_id == strike_id)
            .order_by(stage_results.c.created_at, stage_results.c.stage)
        ).all()
    return [{"stage": stage, "created_at": iso(created)} for stage, created in rows]


# --- artifacts ------------------------------------------------------------------------
def put_artifact(data: bytes, *, media_type: str = "application/json", engine: Engine | None = None) -> str:
    """Store ``data`` under its SHA-256 (hex) and return it; storing it again is a no-op."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"put_artifact takes bytes, not {type(data).__name__}")
    data = bytes(data)
    digest = sha256_bytes(data)
    engine = _resolve(engine)
    with write_transaction(engine) as conn:
        insert_ignore(
            conn,
            artifacts,
            {"sha256": digest, "media_type": media_type, "size": len(data), "data": data, "created_at": _now()},
            ["sha256"],
        )
    return digest


def get_artifact(sha256: str, *, engine: Engine | None = None) -> bytes:
    """The bytes stored under ``sha256``; ``KeyError`` if there are none."""
    engine = _resolve(engine)
    with read_transaction(engine) as conn:
        data = conn.execute(sa.select(artifacts.c.data).where(artifacts.c.sha256 == sha256.lower())).scalar_one_or_none()
    if data is None:
        raise KeyError(sha256)
    return bytes(data)


def put_json_artifact(obj: Any, *, engine: Engine | None = None) -> str:
    """Store the canonical JSON of ``obj``; the returned key equals ``canonical.sha256_of(obj)``."""
    return put_artifact(canonical_json(obj), media_type="application/json", engine=engine)


def get_json_artifact(sha256: str, *, engine: Engine | None = None) -> Any:
    """The JSON object stored under ``sha256``; ``KeyError`` if there is none."""
    return json.loads(get_artifact(sha256, engine=engine).decode("utf-8"))


# --- strikes --------------------------------------------------------------------------
def _check_status(status: str) -> None:
    if status not in _STATUS_RANK:
        raise ValueError(f"strike status must be one of {', '.join(STRIKE_STATUSES)}, not {status!r}")


def _strike_row(conn: Connection, strike_id: str, *, lock: bool = False) -> dict | None:
    stmt = sa.select(strikes).where(strikes.c.strike_id == strike_id)
    if lock and conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return row_dict(conn.execute(stmt).first())


def record_strike(
    strike_id: str,
    *,
    contract_id: str | None = None,
    domain: str | None = None,
    status: str = "requested",
    reason: str | None = None,
    run_dir: str | None = None,
    engine: Engine | None = None,
) -> dict:
    """Record a strike; return its row.

    Recording an existing strike (a redelivered request) keeps its status and fills in
    only the fields it did not have yet; change the status with :func:`update_strike`.
    """
    _check_status(status)
    engine = _resolve(engine)
    now = _now()
    with write_transaction(engine) as conn:
        created = insert_ignore(
            conn,
            strikes,
            {
                "strike_id": strike_id,
                "contract_id": contract_id,
                "domain": domain,
                "status": status,
                "reason": reason,
                "run_dir": str(run_dir) if run_dir is not None else None,
                "created_at": now,
                "updated_at": now,
            },
            ["strike_id"],
        )
        if not created:
            fill = {
                name: value
                for name, value in (("contract_id", contract_id), ("domain", domain), ("run_dir", run_dir))
                if value is not None
            }
            for name, value in fill.items():
                conn.execute(
                    sa.update(strikes)
                    .where(strikes.c.strike_id == strike_id, strikes.c[name].is_(None))
                    .values({name: str(value), "updated_at": now})
                )
        return _strike_row(conn, strike_id)


def update_strike(
    strike_id: str,
    *,
    status: str,
    reason: str | None = None,
    run_dir: str | None = None,
    force: bool = False,
    engine: Engine | None = None,
) -> dict:
    """Move a strike to ``status`` (creating the row if absent); return its row.

    Statuses only move forward (requested → running → completed | rejected | failed) and
    a terminal status is final: a late or redelivered message cannot turn a completed
    strike back into a running one.  Such an update is ignored and the stored row is
    returned; ``force=True`` overrides (an operator re-running a strike).
    """
    _check_status(status)
    engine = _resolve(engine)
    now = _now()
    with write_transaction(engine) as conn:
        insert_ignore(
            conn,
            strikes,
            {"strike_id": strike_id, "status": status, "reason": reason,
             "run_dir": str(run_dir) if run_dir is not None else None, "created_at": now, "updated_at": now},
            ["strike_id"],
        )
        row = _strike_row(conn, strike_id, lock=True)
        current = row["status"]
        moves_forward = _STATUS_RANK[status] > _STATUS_RANK[current] or (
            status == current and current not in TERMINAL_STATUSES
        )
        if force or moves_forward:
            values: dict[str, Any] = {"status": status, "updated_at": now}
            if reason is not None or status != current:
                values["reason"] = reason
            if run_dir is not None:
                values["run_dir"] = str(run_dir)
            conn.execute(sa.update(strikes).where(strikes.c.strike_id == strike_id).values(values))
            row = _strike_row(conn, strike_id)
        return row


def get_strike(strike_id: str, *, engine: Engine | None = None) -> dict | None:
    """The strike's row (strike_id, contract_id, domain, status, reason, run_dir, created_at, updated_at) or None."""
    engine = _resolve(engine)
    with read_transaction(engine) as conn:
        return _strike_row(conn, strike_id)


def list_strikes(contract_id: str | None = None, limit: int = 100, *, engine: Engine | None = None) -> list[dict]:
    """The latest ``limit`` strikes (of ``contract_id`` if given), newest first."""
    engine = _resolve(engine)
    stmt = sa.select(strikes).order_by(strikes.c.created_at.desc(), strikes.c.strike_id).limit(limit)
    if contract_id is not None:
        stmt = stmt.where(strikes.c.contract_id == contract_id)
    with read_transaction(engine) as conn:
        return [row_dict(r) for r in conn.execute(stmt)]


# --- regiment: one strike per contract and period -------------------------------------
def claim_contract_period(contract_id: str, period_key: str, strike_id: str, *, domain: str | None = None,
                          message: dict | None = None, engine: Engine | None = None) -> bool:
    """Claim ``(contract_id, period_key)`` for ``strike_id``; True only for the first claimer.

    The primary key makes the claim atomic across processes and machines.  The winner's
    strike is recorded (status ``requested``) and ``message`` (the strike request as a JSON
    dict with its ``message_id``) put in the outbox, all in the same transaction: a claim
    never exists without its strike and the request still to be published.  One claim of
    :func:`claim_contract_periods`.
    """
    claim = {"contract_id": contract_id, "period_key": period_key, "strike_id": strike_id, "domain": domain,
             "message": message}
    return bool(claim_contract_periods([claim], engine=engine))


CLAIM_ROWS_PER_STATEMENT = 500  # rows per multi-row INSERT (SQLite allows 32766 bound values per statement)


def claim_contract_periods(claims: list[dict], *, engine: Engine | None = None) -> list[str]:
    """Claim many ``(contract_id, period_key)`` periods in one transaction; the strike IDs won, in order.

    ``claims``: dicts with ``contract_id``, ``period_key``, ``strike_id`` and optionally ``domain``
    and ``message`` (see :func:`claim_contract_period`).  Each period already claimed (by anyone,
    or earlier in ``claims``) is lost; for each one won its strike is recorded and its message put
    in the outbox, all in the same transaction (multi-row ``INSERT ... ON CONFLICT DO NOTHING
    RETURNING`` for the claims, multi-row inserts for the strikes and the outbox), so a pass of the
    regiment costs one transaction however many contracts are due.
    """
    for c in claims:
        if c.get("message") is not None:
            _json_dumps(c["message"])  # refuse NaN before touching the DB
    seen: set[tuple[str, str]] = set()
    unique = []
    for c in claims:  # the first claim of a period in the list is the one that can win
        key = (c["contract_id"], c["period_key"])
        if key not in seen:
            seen.add(key)
            unique.append(c)
    if not unique:
        return []
    engine = _resolve(engine)
    with write_transaction(engine) as conn:
        now = _now()
        won: set[tuple[str, str]] = set()
        for i in range(0, len(unique), CLAIM_ROWS_PER_STATEMENT):
            rows = [{"contract_id": c["contract_id"], "period_key": c["period_key"], "strike_id": c["strike_id"],
                     "created_at": now} for c in unique[i:i + CLAIM_ROWS_PER_STATEMENT]]
            stmt = _dialect_insert(conn, contract_runs).values(rows).on_conflict_do_nothing(
                index_elements=["contract_id", "period_key"]).returning(contract_runs.c.contract_id, contract_runs.c.period_key)
            won.update((r[0], r[1]) for r in conn.execute(stmt))
        winners = [c for c in unique if (c["contract_id"], c["period_key"]) in won]
        if not winners:
            return []
        for i in range(0, len(winners), CLAIM_ROWS_PER_STATEMENT):
            part = winners[i:i + CLAIM_ROWS_PER_STATEMENT]
            conn.execute(_dialect_insert(conn, strikes).values([
                {"strike_id": c["strike_id"], "contract_id": c["contract_id"], "domain": c.get("domain"),
                 "status": "requested", "reason": None, "run_dir": None, "created_at": now, "updated_at": now}
                for c in part]).on_conflict_do_nothing(index_elements=["strike_id"]))
        messages = [{"message_id": c["message"]["message_id"], "strike_id": c["strike_id"], "payload": c["message"],
                     "created_at": now, "attempts": 0} for c in winners if c.get("message") is not None]
        if messages:
            conn.execute(sa.insert(outbox), messages)  # executemany
        return [c["strike_id"] for c in winners]


# --- outbox ----------------------------------------------------------------------------
def pending_outbox(limit: int = 1000, *, engine: Engine | None = None) -> list[dict]:
    """Outbox rows not confirmed yet, oldest first: message_id, strike_id, payload, attempts, last_error, created_at."""
    engine = _resolve(engine)
    stmt = (sa.select(outbox.c.message_id, outbox.c.strike_id, outbox.c.payload, outbox.c.attempts,
                      outbox.c.last_error, outbox.c.created_at)
            .where(outbox.c.sent_at.is_(None)).order_by(outbox.c.created_at, outbox.c.message_id).limit(limit))
    with read_transaction(engine) as conn:
        return [row_dict(r) for r in conn.execute(stmt)]


def mark_outbox_sent(message_ids: str | list[str], *, engine: Engine | None = None) -> None:
    """Record that the broker confirmed the outbox message(s) ``message_ids`` (one ID or a list; idempotent)."""
    ids = [message_ids] if isinstance(message_ids, str) else list(message_ids)
    if not ids:
        return
    engine = _resolve(engine)
    with write_transaction(engine) as conn:
        conn.execute(sa.update(outbox).where(outbox.c.message_id.in_(ids), outbox.c.sent_at.is_(None))
                     .values(sent_at=_now()))


def note_outbox_failure(message_id: str, error: str, *, engine: Engine | None = None) -> None:
    """Count a failed publish of ``message_id`` and keep its reason (the row stays pending)."""
    engine = _resolve(engine)
    with write_transaction(engine) as conn:
        conn.execute(sa.update(outbox).where(outbox.c.message_id == message_id)
                     .values(attempts=outbox.c.attempts + 1, last_error=error[:2000]))


def list_outbox(strike_id: str | None = None, *, engine: Engine | None = None) -> list[dict]:
    """Every outbox row (of ``strike_id`` if given), oldest first, with ``sent_at`` (None while pending)."""
    engine = _resolve(engine)
    stmt = sa.select(outbox).order_by(outbox.c.created_at, outbox.c.message_id)
    if strike_id is not None:
        stmt = stmt.where(outbox.c.strike_id == strike_id)
    with read_transaction(engine) as conn:
        return [row_dict(r) for r in conn.execute(stmt)]


def list_contract_runs(contract_id: str | None = None, *, engine: Engine | None = None) -> list[dict]:
    """Claimed periods, oldest first: contract_id, period_key, strike_id, created_at, plus the
    strike's ``status``, ``reason`` and ``domain`` (None when the strike was never recorded) and
    ``published_at``, when the broker confirmed its request (None while it waits in the outbox)."""
    engine = _resolve(engine)
    published = (sa.select(outbox.c.strike_id, sa.func.max(outbox.c.sent_at).label("published_at"))
                 .group_by(outbox.c.strike_id).subquery())
    stmt = (
        sa.select(
            contract_runs.c.contract_id,
            contract_runs.c.period_key,
            contract_runs.c.strike_id,
            contract_runs.c.created_at,
            strikes.c.status,
            strikes.c.reason,
            strikes.c.domain,
            published.c.published_at,
        )
        .select_from(contract_runs.outerjoin(strikes, strikes.c.strike_id == contract_runs.c.strike_id)
                     .outerjoin(published, published.c.strike_id == contract_runs.c.strike_id))
        .order_by(contract_runs.c.created_at, contract_runs.c.contract_id, contract_runs.c.period_key)
    )
    if contract_id is not None:
        stmt = stmt.where(contract_runs.c.contract_id == contract_id)
    with read_transaction(engine) as conn:
        return [row_dict(r) for r in conn.execute(stmt)]


def put_live_state(site: str, payload: dict, *, engine: Engine | None = None) -> None:
    """Store (replace) the live loop's state of ``site``."""
    _json_dumps(payload)
    engine = _resolve(engine)
    with write_transaction(engine) as conn:
        if not insert_ignore(conn, live_sites, {"site": site, "payload": payload, "updated_at": _now()}, ["site"]):
            conn.execute(sa.update(live_sites).where(live_sites.c.site == site).values(payload=payload, updated_at=_now()))


def get_live_state(site: str, *, engine: Engine | None = None) -> dict | None:
    """The live loop's stored state of ``site``, or None."""
    engine = _resolve(engine)
    with read_transaction(engine) as conn:
        return conn.execute(sa.select(live_sites.c.payload).where(live_sites.c.site == site)).scalar_one_or_none()


# --- API tokens of the operator console -----------------------------------------------
def create_api_token(name: str, role: str, token_sha256: str, *, engine: Engine | None = None) -> dict:
    """Store a token's hash under ``name`` (replacing an older token of that name); return the row."""
    if role not in TOKEN_ROLES:
        raise ValueError(f"role must be one of {', '.join(TOKEN_ROLES)}, not {role!r}")
    engine = _resolve(engine)
    with write_transaction(engine) as conn:
        conn.execute(sa.delete(api_tokens).where(api_tokens.c.name == name))
        conn.execute(sa.insert(api_tokens).values(name=name, role=role, token_sha256=token_sha256, created_at=_now()))
        return row_dict(conn.execute(sa.select(api_tokens).where(api_tokens.c.name == name)).first())


def find_api_token(token_sha256: str, *, engine: Engine | None = None) -> dict | None:
    """The token row (name, role, created_at) whose hash is ``token_sha256``, or None."""
    engine = _resolve(engine)
    with read_transaction(engine) as conn:
        row = conn.execute(sa.select(api_tokens.c.name, api_tokens.c.role, api_tokens.c.created_at)
                           .where(api_tokens.c.token_sha256 == token_sha256)).first()
    return row_dict(row)


def list_api_tokens(*, engine: Engine | None = None) -> list[dict]:
    """Every token's name, role and creation time (never the hash)."""
    engine = _resolve(engine)
    with read_transaction(engine) as conn:
        return [row_dict(r) for r in conn.execute(
            sa.select(api_tokens.c.name, api_tokens.c.role, api_tokens.c.created_at).order_by(api_tokens.c.name))]


def revoke_api_token(name: str, *, engine: Engine | None = None) -> bool:
    """Delete the token ``name``; True if there was one."""
    engine = _resolve(engine)
    with write_transaction(engine) as conn:
        return conn.execute(sa.delete(api_tokens).where(api_tokens.c.name == name)).rowcount > 0
