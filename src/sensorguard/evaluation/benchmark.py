"""The benchmark protocol: fit a fresh detector per file, predict the rest, score it.

For each labelled series (see :mod:`sensorguard.evaluation.readers`):

1. a **fresh** detector is fitted on the sensor columns of the first ``train_rows`` rows
   (or on the series' own normal training set, for Tennessee Eastman); time, label and
   ignored columns never reach ``fit``;
2. the remaining rows are predicted; ``<output_dir>/<same relative path>`` gets one CSV
   row per predicted row, in order: the time column (as read), ``score``, ``is_anomaly``;
3. point metrics are summed over all files (TP/FP/FN/TN totals, then
   F1 = TP / (TP + (FP + FN) / 2), FAR = FP / (FP + TN) × 100 %,
   MAR = FN / (FN + TP) × 100 %), and the NAB-style changepoint score
   (:mod:`sensorguard.evaluation.changepoint`) is summed the same way.

``summary.json`` holds the totals, per-file figures, the skipped files, the detector name
and parameters.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sensorguard.detectors import make_detector
from sensorguard.errors import DataValidationError
from sensorguard.evaluation.changepoint import RawScore, changepoint_score
from sensorguard.evaluation.metrics import Confusion, confusion
from sensorguard.evaluation.readers import LabelledSeries, Skipped
from sensorguard.evaluation.regime import REGIME_CHANGE, ranges_from_training, regime_check
from sensorguard.jsonsafe import json_safe

# Chosen by the real-data quality suite as a whole (TEP, NAB, RoSA, hydraulic rig, SMD):
# best mean rank, chosen in every leave-one-data-set-out fold; see docs/quality.md
# "Choosing the default".
DEFAULT_DETECTOR = "pca-smoothed"


def point_summary(c: Confusion) -> dict[str, Any]:
    """Counts, F1 and the rates in percent, as the benchmark reports them."""
    return {
        "tp": c.tp,
        "fp": c.fp,
        "fn": c.fn,
        "tn": c.tn,
        "precision": c.precision,
        "recall": c.recall,
        "f1": c.f1,
        "far_percent": 100.0 * c.far,
        "mar_percent": 100.0 * c.mar,
    }


def evaluate_series(
    series: LabelledSeries,
    *,
    detector: str,
    params: dict[str, Any] | None = None,
    train_rows: int,
    window_seconds: float = 60.0,
) -> tuple[pd.DataFrame, Confusion, RawScore, dict[str, Any]]:
    """Fit, predict and score one series. Returns (output frame, confusion, cp score, info)."""
    det = make_detector(detector, **(params or {}))
    if series.train is not None:
        train_X, start = series.train, 0
    else:
        if len(series.X) <= train_rows:
            raise DataValidationError(
                f"{series.name}: {len(series.X)} rows, not more than --train-rows={train_rows}",
                "lower --train-rows or remove the file",
            )
        train_X, start = series.X.iloc[:train_rows], train_rows
    t0 = time.perf_counter()
    det.fit(train_X)
    fit_s = time.perf_counter() - t0
    test_X = series.X.iloc[start:]
    t0 = time.perf_counter()
    score = det.score_samples(test_X)
    flags = det.alarm_rule_.flags(score).astype(np.int8)
    predict_s = time.perf_counter() - t0
    y_true = series.y[start:]
    out = pd.DataFrame(
        {
            series.time_column: series.raw_times.iloc[start:].to_numpy(),
            "score": score.astype(np.float64),
            "is_anomaly": flags,
        }
    )
    conf = confusion(y_true, flags)
    times = series.times.iloc[start:].to_numpy()
    cps = series.changepoints[start:] if series.changepoints is not None else None
    cp = changepoint_score(
        times,
        flags,
        true_changepoints=cps,
        y_true=None if cps is not None else y_true,
        window_seconds=window_seconds,
    )
    info = {
        "rows": len(series.X),
        "train_rows": len(train_X),
        "predicted_rows": len(test_X),
        "threshold": float(det.threshold_),
        "fit_seconds": round(fit_s, 4),
        "predict_seconds": round(predict_s, 4),
        # data outside the training range from the first reading: the model does not
        # apply (reported, the flags are left as the detector gave them)
        "regime": regime_check(test_X, ranges_from_training(train_X)).to_dict(),
    }
    return out, conf, cp, info


def run_benchmark(
    series: Iterable[LabelledSeries | Skipped],
    output_dir: Path,
    *,
    detector: str = DEFAULT_DETECTOR,
    params: dict[str, Any] | None = None,
    train_rows: int = 400,
    sep: str = ",",
    window_seconds: float = 60.0,
    write_outputs: bool = True,
    on_file: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the protocol over ``series`` and write outputs plus ``summary.json``."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    total = Confusion(0, 0, 0, 0)
    cp_total: RawScore | None = None
    files: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    notes: list[str] = []
    for item in series:
        if isinstance(item, Skipped):
            skipped.append({"file": item.name, "reason": item.reason})
            if on_file:
                on_file(item.name)
            continue
        notes.extend(f"{item.name}: {n}" for n in item.notes)
        out, conf, cp, info = evaluate_series(
            item,
            detector=detector,
            params=params,
            train_rows=train_rows,
            window_seconds=window_seconds,
        )
        if write_outputs:
            target = output_dir / item.name
            target.parent.mkdir(parents=True, exist_ok=True)
            out.to_csv(target, sep=sep, index=False)
        total = total + conf
        cp_total = cp if cp_total is None else cp_total + cp
        files.append(
            {"file": item.name, **info, **point_summary(conf), "changepoint": cp.as_dict()}
        )
        if on_file:
            on_file(item.name)
    if not files:
        raise DataValidationError(
            "no file could be evaluated (every file was skipped)",
            "check --label-column; skipped: "
            + "; ".join(f"{s['file']} ({s['reason']})" for s in skipped),
        )
    probe = make_detector(detector, **(params or {}))
    summary = {
        "detector": detector,
        "params": {k: _jsonable(v) for k, v in probe.get_params(deep=False).items()},
        "train_rows": train_rows,
        "window_seconds": window_seconds,
        "files_evaluated": len(files),
        "metrics": point_summary(total),
        "changepoint": cp_total.as_dict() if cp_total is not None else None,
        "files": files,
        "skipped": skipped,
        "notes": notes,
        "regime_changes": [f["file"] for f in files if f["regime"]["verdict"] == REGIME_CHANGE],
    }
    (output_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _jsonable(v: Any) -> Any:
    """A parameter for the report: :func:`~sensorguard.jsonsafe.json_safe`, or its
    ``repr`` when even that is not JSON (e.g. an estimator object)."""
    safe = json_safe(v)
    try:
        json.dumps(safe)
    except (TypeError, ValueError):
        return repr(v)
    return safe
