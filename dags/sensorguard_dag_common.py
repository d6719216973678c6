"""Helpers shared by the SensorGuard DAG files (not a DAG itself).

The DAG files put the DAGs folder on ``sys.path`` and import this module by its
name. It imports only the Airflow SDK and pendulum; ``sensorguard`` is imported inside
the task wrapper, so parsing the DAG files stays cheap.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import pendulum
from airflow.sdk import Asset, Param

START_DATE = pendulum.datetime(2026, 1, 1, tz="UTC")

F = TypeVar("F", bound=Callable[..., Any])


def schedule_off(schedule: str) -> bool:
    """True for a schedule variable that turns the timed schedule off."""
    return schedule.strip().lower() in {"", "none", "off"}


def drift_asset(model_name: str) -> Asset:
    """The Asset the monitor DAG updates when recent readings drift."""
    return Asset(f"sensorguard://models/{model_name}/drift")


def default_args(retry_minutes: int, **extra: Any) -> dict[str, Any]:
    """``default_args`` of the SensorGuard DAGs: owner, two retries, the given delay."""
    return {
        "owner": "sensorguard",
        "retries": 2,
        "retry_delay": pendulum.duration(minutes=retry_minutes),
        **extra,
    }


def optional(type_: str, default: Any, description: str) -> Param:
    """A parameter of ``type_`` that may also be left empty (``None``)."""
    return Param(default, type=["null", type_], description=description)


def run_ref(ctx: Mapping[str, Any]) -> str:
    """``<dag_id>/<run_id>`` of the running task's DAG run."""
    return f"{ctx['dag'].dag_id}/{ctx['run_id']}"


def trigger(ctx: Mapping[str, Any]) -> str:
    """What to record as the trigger of registry changes made by this run."""
    return f"airflow:{run_ref(ctx)}"


def fail_fast_on_bad_input(fn: F) -> F:
    """Bad data or configuration fails the task at once: a retry cannot fix it.

    An unreachable registry (``RegistryError``) is still retried, since the server may
    come back; any other ``SensorGuardError`` becomes ``AirflowFailException`` carrying
    the one-line message and hint.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from airflow.sdk.exceptions import AirflowFailException

        from sensorguard.errors import RegistryError, SensorGuardError

        try:
            return fn(*args, **kwargs)
        except RegistryError:
            raise
        except SensorGuardError as exc:
            raise AirflowFailException(str(exc)) from None

    return wrapper  # type: ignore[return-value]
