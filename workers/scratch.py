"""A worker's scratch run directory for one strike round.

The deployer writes the documents the capsule copies into one and packs the capsule there (and
keeps it: the gateway records where the deployed capsule lives); the reporter renders the report
into one (removed once the report is in the store).  Each handling gets a directory of its own: a
redelivered message may be handled again while the first handling still runs (after a lost
connection), and the two must not share files.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from industriverse import data_home


def new_run_dir(message, purpose: str) -> Path:
    """A fresh directory for one handling of ``message`` under ``$INDUSTRIVERSE_HOME/<purpose>/``."""
    parent = data_home() / purpose
    parent.mkdir(parents=True, exist_ok=True)
    suffix = f"-r{message.round}" if message.round else ""
    return Path(tempfile.mkdtemp(prefix=f"{message.strike_id}{suffix}-", dir=parent))
