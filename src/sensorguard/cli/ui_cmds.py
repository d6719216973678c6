"""``ui``: the MLflow UI on the embedded store.

Wiring only: the server command line and its environment come from
:mod:`sensorguard.deploy.local_stack`, as for ``stack up``.
"""

from __future__ import annotations

import typer

from sensorguard.cli._common import console, err_console, guarded
from sensorguard.cli.models_cmds import _settings


def ui(
    port: int = typer.Option(5000, "--port", min=1, max=65535, help="Port of the MLflow UI."),
    host: str = typer.Option("127.0.0.1", "--host", help="Bind address (loopback by default)."),
) -> None:
    """Serve the MLflow UI on the embedded store (runs, registry, artifacts)."""
    import os
    import subprocess

    from sensorguard.deploy.local_stack import lean_mlflow_env, mlflow_server_command
    from sensorguard.registry import configure_mlflow, ensure_experiment

    settings = _settings()
    if not settings.is_embedded:
        console.print(
            f"MLflow runs as a server here: open {settings.resolved_tracking_uri}", highlight=False
        )
        return
    configure_mlflow(settings)
    ensure_experiment(settings.experiment, settings)  # creates the store on first use
    cmd = mlflow_server_command(settings.artifact_root.as_uri(), host, port)
    err_console.print(
        f"MLflow UI on http://{host}:{port} (store {settings.resolved_tracking_uri}); "
        "Ctrl+C stops it",
        highlight=False,
    )
    # the backend by environment, as for the stack's server (argv is visible to every user)
    env = {
        **lean_mlflow_env(),
        **os.environ,
        "MLFLOW_BACKEND_STORE_URI": settings.resolved_tracking_uri,
    }
    try:
        code = subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        code = 0
    if code:
        raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("ui")(guarded(ui))
