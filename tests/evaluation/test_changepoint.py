"""NAB-style changepoint score on hand-made cases whose answers are worked out by hand.

Reference values: sigma(y) = 2 / (1 + e^(5y)) - 1, so
sigma(-1) = 2 / (1 + e^-5) - 1 = 0.986614, sigma(-0.5) = 2 / (1 + e^-2.5) - 1 = 0.848284,
sigma(0) = 0, sigma(1) = 2 / (1 + e^5) - 1 = -0.986614.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sensorguard.evaluation.changepoint import (
    PROFILES,
    changepoint_score,
    changepoints_from_flags,
    raw_score,
    scaled_sigmoid,
    windows_from_changepoints,
)

S_START = 0.986614  # sigma(-1)
S_HALF = 0.848284  # sigma(-0.5)


def test_scaled_sigmoid_known_values() -> None:
    assert scaled_sigmoid(-1.0) == pytest.approx(S_START, abs=1e-6)
    assert scaled_sigmoid(-0.5) == pytest.approx(S_HALF, abs=1e-6)
    assert scaled_sigmoid(0.0) == pytest.approx(0.0, abs=1e-12)
    assert scaled_sigmoid(1.0) == pytest.approx(-S_START, abs=1e-6)
    assert scaled_sigmoid(1e6) == -1.0  # no overflow


def test_windows_reach_right_and_merge() -> None:
    assert windows_from_changepoints([100, 10], 60) == [(10, 70), (100, 160)]
    assert windows_from_changepoints([10, 50], 60) == [(10, 110)]


def test_changepoints_are_both_transitions() -> None:
    flags = [0, 0, 1, 1, 1, 0, 0, 1]
    assert changepoints_from_flags(flags, np.arange(8)).tolist() == [2e9, 5e9, 7e9]


def test_perfect_detector_scores_100_and_silent_detector_0() -> None:
    true = [100, 500]
    assert set(PROFILES) == {"standard", "reward_low_FP", "reward_low_FN"}
    for name in PROFILES:
        assert raw_score(true, [100, 500], 60).normalised()[name] == pytest.approx(100.0)
        assert raw_score(true, [], 60).normalised()[name] == pytest.approx(0.0)


def test_detection_at_window_end_and_middle() -> None:
    # one window [0, 60]; detection at its end: raw 0, null -1, perfect S_START
    r = raw_score([0], [60], 60)
    assert r.raw["standard"] == pytest.approx(0.0, abs=1e-12)
    assert r.normalised()["standard"] == pytest.approx(100 * 1 / (S_START + 1), rel=1e-5)
    # in the middle: y = -0.5
    r = raw_score([0], [30], 60)
    assert r.raw["standard"] == pytest.approx(S_HALF, rel=1e-5)
    assert r.normalised()["standard"] == pytest.approx(100 * (S_HALF + 1) / (S_START + 1), rel=1e-5)


def test_only_first_detection_in_window_counts() -> None:
    a = raw_score([0], [0], 60)
    b = raw_score([0], [0, 10, 20, 59], 60)
    assert a.raw["standard"] == pytest.approx(S_START, abs=1e-6)
    assert a.raw == b.raw and b.tp == 1 and b.fp == 0


def test_false_positive_weights_per_profile() -> None:
    # a FP before any window costs -A_fp; a perfect TP otherwise
    r = raw_score([1000], [5, 1000], 60)
    assert r.fp == 1
    assert r.raw["standard"] == pytest.approx(S_START - 0.11, abs=1e-5)
    assert r.raw["reward_low_FP"] == pytest.approx(S_START - 0.22, abs=1e-5)
    assert r.normalised()["standard"] == pytest.approx(
        100 * (S_START - 0.11 + 1) / (S_START + 1), abs=1e-5
    )
    # a FP one window length after the window end: A_fp * sigma(1)
    r = raw_score([0], [0, 120], 60)
    assert r.raw["standard"] == pytest.approx(S_START - 0.11 * S_START, abs=1e-5)


def test_missed_window_costs_a_fn_per_profile() -> None:
    r = raw_score([0, 1000], [0], 60)  # second window missed
    assert r.fn == 1
    assert r.raw["standard"] == pytest.approx(S_START - 1.0, abs=1e-5)
    assert r.raw["reward_low_FN"] == pytest.approx(S_START - 2.0, abs=1e-5)
    # low-FN: null = -4, perfect = 2 S_START
    assert r.normalised()["reward_low_FN"] == pytest.approx(
        100 * (S_START - 2.0 + 4.0) / (2 * S_START + 4.0), abs=1e-5
    )


def test_scores_add_across_files() -> None:
    a = raw_score([0], [0], 60)
    b = raw_score([0], [], 60)
    total = a + b
    assert total.windows == 2 and total.tp == 1 and total.fn == 1
    assert total.normalised()["standard"] == pytest.approx(
        100 * (S_START - 1 + 2) / (2 * S_START + 2), abs=1e-5
    )


def test_changepoint_score_with_timestamps_and_60s_window() -> None:
    times = pd.Series(pd.date_range("2020-01-01", periods=200, freq="1s"))
    y_true = np.zeros(200, dtype=int)
    y_true[50:120] = 1
    y_pred = np.zeros(200, dtype=int)
    y_pred[80:150] = 1  # starts 30 s late (y = -0.5), ends 30 s late (y = -0.5)
    r = changepoint_score(times, y_pred, y_true=y_true, window_seconds=60)
    assert r.windows == 2 and r.tp == 2 and r.fp == 0
    assert r.raw["standard"] == pytest.approx(2 * S_HALF, rel=1e-5)
    cp = np.zeros(200)
    cp[[50, 120]] = 1  # the same truth given as a changepoint column
    r2 = changepoint_score(times, y_pred, true_changepoints=cp, window_seconds=60)
    assert r2.raw == r.raw
