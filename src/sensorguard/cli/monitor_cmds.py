"""`sensorguard drift` and `sensorguard monitor check`: the monitor DAG's checks by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from sensorguard.cli._common import EXIT_REJECTED, console, err_console, guarded

monitor_app = typer.Typer(
    help="Model monitoring: gate compliance of production, vetting of new versions.",
    no_args_is_help=True,
)


def _value(sensor: dict[str, Any], metric: str) -> float:
    v = sensor["psi"] if metric == "psi" else sensor["mean_shift"]
    return float("inf") if v is None else float(v)  # None: the sensor stopped reporting


def _drift_table(report: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title=f"Drift per sensor (deciding: {report['metric']})")
    table.add_column("sensor")
    table.add_column("PSI", justify="right")
    table.add_column("mean shift (σ)", justify="right")
    table.add_column("train mean", justify="right")
    table.add_column("recent mean", justify="right")
    rows = sorted(report["sensors"], key=lambda s: -_value(s, report["metric"]))
    for s in rows:
        style = "bold red" if _value(s, report["metric"]) > report["threshold"] else None
        table.add_row(
            s["sensor"],
            f"{s['psi']:.3f}",
            "-" if s["mean_shift"] is None else f"{s['mean_shift']:.2f}",
            f"{s['mean_train']:.4g}",
            "no readings" if s["mean_recent"] is None else f"{s['mean_recent']:.4g}",
            style=style,
        )
    return table


def _drift_plot(report: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric, threshold = report["metric"], report["threshold"]
    rows = sorted(report["sensors"], key=lambda s: _value(s, metric))
    values = [min(_value(s, metric), 10 * threshold) for s in rows]  # cap "stopped" sensors
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.5))
    colors = ["tab:red" if v > threshold else "tab:blue" for v in values]
    ax.barh([s["sensor"] for s in rows], values, color=colors)
    ax.axvline(threshold, color="k", ls="--", lw=1, label="threshold")
    label = "PSI" if metric == "psi" else "mean shift (training standard deviations)"
    ax.set_xlabel(f"{label} against the training profile")
    ax.set_title(f"Drift: overall {metric} {report['score']:.3f}")
    ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def drift(
    data: Path = typer.Argument(..., help="Recent readings (CSV or Parquet)."),
    reference: Path | None = typer.Option(
        None,
        "--reference",
        "-r",
        help="Compare with these readings instead of the production model's training "
        "profile (no registry needed, nothing logged).",
    ),
    metric: str = typer.Option(
        "mean_shift",
        "--metric",
        "-m",
        help="What decides: mean_shift (σ, default threshold 0.75) or psi (default 1.0).",
    ),
    threshold: float | None = typer.Option(
        None, "--threshold", "-t", help="Overall value above which it is drift."
    ),
    plot: Path | None = typer.Option(
        None, "--plot", help="Write a bar chart of the deciding metric per sensor (PNG)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    fail_on_drift: bool = typer.Option(
        False, "--fail-on-drift", help=f"Exit {EXIT_REJECTED} when drift is detected."
    ),
) -> None:
    """Drift of DATA against the production model's training data, per sensor.

    Without --reference the report is also logged to MLflow (experiment
    `<experiment>-monitoring`), as the monitor DAG does.
    """
    from sensorguard.pipelines import monitor

    if plot is not None:  # a bad file name fails before any work, not after
        from sensorguard.data.plotting import check_plot_path

        check_plot_path(plot)
    with err_console.status("measuring drift"):
        if reference is not None:
            rep = monitor.drift_against_reference(
                data, reference, threshold=threshold, metric=metric
            )
            report = {**rep.to_dict(), "summary": rep.summary()}
        else:
            report = monitor.measure_drift(data, threshold=threshold, metric=metric, trigger="cli")
    if report.get("note"):  # sensors left out of the comparison: never silently
        err_console.print(f"[yellow]warning:[/] {report['note']}", highlight=False, soft_wrap=True)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        console.print(_drift_table(report))
        console.print(report["summary"], highlight=False)
        if report.get("mlflow_run_id"):
            console.print(
                f"logged to MLflow: run {report['mlflow_run_id']} (model v{report['version']})"
            )
    if plot is not None:
        err_console.print(f"plot: {_drift_plot(report, plot)}")
    if fail_on_drift and report["drifted"]:
        raise typer.Exit(EXIT_REJECTED)


def check(
    data: Path | None = typer.Option(
        None,
        "--data",
        help="Labelled readings to vet new versions on (default: held-out data "
        "stored with the training runs).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Vet versions without a gate verdict, then check production passed the gate.

    Exits 3 when the production alias points at a version that did not pass.
    """
    from sensorguard.pipelines import monitor

    with err_console.status("checking the registry"):
        result = monitor.monitor_check(data)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        for v in result["vetted"]:
            console.print(f"v{v['version']}: {v['gate']} — {v['reason']}", highlight=False)
        if result["production"] is not None:
            console.print(result["production"]["message"], highlight=False)
        if result["alert"]:
            err_console.print(f"[bold red]alert:[/] {result['alert']}", highlight=False)
    if result["alert"]:
        raise typer.Exit(EXIT_REJECTED)


def register(app: typer.Typer) -> None:
    app.command("drift")(guarded(drift))
    monitor_app.command("check")(guarded(check))
    app.add_typer(monitor_app, name="monitor")
