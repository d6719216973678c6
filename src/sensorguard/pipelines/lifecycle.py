"""Promotion, rejection, rollback and vetting — the moves of a version through its life.

MLflow 3 deprecates model stages, so the "Production / Archived" vocabulary maps onto
aliases and tags (the vocabulary itself lives in :mod:`sensorguard.registry.tags`):

* ``production`` alias → the version the predictor serves (tag ``lifecycle=production``);
* ``previous`` alias → the version the last promotion replaced (tag ``lifecycle=archived``,
  ``archived_at``); :func:`rollback` moves ``production`` back to it in one step;
* every new version starts with ``lifecycle=candidate``; the gate
  (:mod:`sensorguard.pipelines.gate`) adds ``gate=passed`` or ``gate=rejected``
  (+ ``gate_reasons``).

Every move is recorded in the audit trail (:mod:`sensorguard.registry.audit`). Vetting
(:func:`vet_unvetted_versions`) gates versions registered outside the training pipeline
and records the verdict, but never promotes.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sensorguard.config import Settings, get_settings
from sensorguard.data import Readings, load_readings
from sensorguard.detectors.base import BaseDetector
from sensorguard.errors import RegistryError, SensorGuardError
from sensorguard.pipelines.gate import GateDecision, evaluate_gate
from sensorguard.pipelines.windows import settings_for
from sensorguard.registry import tags as T
from sensorguard.registry.audit import Action, AuditEvent, record_event
from sensorguard.registry.runs import load_holdout
from sensorguard.registry.versions import (
    ensure_model,
    get_version,
    run_id_of,
    search_versions,
    version_at,
)


@dataclass
class PromotionResult:
    """What a promotion, rejection or rollback changed."""

    action: str
    model: str
    from_version: int | None
    to_version: int | None
    decision: GateDecision | None = None
    audit_run_id: str = ""

    @property
    def promoted(self) -> bool:
        return self.action in {"promote", "rollback"}


def _now() -> datetime:
    return datetime.now(UTC)


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user database entry (containers)
        return "unknown"


def _audited(
    action: Action,
    name: str,
    from_version: int | None,
    to_version: int | None,
    decision: GateDecision | None,
    settings: Settings,
    *,
    trigger: str,
    now: datetime,
    reason: str,
    forced: bool = False,
) -> PromotionResult:
    """Record ``action`` in the audit trail; the result carries the audit run id."""
    event = AuditEvent(
        action=action,
        model=name,
        from_version=from_version,
        to_version=to_version,
        trigger=trigger,
        time=now,
        user=_user(),
        reason=reason,
        forced=forced,
        gate=decision.to_dict() if decision else None,
    )
    run_id = record_event(event, settings)
    return PromotionResult(action, name, from_version, to_version, decision, run_id)


def promote(
    version: int,
    *,
    settings: Settings | None = None,
    trigger: str = "cli",
    decision: GateDecision | None = None,
    force: bool = False,
    reason: str = "",
) -> PromotionResult:
    """Move the production alias to ``version``; archive the version it replaces.

    Call it after a passed gate (``decision``), or with ``force=True`` and a ``reason``
    (recorded in the audit trail). The replaced version gets ``lifecycle=archived`` and
    the ``previous`` alias, so :func:`rollback` can restore it.
    """
    settings = settings or get_settings()
    name = settings.model_name
    if decision is not None and not decision.passed and not force:
        raise SensorGuardError(
            f"v{version} did not pass the quality gate: {'; '.join(decision.reasons)}",
            "fix the model, or force with --force --reason TEXT",
        )
    if decision is None and not force:
        raise SensorGuardError(
            f"promoting v{version} needs a passed quality gate",
            "run it through the gate, or force with --force --reason TEXT",
        )
    if force and not reason.strip():
        raise SensorGuardError(
            "a forced promotion needs a reason", "add --reason 'why the gate is bypassed'"
        )
    now = _now()
    get_version(name, version, settings)
    current = version_at(name, settings.production_alias, settings)
    if current == version:
        raise SensorGuardError(
            f"v{version} is already the production version of '{name}'",
            "nothing to do; see `sensorguard models list`",
        )
    T.move_alias(settings.production_alias, version, settings)
    if current is not None:
        T.archive(current, settings, at=now.isoformat())
    T.mark_production(
        version,
        settings,
        at=now.isoformat(),
        gate=T.GATE_FORCED if force else T.GATE_PASSED,
        force_reason=reason if force else None,
    )
    return _audited(
        "promote",
        name,
        current,
        version,
        decision,
        settings,
        trigger=trigger,
        now=now,
        reason=reason if force else (decision.summary() if decision else ""),
        forced=force,
    )


def reject(
    decision: GateDecision,
    *,
    settings: Settings | None = None,
    trigger: str = "cli",
    by: str | None = None,
) -> PromotionResult:
    """Record a failed gate: tag the candidate ``gate=rejected`` (+ reasons), audit it."""
    settings = settings or get_settings()
    now = _now()
    T.mark_gate(
        decision.candidate_version,
        T.GATE_REJECTED,
        settings,
        by=by,
        reasons="; ".join(decision.reasons),
        at=now.isoformat(),
    )
    return _audited(
        "reject",
        settings.model_name,
        decision.production_version,
        decision.candidate_version,
        decision,
        settings,
        trigger=trigger,
        now=now,
        reason="; ".join(decision.reasons),
    )


def gate_and_promote(
    version: int,
    eval_readings: Readings,
    *,
    settings: Settings | None = None,
    trigger: str = "cli",
    candidate_detector: BaseDetector | None = None,
    candidate_metrics: dict[str, Any] | None = None,
) -> PromotionResult:
    """Run the gate; promote on a pass, record a rejection otherwise (never raises for it).

    ``candidate_metrics`` are the candidate's metrics on ``eval_readings`` when they were
    just measured (``TrainResult.evaluation``): the gate then scores only production.
    """
    settings = settings or get_settings()
    decision = evaluate_gate(
        version,
        eval_readings,
        settings=settings,
        candidate_detector=candidate_detector,
        candidate_metrics=candidate_metrics,
    )
    if decision.passed:
        return promote(version, settings=settings, trigger=trigger, decision=decision)
    return reject(decision, settings=settings, trigger=trigger)


def rollback(
    *, settings: Settings | None = None, trigger: str = "cli", reason: str = ""
) -> PromotionResult:
    """Production ← previous in one step; the rolled-back version becomes ``previous``.

    Tags are swapped accordingly (the restored version is ``lifecycle=production`` again,
    the rolled-back one ``lifecycle=archived`` with ``rolled_back_at``), so a second
    rollback undoes the first.
    """
    settings = settings or get_settings()
    name = settings.model_name
    ensure_model(name, settings)
    current = version_at(name, settings.production_alias, settings)
    target = version_at(name, settings.previous_alias, settings)
    if target is None:
        raise RegistryError(
            f"model '{name}' has no '{settings.previous_alias}' version to roll back to",
            "a rollback needs an earlier promotion; see `sensorguard models history`",
        )
    now = _now()
    T.move_alias(settings.production_alias, target, settings)
    T.mark_production(target, settings, at=now.isoformat())
    T.delete_tag(target, T.ARCHIVED_AT, settings)
    if current is not None and current != target:
        T.archive(current, settings, at=now.isoformat())
        T.set_tags(current, {T.ROLLED_BACK_AT: now.isoformat()}, settings)
    else:
        T.drop_alias(settings.previous_alias, settings)
    return _audited(
        "rollback", name, current, target, None, settings, trigger=trigger, now=now, reason=reason
    )


# ---------------------------------------------------------------- vetting


def unvetted_versions(settings: Settings) -> list[int]:
    """Versions with no gate verdict yet (registered outside the pipeline), oldest first."""
    versions = search_versions(settings.model_name, settings)
    return sorted(int(mv.version) for mv in versions if not (mv.tags or {}).get(T.GATE))


def _evaluation_readings(
    recent: Readings | None, version: int, settings: Settings
) -> Readings | None:
    """Labelled readings to vet ``version`` on: the recent window when it is labelled,
    else production's held-out data, else the version's own held-out data."""
    if recent is not None and recent.y is not None and recent.y.any():
        return recent
    for v in (version_at(settings.model_name, settings.production_alias, settings), version):
        if v is None:
            continue
        run_id = run_id_of(settings.model_name, v, settings)
        if run_id:
            held = load_holdout(run_id, settings)
            if held is not None and held.y is not None:
                return held
    return None


def vet_unvetted_versions(
    path: str | Path | None = None, *, model_name: str | None = None, trigger: str = "monitor"
) -> list[dict[str, Any]]:
    """Gate every version that has no verdict yet; tag the verdict, never promote.

    Each is compared with the current production version on the same labelled readings
    (see :func:`_evaluation_readings`). A rejection is recorded like the pipeline's
    (``gate=rejected`` + reasons + audit entry); a pass sets ``gate=passed`` and
    ``gate_by=monitor`` so the version may be promoted later. Both carry ``gate_by=monitor``.
    """
    settings = settings_for(model_name)
    name = settings.model_name
    pending = unvetted_versions(settings)
    if not pending:
        return []
    recent = load_readings(path) if path is not None else None
    verdicts: list[dict[str, Any]] = []
    for version in pending:
        readings = _evaluation_readings(recent, version, settings)
        if readings is None:
            verdicts.append(
                {
                    "version": version,
                    "gate": "unvetted",
                    "reason": "no labelled readings to evaluate it on (recent window "
                    "unlabelled, no held-out data stored)",
                }
            )
            continue
        decision = evaluate_gate(version, readings, settings=settings)
        if decision.passed:
            now = _now()
            T.mark_gate(version, T.GATE_PASSED, settings, by="monitor", at=now.isoformat())
            _audited(
                "vet",
                name,
                decision.production_version,
                version,
                decision,
                settings,
                trigger=trigger,
                now=now,
                reason=decision.summary(),
            )
        else:
            reject(decision, settings=settings, trigger=trigger, by="monitor")
        verdicts.append(
            {
                "version": version,
                "gate": T.GATE_PASSED if decision.passed else T.GATE_REJECTED,
                "reason": decision.summary(),
                "evaluated_on": str(readings.source),
            }
        )
    return verdicts
