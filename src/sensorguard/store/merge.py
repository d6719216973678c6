"""The merge rule: one row per (asset, time), merged per sensor, a changed value refused.

Rules of this room (the store's rules are in :mod:`sensorguard.store.ingest`): a reading
at a stored (asset, time) may add sensors or fill a stored missing value (a *merge*);
resending what is stored is a *duplicate*; a missing value never erases a stored one; a
different value for a stored sensor or status is a *conflict* that refuses the whole call
with :class:`ReadingConflictError`. The same rule holds between rows of one batch
(:func:`_combine_repeats`) and against the stored rows (:func:`_reconcile`); no database
here, the writers bring the stored rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sensorguard.errors import DataValidationError


class ReadingConflictError(DataValidationError):
    """A reading that contradicts a stored one (same asset, time and sensor, another value).

    Nothing of the call was written. ``conflicts`` counts the conflicting readings;
    ``first`` describes the first one (asset, time, field, stored, sent)."""

    code = "reading_conflict"

    def __init__(self, message: str, hint: str, *, conflicts: int, first: dict[str, Any]):
        super().__init__(message, hint)
        self.conflicts = conflicts
        self.first = first


def _fmt_time(us: int) -> str:
    return str(pd.Timestamp(int(us), unit="us"))


@dataclass
class _Chunk:
    """One asset's readings for one sensor set, checked, to the microsecond, one row per
    time (rows of the same time combined), sorted by time."""

    asset: str
    sensors: list[str]
    times_us: np.ndarray
    values: np.ndarray
    status: np.ndarray
    rows: int
    merged: int = 0
    duplicates: int = 0
    notes: list[str] = field(default_factory=list)

    def labels(self) -> tuple[np.ndarray, list[str]]:
        """1-based status codes into a label list (0 = no status), for fixed-size COPY rows."""
        codes, uniques = pd.factorize(self.status, sort=True)  # None -> -1
        if len(uniques) > 30_000:
            raise DataValidationError("too many distinct status labels", "status is a short label")
        return (codes + 1).astype(np.int16), [str(u) for u in uniques]


def _conflict(asset: str, count: int, first: dict[str, Any], within: bool) -> ReadingConflictError:
    if within:
        detail = (
            f"{first['field']!r} is sent {first['stored']!r} and {first['sent']!r} in one batch"
        )
    else:
        detail = f"{first['field']!r} is stored as {first['stored']!r}, sent {first['sent']!r}"
    return ReadingConflictError(
        f"readings of {asset!r} conflict with {'each other' if within else 'stored readings'} "
        f"at {first['time']}: {detail} ({count:,} conflicting reading(s)); nothing of this "
        "batch was stored",
        "a reading at a stored time may add sensors but not change a stored value: send "
        "each sensor's value once per time (a resend of the same value is fine)",
        conflicts=count,
        first={"asset": asset, **first},
    )


def _combine_repeats(chunk: _Chunk, repeat: np.ndarray) -> None:
    """Rows of one time within a batch: merged per sensor, or a conflict (see the module)."""
    starts = np.flatnonzero(np.r_[True, ~repeat])
    ends = np.r_[starts[1:], len(chunk.times_us)]
    keep_values, keep_status = chunk.values[starts].copy(), chunk.status[starts].copy()
    conflicts: list[dict[str, Any]] = []
    for g, (a, b) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
        for r in range(a + 1, b):
            row, prev = chunk.values[r], keep_values[g]
            both = ~np.isnan(row) & ~np.isnan(prev)
            bad = np.flatnonzero(both & (row != prev))
            s_new, s_old = chunk.status[r], keep_status[g]
            if len(bad) or (s_new is not None and s_old is not None and s_new != s_old):
                j = int(bad[0]) if len(bad) else -1
                conflicts.append(
                    {
                        "time": _fmt_time(chunk.times_us[a]),
                        "field": chunk.sensors[j] if j >= 0 else "status",
                        "stored": float(prev[j]) if j >= 0 else s_old,
                        "sent": float(row[j]) if j >= 0 else s_new,
                    }
                )
                continue
            fill = np.isnan(prev) & ~np.isnan(row)
            if fill.any() or (s_old is None and s_new is not None):
                prev[fill] = row[fill]
                keep_status[g] = s_old if s_old is not None else s_new
                chunk.merged += 1
            else:
                chunk.duplicates += 1
    if conflicts:
        raise _conflict(chunk.asset, len(conflicts), conflicts[0], within=True)
    chunk.times_us, chunk.values, chunk.status = chunk.times_us[starts], keep_values, keep_status


@dataclass
class _Merge:
    times_us: list[int] = field(default_factory=list)
    values: list[np.ndarray] = field(default_factory=list)
    status: list[str | None] = field(default_factory=list)


def _reconcile(
    chunk: _Chunk,
    stored: list[tuple[int, int, Any, str | None]],
    names: dict[int, list[str]],
) -> tuple[int, dict[tuple[str, ...], _Merge]]:
    """Compare incoming rows with the stored rows of the same times.

    Returns (duplicates, merges by the union sensor set); raises on a conflict."""
    pos = {int(t): i for i, t in enumerate(chunk.times_us.tolist())}
    by_set: dict[int, list[tuple[int, int, Any, str | None]]] = {}
    for row in stored:
        by_set.setdefault(row[1], []).append(row)
    duplicates = 0
    merges: dict[tuple[str, ...], _Merge] = {}
    conflicts: list[dict[str, Any]] = []
    n_conflicts = 0
    for sid, rows in by_set.items():
        st_names = names[sid]
        st_index = {n: j for j, n in enumerate(st_names)}
        at = np.array([pos[r[0]] for r in rows], dtype=np.intp)
        v_st = np.array([r[2] for r in rows], dtype=np.float64).reshape(len(rows), len(st_names))
        v_in = chunk.values[at]
        common_in = [j for j, n in enumerate(chunk.sensors) if n in st_index]
        common_st = [st_index[chunk.sensors[j]] for j in common_in]
        new_in = [j for j, n in enumerate(chunk.sensors) if n not in st_index]
        a, b = v_st[:, common_st], v_in[:, common_in]
        bad = ~np.isnan(a) & ~np.isnan(b) & (a != b)
        s_st = [r[3] for r in rows]
        s_in = chunk.status[at]
        bad_status = np.array(
            [x is not None and y is not None and x != y for x, y in zip(s_st, s_in, strict=True)],
            dtype=bool,
        )
        bad_rows = bad.any(axis=1) | bad_status
        if bad_rows.any():
            n_conflicts += int(bad_rows.sum())
            i = int(np.flatnonzero(bad_rows)[0])
            if bad[i].any():
                j = int(np.flatnonzero(bad[i])[0])
                first = {
                    "field": chunk.sensors[common_in[j]],
                    "stored": float(a[i, j]),
                    "sent": float(b[i, j]),
                }
            else:
                first = {"field": "status", "stored": s_st[i], "sent": s_in[i]}
            conflicts.append({"time": _fmt_time(rows[i][0]), **first})
            continue
        fill = np.isnan(a) & ~np.isnan(b)
        added = ~np.isnan(v_in[:, new_in]) if new_in else np.zeros((len(rows), 0), dtype=bool)
        status_fill = np.array(
            [x is None and y is not None for x, y in zip(s_st, s_in, strict=True)], dtype=bool
        )
        changed = fill.any(axis=1) | added.any(axis=1) | status_fill
        duplicates += int((~changed).sum())
        if not changed.any():
            continue
        merged = v_st.copy()
        cols = np.asarray(common_st, dtype=np.intp)
        if len(cols):
            merged[:, cols] = np.where(fill, b, a)
        union = tuple(st_names) + tuple(chunk.sensors[j] for j in new_in)
        full = np.concatenate([merged, v_in[:, new_in]], axis=1) if new_in else merged
        target = merges.setdefault(union, _Merge())
        for i in np.flatnonzero(changed).tolist():
            target.times_us.append(rows[i][0])
            target.values.append(full[i])
            target.status.append(s_st[i] if s_st[i] is not None else s_in[i])
    if conflicts:
        first = min(conflicts, key=lambda c: str(c["time"]))
        raise _conflict(chunk.asset, n_conflicts, first, within=False)
    return duplicates, merges
