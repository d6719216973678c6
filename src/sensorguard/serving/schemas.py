"""Pydantic models that document the HTTP API (OpenAPI at ``/docs``).

The prediction path parses and encodes with orjson for speed and never instantiates
these per request; the tests validate real responses against them so the documentation
cannot drift from what the service sends.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

# every alarm kind the watch service opens: the alarm API and the console list these
AlarmKind = Literal[
    "failure", "silent", "sensor_missing", "flatline", "out_of_range", "regime_change"
]

_NUMBER_OR_NULL: dict[str, Any] = {"anyOf": [{"type": "number"}, {"type": "null"}]}


def _as_utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


UtcTime = Annotated[datetime, AfterValidator(_as_utc)]
"""A time the API answers with: RFC 3339 with its zone (``2026-01-01T00:01:00Z``), as the
schema's ``format: date-time`` requires. The store keeps naive UTC; the zone is added here."""


def _iso_text(value: Any) -> Any:
    # pydantic would read a number, or numeric text, as epoch seconds: the schema says ISO
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return value
    raise ValueError("expected an ISO 8601 time, e.g. 2026-01-01T00:00:00Z (no zone = UTC)")


IsoTime = Annotated[
    datetime,
    BeforeValidator(_iso_text),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "date-time"},
                {"type": "string", "format": "date"},
            ],
            "description": "ISO 8601: a date-time (no zone = UTC, an offset is converted) "
            "or a date (midnight UTC).",
        }
    ),
]
"""A time the API is sent (query parameter or body field): ISO 8601 text only."""


class Reading(BaseModel):
    """One reading: every sensor of the model as ``"name": number`` (``null`` = missing),
    plus optional ``timestamp`` and ``asset_id`` that are echoed back. Other fields are
    ignored unless the model refuses extra columns."""

    model_config = ConfigDict(
        extra="allow", json_schema_extra={"additionalProperties": _NUMBER_OR_NULL}
    )
    timestamp: str | float | None = Field(default=None, description="Echoed back.")
    asset_id: str | int | None = Field(default=None, description="Echoed back.")


class RecordsRequest(BaseModel):
    """Readings as a list of objects, oldest first."""

    readings: list[Reading] = Field(
        description="Readings in time order per asset (the alarm smoothing uses this "
        "order); "
        "at most SENSORGUARD_MAX_BATCH of them.",
        min_length=1,
    )


class ColumnsRequest(BaseModel):
    """Readings as columns: the compact form for large batches."""

    columns: dict[str, list[float | str | None]] = Field(
        description="One equal-length list per sensor (numbers, null = missing), "
        "optionally `timestamp` and `asset_id` lists that are echoed back."
    )


class ModelRef(BaseModel):
    name: str = Field(description="Registered model name.")
    version: int = Field(description="Registered model version that produced the response.")


class Prediction(BaseModel):
    score: float | None = Field(
        description="Anomaly score, higher = more anomalous (null only if not computable)."
    )
    is_anomaly: bool = Field(
        description="The alarm after the detector's event smoothing and hysteresis, carried "
        "per asset_id across requests (so a stream sent one reading at a time gets the "
        "same flags as one pass over it). With ?stateless=true the batch alone is the "
        "context."
    )
    above_threshold: bool = Field(description="score > the model's threshold, this reading alone.")
    state: int = Field(description="Nearest learned operating state (-1 when not applicable).")
    top_sensors: list[str] = Field(
        description="Sensors most to blame, first the most: contribution shares averaged "
        "since the excursion started (alarmed or above the threshold), else their "
        "exponentially weighted mean (decay 0.8) over the asset's stream."
    )
    timestamp: Any = Field(default=None, description="Echoed unchanged from the request.")
    asset_id: Any = Field(default=None, description="Echoed unchanged from the request.")


class PredictionColumns(BaseModel):
    score: list[float | None]
    is_anomaly: list[bool]
    above_threshold: list[bool]
    state: list[int]
    top_sensors: list[list[str]]
    timestamp: list[Any] | None = None
    asset_id: list[Any] | None = None


class RegimeShift(BaseModel):
    sensor: str
    train_min: float = Field(description="Lowest value of the sensor in training.")
    train_max: float = Field(description="Highest value of the sensor in training.")
    median: float | None = Field(description="Median of the asset's first 60 readings.")


