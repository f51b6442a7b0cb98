"""The regiment: one strike request per due contract and period, deduplicated in the store.

``due_requests`` is the pure part (which contracts are due now, with which strike ID); the
daemon loop in ``cli/orchestrate_full_regiment.py`` claims each period in the store before it
publishes, so any number of daemons, restarted at any time, publish one request per period.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from industriverse.fleet.contracts import Contract, contract_request


@dataclass(frozen=True)
class DueStrike:
    contract: Contract
    period_key: str
    strike_id: str
    request: dict


def strike_id_for(contract_id: str, period_key: str) -> str:
    """Deterministic strike ID of a contract's period (letters, digits, '-' and '_' only)."""
    digest = hashlib.sha256(f"{contract_id}\x00{period_key}".encode()).hexdigest()[:12]
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in contract_id)[:40]
    return f"{safe}-{digest}"


def due_requests(contracts: list[Contract], base: Path, now: datetime) -> list[DueStrike]:
    """The active contracts' strikes of the period containing ``now`` (before deduplication)."""
    out = []
    for c in contracts:
        if not c.active:
            continue
        key, start = c.schedule.period(now)
        out.append(DueStrike(c, key, strike_id_for(c.id, key), contract_request(c, base, start)))
    return out
