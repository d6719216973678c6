"""Measuring explanations: does the sensor ranking blame the sensors that are at fault?

Rules of this module: pure functions on arrays, no data sets. A ranking comes from
per-sensor values (``(n, p)``, non-negative, larger = more to blame): the suite passes
``DetectionResult.blame``, the numbers ``top_sensors`` sorts
(:mod:`sensorguard.detectors.blame`); a detector's raw ``contributions`` rank too.

* **HitRate@P %** (OmniAnomaly, Su et al., KDD 2019): for every anomalous row whose
  truth names ``k`` sensors, the share of them found in the top ``⌈P/100 · k⌉`` of the
  row's ranking; averaged over those rows. Reported at 100 % and 150 %.
* **Top-k hit**: the share of rows whose top ``k`` contains at least one of a set of
  target sensors (the simulator's injected sensor, Tennessee Eastman's root-cause
  variables).
* SMD's ``interpretation_label`` lines (``start-end:d1,d2,...``) are parsed with the
  README's reading: ``start-end`` a half-open 0-based row range, dimension ids 1-based.

Ties in a ranking are broken by sensor order (a stable sort), so a flat ranking does
not score by luck of the sort.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from sensorguard.errors import DataValidationError


def parse_interpretation(text: str, one_based: bool = True) -> list[tuple[int, int, list[int]]]:
    """``start-end:d1,d2`` lines -> ``(start, end, [0-based dims])`` (end exclusive)."""
    out = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        try:
            span, dims = line.split(":")
            a, b = span.split("-")
            ids = [int(d) - (1 if one_based else 0) for d in dims.split(",") if d.strip()]
            start, end = int(a), int(b)
        except ValueError:
            raise DataValidationError(
                f"interpretation label line {lineno} is not 'start-end:d1,d2,...': {raw!r}"
            ) from None
        if end <= start or min(ids, default=0) < 0:
            raise DataValidationError(f"interpretation label line {lineno} is empty: {raw!r}")
        out.append((start, end, ids))
    return out


def truth_matrix(
    intervals: Sequence[tuple[int, int, Sequence[int]]], n_rows: int, n_sensors: int
) -> np.ndarray:
    """Boolean ``(n_rows, n_sensors)``: which sensors are to blame on which rows."""
    T = np.zeros((n_rows, n_sensors), dtype=bool)
    for start, end, dims in intervals:
        for d in dims:
            if d >= n_sensors:
                raise DataValidationError(f"sensor id {d} beyond the {n_sensors} sensors")
            T[start:end, d] = True
    return T


def ranking(contributions: Any) -> np.ndarray:
    """Sensor indices per row, most to blame first (stable: ties keep sensor order)."""
    C = np.asarray(contributions, dtype=np.float64)
    return np.argsort(-C, axis=1, kind="stable")


def hit_rate(
    contributions: Any, truth: Any, ratio: float = 1.0, rows: Any = None
) -> tuple[float | None, int]:
    """HitRate@``ratio``·100 % over the rows whose truth names at least one sensor
    (optionally restricted to the boolean mask ``rows``). Returns (rate, rows counted);
    rate is None when no row counts."""
    T = np.asarray(truth, dtype=bool)
    C = np.asarray(contributions, dtype=np.float64)
    if C.shape != T.shape:
        raise ValueError(f"contributions {C.shape} and truth {T.shape} differ")
    k = T.sum(axis=1)
    use = k > 0
    if rows is not None:
        use &= np.asarray(rows, dtype=bool)
    idx = np.flatnonzero(use)
    if idx.size == 0:
        return None, 0
    R = ranking(C[idx])
    hits = np.empty(idx.size)
    for i, r in enumerate(idx):
        top = math.ceil(ratio * k[r] - 1e-9)
        hits[i] = T[r, R[i, :top]].sum() / k[r]
    return float(hits.mean()), int(idx.size)


def top_k_hit(
    contributions: Any, targets: Sequence[int], k: int = 3, rows: Any = None
) -> float | None:
    """Share of rows (all, or those in the boolean mask ``rows``) whose top ``k``
    holds at least one of the ``targets`` sensor indices; None when no row counts."""
    C = np.asarray(contributions, dtype=np.float64)
    if rows is not None:
        C = C[np.asarray(rows, dtype=bool)]
    if C.shape[0] == 0:
        return None
    top = ranking(C)[:, :k]
    return float(np.isin(top, np.asarray(list(targets))).any(axis=1).mean())


def mean_rank(contributions: Any, target: int, rows: Any = None) -> float | None:
    """Mean 1-based rank of sensor ``target`` (1 = blamed first)."""
    C = np.asarray(contributions, dtype=np.float64)
    if rows is not None:
        C = C[np.asarray(rows, dtype=bool)]
    if C.shape[0] == 0:
        return None
    R = ranking(C)
    return float((np.argmax(target == R, axis=1) + 1).mean())
