"""Capsules: a signed directory holding a plan, its proof and what the runtime needs.

``pack_capsule(run_dir)`` writes ``run_dir/capsule/``::

    manifest.yaml   the signed manifest (layout below)
    plan.json       byte copy of the run's optimization.json (request, plan, states, objective, ...)
    proof.json      byte copy of the run's signed proof.json
    bands.json      predicted band of the plan from simulation.json (only when the run has one)

``manifest.yaml`` (``manifest_version: 1``)::

    manifest_version: 1
    id: hvac-acme-cold-rooms          # <domain>-<slug of contract_id or client>; same client -> same id
    version: 20241126110001137        # UTC time of the proof, YYYYMMDDHHMMSSmmm: later strike -> higher
    domain: hvac
    title: hvac plan for acme-cold-rooms (strike s-123)
    description: ''                   # the request's description
    created_at: '2024-11-26T11:00:01.137000+00:00'   # the proof's created_at
    strike_id: s-123
    horizon: {start, hours, step_minutes}             # the constraint's horizon
    envelope: {node: {min, max}}                      # the constraint's envelope (domain defaults merged in)
    runtime_budgets:
      energy_kwh: 41.2        # client budget if the request has one, else the planned energy
      peak_kw: 10.0           # client budget if the request has one, else the planned peak
      runtime_budget_ms: 86400000   # how long the plan runs: the horizon, in ms
    planned: {cost, energy_kwh, peak_kw, emissions_kg}   # the optimizer's objective figures
    files:
    - {path: plan.json, sha256: <hex>, role: plan}
    - {path: proof.json, sha256: <hex>, role: proof}
    - {path: bands.json, sha256: <hex>, role: predicted_band}
    signature: {algorithm: ed25519, key_id: 'ed25519:<16 hex>', value: <base64>}

The signature covers the canonical JSON of every field but ``signature``
(:mod:`industriverse.trust.signing`).  Packing the same run twice writes the same bytes
(timestamps come from the proof, Ed25519 is deterministic).

The reader also accepts the two older layouts — ``dac_id``/``tnn_solver`` and
``id``/``tnn_class``/``safety`` — as :class:`LegacyManifest`, which lists exactly what
such a capsule lacks to be deployed.  File paths in any layout are relative and cannot
leave the capsule directory (no ``..``, no absolute paths, no symlinks pointing out).
"""
from __future__ import annotations

import json
import os
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator

from industriverse.model.canonical import read_json, read_yaml, sha256_bytes, sha256_of, yaml_dump, yaml_load
from industriverse.errors import BadInput
from industriverse.trust.proof import verify_proof
from industriverse.trust.signing import sign_document, signing_input, verify_document

MANIFEST_FILE = "manifest.yaml"
CAPSULE_DIR = "capsule"
MANIFEST_VERSION = 1
PLAN_FILE, PROOF_FILE, BANDS_FILE = "plan.json", "proof.json", "bands.json"
LEGACY_DAC = "dac_id/tnn_solver"
LEGACY_TNN = "id/tnn_class/safety"
_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"


def check_relative_path(path: str) -> str:
    """``path`` if it is a relative path that stays inside its directory, else ``ValueError``."""
    if not isinstance(path, str) or not path.strip():
        raise ValueError("a file path must be a non-empty string")
    if "\\" in path or re.match(r"^[A-Za-z]:", path):
        raise ValueError(f"path {path!r} must use '/' and no drive letter")
    pure = PurePosixPath(path)
    if pure.is_absolute():
        raise ValueError(f"path {path!r} is absolute; capsule paths are relative to the capsule directory")
    if ".." in pure.parts:
        raise ValueError(f"path {path!r} leaves the capsule directory ('..')")
    return path


def resolve_inside(capsule_dir: Path, path: str) -> Path:
    """The file ``path`` names inside ``capsule_dir``; ``ValueError`` if it (or a symlink) leads outside."""
    check_relative_path(path)
    root = capsule_dir.resolve()
    target = (root / path).resolve()
    if target != root and root not in target.parents:
        raise ValueError(f"path {path!r} resolves to {target}, outside the capsule directory")
    return target


