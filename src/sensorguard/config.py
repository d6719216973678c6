"""Settings, read from the environment (prefix ``SENSORGUARD_``) and an optional ``.env``.

Nothing is read or created at import time: call :func:`get_settings`.
The standard ``MLFLOW_TRACKING_URI`` / ``MLFLOW_REGISTRY_URI`` variables override the
embedded SQLite store, so pointing everything at a real MLflow server needs no code change.
"""

from __future__ import annotations

import os
import re
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

    # --- model integrity (see docs/deployment.md, "Trust model")
    signing_key: str | None = Field(
        default=None,
        repr=False,
        description="HMAC key that signs registered model artifacts; default: a key file "
        "`<home>/signing.key` created on first use (embedded mode).",
    )
    allow_unsigned_models: bool = Field(
        default=False,
        description="Load registered versions that carry no artifact signature (versions "
        "registered before signing existed). Off by default: sign them with "
        "`sensorguard models sign VERSION` instead.",
    )

    # --- detector default
    # not `benchmark`'s pca-smoothed (measured, docs/quality.md "Default of `sensorguard
    # train`"): with it the default gate rejected the demo's model in 5 of 8 seeds and the
    # README walkthrough's, and fleet calibration cannot wrap it
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
    gate_label_days: float = Field(
        default=30.0,
        ge=0,
        description="Gate: also judge the candidate on the operator-labelled alarms of the "
        "last N days of the readings store (0 = off).",
    )

    # --- readings store
    store_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the readings store; default: SQLite in `home`.",
    )
    max_file_mb: int = Field(
        default=1024,
        gt=0,
        description="Largest text (CSV) readings file loaded, in MB: loading holds the table in "
        "memory, ~3.4x the file size at peak (docs/data.md). Parquet is checked by its row x "
        "column count against the same budget.",
    )

    # --- live ingestion (MQTT) and notifications
    mqtt_url: str = Field(
        default="mqtt://127.0.0.1:1883",
        description="MQTT broker: mqtt://[user:password@]host[:port] (mqtts:// for TLS).",
    )
    mqtt_topic_root: str = Field(
        default="sensorguard",
        description="First topic level: readings arrive on <root>/<asset_id>/readings.",
    )
    mqtt_client_id: str = Field(
        default="sensorguard-ingest",
        description="Client id of the ingester; its persistent session is kept under it, so "
        "keep it stable across restarts and unique per ingester.",
    )
    mqtt_shared_group: str | None = Field(
        default=None,
        description="Share the readings subscription among ingesters (MQTT 5 "
        "$share/<group>/...): each message goes to one of them. Give each its own "
        "SENSORGUARD_MQTT_CLIENT_ID.",
    )
    webhook_urls: str = Field(
        default="",
        description="Comma-separated webhook URLs that receive every alarm transition.",
    )
    webhook_secret: str | None = Field(
        default=None,
        repr=False,
        description="HMAC-SHA256 key signing webhook bodies (X-SensorGuard-Signature).",
    )
    webhook_timeout: float = Field(
        default=10.0, gt=0, description="Seconds a webhook receiver may take to answer."
    )
    webhook_max_attempts: int = Field(
        default=0,
        ge=0,
        description="Give up a notification after this many failed attempts (0 = never; "
        "later transitions wait for it, so a receiver gets them in order).",
    )
    notify_mqtt: bool = Field(
        default=True,
        description="Publish alarm transitions to <root>/<asset_id>/alarms and a retained "
        "<root>/<asset_id>/status.",
    )
    delivery_retention_days: float = Field(
        default=30.0,
        ge=0,
        description="Delete notifications and their delivery log this many days after they "
        "were sent or given up (never a pending one, nor those of an alarm still open); "
        "0 = keep forever.",
    )
    dead_letter_retention_days: float = Field(
        default=30.0,
        ge=0,
        description="Delete dead letters (invalid payloads) received this many days ago; "
        "0 = keep forever.",
    )
    retention_interval: float = Field(
        default=3600.0,
        gt=0,
        description="Seconds between retention runs of the notifier (delivery log) and the "
        "MQTT ingester (dead letters).",
    )

    # --- watch service (live scoring of the store)
    watch_poll_interval: float = Field(
        default=0.1, gt=0, description="Watch: seconds between store polls when idle."
    )
    watch_lease_seconds: float = Field(
        default=10.0,
        gt=0,
        description="Watch: lifetime of an asset lease; a dead process's assets move to "
        "the others within lease + lease/3 seconds.",
    )
    watch_batch_rows: int = Field(
        default=20_000, gt=0, description="Watch: most readings of one asset scored per step."
    )
    watch_predictions_every: int = Field(
        default=1,
        ge=0,
        description="Watch: store the prediction of every N-th reading of an asset (and of "
        "every reading in alarm); 1 = all, 0 = none.",
    )
    watch_pass_assets: int = Field(
        default=100,
        ge=1,
        description="Watch: most assets scored in one pass (one transaction); the other "
        "due assets are scored in the next passes.",
    )
    watch_pass_rows: int = Field(
        default=200_000,
        ge=1,
        description="Watch: most readings read in one pass, over all its assets (each asset "
        "gets at most this / the pass's assets); bounds a pass's memory.",
    )
    watch_silent_after: float = Field(
        default=300.0, gt=0, description="Watch: seconds without readings before `silent`."
    )
    watch_missing_readings: int = Field(
        default=30, ge=1, description="Watch: consecutive readings without a sensor: missing."
    )
    watch_flatline_readings: int = Field(
        default=60, ge=2, description="Watch: consecutive identical values of a sensor: flat."
    )
    watch_range_readings: int = Field(
        default=3, ge=1, description="Watch: consecutive readings outside the training range."
    )
    watch_range_margin: float = Field(
        default=0.5,
        ge=0,
        description="Watch: training range widened by this share of (max - min) per side "
        "(a failure moves values past the training range; a broken sensor far past it).",
    )
    watch_metrics_port: int | None = Field(
        default=None, description="Watch: port of its /metrics (unset: no metrics server)."
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
    registry_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds an MLflow server call may take before it counts as failed.",
    )
    registry_http_retries: int = Field(
        default=3,
        ge=0,
        description="Retries of a failed MLflow server call (the predictor uses 0: its poll "
        "loop is the retry).",
    )
    host: str = Field(default="127.0.0.1", description="Predictor bind address.")
    port: int = Field(default=8000, description="Predictor port.")

    # --- fleets: several registered models (one per machine type), training jobs
    max_loaded_models: int = Field(
        default=8,
        ge=1,
        description="Models one predictor process holds at once (the default model plus the "
        "most recently used others; least recently used unloaded first).",
    )
    airflow_url: str | None = Field(
        default=None,
        description="Airflow API server (e.g. http://127.0.0.1:8080): training jobs become "
        "runs of the training DAG; unset = the local job worker runs them.",
    )
    airflow_username: str | None = Field(default=None, description="Airflow API user.")
    airflow_password: str | None = Field(
        default=None, repr=False, description="Airflow API password."
    )
    airflow_training_dag: str = Field(
        default="sensor_model_training", description="DAG a training job triggers."
    )
    fleet_calibration: bool = Field(
        default=True,
        description="Readings of several assets train `asset-calibrated` (per-asset "
        "baselines around SENSORGUARD_DETECTOR) when no detector is named; see "
        "docs/quality.md, Fleet calibration.",
    )
    job_stale_seconds: float = Field(
        default=120.0,
        gt=0,
        description="A running training job whose worker sent no heartbeat for this long is "
        "queued again (its worker died).",
    )

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


# scheme://user:PASSWORD@host — the password runs to the last "@" before the host part
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)[^\s\"']*(?=@)")
_SECRET_PARAM = re.compile(r"(?i)(?P<head>[?&;](?:password|passwd|pwd|token|secret)=)[^&;\s]*")


def redact(text: str) -> str:
    """``text`` with the password of every URL in it masked (``user:***@host``) and
    password/token query parameters blanked: for anything shown or logged (``/readyz``,
    the startup banner, error messages, pid files)."""
    text = _USERINFO.sub(r"\g<head>***", text)
    return _SECRET_PARAM.sub(r"\g<head>***", text)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings from the environment, cached. Tests call ``get_settings.cache_clear()``."""
    return Settings()
