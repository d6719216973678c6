"""The DAG steps' data handling, without Airflow or MLflow: windows from a file or the
readings store, the data contract, clear errors for bad parameters."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sensorguard.errors import ConfigurationError, DataValidationError, SensorGuardError
from sensorguard.pipelines import monitor, retraining, windows


@pytest.fixture
def pump_csv(tmp_path: Path) -> Path:
    from sensorguard.data.simulator import simulate_pump

    path = tmp_path / "pump.csv"
    simulate_pump(days=3, freq="10min", seed=3, start="2026-03-01").to_csv(path, index=False)
    return path


def test_window_from_a_file_round_trips_through_parquet(sg_home: Path, pump_csv: Path) -> None:
    window = retraining.extract_window(run_id="dag/manual__1", data_path=str(pump_csv))
    assert Path(window["path"]).is_relative_to(sg_home / "pipeline")
    assert window["rows"] == 3 * 144 and window["label_column"] == "machine_status"
    checked = retraining.validate_window(window)
    assert checked["validated"] and checked["labelled"] and checked["abnormal_rows"] > 0
    back = windows.load_window(window)
    original = pd.read_csv(pump_csv)
    assert back.sensors == [
        c
        for c in original.columns
        if c not in {"timestamp", "asset_id", "machine_status", "failure_mode"}
    ]
    assert back.X.to_numpy() == pytest.approx(original[back.sensors].to_numpy(), nan_ok=True)


def test_window_from_the_readings_store(sg_home: Path, pump_csv: Path) -> None:
    from sensorguard.store import ingest_file

    ingest_file(pump_csv, asset="pump-03")
    window = retraining.extract_window(
        run_id="dag/scheduled__2", asset="pump-03", end="2026-03-03T00:00:00", window_days=1
    )
    assert window["rows"] == 144  # the day before `end`, end excluded
    assert window["start"].startswith("2026-03-02 00:00")
    recent = monitor.extract_recent(
        run_id="mon/1", asset="pump-03", end="2026-03-04", window_hours=6
    )
    assert recent["rows"] == 36 and recent["end"].startswith("2026-03-03 23:50")


def test_bad_parameters_are_clear_errors(sg_home: Path, pump_csv: Path) -> None:
    with pytest.raises(ConfigurationError, match="no data source"):
        retraining.extract_window(run_id="r")
    with pytest.raises(DataValidationError, match="cannot read 'yesterday-ish' as a time"):
        retraining.extract_window(run_id="r", asset="pump-03", end="yesterday-ish")
    with pytest.raises(SensorGuardError, match="no readings for asset 'nope'"):
        retraining.extract_window(run_id="r", asset="nope", end="2026-03-03", window_days=1)
    tiny = pump_csv.with_name("tiny.csv")
    pd.read_csv(pump_csv).head(5).to_csv(tiny, index=False)
    window = retraining.extract_window(run_id="r", data_path=str(tiny))
    with pytest.raises(DataValidationError, match="at least"):
        retraining.validate_window(window)


def test_old_run_folders_are_pruned(sg_home: Path) -> None:
    import os
    import time

    old = windows.run_folder("dag/manual__old")
    recent = windows.run_folder("dag/manual__recent")
    week_ago = time.time() - 8 * 86400
    os.utime(old, (week_ago, week_ago))
    current = windows.run_folder("dag/manual__now")
    assert not old.exists() and recent.is_dir() and current.is_dir()
    assert current.name == "dag_manual__now"
