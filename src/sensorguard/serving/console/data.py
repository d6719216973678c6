"""View models of the console: plain dicts built from the store and the registry.

Blocking (database and MLflow calls); the routes run these in a worker thread. Nothing
here renders HTML apart from the inline SVG charts of :mod:`.charts`; nothing here
decides anything the API does not: statuses, alarms and labels come from the same
library functions that ``/v1/alarms`` and ``/v1/assets`` use.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any, get_args

from sensorguard.config import Settings
from sensorguard.serving.console.charts import sparkline
from sensorguard.serving.schemas import AlarmKind
from sensorguard.timeutil import utc_now

# Overview order: what needs a person first. Ranks sort ascending. A regime change
# (the model does not apply to the asset's readings: retrain) comes after a failure and
# before data quality: no failure alarm is raised over it, so nothing else flags the asset.
STATUS_RANK = {"alarm": 0, "regime-change": 1, "data-quality": 2, "stale": 3, "normal": 4}
STATUS_LABEL = {
    "alarm": "alarm",
    "regime-change": "regime change",
    "data-quality": "data quality",
    "stale": "stale",
    "normal": "normal",
}
# Every alarm kind the watch service opens: the API's list, so the two cannot diverge.
ALARM_KINDS: tuple[str, ...] = get_args(AlarmKind)
KIND_LABEL = {
    "failure": "failure",
    "regime_change": "regime change",
    "silent": "silent",
    "sensor_missing": "sensor missing",
    "flatline": "flatline",
    "out_of_range": "out of range",
}


def kind_text(kind: str | None) -> str:
    return KIND_LABEL.get(kind or "", kind or "—")


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def time_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def duration_text(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "—"
    seconds = float(seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    counts = {k: 0 for k in STATUS_RANK}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    return [{"status": k, "label": STATUS_LABEL[k], "count": counts[k]} for k in STATUS_RANK]


def asset_row(
    *,
    asset_id: str,
    model: str | None,
    site: str | None,
    status: str,
    scores: list[float],
    threshold: float | None,
    open_alarms: list[dict[str, Any]],
    last_reading_at: Any,
    version: int | str | None,
) -> dict[str, Any]:
    """One overview row, with the sort keys the page's script uses."""
    last_score = scores[-1] if scores else None
    last_dt = last_reading_at
    if isinstance(last_dt, str):
        try:
            last_dt = datetime.fromisoformat(last_dt)
        except ValueError:
            last_dt = None
    last_sort = -last_dt.timestamp() if isinstance(last_dt, datetime) else 0.0
    kinds = sorted({a.get("kind", "") for a in open_alarms})
    return {
        "asset_id": asset_id,
        "model": model,
        "site": site,
        "status": status,
        "status_label": STATUS_LABEL.get(status, status),
        "status_rank": STATUS_RANK.get(status, 9),
        "sparkline": sparkline(scores, threshold, label=f"score of {asset_id}"),
        "score_text": "—" if last_score is None else f"{last_score:.3g}",
        # Higher scores first when sorting ascending would hide them: sort on -score.
        "score_sort": "" if last_score is None or not math.isfinite(last_score) else -last_score,
        "open_alarms": len(open_alarms),
        "first_alarm_id": open_alarms[0]["id"] if open_alarms else None,
        "alarm_kinds": ", ".join(kind_text(k) for k in kinds if k),
        "last_text": time_text(last_reading_at),
        "last_sort": last_sort,
        "version_text": "—" if version is None else f"{model or ''} v{version}".strip(),
        "version_sort": "" if version is None else str(version),
    }


def order_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Status first (alarms on top), then the highest current score, then the name."""
    return sorted(
        rows,
        key=lambda r: (
            r["status_rank"],
            r["score_sort"] if isinstance(r["score_sort"], float) else 0.0,
            r["asset_id"],
        ),
    )


# ---------------------------------------------------------------------- assets
DQ_KINDS = ("silent", "sensor_missing", "flatline", "out_of_range")


def _status(live: dict[str, Any] | None, last: datetime | None, stale_after: float) -> str:
    kinds = {a.get("kind") for a in (live or {}).get("open_alarms", [])}
    if "failure" in kinds:
        return "alarm"
    if "regime_change" in kinds:
        return "regime-change"
    if kinds & set(DQ_KINDS):
        return "data-quality"
    if last is None:
        return "stale"
    ref = last if last.tzinfo is None else last.astimezone(UTC).replace(tzinfo=None)
    age = (utc_now() - ref).total_seconds()
    return "stale" if age > stale_after else "normal"


def overview_rows(
    settings: Settings, detectors: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Every known asset (registered, or seen in readings), most urgent first."""
    from sensorguard.store.alarms import asset_live_status
    from sensorguard.store.assets import list_registered_assets
    from sensorguard.store.overview import recent_scores

    url = settings.resolved_store_url
    registered = {a.asset_id: a for a in list_registered_assets(url=url)}
    live = asset_live_status(url=url)
    scores = recent_scores(per_asset=48, url=url)
    thresholds = {
        name: float(det.threshold_)
        for name, det in (detectors or {}).items()
        if hasattr(det, "threshold_")
    }
    production = _production_versions(settings, {a.model for a in registered.values()})
    rows = []
    for asset_id in sorted(set(registered) | set(live)):
        reg = registered.get(asset_id)
        lv = live.get(asset_id) or {}
        model = reg.model if reg else lv.get("model_name")
        last = lv.get("last_reading_at")
        version = lv.get("model_version") or (production.get(model) if model else None)
        rows.append(
            asset_row(
                asset_id=asset_id,
                model=model,
                site=reg.site if reg else None,
                status=_status(lv, last, settings.watch_silent_after),
                scores=scores.get(asset_id, []),
                threshold=thresholds.get(model or ""),
                open_alarms=lv.get("open_alarms", []),
                last_reading_at=last,
                version=version,
            )
        )
    return order_rows(rows)


