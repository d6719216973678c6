"""The one-concept helpers: time coercion (timeutil) and JSON-safe values (jsonsafe)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sensorguard.errors import DataValidationError
from sensorguard.jsonsafe import finite_metrics, json_safe
from sensorguard.timeutil import TIME_MAX, TIME_MIN, to_seconds, to_utc_naive, utc_now


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-01-01T01:00:00+01:00", "2026-01-01 00:00:00"),
        ("2026-01-01T00:00:00Z", "2026-01-01 00:00:00"),
        ("2026-01-01 00:00:00.123456789", "2026-01-01 00:00:00.123456789"),
        (1_767_225_600, "2026-01-01 00:00:00"),
        (1_767_225_600.5, "2026-01-01 00:00:00.500000"),
        (datetime(2026, 1, 1, 2, tzinfo=timezone(timedelta(hours=2))), "2026-01-01 00:00:00"),
        (np.datetime64("2026-01-01T00:00"), "2026-01-01 00:00:00"),
    ],
)
def test_scalars_become_naive_utc(value: object, expected: str) -> None:
    ts = to_utc_naive(value)
    assert ts.tzinfo is None and ts == pd.Timestamp(expected)


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("0001-01-01T00:00:00+01:00", "outside the supported time range"),  # was OverflowError
        ("9999-12-31T23:59:59-01:00", "outside the supported time range"),
        (1e13, "epoch numbers are seconds"),
        (-1e11, "outside the supported time range"),
        (math.inf, "outside the supported time range"),
        (math.nan, "missing time"),
        (None, "missing time"),
        (True, "is not a time"),
        ("soon", "cannot read 'soon'"),
    ],
)
def test_bad_scalars_are_one_clear_error(value: object, needle: str) -> None:
    with pytest.raises(DataValidationError, match=needle) as err:
        to_utc_naive(value, what="readings[3].timestamp")
    assert str(err.value).startswith("readings[3].timestamp")


def test_collections_keep_their_shape_and_name_the_bad_position() -> None:
    s = pd.Series(pd.date_range("2026-01-01 01:00", periods=3, freq="1h", tz="Europe/Berlin"))
    out = to_utc_naive(s)
    assert isinstance(out, pd.Series) and out.iloc[0] == pd.Timestamp("2026-01-01 00:00")
    idx = to_utc_naive(["2026-01-01T00:00Z", "2026-01-01T02:00+01:00"])
    assert list(idx) == [pd.Timestamp("2026-01-01 00:00"), pd.Timestamp("2026-01-01 01:00")]
    assert to_utc_naive(np.array(["2026-01-01"], dtype="datetime64[s]")).dtype == "datetime64[ns]"
    with pytest.raises(DataValidationError, match="position 1"):
        to_utc_naive([datetime(2026, 1, 1), datetime(1, 1, 1)])
    with pytest.raises(DataValidationError, match="position 0 is missing"):
        to_utc_naive(pd.DatetimeIndex([pd.NaT, "2026-01-01"]))
    assert TIME_MIN < to_utc_naive("2026-01-01") < TIME_MAX


def test_to_seconds_and_now() -> None:
    assert to_seconds(pd.Series(pd.to_datetime(["1970-01-01 00:00:01"]))).tolist() == [1.0]
    assert to_seconds(pd.to_timedelta([1.5], unit="s")).tolist() == [1.5]
    assert to_seconds([3, 4]).tolist() == [3.0, 4.0]
    assert to_seconds(
        pd.date_range("1970-01-01 01:00", periods=1, tz="Europe/Berlin")
    ).tolist() == [0.0]
    now = utc_now()
    assert now.tzinfo is None and abs(now - datetime.now(UTC).replace(tzinfo=None)) < timedelta(
        seconds=5
    )


def test_json_safe_and_finite_metrics() -> None:
    doc = {
        "delay": math.inf,
        1: np.array([1.0, np.nan]),
        "n": np.int64(3),
        "t": pd.Timestamp("2026-01-01"),
        "p": Path("/x"),
        "s": (np.float32(0.5),),
    }
    assert json_safe(doc) == {
        "delay": None,
        "1": [1.0, None],
        "n": 3,
        "t": "2026-01-01T00:00:00",
        "p": "/x",
        "s": [0.5],
    }
    metrics = {"f1": np.float64(0.5), "ok": True, "delay": math.nan, "n": 3, "name": "x"}
    assert finite_metrics(metrics) == {"f1": 0.5, "n": 3.0}
    assert finite_metrics(metrics, ("f1", "delay", "missing"), prefix="eval_") == {"eval_f1": 0.5}
