"""Settings, read from the environment (prefix ``SENSORGUARD_``) and an optional ``.env``.

Nothing is read or created at import time: call :func:`get_settings`.
The standard ``MLFLOW_TRACKING_URI`` / ``MLFLOW_REGISTRY_URI`` variables override the
embedded SQLite store, so pointing everything at a real MLflow server needs no code change.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SENSORGUARD_", env_file=".env", extra="ignore", validate_default=True
    )

    # --- embedded default: everything under one folder
    home: Path = Field(
        default=Path(".sensorguard"),
        description="Folder holding the embedded MLflow store, artifacts and readings.",
    )

    # --- MLflow
    tracking_uri: str | None = Field(
        default=None,
        description="MLflow tracking URI; default: MLFLOW_TRACKING_URI, else SQLite in `home`.",
    )
    registry_uri: str | None = Field(
        default=None, description="MLflow registry URI; default: same as the tracking URI."
    )
    experiment: str = Field(default="sensorguard", description="MLflow experiment name.")
    model_name: str = Field(default="sensor-failure-detector", description="Registered model name.")
    production_alias: str = Field(default="production", description="Alias the predictor serves.")
    previous_alias: str = Field(
        default="previous", description="Alias given to the version a promotion replaces."
    )

    # --- detector default
    detector: str = Field(
        default="operating-states", description="Detector used by `train` when none is given."
    )

    # --- quality gate
    gate_min_f1: float = Field(default=0.5, description="Gate: minimum point F1 on eval data.")
    gate_min_event_recall: float = Field(
        default=0.8, description="Gate: minimum fraction of failure events detected."
    )
    gate_max_false_alarms_per_day: float = Field(
        default=2.0, description="Gate: maximum false alarm events per day."
    )
    gate_tolerance: float = Field(
        default=0.02,
        description="Gate: largest allowed drop of F1 / event recall versus production.",
    )

    # --- readings store
    store_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the readings store; default: SQLite in `home`.",
    )

    # --- predictor service
    api_token: str | None = Field(
        default=None,
        description="Bearer token for /v1/predict (optional) and /v1/admin/* (required).",
    )
    poll_interval: float = Field(
        default=5.0, gt=0, description="Seconds between checks of the served alias."
    )
    max_batch: int = Field(default=10_000, gt=0, description="Largest batch /v1/predict accepts.")
    host: str = Field(default="127.0.0.1", description="Predictor bind address.")
    port: int = Field(default=8000, description="Predictor port.")

    @property
    def resolved_tracking_uri(self) -> str:
        if self.tracking_uri:
            return self.tracking_uri
        env = os.environ.get("MLFLOW_TRACKING_URI")
        if env:
            return env
        return f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    @property
    def resolved_registry_uri(self) -> str:
        # An explicit tracking URI wins over MLFLOW_REGISTRY_URI from the environment:
        # mlflow.set_registry_uri() writes that variable, so it may be stale in-process.
        if self.registry_uri:
            return self.registry_uri
        if self.tracking_uri:
            return self.tracking_uri
        return os.environ.get("MLFLOW_REGISTRY_URI") or self.resolved_tracking_uri

    @property
    def artifact_root(self) -> Path:
        """Where new experiments put artifacts when the tracking store is embedded."""
        return (self.home / "artifacts").resolve()

    @property
    def resolved_store_url(self) -> str:
        if self.store_url:
            return self.store_url
        return f"sqlite:///{(self.home / 'readings.db').resolve()}"

    @property
    def is_embedded(self) -> bool:
        return self.resolved_tracking_uri.startswith("sqlite:")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings from the environment, cached. Tests call ``get_settings.cache_clear()``."""
    return Settings()
