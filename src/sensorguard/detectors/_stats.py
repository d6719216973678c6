"""Small statistics shared by the quality detectors."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from sensorguard.detectors.events import rolling_mean

MAD_TO_STD = 1.4826


def robust_scale(A: np.ndarray, axis: int = 0) -> np.ndarray:
    """Per-column scale: MAD × 1.4826, falling back to the standard deviation for
    quantised columns whose MAD is 0, and to 1 for constant columns."""
    med = np.median(A, axis=axis, keepdims=True)
    mad = MAD_TO_STD * np.median(np.abs(A - med), axis=axis)
    std = np.std(A, axis=axis)
    scale = np.where(mad > 0, mad, std)
    return np.where(scale > 0, scale, 1.0)


def quantile_threshold(scores: np.ndarray, quantile: float, margin: float) -> float:
    """``margin`` × the ``quantile`` of training scores (finite values only)."""
    s = scores[np.isfinite(scores)]
    if s.size == 0:
        return float(margin)
    q = float(np.quantile(s, quantile))
    return float(margin * q) if q > 0 else float(margin * (np.max(s) or 1.0))


def smoothed_threshold(
    score: np.ndarray, quantile: float, margin: float, smooth_window: int
) -> float:
    """``margin`` × the ``quantile`` of the training scores after the alarm's smoothing
    (the smoothed scores are what the threshold is compared with)."""
    return quantile_threshold(rolling_mean(score, smooth_window), quantile, margin)


@functools.cache
def blas_controller() -> Any:
    """One ``ThreadpoolController`` for the process: building one scans the loaded
    libraries (1.4 ms in a bare process, about 2 % of the watch loop's samples when
    ``threadpool_limits`` built one per pass); its ``limit`` alone costs 15 us. NumPy's
    BLAS, the one these products use, is loaded with NumPy, before the first call."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()
