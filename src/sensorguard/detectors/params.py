"""Detector parameters: their rules, and the one check that applies them.

Each detector class declares ``param_rules: ClassVar[dict[str, Rule]]`` beside its
``__init__`` (as scikit-learn keeps ``_parameter_constraints`` on the class).
:func:`check_params` checks names (when asked), value types against the constructor's
defaults, and values against the rules; it runs in ``make_detector`` and again when
``fit`` starts, so a directly constructed ``PCADetector(quantile=7).fit(X)`` is refused
too. Every problem is a one-line ``SensorGuardError`` naming the parameter, with a
``--param`` example in the hint. A parameter without a rule is type-checked only.
"""

from __future__ import annotations

import inspect
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


def number(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def between(lo: float, hi: float, *, lo_open: bool, hi_open: bool) -> Rule:
    """``lo < value`` (``<=`` unless ``lo_open``) and ``value < hi`` (``<=`` unless ``hi_open``)."""

    def check(v: Any) -> bool:
        if not number(v):
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
    return Rule(f"at least {lo:g}", lambda v: number(v) and v >= lo)


def positive() -> Rule:
    return Rule("greater than 0", lambda v: number(v) and v > 0)


def one_of(*choices: str) -> Rule:
    return Rule(f"one of {', '.join(repr(c) for c in choices)}", lambda v: v in choices)


# the alarm parameters shared by the detectors (see sensorguard.detectors.alarm)
ALARM_RULES: dict[str, Rule] = {
    "quantile": between(0, 1, lo_open=True, hi_open=True),
    "margin": positive(),
    "smooth_window": at_least(1),
    "min_duration": at_least(1),
    "off_ratio": between(0, 1, lo_open=True, hi_open=False),
    "release": at_least(1),
}


def constructor_defaults(cls: type) -> dict[str, Any]:
    """``__init__`` keyword parameters and their defaults (scikit-learn's convention)."""
    sig = inspect.signature(cls.__init__)  # type: ignore[misc]
    return {
        k: p.default
        for k, p in sig.parameters.items()
        if k != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def check_params(
    name: str,
    cls: type,
    params: dict[str, Any],
    *,
    aliases: dict[str, str] | None = None,
    convert: bool = False,
) -> dict[str, Any]:
    """``params`` checked against ``cls``: names, types (from the defaults) and
    ``cls.param_rules``; returns them under today's names.

    ``aliases`` maps old parameter names to today's (messages keep the name given).
    With ``convert``, integral floats given for an int parameter (``6.0``) become ints;
    without it they are accepted as they are.
    """
    defaults = constructor_defaults(cls)
    rules: dict[str, Rule] = getattr(cls, "param_rules", {})
    aliases = aliases or {}
    accepted = ", ".join(f"{k}={v!r}" for k, v in defaults.items())
    out: dict[str, Any] = {}
    for given, value in params.items():
        key = aliases.get(given, given)
        if key not in defaults:
            raise SensorGuardError(
                f"detector '{name}' has no parameter '{given}'",
                f"use one of (with defaults): {accepted}",
            )
        default = defaults[key]
        kind: str | None = None
        if isinstance(default, bool):
            kind = None if isinstance(value, bool) else "true or false"
        elif isinstance(default, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value) if convert else value
                kind = None
            else:
                ok = isinstance(value, int) and not isinstance(value, bool)
                kind = None if ok else "an integer"
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            kind = None if ok else "a number"
        elif isinstance(default, str):
            kind = None if isinstance(value, str) else "a string"
        if kind is not None:
            raise SensorGuardError(
                f"bad value {value!r} for parameter '{given}' of detector '{name}': "
                f"it must be {kind}",
                f"e.g. --param {given}={json.dumps(default)}",
            )
        rule = rules.get(key)
        if rule is not None and not rule.check(value):
            dflt = json.dumps(default)
            hint = f"the default is {dflt}, e.g. --param {given}={dflt}"
            raise SensorGuardError(
                f"bad value {value!r} for parameter '{given}' of detector '{name}': "
                f"it must be {rule.description}",
                hint,
            )
        out[key] = value
    return out
