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
* **elsewhere**: an exponentially weighted mean of the shares (``decay`` 0.8, about the
  last 9 readings), which runs through the excursions too.

Measured on the real-data suite (docs/quality.md, "Explanations"), mean of five
detectors, SMD HitRate@150 % / Tennessee Eastman top 3 / simulator top 3: the readings'
own contributions 0.551 / 0.740 / 0.810, this ranking 0.609 / 0.828 / 0.927 (the rule,
shares and decay chosen on those sets; each left-out set still improves,
``benchmarks/suite/explain_variants.py``). A plain mean over the last 10 readings
instead of the weighted one ranks as well (0.605 / 0.828 / 0.929) but must carry those
10 readings' sums per stream: in the watch service's checkpoints that was 2.1 kB per
asset and slowed the checkpoint writes of a watch pass by half (docs/benchmarks.md);
this state is three rows.

It is causal, and a stream cut into any pieces gets the same floats as one pass: the
per-stream state (:class:`BlameState`) carries the weighted mean, the running sum of
all shares and, in an excursion, that sum before its first reading and its length (the
mean since the excursion started is a difference of running sums, so any number of
excursions costs a few array operations). The weighted mean is
``scipy.signal.lfilter``'s first-order recursion in the batch and the same two
products and one sum in the one-reading path; the running sum is accumulated in reading
order in both (``np.cumsum`` is sequential); and the sum over a reading's sensors is
taken sensor by sensor in schema order in both (numpy's pairwise row sum would differ
in the last bit from a plain loop at 8 sensors or more).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np

BLAME_DECAY = 0.8
_KEEP = 1.0 - BLAME_DECAY  # the weight of the new reading, as the filter's b0


