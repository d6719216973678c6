"""Failure types: group failure episodes by which sensors they disturb.

An *episode* is a run of abnormal readings of one asset: from the labels when the
readings have them, otherwise from the detector's own alarms. Each episode gets a
**signature**: the share of every sensor in the episode's squared deviations (sums to
1; readings weigh by their squared score, so the most abnormal readings dominate).
Episodes are clustered on their signatures (k-means, number of types by silhouette, at
most ``max_types``), and every type is profiled: its mean signature, the mean signed
deviation of each sensor from its operating state (in state scales), the top sensors,
the number of episodes and readings, and the typical duration. Everything returned is
JSON-serialisable, ready to be logged next to the model.

Nothing here depends on the kind of detector: signatures come from the contributions
every detector gives. Only the mean deviation has two sources: a detector with
operating states (``deviations``: the signed z from the nearest state, in state scales)
gives its own; for any other detector it is the signed z from the readings outside the
episodes (their mean and standard deviation; in a labelled training window, the
normal rows the detector was fitted on).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sensorguard.data.contract import Readings
from sensorguard.detectors.base import BaseDetector, DetectionResult
from sensorguard.detectors.events import flag_spans
from sensorguard.evaluation.events import event_mode
from sensorguard.scoring.readings import detect_readings
from sensorguard.timeutil import to_seconds


def _named(sensors: list[str], values: np.ndarray) -> dict[str, float]:
    return {s: round(float(v), 6) for s, v in zip(sensors, values, strict=True)}


def _episodes(flags: np.ndarray, blocks: list[np.ndarray]) -> list[np.ndarray]:
    out = []
    for ix in blocks:
        starts, ends = flag_spans(flags[ix])
        out += [ix[s : e + 1] for s, e in zip(starts, ends, strict=True)]
    return out


def profile_failures(
    detector: BaseDetector,
    readings: Readings,
    *,
    use_labels: bool = True,
    max_types: int = 6,
    min_readings: int = 3,
    random_state: int = 0,
    result: DetectionResult | None = None,
) -> dict[str, Any]:
    """Cluster the failure episodes in ``readings`` into types and profile each type.

    Episodes come from the labels when present (and ``use_labels``), else from the
    detector's alarms; episodes shorter than ``min_readings`` are ignored. ``result`` is
    ``detect_readings(detector, readings)`` when the caller has it already (training
    scores its rows once).
    """
    detector._require_fitted()
    if result is None:
        result = detect_readings(detector, readings)
    labels = readings.y
    source = "labels" if (use_labels and labels is not None) else "alarms"
    flags = np.asarray(labels if source == "labels" else result.is_anomaly, dtype=bool)
    episodes = [e for e in _episodes(flags, readings.asset_blocks()) if e.size >= min_readings]
    sensors = list(result.sensors)
    out: dict[str, Any] = {
        "source": source,
        "sensors": sensors,
        "n_episodes": len(episodes),
        "n_types": 0,
        "silhouette": None,
        "types": [],
    }
    if not episodes:
        return out

    # rows weigh by their squared score, so the most abnormal readings of an episode
    # (not its quiet start or fading end) define its signature
    w2 = np.square(result.score)
    signatures = np.stack([(result.contributions[e] * w2[e, None]).sum(axis=0) for e in episodes])
    signatures = signatures / np.maximum(signatures.sum(axis=1, keepdims=True), 1e-12)
    dev_fn = getattr(detector, "deviations", None)
    X = readings.X
    deviations = (
        np.stack([np.asarray(dev_fn(X.iloc[e])).mean(axis=0) for e in episodes])
        if dev_fn is not None
        else _normal_deviations(detector.prepare(X), flags, episodes)
    )
    labels_k, sil = _cluster(signatures, max_types, random_state)
    out["silhouette"] = sil
    times = readings.times.reset_index(drop=True)
    secs = to_seconds(times)
    step = float(np.median(np.diff(secs))) if secs.size > 1 else 0.0
    mode_col = readings.frame.get("failure_mode")
    modes = None if mode_col is None else np.asarray(mode_col, dtype=object)
    types = []
    for t in range(int(labels_k.max()) + 1):
        members = [i for i in range(len(episodes)) if labels_k[i] == t]
        sig = signatures[members].mean(axis=0)
        durations = [float(secs[episodes[i][-1]] - secs[episodes[i][0]]) + step for i in members]
        order = np.argsort(-sig, kind="stable")
        rec: dict[str, Any] = {
            "type": t,
            "episodes": len(members),
            "readings": int(sum(episodes[i].size for i in members)),
            "duration_s": {
                "median": float(np.median(durations)),
                "mean": float(np.mean(durations)),
                "min": float(np.min(durations)),
                "max": float(np.max(durations)),
            },
            "top_sensors": [sensors[j] for j in order[:3]],
            "signature": _named(sensors, sig),
            "mean_deviation": _named(sensors, deviations[members].mean(axis=0)),
            "examples": [
                {"start": str(times.iloc[episodes[i][0]]), "end": str(times.iloc[episodes[i][-1]])}
                for i in members[:5]
            ],
        }
        if modes is not None:
            counts: dict[str, int] = {}
            for i in members:
                m = event_mode(modes, episodes[i], default=None)
                if m is not None:
                    counts[m] = counts.get(m, 0) + 1
            rec["labelled_modes"] = dict(sorted(counts.items(), key=lambda kv: -kv[1]))
        types.append(rec)
    types.sort(key=lambda r: -r["episodes"])
    for new_id, rec in enumerate(types):
        rec["type"] = new_id
    out["types"] = types
    out["n_types"] = len(types)
    return out


def _normal_deviations(A: np.ndarray, flags: np.ndarray, episodes: list[np.ndarray]) -> np.ndarray:
    """Mean signed z of each episode's readings from the readings outside any flagged
    run (all readings when fewer than 2 are outside): the state-free counterpart of
    ``deviations`` for detectors without operating states."""
    normal = A[~flags] if int((~flags).sum()) >= 2 else A
    mu = normal.mean(axis=0)
    sd = normal.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    return np.stack([((A[e] - mu) / sd).mean(axis=0) for e in episodes])


def _cluster(sig: np.ndarray, max_types: int, seed: int) -> tuple[np.ndarray, float | None]:
    """k-means on episode signatures, k by silhouette (one type for < 3 episodes)."""
    n = sig.shape[0]
    if n < 3 or max_types < 2:
        return np.zeros(n, dtype=np.int64), None
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    best: tuple[float, np.ndarray] | None = None
    for k in range(2, min(max_types, n - 1) + 1):
        lab = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(sig)
        if len(np.unique(lab)) < 2:
            continue
        s = float(silhouette_score(sig, lab))
        if best is None or s > best[0]:
            best = (s, lab)
    if best is None:
        return np.zeros(n, dtype=np.int64), None
    return best[1].astype(np.int64), round(best[0], 6)


def assign_failure_type(profiles: dict[str, Any], contributions: np.ndarray) -> int | None:
    """The failure type whose signature is closest to an event's mean contributions
    (``contributions``: rows of the event, or their mean). ``None`` without types."""
    types = profiles.get("types") or []
    if not types:
        return None
    c = np.asarray(contributions, dtype=np.float64)
    sig = c.mean(axis=0) if c.ndim == 2 else c
    sig = sig / max(float(sig.sum()), 1e-12)
    sensors = profiles["sensors"]
    cents = np.array([[t["signature"][s] for s in sensors] for t in types])
    return int(types[int(np.argmin(((cents - sig) ** 2).sum(axis=1)))]["type"])
