"""The predictor service (FastAPI). Only this package imports FastAPI.

``create_app`` is imported lazily so ``import sensorguard.serving.settings`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from sensorguard.serving.app import create_app


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from sensorguard.serving.app import create_app

        return create_app
    raise AttributeError(name)


__all__ = ["create_app"]
