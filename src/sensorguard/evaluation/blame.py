"""A candidate sensor ranking, measured by the quality suite: contributions averaged
over the excursion.

``top_sensors`` (the predictor, ``sensorguard score``, the watch service) ranks each
reading's own ``contributions``. Ranked reading by reading they are noisy: a sensor that
is off for the whole event drops out of the top for single readings whenever noise wins.
This ranking averages each reading's *shares* (its contributions divided by their sum,
so every reading counts once and a huge reading does not drown the rest):

* **inside an excursion** (a run of readings that are alarmed or score above the
  threshold): the mean share since the excursion started; a single reading above the
  threshold (a glitch the alarm rule ignores) is blamed on its own contributions;
* **elsewhere**: the mean share over the last ``window`` readings (10).

It is causal (a reading's blame uses that reading and earlier ones only). Measured on
the real-data suite (docs/quality.md, "Explanations"), mean of the five detectors, SMD
HitRate@150 % / simulator top 3 / Tennessee Eastman top 3: the readings' own
contributions 0.551 / 0.810 / 0.740, this ranking 0.605 / 0.929 / 0.828 (window, rule and
shares chosen on those sets; each left-out set still improves,
``benchmarks/suite/explain_variants.py``). **Not yet what ``top_sensors`` returns**: the
predictor and the watch service rank one reading at a time in their per-asset streams,
and they would have to carry the window and the excursion sum per asset (and in the
watch checkpoints) to give the same answer as a batch; a batch-only change would make
``POST /v1/predict`` and ``sensorguard score`` disagree on the same readings.
"""

from __future__ import annotations

import numpy as np

BLAME_WINDOW = 10


def blame(
    contributions: np.ndarray, excursion: np.ndarray, window: int = BLAME_WINDOW
) -> np.ndarray:
    """``(n, p)`` blame per reading (see the module docstring); rows keep their order.

    ``contributions``: the detector's non-negative ``(n, p)`` contributions (finite; the
    detectors cap overflow); ``excursion``: ``n`` booleans, a reading alarmed or above
    the threshold."""
    C = np.asarray(contributions, dtype=np.float64)
    n = C.shape[0]
    if n == 0 or C.ndim != 2:
        return C.copy()
    tot = C.sum(axis=1, keepdims=True)
    tot[~(tot > 0)] = 1.0  # an all-zero row has no share to give
    # shares are in [0, 1], so running sums stay exact enough for ranking over any length
    cs = np.empty((n + 1, C.shape[1]))
    cs[0] = 0.0
    np.cumsum(C / tot, axis=0, out=cs[1:])
    idx = np.arange(1, n + 1)
    w = max(1, int(window))
    lo = np.maximum(idx - w, 0)
    f = np.asarray(excursion, dtype=bool).reshape(-1)
    if f.any():
        # inside an excursion the window starts where the excursion started
        start = np.flatnonzero(f & ~np.r_[False, f[:-1]])
        run_start = np.zeros(n, dtype=np.int64)
        run_start[start] = start
        run_start = np.maximum.accumulate(run_start)
        lo = np.where(f, run_start, lo)
    return (cs[idx] - cs[lo]) / (idx - lo)[:, None]  # type: ignore[no-any-return]
