"""Predictor settings: the shared :class:`~sensorguard.config.Settings` plus serving knobs.

Same ``SENSORGUARD_`` environment prefix, so one ``.env`` configures the whole project.
"""

from __future__ import annotations

from pydantic import Field

from sensorguard.config import Settings


class ServingSettings(Settings):
    serve_alias: str | None = Field(
        default=None,
        description="Registry alias the predictor serves; default: `production_alias`.",
    )
    console_refresh_seconds: float = Field(
        default=5.0,
        ge=0,
        description="How often the console's fleet overview refreshes itself (0 = never).",
    )
    mlflow_ui_url: str | None = Field(
        default=None,
        description="MLflow UI address the console links runs to (e.g. http://127.0.0.1:5000).",
    )
    top_k: int = Field(
        default=3, ge=1, le=50, description="Top contributing sensors returned per reading."
    )
    max_body_mb: float = Field(
        default=64.0,
        gt=0,
        description="Largest request body /v1/predict and /v1/readings read, in MiB.",
    )
    max_tracked_assets: int = Field(
        default=10_000,
        ge=1,
        description="Assets whose alarm state the predictor keeps (least recently seen "
        "dropped first).",
    )
    registry_http_retries: int = Field(
        default=0,
        ge=0,
        description="Retries of a failed MLflow call: none, the poll loop is the retry (a "
        "dead server must fail a check in seconds, not stall it).",
    )
    header_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds a client may take to send a request's line and headers, from "
        "its first byte (or from connecting); then the connection is closed (408).",
    )
    body_timeout: float = Field(
        default=60.0,
        gt=0,
        description="Seconds a client may take to send a request body once its headers "
        "are in; then the connection is closed.",
    )
    max_connections: int = Field(
        default=2_048,
        ge=1,
        description="Open connections plus requests in progress beyond which new ones get "
        "503 (uvicorn's limit_concurrency).",
    )

    @property
    def alias(self) -> str:
        return self.serve_alias or self.production_alias

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)
