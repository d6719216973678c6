"""The console's alarm view: the alarm, its score and sensors around it, its failure type.

Blocking store reads; the routes run them in a worker thread. The normal band of a sensor
and the failure type's profile come from the model the predictor has loaded (its
operating-state profile and the failure types learned at training).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sensorguard.config import Settings
from sensorguard.serving.console.data import alarm_summary, duration_text, time_text


def alarm_detail(
    alarm_id: int, settings: Settings, detectors: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """The alarm with its score chart and its top sensors against their normal bands."""
    from datetime import timedelta

    from sensorguard.serving.console.charts import Span, series_chart
    from sensorguard.store.alarms import AlarmNotFound, get_alarm, read_scores
    from sensorguard.store.engine import StoreError
    from sensorguard.store.query import read_window_frame

    url = settings.resolved_store_url
    try:
        a = get_alarm(alarm_id, url=url)
    except AlarmNotFound:
        return None
    out = alarm_summary(a)
    start, end = _as_dt(a.get("start")), _as_dt(a.get("end") or a.get("last_time"))
    dur = a.get("duration_s")
    out["duration_text"] = duration_text(dur) if dur is not None else "—"
    out["peak_text"] = "—" if a.get("peak_score") is None else f"{a['peak_score']:.4g}"
    out["model_text"] = (
        f"{a.get('model_name')} v{a.get('model_version')}" if a.get("model_version") else "—"
    )
    out["ack_text"] = (
        f"by {a.get('acknowledged_by') or 'someone'} at {time_text(a.get('acknowledged_at'))}"
        if a.get("acknowledged")
        else "not yet"
    )
    out["reason"] = a.get("close_reason")
    out["regime"] = regime_view(a)
    shares = (a.get("detail") or {}).get("blame") or {}
    names = a.get("top_sensors") or a.get("first_top_sensors") or []
    out["top_sensors"] = [{"name": n, "share": shares.get(n)} for n in names]
    det = (detectors or {}).get(a.get("model_name") or "")
    out["failure_type"], out["failure_profile"] = failure_type_view(det, a.get("failure_type"))
    out["score_chart"] = None
    out["sensor_charts"] = []
    if start is None:
        return out
    span = (end or start) - start
    pad = max(span, timedelta(minutes=10))
    lo, hi = start - pad, (end or start) + pad
    scores = read_scores(a["asset_id"], lo, hi, url=url)
    if len(scores):
        times = scores["time"]
        idx = [i for i, t in enumerate(times) if start <= t <= (end or times.iloc[-1])]
        spans = [Span(idx[0], idx[-1])] if idx else []
        thr = float(det.threshold_) if det is not None and hasattr(det, "threshold_") else None
        out["score_chart"] = series_chart(
            scores["score"].to_numpy(dtype=float),
            threshold=thr,
            spans=spans,
            label=f"score of {a['asset_id']}",
            x_labels=(time_text(times.iloc[0]), time_text(times.iloc[-1])),
        )
    try:
        frame = read_window_frame(a["asset_id"], lo, hi, url=url)
    except StoreError:  # no readings kept around the alarm (pruned, or never stored)
        frame = None
    if frame is not None and len(frame):
        tvals = list(frame["timestamp"])
        idx = [i for i, t in enumerate(tvals) if start <= t <= (end or tvals[-1])]
        before = frame[[t < start for t in tvals]]
        bands = normal_bands((detectors or {}).get(a.get("model_name") or ""), before)
        for name in names[:3]:
            if name not in frame.columns:
                continue
            band = bands.get(name)
            cap = (
                f"normal band {band[0]:.4g} to {band[1]:.4g} (the model's operating-state profile)"
                if band
                else "no normal band stored for this sensor"
            )
            out["sensor_charts"].append(
                {
                    "name": name,
                    "svg": series_chart(
                        frame[name].to_numpy(dtype=float),
                        band=(float(band[0]), float(band[1])) if band else None,
                        spans=[Span(idx[0], idx[-1])] if idx else [],
                        label=name,
                        x_labels=(time_text(tvals[0]), time_text(tvals[-1])),
                    ),
                    "caption": cap,
                }
            )
    return out


def _as_dt(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime) and value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value if isinstance(value, datetime) else None


def normal_bands(detector: Any, before: Any, width: float = 3.0) -> dict[str, tuple[float, float]]:
    """Per sensor, mean ± ``width`` scales of the operating state the asset was in before
    the alarm (the state whose centre is nearest the median of those readings)."""
    import numpy as np

    if detector is None or not hasattr(detector, "describe_states") or before is None:
        return {}
    profile = detector.describe_states()
    sensors = [s for s in profile["sensors"] if s in getattr(before, "columns", [])]
    if not sensors or not len(before):
        return {}
    med = before[sensors].median().to_numpy(dtype=float)
    best, best_d = None, float("inf")
    for st in profile["states"]:
        c = np.array([st["center"][s] for s in sensors], dtype=float)
        sc = np.array([st["scale"][s] or 1.0 for s in sensors], dtype=float)
        d = float(np.nansum(((med - c) / sc) ** 2))
        if d < best_d:
            best, best_d = st, d
    if best is None:
        return {}
    return {
        s: (best["mean"][s] - width * best["scale"][s], best["mean"][s] + width * best["scale"][s])
        for s in sensors
    }


def failure_type_view(detector: Any, type_id: Any) -> tuple[str | None, list[dict[str, str]]]:
    """The failure type's name and its profile (signature share and mean deviation per
    sensor), from the failure types the model learned at training."""
    if type_id is None:
        return None, []
    profiles = getattr(detector, "failure_types_", None) or {}
    match = next((t for t in profiles.get("types", []) if t.get("type") == type_id), None)
    if match is None:
        return f"type {type_id}", []
    modes = match.get("labelled_modes") or {}
    name = f"type {type_id}"
    if modes:
        name += f" (labelled {next(iter(modes))} in {sum(modes.values())} training episodes)"
    sig = match.get("signature") or {}
    dev = match.get("mean_deviation") or {}
    top = sorted(sig, key=lambda k: -float(sig[k]))[:5]
    rows = [
        {
            "sensor": k,
            "value": f"{float(sig[k]) * 100:.0f} % of the deviation, "
            f"z {float(dev.get(k, 0.0)):+.1f}",
        }
        for k in top
    ]
    return name, rows


def regime_view(a: dict[str, Any]) -> dict[str, Any] | None:
    """A ``regime_change`` alarm's verdict: what moved (training range, median of the
    judged readings) and what to do; ``None`` for other kinds."""
    if a.get("kind") != "regime_change":
        return None
    detail = a.get("detail") or {}
    moved = [
        {
            "sensor": s.get("sensor", ""),
            "range": f"{s['train_min']:.4g} … {s['train_max']:.4g}"
            if s.get("train_min") is not None and s.get("train_max") is not None
            else "—",
            "median": "—" if s.get("median") is None else f"{s['median']:.4g}",
        }
        for s in detail.get("sensors") or []
    ]
    return {"summary": detail.get("summary"), "hint": detail.get("hint"), "sensors": moved}
