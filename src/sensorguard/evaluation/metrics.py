"""Point metrics, written from their definitions.

For 0/1 truth ``y`` and 0/1 predictions ``p``:

* precision = TP / (TP + FP), recall = TP / (TP + FN)
* F1 = TP / (TP + (FP + FN) / 2)
* false-alarm rate FAR = FP / (FP + TN), missed-alarm rate MAR = FN / (FN + TP)

Rates are fractions in [0, 1]; reports that show percent multiply by 100. A ratio whose
denominator is zero is reported as 0.0 (nothing to miss / nothing to raise falsely).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Confusion:
    tp: int
    fp: int
    fn: int
    tn: int

    def __add__(self, other: Confusion) -> Confusion:
        return Confusion(
            self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn
        )

    @property
    def precision(self) -> float:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float:
        return _ratio(self.tp, self.tp + (self.fp + self.fn) / 2)

    @property
    def far(self) -> float:
        return _ratio(self.fp, self.fp + self.tn)

    @property
    def mar(self) -> float:
        return _ratio(self.fn, self.fn + self.tp)

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "far": self.far,
            "mar": self.mar,
        }


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else 0.0


def confusion(y_true: Any, y_pred: Any) -> Confusion:
    """Confusion counts of two equally long 0/1 (or bool) sequences."""
    t = np.asarray(y_true).astype(bool).ravel()
    p = np.asarray(y_pred).astype(bool).ravel()
    if t.shape != p.shape:
        raise ValueError(f"truth has {t.size} values but predictions {p.size}")
    tp = int(np.count_nonzero(t & p))
    fp = int(np.count_nonzero(~t & p))
    fn = int(np.count_nonzero(t & ~p))
    tn = int(t.size - tp - fp - fn)
    return Confusion(tp, fp, fn, tn)


def point_metrics(y_true: Any, y_pred: Any) -> dict[str, Any]:
    """Counts plus precision, recall, F1, FAR and MAR (fractions)."""
    return confusion(y_true, y_pred).as_dict()
