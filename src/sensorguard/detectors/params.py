"""Allowed ranges of detector parameters, checked before a detector is built.

``_check_params`` (in :mod:`sensorguard.detectors`) checks names and value types against
each detector's constructor; :func:`check_ranges` then checks values against
:data:`RANGES`: detector name -> parameter -> :class:`Rule`. A parameter without a rule
(e.g. one just added to a detector) is accepted as is. The detector classes are not
touched: the table is the single place to keep in step with their ``__init__``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sensorguard.errors import SensorGuardError


@dataclass(frozen=True)
class Rule:
    """``check(value)`` is True for an allowed value; ``description`` completes
    "it must be ..." in the error message."""

    description: str
    check: Callable[[Any], bool]


def _number(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def between(lo: float, hi: float, *, lo_open: bool, hi_open: bool) -> Rule:
    """``lo < value`` (``<=`` unless ``lo_open``) and ``value < hi`` (``<=`` unless ``hi_open``)."""

    def check(v: Any) -> bool:
        if not _number(v):
            return False
        above = v > lo if lo_open else v >= lo
        below = v < hi if hi_open else v <= hi
        return bool(above and below)

    if lo_open and hi_open:
        text = f"between {lo:g} and {hi:g} (exclusive)"
    elif not lo_open and not hi_open:
        text = f"between {lo:g} and {hi:g} (inclusive)"
    else:
        text = (
            f"between {lo:g} ({'exclusive' if lo_open else 'inclusive'}) "
            f"and {hi:g} ({'exclusive' if hi_open else 'inclusive'})"
        )
    return Rule(text, check)


def at_least(lo: float) -> Rule:
    return Rule(f"at least {lo:g}", lambda v: _number(v) and v >= lo)


def positive() -> Rule:
    return Rule("greater than 0", lambda v: _number(v) and v > 0)


def one_of(*choices: str) -> Rule:
    return Rule(f"one of {', '.join(repr(c) for c in choices)}", lambda v: v in choices)


def _components(v: Any) -> bool:
    # a fraction of the variance to keep (0 < v < 1) or a whole number of components
    return _number(v) and v > 0 and (v < 1 or float(v).is_integer())


# the alarm parameters of HysteresisAlarmMixin._set_alarm_params (pca, iforest, drift-robust)
_ALARM: dict[str, Rule] = {
    "quantile": between(0, 1, lo_open=True, hi_open=True),
    "margin": positive(),
    "smooth_window": at_least(1),
    "min_duration": at_least(1),
    "off_ratio": between(0, 1, lo_open=True, hi_open=False),
    "release": at_least(1),
}

RANGES: dict[str, dict[str, Rule]] = {
    "operating-states": {
        "min_states": at_least(1),
        "max_states": at_least(1),
        "silhouette_sample": at_least(2),
        "fit_sample": at_least(1),
        "scale_floor": at_least(0),
        "threshold_quantile": between(0.5, 1, lo_open=False, hi_open=True),
        "threshold_margin": positive(),
        "smooth_window": at_least(1),
        "min_duration": at_least(1),
        "off_ratio": between(0, 1, lo_open=True, hi_open=False),
        "release": at_least(1),
        "shrinkage": between(0, 1, lo_open=False, hi_open=False),
        "refine_iter": at_least(0),
        "random_state": at_least(0),
    },
    "pca": {
        "n_components": Rule(
            "a fraction of the variance between 0 and 1 (exclusive) or a whole number "
            "of components of at least 1",
            _components,
        ),
        "limit_quantile": between(0, 1, lo_open=True, hi_open=True),
        **_ALARM,
    },
    "iforest": {
        "n_estimators": at_least(1),
        "max_samples": at_least(1),
        "random_state": at_least(0),
        **_ALARM,
    },
    "drift-robust": {
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
        **_ALARM,
    },
}


def check_ranges(name: str, params: dict[str, Any], defaults: dict[str, Any]) -> None:
    """Raise a one-line ``SensorGuardError`` for the first value out of its range.

    ``defaults`` (the constructor's) go into the hint. Unknown detectors and parameters
    without a rule are not checked.
    """
    rules = RANGES.get(name, {})
    for key, value in params.items():
        rule = rules.get(key)
        if rule is None or rule.check(value):
            continue
        hint = "see the detector's parameters"
        if key in defaults:
            default = json.dumps(defaults[key])
            hint = f"the default is {default}, e.g. --param {key}={default}"
        raise SensorGuardError(
            f"bad value {value!r} for parameter '{key}' of detector '{name}': "
            f"it must be {rule.description}",
            hint,
        )
