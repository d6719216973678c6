"""Quality gate, promotion, rollback and the audit trail — on MLflow aliases and tags.

MLflow 3 deprecates model stages, so the "Production / Archived" vocabulary maps onto:

* ``production`` alias → the version the predictor serves (tag ``lifecycle=production``);
* ``previous`` alias → the version the last promotion replaced (tag ``lifecycle=archived``,
  ``archived_at``); ``rollback`` moves ``production`` back to it in one step;
* every new version starts with ``lifecycle=candidate``; the gate adds ``gate=passed`` or
  ``gate=rejected`` (+ ``gate_reasons``).

Audit trail: each promotion, rejection and rollback is one run in the MLflow experiment
``<experiment>-audit`` (default ``sensorguard-audit``). Runs are append-only, so two
processes never overwrite each other's records (a JSON history tag would be a
read-modify-write race and hits MLflow's tag-size limit after a few dozen events); they
carry the gate metrics as real metrics, are searchable, visible in the MLflow UI, and work
the same against a remote tracking server.
"""

from __future__ import annotations

import getpass
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sensorguard.config import Settings, get_settings
from sensorguard.errors import RegistryError, SensorGuardError

if TYPE_CHECKING:  # pragma: no cover
    from sensorguard.data import Readings
    from sensorguard.detectors.base import BaseDetector

GATE_METRICS = (
    "f1",
    "precision",
    "recall",
    "event_recall",
    "events_total",
    "events_detected",
    "false_alarms_per_day",
    "mean_detection_delay_s",
)
TAG_PREFIX = "sg."


def audit_experiment_name(settings: Settings) -> str:
    return f"{settings.experiment}-audit"


# ---------------------------------------------------------------- the gate


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


@dataclass
class GateDecision:
    """The gate's verdict on a candidate, with the metrics of both versions."""

    passed: bool
    candidate_version: int
    production_version: int | None
    candidate: dict[str, Any]
    production: dict[str, Any] | None
    checks: list[Check] = field(default_factory=list)
    evaluation_rows: int = 0
    evaluation_source: str = ""

    @property
    def reasons(self) -> list[str]:
        """Why it failed (the failed checks); ``[]`` when it passed."""
        return [c.detail for c in self.checks if not c.passed]

    def summary(self) -> str:
        head = "passed" if self.passed else "rejected"
        against = (
            f"against production v{self.production_version}"
            if self.production_version is not None
            else "(no production version yet: absolute thresholds only)"
        )
        text = f"gate {head} for v{self.candidate_version} {against}"
        if not self.passed:
            text += ": " + "; ".join(self.reasons)
        return text

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["reasons"] = self.reasons
        return d


def _metric(m: dict[str, Any] | None, key: str) -> float:
    if not m:
        return float("nan")
    v = m.get(key)
    return float(v) if isinstance(v, int | float) and v is not None else float("nan")


def _slim(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: metrics.get(k) for k in GATE_METRICS if k in metrics}


def decide(
    candidate: dict[str, Any],
    production: dict[str, Any] | None,
    settings: Settings,
    *,
    candidate_version: int,
    production_version: int | None,
) -> GateDecision:
    """Apply the absolute thresholds and the no-regression rule to evaluation metrics."""
    checks: list[Check] = []
    events = int(candidate.get("events_total") or 0)
    checks.append(
        Check(
            "failure events in evaluation data",
            events > 0,
            f"the evaluation data holds {events} labelled failure event(s)"
            + ("" if events else ": the gate cannot verify detection without failures"),
        )
    )
    f1 = _metric(candidate, "f1")
    rec = _metric(candidate, "event_recall")
    fapd = _metric(candidate, "false_alarms_per_day")
    checks.append(
        Check(
            "minimum F1",
            f1 >= settings.gate_min_f1,
            f"F1 {f1:.3f} {'≥' if f1 >= settings.gate_min_f1 else '<'} "
            f"minimum {settings.gate_min_f1:.3f}",
        )
    )
    checks.append(
        Check(
            "minimum event recall",
            rec >= settings.gate_min_event_recall,
            f"event recall {rec:.3f} {'≥' if rec >= settings.gate_min_event_recall else '<'} "
            f"minimum {settings.gate_min_event_recall:.3f}",
        )
    )
    checks.append(
        Check(
            "maximum false alarms per day",
            fapd <= settings.gate_max_false_alarms_per_day,
            f"false alarms/day {fapd:.2f} "
            f"{'≤' if fapd <= settings.gate_max_false_alarms_per_day else '>'} "
            f"maximum {settings.gate_max_false_alarms_per_day:.2f}",
        )
    )
    if production is not None:
        tol = settings.gate_tolerance
        for key, label in (("f1", "F1"), ("event_recall", "event recall")):
            c, p = _metric(candidate, key), _metric(production, key)
            ok = not math.isnan(c) and (math.isnan(p) or c >= p - tol)
            checks.append(
                Check(
                    f"no {label} regression",
                    ok,
                    f"{label} {c:.3f} vs production v{production_version} {p:.3f} "
                    f"({'within' if ok else 'drops more than'} tolerance {tol:.3f})",
                )
            )
    return GateDecision(
        passed=all(c.passed for c in checks),
        candidate_version=candidate_version,
        production_version=production_version,
        candidate=_slim(candidate),
        production=None if production is None else _slim(production),
        checks=checks,
    )