class RegimeEntry(BaseModel):
    asset_id: Any = Field(description="The asset (null: readings without asset_id).")
    verdict: Literal["regime_change"]
    state: Literal["open", "closed"] = Field(
        description="open: the moved sensors are still out; closed: these readings brought "
        "them back (60 consecutive readings in range)."
    )
    sensors: list[RegimeShift] = Field(description="The sensors that moved, most out first.")
    hint: str = Field(description="What to do: check the named sensors, then retrain.")


class PredictResponse(BaseModel):
    """``predictions`` (records, the default) or ``columns`` (with ``?orient=columns``)."""

    model: ModelRef
    predictions: list[Prediction] | None = Field(
        default=None, description="One object per reading, in request order."
    )
    columns: PredictionColumns | None = Field(
        default=None, description="Present instead of `predictions` with ?orient=columns."
    )
    regime: list[RegimeEntry] | None = Field(
        default=None,
        description="Present only while an asset of the request is in a regime change: its "
        "first 60 readings under this model version were outside the training range "
        "(the rule of `sensorguard score` and the watch service). The model does not "
        "apply; is_anomaly is false for the alarm that the new regime carries (an alarm "
        "that started within those 60 readings); later alarms are reported.",
    )


class ErrorBody(BaseModel):
    code: str = Field(description="Machine-readable error code, e.g. missing_sensors.")
    message: str = Field(description="What is wrong.")
    hint: str | None = Field(default=None, description="How to fix it.")
    path: str | None = Field(
        default=None, description="Where in the body, e.g. readings[3].flow_rate."
    )
    missing: list[str] | None = Field(default=None, description="Missing sensors.")
    limit: int | dict[str, Any] | None = Field(
        default=None,
        description="The limit that was hit: the batch size (413), or what the "
        "readings store cannot hold (422 store_limit).",
    )
    extra: list[str] | None = Field(default=None, description="Refused extra fields.")
    conflict: dict[str, Any] | None = Field(
        default=None, description="The first conflicting reading (409 reading_conflict)."
    )
    details: list[dict[str, Any]] | None = Field(
        default=None, description="Every validation problem (invalid_request)."
    )


class ErrorResponse(BaseModel):
    error: ErrorBody
    model: ModelRef | None = Field(default=None, description="The model being served, if any.")


class ModelInfo(BaseModel):
    name: str
    version: int
    alias: str | None
    run_id: str | None
    detector: str = Field(description="Detector type, e.g. operating-states.")
    loaded_at: str = Field(description="When this version was loaded (ISO 8601, UTC).")
    threshold: float = Field(description="Alarm threshold on the score.")
    sensors: list[str] = Field(description="Sensors every reading must name, in model order.")
    missing_policy: str = Field(
        description="How null readings are filled: ffill-then-median = last value of the "
        "same sensor earlier in the batch, else the training median (fill_values)."
    )
    fill_values: dict[str, float] = Field(description="Training medians used for gaps.")
    extra_columns: Literal["ignore", "error"] = Field(
        description="Whether unknown fields are ignored or refused."
    )
    top_k: int = Field(description="Number of top sensors returned per reading.")
    alarm: Literal["hysteresis", "threshold"] = Field(
        description="How is_anomaly is decided: smoothing plus hysteresis carried per asset "
        "across requests, or a plain score > threshold for detectors without smoothing."
    )
    tracked_assets: int = Field(
        description="Assets whose alarm state this version holds (at most "
        "SENSORGUARD_MAX_TRACKED_ASSETS, least recently seen dropped first)."
    )


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    ready: bool
    model: ModelRef | None
    alias: str
    registry: str
    last_check: str | None
    last_error: str | None
    failed_checks_in_a_row: int


class ReloadResponse(BaseModel):
    changed: bool = Field(description="Whether a new version is now served.")
    version: int | None = Field(description="Version served after the check.")
    previous: int | None = Field(description="Version served before the check.")
    trigger: str
    error: str | None = Field(description="Why the check or load failed, if it did.")
    stage: str | None = Field(description="resolve, load or warmup, when it failed.")
    seconds: float = Field(
        description="Wall time of this check: waiting for a check already running, "
        "resolving the alias, loading and warming up a new version."
    )
    model: ModelRef | None


class ReadingsResponse(BaseModel):
    asset_ids: list[str] = Field(description="Assets of the batch, in first-seen order.")
    received: int = Field(description="Readings in the batch.")
    inserted: int = Field(description="Readings stored by this request.")
    merged: int = Field(
        default=0,
        description="Readings that added sensors to an (asset, time) already stored "
        "(received = inserted + merged + duplicates; a different value for a stored "
        "sensor is a 409 conflict instead).",
    )
    duplicates: int = Field(description="Readings whose (asset, time) was already stored.")
