"""``/console``: the operator console, server-rendered by the predictor.

Thin wiring: every page asks :mod:`sensorguard.serving.console.data` for plain view
models (store and registry queries, run off the event loop) and renders a Jinja2
template. Forms work without JavaScript (post, then redirect back); with it, the alarm
buttons call the JSON API (``/v1/alarms/{id}/...``) that scripts use, authenticated by
the login cookie plus the CSRF header (see :mod:`.session`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from sensorguard.errors import SensorGuardError
from sensorguard.serving.console import alarm_view, data, models_view, session

ROOT = "/console"
STATIC = f"{ROOT}/static"
_HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(_HERE / "templates"))
router = APIRouter(prefix=ROOT, include_in_schema=False)


def static_app() -> StaticFiles:
    """The console's CSS and JS, shipped in the package (the page needs no internet)."""
    return StaticFiles(directory=str(_HERE / "static"))


def _token(request: Request) -> str | None:
    settings = request.app.state.settings
    return settings.api_token or None


def _detectors(request: Request) -> dict[str, Any]:
    """The models this predictor has loaded, by name: thresholds and state profiles."""
    out: dict[str, Any] = {}
    holder = getattr(request.app.state, "holder", None)
    served = getattr(holder, "served", None)
    if served is not None:
        out[served.name] = served.detector
    pool = getattr(request.app.state, "pool", None)
    for extra in getattr(pool, "extra", {}).values():
        model = getattr(extra, "served", None)
        if model is not None:
            out.setdefault(model.name, model.detector)
    return out


def _safe_next(value: str | None) -> str:
    # Only same-site paths under the console: an open redirect would let a link log an
    # operator in and then send them anywhere.
    if value and value.startswith(ROOT) and not value.startswith("//"):
        return value
    return ROOT


def _render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    csrf = request.cookies.get(session.CSRF_COOKIE) or session.new_csrf()
    token = _token(request)
    base = {
        "root": ROOT,
        "static": STATIC,
        "csrf": csrf,
        "logged_in": session.logged_in(request.cookies, token),
        "token_required": token is not None,
        "admin": token is not None and session.logged_in(request.cookies, token),
        "user": request.cookies.get("sg_user", ""),
        "flash": request.query_params.get("flash"),
        "flash_kind": request.query_params.get("kind"),
    }
    base.update(context)
    response = templates.TemplateResponse(request, name, base, status_code=status)
    if request.cookies.get(session.CSRF_COOKIE) != csrf:
        response.set_cookie(
            session.CSRF_COOKIE,
            csrf,
            httponly=False,
            samesite="strict",
            path="/",
            secure=request.url.scheme == "https",
        )
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "frame-ancestors 'none'"
    )
    return response


def _login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{ROOT}/login?next={quote(target)}", status_code=303)


def _back(path: str, flash: str, kind: str = "") -> RedirectResponse:
    extra = f"&kind={kind}" if kind else ""
    return RedirectResponse(f"{path}?flash={quote(flash)}{extra}", status_code=303)


def _guard(request: Request) -> RedirectResponse | None:
    if not session.logged_in(request.cookies, _token(request)):
        return _login_redirect(request)
    return None


def _check_post(request: Request, csrf: str) -> Response | None:
    """Login (when a token is set) and a matching CSRF token, or a refusal."""
    if not session.csrf_ok(request.cookies, csrf):
        return HTMLResponse(
            "The form expired or came from another site (CSRF check failed). "
            "Go back, reload the page and try again.",
            status_code=403,
        )
    return _guard(request)


# ---------------------------------------------------------------------- login
@router.get("/login")
async def login_page(request: Request, next: str = ROOT) -> Response:
    if _token(request) is None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return _render(request, "login.html", page="login", next=_safe_next(next))


@router.post("/login")
async def login(
    request: Request, token: str = Form(...), csrf: str = Form(""), next: str = Form(ROOT)
) -> Response:
    if not session.csrf_ok(request.cookies, csrf):
        return _render(
            request,
            "login.html",
            403,
            page="login",
            next=_safe_next(next),
            flash="The login form expired; try again.",
            flash_kind="error",
        )
    expected = _token(request)
    if expected is None:
        return RedirectResponse(_safe_next(next), status_code=303)
    if not session.same(token.strip(), expected):
        return _render(
            request,
            "login.html",
            401,
            page="login",
            next=_safe_next(next),
            flash="That token is not valid.",
            flash_kind="error",
        )
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        session.TOKEN_COOKIE,
        expected,
        httponly=True,
        samesite="strict",
        path="/",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
async def logout(request: Request, csrf: str = Form("")) -> Response:
    if not session.csrf_ok(request.cookies, csrf):
        return HTMLResponse("CSRF check failed; reload the page and try again.", status_code=403)
    response = RedirectResponse(f"{ROOT}/login", status_code=303)
    response.delete_cookie(session.TOKEN_COOKIE, path="/")
    return response


