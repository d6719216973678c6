"""Shared CLI helpers: one-line errors, consoles, progress. CLI modules only."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from sensorguard.errors import SensorGuardError

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

EXIT_BAD_INPUT = 2
EXIT_REJECTED = 3


def fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    """Print ``error: message`` on one line and return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


# ---------------------------------------------------------------- reading a readings file
# One spelling of each file-reading option for every command that reads a readings file
# (`sep: SepOpt = None`); the default stays in the command's signature.
SepOpt = Annotated[
    str | None,
    typer.Option(
        "--sep", help="CSV separator (',', ';', tab, '|', whitespace); default: detected."
    ),
]
TimeColumnOpt = Annotated[
    str | None,
    typer.Option("--time-column", help="Time column (default: timestamp/time/datetime/date)."),
]
LabelColumnOpt = Annotated[
    str | None,
    typer.Option(
        "--label-column",
        help="Label column: 0/1 or NORMAL/BROKEN/RECOVERING "
        "(default: machine_status/label/anomaly/status).",
    ),
]
AssetColumnOpt = Annotated[
    str | None,
    typer.Option(
        "--asset-column", help="Asset column (default: asset_id/asset/machine_id/machine)."
    ),
]
IgnoreColumnsOpt = Annotated[
    str | None,
    typer.Option("--ignore-columns", help="Comma-separated columns to drop before anything else."),
]
DuplicatesOpt = Annotated[
    str,
    typer.Option(
        "--duplicates",
        help="Duplicated timestamps of an asset: error (default), last or first (row kept).",
    ),
]
EncodingOpt = Annotated[str, typer.Option("--encoding", help="Text encoding of a CSV file.")]


def split_csv_list(value: str | Iterable[str] | None) -> list[str]:
    """Comma-separated names as a list, blanks dropped; the items of a repeatable option
    are split one by one (``--x a,b --x c`` -> ``[a, b, c]``)."""
    if not value:
        return []
    items = [value] if isinstance(value, str) else list(value)
    return [v.strip() for item in items for v in item.split(",") if v.strip()]


def read_options(
    *,
    sep: str | None = None,
    time_column: str | None = None,
    label_column: str | None = None,
    asset_column: str | None = None,
    ignore_columns: str | None = None,
    duplicates: str | None = None,
    encoding: str | None = None,
) -> dict[str, Any]:
    """A command's file-reading options as keyword arguments of
    :func:`~sensorguard.data.load_readings`: unset ones are left out (the library's
    defaults apply), ``--ignore-columns`` is split on commas."""
    given = {
        "sep": sep,
        "time_column": time_column,
        "label_column": label_column,
        "asset_column": asset_column,
        "duplicates": duplicates,
        "encoding": encoding,
    }
    out: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    if ignore_columns:
        out["ignore_columns"] = split_csv_list(ignore_columns)
    return out


def parse_params(items: list[str] | None, example: str) -> dict[str, Any]:
    """``--param NAME=VALUE`` options as a dict; values are JSON when they parse as JSON.

    ``example`` (e.g. ``margin=1.5``) goes into the hint for a malformed item.
    """
    import json

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise SensorGuardError(
                f"bad --param {item!r}", f"write it as NAME=VALUE, e.g. --param {example}"
            )
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def guarded(fn: F) -> F:
    """Turn user errors into a one-line message and a non-zero exit, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except SensorGuardError as exc:
            raise fail(str(exc)) from None
        except FileNotFoundError as exc:
            raise fail(f"file not found: {exc.filename or exc} — check the path") from None
        except PermissionError as exc:
            raise fail(f"permission denied: {exc.filename or exc}") from None
        except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
            what = {
                FileExistsError: "a file is in the way",
                NotADirectoryError: "not a folder",
                IsADirectoryError: "is a folder, not a file",
            }[type(exc)]
            raise fail(
                f"{exc.filename or exc}: {what} — pass a different path or move it away"
            ) from None
        except KeyboardInterrupt:
            raise fail("interrupted", code=130) from None

    return wrapper  # type: ignore[return-value]


def quiet_mlflow() -> None:
    """MLflow logs INFO lines (migrations, validation) that are noise on a terminal."""
    import logging
    import os

    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def stop_on_signals(stopping: str | None = None) -> threading.Event:
    """An event that SIGTERM and SIGINT (Ctrl-C) set, for the commands that run until
    stopped; with ``stopping``, each signal prints ``SIGTERM: <stopping>`` to stderr."""
    import signal

    stop = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        if stopping:
            err_console.print(f"{signal.Signals(signum).name}: {stopping}")
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    return stop


def progress() -> Any:
    """A Rich progress bar writing to stderr (stdout stays clean for data)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
    )
