"""`sensorguard benchmark`: score a detector on a folder of labelled files."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

import typer

from sensorguard.cli._common import (
    console,
    err_console,
    guarded,
    parse_params,
    progress,
    split_csv_list,
)
from sensorguard.errors import SensorGuardError


class Layout(StrEnum):
    csv = "csv"
    tep = "tep"
    nab = "nab"


def benchmark(
    data_dir: Path = typer.Argument(
        ..., help="Folder with the benchmark files (searched recursively)."
    ),
    output_dir: Path = typer.Option(
        ..., "--output-dir", "-o", help="Where predictions and summary.json are written."
    ),
    sep: str = typer.Option(
        ",", "--sep", help="CSV separator of the input files; outputs use the same one."
    ),
    time_column: str = typer.Option("datetime", "--time-column", help="Time column."),
    label_column: str = typer.Option(
        "anomaly", "--label-column", help="0/1 label column; files without it are skipped."
    ),
    ignore_columns: list[str] = typer.Option(
        [],
        "--ignore-columns",
        help="Columns that are neither sensors nor labels (repeat or comma-separate).",
    ),
    train_rows: int = typer.Option(
        400, "--train-rows", min=2, help="Rows at the start of each file to fit on."
    ),
    detector: str | None = typer.Option(
        None, "--detector", "-d", help="Detector name (default: the best benchmarked one)."
    ),
    param: list[str] = typer.Option(
        [], "--param", "-p", help="Detector parameter NAME=VALUE (JSON value), repeatable."
    ),
    layout: Layout = typer.Option(
        Layout.csv,
        "--format",
        help="csv: the labelled-CSV contract; tep: Tennessee Eastman folder (fit on "
        "d00.dat, test dNN_te.dat); nab: NAB root folder (data/ + labels/).",
    ),
    nab_category: list[str] = typer.Option(
        [], "--nab-category", help="With --format nab: only these categories."
    ),
    window_seconds: float = typer.Option(
        60.0, "--window-seconds", help="Changepoint scoring window right of each change."
    ),
) -> None:
    """Fit a fresh detector on the first --train-rows rows of every file (sensor
    columns only), predict the rest, and write per-file predictions (time, score,
    is_anomaly) plus summary.json with F1, FAR %, MAR % summed over all files and
    NAB-style changepoint scores (standard, low-FP, low-FN; perfect = 100, silent = 0).

    Each file is scored as a recording: with a detector that has an on-delay
    (`drift-robust`, `--param confirm=60` readings) an alarm counts once it has lasted
    it and starts where its score rose (at most `max_back=15` readings earlier);
    `--param confirm=0` scores alarms as raised, without on-delay. The default detector
    (`pca-smoothed`) has none.
    """
    from sensorguard.detectors import get_detector_class
    from sensorguard.evaluation import readers
    from sensorguard.evaluation.benchmark import DEFAULT_DETECTOR, run_benchmark

    name = detector or DEFAULT_DETECTOR
    get_detector_class(name)  # unknown names fail before any work
    params = parse_params(param, "margin=1.5")
    ignored = split_csv_list(ignore_columns)
    if len(sep) == 0:
        raise SensorGuardError("--sep is empty", "give a separator such as ';' or ','")
    if not window_seconds > 0:
        raise SensorGuardError(
            f"--window-seconds must be positive, got {window_seconds:g}",
            "e.g. --window-seconds 60",
        )
    if output_dir.exists() and not output_dir.is_dir():
        raise SensorGuardError(
            f"--output-dir {output_dir} is a file, not a folder",
            "pass a new or existing folder for the predictions and summary.json",
        )

    items: list[Any]
    if layout is Layout.csv:
        files = readers.discover_csv(data_dir)
        total = len(files)
        items_iter: Any = readers.iter_csv_folder(
            data_dir,
            sep=sep,
            time_column=time_column,
            label_column=label_column,
            ignore_columns=ignored,
        )
    elif layout is Layout.tep:
        items = list(readers.iter_tep(data_dir))
        total, items_iter = len(items), items
    else:
        items = list(readers.iter_nab(data_dir, nab_category or None))
        total, items_iter = len(items), items

    with progress() as bar:
        task = bar.add_task(f"benchmark {name}", total=total)
        summary = run_benchmark(
            items_iter,
            output_dir,
            detector=name,
            params=params,
            train_rows=train_rows,
            sep=sep,
            window_seconds=window_seconds,
            on_file=lambda _f: bar.advance(task),
        )
    for s in summary["skipped"]:
        err_console.print(f"note: skipped {s['file']}: {s['reason']}", highlight=False)
    for n in summary["notes"]:
        err_console.print(f"note: {n}", highlight=False)
    for f in summary["files"]:
        if f["regime"]["verdict"] == "regime_change":
            moved = ", ".join(x["sensor"] for x in f["regime"]["sensors"][:5])
            err_console.print(
                f"note: {f['file']}: regime change ({moved} outside the training range "
                "from the first reading): the model does not apply; retrain",
                highlight=False,
            )
    m = summary["metrics"]
    cp = summary["changepoint"]["scores"]
    console.print(
        f"{name}: {summary['files_evaluated']} file(s)  F1 {m['f1']:.3f}  "
        f"FAR {m['far_percent']:.2f} %  MAR {m['mar_percent']:.2f} %  "
        f"NAB standard {cp['standard']:.1f}  low-FP {cp['reward_low_FP']:.1f}  "
        f"low-FN {cp['reward_low_FN']:.1f}",
        highlight=False,
    )
    console.print(f"summary: {output_dir / 'summary.json'}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("benchmark")(guarded(benchmark))
