"""The detector contract shared by every detector.

Conventions follow scikit-learn and river's anomaly API:

* ``fit(X)`` learns normal behaviour from sensor readings (rows in time order) and
  returns ``self``; learned state lives in attributes with a trailing underscore.
* ``score_samples(X)`` returns an anomaly score per reading, **higher = more anomalous**
  (the opposite sign of scikit-learn's outlier detectors, like river's ``score_one``).
* The alarm threshold (``threshold_``) is kept apart from the score; it is calibrated on
  the training data without labels by each detector's documented rule.
* ``contributions(X)`` returns a non-negative ``(n, n_sensors)`` array: how much each
  sensor adds to each reading's score; the top sensors are the ones to blame.
* ``detect(X)`` bundles score, the smoothed alarm decision (events with a start and an
  end, not flickering points), the nearest operating state and the contributions.
* The alarm decision is one fitted value, ``alarm_rule_``
  (:class:`~sensorguard.detectors.alarm.AlarmRule`): batch flags and the live tracker.

The sensor schema (order, gap filling, input checks) is
:class:`~sensorguard.detectors.schema.SensorSchema`. Persistence is pickle-free:
``save(dir)`` writes ``detector.json`` (parameters, schema, scalars) and ``arrays.npz``
(learned arrays, loaded with ``allow_pickle=False``). Detectors holding third-party
estimators override ``_save_extra``/``_load_extra``.
"""

from __future__ import annotations

import abc
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError as SklearnNotFittedError

from sensorguard import errors
from sensorguard.detectors.alarm import AlarmRule
from sensorguard.detectors.blame import blame, excursion, top_indices
from sensorguard.detectors.events import SCORE_CAP
from sensorguard.detectors.names import detector_class
from sensorguard.detectors.params import Rule, check_params
from sensorguard.detectors.schema import MISSING_POLICY, SensorSchema
from sensorguard.jsonsafe import json_safe


@dataclass
class DetectionResult:
    """Per-reading output of a detector."""

    score: np.ndarray
    is_anomaly: np.ndarray
    state: np.ndarray
    contributions: np.ndarray
    sensors: list[str]
    threshold: float
    blame: np.ndarray | None = None
    """``(n, n_sensors)``: what ``top_sensors`` ranks (:mod:`sensorguard.detectors.blame`,
    contribution shares averaged over the excursion); ``None``: the contributions."""

    def top_sensors(self, k: int = 3) -> list[list[str]]:
        """The ``k`` sensors most to blame for each reading, largest first (ties: schema
        order)."""
        k = max(1, min(k, len(self.sensors)))
        R = self.contributions if self.blame is None else self.blame
        if R.shape[0] == 0:
            return []
        idx = top_indices(np.asarray(R), k)
        names = np.asarray(self.sensors, dtype=object)
        return [list(row) for row in names[idx]]

    def to_frame(self, k: int = 3, index: pd.Index | None = None) -> pd.DataFrame:
        """``score, is_anomaly, state, top_sensors`` (top sensors joined with ``;``)."""
        return pd.DataFrame(
            {
                "score": self.score.astype(np.float64),
                "is_anomaly": self.is_anomaly.astype(bool),
                "state": self.state.astype(np.int64),
                "top_sensors": [";".join(t) for t in self.top_sensors(k)],
            },
            index=index,
        )


@dataclass
class Computed:
    """What a detector's compute hook yields for prepared readings (one row each)."""

    score: np.ndarray
    contributions: np.ndarray | None = None
    """``(n, n_sensors)``, non-negative; ``None`` when not asked for."""
    state: np.ndarray | None = None
    """Nearest operating state per reading; ``None`` for detectors without states."""

    def states(self) -> np.ndarray:
        if self.state is None:
            return np.full(self.score.shape[0], -1, dtype=np.int64)
        return np.asarray(self.state, dtype=np.int64)


@runtime_checkable
class Detector(Protocol):
    """What every detector offers. ``BaseDetector`` implements the plumbing."""

    name: ClassVar[str]
    threshold_: float
    alarm_rule_: AlarmRule

    def fit(self, X: pd.DataFrame, y: Any = None) -> Self: ...
    def score_samples(self, X: pd.DataFrame) -> np.ndarray: ...
    def contributions(self, X: pd.DataFrame) -> np.ndarray: ...
    def predict(self, X: pd.DataFrame) -> np.ndarray: ...
    def detect(self, X: pd.DataFrame) -> DetectionResult: ...
    def score_one(self, row: np.ndarray) -> Computed: ...
    def save(self, path: str | Path) -> Path: ...


@runtime_checkable
class StreamingDetector(Protocol):
    """A detector whose score carries a filter state from reading to reading
    (drift-robust's baseline). Live scoring keeps one state per stream (asset), so a
    stream cut into any pieces scores like one pass; the state converts to and from a
    JSON-able dict for checkpoints."""

    def score_stream(
        self, X: pd.DataFrame | np.ndarray, state: Any = None
    ) -> tuple[Computed, Any]: ...
    def stream_state_to_dict(self, state: Any) -> dict[str, Any]: ...
    def stream_state_from_dict(self, data: dict[str, Any]) -> Any: ...


