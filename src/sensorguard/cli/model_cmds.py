"""``sensorguard score`` and ``sensorguard evaluate``: wiring over ``sensorguard.pipelines``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from sensorguard.cli._common import (
    AssetColumnOpt,
    IgnoreColumnsOpt,
    LabelColumnOpt,
    SepOpt,
    TimeColumnOpt,
    console,
    err_console,
    guarded,
    progress,
    read_options,
)

_MODEL_HELP = (
    "Model: a registered model name (its production version), a folder saved by a detector, "
    "or a registry URI models:/NAME@ALIAS or models:/NAME/VERSION "
    "(default: models:/<model_name>@<production_alias> from settings)."
)


def _default_model(model: str | None) -> str:
    from sensorguard.config import get_settings

    s = get_settings()
    if not model:
        return f"models:/{s.model_name}@{s.production_alias}"
    if model.startswith("models:/") or "/" in model or Path(model).exists():
        return model
    # a bare name is a registered model (machine type): its production version
    return f"models:/{model}@{s.production_alias}"


def _load(
    data: Path,
    model: str | None,
    sep: str | None,
    time_column: str | None,
    label_column: str | None,
    asset_column: str | None,
    ignore_columns: str | None,
    bar: Any,
) -> tuple[Any, Any]:
    from sensorguard.data import load_readings

    task = bar.add_task(f"reading {data.name}", total=None)
    readings = load_readings(
        data,
        **read_options(
            sep=sep,
            time_column=time_column,
            label_column=label_column,
            asset_column=asset_column,
            ignore_columns=ignore_columns,
        ),
    )
    bar.update(task, total=1, completed=1)
    ref = _default_model(model)
    task = bar.add_task(f"loading model {ref}", total=None)
    from sensorguard.registry import load_model

    loaded = load_model(ref)
    bar.update(task, total=1, completed=1)
    return readings, loaded


def _fmt_time(t: Any) -> str:
    return str(t)[:19]


def score(
    data: Path = typer.Argument(..., help="Readings file to score: CSV or Parquet."),
    output: Path = typer.Option(
        ..., "--output", "-o", help="Where to write the per-reading output: .csv or .parquet."
    ),
    model: str | None = typer.Option(None, "--model", "-m", help=_MODEL_HELP),
    top_k: int = typer.Option(
        3, "--top-k", min=1, help="How many top contributing sensors to list per reading."
    ),
    show: int = typer.Option(20, "--show", min=0, help="Alarm events to print (0: none)."),
    plot: Path | None = typer.Option(
        None, "--plot", help="Also draw score, threshold and alarms over time to a .png/.svg."
    ),
    sep: SepOpt = None,
    time_column: TimeColumnOpt = None,
    label_column: LabelColumnOpt = None,
    asset_column: AssetColumnOpt = None,
    ignore_columns: IgnoreColumnsOpt = None,
) -> None:
    """Score a readings file with a fitted model and write one output row per reading.

    Output columns: time [, asset], score (higher = more abnormal), is_anomaly (inside an
    alarm event, after smoothing), state (nearest operating state), top_sensors (the
    sensors to blame, ';'-separated) and the label column when the input has one. Prints
    a summary with every alarm event (start, end, top sensors).

    Examples:

      sensorguard score data/eval.csv -o scored.parquet --model models/pump --plot score.png

      sensorguard score plant.csv -o out.csv --sep ';' --time-column ts
    """
    from rich.table import Table

    from sensorguard.data import write_frame
    from sensorguard.data.loading import file_kind
    from sensorguard.evaluation.regime import RETRAIN_HINT, apply_regime
    from sensorguard.scoring.readings import alarm_events, detect_readings, result_frame

    file_kind(output)  # refuse an unknown suffix before doing any work
    _check_plot(plot)
    with progress() as bar:
        readings, loaded = _load(
            data, model, sep, time_column, label_column, asset_column, ignore_columns, bar
        )
        detector = loaded.detector
        task = bar.add_task(f"scoring {len(readings):,} readings", total=None)
        # the regime verdict of the watch service: no failure alarm over a regime change
        result, regimes = apply_regime(
            detect_readings(detector, readings), readings, loaded.training_profile
        )
        frame = result_frame(result, readings, top_k=top_k)
        bar.update(task, total=1, completed=1)
        task = bar.add_task(f"writing {output.name}", total=None)
        write_frame(frame, output)
        bar.update(task, total=1, completed=1)
    extra = detector.schema_.unused_columns(readings.X)
    if extra:
        err_console.print(
            f"[yellow]note:[/] ignored column(s) the model does not use: {', '.join(extra)}",
            highlight=False,
            soft_wrap=True,
        )
    events = alarm_events(result, readings, top_k=top_k)
    n_alarm = int(result.is_anomaly.sum())
    console.print(
        f"wrote [bold]{output}[/]: {len(frame):,} readings, {n_alarm:,} in alarm "
        f"({n_alarm / max(1, len(frame)):.1%}), {len(events)} alarm event(s); "
        f"threshold {result.threshold:.3g}",
        highlight=False,
        soft_wrap=True,
    )
    if regimes is not None and regimes.regime_change:
        for asset, v in regimes.changed().items():
            where = "" if asset is None else f"{asset}: "
            err_console.print(f"[yellow]{where}{v.summary()}[/]", highlight=False, soft_wrap=True)
        err_console.print(
            f"{regimes.removed:,} alarm reading(s) over the regime change not reported as "
            f"failure events; {RETRAIN_HINT}",
            highlight=False,
            soft_wrap=True,
        )
    if events and show:
        table = Table(title="Alarm events", title_justify="left")
        cols = ["start", "end", "readings", "peak score", "top sensors"]
        if "asset" in events[0]:
            cols.insert(0, "asset")
        for c in cols:
            table.add_column(c, justify="right" if c in ("readings", "peak score") else "left")
        for ev in events[:show]:
            row = [
                _fmt_time(ev["start"]),
                _fmt_time(ev["end"]),
                f"{ev['readings']:,}",
                f"{ev['peak_score']:.3g}",
                ", ".join(ev["top_sensors"]),
            ]
            if "asset" in ev:
                row.insert(0, ev["asset"])
            table.add_row(*row)
        console.print(table)
        if len(events) > show:
            console.print(f"… and {len(events) - show} more (see --show)", highlight=False)
    if plot is not None:
        _plot(plot, result, readings, f"{data.name}: score and alarms")


def _check_plot(path: Path | None) -> None:
    """Refuse a bad --plot file name before any work (not after the output is written)."""
    if path is not None:
        from sensorguard.data.plotting import check_plot_path

        check_plot_path(path)


def _plot(path: Path, result: Any, readings: Any, title: str) -> None:
    from sensorguard.pipelines.plots import score_plot

    if readings.asset is not None and readings.asset.nunique() > 1:
        err_console.print("[yellow]note:[/] the plot shows all assets one after the other")
    score_plot(
        path,
        readings.times,
        result.score,
        result.threshold,
        result.is_anomaly,
        readings.y,
        title=title,
    )
    console.print(f"plot: {path}", highlight=False, soft_wrap=True)


def _pct(v: float) -> str:
    return f"{100 * v:.1f} %"


def evaluate(
    data: Path = typer.Argument(..., help="Labelled readings file: CSV or Parquet."),
    model: str | None = typer.Option(None, "--model", "-m", help=_MODEL_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
    plot: Path | None = typer.Option(
        None, "--plot", help="Also draw score, alarms and labelled failures to a .png/.svg."
    ),
    sep: SepOpt = None,
    time_column: TimeColumnOpt = None,
    label_column: LabelColumnOpt = None,
    asset_column: AssetColumnOpt = None,
    ignore_columns: IgnoreColumnsOpt = None,
) -> None:
    """Evaluate a fitted model on labelled readings: point and event metrics.

    Point metrics (per reading): precision, recall, F1 = TP/(TP+(FP+FN)/2), false-alarm
    rate FP/(FP+TN), missed-alarm rate FN/(FN+TP). Event metrics (per failure episode):
    events detected / missed, false alarm events per day, mean detection delay. With a
    failure_mode column, recall per mode is added.

    Examples:

      sensorguard evaluate data/eval.csv --model models/pump

      sensorguard evaluate data/eval.csv --json > metrics.json
    """
    from rich.table import Table

    from sensorguard.evaluation.events import evaluate_detector

    _check_plot(plot)
    with progress() as bar:
        readings, loaded = _load(
            data, model, sep, time_column, label_column, asset_column, ignore_columns, bar
        )
        detector = loaded.detector
        task = bar.add_task(f"scoring {len(readings):,} readings", total=None)
        metrics = evaluate_detector(detector, readings)
        bar.update(task, total=1, completed=1)
    if plot is not None:
        from sensorguard.scoring.readings import detect_readings

        _plot(plot, detect_readings(detector, readings), readings, f"{data.name}: evaluation")
    if as_json:
        typer.echo(json.dumps(metrics, indent=2, default=str))
        return
    m = metrics
    table = Table(title=f"{data.name}: {m['rows']:,} readings", title_justify="left")
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    table.add_column("meaning")
    delay = m["mean_detection_delay_s"]
    rows = [
        ("precision", f"{m['precision']:.3f}", "alarm readings that are abnormal"),
        ("recall", f"{m['recall']:.3f}", "abnormal readings in alarm"),
        ("F1", f"{m['f1']:.3f}", "TP / (TP + (FP + FN) / 2)"),
        ("false-alarm rate", _pct(m["far"]), "FP / (FP + TN)"),
        ("missed-alarm rate", _pct(m["mar"]), "FN / (FN + TP)"),
        ("TP / FP / FN / TN", f"{m['tp']} / {m['fp']} / {m['fn']} / {m['tn']}", "readings"),
        (
            "events detected",
            f"{m['events_detected']} / {m['events_total']}",
            f"event recall {m['event_recall']:.3f}; missed {m['events_missed']}",
        ),
        (
            "false alarm events",
            str(m["false_alarm_events"]),
            f"{m['false_alarms_per_day']:.2f} per day over {m['days']:.1f} days",
        ),
        (
            "mean detection delay",
            "-" if delay is None else f"{delay / 60:.1f} min",
            "first alarm inside a failure minus its start",
        ),
    ]
    for r in rows:
        table.add_row(*r)
    console.print(table)
    by_mode = m.get("by_mode")
    if by_mode:
        t2 = Table(title="By failure mode", title_justify="left")
        for c in ("mode", "detected", "recall", "mean delay"):
            t2.add_column(c, justify="left" if c == "mode" else "right")
        for mode, rec in by_mode.items():
            d = rec["mean_detection_delay_s"]
            t2.add_row(
                mode,
                f"{rec['events_detected']} / {rec['events_total']}",
                f"{rec['event_recall']:.2f}",
                "-" if d is None else f"{d / 60:.1f} min",
            )
        console.print(t2)


def register(app: typer.Typer) -> None:
    app.command("score")(guarded(score))
    app.command("evaluate")(guarded(evaluate))