def evaluate_gate(
    candidate_version: int,
    eval_readings: Readings,
    *,
    settings: Settings | None = None,
    candidate_detector: BaseDetector | None = None,
) -> GateDecision:
    """Evaluate the candidate and the current production version on the same readings."""
    from sensorguard.evaluation.events import evaluate_detector
    from sensorguard.registry import load_version, resolve_alias

    settings = settings or get_settings()
    name = settings.model_name
    if eval_readings.y is None:
        raise SensorGuardError(
            f"{eval_readings.source}: the quality gate needs labelled evaluation readings",
            "pass labelled data with --data, or force with --force --reason TEXT",
        )
    detector = (
        candidate_detector or load_version(name, candidate_version, settings=settings).detector
    )
    cand_metrics = evaluate_detector(detector, eval_readings)
    prod_version = _current_version(name, settings.production_alias, settings, resolve_alias)
    prod_metrics = None
    if prod_version is not None and prod_version != candidate_version:
        prod = load_version(name, prod_version, alias=settings.production_alias, settings=settings)
        try:
            prod_metrics = evaluate_detector(prod.detector, eval_readings)
        except SensorGuardError as exc:
            # e.g. production was trained on other sensors: it cannot be compared, so the
            # candidate is judged on the absolute thresholds alone (and the reason is shown)
            prod_metrics = {"error": str(exc)}
    elif prod_version == candidate_version:
        prod_version = None
    decision = decide(
        cand_metrics,
        prod_metrics if prod_metrics and "error" not in prod_metrics else None,
        settings,
        candidate_version=candidate_version,
        production_version=prod_version,
    )
    if prod_metrics and "error" in prod_metrics:
        decision.checks.append(
            Check(
                "production comparable", True, f"production not comparable: {prod_metrics['error']}"
            )
        )
    decision.evaluation_rows = len(eval_readings)
    decision.evaluation_source = str(eval_readings.source)
    return decision


def _current_version(
    name: str, alias: str, settings: Settings, resolve: Callable[..., int]
) -> int | None:
    try:
        return int(resolve(name, alias, settings))
    except RegistryError as exc:
        if "no version with alias" in exc.message or "no registered model" in exc.message:
            return None
        raise


# ---------------------------------------------------------------- audit trail


@dataclass
class AuditEvent:
    """One recorded lifecycle action."""

    action: str  # promote | reject | rollback
    model: str
    from_version: int | None
    to_version: int | None
    trigger: str
    time: datetime
    user: str = ""
    reason: str = ""
    forced: bool = False
    gate: dict[str, Any] | None = None
    run_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["time"] = self.time.isoformat()
        return d


def _version_text(v: int | None) -> str:
    return "" if v is None else str(v)


def record_event(event: AuditEvent, settings: Settings | None = None) -> str:
    """Store ``event`` as a run of the audit experiment; returns the run id."""
    from mlflow.entities import Metric, Param, RunTag

    from sensorguard.registry import ensure_experiment, get_client, registry_errors

    settings = settings or get_settings()
    exp_id = ensure_experiment(audit_experiment_name(settings), settings)
    client = get_client(settings)
    ms = int(event.time.timestamp() * 1000)
    tags = {
        "action": event.action,
        "model": event.model,
        "from_version": _version_text(event.from_version),
        "to_version": _version_text(event.to_version),
        "trigger": event.trigger,
        "user": event.user,
        "reason": event.reason[:5000],
        "forced": "true" if event.forced else "false",
        "gate": "" if event.gate is None else json.dumps(event.gate, default=str)[:7000],
    }
    run_name = (
        f"{event.action} {event.model} "
        f"v{_version_text(event.from_version) or '-'}→v{_version_text(event.to_version) or '-'}"
    )
    metrics: list[Metric] = []
    if event.gate:
        for side in ("candidate", "production"):
            for k, v in (event.gate.get(side) or {}).items():
                if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
                    metrics.append(Metric(f"{side}_{k}", float(v), ms, 0))
    with registry_errors("the audit trail", settings):
        run = client.create_run(
            exp_id,
            start_time=ms,
            tags={f"{TAG_PREFIX}{k}": v for k, v in tags.items()} | {"mlflow.runName": run_name},
            run_name=run_name,
        )
        client.log_batch(
            run.info.run_id,
            metrics=metrics,
            params=[Param("action", event.action), Param("model", event.model)],
            tags=[RunTag("mlflow.note.content", _note(event))],
        )
        client.set_terminated(run.info.run_id, end_time=ms)
    return str(run.info.run_id)