# ---------------------------------------------------------------------- pages
@router.get("")
@router.get("/")
async def overview(request: Request) -> Response:
    if (r := _guard(request)) is not None:
        return r
    settings = request.app.state.settings
    t0 = time.perf_counter()
    rows = await run_in_threadpool(data.overview_rows, settings, _detectors(request))
    response = _render(
        request,
        "overview.html",
        page="overview",
        assets=rows,
        summary=data.summary(rows),
        generated_at=data.now_text(),
        refresh_seconds=settings.console_refresh_seconds,
    )
    response.headers["Server-Timing"] = f"render;dur={(time.perf_counter() - t0) * 1000:.1f}"
    return response


@router.get("/fragments/assets")
async def overview_rows(request: Request) -> Response:
    if not session.logged_in(request.cookies, _token(request)):
        return HTMLResponse("", status_code=401)
    rows = await run_in_threadpool(
        data.overview_rows, request.app.state.settings, _detectors(request)
    )
    return _render(request, "_asset_rows.html", assets=rows)


@router.get("/assets/{asset_id}")
async def asset_page(request: Request, asset_id: str) -> Response:
    if (r := _guard(request)) is not None:
        return r
    found = await run_in_threadpool(data.asset_detail, asset_id, request.app.state.settings)
    if found is None:
        return _render(
            request, "base.html", 404, flash=f"No asset {asset_id!r}.", flash_kind="error"
        )
    asset, alarms = found
    return _render(request, "asset.html", page="overview", asset=asset, alarms=alarms)


@router.get("/alarms")
async def alarms_page(
    request: Request, state: str = "", asset: str = "", kind: str = ""
) -> Response:
    if (r := _guard(request)) is not None:
        return r
    kind = kind if kind in data.ALARM_KINDS else ""  # an unknown kind lists every alarm
    rows = await run_in_threadpool(
        data.alarm_rows, request.app.state.settings, state or None, asset or None, kind or None
    )
    return _render(
        request,
        "alarms.html",
        page="alarms",
        alarms=rows,
        state=state,
        asset=asset,
        kind=kind,
        kinds=[{"value": k, "label": data.kind_text(k)} for k in data.ALARM_KINDS],
    )


@router.get("/alarms/{alarm_id}")
async def alarm_page(request: Request, alarm_id: int) -> Response:
    if (r := _guard(request)) is not None:
        return r
    alarm = await run_in_threadpool(
        alarm_view.alarm_detail, alarm_id, request.app.state.settings, _detectors(request)
    )
    if alarm is None:
        return _render(
            request,
            "base.html",
            404,
            page="alarms",
            flash=f"No alarm #{alarm_id}.",
            flash_kind="error",
        )
    return _render(request, "alarm.html", page="alarms", alarm=alarm)


@router.post("/alarms/{alarm_id}/acknowledge")
async def acknowledge(
    request: Request, alarm_id: int, csrf: str = Form(""), by: str = Form("")
) -> Response:
    if (r := _check_post(request, csrf)) is not None:
        return r
    path = f"{ROOT}/alarms/{alarm_id}"
    try:
        await run_in_threadpool(data.acknowledge, alarm_id, by, request.app.state.settings)
    except SensorGuardError as exc:
        return _back(path, exc.message, "error")
    return _back(path, "Acknowledged.")


@router.post("/alarms/{alarm_id}/label")
async def label(
    request: Request,
    alarm_id: int,
    csrf: str = Form(""),
    label: str = Form(...),
    failure_mode: str = Form(""),
    note: str = Form(""),
    by: str = Form(""),
) -> Response:
    if (r := _check_post(request, csrf)) is not None:
        return r
    path = f"{ROOT}/alarms/{alarm_id}"
    try:
        await run_in_threadpool(
            data.label,
            alarm_id,
            label,
            failure_mode or None,
            note or None,
            by,
            request.app.state.settings,
        )
    except SensorGuardError as exc:
        return _back(path, exc.message, "error")
    return _back(path, f"Labelled {label}.")


@router.get("/models")
async def models_page(request: Request) -> Response:
    if (r := _guard(request)) is not None:
        return r
    models = await run_in_threadpool(models_view.model_views, request.app.state.settings)
    return _render(request, "models.html", page="models", models=models)


@router.post("/models/{name}/rollback")
async def rollback(
    request: Request, name: str, csrf: str = Form(""), reason: str = Form("")
) -> Response:
    if (r := _check_post(request, csrf)) is not None:
        return r
    if _token(request) is None:
        return _back(f"{ROOT}/models", "Rollback needs SENSORGUARD_API_TOKEN (admin).", "error")
    try:
        text = await run_in_threadpool(
            models_view.rollback, name, reason, request.app.state.settings
        )
    except SensorGuardError as exc:
        return _back(f"{ROOT}/models", exc.message, "error")
    return _back(f"{ROOT}/models", text)
