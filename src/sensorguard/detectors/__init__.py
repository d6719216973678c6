"""Detectors behind one protocol, selectable by name.

This module only re-exports: the protocol lives in :mod:`sensorguard.detectors.base`,
the catalog of detectors by name in :mod:`sensorguard.detectors.catalog`.
"""

from __future__ import annotations

from sensorguard.detectors.alarm import AlarmRule
from sensorguard.detectors.base import (
    BaseDetector,
    Computed,
    DetectionResult,
    Detector,
    SensorSchema,
    StreamingDetector,
)
from sensorguard.detectors.catalog import (
    available_detectors,
    get_detector_class,
    load_detector,
    make_detector,
)

__all__ = [
    "AlarmRule",
    "BaseDetector",
    "Computed",
    "DetectionResult",
    "Detector",
    "SensorSchema",
    "StreamingDetector",
    "available_detectors",
    "get_detector_class",
    "load_detector",
    "make_detector",
]
