"""The console's models view: per registered model its versions, gate verdicts, audit trail.

Blocking MLflow calls through :mod:`sensorguard.registry`; the routes run them in a worker
thread. Rollback goes through :func:`sensorguard.pipelines.lifecycle.rollback`, the same
call as ``sensorguard models rollback``.
"""

from __future__ import annotations

from typing import Any

from sensorguard.config import Settings
from sensorguard.serving.console.data import time_text


def _settings_for(settings: Settings, name: str) -> Settings:
    return settings.model_copy(update={"model_name": name})


def model_views(settings: Settings) -> list[dict[str, Any]]:
    """Per registered model: production/previous, versions with gate verdicts, audit trail."""
    from sensorguard.registry import tags as T
    from sensorguard.registry.audit import history
    from sensorguard.registry.versions import list_versions, version_at

    names = _model_names(settings)
    ui = (settings.mlflow_ui_url or "").rstrip("/") if hasattr(settings, "mlflow_ui_url") else ""
    out = []
    for name in names:
        s = _settings_for(settings, name)
        prod = version_at(name, settings.production_alias, s)
        prev = version_at(name, settings.previous_alias, s)
        versions = []
        for v in list_versions(s, with_metrics=False, limit=20):
            gate = v.tags.get(T.GATE, "not gated")
            reasons = [r for r in v.tags.get(T.GATE_REASONS, "").split("; ") if r]
            versions.append(
                {
                    "version": v.version,
                    "aliases": ", ".join(v.aliases) or "—",
                    "gate": gate,
                    "checks": reasons,
                    "created": time_text(v.created),
                    "run_id": v.run_id,
                    "run_url": f"{ui}/#/runs/{v.run_id}" if ui and v.run_id else None,
                }
            )
        audit = []
        for e in history(s, limit=20, model=name):
            change = f"v{e.from_version or '—'} → v{e.to_version or '—'}"
            audit.append(
                {
                    "when": time_text(e.time),
                    "action": e.action,
                    "change": change,
                    "reason": e.reason or e.trigger,
                }
            )
        out.append(
            {
                "name": name,
                "production": prod,
                "previous": prev,
                "production_text": f"v{prod}" if prod is not None else "none",
                "previous_text": f"v{prev}" if prev is not None else "none",
                "versions": versions,
                "audit": audit,
            }
        )
    return out


def _model_names(settings: Settings) -> list[str]:
    from sensorguard.registry.versions import list_model_names

    return list_model_names(settings)


def rollback(name: str, reason: str, settings: Settings) -> str:
    from sensorguard.pipelines.lifecycle import rollback as do_rollback

    result = do_rollback(
        settings=_settings_for(settings, name),
        trigger="console",
        reason=reason or "rollback from the console",
    )
    return f"{name}: production is now v{result.to_version} (was v{result.from_version})."
