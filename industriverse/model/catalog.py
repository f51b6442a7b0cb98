"""The catalog of shipped domains: ``industriverse/model/domains/<name>.yaml``.

A domain file holds ``name``, ``kind`` (hvac, cold_storage, microgrid: it selects the
baseline and the domain checks), ``title``, ``source`` (where the parameters come from) and
``defaults``: a partial client constraint (network, disturbances, envelope, tariff,
uncertainty, baseline) that the client's constraint JSON overrides key by key.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from industriverse.errors import BadInput
from industriverse.model.canonical import yaml_load

DOMAIN_DIR = Path(__file__).with_name("domains")


@dataclass(frozen=True)
class Domain:
    name: str
    kind: str
    title: str
    source: str
    defaults: dict


def list_domains() -> list[str]:
    """Names of the shipped domains."""
    return sorted(p.stem for p in DOMAIN_DIR.glob("*.yaml"))


@lru_cache(maxsize=None)
def _read(name: str) -> dict:
    return yaml_load((DOMAIN_DIR / f"{name}.yaml").read_text())


def load_domain(name: str) -> Domain:
    """The shipped domain ``name``; an unknown name is :class:`BadInput` on ``--domain``."""
    if name not in list_domains():
        raise BadInput(None, "--domain", f"unknown domain '{name}' (known: {', '.join(list_domains())})")
    raw = _read(name)
    import copy

    return Domain(raw["name"], raw["kind"], raw["title"], raw.get("source", ""), copy.deepcopy(raw["defaults"]))
