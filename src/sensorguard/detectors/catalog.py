"""The catalog of detectors: find a detector class by name, build one, load a saved one.

Add a detector: list it in :data:`sensorguard.detectors.names.DETECTORS` (the one
table, below ``base`` so that loading a saved detector needs no catalog import).
"""

from __future__ import annotations

from typing import Any

from sensorguard.detectors.base import BaseDetector, load_detector
from sensorguard.detectors.names import available_detectors, detector_class
from sensorguard.detectors.params import check_params
from sensorguard.errors import SensorGuardError


def get_detector_class(name: str) -> type[BaseDetector]:
    cls: type[BaseDetector] = detector_class(name)
    return cls


def make_detector(name: str, **params: Any) -> BaseDetector:
    """A fresh, unfitted detector by name, with optional parameters: names, types and
    ranges checked (:func:`~sensorguard.detectors.params.check_params`), former names
    accepted (``param_aliases``), integral floats for int parameters converted."""
    cls = get_detector_class(name)
    checked = check_params(name, cls, params, aliases=cls.param_aliases, convert=True)
    try:
        return cls(**checked)
    except TypeError as exc:
        raise SensorGuardError(
            f"bad parameter for detector '{name}': {exc}",
            f"see the parameters of {cls.__name__}",
        ) from None


__all__ = ["available_detectors", "get_detector_class", "load_detector", "make_detector"]
