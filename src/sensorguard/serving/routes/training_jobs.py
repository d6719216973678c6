"""``/v1/training-jobs``: train a model on demand, follow the job to its outcome.

Thin wiring over :mod:`sensorguard.pipelines.jobs`: ``POST`` checks and queues the job
(local worker) or triggers the training DAG (``SENSORGUARD_AIRFLOW_URL``) and answers
``202 {"id", "state"}``; ``GET /v1/training-jobs/{id}`` reports ``queued``, ``running``,
``succeeded`` (run id, version, gate verdict and reasons) or ``failed`` (error, hint).
The body is JSON, or ``multipart/form-data`` with a ``job`` field (the same JSON,
without ``asset_ids``) and a ``file`` field (the readings to train on). The API token is
required when one is configured.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from sensorguard.errors import SensorGuardError
from sensorguard.serving.deps import BearerDep, SettingsDep
from sensorguard.serving.errors import DOCS_HINT, JSON, RequestError
from sensorguard.serving.openapi import error_responses
from sensorguard.serving.parsing import read_body
from sensorguard.serving.schemas import IsoTime
from sensorguard.store.assets import ASSET_ID_MAX, ASSET_ID_PATTERN, MODEL_NAME_PATTERN

router = APIRouter(tags=["training"])

State = Literal["queued", "running", "succeeded", "failed"]


class TrainingJobIn(BaseModel):
    """What to train: a model on some assets' stored readings in a time window."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    model: str = Field(
        min_length=1,
        max_length=ASSET_ID_MAX,
        pattern=MODEL_NAME_PATTERN,
        description="Registered model (machine type) to train a version of.",
    )
    asset_ids: (
        list[Annotated[str, StringConstraints(max_length=ASSET_ID_MAX, pattern=ASSET_ID_PATTERN)]]
        | None
    ) = Field(
        default=None,
        min_length=1,
        description="Assets whose stored readings train it (or upload a file).",
    )
    start: IsoTime | None = Field(default=None, description="Window start (inclusive).")
    end: IsoTime | None = Field(default=None, description="Window end (exclusive).")
    detector: str | None = Field(
        default=None,
        description="Detector name (default: settings; asset-calibrated for several assets).",
    )
    params: dict[str, Any] | None = Field(default=None, description="Detector parameters.")
    holdout: float | None = Field(
        default=None, gt=0, lt=1, description="Held-out share (default 0.3)."
    )


class GateVerdict(BaseModel):
    passed: bool
    evaluated: bool = Field(description="False when the readings had no labels to judge on.")
    reasons: list[str]
    summary: str | None = None
    production_version: int | None = None


class TrainingJob(BaseModel):
    model_config = ConfigDict(protected_namespaces=())
    id: str
    state: State
    model: str
    backend: Literal["local", "airflow"]
    request: dict[str, Any]
    attempts: int
    created_at: str
    started_at: str | None
    finished_at: str | None
    airflow_run_id: str | None = None
    run_id: str | None = Field(default=None, description="MLflow run (succeeded).")
    version: int | None = Field(default=None, description="Registered version (succeeded).")
    gate: GateVerdict | None = Field(default=None, description="The gate's verdict (succeeded).")
    promoted: bool | None = None
    error: str | None = Field(default=None, description="What went wrong (failed).")
    hint: str | None = Field(default=None, description="How to fix it (failed).")


class Accepted(BaseModel):
    id: str
    state: State
    backend: Literal["local", "airflow"]
    location: str


class TrainingJobs(BaseModel):
    jobs: list[TrainingJob]


def _dump(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body, default=str), status_code=status, media_type=JSON, headers=headers
    )


def _bad(exc: SensorGuardError) -> RequestError:
    return RequestError(422, "bad_training_job", exc.message, exc.hint)


def _check_documented(doc: Any) -> None:
    """The job against its documented schema (types, patterns, ranges), so what the schema
    refuses is refused; ``check_request`` then checks what a schema cannot say (the
    detector and its parameters, ``end`` after ``start``, a file or assets)."""
    try:
        TrainingJobIn.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise RequestError(
            422, "bad_training_job", f"invalid training job: {where}: {first['msg']}", DOCS_HINT
        ) from None


