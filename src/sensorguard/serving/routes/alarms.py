"""``/v1/alarms``: the alarms the watch service raised, and the operators' answers.

Thin wiring over :mod:`sensorguard.store.alarms` (the same functions the console and the
label-based gate use), run in a worker thread so a store round trip never stalls the
event loop. Reads need the API token when one is configured; acknowledging and labelling
write, so they need it too (or the console's login cookie plus its CSRF header).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from sensorguard.errors import DataValidationError
from sensorguard.serving.auth import check_bearer
from sensorguard.serving.deps import BearerDep, SettingsDep
from sensorguard.serving.errors import RequestError
from sensorguard.serving.openapi import error_responses
from sensorguard.serving.schemas import AlarmKind as Kind
from sensorguard.serving.schemas import IsoTime, UtcTime

router = APIRouter(tags=["alarms"])

INT64_MAX = 2**63 - 1  # the store's integer columns (and SQLite's) hold no more
AlarmId = Annotated[int, Path(ge=1, le=INT64_MAX, description="The alarm's id.")]


class AlarmLabel(BaseModel):
    label: Literal["failure", "false_alarm", "maintenance"]
    failure_mode: str | None = None
    note: str | None = None
    by: str | None = None
    at: UtcTime


class Alarm(BaseModel):
    """One alarm event. ``start``/``end`` are the first/last reading in alarm (UTC);
    ``end`` is null while it is open (``last_time`` = its newest reading so far)."""

    id: int
    asset_id: str
    kind: str = Field(description="failure (the detector) or a data-quality kind")
    sensor: str = Field(description="the sensor a data-quality alarm is about; '' otherwise")
    state: Literal["open", "closed"]
    start: UtcTime
    end: UtcTime | None
    last_time: UtcTime
    duration_s: float | None
    model_name: str
    model_version: str
    peak_score: float | None
    n_readings: int
    first_top_sensors: list[str] = Field(description="sensors to blame when it opened")
    top_sensors: list[str] = Field(description="sensors to blame over the whole event")
    failure_type: int | None = Field(description="nearest failure type of the model's profiles")
    close_reason: str | None = Field(description="normal, or model_changed after a promotion")
    detail: dict[str, Any]
    opened_at: UtcTime
    updated_at: UtcTime
    closed_at: UtcTime | None
    acknowledged: bool
    acknowledged_at: UtcTime | None
    acknowledged_by: str | None
    label: AlarmLabel | None = Field(description="the latest operator label")


class AlarmDetail(Alarm):
    labels: list[AlarmLabel] = Field(description="every label given, oldest first")


class AlarmList(BaseModel):
    alarms: list[Alarm]
    total: int = Field(description="alarms matching the filters (all pages)")
    limit: int
    offset: int


class Acknowledge(BaseModel):
    by: str | None = Field(default=None, max_length=200, description="who acknowledges")


class LabelRequest(BaseModel):
    label: Literal["failure", "false_alarm", "maintenance"]
    failure_mode: str | None = Field(default=None, max_length=200)
    note: str | None = Field(default=None, max_length=10_000)
    by: str | None = Field(default=None, max_length=200)


def require_writer(request: Request, settings: SettingsDep) -> None:
    """With a token configured: the bearer token, or the console's cookie + CSRF header."""
    token = settings.api_token
    if not token:
        return
    from sensorguard.serving.console.session import cookie_auth_ok

    if cookie_auth_ok(request.cookies, request.headers, token):
        return
    check_bearer(request.headers.get("authorization"), token)


WriterDep = Annotated[None, Depends(require_writer)]


def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    from sensorguard.store.alarms import AlarmNotFound

    try:
        return fn(*args, **kwargs)
    except AlarmNotFound as exc:
        raise RequestError(404, "alarm_not_found", exc.message, exc.hint) from None
    except DataValidationError as exc:
        raise RequestError(422, "invalid_request", exc.message, exc.hint) from None


@router.get(
    "/v1/alarms",
    response_model=AlarmList,
    summary="List alarms (newest first)",
    responses=error_responses(401, 403, 422, 503),
)
async def list_alarms(
    settings: SettingsDep,
    _: BearerDep,
    asset: str | None = Query(None, max_length=200, description="only this asset"),
    kind: Kind | None = Query(None, description="only this kind"),
    state: Literal["open", "closed"] | None = Query(None),
    start: IsoTime | None = Query(None, description="alarms still running at or after this"),
    end: IsoTime | None = Query(None, description="alarms that began before this"),
    label: Literal["failure", "false_alarm", "maintenance"] | None = Query(
        None, description="only alarms whose latest operator label is this"
    ),
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=INT64_MAX),
) -> dict[str, Any]:
    from sensorguard.store.alarms import list_alarms as query
    from sensorguard.timeutil import to_utc_naive

    lo = None if start is None else to_utc_naive(start, what="start").to_pydatetime()
    hi = None if end is None else to_utc_naive(end, what="end").to_pydatetime()
    rows, total = await run_in_threadpool(
        _call,
        query,
        asset=asset,
        kind=kind,
        state=state,
        start=lo,
        end=hi,
        label=label,
        limit=limit,
        offset=offset,
        url=settings.resolved_store_url,
    )
    return {"alarms": rows, "total": total, "limit": limit, "offset": offset}


@router.get(
    "/v1/alarms/{alarm_id}",
    response_model=AlarmDetail,
    summary="One alarm with its label history",
    responses=error_responses(401, 403, 404, 422, 503),
)
async def get_alarm(alarm_id: AlarmId, settings: SettingsDep, _: BearerDep) -> dict[str, Any]:
    from sensorguard.store.alarms import get_alarm as query

    result: dict[str, Any] = await run_in_threadpool(
        _call, query, alarm_id, settings.resolved_store_url
    )
    return result


@router.post(
    "/v1/alarms/{alarm_id}/acknowledge",
    response_model=AlarmDetail,
    summary="Acknowledge an alarm (the first acknowledgement is kept)",
    responses=error_responses(400, 401, 403, 404, 422, 503),
)
async def acknowledge(
    alarm_id: AlarmId, settings: SettingsDep, _: WriterDep, body: Acknowledge | None = None
) -> dict[str, Any]:
    from sensorguard.store.alarms import acknowledge_alarm

    by = body.by if body is not None else None
    result: dict[str, Any] = await run_in_threadpool(
        _call, acknowledge_alarm, alarm_id, by, settings.resolved_store_url
    )
    return result


@router.post(
    "/v1/alarms/{alarm_id}/label",
    response_model=AlarmDetail,
    summary="Label an alarm: failure, false_alarm or maintenance",
    description="Operator labels are the ground truth of the label-based quality gate "
    "(confirmed failures and false alarms). The latest label counts; all are kept.",
    responses=error_responses(400, 401, 403, 404, 422, 503),
)
async def label(
    alarm_id: AlarmId, body: LabelRequest, settings: SettingsDep, _: WriterDep
) -> dict[str, Any]:
    from sensorguard.store.alarms import label_alarm

    result: dict[str, Any] = await run_in_threadpool(
        _call,
        label_alarm,
        alarm_id,
        body.label,
        failure_mode=body.failure_mode,
        note=body.note,
        by=body.by,
        url=settings.resolved_store_url,
    )
    return result