def _production_versions(settings: Settings, names: set[str]) -> dict[str, int | None]:
    """Production version per machine type; a registry that is down costs the column only."""
    from sensorguard.errors import SensorGuardError
    from sensorguard.registry.versions import version_at

    out: dict[str, int | None] = {}
    for name in sorted(n for n in names if n):
        try:
            out[name] = version_at(name, settings.production_alias, settings)
        except SensorGuardError:
            out[name] = None
    return out


def asset_detail(
    asset_id: str, settings: Settings
) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    from sensorguard.serving.console.charts import series_chart
    from sensorguard.store.alarms import asset_live_status, list_alarms, read_scores
    from sensorguard.store.assets import get_asset

    url = settings.resolved_store_url
    reg = get_asset(asset_id, url=url)
    live = asset_live_status([asset_id], url=url).get(asset_id)
    if reg is None and live is None:
        return None
    scores = read_scores(asset_id, limit=500, url=url)
    values: list[float] = list(scores["score"].to_numpy(dtype=float)) if len(scores) else []
    labels = (
        (time_text(scores["time"].iloc[0]), time_text(scores["time"].iloc[-1]))
        if len(scores)
        else None
    )
    row = asset_row(
        asset_id=asset_id,
        model=reg.model if reg else (live or {}).get("model_name"),
        site=reg.site if reg else None,
        status=_status(live, (live or {}).get("last_reading_at"), settings.watch_silent_after),
        scores=values,
        threshold=None,
        open_alarms=(live or {}).get("open_alarms", []),
        last_reading_at=(live or {}).get("last_reading_at"),
        version=(live or {}).get("model_version"),
    )
    row["chart"] = series_chart(values, label=f"score of {asset_id}", x_labels=labels)
    alarms, _ = list_alarms(asset=asset_id, limit=50, url=url)
    return row, [alarm_summary(a) for a in alarms]


# ---------------------------------------------------------------------- alarms
def _label_text(label: dict[str, Any] | None) -> str:
    if not label:
        return "not labelled"
    text = str(label.get("label", ""))
    if label.get("failure_mode"):
        text += f" ({label['failure_mode']})"
    if label.get("by"):
        text += f" by {label['by']}"
    return text


def alarm_summary(a: dict[str, Any]) -> dict[str, Any]:
    top = a.get("top_sensors") or a.get("first_top_sensors") or []
    if a.get("sensor") and not top:
        top = [a["sensor"]]
    return {
        **a,
        "start_text": time_text(a.get("start")),
        "end_text": "open" if a.get("state") == "open" else time_text(a.get("end")),
        "kind_text": kind_text(a.get("kind")),
        "top_text": ", ".join(str(s) for s in top[:3]) or "—",
        "label_text": _label_text(a.get("label")),
    }


def alarm_rows(
    settings: Settings, state: str | None, asset: str | None, kind: str | None = None
) -> list[dict[str, Any]]:
    from sensorguard.store.alarms import list_alarms

    alarms, _ = list_alarms(
        asset=asset, kind=kind, state=state, limit=200, url=settings.resolved_store_url
    )
    return [alarm_summary(a) for a in alarms]


def acknowledge(alarm_id: int, by: str, settings: Settings) -> None:
    from sensorguard.store.alarms import acknowledge_alarm

    acknowledge_alarm(alarm_id, by=by or None, url=settings.resolved_store_url)


def label(
    alarm_id: int, verdict: str, mode: str | None, note: str | None, by: str, settings: Settings
) -> None:
    from sensorguard.store.alarms import label_alarm

    label_alarm(
        alarm_id,
        verdict,
        failure_mode=mode,
        note=note,
        by=by or None,
        url=settings.resolved_store_url,
    )
