"""What the console shows, read from the store: plain dicts the API returns and the pages render."""
from __future__ import annotations

import base64
import functools
import mimetypes
from datetime import datetime
from typing import Any

from industriverse.fleet import store

STAGE_LABELS = {
    "optimizer": "optimize", "simulator": "simulate", "shield": "verify", "deployer": "deploy",
    "reporter": "report", "reporter.rejected": "report (rejected)",
}
DOCUMENT_NAMES = ("request", "optimization", "simulation", "verdict", "proof")


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _messages(stages: dict[str, dict]) -> list[dict]:
    return [m for payload in stages.values() for m in (payload or {}).get("messages", [])]


def _refs(messages: list[dict]) -> dict[str, str]:
    """Latest ``*_ref`` artifact keys and deployment IDs over a strike's messages."""
    found: dict[str, str] = {}
    for m in messages:
        for key, val in (m.get("body") or {}).items():
            if isinstance(val, str) and key.endswith("_ref"):
                found[key[:-4]] = val
            elif key in ("activity_id", "capsule_id") and isinstance(val, str):
                found[key] = val
    return found


def timeline(row: dict, stamps: list[dict]) -> list[dict]:
    """Stages with when they ended and how long each took (from the previous stage's end, the
    first from the strike's creation), seconds."""
    out, previous = [], _time(row.get("created_at")) if row else None
    for s in stamps:
        ended = _time(s["created_at"])
        duration = (ended - previous).total_seconds() if previous and ended else None
        stage, _, rnd = s["stage"].partition("#")
        out.append({"stage": s["stage"], "label": STAGE_LABELS.get(stage, stage) + (f" (round {rnd})" if rnd else ""),
                    "ended_at": s["created_at"], "seconds": round(duration, 3) if duration is not None else None})
        previous = ended or previous
    return out


def strike_view(strike_id: str) -> dict | None:
    """A strike: its row, stage timeline, outcome, reasons, value summary and report files; None if unknown."""
    row = store.get_strike(strike_id)
    stages = store.list_stage_results(strike_id)
    if row is None and not stages:
        return None
    row = row or {"strike_id": strike_id, "status": "running", "created_at": None}
    messages = _messages(stages)
    refs = _refs(messages)
    terminal = next((m for m in reversed(messages) if m.get("type") in ("strike.completed", "strike.failed")), None)
    outcome = None
    if terminal is not None:
        body = terminal["body"]
        outcome = {"type": terminal["type"], "outcome": body.get("outcome"), "activity_id": body.get("activity_id"),
                   "capsule_id": body.get("capsule_id"), "reasons": body.get("reasons") or [],
                   "stage": body.get("stage"), "reason": body.get("reason")}
    value = None
    if refs.get("value"):
        try:
            value = store.get_json_artifact(refs["value"])
        except KeyError:
            value = None
    report_files = sorted(_report_bundle(refs) or {})
    total = None
    if row.get("created_at") and stages:
        stamps = store.stage_timeline(strike_id)
        tl = timeline(row, stamps)
        if row["status"] in store.TERMINAL_STATUSES and stamps:
            total = round((_time(stamps[-1]["created_at"]) - _time(row["created_at"])).total_seconds(), 3)
    else:
        tl = []
    return {
        "strike_id": strike_id, "contract_id": row.get("contract_id"), "domain": row.get("domain"),
        "status": row["status"], "reason": row.get("reason"), "created_at": row.get("created_at"),
        "updated_at": row.get("updated_at"), "run_dir": row.get("run_dir"), "timeline": tl, "total_seconds": total,
        "outcome": outcome, "reasons": (outcome or {}).get("reasons") or ([row["reason"]] if row.get("reason") else []),
        "value": value, "headline": headline(value), "documents": [d for d in DOCUMENT_NAMES if d in refs or d == "request"],
        "report_files": report_files, "plots": sorted((f for f in report_files if f.endswith(".png")), key=lambda f: (not f.endswith("states.png"), f)),
    }


def _report_bundle(refs: dict[str, str]) -> dict | None:
    if not refs.get("report"):
        return None
    try:
        return _bundle(store.default_url(), refs["report"])
    except KeyError:
        return None