def _note(event: AuditEvent) -> str:
    lines = [
        f"**{event.action}** `{event.model}`: v{event.from_version} → v{event.to_version}",
        f"trigger: {event.trigger}; user: {event.user}",
    ]
    if event.reason:
        lines.append(f"reason: {event.reason}")
    return "\n\n".join(lines)


def history(
    settings: Settings | None = None, *, limit: int = 100, model: str | None = None
) -> list[AuditEvent]:
    """The recorded lifecycle actions of the model, newest first."""
    from sensorguard.registry import get_client, registry_errors

    settings = settings or get_settings()
    client = get_client(settings)
    model = model or settings.model_name
    with registry_errors("the audit trail", settings):
        exp = client.get_experiment_by_name(audit_experiment_name(settings))
        if exp is None:
            return []
        safe = model.replace("'", "\\'")
        runs = client.search_runs(
            [exp.experiment_id],
            filter_string=f"tags.`{TAG_PREFIX}model` = '{safe}'",
            order_by=["attributes.start_time DESC"],
            max_results=limit,
        )
    out = []
    for r in runs:
        t = {k[len(TAG_PREFIX) :]: v for k, v in r.data.tags.items() if k.startswith(TAG_PREFIX)}
        gate = json.loads(t["gate"]) if t.get("gate") else None
        out.append(
            AuditEvent(
                action=t.get("action", "?"),
                model=t.get("model", model),
                from_version=int(t["from_version"]) if t.get("from_version") else None,
                to_version=int(t["to_version"]) if t.get("to_version") else None,
                trigger=t.get("trigger", ""),
                time=datetime.fromtimestamp(r.info.start_time / 1000, UTC),
                user=t.get("user", ""),
                reason=t.get("reason", ""),
                forced=t.get("forced") == "true",
                gate=gate,
                run_id=r.info.run_id,
            )
        )
    return out


# ---------------------------------------------------------------- promote / reject / rollback


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


