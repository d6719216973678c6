"""Point MLflow at the right store, and turn registry failures into clear errors.

Embedded default (no configuration): tracking and registry in ``<home>/mlflow.db``
(SQLite), artifacts under ``<home>/artifacts`` through the experiment's artifact
location. ``MLFLOW_TRACKING_URI`` (or ``SENSORGUARD_TRACKING_URI``) points everything at
a real MLflow server instead. Nothing happens at import time; ``mlflow`` itself is
imported lazily because importing it costs about two seconds.

``MLFLOW_ALLOW_PICKLE_DESERIALIZATION`` defaults to ``false`` here: SensorGuard models
are pickle-free, and the loader (:mod:`sensorguard.registry.models`) never hands a model to
MLflow's pyfunc loader anyway (see docs/deployment.md, "Trust model").
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from sensorguard.config import Settings, get_settings
from sensorguard.errors import RegistryError

if TYPE_CHECKING:  # pragma: no cover
    from mlflow.tracking import MlflowClient

_configured: dict[str, str] = {}
_reachable: dict[str, float] = {}  # server URI -> monotonic time of the last good probe
_PROBE_TTL_S = 30.0
_HTTP_KEYS = (
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
    "MLFLOW_HTTP_REQUEST_TIMEOUT",
)
# variables the user set before SensorGuard touched them win over the settings
_USER_HTTP_ENV = frozenset(k for k in _HTTP_KEYS if k in os.environ)


def mlflow_http_env(settings: Settings) -> dict[str, str]:
    """MLflow's HTTP client knobs, decided here and only here, from the settings.

    MLflow's own retry loop (7 retries, backoff factor 2) stalls a command for minutes
    when a server is down, so commands retry ``registry_http_retries`` times (3); the
    predictor sets 0 (``ServingSettings``) because its poll loop is the retry. Each call
    may take ``registry_timeout`` seconds."""
    return {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(settings.registry_http_retries),
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, round(settings.registry_timeout))),
    }


def configure_mlflow(settings: Settings | None = None) -> Settings:
    """Set MLflow's tracking and registry URIs from ``settings``; returns the settings.

    For the embedded store the home folder is created here (lazily, on first use),
    never at import time. A remote server is probed once so an unreachable server is
    reported in seconds, with a hint, instead of after MLflow's long retry loop.
    """
    import mlflow

    os.environ.setdefault("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    settings = settings or get_settings()
    tracking = settings.resolved_tracking_uri
    registry = settings.resolved_registry_uri
    if settings.is_embedded:
        settings.home.mkdir(parents=True, exist_ok=True)
        settings.artifact_root.mkdir(parents=True, exist_ok=True)
    else:
        for key, value in mlflow_http_env(settings).items():
            if key not in _USER_HTTP_ENV:
                os.environ[key] = value
        _probe_server(tracking)
    if _configured.get("tracking") != tracking or mlflow.get_tracking_uri() != tracking:
        mlflow.set_tracking_uri(tracking)
        _configured["tracking"] = tracking
    if _configured.get("registry") != registry or mlflow.get_registry_uri() != registry:
        mlflow.set_registry_uri(registry)
        _configured["registry"] = registry
    return settings


def get_client(settings: Settings | None = None) -> MlflowClient:
    """An ``MlflowClient`` on the configured tracking and registry stores."""
    from mlflow.tracking import MlflowClient

    settings = configure_mlflow(settings)
    return MlflowClient(settings.resolved_tracking_uri, settings.resolved_registry_uri)


def ensure_experiment(name: str, settings: Settings | None = None) -> str:
    """The id of experiment ``name``, created on first use.

    On the embedded store the experiment's artifact location is ``<home>/artifacts/<name>``
    so run artifacts and model files stay inside the SensorGuard home; a server decides
    its own artifact location.
    """
    settings = configure_mlflow(settings)
    client = get_client(settings)
    with registry_errors(f"experiment '{name}'", settings):
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                client.restore_experiment(exp.experiment_id)
            return str(exp.experiment_id)
        location = None
        if settings.is_embedded:
            folder = settings.artifact_root / name
            folder.mkdir(parents=True, exist_ok=True)
            location = folder.resolve().as_uri()
        try:
            return str(client.create_experiment(name, artifact_location=location))
        except Exception:  # another process created it meanwhile
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
            return str(exp.experiment_id)


def _server_hint(uri: str) -> str:
    return (
        f"start the MLflow server at {uri}, or unset MLFLOW_TRACKING_URI / "
        "SENSORGUARD_TRACKING_URI to use the embedded store"
    )


def _probe_server(uri: str) -> None:
    import time

    if not uri.startswith(("http://", "https://")):
        return
    if time.monotonic() - _reachable.get(uri, -1e9) < _PROBE_TTL_S:
        return
    import httpx

    try:
        httpx.get(uri.rstrip("/") + "/health", timeout=5.0)
    except httpx.HTTPError as exc:
        raise RegistryError(
            f"cannot reach the MLflow server at {uri} ({type(exc).__name__})",
            _server_hint(uri),
        ) from None
    _reachable[uri] = time.monotonic()


@contextlib.contextmanager
def registry_errors(what: str, settings: Settings | None = None) -> Iterator[None]:
    """Re-raise MLflow failures about ``what`` as a ``RegistryError`` with a hint."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except RegistryError:
        raise
    except MlflowException as exc:
        code = getattr(exc, "error_code", "")
        first = str(exc.message if hasattr(exc, "message") else exc).splitlines()[0]
        if code == "RESOURCE_DOES_NOT_EXIST" or "not found" in first.lower():
            raise RegistryError(
                f"{what} not found in the registry",
                "list what exists with `sensorguard models list`; train one with "
                "`sensorguard train` or `sensorguard demo`",
            ) from None
        uri = (settings or get_settings()).resolved_tracking_uri
        if "connection" in first.lower() or "max retries" in first.lower():
            raise RegistryError(
                f"cannot reach the MLflow server at {uri}", _server_hint(uri)
            ) from None
        raise RegistryError(f"MLflow error on {what}: {first}") from None
    except OSError as exc:
        uri = (settings or get_settings()).resolved_tracking_uri
        raise RegistryError(
            f"MLflow store at {uri} failed on {what}: {exc}", _server_hint(uri)
        ) from None
