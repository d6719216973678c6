"""Event metrics: did an alarm catch each failure, how late, and how many alarms were false.

An *event* is a maximal run of consecutive flagged readings (labels or alarms).

* A true event is **detected** when at least one alarm reading falls inside it (an alarm
  that started earlier and is still on counts, with delay 0).
* A **false alarm event** is an alarm event that overlaps no true event.
* ``false_alarms_per_day`` = false alarm events / days covered by the readings (last time
  minus first time, plus one median sampling interval).
* ``mean_detection_delay_s`` = mean over detected events of (first alarm reading inside
  the event − event start), in seconds; ``None`` when no event was detected.

Readings of several assets are evaluated asset by asset and the counts added up.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from sensorguard.data.contract import Readings, row_blocks
from sensorguard.detectors.base import BaseDetector, DetectionResult
from sensorguard.detectors.events import flag_spans
from sensorguard.errors import DataValidationError
from sensorguard.evaluation.metrics import point_metrics
from sensorguard.scoring.readings import detect_readings
from sensorguard.timeutil import to_seconds

_DAY_S = 86_400.0


def _seconds(times: Any, n: int) -> np.ndarray:
    """Times as float seconds (datetimes, timedeltas or plain numbers); None = row index."""
    if times is None:
        return np.arange(n, dtype=np.float64)
    secs = to_seconds(times)
    if secs.shape[0] != n:
        raise ValueError(f"{secs.shape[0]} times for {n} flags")
    return secs


def _counts(y_true: np.ndarray, y_pred: np.ndarray, secs: np.ndarray) -> dict[str, Any]:
    ts, te = flag_spans(y_true)
    ps, pe = flag_spans(y_pred)
    # alarm readings inside each true event, via a cumulative count
    cum = np.concatenate([[0], np.cumsum(y_pred, dtype=np.int64)])
    hits = cum[te + 1] - cum[ts]
    detected = hits > 0
    delays: list[float] = []
    if detected.any():
        alarm_pos = np.flatnonzero(y_pred)
        first = alarm_pos[np.searchsorted(alarm_pos, ts[detected])]
        delays = (secs[first] - secs[ts[detected]]).tolist()
    # alarm events overlapping no true event: no truth reading inside them
    cum_t = np.concatenate([[0], np.cumsum(y_true, dtype=np.int64)])
    false_events = int(np.count_nonzero((cum_t[pe + 1] - cum_t[ps]) == 0))
    return {
        "events_total": len(ts),
        "events_detected": int(detected.sum()),
        "false_alarm_events": false_events,
        "alarm_events": len(ps),
        "delays": delays,
    }


def _span_seconds(secs: np.ndarray) -> float:
    if secs.size < 2:
        return 0.0
    step = float(np.median(np.diff(secs)))
    return float(secs[-1] - secs[0]) + max(step, 0.0)


def _parts(n: int, groups: Any) -> list[np.ndarray]:
    """Row positions per group (asset), groups in sorted order, each in time order."""
    return row_blocks(groups, n, sort=True)


def event_metrics(y_true: Any, y_pred: Any, times: Any = None, groups: Any = None) -> dict:
    """Event-level metrics of 0/1 alarms against 0/1 truth (see module docstring).

    ``times``: datetimes or seconds per reading (``None``: one second per reading).
    ``groups``: optional asset id per reading; events never span two assets.
    """
    t = np.asarray(y_true).astype(bool).ravel()
    p = np.asarray(y_pred).astype(bool).ravel()
    if t.shape != p.shape:
        raise ValueError(f"truth has {t.size} values but predictions {p.size}")
    secs = _seconds(times, t.size)
    parts = _parts(t.size, groups)
    total = detected = false_events = alarm_events = 0
    delays: list[float] = []
    span = 0.0
    for ix in parts:
        c = _counts(t[ix], p[ix], secs[ix])
        total += c["events_total"]
        detected += c["events_detected"]
        false_events += c["false_alarm_events"]
        alarm_events += c["alarm_events"]
        delays += c["delays"]
        span += _span_seconds(secs[ix])
    days = span / _DAY_S
    return {
        "events_total": total,
        "events_detected": detected,
        "events_missed": total - detected,
        "event_recall": detected / total if total else 0.0,
        "alarm_events": alarm_events,
        "false_alarm_events": false_events,
        "false_alarms_per_day": false_events / days if days > 0 else float(false_events),
        "mean_detection_delay_s": float(np.mean(delays)) if delays else None,
        "days": days,
    }


_NO_MODE = ["", "none", "nan", "normal"]


def event_mode(modes: Any, span: Any, default: str | None = "unknown") -> str | None:
    """The failure mode of one event: the most common mode label among the rows ``span``
    (a slice or row positions) of ``modes``. Missing labels and "", "none", "nan",
    "normal" (any case, blanks stripped) are not modes; a tie goes to the first in sorted
    order; ``default`` when no mode is left. The one rule for evaluation, demo and
    failure types."""
    seg = pd.Series(np.asarray(modes, dtype=object)[span])
    txt = seg.astype(str).str.strip().str.lower()
    seg = seg[seg.notna() & ~txt.isin(_NO_MODE)]
    return str(seg.mode().iloc[0]) if len(seg) else default


def event_metrics_by_mode(
    y_true: Any, y_pred: Any, modes: Any, times: Any = None, groups: Any = None
) -> dict[str, dict[str, Any]]:
    """Event recall and delay per failure mode (the mode of each true event:
    :func:`event_mode`)."""
    t = np.asarray(y_true).astype(bool).ravel()
    p = np.asarray(y_pred).astype(bool).ravel()
    m = np.asarray(modes, dtype=object).ravel()
    secs = _seconds(times, t.size)
    out: dict[str, dict[str, Any]] = {}
    for ix in _parts(t.size, groups):
        tg, pg, mg, sg = t[ix], p[ix], m[ix], secs[ix]
        for s, e in zip(*flag_spans(tg), strict=True):
            mode = str(event_mode(mg, slice(s, e + 1)))
            rec = out.setdefault(mode, {"events_total": 0, "events_detected": 0, "_d": []})
            rec["events_total"] += 1
            hit = np.flatnonzero(pg[s : e + 1])
            if hit.size:
                rec["events_detected"] += 1
                rec["_d"].append(float(sg[s + hit[0]] - sg[s]))
    for rec in out.values():
        d = rec.pop("_d")
        rec["event_recall"] = rec["events_detected"] / rec["events_total"]
        rec["mean_detection_delay_s"] = float(np.mean(d)) if d else None
    return dict(sorted(out.items()))


def evaluate_detector(
    detector: BaseDetector, readings: Readings, *, result: DetectionResult | None = None
) -> dict[str, Any]:
    """Point metrics + event metrics of a fitted detector on labelled readings.

    Alarms are computed asset by asset (smoothing never crosses assets). When the
    readings carry a ``failure_mode`` column, per-mode event recall is added under
    ``by_mode``. Everything returned is JSON-serialisable. ``result`` is
    ``detect_readings(detector, readings)`` when the caller has it already.
    """
    if readings.y is None:
        raise DataValidationError(
            f"{readings.source}: evaluation needs labelled readings, but no label column was found",
            "add a label column (machine_status, label, anomaly or status) or name it "
            "with --label-column",
        )
    if result is None:
        result = detect_readings(detector, readings)
    y = np.asarray(readings.y).astype(np.int64)
    pred = result.is_anomaly.astype(np.int64)
    groups = None if readings.asset is None else readings.asset.to_numpy()
    out: dict[str, Any] = {
        "detector": getattr(detector, "name", type(detector).__name__),
        "rows": len(y),
        "threshold": float(detector.threshold_),
        **point_metrics(y, pred),
        **event_metrics(y, pred, readings.times, groups=groups),
    }
    frame = readings.frame
    if "failure_mode" in frame.columns:
        out["by_mode"] = event_metrics_by_mode(
            y, pred, frame["failure_mode"].to_numpy(), readings.times, groups=groups
        )
    return out
