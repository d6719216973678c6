"""The gate's second opinion: a candidate judged on the alarms operators labelled.

The held-out metrics come from labelled training data. Operators add ground truth of
their own in the live system: every alarm they label ``failure`` is a confirmed failure,
every ``false_alarm`` one the model should not raise again (``maintenance`` is neither:
a planned stop, ignored). Rules of this room:

* The window is the stretch of the readings store around the labelled ``failure``
  alarms of the last ``days`` days of data (ending at the newest labelled alarm), padded
  by ``pad_s`` on both sides so smoothing has context; each asset is scored with one
  batch pass (``scoring.readings``), as ``sensorguard score`` would.
* A labelled alarm counts as **caught** (confirmed failure) or **repeated** (false alarm)
  when one of the detector's alarm events overlaps it in time.
* :func:`label_checks` compares candidate and production on the same window: the
  candidate must catch at least the confirmed failures production catches and repeat at
  most the false alarms production repeats. Without production the figures are
  reported and the checks pass (nothing to regress against).
* No labelled alarms, or no readings for them: ``None`` (the gate reports nothing).
* **Regime change.** Each asset's window is judged against the candidate's training
  range with the rule of ``sensorguard score`` (:mod:`sensorguard.evaluation.regime`);
  a window that is a regime change for the candidate fails the check ``store window
  regime`` (reason: the verdict and the retrain hint), as the held-out data does in
  :mod:`.gate`. The candidate's events on it are counted as ``sensorguard score`` counts
  them (without the alarm the regime carries).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from sensorguard.detectors.base import BaseDetector
from sensorguard.errors import SensorGuardError


def labelled_window(
    *, days: float = 30.0, url: str | None = None
) -> tuple[list[dict[str, Any]], datetime | None, datetime | None]:
    """The labelled ``failure`` alarms of the last ``days`` days of data, and the window
    they span (start of the first, end of the last)."""
    from sensorguard.store.alarms import labelled_alarms

    alarms = [a for a in labelled_alarms(url=url) if a["label"]["label"] != "maintenance"]
    if not alarms:
        return [], None, None
    newest = max(a["end"] or a["last_time"] for a in alarms)
    since = newest - timedelta(days=days)
    alarms = [a for a in alarms if (a["end"] or a["last_time"]) >= since]
    return alarms, min(a["start"] for a in alarms), newest


def _events(
    detector: BaseDetector, frame: pd.DataFrame, profile: dict[str, Any] | None = None
) -> tuple[list[tuple[pd.Timestamp, pd.Timestamp]], Any]:
    """The alarm events of one asset's window and its regime verdict (``None`` without
    a ``profile``), as ``sensorguard score`` reports them."""
    from sensorguard.data import Readings
    from sensorguard.evaluation.regime import apply_regime
    from sensorguard.scoring.readings import alarm_events, detect_readings

    label = "machine_status" if "machine_status" in frame.columns else None
    readings = Readings.from_frame(
        frame,
        time_column="timestamp",
        label_column=label,
        asset_column="asset_id",
        source="store",
    )
    result, regimes = apply_regime(detect_readings(detector, readings), readings, profile)
    events = [
        (pd.Timestamp(e["start"]), pd.Timestamp(e["end"])) for e in alarm_events(result, readings)
    ]
    return events, regimes


def label_evaluation(
    detector: BaseDetector,
    alarms: list[dict[str, Any]],
    *,
    pad_s: float = 6 * 3600.0,
    url: str | None = None,
    profile: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """How ``detector`` does on operator-labelled ``alarms`` (see the module docstring);
    with its training ``profile``, also the regime verdict of each asset's window."""
    from sensorguard.store.query import read_window_frame

    by_asset: dict[str, list[dict[str, Any]]] = {}
    for a in alarms:
        by_asset.setdefault(a["asset_id"], []).append(a)
    pad = timedelta(seconds=pad_s)
    caught = repeated = confirmed = false = 0
    delays: list[float] = []
    rows = 0
    regime: dict[str, Any] = {}
    for asset, items in sorted(by_asset.items()):
        lo = min(a["start"] for a in items) - pad
        hi = max(a["end"] or a["last_time"] for a in items) + pad
        try:
            frame = read_window_frame(asset, lo, hi, url)
        except SensorGuardError:
            continue  # the readings were removed: nothing to judge on
        rows += len(frame)
        events, regimes = _events(detector, frame, profile)
        if regimes is not None and regimes.regime_change:
            regime[asset] = {"summary": regimes.summary(), **regimes.to_dict()}
        for a in items:
            s, e = pd.Timestamp(a["start"]), pd.Timestamp(a["end"] or a["last_time"])
            hits = [ev for ev in events if ev[0] <= e and ev[1] >= s]
            if a["label"]["label"] == "failure":
                confirmed += 1
                if hits:
                    caught += 1
                    delays.append((hits[0][0] - s).total_seconds())
            else:
                false += 1
                repeated += bool(hits)
    return {
        "confirmed_failures": confirmed,
        "confirmed_caught": caught,
        "confirmed_recall": caught / confirmed if confirmed else None,
        "false_alarms": false,
        "false_alarms_repeated": repeated,
        "median_delay_s": float(np.median(delays)) if delays else None,
        "readings": rows,
        "regime_change": regime,  # asset → verdict, for the windows that are one
    }


