"""Benchmark point metrics on hand-made cases, summed over files as the protocol says."""

from __future__ import annotations

import pytest

from sensorguard.evaluation.benchmark import point_summary
from sensorguard.evaluation.metrics import Confusion, confusion


def test_point_summary_known_case() -> None:
    # truth 1 1 1 1 0 0 0 0 0 0 ; prediction 1 1 1 0 1 0 0 0 0 0
    c = confusion([1, 1, 1, 1, 0, 0, 0, 0, 0, 0], [1, 1, 1, 0, 1, 0, 0, 0, 0, 0])
    assert (c.tp, c.fp, c.fn, c.tn) == (3, 1, 1, 5)
    s = point_summary(c)
    assert s["f1"] == pytest.approx(3 / (3 + (1 + 1) / 2))  # 0.75
    assert s["far_percent"] == pytest.approx(100 / 6)  # 16.67 %
    assert s["mar_percent"] == pytest.approx(25.0)


def test_totals_are_summed_before_the_ratios() -> None:
    a = confusion([1, 1, 0, 0], [1, 1, 1, 1])  # tp 2 fp 2
    b = confusion([1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0])  # fn 2 tn 4
    total = a + b
    assert total == Confusion(tp=2, fp=2, fn=2, tn=4)
    s = point_summary(total)
    assert s["f1"] == pytest.approx(0.5)
    assert s["far_percent"] == pytest.approx(100 * 2 / 6)
    assert s["mar_percent"] == pytest.approx(50.0)
    # not the mean of per-file F1 (0.667 and 0.0)
    assert s["f1"] != pytest.approx((point_summary(a)["f1"] + point_summary(b)["f1"]) / 2)


def test_always_alarm_and_never_alarm() -> None:
    truth = [1] * 54 + [0] * 46
    always = point_summary(confusion(truth, [1] * 100))
    assert always["far_percent"] == 100.0 and always["mar_percent"] == 0.0
    assert always["f1"] == pytest.approx(54 / (54 + 46 / 2))  # 0.70, as on the pump rig
    never = point_summary(confusion(truth, [0] * 100))
    assert never["f1"] == 0.0 and never["far_percent"] == 0.0 and never["mar_percent"] == 100.0
