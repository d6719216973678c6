"""Detectors behind one protocol, selectable by name.

Add a detector: subclass ``BaseDetector``, give it a unique ``name`` and list it in
``_REGISTRY`` below (imported lazily so ``import sensorguard`` stays cheap).
"""

from __future__ import annotations

import importlib
import json
from typing import Any

from sensorguard.detectors.base import (
    BaseDetector,
    DetectionResult,
    Detector,
    SensorSchema,
    load_detector,
)
from sensorguard.errors import SensorGuardError

# name -> "module:Class"
_REGISTRY: dict[str, str] = {
    "operating-states": "sensorguard.detectors.states:OperatingStateDetector",
    "pca": "sensorguard.detectors.pca:PCADetector",
    "iforest": "sensorguard.detectors.iforest:IsolationForestDetector",
    "drift-robust": "sensorguard.detectors.robust:DriftRobustDetector",
}


def available_detectors() -> list[str]:
    return sorted(_REGISTRY)


def get_detector_class(name: str) -> type[BaseDetector]:
    try:
        target = _REGISTRY[name]
    except KeyError:
        raise SensorGuardError(
            f"unknown detector '{name}'",
            f"choose one of: {', '.join(available_detectors())}",
        ) from None
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)  # type: ignore[no-any-return]


def _check_params(name: str, cls: type[BaseDetector], params: dict[str, Any]) -> dict[str, Any]:
    """Names and value types of ``params`` against ``cls``'s constructor defaults.

    A wrong name, a value of the wrong type (e.g. ``margin="abc"``) or out of range
    (``quantile=1.5``, see :mod:`sensorguard.detectors.params`) is a one-line
    ``SensorGuardError`` naming the parameter, not a crash in ``fit``.
    Integral floats given for an int parameter (``6.0``) are converted.
    """
    import inspect

    from sensorguard.detectors.params import check_ranges

    sig = inspect.signature(cls.__init__)
    defaults = {
        k: p.default
        for k, p in sig.parameters.items()
        if k != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    accepted = ", ".join(f"{k}={v!r}" for k, v in defaults.items())
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key not in defaults:
            raise SensorGuardError(
                f"detector '{name}' has no parameter '{key}'",
                f"use one of (with defaults): {accepted}",
            )
        default = defaults[key]
        kind: str | None = None
        if isinstance(default, bool):
            kind = None if isinstance(value, bool) else "true or false"
        elif isinstance(default, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            kind = None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            kind = None if ok else "a number"
        elif isinstance(default, str):
            kind = None if isinstance(value, str) else "a string"
        if kind is not None:
            raise SensorGuardError(
                f"bad value {value!r} for parameter '{key}' of detector '{name}': "
                f"it must be {kind}",
                f"e.g. --param {key}={json.dumps(default)}",
            )
        out[key] = value
    check_ranges(name, out, defaults)
    return out


def make_detector(name: str, **params: Any) -> BaseDetector:
    """A fresh, unfitted detector by name, with optional parameters (names and types checked)."""
    cls = get_detector_class(name)
    checked = _check_params(name, cls, params)
    try:
        return cls(**checked)
    except TypeError as exc:
        raise SensorGuardError(
            f"bad parameter for detector '{name}': {exc}",
            f"see the parameters of {cls.__name__}",
        ) from None


__all__ = [
    "BaseDetector",
    "DetectionResult",
    "Detector",
    "SensorSchema",
    "available_detectors",
    "get_detector_class",
    "load_detector",
    "make_detector",
]
