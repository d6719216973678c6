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
    top_k: int = Field(
        default=3, ge=1, le=50, description="Top contributing sensors returned per reading."
    )
    max_body_mb: float = Field(
        default=64.0, gt=0, description="Largest request body /v1/predict reads, in MiB."
    )
    max_tracked_assets: int = Field(
        default=10_000,
        ge=1,
        description="Assets whose alarm state the predictor keeps (least recently seen "
        "dropped first).",
    )
    registry_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds an MLflow server call may take before the poll counts it failed.",
    )

    @property
    def alias(self) -> str:
        return self.serve_alias or self.production_alias

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)