MAX_VERSION = 2**63 - 1  # BIGINT: a larger version cannot be stored (and must not pin itself active)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ManifestFile(_Model):
    path: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    role: str = Field(min_length=1)

    @field_validator("path")
    @classmethod
    def _inside(cls, v: str) -> str:
        return check_relative_path(v)


class RuntimeBudgets(_Model):
    energy_kwh: float | None = Field(None, ge=0, description="energy the capsule may use over its run, kWh")
    peak_kw: float | None = Field(None, ge=0, description="highest power it may draw, kW")
    runtime_budget_ms: int | None = Field(None, ge=0, description="how long the plan runs, ms")


class ManifestSignature(_Model):
    algorithm: str
    key_id: str
    value: str


class CapsuleManifest(_Model):
    """The current manifest layout (``manifest_version: 1``)."""

    manifest_version: Literal[1] = MANIFEST_VERSION
    id: str = Field(pattern=_ID_PATTERN)
    version: StrictInt = Field(ge=1, le=MAX_VERSION, description="a 63-bit integer: every database stores it")
    domain: str = Field(min_length=1)
    title: str
    description: str = ""
    created_at: datetime
    strike_id: str | None = None
    horizon: dict[str, Any] | None = None
    envelope: dict[str, Any] = {}
    runtime_budgets: RuntimeBudgets = RuntimeBudgets()
    planned: dict[str, float | None] | None = None
    files: list[ManifestFile] = Field(min_length=1)
    signature: ManifestSignature | None = None

    @field_validator("created_at")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        return v if v.tzinfo else v.replace(tzinfo=timezone.utc)

    def file(self, role: str) -> ManifestFile | None:
        """The first file with ``role`` (plan, proof, predicted_band), or None."""
        return next((f for f in self.files if f.role == role), None)


class LegacyManifest(_Model):
    """A manifest in one of the older layouts: readable, never deployable as is."""

    layout: Literal["dac_id/tnn_solver", "id/tnn_class/safety"]
    id: str
    version: str | None = None
    title: str | None = None
    runtime_budgets: RuntimeBudgets = RuntimeBudgets()
    lacks: list[str]
    notes: list[str] = []
    raw: dict[str, Any]

    def problems(self) -> list[str]:
        """One line saying what this capsule lacks to be deployed."""
        return [
            f"legacy layout ({self.layout}): {', '.join(self.lacks)}; "
            f"repack it from its run directory with 'industriverse capsule pack RUN_DIR'"
        ]


# --- reading -------------------------------------------------------------------------
def manifest_path_of(path: str | Path) -> Path:
    """``path`` itself if it is a file, ``path/manifest.yaml`` if it is a directory."""
    path = Path(path)
    return path / MANIFEST_FILE if path.is_dir() else path


def read_manifest_dict(path: str | Path) -> dict:
    """The manifest as loaded from YAML (no validation); :class:`BadInput` if unreadable."""
    mpath = manifest_path_of(path)
    raw = read_yaml(mpath)  # stat, size, depth, integer-length and finite-number limits
    if not isinstance(raw, dict):
        raise BadInput(str(mpath), None, "a capsule manifest must be a YAML mapping")
    return raw


def _field_error(mpath: Path, exc: ValidationError) -> BadInput:
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or None
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        msg = "is required"
    elif err["type"] == "extra_forbidden":
        msg = "is not a known field of the manifest"
    more = f" (and {len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
    return BadInput(str(mpath), field, msg + more)


