"""Detectors behind one protocol, selectable by name.

Add a detector: subclass ``BaseDetector``, give it a unique ``name`` and list it in
``_REGISTRY`` below (imported lazily so ``import sensorguard`` stays cheap).
"""

from __future__ import annotations

import importlib
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


def make_detector(name: str, **params: Any) -> BaseDetector:
    """A fresh, unfitted detector by name, with optional parameters."""
    cls = get_detector_class(name)
    try:
        return cls(**params)
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