@functools.lru_cache(maxsize=16)
def _bundle(url: str, sha256: str) -> dict:
    # artifacts are content-addressed, so a cached bundle never goes stale; the strike page and
    # its live refreshes would otherwise decode the whole report (PDF, PNGs) on every request
    return store.get_json_artifact(sha256, engine=store.get_engine(url))


def strike_refs(strike_id: str) -> dict[str, str]:
    return _refs(_messages(store.list_stage_results(strike_id)))


def document(strike_id: str, name: str) -> Any | None:
    """One JSON document of a strike (request, optimization, simulation, verdict, proof), or None."""
    refs = strike_refs(strike_id)
    if name == "request":
        if "optimization" in refs:
            return store.get_json_artifact(refs["optimization"]).get("request")
        for payload in store.list_stage_results(strike_id).values():
            for m in payload.get("messages", []):
                if m.get("type") == "strike.requested":
                    return m["body"].get("constraint")
        return None
    return store.get_json_artifact(refs[name]) if name in refs else None


def report_file(strike_id: str, path: str) -> tuple[bytes, str] | None:
    """``(bytes, media type)`` of one file of the strike's report bundle, or None."""
    bundle = _report_bundle(strike_refs(strike_id)) or {}
    entry = bundle.get(path)
    if entry is None:
        return None
    data = entry["data"].encode("utf-8") if entry["encoding"] == "utf-8" else base64.b64decode(entry["data"])
    media = mimetypes.guess_type(path)[0] or "application/octet-stream"
    if media.startswith("text/") or media == "application/json":
        media += "; charset=utf-8"
    return data, media


def _figure(entry: Any) -> dict | None:
    return entry if isinstance(entry, dict) and entry.get("mean") is not None else None


def headline(value: dict | None) -> str | None:
    """One sentence: what the plan saves (or loses) per day, with its interval; None without value.json."""
    if not value:
        return None
    if value.get("headline"):
        return value["headline"]
    cost, energy = _figure(value.get("cost_saved")), _figure(value.get("energy_saved_kwh"))
    if cost is None and energy is None:
        return None
    parts = []
    if cost:
        parts.append(f"{cost['mean']:.3g} {value.get('currency', '')}".strip())
    if energy:
        parts.append(f"{energy['mean']:.3g} kWh")
    return "The plan saves " + " and ".join(parts) + " over the horizon."


def fleet_view(contracts: list[dict] | None) -> dict:
    """Overview: contracts with their latest strike, latest strikes, active capsules, open alerts."""
    from industriverse.operate.gateway import CapsuleGatewayService

    gateway = CapsuleGatewayService()
    strikes = store.list_strikes(limit=50)
    runs = store.list_contract_runs()
    contract_rows = {c["id"]: dict(c) for c in (contracts or [])}
    for r in runs:
        contract_rows.setdefault(r["contract_id"], {"id": r["contract_id"], "domain": r.get("domain")})
    for s in strikes:
        if s.get("contract_id"):
            contract_rows.setdefault(s["contract_id"], {"id": s["contract_id"], "domain": s.get("domain")})
    for cid, c in contract_rows.items():
        latest = store.list_strikes(cid, limit=1)
        c["latest_strike"] = latest[0] if latest else None
    capsules = gateway.list_capsules()
    alerts = [a for a in gateway.list_activities(activity_type="alert") if a["status"] == "open"]
    return {"contracts": list(contract_rows.values()), "strikes": strikes,
            "capsules": [c for c in capsules if c.get("active_version") is not None],
            "all_capsules": capsules, "alerts": alerts}


def fleet_fingerprint() -> tuple:
    """Changes whenever anything the overview shows changes (polled by the event stream)."""
    strikes = store.list_strikes(limit=50)
    import sqlalchemy as sa

    engine = store.get_engine()
    with store.read_transaction(engine) as conn:
        acts = conn.execute(sa.select(sa.func.count(), sa.func.max(store.activities.c.updated_at))
                            .select_from(store.activities)).first()
        stages = conn.execute(sa.select(sa.func.count()).select_from(store.stage_results)).scalar()
    return (tuple((s["strike_id"], s["status"], s["updated_at"]) for s in strikes), tuple(acts), stages)


def strike_fingerprint(strike_id: str) -> tuple:
    row = store.get_strike(strike_id) or {}
    return (row.get("status"), row.get("updated_at"), len(store.stage_timeline(strike_id)))
