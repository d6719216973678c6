"""Parameter rules of the detectors (``param_rules`` on each class, checked by
``sensorguard.detectors.params.check_params`` in ``make_detector`` and in ``fit``)."""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest

from sensorguard.detectors import available_detectors, get_detector_class, make_detector
from sensorguard.detectors.params import check_params
from sensorguard.detectors.pca import PCADetector
from sensorguard.detectors.states import OperatingStateDetector
from sensorguard.errors import SensorGuardError


def _defaults(name: str) -> dict[str, Any]:
    sig = inspect.signature(get_detector_class(name).__init__)
    return {k: p.default for k, p in sig.parameters.items() if k != "self"}


def _rules(name: str) -> dict[str, Any]:
    return get_detector_class(name).param_rules


@pytest.mark.parametrize("name", available_detectors())
def test_defaults_pass_the_range_checks(name: str) -> None:
    defaults = _defaults(name)
    for key, rule in _rules(name).items():
        if key in defaults:  # a parameter the detector no longer has is simply unchecked
            assert rule.check(defaults[key]), (name, key, defaults[key], rule.description)
    make_detector(name, **defaults)  # all defaults given explicitly are accepted


@pytest.mark.parametrize("name", available_detectors())
def test_table_names_real_parameters(name: str) -> None:
    assert set(_rules(name)) <= set(_defaults(name))


@pytest.mark.parametrize("name", available_detectors())
def test_every_numeric_or_text_parameter_has_a_rule(name: str) -> None:
    unchecked = {
        k
        for k, v in _defaults(name).items()
        if isinstance(v, (int, float, str)) and not isinstance(v, bool) and k not in _rules(name)
    }
    assert not unchecked, f"{name}: no range rule for {sorted(unchecked)}"


@pytest.mark.parametrize(
    ("name", "params", "needle"),
    [
        (
            "drift-robust",
            {"quantile": 1.5},
            "bad value 1.5 for parameter 'quantile' of detector 'drift-robust': "
            "it must be between 0 and 1 (exclusive)",
        ),
        (
            "drift-robust",
            {"window": 1},
            "'window' of detector 'drift-robust': it must be at least 2",
        ),
        ("drift-robust", {"alpha": 0}, "'alpha'"),
        ("drift-robust", {"off_ratio": 1.01}, "'off_ratio'"),
        ("drift-robust", {"center": "mode"}, "one of 'median', 'mean'"),
        ("drift-robust", {"confirm": -1}, "'confirm'"),
        ("drift-robust", {"backdate": 1.5}, "'backdate'"),
        ("drift-robust", {"margin": float("inf")}, "greater than 0"),
        ("pca", {"n_components": 2.5}, "'n_components'"),
        ("pca", {"n_components": -1}, "'n_components'"),
        ("pca", {"limit_quantile": 1}, "'limit_quantile'"),
        ("iforest", {"max_samples": 0}, "'max_samples'"),
        ("iforest", {"quantile": float("nan")}, "'quantile'"),
        ("operating-states", {"min_states": 0}, "'min_states'"),
        ("operating-states", {"quantile": 0.3}, "between 0.5 (inclusive) and 1"),
        ("operating-states", {"threshold_quantile": 0.3}, "between 0.5 (inclusive) and 1"),
        ("operating-states", {"shrinkage": 2.0}, "'shrinkage'"),
    ],
)
def test_out_of_range_values_are_rejected(name: str, params: dict[str, Any], needle: str) -> None:
    with pytest.raises(SensorGuardError) as info:
        make_detector(name, **params)
    assert needle in str(info.value)
    key = next(iter(params))
    assert info.value.hint is not None and f"--param {key}=" in info.value.hint
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("drift-robust", {"quantile": 0.5, "window": 2, "off_ratio": 1, "center": "mean"}),
        ("pca", {"n_components": 3, "limit_quantile": 0.95}),
        ("pca", {"n_components": 0.5}),
        ("iforest", {"n_estimators": 1, "max_samples": 1}),
        ("operating-states", {"min_states": 1, "quantile": 0.5, "shrinkage": 0}),
    ],
)
def test_boundary_values_are_accepted(name: str, params: dict[str, Any]) -> None:
    make_detector(name, **params)


def test_parameters_without_a_rule_are_type_checked_only() -> None:
    class Loose(PCADetector):
        param_rules: ClassVar[dict[str, Any]] = {}

    assert check_params("loose", Loose, {"quantile": 7.0}) == {"quantile": 7.0}
    with pytest.raises(SensorGuardError, match="it must be a number"):
        check_params("loose", Loose, {"quantile": "high"})


def test_a_directly_constructed_detector_is_checked_in_fit() -> None:
    X = pd.DataFrame(np.random.default_rng(0).normal(size=(100, 3)), columns=list("abc"))
    with pytest.raises(SensorGuardError, match="'quantile' of detector 'pca'") as info:
        PCADetector(quantile=7).fit(X)
    assert "--param quantile=" in str(info.value.hint)
    with pytest.raises(SensorGuardError, match="'margin'"):
        OperatingStateDetector(margin=-1.0).fit(X)
    with pytest.raises(SensorGuardError, match="it must be an integer"):
        PCADetector(smooth_window=2.5).fit(X)
    assert PCADetector(smooth_window=2.0).fit(X).alarm_rule_.smooth_window == 2


def test_former_parameter_names_are_accepted_under_todays() -> None:
    det = make_detector("operating-states", threshold_quantile=0.99, threshold_margin=1.5)
    assert (det.quantile, det.margin) == (0.99, 1.5)  # type: ignore[attr-defined]
    assert "threshold_quantile" not in det.get_params()
    with pytest.raises(SensorGuardError, match=r"'threshold_margin'.*greater than 0"):
        make_detector("operating-states", threshold_margin=-1)


def test_the_same_alarm_parameter_names_on_every_detector() -> None:
    for name in ("operating-states", "pca", "iforest", "drift-robust"):
        params = set(get_detector_class(name)().get_params())
        alarm = {"quantile", "margin", "smooth_window", "min_duration", "off_ratio", "release"}
        assert alarm <= params, name
