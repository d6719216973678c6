"""The audit trail: every promotion, rejection, rollback and vetting, as MLflow runs.

Each event is one run in the experiment ``<experiment>-audit`` (default
``sensorguard-audit``). Runs are append-only, so two processes never overwrite each
other's records (a JSON history tag would be a read-modify-write race and hits MLflow's
tag-size limit after a few dozen events); they carry the gate metrics as real metrics,
are searchable, visible in the MLflow UI, and work the same against a remote server.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sensorguard.config import Settings, get_settings
from sensorguard.jsonsafe import finite_metrics
from sensorguard.registry.setup import ensure_experiment, get_client, registry_errors
from sensorguard.registry.versions import _quote

Action = Literal["promote", "reject", "rollback", "vet"]
TAG_PREFIX = "sg."


def audit_experiment_name(settings: Settings) -> str:
    return f"{settings.experiment}-audit"


@dataclass
class AuditEvent:
    """One recorded lifecycle action."""

    action: Action
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
            finite = finite_metrics(event.gate.get(side) or {}, prefix=f"{side}_")
            metrics += [Metric(k, v, ms, 0) for k, v in finite.items()]
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
    settings = settings or get_settings()
    client = get_client(settings)
    model = model or settings.model_name
    with registry_errors("the audit trail", settings):
        exp = client.get_experiment_by_name(audit_experiment_name(settings))
        if exp is None:
            return []
        runs = client.search_runs(
            [exp.experiment_id],
            filter_string=f"tags.`{TAG_PREFIX}model` = {_quote(model)}",
            order_by=["attributes.start_time DESC"],
            max_results=limit,
        )
    out = []
    for r in runs:
        t = {k[len(TAG_PREFIX) :]: v for k, v in r.data.tags.items() if k.startswith(TAG_PREFIX)}
        gate = json.loads(t["gate"]) if t.get("gate") else None
        out.append(
            AuditEvent(
                action=t.get("action", "?"),  # type: ignore[arg-type]
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
