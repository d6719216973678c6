"""The catalog of detectors: find a detector class by name, build one, load a saved one.

Add a detector: subclass :class:`~sensorguard.detectors.base.BaseDetector`, give it a
unique ``name`` and list it in ``_REGISTRY`` below (imported lazily so
``import sensorguard`` stays cheap).
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from sensorguard.detectors.base import BaseDetector
from sensorguard.detectors.params import check_params
from sensorguard.errors import DataValidationError, SensorGuardError

# name -> "module:Class"
_REGISTRY: dict[str, str] = {
    "operating-states": "sensorguard.detectors.states:OperatingStateDetector",
    "pca": "sensorguard.detectors.pca:PCADetector",
    "iforest": "sensorguard.detectors.iforest:IsolationForestDetector",
    "drift-robust": "sensorguard.detectors.robust:DriftRobustDetector",
    "asset-calibrated": "sensorguard.detectors.calibrated:AssetCalibrated",
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


def load_detector(path: str | Path) -> BaseDetector:
    """Load any detector saved with ``save`` (dispatches on the stored detector name)."""
    path = Path(path)
    meta_file = path / "detector.json"
    if not meta_file.is_file():
        raise DataValidationError(
            f"{path} does not hold a saved detector (no detector.json)",
            "pass the folder written by `sensorguard train` or Detector.save()",
        )
    meta = json.loads(meta_file.read_text())
    cls = get_detector_class(meta["detector"])
    return cls._from_saved(path, meta)
