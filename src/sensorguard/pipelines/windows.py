"""Windows of readings for the scheduled pipelines: where they come from, where they rest.

Shared by the retraining steps (:mod:`.retraining`) and the monitoring steps
(:mod:`.monitor`). Readings move between Airflow tasks as a Parquet file under
``<home>/pipeline/<run>/`` described by a small JSON-able dict (never a data frame in XCom).
"""

from __future__ import annotations

import re
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from sensorguard.config import Settings, get_settings
from sensorguard.data import Readings, load_readings
from sensorguard.errors import ConfigurationError, DataValidationError
from sensorguard.timeutil import to_utc_naive

WINDOW_FILE = "window.parquet"
KEEP_RUN_FOLDERS_DAYS = 7.0


def settings_for(model_name: str | None = None) -> Settings:
    """The settings, with the registered model name the DAG was parsed with."""
    settings = get_settings()
    if model_name and model_name != settings.model_name:
        settings = settings.model_copy(update={"model_name": model_name})
    return settings


def run_folder(run_id: str, settings: Settings | None = None) -> Path:
    """A folder for one pipeline run's intermediate files (safe name from the run id).

    Folders of runs older than :data:`KEEP_RUN_FOLDERS_DAYS` are removed on the way, so
    an hourly monitor does not fill the disk.
    """
    settings = settings or get_settings()
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id).strip("_") or "run"
    parent = (settings.home / "pipeline").resolve()
    folder = parent / safe
    folder.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - KEEP_RUN_FOLDERS_DAYS * 86400
    for old in parent.iterdir():
        if old != folder and old.is_dir() and old.stat().st_mtime < cutoff:
            shutil.rmtree(old, ignore_errors=True)
    return folder


def as_time(value: datetime | str | None, what: str = "window bound") -> datetime | None:
    """A window bound from a datetime or an ISO string (as given in DAG params), as
    naive UTC (:func:`~sensorguard.timeutil.to_utc_naive`); None or blank = open."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return to_utc_naive(value, what=what).to_pydatetime()


def read_source(
    *,
    data_path: str | None,
    asset: str | None,
    start: datetime | None = None,
    end: datetime | None = None,
    settings: Settings | None = None,
) -> Readings:
    """Readings of one asset's window from the readings store, or from a data file.

    The store is used when ``asset`` is given (``SENSORGUARD_STORE_URL``, default the
    embedded SQLite store); otherwise ``data_path`` is read whole.
    """
    settings = settings or get_settings()
    if asset:
        from sensorguard.store import read_window  # SQLAlchemy: only when the store is used

        readings = read_window(asset, start=start, end=end, url=settings.resolved_store_url)
        if len(readings) == 0:
            raise DataValidationError(
                f"the readings store has no readings of asset '{asset}' between {start} and {end}",
                "ingest readings with `sensorguard ingest FILE` or widen the window",
            )
        return readings
    if data_path:
        return load_readings(data_path)
    raise ConfigurationError(
        "no data source for the pipeline",
        "set the DAG param 'data_path' (or SENSORGUARD_TRAINING_DATA / "
        "SENSORGUARD_MONITOR_DATA) or 'asset' to read from the readings store",
    )


def save_window(readings: Readings, folder: Path) -> dict[str, Any]:
    """Write readings as Parquet and describe them in a small JSON-able dict."""
    path = folder / WINDOW_FILE
    readings.frame.to_parquet(path, index=False)
    times = readings.times
    return {
        "path": str(path),
        "rows": len(readings),
        "sensors": list(readings.sensors),
        "start": str(times.min()) if len(readings) else None,
        "end": str(times.max()) if len(readings) else None,
        "time_column": readings.time_column,
        "label_column": readings.label_column,
        "asset_column": readings.asset_column,
        "source": str(readings.source),
    }


def load_window(window: dict[str, Any]) -> Readings:
    """Readings back from a dict written by :func:`save_window` (validated again)."""
    return load_readings(
        window["path"],
        time_column=window.get("time_column"),
        label_column=window.get("label_column"),
        asset_column=window.get("asset_column"),
    )
