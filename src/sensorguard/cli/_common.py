"""Shared CLI helpers: one-line errors, consoles, progress. CLI modules only."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

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
