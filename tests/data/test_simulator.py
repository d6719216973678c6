"""The pump simulator: determinism, physics, labelled failure modes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sensorguard.data import Readings, validate_for_training
from sensorguard.data.simulator import (
    FAILURE_MODES,
    SENSORS,
    failure_events,
    simulate_pump,
)
from sensorguard.errors import DataValidationError


@pytest.fixture(scope="module")
def all_modes() -> pd.DataFrame:
    # 10 failures over 10 days: every mode appears twice
    return simulate_pump(days=10, seed=3, n_failures=10)


@pytest.fixture(scope="module")
def normal() -> pd.DataFrame:
    return simulate_pump(days=7, seed=5, failures=False)


def rows_of(df: pd.DataFrame, f: dict, part: str = "broken") -> pd.DataFrame:
    t = df["timestamp"]
    if part == "broken":
        m = (t >= pd.Timestamp(f["start"])) & (t <= pd.Timestamp(f["end"]))
    else:  # the hour before
        m = (t >= pd.Timestamp(f["start"]) - pd.Timedelta("1h")) & (t < pd.Timestamp(f["start"]))
    return df.loc[m]


def test_columns_and_types() -> None:
    df = simulate_pump(days=1, seed=0)
    assert list(df.columns) == ["timestamp", "asset_id", *SENSORS, "machine_status", "failure_mode"]
    assert len(SENSORS) >= 8
    assert len(df) == 24 * 60
    assert all(df[s].dtype == np.float64 for s in SENSORS)
    assert df["timestamp"].iloc[0] == pd.Timestamp("2026-01-01")
    assert set(df["machine_status"]) <= {"NORMAL", "BROKEN", "RECOVERING"}


def test_same_seed_same_frame_different_seed_differs() -> None:
    a = simulate_pump(days=2, seed=11)
    b = simulate_pump(days=2, seed=11)
    pd.testing.assert_frame_equal(a, b)
    assert a.attrs["failures"] == b.attrs["failures"]
    c = simulate_pump(days=2, seed=12)
    assert not np.allclose(a[list(SENSORS)].fillna(0), c[list(SENSORS)].fillna(0))


def test_options_start_asset_freq() -> None:
    df = simulate_pump(days=0.5, freq="10s", start="2025-06-01 06:00", asset_id="p-7", seed=1)
    assert len(df) == 12 * 360
    assert df["timestamp"].iloc[1] - df["timestamp"].iloc[0] == pd.Timedelta("10s")
    assert df["timestamp"].iloc[0] == pd.Timestamp("2025-06-01 06:00")
    assert (df["asset_id"] == "p-7").all()


def test_failure_free_history(normal: pd.DataFrame) -> None:
    assert (normal["machine_status"] == "NORMAL").all()
    assert (normal["failure_mode"] == "").all()
    assert normal.attrs["failures"] == []
    validate_for_training(Readings.from_frame(normal))


def test_every_mode_present_and_labelled(all_modes: pd.DataFrame) -> None:
    failures = all_modes.attrs["failures"]
    assert sorted({f["mode"] for f in failures}) == sorted(FAILURE_MODES)
    status = all_modes["machine_status"].to_numpy()
    mode = all_modes["failure_mode"].to_numpy()
    t = all_modes["timestamp"]
    for f in failures:
        broken = (t >= pd.Timestamp(f["start"])) & (t <= pd.Timestamp(f["end"]))
        recovering = (t > pd.Timestamp(f["end"])) & (t <= pd.Timestamp(f["recovered"]))
        assert (status[broken.to_numpy()] == "BROKEN").all()
        assert recovering.any() and (status[recovering.to_numpy()] == "RECOVERING").all()
        assert (mode[(broken | recovering).to_numpy()] == f["mode"]).all()
    assert (mode[status == "NORMAL"] == "").all()
    events = failure_events(all_modes)
    assert list(events["mode"]) == [f["mode"] for f in failures]
    assert [str(s) for s in events["start"]] == [f["start"].replace("T", " ") for f in failures]


def test_failure_modes_subset_and_count() -> None:
    df = simulate_pump(days=4, seed=2, failure_modes="leak, cavitation", n_failures=4)
    assert sorted(f["mode"] for f in df.attrs["failures"]) == ["cavitation"] * 2 + ["leak"] * 2
    assert len(failure_events(df)) == 4
    default = simulate_pump(days=3, seed=2)
    assert len(default.attrs["failures"]) == 3  # one per day


def test_affinity_laws_and_correlations(normal: pd.DataFrame) -> None:
    d = normal.dropna()
    corr = d[list(SENSORS)].corr()
    for s in ("flow_rate", "discharge_pressure", "motor_current", "power", "vibration_rms"):
        assert corr.loc["motor_speed", s] > 0.9, s
    assert corr.loc["motor_speed", "bearing_temp"] > 0.5
    speed = d["motor_speed"] / 2950.0
    full = d[speed > 0.97]
    half = d[(speed > 0.47) & (speed < 0.53)]
    flow_ratio = full["flow_rate"].mean() / half["flow_rate"].mean()
    head_ratio = (full["discharge_pressure"] - full["suction_pressure"]).mean() / (
        half["discharge_pressure"] - half["suction_pressure"]
    ).mean()
    power_ratio = full["power"].mean() / half["power"].mean()
    assert flow_ratio == pytest.approx(2.0, rel=0.05)
    assert head_ratio == pytest.approx(4.0, rel=0.05)
    assert 5.0 < power_ratio < 8.5  # ∝ speed³ plus speed-proportional losses


def test_several_regimes_and_daily_cycle(normal: pd.DataFrame) -> None:
    speed = (normal["motor_speed"] / 2950.0).round(2)
    share = speed.value_counts(normalize=True)
    for sp in (0.5, 0.75, 1.0):
        assert share.get(sp, 0.0) > 0.1
    # fluid temperature follows the ambient day/night cycle
    hour = normal["timestamp"].dt.hour
    by_hour = normal.groupby(hour)["fluid_temp"].mean()
    assert by_hour.max() - by_hour.min() > 2.0


def test_dropouts_are_short_nan_runs(normal: pd.DataFrame) -> None:
    frac = normal[list(SENSORS)].isna().to_numpy().mean()
    assert 0.0 < frac < 0.02
    col = normal["flow_rate"].isna().to_numpy().astype(int)
    runs = np.diff(np.flatnonzero(np.diff(np.r_[0, col, 0])))[::2]
    assert runs.max() <= 15


def test_failure_free_twin_shares_normal_operation(all_modes: pd.DataFrame) -> None:
    twin = simulate_pump(days=10, seed=3, failures=False)
    normal = (all_modes["machine_status"] == "NORMAL").to_numpy()
    same_speed = (all_modes["motor_speed"] == twin["motor_speed"]).to_numpy()
    for s in ("bearing_temp", "suction_pressure", "vibration_rms"):
        a, b = all_modes[s].to_numpy(), twin[s].to_numpy()
        keep = normal & same_speed & ~np.isnan(a)
        # away from failures (and thermal lags after them) the twin is identical
        assert np.mean(a[keep] == b[keep]) > 0.8, s


def test_failure_signatures(all_modes: pd.DataFrame) -> None:
    df = all_modes
    twin = simulate_pump(days=10, seed=3, failures=False)
    for f in df.attrs["failures"]:
        before, during = rows_of(df, f, "before"), rows_of(df, f, "broken")
        last = during.tail(max(3, len(during) // 5))
        ref = twin.loc[last.index]  # the same pump without the failure
        if f["mode"] == "bearing_wear":
            assert (last["vibration_rms"] - ref["vibration_rms"]).mean() > 1.5
            assert (last["bearing_temp"] - ref["bearing_temp"]).mean() > 8.0
        elif f["mode"] == "cavitation":
            assert (
                during["suction_pressure"] - twin.loc[during.index, "suction_pressure"]
            ).mean() < -0.4
        elif f["mode"] == "leak":
            assert (last["flow_rate"] / ref["flow_rate"]).mean() < 0.9
            assert (last["discharge_pressure"] < ref["discharge_pressure"]).mean() > 0.9
        elif f["mode"] == "stuck_sensor":
            values = during[f["sensor"]].dropna()
            assert values.nunique() == 1
            # the setpoint changes while the sensor is frozen
            assert during["motor_speed"].max() - during["motor_speed"].min() > 500
        elif f["mode"] == "spike":
            dev = (during[f["sensor"]] - twin.loc[during.index, f["sensor"]]).abs()
            assert dev.max() > 10 * before[f["sensor"]].diff().std()
            assert (dev > 0.2 * dev.max()).mean() > 0.25  # a burst, not a single point


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"days": 0}, "days must be positive"),
        ({"freq": "often"}, "invalid sampling frequency"),
        ({"freq": "1MS"}, "invalid sampling frequency"),
        ({"failure_modes": ["melting"]}, "unknown failure mode"),
        ({"days": 0.5, "n_failures": 40}, "cannot fit 40 failure"),
        ({"start": "someday"}, "invalid start time"),
        ({"n_failures": -1}, "n_failures must be >= 0"),
    ],
)
def test_bad_options(kwargs: dict, message: str) -> None:
    with pytest.raises(DataValidationError, match=message):
        simulate_pump(**kwargs)


def test_output_satisfies_the_contract(all_modes: pd.DataFrame) -> None:
    r = Readings.from_frame(all_modes)
    assert r.sensors == list(SENSORS)
    assert r.label_column == "machine_status" and r.asset_column == "asset_id"
    assert r.y is not None and 0.05 < r.y.mean() < 0.4
    assert r.extra_columns == ["failure_mode"]