def _legacy_paths(raw: dict, keys: tuple[str, ...], mpath: Path) -> None:
    # Older layouts name their files in inputs/outputs; they must stay inside the capsule too.
    for key in keys:
        items = raw.get(key)
        if isinstance(items, dict):
            items = list(items.values())
        for i, item in enumerate(items if isinstance(items, list) else []):
            path = item.get("path") or item.get("file") if isinstance(item, dict) else item
            if isinstance(path, str) and ("/" in path or path.startswith(".")):
                try:
                    check_relative_path(path)
                except ValueError as exc:
                    raise BadInput(str(mpath), f"{key}[{i}]", str(exc)) from None


def _legacy(raw: dict, mpath: Path) -> LegacyManifest:
    if "dac_id" in raw:
        layout, ident = LEGACY_DAC, raw.get("dac_id")
        _legacy_paths(raw, ("inputs", "outputs"), mpath)
    else:
        layout, ident = LEGACY_TNN, raw.get("id")
    if not isinstance(ident, (str, int)) or str(ident) == "":
        raise BadInput(str(mpath), "dac_id" if layout == LEGACY_DAC else "id", "is required (a non-empty string)")
    budgets, notes = RuntimeBudgets(), []
    safety = raw.get("safety")
    if layout == LEGACY_TNN:
        if safety is not None and not isinstance(safety, dict):
            raise BadInput(str(mpath), "safety", "must be a mapping")
        safety = safety or {}
        try:
            energy_j = safety.get("energy_budget_j")
            budgets = RuntimeBudgets(
                energy_kwh=None if energy_j is None else float(energy_j) / 3.6e6,  # J -> kWh
                runtime_budget_ms=safety.get("runtime_budget_ms"),
            )
        except (TypeError, ValueError, ValidationError) as exc:
            raise BadInput(str(mpath), "safety", f"budgets are not numbers: {exc}") from None
        if "entropy_threshold" in safety:
            notes.append("safety.entropy_threshold has no counterpart in the shield and is not checked")
    lacks = []
    if "domain" not in raw:
        lacks.append("no domain")
    if "envelope" not in raw:
        lacks.append("no envelope")
    if budgets.energy_kwh is None and budgets.peak_kw is None:
        lacks.append("no energy or peak budget")
    lacks.append("no file hashes")
    if "signature" not in raw:
        lacks.append("no signature")
    lacks.append("no proof")
    version = raw.get("version")
    return LegacyManifest(
        layout=layout,
        id=str(ident),
        version=None if version is None else str(version),
        title=raw.get("title") if isinstance(raw.get("title"), str) else None,
        runtime_budgets=budgets,
        lacks=lacks,
        notes=notes,
        raw=raw,
    )


def load_manifest(path: str | Path) -> CapsuleManifest | LegacyManifest:
    """Read and validate a manifest (file, or capsule directory holding ``manifest.yaml``).

    Returns a :class:`CapsuleManifest`, or a :class:`LegacyManifest` for the older layouts
    (its ``lacks`` / ``problems()`` say what it needs to be deployed).  Unreadable YAML,
    an unknown layout and field errors raise :class:`BadInput` naming the field.
    """
    mpath = manifest_path_of(path)
    return _parse_manifest(read_manifest_dict(mpath), mpath)


def _parse_manifest(raw: dict, mpath: Path) -> CapsuleManifest | LegacyManifest:
    """:func:`load_manifest` of a manifest already read by :func:`read_manifest_dict`."""
    if "manifest_version" not in raw and ("dac_id" in raw or "tnn_class" in raw or "safety" in raw):
        return _legacy(raw, mpath)
    if "manifest_version" not in raw and "files" not in raw:
        raise BadInput(
            str(mpath), "manifest_version",
            "is missing and the file is in no known layout (current, dac_id/tnn_solver, id/tnn_class/safety)",
        )
    try:
        return CapsuleManifest.model_validate(raw)
    except ValidationError as exc:
        raise _field_error(mpath, exc) from None


# --- verifying -----------------------------------------------------------------------
def _load_json_file(path: Path) -> Any:
    try:
        return read_json(path)
    except BadInput:
        return None


