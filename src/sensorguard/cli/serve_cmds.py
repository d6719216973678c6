"""``sensorguard serve``: the predictor service (FastAPI on uvicorn, one worker)."""

from __future__ import annotations

from typing import Any

import typer

from sensorguard.cli._common import err_console, guarded


def register(app: typer.Typer) -> None:
    app.command("serve", rich_help_panel="Serving")(guarded(serve))


def serve(
    host: str | None = typer.Option(
        None, "--host", help="Bind address [default: SENSORGUARD_HOST or 127.0.0.1]."
    ),
    port: int | None = typer.Option(
        None,
        "--port",
        "-p",
        help="Port; 0 picks a free one and prints it [default: SENSORGUARD_PORT or 8000].",
    ),
    model_name: str | None = typer.Option(
        None, "--model-name", help="Registered model [default: SENSORGUARD_MODEL_NAME]."
    ),
    alias: str | None = typer.Option(
        None,
        "--alias",
        help="Registry alias to serve [default: SENSORGUARD_SERVE_ALIAS, else production].",
    ),
    poll_interval: float | None = typer.Option(
        None,
        "--poll-interval",
        min=0.05,
        help="Seconds between alias checks for hot swap [default: SENSORGUARD_POLL_INTERVAL or 5].",
    ),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning or error."),
    access_log: bool = typer.Option(
        False, "--access-log/--no-access-log", help="Log every request (costs throughput)."
    ),
) -> None:
    """Serve the registry's production model over HTTP, hot-swapping on promotion.

    Loads `models:/NAME@ALIAS` from the configured registry (the embedded SQLite
    store, or the MLflow server in MLFLOW_TRACKING_URI), checks the alias every poll
    interval and swaps to a newly promoted version without dropping a request.
    Endpoints: POST /v1/predict, GET /v1/model, /healthz, /readyz, /metrics, /docs.

    One process runs one uvicorn worker. To use more cores start several processes
    behind a load balancer, or gunicorn with uvicorn workers (see docs/serving.md).
    """
    import logging
    import socket

    import uvicorn
    from pydantic import ValidationError

    from sensorguard.config import redact
    from sensorguard.errors import ConfigurationError
    from sensorguard.serving.app import create_app
    from sensorguard.serving.server import uvicorn_config
    from sensorguard.serving.settings import ServingSettings

    overrides: dict[str, Any] = {
        k: v
        for k, v in {
            "host": host,
            "port": port,
            "model_name": model_name,
            "serve_alias": alias,
            "poll_interval": poll_interval,
        }.items()
        if v is not None
    }
    try:
        settings = ServingSettings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ConfigurationError(
            f"invalid setting {field}: {first['msg']}",
            f"check the option or SENSORGUARD_{field.upper()} in the environment / .env",
        ) from None
    level = log_level.upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigurationError(
            f"unknown log level {log_level!r}", "use debug, info, warning or error"
        )
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    # bind first: a taken port is a one-line error, and --port 0 can report its choice
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except (OSError, OverflowError) as exc:  # OverflowError: port outside 0-65535
        sock.close()
        why = (exc.strerror if isinstance(exc, OSError) else None) or exc
        raise ConfigurationError(
            f"cannot listen on {settings.host}:{settings.port}: {why}",
            "pick another --port (0 = any free port) or stop the process using it",
        ) from None
    bound_port = sock.getsockname()[1]
    shown = f"[{settings.host}]" if family == socket.AF_INET6 else settings.host
    err_console.print(
        f"SensorGuard predictor on http://{shown}:{bound_port} serving "
        f"models:/{settings.model_name}@{settings.alias} from "
        f"{redact(settings.resolved_registry_uri)}",
        highlight=False,
        soft_wrap=True,
    )
    config = uvicorn_config(
        create_app(settings), settings, log_level=log_level.lower(), access_log=access_log
    )
    uvicorn.Server(config).run(sockets=[sock])
