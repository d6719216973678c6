"""Operating-state detector: normal operation as a few clusters, failure as distance.

How it works (``OperatingStateDetector``, name ``"operating-states"``):

1. **Scaling.** Each sensor is centred on its training median and divided by a robust
   scale (IQR / 1.349, else the standard deviation), so units do not matter. Statistics
   come from a seeded sample of at most ``fit_sample`` rows; scores and the threshold
   use every training row.
2. **Operating states.** k-means for every k in ``min_states..max_states`` (``KMeans`` up
   to 20,000 rows, ``MiniBatchKMeans`` above). The number of states is the k with the
   highest silhouette on a fixed, seeded sample of ``silhouette_sample`` rows (exact
   Euclidean silhouette, every k in one blocked pass); ``silhouette_`` and
   ``silhouette_by_k_`` report it. The range starts at 3: the silhouette rewards
   well-separated groups and readily merges two nearby operating points (say two load
   levels) into one two-humped state, which no per-state scale can describe.
3. **Per-state model.** The k-means states are refined so they are the states scoring
   uses (classification EM: each row moves to its most likely state under per-state
   independent scales, statistics are recomputed, up to ``refine_iter`` rounds). Each
   state keeps a robust centre (``state_centers_``, per-sensor median), a robust scale
   (``state_scales_`` = 1.4826·MAD, floored at ``scale_floor`` × the global scale so a
   sensor that is nearly constant within a state does not turn noise into huge scores),
   its plain mean (``state_means_``, for reports) and the correlation of its sensors
   (shrunk towards the identity by the Ledoit-Wolf intensity of the state's rows, at
   least ``shrinkage``, and inverted: ``state_conditional_``; the intensity used is
   ``state_shrinkage_``).
4. **Nearest state.** The k minimising ``sum_j z_kj² + 2·sum_j log s_kj`` with
   ``z_kj = (x_j − c_kj) / s_kj`` (the most likely state), for all states at once through
   the matmul expansion ``x²·w − 2·x·(c·w) + const`` with w = 1/s².
5. **Score and contributions.** For the nearest state, each sensor gets two deviations:
   its marginal z (how far from the state's centre) and its conditional z (how far from
   what the other sensors predict for it — from the state's inverse correlation matrix,
   one small matmul). Sensor j's contribution is ``(z_j² + cz_j²) / 2``;
   ``score = sqrt(mean_j contribution_j)`` (about 1 for a typical normal reading) and
   ``contributions`` are the per-sensor shares (non-negative, rows sum to 1). The
   conditional part catches readings whose values are each plausible but do not fit
   together — a leak (flow low for the speed), a frozen sensor after a load change.
6. **Threshold** (no labels; ``fit`` ignores ``y``): the training scores are smoothed
   exactly like live scores and ``threshold_ = margin × quantile(smoothed training
   scores, quantile)`` (defaults 1.25 × the 99.5th percentile). Models saved with the
   former names ``threshold_quantile``/``threshold_margin`` load under the new ones.
   Training data should be normal operation; pipelines drop labelled failure rows first.
7. **Events.** ``is_anomaly`` comes from causal smoothing plus hysteresis
   (:mod:`sensorguard.detectors.events`): a rolling mean over ``smooth_window`` readings,
   on after ``min_duration`` readings above the threshold, off after ``release`` readings
   below ``off_ratio × threshold``.

Scoring runs chunk by chunk in float32 on a small thread pool; ``score_one`` runs the
same float32 operations on a single reading without the chunk bookkeeping (the live
fast path). See ``benchmarks/bench_detector_speed.py`` for measured speed.

(This module is longer than most on purpose: one detector with its kernels, which only
make sense together.)
"""

from __future__ import annotations

import itertools
import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from sensorguard.detectors._stats import blas_controller
from sensorguard.detectors.base import BaseDetector, Computed
from sensorguard.detectors.events import rolling_mean
from sensorguard.detectors.params import ALARM_RULES, Rule, at_least, between
from sensorguard.errors import DataValidationError

