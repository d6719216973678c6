"""Which sensors to blame, reading by reading: contribution shares averaged over the
excursion. This is what ``top_sensors`` ranks everywhere (``sensorguard score``, the
predictor, the watch service, stored predictions).

A reading's own ``contributions`` are noisy: a sensor that is off for the whole event
drops out of the top for single readings whenever noise wins. So each reading's
contributions become *shares* (divided by their sum: every reading counts once, a huge
reading does not drown the rest), and a reading is blamed on

* **inside an excursion** (a run of readings that are alarmed or score above the
  threshold): the mean share since the excursion started; a single reading above the
  threshold (a glitch the alarm rule ignores) is blamed on its own contributions;
* **elsewhere**: the mean share over the last ``window`` readings (10).

Measured on the real-data suite (docs/quality.md, "Explanations"), mean of five
detectors, SMD HitRate@150 % / simulator top 3 / Tennessee Eastman top 3: the readings'
own contributions 0.551 / 0.810 / 0.740, this ranking 0.605 / 0.929 / 0.828 (window,
rule and shares chosen on those sets; each left-out set still improves,
``benchmarks/suite/explain_variants.py``).

It is causal, and a stream cut into any pieces gets the same floats as one pass: the
per-stream state (:class:`BlameState`) carries the running sum of shares at the last
``window`` readings and at the excursion's start, the running sums are accumulated in
reading order in every path (``np.cumsum`` is sequential, and the one-reading path adds
in the same order), and the sum over a reading's sensors is taken sensor by sensor in
schema order in both paths (numpy's pairwise row sum would differ in the last bit from
a plain loop at 8 sensors or more).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

BLAME_WINDOW = 10


@dataclass
class BlameState:
    """What one stream carries from one piece to the next (JSON-able via
    :meth:`to_dict`). Sums are of shares since the stream started."""

    n: int = 0  # readings seen
    hist: list[list[float]] = field(default_factory=list)  # sums after the last window+1
    # readings (the first row: after reading n - len(hist) + 1; a zero row = stream start)
    in_excursion: bool = False  # the last reading was in an excursion
    ex_start: int = 0  # readings before the current excursion started
    ex_base: list[float] | None = None  # the sum when it started

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "hist": self.hist,
            "in_excursion": self.in_excursion,
            "ex_start": self.ex_start,
            "ex_base": self.ex_base,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BlameState:
        return cls(
            n=int(data["n"]),
            hist=[[float(v) for v in row] for row in data["hist"]],
            in_excursion=bool(data["in_excursion"]),
            ex_start=int(data["ex_start"]),
            ex_base=None if data.get("ex_base") is None else [float(v) for v in data["ex_base"]],
        )


def blame(
    contributions: np.ndarray, excursion: np.ndarray, window: int = BLAME_WINDOW
) -> np.ndarray:
    """``(n, p)`` blame per reading of one stream from its start (see the module
    docstring); rows keep their order.

    ``contributions``: the detector's non-negative ``(n, p)`` contributions (finite; the
    detectors cap overflow); ``excursion``: ``n`` booleans, a reading alarmed or above
    the threshold."""
    return blame_step(contributions, excursion, None, window)[0]


def blame_step(
    contributions: np.ndarray,
    excursion: np.ndarray,
    state: BlameState | None,
    window: int = BLAME_WINDOW,
) -> tuple[np.ndarray, BlameState]:
    """:func:`blame` of the next readings of a stream that continues ``state``
    (``None``: the stream starts here); returns the blame and the new state."""
    C = np.asarray(contributions)
    if C.ndim != 2:
        raise ValueError("contributions must be (n, n_sensors)")
    m, p = C.shape
    st = state if state is not None else BlameState()
    if m == 0:
        return C.astype(np.float64), st
    w = max(1, int(window))
    f = np.asarray(excursion, dtype=bool).reshape(-1)
    # sensors x readings, float64, in one copy: the sums along the contiguous axis are
    # cheaper than down the columns
    CT = np.array(C.T, dtype=np.float64, order="C")
    tot = CT[0].copy()
    for j in range(1, p):  # sensor by sensor, as the one-reading path adds
        tot += CT[j]
    np.copyto(tot, 1.0, where=~(tot > 0))  # an all-zero row has no share to give
    hist = np.asarray(st.hist, dtype=np.float64).T if st.hist else np.zeros((p, 1))
    h = hist.shape[1]
    full = np.empty((p, h + m))  # the sums after readings off .. n + m
    full[:, :h] = hist
    np.divide(CT, tot, out=full[:, h:])
    # continued in reading order from the stream's last sum: identical floats for any
    # cut of the stream
    np.cumsum(full[:, h - 1 :], axis=1, out=full[:, h - 1 :])
    cs = full[:, h:]
    off = st.n - (h - 1)
    n = st.n + m
    # every reading first by its window (the last w readings, fewer at the stream's
    # start), then the readings inside an excursion (usually few) by theirs
    if st.n >= w:
        a = st.n + 1 - w - off  # a slice: the common case costs no gather
        out = (cs - full[:, a : a + m]) / w
    else:
        idx = np.arange(st.n + 1, n + 1)  # 1-based reading numbers
        lo = np.maximum(idx - w, 0)
        out = (cs - full[:, lo - off]) / (idx - lo)
    run_last = 0
    if f.any():
        prev = np.empty(m, dtype=bool)
        prev[0] = st.in_excursion
        prev[1:] = f[:-1]
        run = np.where(f & ~prev, np.arange(st.n, n), -1)  # readings before each start
        if st.in_excursion and f[0]:
            run[0] = st.ex_start
        run = np.maximum.accumulate(run)
        e = np.flatnonzero(f)
        lo_e = run[e]
        base = full[:, np.maximum(lo_e - off, 0)]
        before = lo_e < off  # an excursion that started before the kept sums
        if before.any():
            assert st.ex_base is not None
            base[:, before] = np.asarray(st.ex_base)[:, None]
        out[:, e] = (cs[:, e] - base) / (e + st.n + 1 - lo_e)
        run_last = int(run[-1])
    new = BlameState(n=n, hist=full[:, -min(n + 1, w + 1) :].T.tolist(), in_excursion=bool(f[-1]))
    if f[-1]:
        new.ex_start = run_last
        new.ex_base = st.ex_base if run_last < off else full[:, run_last - off].tolist()
    return out.T, new


def blame_one(
    row: list[float], excursion: bool, st: BlameState, window: int = BLAME_WINDOW
) -> list[float]:
    """:func:`blame_step` of one reading (``row``: its contributions as floats), in
    plain Python (the predictor's hot path: about 3 µs for 10 sensors against about
    40 µs through numpy); ``st`` is updated in place. Same arithmetic in the same
    order, so the same floats."""
    tot = 0.0
    for c in row:
        tot += c
    if not tot > 0:
        tot = 1.0
    hist = st.hist
    last = hist[-1] if hist else [0.0] * len(row)
    cs = [a + c / tot for a, c in zip(last, row, strict=True)]
    i = st.n + 1
    w = window if window > 0 else 1
    if excursion:
        if not st.in_excursion:
            st.ex_start = i - 1
            st.ex_base = last
        lo = st.ex_start
        base = st.ex_base
        assert base is not None
    else:
        lo = i - w if i > w else 0
        # hist holds the sums after readings i-len(hist) .. i-1 (the zero row: reading 0)
        base = hist[lo - (i - len(hist))] if hist else last
    d = float(i - lo)
    out = [(x - y) / d for x, y in zip(cs, base, strict=True)]
    if not hist:
        hist.append(last)
    hist.append(cs)
    if len(hist) > w + 1:
        del hist[0]
    st.n = i
    st.in_excursion = excursion
    return out


_SMALL = 16  # rows up to which per-row Python is faster than vectorised numpy


def top_indices(values: np.ndarray, k: int) -> np.ndarray:
    """``(n, k)`` column indices of the largest values per row, largest first; ties keep
    column order (as a stable sort of the row would)."""
    n, n_s = values.shape
    k = max(1, min(k, n_s))
    if n == 1:  # the predictor's one reading: no nested lists, no reshape
        row = values.tolist()[0]
        return np.array([sorted(range(n_s), key=row.__getitem__, reverse=True)[:k]], dtype=np.intp)
    if n <= _SMALL:
        # a few rows: plain Python beats numpy's per-call overhead
        order = range(n_s)
        rows = [sorted(order, key=row.__getitem__, reverse=True)[:k] for row in values.tolist()]
        return np.array(rows, dtype=np.intp).reshape(n, k)
    if 2 * k > n_s:  # most of the row: one stable sort
        return np.argsort(-values, axis=1, kind="stable")[:, :k]
    # k passes of argmax (the first of equal values, i.e. column order), each masking
    # its pick: 1,000 x 9 at k = 3 in 70 µs against 113 µs for argpartition plus a sort
    # of the picks, which also broke ties at the k-th place by partition order, not by
    # column (then the batch and the one-reading path could name different sensors)
    W = np.array(values, dtype=np.float64, order="C")  # a copy to mask in, flat-indexable
    flat = W.reshape(-1)
    at = np.arange(0, n * n_s, n_s)  # each row's first cell, for flat (cheap) indexing
    out = np.empty((n, k), dtype=np.intp)
    for j in range(k):
        i = W.argmax(axis=1)
        out[:, j] = i
        if j + 1 < k:
            flat[at + i] = -np.inf
    return out
