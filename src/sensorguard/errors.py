"""Errors a user can act on.

Every error raised at a user-facing boundary (CLI, HTTP, files) is a
``SensorGuardError``: its message says what is wrong and, in ``hint``, how to fix
it. Entry points print ``str(err)`` on one line and never a stack trace.
"""

from __future__ import annotations


class SensorGuardError(Exception):
    """Base class: a problem the user can fix. ``hint`` says how."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message


class DataValidationError(SensorGuardError, ValueError):
    """Input readings break the data contract (file, column and row are named)."""


class SchemaMismatchError(SensorGuardError, ValueError):
    """Readings do not match the sensor schema a model was trained on."""

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        missing: list[str] | None = None,
        extra: list[str] | None = None,
    ) -> None:
        super().__init__(message, hint)
        self.missing = missing or []
        self.extra = extra or []


class NotFittedError(SensorGuardError, AttributeError):
    """A detector was used before ``fit``."""


class ConfigurationError(SensorGuardError):
    """Settings are missing or inconsistent."""


class RegistryError(SensorGuardError):
    """The model registry is unreachable or lacks the requested model/alias/version."""


class MonitorAlert(SensorGuardError):
    """The registry is in a state that needs a person (e.g. an ungated production model)."""


class NothingToMonitor(SensorGuardError):
    """There is no production model yet, so there is nothing to compare against."""
