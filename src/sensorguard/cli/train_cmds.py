"""``train`` and ``demo``: fit, log, register, gate; and the whole lifecycle on a simulated pump.

Wiring only: every command calls :mod:`sensorguard.pipelines.training`,
:mod:`sensorguard.pipelines.lifecycle` or :mod:`sensorguard.pipelines.demo`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from sensorguard.cli._common import (
    EXIT_REJECTED,
    AssetColumnOpt,
    DuplicatesOpt,
    IgnoreColumnsOpt,
    LabelColumnOpt,
    SepOpt,
    TimeColumnOpt,
    console,
    err_console,
    guarded,
    parse_params,
    progress,
    read_options,
)
from sensorguard.cli.models_cmds import (
    _FAIL_ON_REJECT,
    _MODEL,
    _fmt,
    _print_decision,
    _report_outcome,
    _settings,
)


def train(
    data: Path = typer.Argument(..., help="Readings to train on: CSV (any separator) or Parquet."),
    detector: str | None = typer.Option(
        None, "--detector", "-d", help="Detector name (default: SENSORGUARD_DETECTOR)."
    ),
    param: list[str] | None = typer.Option(
        None, "--param", "-p", help="Detector parameter NAME=VALUE (repeatable)."
    ),
    promote: bool = typer.Option(
        True,
        "--promote/--no-promote",
        help="After registering, run the quality gate and promote on a pass.",
    ),
    holdout: float = typer.Option(
        0.3, "--holdout", help="Fraction of the (time-ordered) tail held out for evaluation."
    ),
    sep: SepOpt = None,
    time_column: TimeColumnOpt = None,
    label_column: LabelColumnOpt = None,
    asset_column: AssetColumnOpt = None,
    ignore_columns: IgnoreColumnsOpt = None,
    duplicates: DuplicatesOpt = "error",
    fail_on_reject: bool = _FAIL_ON_REJECT,
    model: str | None = _MODEL,
) -> None:
    """Train a detector, log the run to MLflow and register a new model version.

    The first (1 - holdout) of the readings train the detector (rows labelled normal
    only); the tail measures precision/recall/F1 and event metrics. Then, unless
    --no-promote, the quality gate compares the new version with production on the same
    held-out data and promotes it when it passes.

    Example: sensorguard train data/pump.csv --param max_states=6 --model pump-centrifugal
    """
    from sensorguard.data import load_readings
    from sensorguard.pipelines.lifecycle import gate_and_promote
    from sensorguard.pipelines.training import train_and_register

    settings = _settings(model)
    params = parse_params(param, "max_states=6")
    readings = load_readings(
        data,
        **read_options(
            sep=sep,
            time_column=time_column,
            label_column=label_column,
            asset_column=asset_column,
            ignore_columns=ignore_columns,
            duplicates=duplicates,
        ),
    )
    for note in readings.notes:  # e.g. a column left out of the sensors: never silently
        err_console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    from sensorguard.pipelines.fleet import fleet_detector

    # several assets, no --detector: per-asset calibration (measured, docs/quality.md)
    detector, fit_params = fleet_detector(readings, detector, params, settings)
    with progress() as bar:
        task = bar.add_task("train", total=None)
        result = train_and_register(
            readings,
            detector_name=detector,
            params=fit_params,
            settings=settings,
            trigger="cli",
            holdout=holdout,
            on_step=lambda s: bar.update(task, description=s),
        )
        bar.update(task, description="trained", total=1, completed=1)
    console.print(
        f"run [bold]{result.run_id}[/] → [bold]{result.name}[/] version [bold]{result.version}[/] "
        f"({result.train_rows} training rows, {result.eval_rows} held out, {result.seconds:.1f} s)",
        highlight=False,
    )
    m = result.metrics
    console.print(
        "  "
        + ", ".join(
            f"{k}={_fmt(m[k])}"
            for k in ("silhouette", "n_states", "threshold", "eval_f1", "eval_event_recall")
            if k in m
        ),
        highlight=False,
    )
    if not promote:
        console.print(
            f"not promoted (--no-promote); later: sensorguard models promote {result.version}"
        )
        return
    if result.eval_readings is None:
        console.print(
            "[yellow]no labels: the quality gate cannot evaluate this version[/]; promote it "
            f"with labelled data: sensorguard models promote {result.version} --data FILE",
            highlight=False,
        )
        if fail_on_reject:
            raise typer.Exit(EXIT_REJECTED)
        return
    assert result.version is not None
    with progress() as bar:
        task = bar.add_task("quality gate: evaluating candidate and production", total=None)
        outcome = gate_and_promote(
            result.version,
            result.eval_readings,
            settings=settings,
            trigger="cli",
            candidate_metrics=result.evaluation,
        )
        bar.update(task, total=1, completed=1)
    _print_decision(outcome.decision)
    _report_outcome(outcome, fail_on_reject)


def demo(
    days: float = typer.Option(14.0, "--days", help="Days of simulated history to train on."),
    new_days: float = typer.Option(3.0, "--new-days", help="Days of new readings to score."),
    seed: int = typer.Option(7, "--seed", help="Random seed of the simulation."),
    output_dir: Path | None = typer.Option(
        None, "--output-dir", "-o", help="Where the plot and report go (default: <home>/demo)."
    ),
    quick: bool = typer.Option(False, "--quick", help="A smaller run (for tests and CI)."),
    live: bool = typer.Option(
        False, "--live", help="Then stream new readings through the live loop and show its alarms."
    ),
) -> None:
    """The whole lifecycle on a simulated pump, start to finish.

    simulate a history → train → log → register → quality gate → promote → simulate new
    readings with failures → load the production model by alias → score → report + plot.
    Run it again: a new candidate is trained and the gate compares it with production.
    """
    from rich.table import Table

    from sensorguard.pipelines.demo import DEMO_STEPS, run_demo

    settings = _settings()
    with progress() as bar:
        tasks: dict[str, Any] = {}

        def on_step(name: str) -> None:
            for t in tasks.values():
                bar.update(t, completed=1)
            tasks[name] = bar.add_task(name, total=1)

        report = run_demo(
            days=days,
            new_days=new_days,
            seed=seed,
            output_dir=output_dir,
            settings=settings,
            quick=quick,
            on_step=on_step,
        )
        for t in tasks.values():
            bar.update(t, completed=1)
    assert len(DEMO_STEPS) == 7
    m = report.training_metrics
    console.print(
        f"\n[bold]trained[/] v{report.candidate_version}: silhouette {_fmt(m.get('silhouette'))}, "
        f"{int(m.get('n_states', 0))} operating states, held-out F1 {_fmt(m.get('eval_f1'))}, "
        f"event recall {_fmt(m.get('eval_event_recall'))}",
        highlight=False,
    )
    _print_decision(report.gate)
    colour = "green" if report.gate_passed else "yellow"
    console.print(f"[bold {colour}]{report.gate_summary}[/]", highlight=False)
    if report.production_version is not None:
        console.print(
            f"scored {report.new_rows} new readings with models:/{settings.model_name}"
            f"@{settings.production_alias} (v{report.production_version}, loaded by alias)",
            highlight=False,
        )
    else:
        console.print(
            f"[yellow]no version is in production yet[/]: scored {report.new_rows} new "
            f"readings with the rejected candidate v{report.scored_version} for illustration",
            highlight=False,
        )
    table = Table(title="failures found vs. truth (new readings)")
    for col, just in (
        ("failure mode", "left"),
        ("found/true", "right"),
        ("delay (min)", "right"),
        ("sensors blamed", "left"),
        ("injected on", "left"),
    ):
        table.add_column(col, justify=just, overflow="fold")  # type: ignore[arg-type]
    for r in report.modes:
        table.add_row(
            r.mode,
            f"{r.detected}/{r.events}",
            _fmt(r.mean_delay_min, 1),
            ", ".join(r.blamed) or "–",
            r.expected_sensor or "–",
        )
    table.add_row(
        "[bold]all[/]",
        f"[bold]{report.events_detected}/{report.events_total}[/]",
        _fmt(report.mean_delay_min, 1),
        f"false alarms: {report.false_alarm_events} ({report.false_alarms_per_day:.2f}/day)",
        "",
    )
    console.print(table)
    console.print(f"plot:   {report.plot}", highlight=False)
    console.print(f"report: {report.report_file}", highlight=False)
    console.print(f"done in {report.seconds:.1f} s", highlight=False)
    if settings.is_embedded:
        console.print(
            "see the runs, versions and aliases in the MLflow UI: [bold]sensorguard ui[/] "
            "(then open http://127.0.0.1:5000)",
            highlight=False,
        )
    else:
        console.print(f"see the runs in the MLflow UI at {report.tracking_uri}", highlight=False)
    if live:
        from sensorguard.cli.live_cmds import live_demo

        live_demo(settings)


def register(app: typer.Typer) -> None:
    app.command("train")(guarded(train))
    app.command("demo")(guarded(demo))
