"""The ``sensorguard`` command line: wiring only, every command calls library functions.

Each command group lives in its own module: plain functions, and a ``register(app)``
that adds each one wrapped in :func:`~sensorguard.cli._common.guarded` (one-line errors).
Heavy libraries are imported inside the commands so ``--help`` is fast.
"""

from __future__ import annotations

import importlib

import typer

from sensorguard import __version__

app = typer.Typer(
    name="sensorguard",
    help=(
        "SensorGuard: learn what normal operation of a machine looks like, flag sensor "
        "failures early, say which sensors are to blame, and manage every model through "
        "MLflow (tracked runs, registry, gated promotion, rollback)."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="markdown",
)

# Modules that add commands to `app` (each defines `register(app)`).
_COMMAND_MODULES = [
    "sensorguard.cli.data_cmds",
    "sensorguard.cli.model_cmds",
    "sensorguard.cli.train_cmds",
    "sensorguard.cli.ui_cmds",
    "sensorguard.cli.models_cmds",
    "sensorguard.cli.serve_cmds",
    "sensorguard.cli.stack_cmds",
    "sensorguard.cli.bench_cmds",
    "sensorguard.cli.monitor_cmds",
    "sensorguard.cli.live_cmds",
    "sensorguard.cli.assets_cmds",
    "sensorguard.cli.jobs_cmds",
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sensorguard {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """SensorGuard command line."""


def _register() -> None:
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(app)


_register()


def main() -> None:
    app()
