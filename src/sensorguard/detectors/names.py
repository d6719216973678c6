"""Detector names -> classes: the one table of the catalog.

The lowest rung of ``detectors/``: it imports no detector module, only the class
path of each name (imported on first use, so ``import sensorguard`` stays cheap).
That lets :mod:`~sensorguard.detectors.base` (load a saved detector by its stored
name) and :mod:`~sensorguard.detectors.catalog` (build one by name) both use it
without importing each other.

Add a detector: subclass :class:`~sensorguard.detectors.base.BaseDetector`, give it
a unique ``name`` and list it in ``DETECTORS`` below.
"""

from __future__ import annotations

import importlib
from typing import Any

from sensorguard.errors import SensorGuardError

# name -> "module:Class"
DETECTORS: dict[str, str] = {
    "operating-states": "sensorguard.detectors.states:OperatingStateDetector",
    "pca": "sensorguard.detectors.pca:PCADetector",
    "pca-smoothed": "sensorguard.detectors.pca:SmoothedPCADetector",
    "iforest": "sensorguard.detectors.iforest:IsolationForestDetector",
    "knn": "sensorguard.detectors.knn:NeighbourDetector",
    "drift-robust": "sensorguard.detectors.robust:DriftRobustDetector",
    "asset-calibrated": "sensorguard.detectors.calibrated:AssetCalibrated",
}


def available_detectors() -> list[str]:
    return sorted(DETECTORS)


def detector_class(name: str) -> type[Any]:
    """The detector class of ``name``; an unknown name is a one-line error."""
    try:
        target = DETECTORS[name]
    except KeyError:
        raise SensorGuardError(
            f"unknown detector '{name}'",
            f"choose one of: {', '.join(available_detectors())}",
        ) from None
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)  # type: ignore[no-any-return]
