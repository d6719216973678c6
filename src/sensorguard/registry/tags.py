"""The version-tag vocabulary of the lifecycle, and the verbs that write it.

The room's rules: no other module writes a model-version tag or moves an alias; tag
names exist once, here, as constants. MLflow 3 deprecates stages, so the lifecycle is
tags plus two aliases (see docs/lifecycle.md):

* ``lifecycle`` = ``candidate`` (new) | ``production`` | ``archived``;
* ``gate`` = ``passed`` | ``rejected`` | ``forced``, with ``gate_reasons`` and
  ``gate_by`` (``monitor`` when the monitoring DAG vetted it);
* time stamps ``promoted_at``, ``archived_at``, ``rejected_at``, ``vetted_at``,
  ``rolled_back_at`` (ISO 8601, UTC).
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

from sensorguard.config import Settings, get_settings
from sensorguard.registry.setup import get_client, registry_errors

LIFECYCLE = "lifecycle"
CANDIDATE = "candidate"
PRODUCTION = "production"
ARCHIVED = "archived"

GATE = "gate"
GATE_PASSED = "passed"
GATE_REJECTED = "rejected"
GATE_FORCED = "forced"
GATE_REASONS = "gate_reasons"
GATE_BY = "gate_by"
FORCE_REASON = "force_reason"

PROMOTED_AT = "promoted_at"
ARCHIVED_AT = "archived_at"
REJECTED_AT = "rejected_at"
VETTED_AT = "vetted_at"
ROLLED_BACK_AT = "rolled_back_at"

IDEMPOTENCY_KEY = "airflow_run_id"
"""Tag of the key that makes training idempotent (the name predates other callers)."""
TRIGGER = "trigger"
DETECTOR = "detector"
DATA_SHA256 = "data_sha256"
SIGNATURE = "sg.signature"
MANIFEST = "sg.manifest"

_TEXT_LIMIT = 5000  # MLflow's tag value limit


def now_text() -> str:
    return datetime.now(UTC).isoformat()


def set_tags(
    version: int,
    tags: dict[str, str],
    settings: Settings | None = None,
    *,
    model: str | None = None,
) -> None:
    """Write ``tags`` on one version of the model (values cut to MLflow's limit)."""
    settings = settings or get_settings()
    name = model or settings.model_name
    client = get_client(settings)
    with registry_errors(f"version {version} of model '{name}'", settings):
        for key, value in tags.items():
            client.set_model_version_tag(name, str(version), key, str(value)[:_TEXT_LIMIT])


def delete_tag(version: int, key: str, settings: Settings | None = None) -> None:
    from mlflow.exceptions import MlflowException

    settings = settings or get_settings()
    client = get_client(settings)
    what = f"version {version} of model '{settings.model_name}'"
    # not set: nothing to delete
    with registry_errors(what, settings), contextlib.suppress(MlflowException):
        client.delete_model_version_tag(settings.model_name, str(version), key)


def move_alias(alias: str, version: int, settings: Settings | None = None) -> None:
    """Point ``alias`` at ``version``."""
    settings = settings or get_settings()
    client = get_client(settings)
    with registry_errors(f"version {version} of model '{settings.model_name}'", settings):
        client.set_registered_model_alias(settings.model_name, alias, str(version))


def drop_alias(alias: str, settings: Settings | None = None) -> None:
    settings = settings or get_settings()
    client = get_client(settings)
    with registry_errors(f"model '{settings.model_name}'", settings):
        client.delete_registered_model_alias(settings.model_name, alias)


def mark_production(
    version: int,
    settings: Settings | None = None,
    *,
    at: str | None = None,
    gate: str | None = None,
    force_reason: str | None = None,
) -> None:
    """``lifecycle=production`` + ``promoted_at`` (+ the gate verdict that let it in)."""
    tags = {LIFECYCLE: PRODUCTION, PROMOTED_AT: at or now_text()}
    if gate is not None:
        tags[GATE] = gate
    if force_reason is not None:
        tags[FORCE_REASON] = force_reason
    set_tags(version, tags, settings)


def archive(version: int, settings: Settings | None = None, *, at: str | None = None) -> None:
    """Give ``version`` the ``previous`` alias and tag it archived."""
    settings = settings or get_settings()
    move_alias(settings.previous_alias, version, settings)
    set_tags(version, {LIFECYCLE: ARCHIVED, ARCHIVED_AT: at or now_text()}, settings)


def mark_gate(
    version: int,
    verdict: str,
    settings: Settings | None = None,
    *,
    by: str | None = None,
    reasons: str | None = None,
    at: str | None = None,
) -> None:
    """Record a gate verdict (``passed``/``rejected``) on ``version``."""
    at = at or now_text()
    tags = {GATE: verdict}
    if reasons is not None:
        tags[GATE_REASONS] = reasons
    if verdict == GATE_REJECTED:
        tags[REJECTED_AT] = at
    if by is not None:
        tags[GATE_BY] = by
        if verdict == GATE_PASSED:
            tags[VETTED_AT] = at
    set_tags(version, tags, settings)
