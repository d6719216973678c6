"""Hysteresis (detectors/events.py) and event metrics (evaluation/events.py) on
hand-made cases with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sensorguard.detectors.alarm import AlarmRule
from sensorguard.detectors.events import (
    confirm_events,
    events_from_flags,
    flag_spans,
    hysteresis,
    merge_gaps,
    on_delay,
    rolling_mean,
    run_length,
)
from sensorguard.evaluation.events import event_metrics, event_metrics_by_mode, event_mode


def test_rolling_mean_is_causal_and_counts_missing_history_as_zero() -> None:
    out = rolling_mean([3, 3, 3, 6, 6], 3)
    assert np.allclose(out, [1, 2, 3, 4, 5])


def test_rolling_mean_treats_nan_as_zero() -> None:
    assert np.allclose(rolling_mean([np.nan, 2.0, 4.0], 2), [0.0, 1.0, 3.0])


def test_run_length() -> None:
    assert run_length([0, 1, 1, 0, 1, 1, 1]).tolist() == [0, 1, 2, 0, 1, 2, 3]
    assert run_length([]).tolist() == []


def test_flag_spans() -> None:
    starts, ends = flag_spans([1, 1, 0, 0, 1, 0, 1])
    assert starts.tolist() == [0, 4, 6]
    assert ends.tolist() == [1, 4, 6]


def test_hysteresis_needs_min_duration_to_turn_on() -> None:
    score = np.zeros(20)
    score[5:7] = 10  # a 2-reading blip
    flags = hysteresis(score, 1.0, smooth_window=1, min_duration=3, release=1)
    assert not flags.any()
    score[10:14] = 10  # 4 readings above
    flags = hysteresis(score, 1.0, smooth_window=1, min_duration=3, release=1)
    # on at the 3rd reading above (causal), off at the first reading below off level
    assert np.flatnonzero(flags).tolist() == [12, 13]


def test_hysteresis_holds_between_the_two_levels() -> None:
    # above 1.0 for 3 readings, then hovers at 0.9 (between off level 0.8 and threshold)
    score = np.array([0, 0, 2, 2, 2, 0.9, 0.9, 0.9, 0.9, 0.5, 0.5, 0.5])
    flags = hysteresis(score, 1.0, smooth_window=1, min_duration=3, off_ratio=0.8, release=2)
    assert np.flatnonzero(flags).tolist() == [4, 5, 6, 7, 8, 9]


def test_hysteresis_release_merges_short_gaps() -> None:
    score = np.array([2.0] * 4 + [0.0] * 2 + [2.0] * 4 + [0.0] * 6)
    short = hysteresis(score, 1.0, smooth_window=1, min_duration=1, release=1)
    assert len(flag_spans(short)[0]) == 2
    long = hysteresis(score, 1.0, smooth_window=1, min_duration=1, release=3)
    starts, ends = flag_spans(long)
    assert starts.tolist() == [0] and ends.tolist() == [11]


def test_hysteresis_smoothing_suppresses_isolated_spikes() -> None:
    score = np.zeros(50)
    score[::10] = 3.0  # single-reading spikes
    assert not hysteresis(score, 1.0, smooth_window=5, min_duration=2).any()


def test_hysteresis_rejects_bad_off_ratio() -> None:
    with pytest.raises(ValueError):
        hysteresis([1.0], 1.0, off_ratio=1.5)


@pytest.mark.parametrize("batch", [1, 2, 7, 50])
def test_alarm_tracker_matches_one_batch(batch: int) -> None:
    rng = np.random.default_rng(0)
    score = rng.gamma(2.0, 0.5, 600)
    score[100:160] += 3  # a failure
    score[300:303] += 6  # a short burst
    score[400:470] += np.linspace(0, 2, 70)  # slow onset hovering near the threshold
    kw = {"smooth_window": 5, "min_duration": 3, "off_ratio": 0.8, "release": 4}
    whole = hysteresis(score, 2.0, **kw)
    tracker = AlarmRule(2.0, **kw).tracker()
    streamed = np.concatenate(
        [tracker.update(score[i : i + batch]) for i in range(0, score.size, batch)]
    )
    assert whole.any()
    assert np.array_equal(streamed, whole)


def test_on_delay_known_case() -> None:
    f = np.array([0, 1, 1, 1, 0, 1, 1, 1, 1, 0], dtype=bool)
    assert on_delay(f, 3).astype(int).tolist() == [0, 0, 0, 1, 0, 0, 0, 1, 1, 0]
    assert on_delay(f, 0).tolist() == f.tolist()
    # a run that continues from the previous batch counts the readings it already had
    g = np.array([1, 1, 0, 1], dtype=bool)
    assert on_delay(g, 3, on_for=2).astype(int).tolist() == [1, 1, 0, 0]
    assert on_delay(g, 3, on_for=0).astype(int).tolist() == [0, 0, 0, 0]


def test_confirm_events_drops_short_alarms_and_dates_back_long_ones() -> None:
    flags = np.zeros(30, dtype=bool)
    flags[3:5] = True  # 2 readings: dropped
    flags[12:20] = True  # 8 readings: kept
    flags[27:30] = True  # 3 readings still on at the end of the batch: not confirmed yet
    score = np.zeros(30)
    score[9:20] = 2.0  # the score rose at 9, three readings before the alarm
    score[3:5] = 5.0
    out = confirm_events(flags, score, 3.0, confirm=4)
    assert np.flatnonzero(out).tolist() == list(range(12, 20))
    back = confirm_events(flags, score, 3.0, confirm=4, backdate=0.5)
    assert np.flatnonzero(back).tolist() == list(range(9, 20))
    capped = confirm_events(flags, score, 3.0, confirm=4, backdate=0.5, max_back=1)
    assert np.flatnonzero(capped).tolist() == list(range(11, 20))
    # below the backdate level at the alarm's first reading: nothing to date back
    assert confirm_events(flags, score, 3.0, confirm=4, backdate=0.9).tolist() == out.tolist()


@pytest.mark.parametrize("batch", [1, 2, 7, 50])
def test_alarm_tracker_with_an_on_delay_raises_alarms_late(batch: int) -> None:
    rng = np.random.default_rng(1)
    score = rng.gamma(2.0, 0.5, 600)
    score[100:160] += 3  # a failure: raised 15 readings after its alarm starts
    score[300:303] += 6  # a short burst: never raised
    kw = {"smooth_window": 5, "min_duration": 3, "off_ratio": 0.8, "release": 4}
    raw = hysteresis(score, 2.0, **kw)
    expected = on_delay(raw, 15)
    assert expected.sum() > 30 and not expected[300:320].any() and raw[300:320].any()
    tracker = AlarmRule(2.0, confirm=15, **kw).tracker()
    streamed = np.concatenate(
        [tracker.update(score[i : i + batch]) for i in range(0, score.size, batch)]
    )
    assert np.array_equal(streamed, expected)


def test_alarm_rule_from_parameters_without_hysteresis_is_a_plain_threshold() -> None:
    rule = AlarmRule.from_params(1.0, {"n_estimators": 5})  # no alarm parameters at all
    assert rule == AlarmRule(1.0)
    tracker = rule.tracker()
    assert tracker.update([0.5, 1.5]).tolist() == [False, True]
    assert tracker.update([0.5]).tolist() == [False]
    assert rule.flags([0.5, 1.5, 0.5]).tolist() == [False, True, False]


def test_alarm_rule_batch_flags_date_confirmed_events_back() -> None:
    score = np.zeros(40)
    score[10:30] = 3.0
    score[8:10] = 1.5  # the rise before the alarm
    rule = AlarmRule(2.0, smooth_window=1, confirm=5, backdate=0.5, max_back=5)
    assert np.flatnonzero(rule.flags(score)).tolist() == list(range(8, 30))
    live = rule.tracker().update(score)  # live: raised confirm readings late instead
    assert np.flatnonzero(live).tolist() == list(range(14, 30))
    with pytest.raises(ValueError, match="off_ratio"):
        AlarmRule(1.0, off_ratio=0.0)


def test_merge_gaps() -> None:
    out = merge_gaps([1, 0, 0, 1, 0, 0, 0, 0, 1], 2)
    assert out.astype(int).tolist() == [1, 1, 1, 1, 0, 0, 0, 0, 1]


def test_events_from_flags_with_times() -> None:
    times = pd.Series(pd.date_range("2026-01-01", periods=6, freq="1min"))
    events = events_from_flags([0, 1, 1, 0, 0, 1], times)
    assert [(e.start_idx, e.end_idx) for e in events] == [(1, 2), (5, 5)]
    assert events[0].start == pd.Timestamp("2026-01-01 00:01")
    assert events[0].end == pd.Timestamp("2026-01-01 00:02")
    assert events[1].n_readings == 1
    assert events[0].as_dict()["start"].startswith("2026-01-01T00:01")


def _minutes(n: int) -> pd.Series:
    return pd.Series(pd.date_range("2026-01-01", periods=n, freq="1min"))


def test_event_metrics_known_case() -> None:
    # two true events; the first caught 2 readings late, the second missed;
    # one alarm far from any failure (false) and one overlapping the first event
    y = np.zeros(2880, dtype=int)  # two days of minutes
    y[100:110] = 1
    y[500:520] = 1
    p = np.zeros(2880, dtype=int)
    p[102:115] = 1
    p[1000:1003] = 1
    m = event_metrics(y, p, _minutes(2880))
    assert m["events_total"] == 2
    assert m["events_detected"] == 1
    assert m["events_missed"] == 1
    assert m["event_recall"] == 0.5
    assert m["alarm_events"] == 2
    assert m["false_alarm_events"] == 1
    assert m["days"] == pytest.approx(2.0)
    assert m["false_alarms_per_day"] == pytest.approx(0.5)
    assert m["mean_detection_delay_s"] == pytest.approx(120.0)


def test_alarm_started_before_the_event_counts_with_zero_delay() -> None:
    y = np.array([0, 0, 1, 1, 0, 0])
    p = np.array([0, 1, 1, 0, 0, 0])
    m = event_metrics(y, p, np.arange(6) * 60.0)
    assert m["events_detected"] == 1
    assert m["false_alarm_events"] == 0
    assert m["mean_detection_delay_s"] == 0.0


def test_no_events_and_no_alarms() -> None:
    m = event_metrics(np.zeros(10), np.zeros(10), np.arange(10) * 60.0)
    assert m["events_total"] == 0
    assert m["event_recall"] == 0.0
    assert m["false_alarm_events"] == 0
    assert m["mean_detection_delay_s"] is None


def test_event_metrics_keep_assets_apart() -> None:
    # asset a's failure at its last rows, asset b's alarm at its first rows:
    # joined naively they would overlap; per asset the alarm is false and the event missed
    y = np.array([0, 0, 1, 1, 0, 0, 0, 0])
    p = np.array([0, 0, 0, 0, 1, 1, 0, 0])
    times = np.concatenate([np.arange(4), np.arange(4)]) * 60.0
    groups = np.array(["a"] * 4 + ["b"] * 4)
    m = event_metrics(y, p, times, groups=groups)
    assert m["events_detected"] == 0
    assert m["false_alarm_events"] == 1


def test_event_metrics_length_mismatch() -> None:
    with pytest.raises(ValueError):
        event_metrics([0, 1], [0, 1, 0])


def test_event_metrics_by_mode() -> None:
    y = np.array([0, 1, 1, 0, 1, 1, 0, 1, 0])
    p = np.array([0, 0, 1, 0, 0, 0, 0, 1, 0])
    modes = ["", "leak", "leak", "", "spike", "spike", "", "leak", ""]
    out = event_metrics_by_mode(y, p, modes, np.arange(9) * 60.0)
    assert out["leak"] == {
        "events_total": 2,
        "events_detected": 2,
        "event_recall": 1.0,
        "mean_detection_delay_s": 30.0,
    }
    assert out["spike"]["events_detected"] == 0
    assert out["spike"]["mean_detection_delay_s"] is None


def test_event_mode_is_the_most_common_real_label() -> None:
    modes = np.array(
        ["", "leak", " None ", "leak", "NaN", "Normal", None, np.nan, "wear"], dtype=object
    )
    assert event_mode(modes, slice(0, 9)) == "leak"
    assert event_mode(modes, [5, 6, 7, 8]) == "wear"  # row positions work too
    assert event_mode(modes, slice(4, 8)) == "unknown"  # only non-modes inside
    assert event_mode(modes, slice(4, 8), default=None) is None
    assert (
        event_mode(np.array(["wear", "leak"], dtype=object), slice(0, 2)) == "leak"
    )  # tie: sorted


def test_trackers_updated_at_once_equal_one_by_one() -> None:
    # update_trackers (the watch pass: all assets' alarm rules in one call) against one
    # update per tracker: random rules, stream lengths around the scalar path's limit,
    # missing and infinite scores, checkpoint restarts in between
    import json

    from sensorguard.detectors.alarm import AlarmTracker, update_trackers

    rng = np.random.default_rng(0)
    compared = 0
    for _ in range(60):
        rule = AlarmRule(
            threshold=float(rng.uniform(0.5, 2)),
            smooth_window=int(rng.integers(1, 8)),
            min_duration=int(rng.integers(1, 6)),
            off_ratio=float(rng.uniform(0.3, 1.0)),
            release=int(rng.integers(1, 8)),
            confirm=int(rng.integers(0, 6)),
        )
        n = int(rng.integers(2, 7))
        one, many = [rule.tracker() for _ in range(n)], [rule.tracker() for _ in range(n)]
        for _ in range(int(rng.integers(1, 7))):
            xs = []
            for _ in range(n):
                x = rng.gamma(2.0, 0.5, int(rng.choice([0, 1, 16, 17, 40, 300])))
                x *= rng.choice([0.5, 1.0, 2.0])
                if x.size and rng.random() < 0.3:
                    x[rng.integers(0, x.size)] = np.nan
                if x.size and rng.random() < 0.1:
                    x[rng.integers(0, x.size)] = np.inf
                xs.append(x)
            expected = [t.update(x) for t, x in zip(one, xs, strict=True)]
            got = update_trackers(many, xs)
            for e, g, a, b in zip(expected, got, one, many, strict=True):
                assert np.array_equal(e, g)
                assert a.state() == b.state() and list(a._win) == list(b._win)
                assert (a._run_on, a._run_off) == (b._run_on, b._run_off)
                compared += int(e.size > 16)
            if rng.random() < 0.3:  # a checkpoint restart: the state through JSON
                one = [AlarmTracker.restore(rule, json.loads(json.dumps(t.state()))) for t in one]
                many = [AlarmTracker.restore(rule, json.loads(json.dumps(t.state()))) for t in many]
    assert compared > 300  # the vectorised path itself was compared, not only the scalar one
