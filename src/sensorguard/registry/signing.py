"""Artifact integrity: an HMAC-SHA256 over a manifest of a model's file hashes.

The room's rules: the manifest lists every file of a logged model (relative path →
SHA-256) except ``registered_model_meta``, which MLflow itself writes when a version is
registered or downloaded. The signature is ``HMAC-SHA256(key, canonical JSON of the
manifest)``, stored as the version tag ``sg.signature`` (``v1:<hex>``); the manifest
itself is stored as ``sg.manifest`` only so a refusal can name the file that changed.
Both tags are public: without the key neither can be forged.

The key: ``SENSORGUARD_SIGNING_KEY`` when set (required for a shared registry: the
trainer and every predictor need the same key). Otherwise a random key in
``<home>/signing.key`` (mode 0600), created the first time a model is signed — the
embedded mode, where training and serving share one home folder. A predictor without
either refuses signed versions rather than trusting them. See docs/deployment.md,
"Trust model".
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

from sensorguard.config import Settings
from sensorguard.errors import RegistryError

SIGNATURE_SCHEME = "v1"
KEY_FILE = "signing.key"
UNSIGNED_FILES = frozenset({"registered_model_meta"})
"""Files MLflow writes into a model folder at registration/download time."""


class UntrustedModel(RegistryError):
    """A registered version that SensorGuard refuses to load (foreign, unsigned, altered)."""


def manifest(folder: Path) -> dict[str, str]:
    """Relative path (POSIX) → SHA-256 of every file under ``folder``."""
    out: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            raise UntrustedModel(
                f"model artifact {path.relative_to(folder)} is a symbolic link",
                "a SensorGuard model holds plain files only",
            )
        if not path.is_file():
            continue
        rel = path.relative_to(folder).as_posix()
        if rel in UNSIGNED_FILES:
            continue
        h = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        out[rel] = h.hexdigest()
    return out


def _canonical(files: dict[str, str]) -> bytes:
    return json.dumps(files, sort_keys=True, separators=(",", ":")).encode()


def key_file(settings: Settings) -> Path:
    return settings.home.expanduser() / KEY_FILE


def signing_key(settings: Settings, *, create: bool) -> bytes | None:
    """The HMAC key: the setting, else the home's key file (created when ``create``)."""
    if settings.signing_key:
        return settings.signing_key.encode()
    path = key_file(settings)
    if path.is_file():
        return path.read_text().strip().encode()
    if not create:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    # written whole under another name, then linked into place: a process that trains at
    # the same moment either wins the link or reads the complete winner, never half a key
    tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_text().strip().encode()


def sign(files: dict[str, str], key: bytes) -> str:
    return f"{SIGNATURE_SCHEME}:" + hmac.new(key, _canonical(files), hashlib.sha256).hexdigest()


def sign_folder(folder: Path, settings: Settings) -> tuple[str, dict[str, str]]:
    """(signature, manifest) of a model folder, with the key created on first use."""
    key = signing_key(settings, create=True)
    assert key is not None
    files = manifest(folder)
    return sign(files, key), files


def verify_folder(
    folder: Path,
    signature: str | None,
    settings: Settings,
    *,
    what: str,
    recorded: dict[str, str] | None = None,
) -> None:
    """Raise :class:`UntrustedModel` unless ``folder`` matches ``signature``.

    ``recorded`` (the manifest stored at signing) only improves the message: it names
    the files that were changed, added or removed.
    """
    if not signature:
        if settings.allow_unsigned_models:
            return
        raise UntrustedModel(
            f"{what} carries no artifact signature (registered before signing, or outside "
            "SensorGuard); refusing to load it",
            "check it, then sign it with `sensorguard models sign VERSION`, or set "
            "SENSORGUARD_ALLOW_UNSIGNED_MODELS=true to load unsigned versions",
        )
    key = signing_key(settings, create=False)
    if key is None:
        raise UntrustedModel(
            f"{what} is signed, but this process has no signing key to verify it",
            "set SENSORGUARD_SIGNING_KEY to the key the trainer signs with "
            f"(embedded mode: the file {key_file(settings)})",
        )
    files = manifest(folder)
    if hmac.compare_digest(sign(files, key), signature):
        return
    changed = _changes(recorded, files)
    raise UntrustedModel(
        f"{what}: the artifacts do not match their signature"
        + (f" ({changed})" if changed else " (or it was signed with another key)")
        + "; refusing to load it",
        "restore the artifacts, or retrain; if the change is intended, review it and "
        "re-sign with `sensorguard models sign VERSION`",
    )


def _changes(recorded: dict[str, str] | None, files: dict[str, str]) -> str:
    if not recorded:
        return ""
    parts = []
    changed = [f for f in files if f in recorded and recorded[f] != files[f]]
    added = [f for f in files if f not in recorded]
    removed = [f for f in recorded if f not in files]
    for label, names in (("changed", changed), ("added", added), ("missing", removed)):
        if names:
            parts.append(f"{label}: {', '.join(names)}")
    return "; ".join(parts)