def label_checks(
    candidate: dict[str, Any], production: dict[str, Any] | None
) -> list[tuple[str, bool, str]]:
    """``(name, passed, detail)`` checks of the candidate against production."""
    c_caught, c_conf = candidate["confirmed_caught"], candidate["confirmed_failures"]
    c_rep, c_false = candidate["false_alarms_repeated"], candidate["false_alarms"]
    if production is None:
        return [
            (
                "operator labels",
                True,
                f"catches {c_caught}/{c_conf} operator-confirmed failures, repeats "
                f"{c_rep}/{c_false} labelled false alarms (no production to compare)",
            )
        ]
    p_caught, p_rep = production["confirmed_caught"], production["false_alarms_repeated"]
    return [
        (
            "operator-confirmed failures",
            c_caught >= p_caught,
            f"candidate catches {c_caught}/{c_conf} operator-confirmed failures, "
            f"production {p_caught}/{c_conf}",
        ),
        (
            "operator false alarms",
            c_rep <= p_rep,
            f"candidate repeats {c_rep}/{c_false} labelled false alarms, "
            f"production {p_rep}/{c_false}",
        ),
    ]


def evaluate_on_labels(
    candidate: BaseDetector,
    production: BaseDetector | None = None,
    *,
    days: float = 30.0,
    pad_s: float = 6 * 3600.0,
    url: str | None = None,
    candidate_profile: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Candidate (and production) on the operator-labelled alarms of the store:
    ``{"window": {...}, "candidate": {...}, "production": {...} | None, "checks": [...]}``,
    or ``None`` when no alarm is labelled. With the candidate's training profile, the
    checks include the regime verdict of the window."""
    alarms, start, end = labelled_window(days=days, url=url)
    if not alarms:
        return None
    cand = label_evaluation(candidate, alarms, pad_s=pad_s, url=url, profile=candidate_profile)
    if cand["readings"] == 0:
        return None
    prod = None
    if production is not None:
        try:
            prod = label_evaluation(production, alarms, pad_s=pad_s, url=url)
        except SensorGuardError:
            prod = None  # production cannot score these readings: nothing to compare
    return {
        "window": {
            "start": None if start is None else start.isoformat(),
            "end": None if end is None else end.isoformat(),
            "alarms": len(alarms),
        },
        "candidate": cand,
        "production": prod,
        "checks": label_checks(cand, prod) + regime_checks(cand, candidate_profile),
    }


def regime_checks(
    candidate: dict[str, Any], profile: dict[str, Any] | None
) -> list[tuple[str, bool, str]]:
    """The store window's regime check: fails when some asset's window is a regime
    change for the candidate (none without a training profile to judge by)."""
    if profile is None:
        return []
    from sensorguard.evaluation.regime import RETRAIN_HINT

    moved = candidate.get("regime_change") or {}
    if not moved:
        return [("store window regime", True, "store window within the candidate's training range")]
    said = "; ".join(f"{a}: {v['summary']}" for a, v in sorted(moved.items()))
    return [
        (
            "store window regime",
            False,
            f"the store window is a regime change for the candidate ({said}): {RETRAIN_HINT}",
        )
    ]


def _store_exists(settings: Any) -> bool:
    """An embedded (SQLite) store that was never created holds no labels: do not create
    it just to find that out."""
    from pathlib import Path

    from sqlalchemy.engine import make_url

    url = make_url(
        settings.resolved_store_url
        if hasattr(settings, "resolved_store_url")
        else settings.store_url
    )
    if url.get_backend_name() != "sqlite" or not url.database:
        return True
    return Path(url.database).expanduser().exists()


def add_label_checks(
    decision: Any,
    candidate: Any,
    production: BaseDetector | None,
    settings: Any,
    *,
    candidate_profile: dict[str, Any] | None = None,
) -> None:
    """Attach the label-based evaluation to a gate decision (``decision.labels``) and
    its checks to ``decision.checks`` (a failed check rejects). ``candidate``: the
    detector, or a function loading it (called only when labelled alarms exist).
    Off when ``settings.gate_label_days`` is 0; a store that cannot be read is noted,
    never fatal (the held-out metrics still decide). ``decision``: a
    :class:`~sensorguard.pipelines.gate.GateDecision` (duck-typed: the gate imports
    this module, not the other way round)."""
    days = float(getattr(settings, "gate_label_days", 0.0) or 0.0)
    if days <= 0 or not _store_exists(settings):
        return
    try:
        alarms, _s, _e = labelled_window(days=days, url=settings.store_url)
        if not alarms:
            return
        detector = candidate() if callable(candidate) else candidate
        report = evaluate_on_labels(
            detector,
            production,
            days=days,
            url=settings.store_url,
            candidate_profile=candidate_profile,
        )
    except SensorGuardError as exc:
        decision.add_check("operator labels", True, f"not evaluated: {exc}")
        return
    if report is None:
        return
    decision.labels = report
    for name, ok, detail in report["checks"]:
        decision.add_check(name, ok, detail)