_CHUNK = 4_096
_THREADS = max(1, min(4, os.cpu_count() or 1))
_SMALL_N = 20_000


class OperatingStateDetector(BaseDetector):
    """Learn normal operating states as clusters; score distance to the nearest state.

    Parameters are stored as given (scikit-learn style); see the module docstring for
    the method. ``random_state`` makes fitting deterministic.
    """

    name = "operating-states"
    param_rules: ClassVar[dict[str, Rule]] = {
        "min_states": at_least(1),
        "max_states": at_least(1),
        "silhouette_sample": at_least(2),
        "fit_sample": at_least(1),
        "scale_floor": at_least(0),
        **ALARM_RULES,
        # a lower quantile would put the threshold inside normal operation
        "quantile": between(0.5, 1, lo_open=False, hi_open=True),
        "shrinkage": between(0, 1, lo_open=False, hi_open=False),
        "refine_iter": at_least(0),
        "random_state": at_least(0),
    }
    param_aliases: ClassVar[dict[str, str]] = {
        "threshold_quantile": "quantile",
        "threshold_margin": "margin",
    }

    def __init__(
        self,
        min_states: int = 3,
        max_states: int = 8,
        silhouette_sample: int = 20_000,
        fit_sample: int = 200_000,
        scale_floor: float = 0.05,
        quantile: float = 0.995,
        margin: float = 1.25,
        smooth_window: int = 5,
        min_duration: int = 3,
        off_ratio: float = 0.8,
        release: int = 5,
        shrinkage: float = 0.05,
        refine_iter: int = 5,
        random_state: int = 0,
    ) -> None:
        self.min_states = min_states
        self.max_states = max_states
        self.silhouette_sample = silhouette_sample
        self.fit_sample = fit_sample
        self.scale_floor = scale_floor
        self.quantile = quantile
        self.margin = margin
        self.smooth_window = smooth_window
        self.min_duration = min_duration
        self.off_ratio = off_ratio
        self.release = release
        self.shrinkage = shrinkage
        self.refine_iter = refine_iter
        self.random_state = random_state

    # ------------------------------------------------------------------ fit
    def _state_range(self, n: int) -> list[int]:
        """The numbers of states to try (the single-value rules are in ``param_rules``)."""
        if int(self.max_states) < int(self.min_states):
            raise DataValidationError(
                f"bad state range min_states={self.min_states}, max_states={self.max_states}",
                "use 1 <= min_states <= max_states",
            )
        ks = [k for k in range(max(2, int(self.min_states)), int(self.max_states) + 1)]
        ks = [k for k in ks if k < n]
        if int(self.min_states) == 1 and not ks:
            return [1]
        if not ks:
            raise DataValidationError(
                f"too few readings ({n}) to learn {self.min_states}+ operating states",
                "provide more training readings or lower min_states",
            )
        return ks

    def _fit(self, A: np.ndarray) -> None:
        n, p = A.shape
        ks = self._state_range(n)
        rng = np.random.default_rng(self.random_state)
        # statistics come from a seeded sample (plenty for k-means and robust scales);
        # scores and the threshold come from every training row
        m_fit = min(n, int(self.fit_sample))
        fit_rows = np.sort(rng.choice(n, m_fit, replace=False)) if m_fit < n else None
        S = A if fit_rows is None else A[fit_rows]

        # 1. global robust scaling
        q1, med, q3 = np.percentile(S, [25, 50, 75], axis=0)
        scale = (q3 - q1) / 1.349
        std = S.std(axis=0)
        scale = np.where(scale > 0, scale, std)
        scale = np.where(scale > 0, scale, np.maximum(np.abs(med), 1.0) * 1e-6)
        self.center_ = med.astype(np.float64)
        self.scale_ = scale.astype(np.float64)
        Z = ((S - self.center_) / self.scale_).astype(np.float32)

        # 2. operating states: k-means per k, silhouette on a fixed sub-sample
        m_sil = min(Z.shape[0], int(self.silhouette_sample))
        sil_rows = rng.choice(Z.shape[0], m_sil, replace=False)
        models = {k: _kmeans(Z, k, int(self.random_state)) for k in ks}
        if ks == [1]:
            sil: dict[int, float] = {1: float("nan")}
            best = 1
        else:
            labelings = [models[k].labels_[sil_rows] for k in ks]
            sil = dict(zip(ks, silhouettes(Z[sil_rows], labelings), strict=True))
            best = max(ks, key=lambda k: (sil[k], -k))
        self.silhouette_by_k_ = {str(k): round(float(v), 6) for k, v in sil.items()}
        self.silhouette_ = float(sil[best]) if best > 1 else None
        lab = np.asarray(models[best].labels_, dtype=np.int64)

        # 3. per-state centres and robust scales, refined so that the states are the
        #    ones scoring uses: reassign each row to its most likely state under
        #    per-state independent scales, recompute, repeat (classification EM)
        floor = np.maximum(float(self.scale_floor), 1e-9)  # in standardised units
        lab = _compact(lab)
        for _ in range(int(self.refine_iter)):
            cen, sc = _state_stats(Z, lab, floor, rng)
            new = _nearest_state(Z, cen, sc)
            new_c = _compact(new)
            if np.array_equal(new_c, lab):
                break
            lab = new_c
        cen, sc = _state_stats(Z, lab, floor, rng)
        K = cen.shape[0]
        self.state_centers_ = cen * self.scale_ + self.center_
        self.state_scales_ = sc * self.scale_
        self.state_means_ = np.stack([S[lab == k].mean(axis=0) for k in range(K)])
        # conditional model per state: standardised deviations' correlation, shrunk
        # towards the identity, inverted once; see _compute for how it is used
        cond = np.empty((K, p, p))
        self.state_shrinkage_ = np.empty(K)
        for i in range(K):
            rows = S[lab == i]
            if rows.shape[0] > 50_000:
                rows = rows[rng.choice(rows.shape[0], 50_000, replace=False)]
            zk = np.clip((rows - self.state_centers_[i]) / self.state_scales_[i], -6.0, 6.0)
            cov = np.atleast_2d(np.cov(zk, rowvar=False)) if zk.shape[0] > 1 else np.eye(p)
            sd = np.sqrt(np.clip(np.diag(cov), 1e-12, None))
            corr = cov / sd[:, None] / sd[None, :]
            alpha = _shrinkage(zk, sd, float(self.shrinkage))
            self.state_shrinkage_[i] = alpha
            prec = np.linalg.pinv((1 - alpha) * corr + alpha * np.eye(p), hermitian=True)
            # z' @ (prec / sqrt(diag)) = the conditional z of every sensor given the others
            cond[i] = prec / sd[:, None] / np.sqrt(np.diag(prec))[None, :]
        self.state_conditional_ = cond
        self.n_states_ = int(K)
        self.n_train_ = int(n)
        self._cache: tuple[np.ndarray, ...] | None = None

        # 4. threshold from smoothed training scores (documented rule, no labels)
        fitted = self._compute(A, want_contrib=False)
        score, state = fitted.score, fitted.states()
        self.state_sizes_ = np.bincount(state, minlength=self.n_states_).astype(np.int64)
        smooth = rolling_mean(score, int(self.smooth_window))
        qs = np.quantile(smooth, [0.5, 0.9, 0.99, float(self.quantile)])
        self.train_score_median_ = float(qs[0])
        self.train_score_q90_ = float(qs[1])
        self.train_score_q99_ = float(qs[2])
        self.threshold_ = float(self.margin) * float(qs[3])

    # -------------------------------------------------------------- scoring
    def _kernel(self) -> tuple[np.ndarray, ...]:
        """Scoring constants in globally standardised units (float32), cached."""
        cache = getattr(self, "_cache", None)
        if cache is None:
            mu = (self.state_centers_ - self.center_) / self.scale_
            inv = self.scale_ / self.state_scales_  # 1 / s' in standardised units
            w = inv * inv
            logdet = -2.0 * np.log(inv).sum(axis=1)
            cache = (
                (1.0 / self.scale_).astype(np.float32),
                self.center_.astype(np.float32),
                np.ascontiguousarray(w.T, dtype=np.float32),  # p x K
                np.ascontiguousarray((-2.0 * mu * w).T, dtype=np.float32),  # p x K
                ((mu * mu * w).sum(axis=1) + logdet).astype(np.float32),  # K
                mu.astype(np.float32),
                inv.astype(np.float32),
                self.state_conditional_.astype(np.float32),
            )
            self._cache = cache
        return cache

    def _compute(self, A: np.ndarray, want_contrib: bool = True) -> Computed:
        """Score, nearest state and (optionally) contributions, chunk by chunk.

        Chunks run on a small thread pool (NumPy releases the GIL in these kernels);
        BLAS is kept single-threaded because the products are thin (p × n_states)."""
        inv_scale, center, wT, bT, c, mu, inv, cond = self._kernel()
        n, p = A.shape
        score = np.empty(n, dtype=np.float64)
        state = np.empty(n, dtype=np.int64)
        contrib = np.empty((n, p), dtype=np.float32) if want_contrib else None

        def work(s: int) -> None:
            e = min(n, s + _CHUNK)
            z = A[s:e].astype(np.float32)
            z -= center
            z *= inv_scale
            d = (z * z) @ wT
            d += z @ bT
            d += c
            k = d.argmin(axis=1)
            z -= mu[k]
            z *= inv[k]
            cz = _grouped_matmul(z, k, cond)
            z *= z
            cz *= cz
            z += cz
            z *= 0.5
            tot = np.einsum("ij->i", z)
            score[s:e] = np.sqrt(tot / p)
            state[s:e] = k
            if contrib is not None:
                tot[tot == 0] = 1.0
                np.divide(z, tot[:, None], out=contrib[s:e])

        starts = range(0, n, _CHUNK)
        if n <= _CHUNK:
            # one chunk: no BLAS limit needed (one thread does the work)
            work(0)
            return Computed(score, contrib, state)
        with blas_controller().limit(limits=1, user_api="blas"):
            if n <= 2 * _CHUNK or _THREADS == 1:
                for s in starts:
                    work(s)
            else:
                with ThreadPoolExecutor(_THREADS) as pool:
                    list(pool.map(work, starts))
        return Computed(score, contrib, state)

    def score_one(self, row: np.ndarray) -> Computed:
        """One gap-free reading through the same float32 operations as ``_compute`` on
        a (1, p) row, minus its chunking, run grouping and array bookkeeping, which cost
        more than the arithmetic for a single reading (the tests compare both paths)."""
        inv_scale, center, wT, bT, c, mu, inv, cond = self._kernel()
        z = np.array(row, dtype=np.float32, ndmin=2)  # a copy: (p,) and (1, p) alike
        z -= center
        z *= inv_scale
        d = (z * z) @ wT
        d += z @ bT
        d += c
        k = int(d.argmin())
        z -= mu[k]
        z *= inv[k]
        cz = z @ cond[k]
        z *= z
        cz *= cz
        z += cz
        z *= 0.5
        tot = np.einsum("ij->i", z)
        t0 = tot.item()
        if not math.isfinite(t0):  # a huge reading: the capped batch path
            return self.compute(np.asarray(row, dtype=np.float64).reshape(1, -1))
        score = np.sqrt(tot / z.shape[1]).astype(np.float64)
        if t0 == 0:
            tot[0] = 1.0
        return Computed(score, z / tot[:, None], np.array([k], dtype=np.int64))

    def describe_states(self) -> dict[str, Any]:
        """The learned operating states: size, centre, mean and scale of every sensor
        (JSON-serialisable, logged next to the model)."""
        self._require_fitted()
        sensors = self.sensors
        centers = self.state_centers_
        sizes = np.asarray(self.state_sizes_, dtype=np.float64)
        total = float(sizes.sum()) or 1.0
        states = [
            {
                "state": k,
                "train_rows": int(sizes[k]),
                "fraction": round(float(sizes[k]) / total, 6),
                "center": _named(sensors, centers[k]),
                "mean": _named(sensors, self.state_means_[k]),
                "scale": _named(sensors, self.state_scales_[k]),
            }
            for k in range(centers.shape[0])
        ]
        return {
            "detector": self.name,
            "n_states": int(centers.shape[0]),
            "silhouette": self.silhouette_,
            "silhouette_by_k": self.silhouette_by_k_,
            "threshold": float(self.threshold_),
            "sensors": list(sensors),
            "states": states,
        }

    def deviations(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Signed per-sensor z (deviation from the nearest state, in state scales)."""
        A = self.prepare(X)
        state = self._compute(A, want_contrib=False).states()
        return (A - self.state_centers_[state]) / self.state_scales_[state]  # type: ignore[no-any-return]


def _named(sensors: list[str], values: np.ndarray) -> dict[str, float]:
    return {s: round(float(v), 6) for s, v in zip(sensors, values, strict=True)}


def _shrinkage(zk: np.ndarray, sd: np.ndarray, least: float) -> float:
    """How far a state's correlation is shrunk towards the identity: the Ledoit-Wolf
    intensity of its rows, at least ``least``.

    A fixed 0.05 overfits where a state has few rows for its sensors: Tennessee
    Eastman's 500 training rows split into states of about 100 rows for 52 sensors,
    and the conditional part then raised 30 % false alarms before the fault (8 % with
    this rule, detection 92.8 → 84.4 %; docs/quality.md, "Choosing the default"). With
    thousands of rows per state the intensity is near 0 and ``least`` applies."""
    if zk.shape[0] < 3 or zk.shape[1] < 2:
        return least
    from sklearn.covariance import ledoit_wolf_shrinkage

    zs = (zk - zk.mean(axis=0)) / sd
    return float(min(1.0, max(least, float(ledoit_wolf_shrinkage(zs)))))


def _compact(lab: np.ndarray) -> np.ndarray:
    """Relabel to 0..K-1 in order of first appearance of each used label (drops empty)."""
    _, first, inv = np.unique(lab, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))
    return order[inv].astype(np.int64)  # type: ignore[no-any-return]


def _state_stats(
    Z: np.ndarray, lab: np.ndarray, floor: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Per-state median and floored 1.4826·MAD (standardised units)."""
    K = int(lab.max()) + 1
    cen = np.empty((K, Z.shape[1]))
    sc = np.empty((K, Z.shape[1]))
    for k in range(K):
        rows = Z[lab == k]
        if rows.shape[0] > 50_000:  # a robust centre and scale need no more
            rows = rows[rng.choice(rows.shape[0], 50_000, replace=False)]
        cen[k] = np.median(rows, axis=0)
        sc[k] = 1.4826 * np.median(np.abs(rows - cen[k]), axis=0)
    return cen, np.maximum(sc, floor)


def _nearest_state(Z: np.ndarray, cen: np.ndarray, sc: np.ndarray) -> np.ndarray:
    """Most likely state per row: min of sum z² + 2·sum log s (matmul expansion)."""
    w = 1.0 / (sc * sc)
    const = (cen * cen * w).sum(axis=1) + 2.0 * np.log(sc).sum(axis=1)
    out = np.empty(Z.shape[0], dtype=np.int64)
    for s in range(0, Z.shape[0], _CHUNK):
        z = np.asarray(Z[s : s + _CHUNK], dtype=np.float64)
        d = (z * z) @ w.T - 2.0 * z @ (cen * w).T + const
        out[s : s + _CHUNK] = d.argmin(axis=1)
    return out


def _grouped_matmul(z: np.ndarray, k: np.ndarray, mats: np.ndarray) -> np.ndarray:
    """Row i times ``mats[k[i]]``. States persist in time, so rows come in runs of one
    state: multiply each run in place (no gather); fall back to one product per state
    when the state changes very often."""
    cuts = np.flatnonzero(k[1:] != k[:-1]) + 1
    if cuts.size == 0:
        return z @ mats[int(k[0])]  # type: ignore[no-any-return]
    out = np.empty_like(z)
    if cuts.size < 64:
        bounds = [0, *cuts.tolist(), k.size]
        for a, b in itertools.pairwise(bounds):
            np.matmul(z[a:b], mats[int(k[a])], out=out[a:b])
        return out
    for st in np.unique(k):
        rows = np.flatnonzero(k == st)
        out[rows] = z[rows] @ mats[st]
    return out


def _kmeans(Z: np.ndarray, k: int, seed: int) -> Any:
    from sklearn.cluster import KMeans, MiniBatchKMeans
    from threadpoolctl import threadpool_limits

    # one thread: k-means' OpenMP threads spin-wait badly on a busy machine (measured
    # 25x slower with two threads under load), and these fits are short anyway
    with threadpool_limits(1):
        if Z.shape[0] <= _SMALL_N:
            return KMeans(n_clusters=k, n_init=3, random_state=seed).fit(Z)
        return MiniBatchKMeans(n_clusters=k, n_init=3, batch_size=4096, random_state=seed).fit(Z)


def silhouettes(Z: np.ndarray, labelings: list[np.ndarray], chunk: int = 2048) -> list[float]:
    """Mean Euclidean silhouette of several labelings of the same rows, in one pass.

    Distances are computed block by block (never the full m×m matrix); per-cluster
    distance sums for every labeling come from one matmul with stacked one-hot columns.
    A point alone in its cluster scores 0 (scikit-learn's convention).
    """
    Zf = np.asarray(Z, dtype=np.float32)
    m = Zf.shape[0]
    ks = [int(lab.max()) + 1 for lab in labelings]
    offs = np.concatenate([[0], np.cumsum(ks)])
    H = np.zeros((m, int(offs[-1])), dtype=np.float32)
    for lab, off in zip(labelings, offs[:-1], strict=False):
        H[np.arange(m), off + lab] = 1.0
    sq = np.einsum("ij,ij->i", Zf, Zf)
    S = np.empty((m, H.shape[1]), dtype=np.float64)
    for s in range(0, m, chunk):
        e = min(m, s + chunk)
        D = Zf[s:e] @ Zf.T
        D *= -2.0
        D += sq[s:e, None]
        D += sq[None, :]
        np.maximum(D, 0.0, out=D)
        np.sqrt(D, out=D)
        S[s:e] = D @ H
    out = []
    rows = np.arange(m)
    for lab, k, off in zip(labelings, ks, offs[:-1], strict=False):
        sums = S[:, off : off + k]
        sizes = np.bincount(lab, minlength=k).astype(np.float64)
        own = sizes[lab]
        a = sums[rows, lab] / np.maximum(own - 1, 1)
        means = sums / np.where(sizes > 0, sizes, np.inf)
        means[rows, lab] = np.inf
        means[:, sizes == 0] = np.inf
        b = means.min(axis=1)
        denom = np.maximum(a, b)
        sil = np.where((own > 1) & (denom > 0), (b - a) / np.where(denom > 0, denom, 1), 0.0)
        out.append(float(sil.mean()))
    return out