def _ensure_model(client: Any, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        raise RegistryError(
            f"no registered model named '{name}'",
            "train one with `sensorguard train DATA` or `sensorguard demo`",
        ) from None


def _ensure_version(client: Any, name: str, version: int) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_model_version(name, str(version))
    except MlflowException:
        _ensure_model(client, name)
        raise RegistryError(
            f"model '{name}' has no version {version}",
            "see the versions with `sensorguard models list`",
        ) from None


def _archive(client: Any, name: str, version: int, settings: Settings, now: datetime) -> None:
    """Point the ``previous`` alias at ``version`` and tag it archived."""
    client.set_registered_model_alias(name, settings.previous_alias, str(version))
    client.set_model_version_tag(name, str(version), "lifecycle", "archived")
    client.set_model_version_tag(name, str(version), "archived_at", now.isoformat())


def _audited(
    action: str,
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
    from sensorguard.registry import get_client, registry_errors, resolve_alias

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
    client = get_client(settings)
    now = _now()
    with registry_errors(f"version {version} of model '{name}'", settings):
        _ensure_version(client, name, version)
        current = _current_version(name, settings.production_alias, settings, resolve_alias)
        if current == version:
            raise SensorGuardError(
                f"v{version} is already the production version of '{name}'",
                "nothing to do; see `sensorguard models list`",
            )
        client.set_registered_model_alias(name, settings.production_alias, str(version))
        if current is not None:
            _archive(client, name, current, settings, now)
        client.set_model_version_tag(name, str(version), "lifecycle", "production")
        client.set_model_version_tag(name, str(version), "promoted_at", now.isoformat())
        client.set_model_version_tag(name, str(version), "gate", "forced" if force else "passed")
        if force:
            client.set_model_version_tag(name, str(version), "force_reason", reason[:5000])
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
    decision: GateDecision, *, settings: Settings | None = None, trigger: str = "cli"
) -> PromotionResult:
    """Record a failed gate: tag the candidate ``gate=rejected`` (+ reasons), audit it."""
    from sensorguard.registry import get_client, registry_errors

    settings = settings or get_settings()
    name = settings.model_name
    client = get_client(settings)
    now = _now()
    v = str(decision.candidate_version)
    with registry_errors(f"version {v} of model '{name}'", settings):
        client.set_model_version_tag(name, v, "gate", "rejected")
        client.set_model_version_tag(name, v, "gate_reasons", "; ".join(decision.reasons)[:5000])
        client.set_model_version_tag(name, v, "rejected_at", now.isoformat())
    return _audited(
        "reject",
        name,
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
) -> PromotionResult:
    """Run the gate; promote on a pass, record a rejection otherwise (never raises for it)."""
    settings = settings or get_settings()
    decision = evaluate_gate(
        version, eval_readings, settings=settings, candidate_detector=candidate_detector
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
    from sensorguard.registry import get_client, registry_errors, resolve_alias

    settings = settings or get_settings()
    name = settings.model_name
    client = get_client(settings)
    _ensure_model(client, name)
    current = _current_version(name, settings.production_alias, settings, resolve_alias)
    target = _current_version(name, settings.previous_alias, settings, resolve_alias)
    if target is None:
        raise RegistryError(
            f"model '{name}' has no '{settings.previous_alias}' version to roll back to",
            "a rollback needs an earlier promotion; see `sensorguard models history`",
        )
    now = _now()
    with registry_errors(f"model '{name}'", settings):
        client.set_registered_model_alias(name, settings.production_alias, str(target))
        client.set_model_version_tag(name, str(target), "lifecycle", "production")
        client.set_model_version_tag(name, str(target), "promoted_at", now.isoformat())
        client.delete_model_version_tag(name, str(target), "archived_at")
        if current is not None and current != target:
            _archive(client, name, current, settings, now)
            client.set_model_version_tag(name, str(current), "rolled_back_at", now.isoformat())
        else:
            client.delete_registered_model_alias(name, settings.previous_alias)
    return _audited(
        "rollback", name, current, target, None, settings, trigger=trigger, now=now, reason=reason
    )


# ---------------------------------------------------------------- listing


@dataclass
class VersionInfo:
    version: int
    aliases: list[str]
    tags: dict[str, str]
    created: datetime
    run_id: str | None
    metrics: dict[str, float]
    params: dict[str, str]
    description: str = ""

    @property
    def lifecycle(self) -> str:
        return self.tags.get("lifecycle", "")


def list_versions(
    settings: Settings | None = None, *, with_metrics: bool = True, limit: int = 200
) -> list[VersionInfo]:
    """The registered versions, newest first, with aliases, tags and run metrics."""
    from mlflow.exceptions import MlflowException

    from sensorguard.registry import get_client, registry_errors

    settings = settings or get_settings()
    name = settings.model_name
    client = get_client(settings)
    with registry_errors(f"registered model '{name}'", settings):
        try:
            model = client.get_registered_model(name)
        except MlflowException:
            raise RegistryError(
                f"no registered model named '{name}'",
                "train one with `sensorguard train DATA` or `sensorguard demo`",
            ) from None
        safe = name.replace("'", "\\'")
        versions = client.search_model_versions(
            f"name='{safe}'", max_results=limit, order_by=["version_number DESC"]
        )
        # search results may lack aliases; the registered model has the authoritative map
        aliases = _alias_map(model)
        out = [_version_info(client, mv, with_metrics, aliases) for mv in versions]
    return sorted(out, key=lambda v: -v.version)


def _alias_map(model: Any) -> dict[int, list[str]]:
    raw = model.aliases or {}
    pairs = raw.items() if isinstance(raw, dict) else ((a.alias, a.version) for a in raw)
    out: dict[int, list[str]] = {}
    for alias, version in pairs:
        out.setdefault(int(version), []).append(str(alias))
    return out


def _version_info(
    client: Any, mv: Any, with_metrics: bool, aliases: dict[int, list[str]] | None = None
) -> VersionInfo:
    from mlflow.exceptions import MlflowException

    metrics: dict[str, float] = {}
    params: dict[str, str] = {}
    if with_metrics and mv.run_id:
        try:
            run = client.get_run(mv.run_id)
            metrics, params = dict(run.data.metrics), dict(run.data.params)
        except MlflowException:  # run deleted: the version still exists
            pass
    return VersionInfo(
        version=int(mv.version),
        aliases=sorted(
            aliases.get(int(mv.version), []) if aliases is not None else (mv.aliases or [])
        ),
        tags=dict(mv.tags or {}),
        created=datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC),
        run_id=mv.run_id,
        metrics=metrics,
        params=params,
        description=mv.description or "",
    )


def show_version(version: int, settings: Settings | None = None) -> VersionInfo:
    """One version with its aliases, tags, run params and metrics."""
    from sensorguard.registry import get_client, registry_errors

    settings = settings or get_settings()
    client = get_client(settings)
    with registry_errors(f"version {version} of model '{settings.model_name}'", settings):
        _ensure_version(client, settings.model_name, version)
        mv = client.get_model_version(settings.model_name, str(version))
        model = client.get_registered_model(settings.model_name)
        return _version_info(client, mv, True, _alias_map(model))
