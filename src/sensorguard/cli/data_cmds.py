"""``sensorguard simulate`` and ``sensorguard validate``: wiring over ``sensorguard.data``."""

from __future__ import annotations

from pathlib import Path

import typer

from sensorguard.cli._common import (
    AssetColumnOpt,
    DuplicatesOpt,
    EncodingOpt,
    IgnoreColumnsOpt,
    LabelColumnOpt,
    SepOpt,
    TimeColumnOpt,
    console,
    err_console,
    guarded,
    read_options,
    split_csv_list,
)


def _short_time(iso: str) -> str:
    return iso.replace("T", " ")[:16] if iso.endswith(":00") else iso.replace("T", " ")


def simulate(
    output: Path = typer.Option(
        ...,
        "--output",
        "-o",
        help="File to write: .csv (optionally .csv.gz) or .parquet. Folders are created.",
    ),
    days: float = typer.Option(7.0, "--days", help="Length of the simulated history in days."),
    freq: str = typer.Option(
        "1min", "--freq", help="Sampling interval (pandas frequency: 10s, 1min, 5min…)."
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed gives identical data."),
    failure_modes: str | None = typer.Option(
        None,
        "--failure-modes",
        help=(
            "Comma-separated subset of: bearing_wear, cavitation, leak, stuck_sensor, spike "
            "(default: all)."
        ),
    ),
    n_failures: int | None = typer.Option(
        None, "--n-failures", help="Number of failures (default: one per simulated day)."
    ),
    no_failures: bool = typer.Option(
        False, "--no-failures", help="Failure-free history (e.g. for training on normal operation)."
    ),
    start: str = typer.Option("2026-01-01", "--start", help="Time of the first reading."),
    asset_id: str = typer.Option("pump-01", "--asset-id", help="Value of the asset_id column."),
    plot: Path | None = typer.Option(
        None, "--plot", help="Also draw the sensors with failures shaded to this .png/.svg file."
    ),
) -> None:
    """Simulate a centrifugal pump with labelled failures and write it to a file.

    Nine correlated sensors (speed, flow, suction and discharge pressure, current, power,
    vibration, bearing and fluid temperature) at three speed setpoints, with noise, daily
    temperature drift, fouling and dropouts. Failures are labelled per row in
    machine_status (NORMAL/BROKEN/RECOVERING) and failure_mode.

    Examples:

      sensorguard simulate -o data/train.csv --days 14 --no-failures

      sensorguard simulate -o data/eval.parquet --days 7 --seed 1 --failure-modes leak,cavitation

      sensorguard simulate -o pump.csv --plot pump.png
    """
    from rich.table import Table

    from sensorguard.data import write_frame
    from sensorguard.data.loading import file_kind
    from sensorguard.data.simulator import SENSORS, simulate_pump

    file_kind(output)  # refuse bad file names before simulating
    if plot is not None:
        from sensorguard.data.plotting import check_plot_path

        check_plot_path(plot)
    with err_console.status(f"simulating {days:g} day(s)…"):
        df = simulate_pump(
            days=days,
            freq=freq,
            seed=seed,
            failure_modes=split_csv_list(failure_modes) if failure_modes else None,
            n_failures=n_failures,
            start=start,
            asset_id=asset_id,
            failures=not no_failures,
        )
        failures = list(df.attrs.get("failures", []))
        write_frame(df, output)

    console.print(
        f"wrote [bold]{output}[/]: {len(df):,} rows x {len(SENSORS)} sensors, "
        f"{df['timestamp'].iloc[0]} → {df['timestamp'].iloc[-1]} (seed {seed}), "
        f"{len(failures)} failure(s)",
        highlight=False,
        soft_wrap=True,
    )
    if failures:
        table = Table(title="Injected failures", title_justify="left")
        for col in ("mode", "sensor", "start", "end", "recovered", "rows"):
            table.add_column(col, justify="right" if col == "rows" else "left")
        for f in failures:
            table.add_row(
                f["mode"],
                f["sensor"] or "-",
                *(_short_time(f[k]) for k in ("start", "end", "recovered")),
                str(f["rows"]),
            )
        console.print(table)
    if plot is not None:
        from sensorguard.data import Readings
        from sensorguard.data.plotting import plot_readings

        title = f"simulated pump {asset_id}, seed {seed}: failures shaded"
        plot_readings(Readings.from_frame(df, source=str(output)), plot, title=title)
        console.print(f"plot: {plot}", highlight=False, soft_wrap=True)


def validate(
    file: Path = typer.Argument(..., help="Readings file: CSV (any separator) or Parquet."),
    sep: SepOpt = None,
    time_column: TimeColumnOpt = None,
    label_column: LabelColumnOpt = None,
    asset_column: AssetColumnOpt = None,
    ignore_columns: IgnoreColumnsOpt = None,
    duplicates: DuplicatesOpt = "error",
    encoding: EncodingOpt = "utf-8",
    for_training: bool = typer.Option(
        False,
        "--for-training",
        help="Also check what training needs: enough rows, no empty or constant sensor.",
    ),
    min_rows: int | None = typer.Option(
        None, "--min-rows", min=1, help="Minimum rows for --for-training (default 50)."
    ),
    plot: Path | None = typer.Option(
        None, "--plot", help="Also draw the sensors (labelled periods shaded) to a .png/.svg."
    ),
) -> None:
    """Check a readings file against the data contract and summarise it.

    Prints rows, time range, sensors, missing values, label balance and notes. On a
    violation it prints one line naming the file, column and row, and exits with 2.

    Examples:

      sensorguard validate data/pump.csv

      sensorguard validate plant.csv --sep ';' --time-column ts --ignore-columns note --for-training
    """
    from rich.table import Table

    from sensorguard.data import DEFAULT_MIN_TRAIN_ROWS, load_readings, validate_for_training

    if plot is not None:
        from sensorguard.data.plotting import check_plot_path

        check_plot_path(plot)
    with err_console.status(f"reading {file}…"):
        readings = load_readings(
            file,
            **read_options(
                sep=sep,
                time_column=time_column,
                label_column=label_column,
                asset_column=asset_column,
                ignore_columns=ignore_columns,
                duplicates=duplicates,
                encoding=encoding,
            ),
        )
        if for_training:
            validate_for_training(readings, min_rows=min_rows or DEFAULT_MIN_TRAIN_ROWS)
    info = readings.summary()
    table = Table(title=f"{file}", title_justify="left", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("rows", f"{info['rows']:,}")
    table.add_row("time", f"{info['time_column']}: {info['start']} → {info['end']}")
    if info["asset_column"]:
        assets = info["assets"]
        shown = ", ".join(assets[:5]) + (f" (+{len(assets) - 5})" if len(assets) > 5 else "")
        table.add_row("assets", f"{info['asset_column']}: {shown}")
    table.add_row("sensors", f"{len(info['sensors'])}: {', '.join(info['sensors'])}")
    table.add_row("missing values", f"{info['missing_fraction']:.2%} of sensor cells")
    if info["label_column"]:
        counts = ", ".join(f"{k} {v:,}" for k, v in info["status_counts"].items())
        table.add_row(
            "labels",
            f"{info['label_column']}: {info['abnormal_fraction']:.1%} abnormal ({counts})",
        )
    else:
        table.add_row("labels", "none")
    console.print(table)
    for note in info["notes"]:
        err_console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    if plot is not None:
        from sensorguard.data.plotting import plot_readings

        plot_readings(readings, plot)
        console.print(f"plot: {plot}", highlight=False, soft_wrap=True)
    verdict = "valid for training" if for_training else "valid"
    console.print(f"[green]{verdict}[/]")


def register(app: typer.Typer) -> None:
    app.command("simulate")(guarded(simulate))
    app.command("validate")(guarded(validate))
