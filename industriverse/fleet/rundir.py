"""The run directory of a strike, and file bundles that carry directories through the store.

A run directory (DESIGN.md §4) holds ``request.json``, ``optimization.json``,
``simulation.json``, ``verdict.json``, ``proof.json``, ``deployment.json`` (activity and
capsule IDs when deployed), ``capsule/`` and ``report/``.  Workers on other machines share
only the store, so a directory a worker wrote (the capsule, the report) travels as a *bundle*:
one JSON artifact ``{relative path: {"encoding": "utf-8"|"base64", "data": ...}}``.
"""
from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

DOCUMENTS = {
    "request": "request.json",
    "optimization": "optimization.json",
    "simulation": "simulation.json",
    "verdict": "verdict.json",
    "proof": "proof.json",
    "deployment": "deployment.json",
}


def check_run_dir(run_dir: str | Path, *, field: str = "--output_dir") -> Path:
    """Make sure every output of a strike can be written under ``run_dir`` *before* anything is deployed.

    Creates the directory, probes that a file can be written in it, and refuses an existing
    non-directory where ``run_dir``, ``capsule/`` or ``report/`` go, or a directory where a
    document goes (:class:`~industriverse.errors.BadInput`, exit 2).
    """
    import tempfile

    from industriverse.errors import BadInput

    run_dir = Path(run_dir)
    for p in [run_dir, *run_dir.parents]:
        if p.exists() or p.is_symlink():
            if not p.is_dir():
                raise BadInput(None, field, f"'{p}' exists and is not a directory")
            break
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=run_dir).close()
    except OSError as exc:
        raise BadInput(None, field, f"cannot write in '{run_dir}': {exc.strerror or exc.__class__.__name__}") from None
    for name in ("capsule", "report"):
        if (run_dir / name).exists() and not (run_dir / name).is_dir():
            raise BadInput(None, field, f"'{run_dir / name}' exists and is not a directory")
    for name in DOCUMENTS.values():
        if (run_dir / name).is_dir():
            raise BadInput(None, field, f"'{run_dir / name}' is a directory, the run writes a file there")
    return run_dir


def write_json_file(path: Path, doc: Any) -> None:
    """Write ``doc`` as indented JSON, atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_documents(run_dir: str | Path, docs: dict[str, Any]) -> Path:
    """Write the documents of ``docs`` (keys of :data:`DOCUMENTS`; None values skipped) into ``run_dir``."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    for key, doc in docs.items():
        if doc is not None:
            write_json_file(run_dir / DOCUMENTS[key], doc)
    return run_dir


def bundle_files(directory: str | Path) -> dict[str, dict[str, str]]:
    """Every file under ``directory`` as a JSON-able bundle (text as UTF-8, binary as base64)."""
    directory = Path(directory)
    out: dict[str, dict[str, str]] = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.startswith(".")):
        data = path.read_bytes()
        rel = path.relative_to(directory).as_posix()
        try:
            out[rel] = {"encoding": "utf-8", "data": data.decode("utf-8")}
        except UnicodeDecodeError:
            out[rel] = {"encoding": "base64", "data": base64.b64encode(data).decode("ascii")}
    return out


def restore_files(bundle: dict[str, dict[str, str]], directory: str | Path) -> Path:
    """Write a bundle under ``directory``; paths that would leave it are refused."""
    directory = Path(directory)
    root = directory.resolve()
    for rel, entry in bundle.items():
        target = (directory / rel).resolve()
        if root not in target.parents:
            raise ValueError(f"bundle path {rel!r} leaves {directory}")
        target.parent.mkdir(parents=True, exist_ok=True)
        data = entry["data"].encode("utf-8") if entry["encoding"] == "utf-8" else base64.b64decode(entry["data"])
        target.write_bytes(data)
    return directory
