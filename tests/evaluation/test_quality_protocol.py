"""The quality suite's protocol code on hand-made cases with known answers.

Nothing here reads ../shared/data: the data sets are only for benchmarks/quality_suite.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sensorguard.errors import DataValidationError
from sensorguard.evaluation import explain, suite


def frame(n: int, p: int = 2, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(size=(n, p)), columns=[f"s{j}" for j in range(p)])


# ---------------------------------------------------------------- splits


def test_split_first_rows_fits_on_the_head_and_scores_the_rest() -> None:
    X, y = frame(10), np.r_[np.zeros(6), np.ones(4)]
    train, test, yt = suite.split_first_rows(X, y, 4)
    assert len(train) == 4 and len(test) == 6
    assert test.index[0] == 4 and list(yt) == [0, 0, 1, 1, 1, 1]
    with pytest.raises(DataValidationError):
        suite.split_first_rows(X, y, 10)


def test_split_tsb_scores_the_whole_series_and_refuses_anomalous_training_rows() -> None:
    X, y = frame(10), np.r_[np.zeros(5), np.ones(5)]
    train, test, yt = suite.split_tsb(X, y, 5)
    assert len(train) == 5 and len(test) == 10 and len(yt) == 10
    with pytest.raises(DataValidationError):
        suite.split_tsb(X, y, 6)


def test_leave_one_out_holds_each_key_out_once() -> None:
    assert suite.leave_one_out(["a", "b", "c"]) == [
        ("a", ["b", "c"]),
        ("b", ["a", "c"]),
        ("c", ["a", "b"]),
    ]


def test_spread_pick_takes_whole_items_spread_over_the_list() -> None:
    items = list("abcdefgh")
    assert suite.spread_pick(items, [1] * 8, 3) == ["a", "c", "e"]
    assert suite.spread_pick(items, [10] * 8, 5) == ["a"]  # one whole file covers it
    assert suite.spread_pick(items, [1] * 8, 100) == items
    assert suite.spread_pick(list("abc"), [1, 1, 1], 3) == ["a", "b", "c"]


# ---------------------------------------------------------------- labels


def test_segments_are_half_open_runs_of_ones() -> None:
    seg = suite.segments([0, 1, 1, 0, 1, 0, 0, 1])
    assert seg.tolist() == [[1, 3], [4, 5], [7, 8]]
    assert suite.segments([0, 0]).shape == (0, 2)


def test_merge_gaps_fills_short_inner_gaps_only() -> None:
    y = [0, 1, 1, 0, 0, 1, 0, 0, 0, 1, 0]
    assert suite.merge_gaps(y, 3).tolist() == [0, 1, 1, 1, 1, 1, 0, 0, 0, 1, 0]
    assert suite.merge_gaps(y, 4).tolist() == [0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0]


def test_per_group_mean() -> None:
    ids, means = suite.per_group_mean([1, 3, 10, 20, 5], [7, 7, 2, 2, 9])
    assert ids.tolist() == [2, 7, 9] and means.tolist() == [15.0, 2.0, 5.0]


# ---------------------------------------------------------------- scores


def test_point_scores_without_point_adjust() -> None:
    y = [0, 0, 0, 0, 1, 1, 1, 1]
    p = [1, 0, 0, 0, 1, 0, 0, 0]  # one hit inside the event does not credit the rest
    s = suite.point_scores(y, p)
    assert (s["tp"], s["fp"], s["fn"], s["tn"]) == (1, 1, 3, 3)
    assert s["f1"] == pytest.approx(1 / (1 + 2))
    assert s["far_percent"] == pytest.approx(25.0)
    assert s["mar_percent"] == pytest.approx(75.0)
    both = suite.pooled([s, suite.point_scores([1, 1], [1, 1])])
    assert (both["tp"], both["fn"]) == (3, 3)
    assert both["mar_percent"] == pytest.approx(50.0)


def test_event_scores_count_detections_false_alarms_and_delay() -> None:
    y = [0, 0, 1, 1, 1, 0, 0, 0, 1, 1]
    p = [0, 0, 0, 1, 1, 0, 1, 0, 0, 0]
    e = suite.event_scores(y, p)
    assert (e["events"], e["detected"], e["alarm_events"], e["false_alarm_events"]) == (2, 1, 2, 1)
    assert e["recall"] == 0.5 and e["precision"] == 0.5 and e["f1"] == 0.5
    assert e["mean_delay_rows"] == 1.0
    # an alarm already on when the event starts has delay 0
    assert suite.event_scores([0, 1, 1], [1, 1, 0])["mean_delay_rows"] == 0.0
    pooled = suite.pooled_events([e, suite.event_scores([1, 1], [0, 1])])
    assert (pooled["events"], pooled["detected"]) == (3, 2)
    assert pooled["mean_delay_rows"] == 1.0  # (1 + 1) / 2


def test_roc_auc_and_spearman_from_ranks() -> None:
    assert suite.roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert suite.roc_auc([0, 1, 0, 1], [1, 1, 1, 1]) == pytest.approx(0.5)  # ties count half
    assert suite.roc_auc([1, 1], [0.2, 0.3]) is None
    assert suite.spearman([1, 2, 3, 4], [10, 20, 25, 100]) == pytest.approx(1.0)
    assert suite.spearman([1, 2, 3], [4, 4, 4]) is None


def test_best_f1_is_the_oracle_over_thresholds() -> None:
    # cuts: top1 -> 2/3, top2 -> 1/2, top3 -> 4/5, all -> 2/3
    assert suite.best_f1([0, 1, 1, 0], [0.1, 0.9, 0.8, 0.85]) == pytest.approx(0.8)
    # tied scores cannot be cut between
    assert suite.best_f1([1, 0], [0.5, 0.5]) == pytest.approx(2 / 3)


def test_tsb_window_finds_the_period() -> None:
    t = np.arange(5000)
    assert suite.tsb_window(np.sin(2 * np.pi * t / 50)) == 50
    assert suite.tsb_window(np.ones(100)) == 125  # no autocorrelation maximum
    assert suite.tsb_window(np.sin(2 * np.pi * t / 2000)) == 125  # beyond 300: TSB-AD's default


def test_tsb_window_matches_tsb_ad_when_statsmodels_is_there() -> None:
    slw = pytest.importorskip(
        "TSB_AD.utils.slidingWindows", reason="tsb-ad with statsmodels not installed"
    )
    rng = np.random.default_rng(3)
    x = np.sin(np.arange(3000) / 7.0) + rng.normal(0, 0.3, 3000)
    assert suite.tsb_window(x) == slw.find_length_rank(x.reshape(-1, 1), rank=1)


def test_vus_pr_is_tsb_ad_own_figure() -> None:
    if not suite.vus_available():
        pytest.skip("tsb-ad (benchmark-only extra) not installed")
    from TSB_AD.evaluation.basic_metrics import generate_curve

    y = np.zeros(300, dtype=int)
    y[100:130] = 1
    y[200:210] = 1
    rng = np.random.default_rng(0)
    good = y + rng.uniform(0, 0.5, 300)
    noise = rng.uniform(0, 1, 300)
    v_good = suite.vus_pr(y, good, 10)
    v_noise = suite.vus_pr(y, noise, 10)
    assert v_good == pytest.approx(
        generate_curve(y, good / good.max(), 10, "opt", 250)[-1], rel=1e-2
    )
    assert v_good > 0.9 and v_noise < 0.3
    # a monotone rescaling of the score changes nothing (rank thresholds)
    assert suite.vus_pr(y, 3 * good + 7, 10) == pytest.approx(v_good)


def test_vus_pr_says_what_to_install_when_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "TSB_AD.evaluation.basic_metrics", None)
    assert not suite.vus_available()
    with pytest.raises(suite.VusUnavailable, match="tsb-ad"):
        suite.vus_pr([0, 1], [0.0, 1.0], 1)


# ---------------------------------------------------------------- regime checks


def test_out_of_range_names_the_sensors_that_left_the_training_range() -> None:
    train = pd.DataFrame({"a": np.linspace(0, 1, 50), "b": np.linspace(10, 20, 50), "c": 5.0})
    test = pd.DataFrame({"a": [0.5] * 10, "b": [15.0] * 5 + [30.0] * 5, "c": [5.0] * 9 + [9.0]})
    r = suite.out_of_range(train, test)
    assert r["rows_out_share"] == pytest.approx(0.5)
    assert r["first_tenth_out_share"] == 0.0
    assert r["sensors"] == {"b": 0.5, "c": 0.1}
    # inside the 5 % tolerance band is not out
    assert (
        suite.out_of_range(train, pd.DataFrame({"a": [1.04], "b": [15.0], "c": [5.0]}))[
            "rows_out_share"
        ]
        == 0.0
    )


# ---------------------------------------------------------------- running detectors


def test_case_runner_fits_once_per_training_key() -> None:
    train = frame(300, 3)
    test = frame(50, 3, seed=1)
    y = np.zeros(50, dtype=np.int8)
    cases = [
        suite.Case("d", "p", "one", train, test, y, train_key="k"),
        suite.Case("d", "p", "two", train, test, y, train_key="k"),
        suite.Case("d", "p", "three", frame(300, 3, seed=2), test, y, train_key="other"),
    ]
    runner = suite.CaseRunner("pca")
    out = [runner.run(c, contributions=True) for c in cases]
    assert out[0].fit_seconds > 0 and out[1].fit_seconds == 0 and out[2].fit_seconds > 0
    assert np.array_equal(out[0].score, out[1].score)
    assert out[0].ranking is not None and out[0].ranking.shape == (50, 3)
    assert out[0].flags.dtype == np.int8 and out[0].sensors == ["s0", "s1", "s2"]


# ---------------------------------------------------------------- explanations


def test_parse_interpretation_reads_half_open_rows_and_one_based_ids() -> None:
    got = explain.parse_interpretation("837-858:1,3\n\n10-12:36\n")
    assert got == [(837, 858, [0, 2]), (10, 12, [35])]
    with pytest.raises(DataValidationError, match="line 1"):
        explain.parse_interpretation("837:1")
    T = explain.truth_matrix([(1, 3, [0, 2])], 4, 3)
    assert T.tolist() == [
        [False, False, False],
        [True, False, True],
        [True, False, True],
        [False, False, False],
    ]


def test_hit_rate_at_100_and_150_percent() -> None:
    C = np.array(
        [
            [0.9, 0.1, 0.5, 0.0],  # truth {0, 2}: top 2 = {0, 2} -> 1.0; top 3 -> 1.0
            [0.9, 0.1, 0.5, 0.0],  # truth {1, 3}: top 2 = {0, 2} -> 0.0; top 3 adds 1 -> 0.5
            [0.0, 0.0, 0.0, 1.0],  # no truth: not counted
        ]
    )
    T = np.array([[1, 0, 1, 0], [0, 1, 0, 1], [0, 0, 0, 0]], dtype=bool)
    assert explain.hit_rate(C, T, 1.0) == (pytest.approx(0.5), 2)
    assert explain.hit_rate(C, T, 1.5) == (pytest.approx(0.75), 2)
    assert explain.hit_rate(C, T, 1.0, rows=[True, False, True]) == (pytest.approx(1.0), 1)
    assert explain.hit_rate(C, T, 1.0, rows=[False, False, True]) == (None, 0)
    # one labelled sensor: @150 % looks at the top ceil(1.5) = 2
    one = np.array([[0.9, 0.5, 0.1]])
    assert explain.hit_rate(one, np.array([[0, 1, 0]], dtype=bool), 1.5)[0] == 1.0
    assert explain.hit_rate(one, np.array([[0, 1, 0]], dtype=bool), 1.0)[0] == 0.0


def test_flat_rankings_do_not_score_by_luck() -> None:
    flat = np.zeros((2, 4))
    # ties keep sensor order: sensor 0 first, sensor 3 last
    assert explain.top_k_hit(flat, [3], 2) == 0.0
    assert explain.top_k_hit(flat, [0], 1) == 1.0
    assert explain.mean_rank(flat, 3) == 4.0


def test_top_k_hit_and_mean_rank() -> None:
    C = np.array([[0.1, 0.7, 0.2], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5]])
    assert explain.top_k_hit(C, [1], 1) == pytest.approx(1 / 3)
    assert explain.top_k_hit(C, [1], 2) == pytest.approx(1.0)
    assert explain.top_k_hit(C, [1], 1, rows=[True, False, False]) == 1.0
    assert explain.top_k_hit(C, [1], 1, rows=[False, False, False]) is None
    assert explain.mean_rank(C, 1) == pytest.approx((1 + 2 + 2) / 3)


# ---------------------------------------------------------------- regime change


def shifted(shift_at: int, sensor: str = "s1", by: float = 10.0, n: int = 500) -> pd.DataFrame:
    X = frame(n, 3, seed=5)
    X.loc[shift_at:, sensor] += by
    return X


def test_a_shift_from_the_first_reading_is_a_regime_change_naming_the_sensor() -> None:
    from sensorguard.evaluation.regime import ranges_from_training, regime_check

    ranges = ranges_from_training(frame(1000, 3))
    v = regime_check(shifted(0), ranges)
    assert v.regime_change and v.verdict == "regime_change"
    assert [s.sensor for s in v.sensors] == ["s1"]
    assert v.sensors[0].share_out == 1.0 and v.sensors[0].median > 5
    assert "retrain" in (v.hint or "") and "s1" in v.summary()
    assert v.to_dict()["sensors"][0]["sensor"] == "s1"


def test_a_failure_after_a_normal_start_is_not_a_regime_change() -> None:
    from sensorguard.evaluation.regime import ranges_from_training, regime_check

    ranges = ranges_from_training(frame(1000, 3))
    assert not regime_check(shifted(200), ranges).regime_change  # normal head
    assert not regime_check(frame(500, 3, seed=9), ranges).regime_change  # nothing moved
    # out from the start for less than the head: a glitch, not a new regime
    glitch = frame(500, 3, seed=5)
    glitch.loc[:29, "s2"] += 10
    assert not regime_check(glitch, ranges).regime_change


def test_a_regime_that_comes_back_in_range_ends() -> None:
    from sensorguard.evaluation.regime import ranges_from_training, regime_check

    ranges = ranges_from_training(frame(1000, 3))
    # out for the whole head (rows 0-70), then back: the verdict is causal (a stream
    # cannot know its end), so it is a regime change that ends at row 71, confirmed
    # after ``release`` (= head, 60) readings back inside
    brief = frame(500, 3, seed=5)
    brief.loc[:70, "s2"] += 10
    v = regime_check(brief, ranges)
    assert v.regime_change and (v.since, v.until, v.closed_at) == (0, 71, 130)
    assert "to reading 70" in v.summary()
    assert v.sensors[0].share_out == 1.0  # over the regime's rows
    # one reading out inside the release run restarts it
    brief.loc[100, "s2"] += 10
    assert regime_check(brief, ranges).closed_at == 160
    # still out at the end: no end
    assert regime_check(shifted(0), ranges).until is None


def test_the_stream_gives_the_batch_verdict_for_any_cut() -> None:
    from sensorguard.evaluation.regime import RegimeStream, ranges_from_training, regime_check

    ranges = ranges_from_training(frame(1000, 3))
    brief = frame(500, 3, seed=5)
    brief.loc[:70, "s2"] += 10
    vals = brief.to_numpy()
    batch = regime_check(brief, ranges)
    for step in (1, 7, 59, 60, 61, 500):
        s = RegimeStream(list(brief.columns), ranges)
        got = []
        for lo in range(0, len(vals), step):
            st = s.state()  # a restart from the state at every cut
            s = RegimeStream(list(brief.columns), ranges)
            s.restore(st)
            got += s.feed(vals[lo : lo + step])
        assert got == [("opened", 59), ("closed", batch.closed_at)], step
        assert s.last_out + 1 == batch.until
    # one reading at a time in plain Python (the predictor's path), mixed with pieces,
    # with gaps and the release run broken once: the same decisions and state
    brief.loc[100, "s2"] += 10
    brief.loc[80:90, "s2"] = np.nan
    vals = brief.to_numpy()
    whole = RegimeStream(list(brief.columns), ranges)
    expect = whole.feed(vals)
    s, got, i = RegimeStream(list(brief.columns), ranges), [], 0
    while i < len(vals):
        if i % 3 == 0:
            got += s.feed(vals[i : i + 5])
            i += 5
        else:
            got += s.feed_one(vals[i].tolist())
            i += 1
    assert got == expect and expect[-1] == ("closed", 160)
    assert s.state() == whole.state()


def test_regime_check_on_arrays_profiles_and_gaps() -> None:
    from sensorguard.evaluation.regime import ranges_from_profile, regime_check

    profile = {"sensors": {"a": {"min": 0.0, "max": 1.0}, "b": {"min": 5.0, "max": 5.0}}}
    ranges = ranges_from_profile(profile)
    assert ranges == {"a": (0.0, 1.0), "b": (5.0, 5.0)}
    arr = np.column_stack([np.full(100, 0.5), np.full(100, 7.0)])
    arr[::2, 1] = np.nan  # gaps are neither in nor out
    v = regime_check(arr, ranges, sensors=["a", "b"])
    assert [s.sensor for s in v.sensors] == ["b"] and v.sensors[0].share_out == 1.0
    # a constant training sensor gets a band of 5 % of its value
    assert not regime_check(np.full((100, 1), 5.2), {"b": (5.0, 5.0)}, sensors=["b"]).regime_change
    with pytest.raises(DataValidationError):
        ranges_from_profile({"sensors": {"a": {"mean": 1.0}}})
    with pytest.raises(DataValidationError):
        regime_check(arr, ranges)  # an array needs the sensor names


def test_suppress_regime_alarms_keeps_later_alarms() -> None:
    from sensorguard.evaluation.regime import (
        RegimeVerdict,
        ranges_from_training,
        regime_check,
        suppress_regime_alarms,
    )

    flags = np.zeros(500, dtype=int)
    flags[0:450] = 1  # one alarm over (nearly) everything: the regime change
    flags[470:480] = 1  # a later alarm stays
    v = regime_check(shifted(0), ranges_from_training(frame(1000, 3)))
    kept, removed = suppress_regime_alarms(flags, v)
    assert removed == 450 and kept[:450].sum() == 0 and kept[470:480].all()
    ok = RegimeVerdict("ok", 500, 60)
    assert suppress_regime_alarms(flags, ok)[1] == 0


def test_a_lasting_shift_in_mid_stream_is_a_failure_not_a_regime_change() -> None:
    from sensorguard.evaluation.regime import ranges_from_training, regime_check

    ranges = ranges_from_training(frame(1000, 3))
    # out from row 800 to the end: a sustained failure looks exactly like this
    assert not regime_check(shifted(800, sensor="s0", by=-8.0, n=2000), ranges).regime_change
    # out from the first reading: the verdict, since row 0
    v = regime_check(shifted(0, sensor="s0", by=-8.0, n=2000), ranges)
    assert v.regime_change and v.since == 0 and "first reading" in v.summary()
