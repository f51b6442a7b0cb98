"""The capsule gateway (CapsuleGatewayService): a registry of deployed capsules over SQL.

Tables (:mod:`industriverse.fleet.store`): ``capsules`` (one row per capsule id, with its
active version), ``capsule_versions`` (every registered version, its manifest and
status ``active | superseded | rolled_back``) and ``activities`` (``id, capsule_id,
version, activity_type, status, payload, created_at, updated_at``) of type

* ``deployment`` — a version went live; its ID is "the deployed activity ID".  Status
  ``active``, later ``superseded`` or ``rolled_back``;
* ``supersede`` — a newer version replaced the active one (status ``completed``);
* ``rollback`` — the active version was withdrawn and the previous one restored
  (status ``completed``);
* ``alert`` — the runtime monitor saw a breach (status ``open``).

Registering verifies the capsule first (:func:`industriverse.trust.capsule.inspect_capsule`) and
refuses an unsigned, tampered or non-passing one with :class:`DeploymentRefused`.
Registering the same content again returns the same deployment activity ID, also when
two processes do it at the same moment: the deployment row carries a unique key
``deployment:<content sha256>`` and the loser of the race re-reads the winner's row.
Registering an already deployed content does not re-activate it after a rollback: deploy
a new version for that.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from industriverse.fleet import store
from industriverse.trust.capsule import CapsuleManifest, content_sha256, inspect_capsule, manifest_path_of
from industriverse.errors import IndustriverseError

ACTIVITY_TYPES = ("deployment", "supersede", "rollback", "alert")


class DeploymentRefused(IndustriverseError):
    """The gateway will not deploy this capsule; ``reasons`` says why (exit code 1)."""

    exit_code = 1

    def __init__(self, reasons: list[str]):
        self.reasons = list(reasons)
        super().__init__("deployment refused: " + "; ".join(self.reasons))


class VersionTaken(DeploymentRefused):
    """The capsule's version number is registered with other content: another strike of the same
    capsule whose proof was made in the same millisecond (versions come from the proof's time)."""

    def __init__(self, capsule_id: str, version: int):
        self.capsule_id, self.version = capsule_id, version
        super().__init__([f"capsule {capsule_id} version {version} is already registered with other content"])


class GatewayError(IndustriverseError):
    """An operation the gateway's state does not allow (unknown capsule, nothing to roll back)."""

    exit_code = 1


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _new_id() -> str:
    return "act-" + uuid.uuid4().hex


class CapsuleGatewayService:
    """Registry of capsules, versions and activities on one SQL database."""

    def __init__(self, engine: Engine | str | None = None, *, keys_dir: str | Path | None = None):
        if engine is None or isinstance(engine, str):
            engine = store.get_engine(engine)
        else:
            store.ensure_schema(engine)
        self.engine = engine
        self.keys_dir = keys_dir

    # --- helpers ---------------------------------------------------------------------
    def _lock_capsule(self, conn: Connection, capsule_id: str) -> dict | None:
        stmt = sa.select(store.capsules).where(store.capsules.c.capsule_id == capsule_id)
        if conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update()  # one writer per capsule; SQLite's BEGIN IMMEDIATE already serialises
        return store.row_dict(conn.execute(stmt).first())

    def _insert_activity(self, conn: Connection, *, capsule_id: str, version: int | None, activity_type: str,
                         status: str, payload: dict, dedup_key: str | None = None) -> str:
        activity_id, now = _new_id(), _now()
        conn.execute(sa.insert(store.activities).values(
            id=activity_id, capsule_id=capsule_id, version=version, activity_type=activity_type, status=status,
            payload=payload, dedup_key=dedup_key, created_at=now, updated_at=now,
        ))
        return activity_id

    def _set_activity_status(self, conn: Connection, activity_id: str, status: str) -> None:
        conn.execute(sa.update(store.activities).where(store.activities.c.id == activity_id)
                     .values(status=status, updated_at=_now()))

    def _set_version_status(self, conn: Connection, capsule_id: str, version: int, status: str) -> None:
        conn.execute(sa.update(store.capsule_versions)
                     .where(store.capsule_versions.c.capsule_id == capsule_id,
                            store.capsule_versions.c.version == version)
                     .values(status=status, updated_at=_now()))

    def _deployment_by_key(self, conn: Connection, dedup_key: str) -> str | None:
        return conn.execute(sa.select(store.activities.c.id).where(store.activities.c.dedup_key == dedup_key)).scalar()

    # --- registering -----------------------------------------------------------------
    def register(self, capsule_dir: str | Path) -> str:
        """Verify and deploy a capsule (directory or its manifest.yaml); return the deployment activity ID.

        Raises :class:`DeploymentRefused` with every reason for an unsigned, tampered,
        non-passing or legacy capsule, a version number reused with other content, or a
        version older than one already registered.  ``BadInput`` for an unreadable one.
        """
        mpath = manifest_path_of(capsule_dir)
        manifest, raw, problems = inspect_capsule(mpath, keys_dir=self.keys_dir)  # a legacy layout: what it lacks
        if problems:
            raise DeploymentRefused(problems)
        content = content_sha256(raw)
        dedup_key = f"deployment:{content}"
        for attempt in range(3):
            try:
                return self._register_verified(manifest, raw, content, dedup_key, mpath.parent.resolve())
            except IntegrityError:
                # Another process registered the same capsule (or a version) meanwhile: re-read.
                with store.read_transaction(self.engine) as conn:
                    existing = self._deployment_by_key(conn, dedup_key)
                if existing is not None:
                    return existing
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _existing_registration(self, conn: Connection, cid: str, version: int, content: str,
                               dedup_key: str) -> str | None:
        """The deployment activity of this very content if registered; refuse a clash; else None."""
        existing = self._deployment_by_key(conn, dedup_key)
        if existing is not None:
            return existing
        versions = store.capsule_versions
        same_number = conn.execute(sa.select(versions.c.content_sha256, versions.c.deployment_activity_id).where(
            versions.c.capsule_id == cid, versions.c.version == version)).first()
        if same_number is not None:
            if same_number.content_sha256 == content:
                return same_number.deployment_activity_id
            raise VersionTaken(cid, version)
        return None

    def _register_verified(self, manifest: CapsuleManifest, raw: dict, content: str, dedup_key: str,
                           capsule_dir: Path) -> str:
        cid, version = manifest.id, manifest.version
        signature = raw.get("signature") or {}
        with store.write_transaction(self.engine) as conn:
            now = _now()
            store.insert_ignore(conn, store.capsules, {
                "capsule_id": cid, "domain": manifest.domain, "title": manifest.title,
                "active_version": None, "created_at": now, "updated_at": now,
            }, ["capsule_id"])
            capsule = self._lock_capsule(conn, cid)
            existing = self._existing_registration(conn, cid, version, content, dedup_key)
            if existing is not None:
                return existing  # same content already registered: same activity, nothing changes
            versions = store.capsule_versions
            newest = conn.execute(sa.select(sa.func.max(versions.c.version)).where(versions.c.capsule_id == cid)).scalar()
            # Strikes of one client run concurrently in a fleet: a version made before the newest
            # registered one but arriving after it is recorded as already superseded, never
            # activated over the newer plan (and never refused: its strike did deploy it in order).
            late = newest is not None and version < newest
            status = "superseded" if late else "active"
            activity_id = self._insert_activity(conn, capsule_id=cid, version=version, activity_type="deployment",
                                                status=status, dedup_key=dedup_key, payload={
                "superseded_on_arrival_by": newest if late else None,
                "capsule_dir": str(capsule_dir),
                "manifest": str(capsule_dir / "manifest.yaml"),
                "content_sha256": content,
                "strike_id": manifest.strike_id,
                "domain": manifest.domain,
                "key_id": signature.get("key_id"),
                "previous_version": capsule["active_version"],
            })
            conn.execute(sa.insert(versions).values(
                capsule_id=cid, version=version, content_sha256=content, manifest=raw,
                capsule_dir=str(capsule_dir), status=status, deployment_activity_id=activity_id,
                created_at=now, updated_at=now,
            ))
            if late:
                return activity_id
            previous = capsule["active_version"]
            if previous is not None:
                old = conn.execute(sa.select(versions.c.deployment_activity_id).where(
                    versions.c.capsule_id == cid, versions.c.version == previous)).scalar_one()
                self._set_version_status(conn, cid, previous, "superseded")
                self._set_activity_status(conn, old, "superseded")
                self._insert_activity(conn, capsule_id=cid, version=version, activity_type="supersede",
                                      status="completed", payload={
                    "from_version": previous, "to_version": version,
                    "superseded_activity_id": old, "deployment_activity_id": activity_id,
                })
            conn.execute(sa.update(store.capsules).where(store.capsules.c.capsule_id == cid).values(
                active_version=version, domain=manifest.domain, title=manifest.title, updated_at=now))
            return activity_id

    # --- operating -------------------------------------------------------------------
    def rollback(self, capsule_id: str, reason: str) -> str:
        """Withdraw the active version and restore the previous one; return the rollback activity ID.

        The previous version is the newest older one that was superseded (never one that
        was itself rolled back).  With none, the capsule is left with no active version
        (the site's baseline controller runs).  :class:`GatewayError` if the capsule is
        unknown or has no active version.
        """
        versions = store.capsule_versions
        with store.write_transaction(self.engine) as conn:
            capsule = self._lock_capsule(conn, capsule_id)
            if capsule is None:
                raise GatewayError(f"unknown capsule {capsule_id}")
            current = capsule["active_version"]
            if current is None:
                raise GatewayError(f"capsule {capsule_id} has no active version to roll back")
            rows = conn.execute(sa.select(versions.c.version, versions.c.deployment_activity_id, versions.c.status)
                                .where(versions.c.capsule_id == capsule_id)).all()
            by_version = {v: (act, status) for v, act, status in rows}
            older = sorted((v for v, (_, status) in by_version.items() if v < current and status == "superseded"),
                           reverse=True)
            restored = older[0] if older else None
            self._set_version_status(conn, capsule_id, current, "rolled_back")
            self._set_activity_status(conn, by_version[current][0], "rolled_back")
            if restored is not None:
                self._set_version_status(conn, capsule_id, restored, "active")
                self._set_activity_status(conn, by_version[restored][0], "active")
            conn.execute(sa.update(store.capsules).where(store.capsules.c.capsule_id == capsule_id)
                         .values(active_version=restored, updated_at=_now()))
            return self._insert_activity(conn, capsule_id=capsule_id, version=current, activity_type="rollback",
                                         status="completed", payload={
                "reason": reason, "from_version": current, "to_version": restored,
                "withdrawn_activity_id": by_version[current][0],
                "restored_activity_id": by_version[restored][0] if restored is not None else None,
            })

    def record_alert(self, capsule_id: str, payload: dict) -> str:
        """Record an ``alert`` activity (status ``open``) against the capsule's active version."""
        with store.write_transaction(self.engine) as conn:
            capsule = conn.execute(sa.select(store.capsules.c.active_version)
                                   .where(store.capsules.c.capsule_id == capsule_id)).first()
            if capsule is None:
                raise GatewayError(f"unknown capsule {capsule_id}")
            return self._insert_activity(conn, capsule_id=capsule_id, version=capsule[0],
                                         activity_type="alert", status="open", payload=dict(payload))

    # --- reading ---------------------------------------------------------------------
    def active_version(self, capsule_id: str) -> int | None:
        """The active version of ``capsule_id``, or None (unknown, or everything rolled back)."""
        with store.read_transaction(self.engine) as conn:
            return conn.execute(sa.select(store.capsules.c.active_version)
                                .where(store.capsules.c.capsule_id == capsule_id)).scalar()

    def active_deployment(self, capsule_id: str) -> dict | None:
        """The active version's row (capsule_id, version, capsule_dir, manifest, deployment_activity_id, ...)."""
        v, c = store.capsule_versions, store.capsules
        with store.read_transaction(self.engine) as conn:
            row = conn.execute(sa.select(v).select_from(v.join(c, sa.and_(
                c.c.capsule_id == v.c.capsule_id, c.c.active_version == v.c.version)))
                .where(v.c.capsule_id == capsule_id)).first()
        return store.row_dict(row)

    def list_capsules(self) -> list[dict]:
        """Every capsule: capsule_id, domain, title, active_version, versions, active_activity_id, created_at, updated_at."""
        c, v = store.capsules, store.capsule_versions
        counts = (sa.select(v.c.capsule_id, sa.func.count().label("versions")).group_by(v.c.capsule_id).subquery())
        active = v.alias("active")
        stmt = (sa.select(c, counts.c.versions, active.c.deployment_activity_id.label("active_activity_id"))
                .select_from(c.outerjoin(counts, counts.c.capsule_id == c.c.capsule_id)
                             .outerjoin(active, sa.and_(active.c.capsule_id == c.c.capsule_id,
                                                        active.c.version == c.c.active_version)))
                .order_by(c.c.capsule_id))
        with store.read_transaction(self.engine) as conn:
            return [store.row_dict(r) for r in conn.execute(stmt)]

    def list_versions(self, capsule_id: str) -> list[dict]:
        """Every registered version of ``capsule_id``, oldest first (without the manifest body)."""
        v = store.capsule_versions
        cols = [col for col in v.c if col.name != "manifest"]
        with store.read_transaction(self.engine) as conn:
            return [store.row_dict(r) for r in conn.execute(
                sa.select(*cols).where(v.c.capsule_id == capsule_id).order_by(v.c.version))]

    def list_activities(self, capsule_id: str | None = None, activity_type: str | None = None) -> list[dict]:
        """Activities (id, capsule_id, version, activity_type, status, payload, created_at, updated_at), oldest first."""
        a = store.activities
        stmt = sa.select(*[col for col in a.c if col.name != "dedup_key"]).order_by(a.c.created_at, a.c.id)
        if capsule_id is not None:
            stmt = stmt.where(a.c.capsule_id == capsule_id)
        if activity_type is not None:
            stmt = stmt.where(a.c.activity_type == activity_type)
        with store.read_transaction(self.engine) as conn:
            return [store.row_dict(r) for r in conn.execute(stmt)]

    def not_active_reason(self, activity_id: str) -> str | None:
        """Why the deployment ``activity_id`` is not the active plan (superseded on arrival by a newer
        version, superseded later, rolled back), or None when it is active."""
        act = self.get_activity(activity_id)
        if act is None:
            return f"no deployment activity {activity_id}"
        if act["status"] == "active":
            return None
        active = self.active_version(act["capsule_id"])
        payload = act.get("payload") or {}
        newer = payload.get("superseded_on_arrival_by")
        why = f"superseded on arrival by version {newer}" if newer is not None else act["status"].replace("_", " ")
        return (f"capsule {act['capsule_id']} version {act['version']} is {why}; "
                f"active version: {active if active is not None else 'none'}")

    def get_activity(self, activity_id: str) -> dict | None:
        """One activity by ID, or None."""
        a = store.activities
        with store.read_transaction(self.engine) as conn:
            row = conn.execute(sa.select(*[col for col in a.c if col.name != "dedup_key"])
                               .where(a.c.id == activity_id)).first()
        return store.row_dict(row)

    def record_monitor(self, activity_id: str, config: dict) -> None:
        """Store the runtime monitor's armed configuration under ``monitor`` in a deployment's payload.

        Arming again (a redeployment of the same capsule) replaces the stored configuration.
        """
        a = store.activities
        with store.write_transaction(self.engine) as conn:
            row = conn.execute(sa.select(a.c.payload, a.c.activity_type).where(a.c.id == activity_id)).first()
            if row is None or row.activity_type != "deployment":
                raise GatewayError(f"no deployment activity {activity_id}")
            payload = dict(row.payload or {})
            payload["monitor"] = dict(config)
            conn.execute(sa.update(a).where(a.c.id == activity_id).values(payload=payload, updated_at=_now()))

    def resolve_alert(self, activity_id: str) -> None:
        """Mark an ``alert`` activity ``resolved``."""
        with store.write_transaction(self.engine) as conn:
            self._set_activity_status(conn, activity_id, "resolved")