@dataclass
class BlameState:
    """What one stream carries from one piece to the next (JSON-able via
    :meth:`to_dict`): three rows of sensors at most."""

    ewma: list[float] | None = None  # the weighted mean after the last reading
    total: list[float] | None = None  # the sum of all shares since the stream started
    in_excursion: bool = False  # the last reading was in an excursion
    ex_base: list[float] | None = None  # ``total`` before the excursion's first reading
    ex_len: int = 0  # its readings so far

    def to_dict(self) -> dict[str, Any]:
        return {
            "ewma": self.ewma,
            "total": self.total,
            "in_excursion": self.in_excursion,
            "ex_base": self.ex_base,
            "ex_len": self.ex_len,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BlameState:
        def row(key: str) -> list[float] | None:
            v = data.get(key)
            return None if v is None else [float(x) for x in v]

        return cls(
            ewma=row("ewma"),
            total=row("total"),
            in_excursion=bool(data.get("in_excursion", False)),
            ex_base=row("ex_base"),
            ex_len=int(data.get("ex_len", 0)),
        )


def excursion(alarmed: np.ndarray, score: np.ndarray, threshold: float) -> np.ndarray:
    """The excursion rule, the one place it is written: a reading is in an excursion
    when the alarm rule has it on or its (float64) score is above the threshold, so a
    glitch the alarm rule ignores is blamed on its own contributions and a reading still
    inside a smoothed alarm but back below the threshold keeps the event's blame."""
    return np.asarray(alarmed, dtype=bool) | (np.asarray(score, dtype=np.float64) > threshold)


def excursion_one(alarmed: bool, score: float, threshold: float) -> bool:
    """:func:`excursion` of one reading, in plain Python (the predictor's hot path)."""
    return alarmed or score > threshold


def blame(contributions: np.ndarray, excursion: np.ndarray) -> np.ndarray:
    """``(n, p)`` blame per reading of one stream from its start (see the module
    docstring); rows keep their order.

    ``contributions``: the detector's non-negative ``(n, p)`` contributions (finite; the
    detectors cap overflow); ``excursion``: ``n`` booleans, :func:`excursion` of each reading."""
    return blame_step(contributions, excursion, None)[0]


def blame_step(
    contributions: np.ndarray, excursion: np.ndarray, state: BlameState | None
) -> tuple[np.ndarray, BlameState]:
    """:func:`blame` of the next readings of a stream that continues ``state``
    (``None``: the stream starts here); returns the blame and the new state."""
    C = np.asarray(contributions, dtype=np.float64)
    if C.ndim != 2:
        raise ValueError("contributions must be (n, n_sensors)")
    st = state if state is not None else BlameState()
    if C.shape[0] == 0:
        return C.copy(), st
    f = np.asarray(excursion, dtype=bool).reshape(-1)
    out, new = blame_streams(C, f, [None], [st])
    return out, new[0]


def blame_streams(
    contributions: np.ndarray,
    excursion: np.ndarray,
    rows: list[Any],
    states: list[BlameState],
) -> tuple[np.ndarray, list[BlameState]]:
    """:func:`blame_step` of several streams at once: ``rows[i]`` are the row indices
    of stream ``i`` in ``contributions`` (in its order; ``None`` = all rows), continuing
    ``states[i]``. One pass for all of them (the watch service scores 100 assets per
    pass: per stream, the numpy calls cost 20-45 µs whatever the rows). Returns the
    blame in row order and the new states."""
    from scipy.signal import lfilter

    C = np.asarray(contributions, dtype=np.float64)
    n, p = C.shape
    f_all = np.asarray(excursion, dtype=bool).reshape(-1)
    tot = C[:, 0].copy()
    for j in range(1, p):  # sensor by sensor, as the one-reading path adds
        tot += C[:, j]
    np.copyto(tot, 1.0, where=~(tot > 0))  # an all-zero row has no share to give
    nb = len(rows)
    src: np.ndarray | None = None
    if nb == 1 and rows[0] is None:  # one stream, all rows: no gather
        lens, L = np.array([n], dtype=np.intp), n + 1
        S = np.empty((L, p))
        np.divide(C, tot[:, None], out=S[:n])
        S[n] = 0.0
        f = np.zeros(L, dtype=bool)
        f[:n] = f_all
    else:
        S_all = C / tot[:, None]
        idx = [np.arange(n) if r is None else np.asarray(r, dtype=np.intp) for r in rows]
        lens = np.array([len(i) for i in idx], dtype=np.intp)
        L = int(lens.max()) + 1  # one padding row at least: every run ends in it
        src = np.concatenate(idx)
        dst = np.concatenate([b * L + np.arange(k) for b, k in enumerate(lens.tolist())])
        S = np.zeros((nb * L, p))
        S[dst] = S_all[src]
        f = np.zeros(nb * L, dtype=bool)
        f[dst] = f_all[src]
    S3 = S.reshape(nb, L, p)
    # the weighted mean starts at the stream's first share
    prev = np.array(
        [S3[b, 0] if st.ewma is None else st.ewma for b, st in enumerate(states)],
        dtype=np.float64,
    )
    Y, _ = lfilter([_KEEP], [1.0, -BLAME_DECAY], S3, axis=1, zi=(BLAME_DECAY * prev)[:, None, :])
    out = Y.reshape(nb * L, p)
    last = lens - 1
    ewma = Y[np.arange(nb), last].tolist()
    ends_on = f.reshape(nb, L)[np.arange(nb), last].tolist()
    new = [BlameState(ewma=ewma[b], in_excursion=ends_on[b]) for b in range(nb)]
    # the running sum of the shares, continued in reading order from each stream's (the
    # one-reading path adds the same way): T[b, k] = the sum before reading k
    zero = np.zeros(p)
    T = np.empty((nb, L + 1, p))
    T[:, 0] = [zero if st.total is None else st.total for st in states]
    T[:, 1:] = S3
    np.cumsum(T, axis=1, out=T)
    totals = T[np.arange(nb), lens].tolist()
    for b in range(nb):
        new[b].total = totals[b]
    if f.any():
        _excursions(f, L, lens, states, T, out, new)
    if src is None:
        return out[:n], new
    res = np.empty((n, p))
    res[src] = out[dst]
    return res, new


def _excursions(
    f: np.ndarray,
    L: int,
    lens: np.ndarray,
    states: list[BlameState],
    T: np.ndarray,
    out: np.ndarray,
    new: list[BlameState],
) -> None:
    """``out`` of the excursion readings: the mean share since the excursion started,
    as a difference of running sums (``T``, per stream), so it is a few array
    operations for any number of excursions (a flickering alarm makes hundreds); a run
    at the start of a stream's piece may continue the stream's. ``new`` gets the base
    and length of a run still open at a stream's end. ``f``: the streams one after the
    other, each in ``L`` rows (its readings, then padding that is no excursion)."""
    nb, _, p = T.shape
    e = np.flatnonzero(f)  # positions in f: stream blk's reading k is at blk * L + k
    blk = e // L
    carried = np.array([st.in_excursion and st.ex_base is not None for st in states], dtype=bool)
    prev = np.empty(f.size, dtype=bool)
    prev[1:] = f[:-1]
    prev[::L] = carried  # a stream's first reading continues its run, or starts one
    start = np.where(f & ~prev, np.arange(f.size), -1)
    at_begin = np.zeros(f.size, dtype=bool)
    at_begin[::L] = carried
    start[at_begin & f] = np.flatnonzero(at_begin & f)
    g = np.maximum.accumulate(start)[e]  # the position where each reading's run started
    # T holds L + 1 rows per stream, so position x of stream blk is row x + blk of Tf
    Tf = T.reshape(nb * (L + 1), p)
    base = np.take(Tf, g + blk, axis=0)
    n0 = np.zeros(e.size, dtype=np.intp)
    # a run that continues the stream's is the first readings of its piece: in e, one
    # slice per stream (one slice assignment each; masks per stream cost 37 µs for
    # 1,000 readings of one stream)
    cont = np.flatnonzero((g == blk * L) & carried[blk])
    if cont.size:
        cuts = [0, *(np.flatnonzero(np.diff(blk[cont])) + 1).tolist(), cont.size]
        for a, b in pairwise(cuts):
            lo, hi = int(cont[a]), int(cont[b - 1]) + 1
            st = states[int(blk[lo])]
            base[lo:hi] = st.ex_base
            n0[lo:hi] = st.ex_len
    count = e - g + 1 + n0
    mean = np.take(Tf, e + blk + 1, axis=0)
    mean -= base
    mean /= count[:, None]
    out[e] = mean
    # runs still open at a stream's end
    for i in np.flatnonzero(e - blk * L == lens[blk] - 1).tolist():
        nb_ = new[int(blk[i])]
        nb_.ex_base, nb_.ex_len = base[i].tolist(), int(count[i])


def blame_one(row: list[float], excursion: bool, st: BlameState) -> list[float]:
    """:func:`blame_step` of one reading (``row``: its contributions as floats), in
    plain Python (the predictor's hot path: about 2 µs for 10 sensors against about
    40 µs through numpy); ``st`` is updated in place. Same arithmetic in the same
    order, so the same floats."""
    tot = 0.0
    for c in row:
        tot += c
    if not tot > 0:
        tot = 1.0
    s = [c / tot for c in row]
    prev = s if st.ewma is None else st.ewma
    # lfilter's recursion: b0 * x plus the state decay * y (computed as 0 * x - (-decay) * y)
    st.ewma = y = [_KEEP * x + BLAME_DECAY * v for x, v in zip(s, prev, strict=True)]
    before = [0.0] * len(s) if st.total is None else st.total
    st.total = total = [a + x for a, x in zip(before, s, strict=True)]
    if not excursion:
        st.in_excursion = False
        return y
    if st.in_excursion and st.ex_base is not None:
        st.ex_len += 1
    else:
        st.ex_base, st.ex_len = before, 1
    st.in_excursion = True
    n = float(st.ex_len)
    return [(t - b) / n for t, b in zip(total, st.ex_base, strict=True)]


_SMALL = 16  # rows up to which per-row Python is faster than vectorised numpy


def top_of_row(row: list[float], k: int) -> list[int]:
    """The indices of the ``k`` largest values of one row, largest first; ties keep
    column order (Python's sort is stable, also reversed)."""
    return sorted(range(len(row)), key=row.__getitem__, reverse=True)[:k]


def top_indices(values: np.ndarray, k: int) -> np.ndarray:
    """``(n, k)`` column indices of the largest values per row, largest first; ties keep
    column order (as a stable sort of the row would)."""
    n, n_s = values.shape
    k = max(1, min(k, n_s))
    if n <= _SMALL:  # a few rows: plain Python beats numpy's per-call overhead
        rows = [top_of_row(row, k) for row in values.tolist()]
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
