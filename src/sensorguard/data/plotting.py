"""A picture of readings: one panel per sensor, labelled failure periods shaded."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from sensorguard.data.readings import Readings
from sensorguard.errors import DataValidationError

_MAX_POINTS = 3000
_SHADES = {"BROKEN": ("#d62728", 0.18), "RECOVERING": ("#ff7f0e", 0.12), "1": ("#d62728", 0.18)}


PLOT_SUFFIXES = (".png", ".svg", ".pdf")


def check_plot_path(path: str | Path) -> Path:
    """The path, if matplotlib can write a plot there by its suffix; else an error."""
    p = Path(path)
    if p.suffix.lower() not in PLOT_SUFFIXES:
        raise DataValidationError(
            f"cannot write a plot to {p.name}", "use a .png, .svg or .pdf file name"
        )
    return p


def plot_readings(
    readings: Readings,
    path: str | Path,
    *,
    sensors: list[str] | None = None,
    title: str = "",
    dpi: int = 110,
) -> Path:
    """Write a PNG of the sensors over time (min/max envelope per pixel column, so short
    spikes stay visible) with BROKEN / RECOVERING periods shaded. Returns the path."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    p = check_plot_path(path)
    if readings.asset_column is not None and len(readings.assets) > 1:
        readings = readings.for_asset(readings.assets[0])
    names = sensors or readings.sensors
    unknown = [s for s in names if s not in readings.sensors]
    if unknown:
        raise DataValidationError(
            f"not a sensor of {readings.source}: {', '.join(unknown)}",
            f"sensors: {', '.join(readings.sensors)}",
        )
    n = len(readings)
    size = max(1, int(np.ceil(n / _MAX_POINTS)))
    t = readings.times.to_numpy()
    tb = t[::size]
    fig, axes = plt.subplots(
        len(names), 1, figsize=(12, 1.4 * len(names) + 0.8), sharex=True, squeeze=False
    )
    status: Any = None
    if readings.label_column is not None:
        raw = readings.frame[readings.label_column].astype(str).str.strip().str.upper()
        status = raw.to_numpy()
    for ax, name in zip(axes[:, 0], names, strict=True):
        v = readings.frame[name].to_numpy(dtype=np.float64)
        pad = (-n) % size
        blocks = np.concatenate([v, np.full(pad, np.nan)]).reshape(-1, size)
        with warnings.catch_warnings():  # all-NaN blocks (dropouts) are expected
            warnings.simplefilter("ignore", RuntimeWarning)
            lo, hi = np.nanmin(blocks, axis=1), np.nanmax(blocks, axis=1)
        if size > 1:
            ax.fill_between(tb, lo, hi, color="#1f77b4", linewidth=0.4, alpha=0.8)
        else:
            ax.plot(t, v, color="#1f77b4", linewidth=0.7)
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
        ax.tick_params(labelsize=7)
        if status is not None:
            # matplotlib shades the runs of ``where`` itself (no runs helper needed here)
            band = ax.get_xaxis_transform()  # x in data, y from 0 to 1 of the axes
            for key, (color, alpha) in _SHADES.items():
                mask = status == key
                if mask.any():
                    ax.fill_between(
                        t,
                        0,
                        1,
                        where=mask,
                        step="post",
                        transform=band,
                        color=color,
                        alpha=alpha,
                        linewidth=0,
                    )
    axes[0, 0].set_title(title or f"{readings.source} ({n:,} readings)", fontsize=10)
    fig.tight_layout()
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=dpi)
    plt.close(fig)
    return p
