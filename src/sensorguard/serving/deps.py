"""What a route needs, stated in its signature (FastAPI dependencies).

``create_app`` puts the settings, the model holder and the metrics on ``app.state``; a
route asks for them with ``settings: SettingsDep`` or ``holder: HolderDep``, and for a
token check with ``_: BearerDep`` (the API token, when one is configured) or
``_: AdminDep`` (admin endpoints: a token must be configured and sent). The token checks
read the ``Authorization`` header from the request instead of declaring it as a header
parameter, so the OpenAPI describes them once, as the ``bearer`` security scheme.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from sensorguard.serving.auth import check_admin, check_bearer
from sensorguard.serving.holder import ModelHolder
from sensorguard.serving.metrics import ServingMetrics
from sensorguard.serving.settings import ServingSettings


def get_settings(request: Request) -> ServingSettings:
    settings: ServingSettings = request.app.state.settings
    return settings


def get_holder(request: Request) -> ModelHolder:
    holder: ModelHolder = request.app.state.holder
    return holder


def get_metrics(request: Request) -> ServingMetrics:
    metrics: ServingMetrics = request.app.state.metrics
    return metrics


SettingsDep = Annotated[ServingSettings, Depends(get_settings)]
HolderDep = Annotated[ModelHolder, Depends(get_holder)]
MetricsDep = Annotated[ServingMetrics, Depends(get_metrics)]


def require_bearer(request: Request, settings: SettingsDep) -> None:
    """The API token, when one is configured (401 without, 403 when wrong)."""
    if settings.api_token:
        check_bearer(request.headers.get("authorization"), settings.api_token)


def require_admin(request: Request, settings: SettingsDep) -> None:
    """Admin endpoints: 404 while no token is configured, else the token."""
    check_admin(request.headers.get("authorization"), settings.api_token)


BearerDep = Annotated[None, Depends(require_bearer)]
AdminDep = Annotated[None, Depends(require_admin)]
