"""Drift-robust detector: a baseline frozen while alarmed, judged by how far normal drifts.

Built for machines whose normal behaviour keeps drifting after a short training window
(temperatures creeping up, baselines wandering) while failures show as sustained changes.

* **Smoothing.** Each sensor is summarised by the median (``center="median"``, robust to
  glitches) or mean of its last ``window`` readings: ``x̄``.
* **Baseline.** A per-sensor baseline follows ``x̄`` with an exponentially weighted
  update of rate ``alpha``, each step clipped to ``clip`` tracking deviations, so spikes
  cannot drag it. It is not updated for a sensor whose own deviation exceeds
  ``sensor_gate`` (a change on one sensor is not absorbed while the overall score is
  still below the threshold); that gate widens with the drift allowance for as long as
  the sensor is held, so a drifting sensor is caught up with, not left behind. When an
  alarm starts, the baselines of the sensors whose *level* term carries it
  (``freeze_share`` of the largest term or more; a sensor that only got noisier keeps
  tracking) are **frozen** until it ends, so a failure is never absorbed
  into "normal" and its end is seen as a return to the old level; the other sensors
  (e.g. a warming temperature) keep tracking.
* **Drift allowance.** A frozen baseline ages. From the training window the detector
  learns, per sensor, how far ``x̄`` normally moves over ``h`` readings (the trimmed root
  mean square of ``x̄[t+h] − x̄[t]`` for ``h`` up to half the training window; beyond, it
  grows like ``h^k`` with ``k`` in [0.5, 1] fitted on the longer lags). A frozen
  sensor's deviation is divided by its tracking error plus the allowance for the
  baseline's age, so sensors that drift or wander count less the longer the alarm lasts
  while steady sensors stay sensitive. Nothing about which sensor drifts is hard-coded.
* **Spread.** The log root mean square of first differences over the window, against
  training, catches sensors getting noisier (cavitation, loose parts); first differences
  make it blind to slow drift.
* **Score** = mean of the squared standardised level and spread deviations over all
  sensors (about 1 on normal data). **Alarm**: hysteresis
  (:func:`sensorguard.detectors.events.hysteresis`); the threshold is the ``quantile``
  of the training scores times ``margin`` — no labels needed.
* **End of an alarm** (``end_test``). A median window needs half its length to see a
  return to normal. While alarmed, each new reading is asked whether the frozen sensors
  are back at their baselines rather than at the window's level, and whether the noisy
  ones are back at their training spread (a CUSUM of the log-likelihood ratio, each
  sensor's say capped per reading). When the CUSUM passes ``end_test`` the window
  restarts at the return. ``end_rebase`` also restarts the held baselines from the
  readings since the return (off by default: it helps on the synthetic rig but anchored
  baselines at post-failure levels on real data, see docs/quality.md).
* **On-delay** (``confirm``). An alarm is an event only once it has lasted ``confirm``
  readings. Scoring a recorded batch drops shorter alarms and dates each event back to
  where its smoothed score rose above ``backdate`` × threshold (at most ``max_back``
  readings earlier); live scoring (``alarm_rule_.tracker()``, see
  :mod:`sensorguard.detectors.alarm`) raises it ``confirm`` readings after it started.
* **Contributions**: each sensor's squared level and spread deviations.

Rejected after evaluation (docs/quality.md): linear trend extrapolation (Holt), a
Ledoit–Wolf Mahalanobis distance over windowed residuals (too few effective training
samples), max/top-k instead of the mean, re-freezing sensors that join an alarm later.

The filter state at the end of training (baseline, ages, last ``window`` readings) is
saved with the model; every ``score_samples`` call starts from it, so scores are
deterministic and independent of earlier calls. ``score_stream`` continues a stream
from a given state instead (live scoring keeps one per asset; the state converts to a
JSON-able dict for checkpoints). Scoring loops over
readings because the baseline depends on earlier alarms (about 60 µs per reading with
8 sensors).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from sensorguard.detectors._stats import quantile_threshold, robust_scale
from sensorguard.detectors.base import BaseDetector, Computed
from sensorguard.detectors.params import (
    ALARM_RULES,
    Rule,
    at_least,
    between,
    one_of,
    positive,
)

_LLR_CLIP = 4.0  # one reading's say (per sensor) in the end-of-alarm test


@dataclass
class _State:
    level: np.ndarray  # (p,) baseline of the smoothed readings
    buf: np.ndarray  # (window, p) last readings, ring buffer
    pos: int
    count: int
    age: np.ndarray  # (p,) readings since each baseline was frozen (0 = tracking)
    # the rest starts empty at the end of training (an alarm never spans it)
    held: np.ndarray | None = None  # (p,) readings each sensor has been held by the gate
    noisy: np.ndarray | None = None  # (p,) sensors whose spread carries the alarm
    relearn: np.ndarray | None = None  # (p,) baselines restarting after an alarm
    cus: float = 0.0  # end-of-alarm CUSUM
    since: int = 0  # readings since that CUSUM left 0


@dataclass
class _Run:
    Zl: np.ndarray  # standardised level deviation (n, p)
    Zs: np.ndarray  # standardised spread deviation (n, p)
    level_dev: np.ndarray  # x̄ − baseline (n, p), raw units
    log_spread: np.ndarray  # (n, p)
    score: np.ndarray
    state: _State


class DriftRobustDetector(BaseDetector):
    name = "drift-robust"
    param_rules: ClassVar[dict[str, Rule]] = {
        "window": at_least(2),
        "center": one_of("median", "mean"),
        "alpha": between(0, 1, lo_open=True, hi_open=False),
        "clip": positive(),
        "freeze_share": between(0, 1, lo_open=True, hi_open=False),
        "sensor_gate": at_least(0),
        "warmup": at_least(0),
        "end_test": at_least(0),
        "confirm": at_least(0),
        "backdate": between(0, 1, lo_open=False, hi_open=False),
        "max_back": at_least(0),
        **ALARM_RULES,
    }

    def __init__(
        self,
        window: int = 20,
        center: str = "median",
        alpha: float = 0.005,
        clip: float = 3.0,
        freeze_share: float = 0.25,
        sensor_gate: float = 3.0,
        spread: bool = True,
        quantile: float = 0.99,
        margin: float = 1.2,
        warmup: int = 30,
        smooth_window: int = 3,
        min_duration: int = 2,
        off_ratio: float = 0.7,
        release: int = 2,
        end_test: float = 10.0,
        end_rebase: bool = False,
        confirm: int = 60,
        backdate: float = 0.5,
        max_back: int = 15,
    ) -> None:
        self.window = window
        self.end_test = end_test
        self.end_rebase = end_rebase
        self.confirm = confirm
        self.backdate = backdate
        self.max_back = max_back
        self.alpha = alpha
        self.clip = clip
        self.freeze_share = freeze_share
        self.center = center
        self.sensor_gate = sensor_gate
        self.spread = spread
        self.warmup = warmup
        self.quantile = quantile
        self.margin = margin
        self.smooth_window = smooth_window
        self.min_duration = min_duration
        self.off_ratio = off_ratio
        self.release = release

    # ---- the sequential filter
    def _allowance(self, age: np.ndarray) -> np.ndarray:
        """Per-sensor normal movement of x̄ over ``age`` readings (0 where age is 0)."""
        lags, ds = self.lags_, self.drift_scale_
        out = np.zeros(age.shape)
        for j in np.flatnonzero(age):
            a = float(age[j])
            if a >= lags[-1]:
                out[j] = ds[-1, j] * (a / lags[-1]) ** self.drift_power_[j]
            else:
                out[j] = np.interp(a, lags, ds[:, j])
        return out

    def _run(self, A: np.ndarray, st: _State, threshold: float | None) -> _Run:
        n, p = A.shape
        w = max(2, int(self.window))
        lvl = st.level.astype(np.float64).copy()
        buf = st.buf.astype(np.float64).copy()
        pos, count = int(st.pos), int(st.count)
        age = np.asarray(st.age, dtype=np.int64).copy()
        track = self.track_scale_
        lim = self.clip * track
        sp_c, sp_s = self.spread_center_, self.spread_scale_
        use_spread = bool(self.spread)
        use_median = self.center == "median"
        nfeat = 2 * p if use_spread else p
        order = np.arange(w)
        Zl = np.empty((n, p))
        Zs = np.zeros((n, p))
        dev = np.empty((n, p))
        lsp = np.zeros((n, p))
        score = np.empty(n)
        held = np.zeros(p, dtype=np.int64) if st.held is None else st.held.copy()

        def gate_hold() -> np.ndarray:
            g = track + self._allowance(held) if held.any() else track
            return np.asarray(np.abs(d) > self.sensor_gate * g)

        noise = getattr(self, "noise_scale_", track)
        end_h = float(self.end_test) if threshold is not None else 0.0
        cus, since = float(st.cus), int(st.since)
        noisy = np.zeros(p, dtype=bool) if st.noisy is None else st.noisy.copy()
        relearn = np.zeros(p, dtype=bool) if st.relearn is None else st.relearn.copy()
        ls = np.zeros(p)
        no_spread = np.zeros(p)
        for t in range(n):
            buf[pos] = A[t]
            pos = (pos + 1) % w
            count += 1
            k = min(count, w)
            ridx = (pos - k + order[:k]) % w
            win = buf if k == w else buf[ridx]
            xbar = np.median(win, axis=0) if use_median else win.mean(axis=0)
            if relearn.any():
                # after an alarm ended: these baselines restart from the readings since
                # the return until the window has refilled
                lvl = np.where(relearn, xbar, lvl)
                if k == w:
                    relearn = np.zeros(p, dtype=bool)
            d = xbar - lvl
            dev[t] = d
            frozen = age > 0
            scale = track + self._allowance(age) if frozen.any() else track
            if k < w:
                scale = scale * np.sqrt(w / k)
            zl = d / scale
            Zl[t] = zl
            c = zl * zl
            zs = no_spread
            if use_spread and k > 2:
                ordered = buf[ridx]  # oldest first
                dd = np.diff(ordered, axis=0)
                ls = 0.5 * np.log(np.mean(dd * dd, axis=0) + 1e-300)
                lsp[t] = ls
                zs = (ls - sp_c) / (sp_s * np.sqrt((w - 1) / (k - 1)))
                Zs[t] = zs
                c = c + zs * zs
            s = float(c.sum()) / nfeat
            score[t] = s
            if threshold is None or s <= threshold:
                frozen = np.zeros(p, dtype=bool)
                noisy = frozen
                # a sensor far from its baseline is not followed even below threshold —
                # judged with the allowance for how long it has been held, so a drifting
                # sensor is caught up with instead of being left behind for good
                hold = gate_hold() if self.sensor_gate > 0 else frozen
            else:
                if not frozen.any():
                    # alarm onset: freeze the sensors whose *level* carries it; the others
                    # (e.g. a warming temperature, or a sensor that only got noisier)
                    # keep tracking
                    frozen = zl * zl >= self.freeze_share * c.max()
                if use_spread:
                    noisy = noisy | ((zs > 0) & (zs * zs >= self.freeze_share * c.max()))
                hold = frozen
                if self.sensor_gate > 0:
                    hold = hold | gate_hold()
            if threshold is None:
                hold = np.zeros(p, dtype=bool)
            elif end_h > 0 and (frozen.any() or noisy.any()):
                # has the machine gone back to normal rather than stayed where the alarm
                # put it? A CUSUM of the log-likelihood ratio, per new reading: levels
                # back at the frozen baseline rather than at the window's level, and
                # first differences back at the training spread rather than the window's
                r = (A[t] - lvl)[frozen]
                D = d[frozen]
                sg = noise[frozen]
                llr = np.clip(((r - D) ** 2 - r * r) / (2 * sg * sg), -_LLR_CLIP, _LLR_CLIP)
                step = float(llr.sum())
                if noisy.any() and k > 2:
                    v0 = np.exp(2 * sp_c[noisy])
                    v1 = np.maximum(np.exp(2 * ls[noisy]), v0)
                    delta = A[t, noisy] - buf[(pos - 2) % w, noisy]
                    lr = 0.5 * np.log(v1 / v0) - 0.5 * delta * delta * (1 / v0 - 1 / v1)
                    step += float(np.clip(lr, -_LLR_CLIP, _LLR_CLIP).sum())
                cus = max(0.0, cus + step)
                since = since + 1 if cus > 0 else 0
                if cus > end_h:
                    m = max(3, min(since, w))
                    count = m
                    if self.end_rebase:
                        relearn = frozen | hold
                    frozen = np.zeros(p, dtype=bool)
                    noisy = frozen
                    hold = frozen
                    cus = 0.0
                    since = 0
            else:
                cus = 0.0
                since = 0
            lvl = np.where(hold, lvl, lvl + self.alpha * np.clip(d, -lim, lim))
            age = np.where(frozen, age + 1, 0)
            held = np.where(hold & ~frozen, held + 1, 0)
        end = _State(lvl, buf, pos, count, age, held, noisy, relearn, cus, since)
        return _Run(Zl, Zs, dev, lsp, score, end)

    def _initial_state(self, A: np.ndarray) -> _State:
        w = max(2, int(self.window))
        m = max(2, min(w, A.shape[0] // 4))
        p = A.shape[1]
        return _State(A[:m].mean(axis=0), np.zeros((w, p)), 0, 0, np.zeros(p, dtype=np.int64))

    def _fit(self, A: np.ndarray) -> None:
        n, p = A.shape
        w = max(2, int(self.window))
        skip = min(w + int(self.warmup), max(n // 3, 1))
        # how far the smoothed readings normally move over h readings (drift allowance)
        c = np.cumsum(np.vstack([np.zeros((1, p)), A]), axis=0)
        wk = min(w, max(n // 4, 1))
        xbar = (c[wk:] - c[:-wk]) / wk  # full-window means, oldest first
        m = xbar.shape[0]
        hmax = max(1, m // 2)
        lags = np.unique(np.round(np.geomspace(1, hmax, num=16)).astype(np.int64))
        noise = robust_scale(np.diff(A, axis=0) if n > 2 else A) / np.sqrt(2.0)
        floor = noise / np.sqrt(w)
        scales = []
        for h in lags:
            diff = xbar[h:] - xbar[:-h] if h < m else xbar[-1:] - xbar[:1]
            scales.append(np.maximum(_trimmed_rms(diff), floor))
        self.lags_ = lags.astype(np.float64)
        self.drift_scale_ = np.maximum.accumulate(np.asarray(scales), axis=0)
        # growth beyond the longest lag: the log-log slope of the upper lags, between
        # 0.5 (wander, random-walk-like) and 1 (steady drift)
        upper = lags >= max(1, lags[-1] // 4)
        if upper.sum() >= 2:
            x = np.log(lags[upper].astype(np.float64))
            ylog = np.log(self.drift_scale_[upper])
            xc = x - x.mean()
            slope = (xc @ (ylog - ylog.mean(axis=0))) / max(float(xc @ xc), 1e-12)
        else:
            slope = np.full(p, 0.5)
        self.drift_power_ = np.clip(slope, 0.5, 1.0)
        # tracking error of the (never frozen) baseline on training, and spread statistics
        self.track_scale_ = np.maximum(floor, 1e-12)
        self.noise_scale_ = np.maximum(noise, 1e-12)
        self.spread_center_ = np.zeros(p)
        self.spread_scale_ = np.ones(p)
        run = self._run(A, self._initial_state(A), None)
        self.track_scale_ = np.maximum(_trimmed_rms(run.level_dev[skip:]), floor)
        if self.spread:
            ls = run.log_spread[skip:]
            self.spread_center_ = np.median(ls, axis=0)
            self.spread_scale_ = np.maximum(robust_scale(ls), 1 / np.sqrt(2 * (w - 1)))
        run = self._run(A, self._initial_state(A), None)
        self.threshold_ = quantile_threshold(run.score[skip:], self.quantile, self.margin)
        end = self._run(A, self._initial_state(A), self.threshold_).state
        self.level_ = end.level
        self.buffer_ = end.buf
        self.buffer_pos_ = int(end.pos)
        self.buffer_count_ = int(end.count)
        self.age_ = end.age

    def _start(self) -> _State:
        return _State(self.level_, self.buffer_, self.buffer_pos_, self.buffer_count_, self.age_)

    def score_stream(
        self, X: pd.DataFrame | np.ndarray, state: _State | None = None
    ) -> tuple[Computed, _State]:
        """Scores and per-sensor contributions of readings that continue a stream, and
        the filter state after them. Pass that state with the stream's next readings
        (``None``: the stream starts where training ended); cutting a stream into any
        pieces gives the scores of one pass. Live scoring keeps one state per asset."""
        A = self.prepare(X)
        run = self._run(A, self._start() if state is None else state, self.threshold_)
        return self._safe_run(run, A.shape[1]), run.state

    def _compute(self, A: np.ndarray, want_contrib: bool = True) -> Computed:
        # one pass of the filter gives the score and the contributions together
        return self._safe_run(self._run(A, self._start(), self.threshold_), A.shape[1])

    def _safe_run(self, run: _Run, p: int) -> Computed:
        denom = 2 * p if self.spread else p
        return Computed(run.score, np.asarray((run.Zl**2 + run.Zs**2) / denom))

    def stream_state_to_dict(self, state: _State) -> dict[str, Any]:
        """A filter state as a JSON-able dict (for checkpoints)."""
        out: dict[str, Any] = {
            "level": state.level.tolist(),
            "buf": np.asarray(state.buf).tolist(),
            "pos": int(state.pos),
            "count": int(state.count),
            "age": np.asarray(state.age).tolist(),
            "cus": float(state.cus),
            "since": int(state.since),
        }
        for key in ("held", "noisy", "relearn"):
            v = getattr(state, key)
            out[key] = None if v is None else np.asarray(v).tolist()
        return out

    def stream_state_from_dict(self, data: dict[str, Any]) -> _State:
        """Counterpart of :meth:`stream_state_to_dict`."""

        def arr(key: str, dtype: Any) -> np.ndarray | None:
            v = data.get(key)
            return None if v is None else np.asarray(v, dtype=dtype)

        level, buf, age = arr("level", np.float64), arr("buf", np.float64), arr("age", np.int64)
        assert level is not None and buf is not None and age is not None
        return _State(
            level=level,
            buf=buf.reshape(-1, level.shape[0]),
            pos=int(data["pos"]),
            count=int(data["count"]),
            age=age,
            held=arr("held", np.int64),
            noisy=arr("noisy", bool),
            relearn=arr("relearn", bool),
            cus=float(data["cus"]),
            since=int(data["since"]),
        )


def _trimmed_rms(D: np.ndarray, keep: float = 0.95) -> np.ndarray:
    """Root mean square per column over the smallest ``keep`` share of |values|
    (a few glitches must not set the scale)."""
    if D.shape[0] == 0:
        return np.zeros(D.shape[1])
    a = np.sort(np.abs(D), axis=0)
    k = max(1, int(np.ceil(keep * a.shape[0])))
    return np.asarray(np.sqrt(np.mean(a[:k] ** 2, axis=0)))
