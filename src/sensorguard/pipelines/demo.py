"""The end-to-end demo: the whole model lifecycle on a simulated pump, in one call.

simulate a history → train → log → register → gate → promote → simulate new readings
with failures → load the production model **by alias** → score → report and plot.

Each run trains on a fresh simulated history (the seed is offset by the number of
versions already registered), so running the demo again produces a new candidate and
shows the gate comparing it with the current production version.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sensorguard.config import Settings, get_settings
from sensorguard.data import Readings
from sensorguard.data.simulator import FAILURE_MODES, simulate_pump
from sensorguard.detectors.events import flag_spans
from sensorguard.errors import DataValidationError
from sensorguard.evaluation.events import event_metrics, event_metrics_by_mode, event_mode
from sensorguard.pipelines.lifecycle import gate_and_promote
from sensorguard.pipelines.plots import score_plot
from sensorguard.pipelines.training import StepCallback, train_and_register
from sensorguard.registry import configure_mlflow, load_model
from sensorguard.registry.versions import count_versions, version_at

DEMO_STEPS = (
    "simulate the machine's history",
    "train, log and register a candidate",
    "quality gate against production",
    "simulate new readings with failures",
    "load the production model by alias",
    "score the new readings",
    "report and plot",
)


@dataclass
class ModeResult:
    mode: str
    events: int
    detected: int
    mean_delay_min: float | None
    blamed: list[str]
    expected_sensor: str = ""


@dataclass
class DemoReport:
    candidate_version: int
    gate_passed: bool
    gate_summary: str
    gate: dict[str, Any]
    production_version: int | None
    scored_version: int
    previous_version: int | None
    training_metrics: dict[str, float]
    new_rows: int
    events_total: int
    events_detected: int
    false_alarm_events: int
    false_alarms_per_day: float
    mean_delay_min: float | None
    modes: list[ModeResult]
    plot: str
    report_file: str
    tracking_uri: str
    seconds: float
    step_seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _blame(
    y: np.ndarray, alarm: np.ndarray, top: pd.Series, modes: np.ndarray
) -> dict[str, list[Counter[str]]]:
    """Per failure mode, per true event: how often each sensor led the blame during alarms."""
    out: dict[str, list[Counter[str]]] = {}
    starts, ends = flag_spans(y.astype(bool))
    for s, e in zip(starts, ends, strict=True):
        mode = str(event_mode(modes, slice(s, e + 1)))
        inside = alarm[s : e + 1]
        firsts = [
            str(t).split(";")[0] for t, a in zip(top.iloc[s : e + 1], inside, strict=True) if a
        ]
        out.setdefault(mode, []).append(Counter(firsts))
    return out


def run_demo(
    *,
    days: float = 14.0,
    new_days: float = 3.0,
    seed: int = 7,
    output_dir: Path | None = None,
    settings: Settings | None = None,
    quick: bool = False,
    on_step: StepCallback | None = None,
) -> DemoReport:
    """Run the whole lifecycle once; returns the report (also written as JSON + PNG)."""
    for option, value in (("--days", days), ("--new-days", new_days)):
        if not value > 0:  # name the option: simulate_pump would only say "days"
            raise DataValidationError(
                f"{option} must be positive, got {value:g}", f"e.g. {option} 3"
            )
    started = time.perf_counter()
    settings = configure_mlflow(settings or get_settings())
    out_dir = Path(output_dir) if output_dir else settings.home / "demo"
    out_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    current: dict[str, Any] = {"name": "", "since": time.perf_counter()}

    def step(name: str) -> None:
        now = time.perf_counter()
        if current["name"]:
            timings[current["name"]] = round(now - current["since"], 2)
        current.update(name=name, since=now)
        if on_step and name:
            on_step(name)

    if quick:  # small but still every failure mode in the new readings
        days, new_days = min(days, 6.0), min(new_days, 2.0)
    # a smaller state search is operating-states' parameter; other detectors are quick as is
    small = quick and settings.detector == "operating-states"
    params: dict[str, Any] = {"max_states": 5} if small else {}

    step(DEMO_STEPS[0])
    run_no = count_versions(settings.model_name, settings)
    history = simulate_pump(days=days, seed=seed + run_no, start="2026-01-01")
    readings = Readings.from_frame(history, source=f"simulated pump history (seed {seed + run_no})")

    step(DEMO_STEPS[1])
    result = train_and_register(
        readings, params=params, settings=settings, trigger="demo", holdout=0.35
    )
    assert result.version is not None and result.eval_readings is not None

    step(DEMO_STEPS[2])
    outcome = gate_and_promote(
        result.version,
        result.eval_readings,
        settings=settings,
        trigger="demo",
        candidate_metrics=result.evaluation,
    )
    decision = outcome.decision
    assert decision is not None

    step(DEMO_STEPS[3])
    start = pd.Timestamp(history["timestamp"].iloc[-1]) + pd.Timedelta(minutes=1)
    fresh = simulate_pump(
        days=new_days,
        seed=seed + 10_000 + run_no,
        start=start,
        n_failures=len(FAILURE_MODES),
    )
    new = Readings.from_frame(fresh, source="simulated new readings")

    step(DEMO_STEPS[4])
    production = version_at(settings.model_name, settings.production_alias, settings)
    if production is not None:
        loaded = load_model(f"models:/{settings.model_name}@{settings.production_alias}", settings)
    else:  # the very first candidate was rejected: nothing is in production to load
        loaded = load_model(f"models:/{settings.model_name}/{result.version}", settings)
    previous = version_at(settings.model_name, settings.previous_alias, settings)

    step(DEMO_STEPS[5])
    scored = loaded.predict(new.X)
    y = np.asarray(new.y)
    alarm = scored["is_anomaly"].to_numpy(dtype=bool)
    modes = fresh["failure_mode"].astype(str).to_numpy()

    step(DEMO_STEPS[6])
    ev = event_metrics(y, alarm, new.times)
    by_mode = event_metrics_by_mode(y, alarm, modes, new.times)
    blame = _blame(y, alarm, scored["top_sensors"], modes)
    injected = {f["mode"]: f.get("sensor", "") for f in history.attrs.get("failures", [])}
    injected.update({f["mode"]: f.get("sensor", "") for f in fresh.attrs.get("failures", [])})
    mode_rows = []
    for mode, rec in by_mode.items():
        counts: Counter[str] = Counter()
        for c in blame.get(mode, []):
            counts.update(c)
        delay = rec.get("mean_detection_delay_s")
        mode_rows.append(
            ModeResult(
                mode=mode,
                events=int(rec["events_total"]),
                detected=int(rec["events_detected"]),
                mean_delay_min=None if delay is None else round(float(delay) / 60.0, 1),
                blamed=[s for s, _ in counts.most_common(2)],
                expected_sensor=str(injected.get(mode, "") or ""),
            )
        )
    notes = [(f["start"], f["mode"].replace("_", " ")) for f in fresh.attrs.get("failures", [])]
    plot = score_plot(
        out_dir / "demo_scores.png",
        new.times,
        scored["score"].to_numpy(),
        loaded.threshold,
        alarm,
        y,
        title=(
            (
                f"models:/{settings.model_name}@{settings.production_alias} (v{loaded.version})"
                if production is not None
                else f"candidate v{loaded.version} (not in production)"
            )
            + " on new readings — grey: true failures, red: alarms"
        ),
        notes=notes,
    )
    delay_all = ev.get("mean_detection_delay_s")
    report = DemoReport(
        candidate_version=result.version,
        gate_passed=decision.passed,
        gate_summary=decision.summary(),
        gate=decision.to_dict(),
        production_version=production,
        scored_version=int(loaded.version),
        previous_version=previous,
        training_metrics={k: round(v, 4) for k, v in result.metrics.items()},
        new_rows=len(new),
        events_total=int(ev["events_total"]),
        events_detected=int(ev["events_detected"]),
        false_alarm_events=int(ev["false_alarm_events"]),
        false_alarms_per_day=round(float(ev["false_alarms_per_day"]), 2),
        mean_delay_min=None if delay_all is None else round(float(delay_all) / 60.0, 1),
        modes=mode_rows,
        plot=str(plot),
        report_file=str(out_dir / "demo_report.json"),
        tracking_uri=settings.resolved_tracking_uri,
        seconds=0.0,
    )
    step("")
    report.step_seconds = timings
    report.seconds = round(time.perf_counter() - started, 2)
    Path(report.report_file).write_text(json.dumps(report.to_dict(), indent=2, default=str))
    return report