def verify_capsule(capsule_dir: str | Path, *, keys_dir: str | Path | None = None) -> list[str]:
    """Every reason the capsule must not be deployed (empty list: deployable).

    Unsigned manifest, bad signature, unknown key, a file missing or whose SHA-256
    differs (named), a path leaving the directory, no plan, no proof, an invalid proof
    (signature, hashes against the plan), a proof that did not pass the shield, a proof of
    another strike or domain.  A legacy layout yields what it lacks.  Unreadable input
    raises :class:`BadInput`.
    """
    return inspect_capsule(capsule_dir, keys_dir=keys_dir)[2]


def inspect_capsule(capsule_dir: str | Path, *, keys_dir: str | Path | None = None
                    ) -> tuple[CapsuleManifest | LegacyManifest, dict, list[str]]:
    """``(manifest, raw manifest, problems)``: the manifest read once, and :func:`verify_capsule`'s problems of it."""
    mpath = manifest_path_of(capsule_dir)
    root = mpath.parent
    raw = read_manifest_dict(mpath)
    manifest = _parse_manifest(raw, mpath)
    if isinstance(manifest, LegacyManifest):
        return manifest, raw, manifest.problems()
    problems: list[str] = []

    ok, reason = verify_document(raw, keys_dir=keys_dir)
    if not ok:
        problems.append(f"manifest signature: {reason}")

    contents: dict[str, Any] = {}
    for entry in manifest.files:
        try:
            target = resolve_inside(root, entry.path)
        except ValueError as exc:
            problems.append(f"file {entry.path} ({entry.role}): {exc}")
            continue
        if not target.is_file():
            problems.append(f"file {entry.path} ({entry.role}) is missing")
            continue
        data = target.read_bytes()
        if sha256_bytes(data) != entry.sha256:
            problems.append(f"file {entry.path} ({entry.role}): sha256 differs from the manifest (tampered or replaced)")
        contents.setdefault(entry.role, target)

    for role in ("plan", "proof"):
        if manifest.file(role) is None:
            problems.append(f"no {role} in the manifest")
    proof_path, plan_path = contents.get("proof"), contents.get("plan")
    if proof_path is not None:
        proof = _load_json_file(proof_path)
        plan = _load_json_file(plan_path) if plan_path is not None else None
        if not isinstance(proof, dict):
            problems.append(f"proof {proof_path.name} is not a JSON object")
        else:
            problems += [f"proof: {p}" for p in verify_proof(
                proof, optimization=plan if isinstance(plan, dict) else None, keys_dir=keys_dir)]
            shield = proof.get("shield") if isinstance(proof.get("shield"), dict) else {}
            if shield.get("passed") is not True:
                failed = [str(c.get("name")) for c in shield.get("checks", []) if isinstance(c, dict) and not c.get("passed")]
                problems.append("proof did not pass the shield" + (f" (failed: {', '.join(failed)})" if failed else ""))
            if manifest.strike_id is not None and proof.get("strike_id") != manifest.strike_id:
                problems.append(f"proof is of strike {proof.get('strike_id')}, the manifest of {manifest.strike_id}")
            if proof.get("domain") != manifest.domain:
                problems.append(f"proof is for domain {proof.get('domain')}, the manifest for {manifest.domain}")
    return manifest, raw, problems


def content_sha256(raw_manifest: dict) -> str:
    """SHA-256 of the manifest as read (:func:`read_manifest_dict`) without its signature:
    the identity of a capsule's content (it covers every file's hash)."""
    return sha256_of({k: v for k, v in raw_manifest.items() if k != "signature"})


# --- packing -------------------------------------------------------------------------
def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:64]


def capsule_id_for(optimization: dict) -> str:
    """``<domain>-<contract or client>``, stable across strikes for the same client.

    A request with no contract and no named client (the schema's default ``client``)
    gets ``<domain>-<first 12 hex of its request's hash>``: no lineage to follow.
    """
    request = optimization.get("request") if isinstance(optimization.get("request"), dict) else {}
    domain = optimization.get("domain") or request.get("domain")
    if not domain:
        raise BadInput("optimization.json", "domain", "is missing")
    who = optimization.get("contract_id") or request.get("contract_id") or request.get("client")
    slug = _slug(str(who)) if who and who != "client" else ""
    return f"{_slug(str(domain))}-{slug or sha256_of(request)[:12]}"


