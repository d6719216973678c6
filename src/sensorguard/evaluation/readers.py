"""Readers turning benchmark folders into labelled series.

Three layouts:

* ``csv`` (the default contract): every CSV under a folder, recursively, each with a
  time column, numeric sensor columns, a 0/1 (or status-string) label column and
  optionally ignored columns such as ``changepoint``. A detector is fitted on the first
  ``train_rows`` rows of each file.
* ``tep`` (Tennessee Eastman, Braatz set): ``d00.dat`` (normal operation, stored
  transposed) is the training set for every ``dNN_te.dat`` test run (NN ≥ 01) whose fault
  starts at sample 160; samples are 3 minutes apart and get synthetic timestamps.
* ``nab`` (Numenta Anomaly Benchmark): ``data/<category>/<name>.csv`` with
  ``timestamp,value``; rows inside ``labels/combined_windows.json`` windows are labelled 1.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from sensorguard.errors import DataValidationError
from sensorguard.timeutil import to_utc_naive

TEP_FAULT_START = 160
TEP_STEP = "3min"
TEP_VARIABLES = [f"xmeas_{i}" for i in range(1, 42)] + [f"xmv_{i}" for i in range(1, 12)]


@dataclass
class LabelledSeries:
    """One benchmark file: readings to predict, truth, and what to train on."""

    name: str  # relative path used for the output file (POSIX separators)
    time_column: str
    raw_times: pd.Series  # as read, written back unchanged
    times: pd.Series  # parsed datetimes
    X: pd.DataFrame  # sensor columns only
    y: np.ndarray  # 0/1 per row
    changepoints: np.ndarray | None = None  # 0/1 per row when the file marks them
    train: pd.DataFrame | None = None  # separate normal training readings (TEP)
    notes: list[str] = field(default_factory=list)


@dataclass
class Skipped:
    name: str
    reason: str


def discover_csv(data_dir: Path) -> list[Path]:
    """Every ``*.csv`` file below ``data_dir``, sorted by relative path."""
    if not data_dir.is_dir():
        raise DataValidationError(
            f"{data_dir} is not a folder", "pass the folder holding the benchmark CSV files"
        )
    files = sorted(
        (p for p in data_dir.rglob("*") if p.is_file() and p.suffix.lower() == ".csv"),
        key=lambda p: p.relative_to(data_dir).as_posix(),
    )
    if not files:
        raise DataValidationError(
            f"no CSV files under {data_dir}", "point DATA_DIR at the folder with the *.csv files"
        )
    return files


def labels_to_binary(values: pd.Series, where: str) -> np.ndarray:
    """0/1 labels from numbers (non-zero = anomaly) or status strings (NORMAL = 0)."""
    if values.isna().any():
        pos = int(np.flatnonzero(values.isna().to_numpy())[0])
        raise DataValidationError(
            f"{where}: label column '{values.name}' is empty at row {pos}",
            "give every row a label (0/1 or NORMAL/BROKEN/RECOVERING)",
        )
    if values.dtype.kind in "fiub":
        return (values.to_numpy(dtype=np.float64) != 0).astype(np.int8)
    num = pd.to_numeric(values, errors="coerce")
    if num.notna().all():
        return (num.to_numpy(dtype=np.float64) != 0).astype(np.int8)
    text = values.astype(str).str.strip().str.upper()
    return (text != "NORMAL").astype(np.int8).to_numpy()


def read_contract_csv(
    path: Path,
    name: str,
    *,
    sep: str,
    time_column: str,
    label_column: str,
    ignore_columns: Sequence[str] = (),
    changepoint_column: str = "changepoint",
) -> LabelledSeries | Skipped:
    """Read one CSV of the benchmark contract; ``Skipped`` when it has no label column."""
    try:
        frame = pd.read_csv(path, sep=sep)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise DataValidationError(
            f"{path}: cannot be read as CSV with separator {sep!r} ({exc})",
            "check the file and the --sep option",
        ) from None
    frame.columns = [str(c).strip() for c in frame.columns]
    if label_column not in frame.columns:
        return Skipped(name, f"no label column '{label_column}'")
    if time_column not in frame.columns:
        raise DataValidationError(
            f"{path}: no time column '{time_column}' (columns: {', '.join(frame.columns)})",
            "pass the right --time-column (and --sep if the columns look merged)",
        )
    raw_times = frame[time_column]
    times = to_utc_naive(raw_times, what=f"{path}: time column '{time_column}'")
    y = labels_to_binary(frame[label_column], str(path))
    cps = None
    if changepoint_column in frame.columns:
        cps = labels_to_binary(frame[changepoint_column].fillna(0), str(path))
    skip = {time_column, label_column, *ignore_columns}
    notes = []
    sensors = []
    for col in frame.columns:
        if col in skip:
            continue
        if frame[col].dtype.kind in "fiu":
            sensors.append(col)
        else:
            notes.append(f"column '{col}' is not numeric and is not used as a sensor")
    if not sensors:
        raise DataValidationError(
            f"{path}: no numeric sensor columns left after removing time, label and ignored "
            "columns",
            "check --sep, --time-column, --label-column and --ignore-columns",
        )
    return LabelledSeries(
        name=name,
        time_column=time_column,
        raw_times=raw_times.reset_index(drop=True),
        times=pd.Series(times).reset_index(drop=True),
        X=frame[sensors].astype(np.float64).reset_index(drop=True),
        y=y,
        changepoints=cps,
        notes=notes,
    )


def iter_csv_folder(
    data_dir: Path,
    *,
    sep: str,
    time_column: str,
    label_column: str,
    ignore_columns: Sequence[str] = (),
) -> Iterator[LabelledSeries | Skipped]:
    for path in discover_csv(data_dir):
        name = path.relative_to(data_dir).as_posix()
        yield read_contract_csv(
            path,
            name,
            sep=sep,
            time_column=time_column,
            label_column=label_column,
            ignore_columns=ignore_columns,
        )


# ---- Tennessee Eastman


def _read_dat(path: Path) -> np.ndarray:
    try:
        arr = np.loadtxt(path, dtype=np.float64)
    except (OSError, ValueError) as exc:
        raise DataValidationError(f"{path}: not a TEP .dat file ({exc})") from None
    return np.atleast_2d(arr)


def read_tep_training(data_dir: Path) -> pd.DataFrame:
    """``d00.dat`` as a (500, 52) frame (the file stores variables as rows)."""
    arr = _read_dat(data_dir / "d00.dat")
    if arr.shape[0] == len(TEP_VARIABLES) and arr.shape[1] != len(TEP_VARIABLES):
        arr = arr.T
    return pd.DataFrame(arr, columns=TEP_VARIABLES)


def iter_tep(data_dir: Path, faults: Sequence[int] | None = None) -> Iterator[LabelledSeries]:
    """Every ``dNN_te.dat`` (NN ≥ 1) with the fault from sample 160 on, trained on d00."""
    if not (data_dir / "d00.dat").is_file():
        raise DataValidationError(
            f"{data_dir} has no d00.dat", "point DATA_DIR at the Tennessee Eastman folder"
        )
    train = read_tep_training(data_dir)
    for path in sorted(data_dir.glob("d[0-9][0-9]_te.dat")):
        fault = int(path.name[1:3])
        if fault == 0 or (faults is not None and fault not in faults):
            continue
        arr = _read_dat(path)
        n = arr.shape[0]
        times = pd.Series(pd.date_range("2000-01-01", periods=n, freq=TEP_STEP))
        y = np.zeros(n, dtype=np.int8)
        y[TEP_FAULT_START:] = 1
        yield LabelledSeries(
            name=path.with_suffix(".csv").name,
            time_column="time",
            raw_times=times.dt.strftime("%Y-%m-%d %H:%M:%S"),
            times=times,
            X=pd.DataFrame(arr, columns=TEP_VARIABLES),
            y=y,
            train=train,
        )


# ---- NAB


def iter_nab(data_dir: Path, categories: Sequence[str] | None = None) -> Iterator[LabelledSeries]:
    """NAB files (optionally only some categories); rows inside label windows are 1."""
    windows_file = data_dir / "labels" / "combined_windows.json"
    if not windows_file.is_file():
        raise DataValidationError(
            f"{data_dir} has no labels/combined_windows.json",
            "point DATA_DIR at the NAB root folder (holding data/ and labels/)",
        )
    windows: dict[str, list[list[str]]] = json.loads(windows_file.read_text())
    for key in sorted(windows):
        category = key.split("/")[0]
        if categories and category not in categories:
            continue
        path = data_dir / "data" / key
        if not path.is_file():
            continue
        frame = pd.read_csv(path)
        times = to_utc_naive(frame["timestamp"], what=f"{path}: timestamp")
        y = np.zeros(len(frame), dtype=np.int8)
        for start, end in windows[key]:
            inside = (times >= pd.Timestamp(start)) & (times <= pd.Timestamp(end))
            y[inside.to_numpy()] = 1
        yield LabelledSeries(
            name=key,
            time_column="timestamp",
            raw_times=frame["timestamp"],
            times=times,
            X=frame[["value"]].astype(np.float64),
            y=y,
        )