class NotFittedError(errors.NotFittedError, SklearnNotFittedError):
    """A detector was used before ``fit``; also scikit-learn's ``NotFittedError``, so code
    that catches that one catches this too."""


class BaseDetector(BaseEstimator, abc.ABC):  # type: ignore[misc]
    """Plumbing shared by detectors: parameter checks, schema, persistence, the alarm.

    A detector implements two hooks on the prepared float array ``A`` (rows in time
    order, columns in schema order): ``_fit(A)``, which learns and sets ``threshold_``,
    and ``_compute(A, want_contrib)`` -> :class:`Computed`, from which ``score_samples``,
    ``contributions``, ``detect`` and ``score_one`` all derive (one pass each). The alarm
    decision is the fitted :class:`~sensorguard.detectors.alarm.AlarmRule`
    ``alarm_rule_``, built from ``threshold_`` and the detector's alarm parameters.
    Parameter rules live on the class (``param_rules``) and are checked when ``fit``
    starts; ``param_aliases`` maps former parameter names to today's (saved models and
    ``make_detector`` accept both).
    """

    name: ClassVar[str] = "base"
    param_rules: ClassVar[dict[str, Rule]] = {}
    param_aliases: ClassVar[dict[str, str]] = {}
    failure_types_: dict[str, Any]
    """The failure types of the training window, set by training
    (:func:`sensorguard.evaluation.failure_types.profile_failures`) for every detector
    and saved with the model. Models saved before they existed have no such attribute
    (readers use ``getattr(detector, "failure_types_", None)``)."""

    # ---- to implement
    @abc.abstractmethod
    def _fit(self, A: np.ndarray) -> None:
        """Learn from the prepared training array; set ``threshold_``."""

    @abc.abstractmethod
    def _compute(self, A: np.ndarray, want_contrib: bool = True) -> Computed:
        """Score (and contributions, operating state) of prepared readings."""

    def _fit_alarm_rule(self) -> AlarmRule:
        """The alarm rule: ``threshold_`` plus the detector's alarm parameters."""
        return AlarmRule.from_params(self.threshold_, self.get_params(deep=False))

    # ---- public API
    def fit(self, X: pd.DataFrame, y: Any = None) -> Self:
        """Learn normal behaviour from ``X`` (sensor columns only). ``y`` is ignored."""
        check_params(self.name, type(self), self.get_params(deep=False))
        self.schema_ = SensorSchema.from_training(X)
        A = self.schema_.prepare(X)
        self.n_features_in_ = A.shape[1]
        self.feature_names_in_ = np.asarray(self.schema_.sensors, dtype=object)
        self._fit(A)
        self.alarm_rule_ = self._fit_alarm_rule()
        return self

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "schema_") and hasattr(self, "threshold_")

    def _require_fitted(self) -> None:
        if not self.__sklearn_is_fitted__():
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet",
                "call fit() with normal readings first, or load a trained model",
            )

    @property
    def sensors(self) -> list[str]:
        self._require_fitted()
        return list(self.schema_.sensors)

    def prepare(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        self._require_fitted()
        return self.schema_.prepare(X)

    def compute(self, A: np.ndarray, want_contrib: bool = True) -> Computed:
        """The compute hook on a prepared array, with scores made safe: a score that
        overflowed (a huge reading) is capped at ``SCORE_CAP`` and its non-finite
        contributions too, so it alarms and blames the sensor instead of blinding the
        smoothing."""
        # overflow in the arithmetic of a huge reading is expected and handled by _safe
        with np.errstate(over="ignore", invalid="ignore"):
            return _safe(self._compute(A, want_contrib))

    def score_samples(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        return self.compute(self.prepare(X), want_contrib=False).score

    def contributions(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        out = self.compute(self.prepare(X), want_contrib=True).contributions
        assert out is not None
        return out

    def predict(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """1 for readings inside an alarm, 0 otherwise (after smoothing)."""
        score = self.score_samples(X)
        return self.alarm_rule_.flags(score).astype(np.int64)

    def detect(self, X: pd.DataFrame | np.ndarray) -> DetectionResult:
        """Score, alarms, nearest state and contributions in one pass over the data."""
        c = self.compute(self.prepare(X), want_contrib=True)
        assert c.contributions is not None
        flags = self.alarm_rule_.flags(c.score)
        threshold = float(self.threshold_)
        return DetectionResult(
            score=c.score,
            is_anomaly=flags,
            state=c.states(),
            contributions=c.contributions,
            sensors=list(self.schema_.sensors),
            threshold=threshold,
            blame=blame(c.contributions, excursion(flags, c.score, threshold)),
        )

    def score_one(self, row: np.ndarray) -> Computed:
        """One gap-free reading in schema order (shape ``(n_sensors,)`` or
        ``(1, n_sensors)``): score, contributions and state, as arrays of length 1.
        The live fast path; detectors override it when a single row can skip the batch
        bookkeeping (the results are the same)."""
        return self.compute(np.asarray(row, dtype=np.float64).reshape(1, -1), True)

    # ---- persistence (pickle-free)
    def save(self, path: str | Path) -> Path:
        self._require_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {}
        scalars: dict[str, Any] = {}
        for key, value in vars(self).items():
            if not key.endswith("_") or key.startswith("_"):
                continue
            # the schema is saved on its own; the alarm rule and feature names are
            # rebuilt from what is saved
            if key in ("schema_", "alarm_rule_", "feature_names_in_"):
                continue
            if key == "failure_types_":
                # made JSON-safe, not skipped like other non-JSON values: a profile
                # holding a numpy number would otherwise vanish from the saved model
                scalars[key] = json_safe(value)
                continue
            if isinstance(value, np.ndarray):
                if value.dtype == object:
                    raise TypeError(f"{key}: object arrays cannot be saved without pickle")
                arrays[key] = value
            elif isinstance(value, np.generic):
                scalars[key] = value.item()
            elif _json_ok(value):
                scalars[key] = value
        meta = {
            "format": 1,
            "detector": self.name,
            "params": _jsonable_params(self.get_params(deep=False)),
            "schema": self.schema_.to_dict(),
            "scalars": scalars,
        }
        (path / "detector.json").write_text(json.dumps(meta, indent=2))
        np.savez(path / "arrays.npz", **arrays)  # type: ignore[arg-type]
        self._save_extra(path)
        return path

    def _save_extra(self, path: Path) -> None:
        """Hook for state that is neither an array nor JSON (e.g. an sklearn estimator)."""

    def _load_extra(self, path: Path) -> None:
        """Counterpart of ``_save_extra``."""

    @classmethod
    def _from_saved(cls, path: Path, meta: dict[str, Any]) -> Self:
        # parameters saved under a former name load under today's
        params = {cls.param_aliases.get(k, k): v for k, v in meta["params"].items()}
        obj = cls(**params)
        obj.schema_ = SensorSchema.from_dict(meta["schema"])
        for key, value in meta["scalars"].items():
            setattr(obj, key, value)
        with np.load(path / "arrays.npz", allow_pickle=False) as npz:
            for key in npz.files:
                setattr(obj, key, npz[key])
        obj.n_features_in_ = len(obj.schema_.sensors)
        obj.feature_names_in_ = np.asarray(obj.schema_.sensors, dtype=object)
        obj._load_extra(path)
        obj.alarm_rule_ = obj._fit_alarm_rule()
        return obj


def _safe(c: Computed) -> Computed:
    """Non-finite scores and contributions (the arithmetic of a huge reading overflowed)
    become ``SCORE_CAP``: off the scale, so they alarm and blame their sensor."""
    score = np.asarray(c.score, dtype=np.float64)
    contrib = c.contributions
    bad_score = not _all_finite(score)
    bad_contrib = contrib is not None and not _all_finite(contrib)
    if not (bad_score or bad_contrib):
        return c
    if bad_score:
        score = np.where(np.isfinite(score), np.minimum(score, SCORE_CAP), SCORE_CAP)
    if bad_contrib:
        contrib = np.array(contrib, dtype=np.float64)  # float32 cannot hold the cap
        contrib[~np.isfinite(contrib)] = SCORE_CAP
    return Computed(score=score, contributions=contrib, state=c.state)


def _all_finite(a: np.ndarray) -> bool:
    """Whether every value is finite. A finite sum proves it (NaN and ±inf carry into
    any sum); only a sum that is not finite (a bad value, or finite values overflowing)
    takes the element-wise check. On 1,000 × 9 float32 contributions this is a tenth of
    ``np.isfinite(a).all()``, which was 10 % of scoring the batch (callgrind)."""
    return bool(np.isfinite(a.sum())) or bool(np.isfinite(a).all())


def _json_ok(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _jsonable_params(params: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in params.items():
        if isinstance(v, np.generic):
            v = v.item()
        if not _json_ok(v):
            raise TypeError(f"parameter {k}={v!r} is not JSON-serialisable")
        out[k] = v
    return out


def load_detector(path: str | Path) -> BaseDetector:
    """Load any detector saved with ``save`` (dispatches on the stored detector name).

    Defined here, not in the catalog, because the MLflow model code logged with every
    registered version so far imports it from this module; those versions must keep
    loading. The catalog re-exports it."""
    path = Path(path)
    meta_file = path / "detector.json"
    if not meta_file.is_file():
        raise errors.DataValidationError(
            f"{path} does not hold a saved detector (no detector.json)",
            "pass the folder written by `sensorguard train` or Detector.save()",
        )
    meta = json.loads(meta_file.read_text())
    cls: type[BaseDetector] = detector_class(meta["detector"])
    return cls._from_saved(path, meta)


__all__ = [
    "MISSING_POLICY",
    "BaseDetector",
    "Computed",
    "DetectionResult",
    "Detector",
    "NotFittedError",
    "SensorSchema",
    "StreamingDetector",
    "load_detector",
]