def version_for(created_at: str) -> int:
    """A capsule version from a UTC timestamp: the integer ``YYYYMMDDHHMMSSmmm``."""
    try:
        moment = datetime.fromisoformat(created_at.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        raise BadInput("proof.json", "created_at", f"is not an ISO-8601 timestamp: {created_at!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    moment = moment.astimezone(timezone.utc)
    return int(moment.strftime("%Y%m%d%H%M%S") + f"{moment.microsecond // 1000:03d}")


def _band_summary(simulation: dict, request: dict) -> dict | None:
    """What the runtime monitor needs of the simulation: the plan's predicted bands and their time axis."""
    plan = simulation.get("plan")
    if not isinstance(plan, dict) or "bands" not in plan:
        return None
    summary = {
        "controller": plan.get("controller"),
        "ensemble_size": simulation.get("ensemble_size"),
        "seed": simulation.get("seed"),
        "confidence": simulation.get("confidence"),
        "horizon": simulation.get("horizon") or request.get("horizon"),
        "bands": plan["bands"],
        "violation_probability": plan.get("violation_probability"),
    }
    for key in ("power_bands", "stability_score"):
        if key in plan:
            summary[key] = plan[key]
    nominal = plan.get("nominal")
    if isinstance(nominal, dict):
        summary["nominal"] = {k: nominal[k] for k in ("states", "power_kw") if k in nominal}
    return summary


def effective_request(optimization: dict) -> dict:
    """The request with the domain's defaults merged in (envelope, budgets, client, horizon).

    A constraint JSON may leave the envelope or the budgets to the domain's catalog
    defaults; the capsule must carry what the plan was actually held to.  Falls back to
    the request as recorded when its domain is not in this installation's catalog.
    """
    request = optimization.get("request") if isinstance(optimization.get("request"), dict) else {}
    domain = optimization.get("domain") or request.get("domain")
    from industriverse.model.catalog import list_domains, load_domain
    from industriverse.model.constraint import build_constraint

    if domain not in list_domains():
        return request
    merged = build_constraint(request, load_domain(domain).defaults, file="optimization.json: request")
    return {**request, **merged.model_dump(mode="json", include={"client", "horizon", "envelope", "budgets"})}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def pack_capsule(run_dir: str | Path, *, version: int | None = None, keys_dir: str | Path | None = None,
                 simulation: dict | None = None) -> Path:
    """Pack ``run_dir`` (with optimization.json and proof.json) into ``run_dir/capsule/``.

    Returns the path of the signed ``manifest.yaml``.  ``version`` defaults to
    :func:`version_for` of the proof's ``created_at``.  A proof that did not pass is
    packed all the same (the gateway refuses it, with the reason).  ``simulation``: the
    simulation document (its predicted bands go into the capsule) when the caller holds it
    already; else ``run_dir/simulation.json`` is read if there is one.
    """
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= MAX_VERSION):
        raise BadInput(None, "--version", f"must be an integer from 1 to {MAX_VERSION} (63 bits)")
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise BadInput(str(run_dir), None, "is not a run directory")
    opt_path, proof_path, sim_path = run_dir / "optimization.json", run_dir / "proof.json", run_dir / "simulation.json"
    for path, hint in ((opt_path, "run the optimizer first"), (proof_path, "run 'industriverse verify' first")):
        if not path.is_file():
            raise BadInput(str(path), None, f"no such file ({hint})")
    optimization, proof = read_json(opt_path), read_json(proof_path)
    for path, doc in ((opt_path, optimization), (proof_path, proof)):
        if not isinstance(doc, dict):
            raise BadInput(str(path), None, "must be a JSON object")
    if simulation is None and sim_path.is_file():
        simulation = read_json(sim_path)
    request = effective_request(optimization)
    if "created_at" not in proof:
        raise BadInput(str(proof_path), "created_at", "is missing")
    domain = proof.get("domain") or optimization.get("domain")
    strike_id = proof.get("strike_id")

    out = run_dir / CAPSULE_DIR
    out.mkdir(exist_ok=True)
    files = []
    shutil.copyfile(opt_path, out / PLAN_FILE)
    files.append({"path": PLAN_FILE, "sha256": sha256_bytes((out / PLAN_FILE).read_bytes()), "role": "plan"})
    shutil.copyfile(proof_path, out / PROOF_FILE)
    files.append({"path": PROOF_FILE, "sha256": sha256_bytes((out / PROOF_FILE).read_bytes()), "role": "proof"})
    bands = _band_summary(simulation, request) if isinstance(simulation, dict) else None
    if bands is not None:
        data = json.dumps(bands, sort_keys=True, indent=1, allow_nan=False).encode("utf-8") + b"\n"
        _write_atomic(out / BANDS_FILE, data)
        files.append({"path": BANDS_FILE, "sha256": sha256_bytes(data), "role": "predicted_band"})
    elif (out / BANDS_FILE).exists():
        (out / BANDS_FILE).unlink()  # stale from an earlier pack of a run that had a simulation

    objective = optimization.get("objective") if isinstance(optimization.get("objective"), dict) else {}
    budgets = request.get("budgets") if isinstance(request.get("budgets"), dict) else {}
    horizon = request.get("horizon") if isinstance(request.get("horizon"), dict) else None
    hours = _number((horizon or {}).get("hours"))
    client = optimization.get("contract_id") or request.get("contract_id") or request.get("client") or "client"
    envelope = request.get("envelope") or {}
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "id": capsule_id_for({**optimization, "domain": domain}),  # from the request as recorded: stable
        "version": version if version is not None else version_for(proof["created_at"]),
        "domain": domain,
        "title": f"{domain} plan for {client} (strike {strike_id})",
        "description": request.get("description", "") if isinstance(request.get("description", ""), str) else "",
        "created_at": proof["created_at"],
        "strike_id": strike_id,
        "horizon": horizon,
        "envelope": envelope,
        "runtime_budgets": {
            "energy_kwh": _number(budgets.get("energy_kwh")) if budgets.get("energy_kwh") is not None
            else _number(objective.get("energy_kwh")),
            "peak_kw": _number(budgets.get("peak_kw")) if budgets.get("peak_kw") is not None
            else _number(objective.get("peak_kw")),
            "runtime_budget_ms": int(round(hours * 3_600_000)) if hours is not None else None,
        },
        "planned": {k: _number(objective.get(k)) for k in ("cost", "energy_kwh", "peak_kw", "emissions_kg")},
        "files": files,
    }
    try:
        CapsuleManifest.model_validate(manifest)
    except ValidationError as exc:
        raise _field_error(out / MANIFEST_FILE, exc) from None
    signed = sign_document(manifest, keys_dir=keys_dir)
    text = yaml_dump(signed, sort_keys=False, allow_unicode=True, default_flow_style=False, width=120)
    # What is signed must be what a reader loads back from the YAML, bit for bit.
    if signing_input(yaml_load(text)) != signing_input(signed):
        raise ValueError("the manifest does not survive a YAML round trip; refusing to write it")
    mpath = out / MANIFEST_FILE
    _write_atomic(mpath, text.encode("utf-8"))
    return mpath


__all__ = [
    "CapsuleManifest", "LegacyManifest", "ManifestFile", "RuntimeBudgets", "MANIFEST_FILE",
    "capsule_id_for", "check_relative_path", "content_sha256", "inspect_capsule", "load_manifest", "pack_capsule",
    "read_manifest_dict", "resolve_inside", "verify_capsule", "version_for",
]
