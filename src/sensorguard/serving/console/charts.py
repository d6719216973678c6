"""Inline SVG charts for the operator console: sparklines, the score of an alarm, sensor bands.

Rendered on the server as plain SVG so the page needs no chart library, no JavaScript to
draw and no internet; a 500-asset overview is 500 short ``<polyline>`` strings. Every
function is pure (numbers in, markup out) and escapes nothing it did not build itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

import numpy as np


def _finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    return arr[np.isfinite(arr)] if arr.size else arr


def _scale(lo: float, hi: float) -> tuple[float, float]:
    if not math.isfinite(lo) or not math.isfinite(hi):
        return 0.0, 1.0
    if hi - lo < 1e-12:
        pad = abs(hi) * 0.05 or 1.0
        return lo - pad, hi + pad
    return lo, hi


def _points(ys: np.ndarray, width: float, height: float, lo: float, hi: float) -> str:
    n = len(ys)
    if n == 0:
        return ""
    xs = np.linspace(0.0, width, n) if n > 1 else np.array([width / 2])
    # Non-finite values are drawn at the top edge: a saturated score is "very high", not absent.
    y = np.where(np.isfinite(ys), ys, hi)
    py = height - (np.clip(y, lo, hi) - lo) / (hi - lo) * height
    return " ".join(f"{x:.1f},{v:.1f}" for x, v in zip(xs, py, strict=True))


def sparkline(
    values: Sequence[float] | np.ndarray,
    threshold: float | None = None,
    width: int = 120,
    height: int = 28,
    label: str = "score",
) -> str:
    """A small line of recent scores; the threshold as a dashed line; red when above it."""
    ys = np.asarray(values, dtype=float)
    if ys.size == 0:
        return (
            f'<svg class="spark" width="{width}" height="{height}" role="img" '
            f'aria-label="no {escape(label)} yet"></svg>'
        )
    finite = _finite(ys)
    lo = float(finite.min()) if finite.size else 0.0
    hi = float(finite.max()) if finite.size else 1.0
    if threshold is not None and math.isfinite(threshold):
        lo, hi = min(lo, threshold), max(hi, threshold)
    lo, hi = _scale(lo, hi)
    last = float(ys[-1]) if math.isfinite(float(ys[-1])) else hi
    above = threshold is not None and last > threshold
    parts = [
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escape(label)}: last {last:.3g}'
        + (f", threshold {threshold:.3g}" if threshold is not None else "")
        + '">'
    ]
    if threshold is not None and math.isfinite(threshold):
        ty = height - (threshold - lo) / (hi - lo) * height
        parts.append(f'<line class="thr" x1="0" x2="{width}" y1="{ty:.1f}" y2="{ty:.1f}" />')
    cls = "line hot" if above else "line"
    parts.append(f'<polyline class="{cls}" points="{_points(ys, width, height, lo, hi)}" />')
    parts.append("</svg>")
    return "".join(parts)


@dataclass(frozen=True)
class Span:
    """A stretch of the x axis to shade (an alarm), as indices into the series."""

    start: int
    end: int
    css: str = "span"


def series_chart(
    values: Sequence[float] | np.ndarray,
    *,
    threshold: float | None = None,
    band: tuple[float, float] | None = None,
    spans: Sequence[Span] = (),
    width: int = 640,
    height: int = 160,
    label: str = "score",
    x_labels: tuple[str, str] | None = None,
) -> str:
    """A larger line chart: threshold line, shaded alarm spans, an optional normal band."""
    ys = np.asarray(values, dtype=float)
    finite = _finite(ys)
    lo = float(finite.min()) if finite.size else 0.0
    hi = float(finite.max()) if finite.size else 1.0
    for extra in ([threshold] if threshold is not None else []) + (list(band) if band else []):
        if extra is not None and math.isfinite(extra):
            lo, hi = min(lo, extra), max(hi, extra)
    lo, hi = _scale(lo, hi)
    n = max(len(ys), 1)

    def x_of(i: int) -> float:
        return 0.0 if n == 1 else i / (n - 1) * width

    def y_of(v: float) -> float:
        return height - (v - lo) / (hi - lo) * height

    title = f"{label}: {len(ys)} points, range {lo:.3g} to {hi:.3g}"
    parts = [
        f'<svg class="chart" width="100%" viewBox="0 -4 {width} {height + 22}" '
        f'preserveAspectRatio="none" role="img" aria-label="{escape(title)}">'
    ]
    if band is not None and all(math.isfinite(b) for b in band):
        b_lo, b_hi = sorted(band)
        parts.append(
            f'<rect class="band" x="0" width="{width}" y="{y_of(b_hi):.1f}" '
            f'height="{max(y_of(b_lo) - y_of(b_hi), 1):.1f}"><title>normal band '
            f"{b_lo:.4g} to {b_hi:.4g}</title></rect>"
        )
    for sp in spans:
        x0, x1 = x_of(max(sp.start, 0)), x_of(min(sp.end, n - 1))
        parts.append(
            f'<rect class="{escape(sp.css)}" x="{x0:.1f}" width="{max(x1 - x0, 2):.1f}" '
            f'y="0" height="{height}" />'
        )
    if threshold is not None and math.isfinite(threshold):
        ty = y_of(threshold)
        parts.append(f'<line class="thr" x1="0" x2="{width}" y1="{ty:.1f}" y2="{ty:.1f}" />')
        parts.append(
            f'<text class="axis" x="{width - 4}" y="{ty - 3:.1f}" text-anchor="end">'
            f"threshold {threshold:.3g}</text>"
        )
    if len(ys):
        parts.append(f'<polyline class="line" points="{_points(ys, width, height, lo, hi)}" />')
    parts.append(f'<text class="axis" x="2" y="10">{hi:.4g}</text>')
    parts.append(f'<text class="axis" x="2" y="{height - 2}">{lo:.4g}</text>')
    if x_labels:
        parts.append(
            f'<text class="axis" x="0" y="{height + 16}">{escape(x_labels[0])}</text>'
            f'<text class="axis" x="{width}" y="{height + 16}" text-anchor="end">'
            f"{escape(x_labels[1])}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
