"""Plots for runs and reports (matplotlib, Agg backend: works without a display)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

_MAX_POINTS = 4000


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _buckets(n: int) -> np.ndarray:
    """Bucket id per row so long series are drawn with at most ``_MAX_POINTS`` points."""
    size = max(1, int(np.ceil(n / _MAX_POINTS)))
    return np.arange(n) // size


def score_plot(
    path: Path,
    times: pd.Series,
    score: np.ndarray,
    threshold: float,
    alarms: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    title: str = "Anomaly score",
    split_at: Any = None,
    notes: Sequence[tuple[Any, str]] = (),
) -> Path:
    """Score over time (bucket maxima), the threshold, alarms (red) and true failures (grey)."""
    plt = _pyplot()
    n = len(score)
    b = _buckets(n)
    t = pd.Series(pd.to_datetime(times.to_numpy())).groupby(b).first()
    s = pd.Series(np.nan_to_num(np.asarray(score, dtype=float))).groupby(b).max()
    a = pd.Series(np.asarray(alarms, dtype=bool)).groupby(b).max()
    fig, ax = plt.subplots(figsize=(12, 4), dpi=100)
    ax.plot(t, s, lw=0.7, color="#1f4e79", label="score")
    ax.axhline(threshold, color="#d97706", ls="--", lw=1, label=f"threshold {threshold:.3g}")
    trans = ax.get_xaxis_transform()
    if labels is not None:
        lab = pd.Series(np.asarray(labels, dtype=bool)).groupby(b).max()
        ax.fill_between(
            t, 0, 1, where=lab.to_numpy(), step="post", transform=trans,
            color="grey", alpha=0.3, lw=0, label="failure (truth)",
        )  # fmt: skip
    ax.fill_between(
        t, 0, 0.06, where=a.to_numpy(), step="post", transform=trans,
        color="#dc2626", alpha=0.9, lw=0, label="alarm",
    )  # fmt: skip
    if split_at is not None:
        ax.axvline(pd.Timestamp(split_at), color="black", lw=1, ls=":", label="evaluation →")
    for when, text in notes:
        ax.annotate(
            text, (pd.Timestamp(when), 0.93), xycoords=trans, fontsize=7, rotation=0,
            ha="left", va="top", color="#7f1d1d",
        )  # fmt: skip
    top = float(np.nanpercentile(s, 99.5)) if len(s) else 1.0
    ax.set_ylim(0, max(threshold * 3, top * 1.1, 1e-9))
    ax.set_title(title)
    ax.set_ylabel("score")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), fontsize=7, ncols=5, frameon=False)
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def profiles_plot(
    path: Path,
    sensors: list[str],
    state_rows: list[tuple[str, np.ndarray]],
    failure_rows: list[tuple[str, np.ndarray]],
    *,
    title: str = "Operating states and failure types",
) -> Path:
    """Heatmaps: each operating state's and failure type's sensor signature."""
    plt = _pyplot()
    panels = [
        (name, rows)
        for name, rows in (
            ("Operating states: mean of each sensor (in standard deviations)", state_rows),
            ("Failure types: each sensor's share of the deviation", failure_rows),
        )
        if rows
    ]
    if not panels:
        panels = [("Operating states", [("(none)", np.zeros(len(sensors)))])]
    heights = [max(1.2, 0.35 * len(r) + 0.8) for _, r in panels]
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(max(8, 0.6 * len(sensors) + 3), sum(heights) + 1), dpi=100,
        gridspec_kw={"height_ratios": heights}, squeeze=False,
    )  # fmt: skip
    for ax, (name, rows) in zip(axes[:, 0], panels, strict=True):
        mat = np.vstack([np.asarray(v, dtype=float) for _, v in rows])
        lim = float(np.nanmax(np.abs(mat))) if mat.size and np.isfinite(mat).any() else 1.0
        lim = lim or 1.0
        if name.startswith("Failure"):  # shares: 0..1, sequential
            im = ax.imshow(mat, aspect="auto", cmap="Reds", vmin=0, vmax=lim)
        else:
            im = ax.imshow(mat, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_yticks(range(len(rows)), [label for label, _ in rows], fontsize=8)
        ax.set_xticks(range(len(sensors)), sensors, rotation=45, ha="right", fontsize=8)
        ax.set_title(name, fontsize=10)
        fig.colorbar(im, ax=ax, fraction=0.03, pad=0.01)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