_EXAMPLE = {"model": "pump-centrifugal", "asset_ids": ["pump-01", "pump-02"]}


@router.post(
    "/v1/training-jobs",
    summary="Queue a training job (202 with its id)",
    status_code=202,
    response_model=Accepted,
    responses=error_responses(400, 401, 403, 413, 415, 422, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                JSON: {
                    "schema": TrainingJobIn.model_json_schema(),
                    "example": _EXAMPLE,
                },
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["job", "file"],
                        "properties": {
                            "job": {
                                "type": "string",
                                "description": "TrainingJobIn as JSON, without asset_ids",
                            },
                            "file": {"type": "string", "format": "binary"},
                        },
                    }
                },
            },
        }
    },
)
async def submit(request: Request, settings: SettingsDep, _: BearerDep) -> Response:
    from sensorguard.pipelines.jobs import submit_job

    ctype = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    upload: bytes | None = None
    upload_name: str | None = None
    if ctype == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=5)
        raw = form.get("job")
        file = form.get("file")
        if not isinstance(raw, str) or file is None or isinstance(file, str):
            raise RequestError(
                422,
                "bad_training_job",
                "a multipart training job needs a "
                "'job' field (JSON) and a 'file' field (the readings)",
                "see the API description at /docs",
            )
        upload = await file.read()
        upload_name = file.filename or "upload.csv"
        text = raw.encode()
        if len(upload) > settings.max_body_bytes:
            raise RequestError(
                413,
                "body_too_large",
                "the uploaded file is too large",
                "raise SENSORGUARD_MAX_BODY_MB or train from the store",
            )
    elif ctype in ("", JSON) or ctype.endswith("+json"):
        text = await read_body(
            request.stream(), request.headers.get("content-length"), settings.max_body_bytes
        )
    else:
        raise RequestError(
            415,
            "unsupported_media_type",
            f"expected application/json or multipart/form-data, got {ctype}",
            "send the job as JSON",
        )
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise RequestError(
            400,
            "malformed_json",
            f"the training job is not valid JSON: {exc}",
            'e.g. {"model": "pump-a", "asset_ids": ["pump-01"]}',
        ) from None
    _check_documented(doc)
    try:
        job = await run_in_threadpool(
            submit_job, doc, upload=upload, upload_name=upload_name, settings=settings
        )
    except SensorGuardError as exc:
        raise _bad(exc) from None
    location = f"/v1/training-jobs/{job.id}"
    return _dump(
        {"id": job.id, "state": job.state, "backend": job.backend, "location": location},
        202,
        {"location": location},
    )


@router.get(
    "/v1/training-jobs/{job_id}",
    summary="One training job: its state and outcome",
    response_model=TrainingJob,
    responses=error_responses(401, 403, 404, 503, e404="No such job."),
)
async def get_job(job_id: str, settings: SettingsDep, _: BearerDep) -> Response:
    from sensorguard.pipelines.jobs import job_status
    from sensorguard.store.jobs import get_job as get_row

    if await run_in_threadpool(get_row, job_id, settings.resolved_store_url) is None:
        raise RequestError(
            404,
            "unknown_job",
            f"no training job {job_id!r}",
            "list the jobs with GET /v1/training-jobs",
        )
    try:
        job = await run_in_threadpool(job_status, job_id, settings)
    except SensorGuardError as exc:  # Airflow unreachable: say so, the job is unchanged
        raise RequestError(503, "airflow_unavailable", exc.message, exc.hint) from None
    return _dump(job.to_dict())


@router.get(
    "/v1/training-jobs",
    summary="Training jobs, newest first",
    response_model=TrainingJobs,
    responses=error_responses(401, 403, 503),
)
async def list_jobs(
    settings: SettingsDep,
    _: BearerDep,
    state: State | None = Query(None),
    model: str | None = Query(None),
    limit: int = Query(100, ge=1, le=1000),
) -> Response:
    from sensorguard.store.jobs import list_jobs as rows

    jobs = await run_in_threadpool(
        lambda: rows(state=state, model=model, limit=limit, url=settings.resolved_store_url)
    )
    return _dump({"jobs": [j.to_dict() for j in jobs]})
