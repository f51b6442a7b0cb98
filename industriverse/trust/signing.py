"""Ed25519 signatures over canonical JSON documents (proofs, capsule manifests).

Keys live in ``$INDUSTRIVERSE_HOME/keys/`` (or the ``keys_dir`` passed in):

* ``signing_key.pem`` — this installation's private key (PKCS#8 PEM, mode 0600),
  created on first use;
* ``<key id>.pub.pem`` — trusted public keys, one file each (SubjectPublicKeyInfo
  PEM).  The installation's own public key is written there when the pair is created;
  to trust another machine's proofs, copy its ``.pub.pem`` file into this directory.

The key ID is the public key's fingerprint: ``"ed25519:"`` + the first 16 hex digits of
SHA-256 over the 32 raw public-key bytes.

A signed document carries ``signature = {algorithm, key_id, value}``; ``value`` is the
base64 Ed25519 signature over the canonical JSON (:mod:`industriverse.model.canonical`) of the
document without its ``signature`` field.  Ed25519 is deterministic, so signing the same
document with the same key twice gives the same bytes.
"""
from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from industriverse.model.canonical import canonical_json
from industriverse.errors import InfrastructureError
from industriverse import data_home

ALGORITHM = "ed25519"
PRIVATE_KEY_FILE = "signing_key.pem"
PUBLIC_KEY_SUFFIX = ".pub.pem"


def keys_directory(keys_dir: str | Path | None = None) -> Path:
    """The key directory (``$INDUSTRIVERSE_HOME/keys`` unless given), created with mode 0700."""
    path = Path(keys_dir) if keys_dir is not None else data_home() / "keys"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def key_id_of(public_key: Ed25519PublicKey) -> str:
    """``"ed25519:"`` + first 16 hex digits of SHA-256 of the raw 32-byte public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return f"{ALGORITHM}:{hashlib.sha256(raw).hexdigest()[:16]}"


def _public_file_name(key_id: str) -> str:
    return key_id.replace(":", "-") + PUBLIC_KEY_SUFFIX


def _write_exclusive(path: Path, data: bytes, mode: int) -> bool:
    """Write ``data`` to ``path`` only if it does not exist; False when another writer won.

    Written to a temporary file first and linked into place, so a concurrent reader sees
    either no file or the whole key, never half of one.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
    finally:
        os.unlink(tmp)


def write_public_key(public_key: Ed25519PublicKey, keys_dir: str | Path | None = None) -> Path:
    """Trust ``public_key``: write it as ``<key id>.pub.pem`` into the key directory."""
    directory = keys_directory(keys_dir)
    path = directory / _public_file_name(key_id_of(public_key))
    pem = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    _write_exclusive(path, pem, 0o644)
    return path


def load_signing_key(keys_dir: str | Path | None = None) -> Ed25519PrivateKey:
    """This installation's private key, created (mode 0600) on first use."""
    directory = keys_directory(keys_dir)
    path = directory / PRIVATE_KEY_FILE
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        # Two processes may create the key at once: exactly one link succeeds, the other reads it.
        _write_exclusive(path, pem, 0o600)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise InfrastructureError(f"cannot read the signing key {path}: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InfrastructureError(f"{path} is not an Ed25519 private key")
    write_public_key(key.public_key(), directory)  # idempotent: keeps the own key trusted
    return key


def trusted_keys(keys_dir: str | Path | None = None) -> dict[str, Ed25519PublicKey]:
    """``{key_id: public key}`` of every ``*.pub.pem`` file in the key directory.

    The key ID is recomputed from the key itself, never taken from the file name.
    """
    keys: dict[str, Ed25519PublicKey] = {}
    for path in sorted(keys_directory(keys_dir).glob("*" + PUBLIC_KEY_SUFFIX)):
        try:
            key = serialization.load_pem_public_key(path.read_bytes())
        except (OSError, ValueError):
            continue  # an unreadable file trusts nobody
        if isinstance(key, Ed25519PublicKey):
            keys[key_id_of(key)] = key
    return keys


def signing_input(doc: dict) -> bytes:
    """The bytes a signature covers: canonical JSON of ``doc`` without ``signature``."""
    return canonical_json({k: v for k, v in doc.items() if k != "signature"})


def sign_document(doc: dict, *, keys_dir: str | Path | None = None) -> dict:
    """A copy of ``doc`` with ``signature = {algorithm, key_id, value}`` (replacing any old one)."""
    key = load_signing_key(keys_dir)
    signed = copy.deepcopy({k: v for k, v in doc.items() if k != "signature"})
    value = key.sign(signing_input(signed))
    signed["signature"] = {
        "algorithm": ALGORITHM,
        "key_id": key_id_of(key.public_key()),
        "value": base64.b64encode(value).decode("ascii"),
    }
    return signed


def verify_document(doc: Any, *, keys_dir: str | Path | None = None) -> tuple[bool, str]:
    """Check ``doc``'s signature against the trusted keys: ``(ok, reason)``.

    Reasons: ``"ok"``, ``"unsigned"``, ``"malformed signature: ..."``,
    ``"unsupported algorithm ..."``, ``"unknown key <id>"`` (no trusted public key with
    that ID), ``"bad signature ..."`` (the document was altered after signing, or the
    signature was made by another key).
    """
    if not isinstance(doc, dict):
        return False, "malformed document: not a JSON object"
    sig = doc.get("signature")
    if sig is None:
        return False, "unsigned"
    if not isinstance(sig, dict) or not all(isinstance(sig.get(k), str) for k in ("algorithm", "key_id", "value")):
        return False, "malformed signature: needs string fields algorithm, key_id and value"
    if sig["algorithm"].lower() != ALGORITHM:
        return False, f"unsupported algorithm {sig['algorithm']!r} (expected {ALGORITHM})"
    try:
        value = base64.b64decode(sig["value"], validate=True)
    except (binascii.Error, ValueError):
        return False, "malformed signature: value is not base64"
    key = trusted_keys(keys_dir).get(sig["key_id"])
    if key is None:
        return False, f"unknown key {sig['key_id']} (not among the trusted keys in {keys_directory(keys_dir)})"
    try:
        data = signing_input(doc)
    except (TypeError, ValueError) as exc:
        return False, f"malformed document: {exc}"
    try:
        key.verify(value, data)
    except InvalidSignature:
        return False, f"bad signature: the document was altered after signing or not signed by {sig['key_id']}"
    return True, "ok"
