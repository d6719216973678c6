"""Readings store: migrations, idempotent ingestion, windows, predictions and alarms.

Each test runs on the embedded SQLite store and on a throw-away PostgreSQL database
(skipped, or failed under SENSORGUARD_REQUIRE_SERVICES=1, when PostgreSQL is down).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from support.pg import pg_available, temp_database
from support.services import require_service
from typer.testing import CliRunner

from sensorguard.cli import app
from sensorguard.data import Readings
from sensorguard.data.simulator import simulate_pump
from sensorguard.errors import DataValidationError
from sensorguard.store import (
    MAX_SENSORS,
    ReadingConflictError,
    StoreError,
    StoreLimitError,
    alarms_from_scores,
    current_revision,
    dispose_engines,
    ensure_schema,
    get_engine,
    head_revision,
    ingest_file,
    insert_frame,
    insert_readings,
    list_assets,
    normalize_url,
    read_alarms,
    read_predictions,
    read_window,
    read_window_frame,
    upgrade,
    write_alarms,
    write_predictions,
)

pytestmark = pytest.mark.contract


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, sg_home: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{sg_home / 'readings.db'}"
        dispose_engines()
        return
    require_service(pg_available(), "PostgreSQL is not reachable at 127.0.0.1:5432")
    with temp_database("store") as (_, url):
        yield url


@pytest.fixture
def pump() -> pd.DataFrame:
    return simulate_pump(days=1, seed=3)


def test_upgrade_creates_tables_and_is_repeatable(store_url: str) -> None:
    assert upgrade(store_url) == head_revision()
    assert upgrade(store_url) == head_revision()  # second run is a no-op
    tables = set(sa.inspect(get_engine(store_url)).get_table_names())
    assert {"readings", "sensor_sets", "predictions", "alarm_events"} <= tables
    assert "sensorguard_store_version" in tables  # not alembic_version: shares DBs safely
    assert current_revision(store_url) == head_revision()


def test_postgres_urls_are_pinned_to_psycopg2() -> None:
    assert normalize_url("postgresql://u:p@h:5432/db").startswith("postgresql+psycopg2://u:p@")
    assert normalize_url("postgres://u@h/db").startswith("postgresql+psycopg2://")
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"
    with pytest.raises(Exception, match="unsupported store backend"):
        normalize_url("mysql://u@h/db")


def test_ingest_roundtrip_and_idempotency(store_url: str, pump: pd.DataFrame) -> None:
    readings = Readings.from_frame(pump)
    first = insert_readings(readings, url=store_url)
    assert (first.rows, first.inserted, first.duplicates) == (len(pump), len(pump), 0)
    again = insert_readings(readings, url=store_url)
    assert (again.inserted, again.duplicates) == (0, len(pump))
    # an overlapping batch stores only the new part
    later = simulate_pump(days=0.5, seed=4, start=pump["timestamp"].iloc[-1] + pd.Timedelta("1min"))
    more = pd.concat([pump, later], ignore_index=True)
    third = insert_readings(Readings.from_frame(more), url=store_url)
    assert third.inserted == len(more) - len(pump)

    back = read_window("pump-01", url=store_url)
    assert len(back) == len(more)
    assert back.sensors == readings.sensors
    np.testing.assert_array_equal(back.X.to_numpy()[: len(pump)], readings.X.to_numpy())
    assert back.y is not None and back.y.sum() > 0
    assert list(back.status[: len(pump)]) == list(readings.status)  # type: ignore[index,arg-type]
    assets = list_assets(store_url)
    assert assets.to_dict("records")[0]["readings"] == len(more)


def test_window_bounds_are_half_open(store_url: str, pump: pd.DataFrame) -> None:
    insert_readings(pump, url=store_url)
    w = read_window("pump-01", "2026-01-01T06:00", "2026-01-01T07:00", store_url)
    assert len(w) == 60
    assert w.times.iloc[0] == pd.Timestamp("2026-01-01 06:00")
    assert w.times.iloc[-1] == pd.Timestamp("2026-01-01 06:59")
    # zone-aware bounds are converted to UTC
    w2 = read_window("pump-01", "2026-01-01T07:00+01:00", "2026-01-01T08:00+01:00", store_url)
    assert w2.times.iloc[0] == pd.Timestamp("2026-01-01 06:00")


def test_missing_values_status_and_sensor_sets(store_url: str) -> None:
    engine = get_engine(store_url)
    upgrade(store_url)
    t = pd.date_range("2026-02-01", periods=4, freq="1min", tz="Europe/Berlin")
    res = insert_frame(
        engine, "a1", t[:2], np.array([[1.0, np.nan], [2.0, 3.0]]), ["s1", "s2"], ["OK", None]
    )
    assert res.inserted == 2
    # the asset gains a sensor and loses one: columns are aligned by name
    insert_frame(engine, "a1", t[2:], np.array([[4.0, 5.0], [6.0, 7.0]]), ["s2", "s3"])
    frame = read_window_frame("a1", url=store_url)
    assert list(frame.columns) == ["timestamp", "asset_id", "s1", "s2", "s3"]
    assert frame["timestamp"].iloc[0] == pd.Timestamp("2026-01-31 23:00")  # stored as UTC
    np.testing.assert_array_equal(frame["s1"].to_numpy(), [1.0, 2.0, np.nan, np.nan])
    np.testing.assert_array_equal(frame["s2"].to_numpy(), [np.nan, 3.0, 4.0, 6.0])
    assert "machine_status" not in frame  # labels only when every reading has one


def test_sensor_set_ids_are_remembered_only_once_committed(store_url: str) -> None:
    from sensorguard.store.ingest import _sets_rolled_back, sensor_set_id
    from sensorguard.store.schema import sensor_sets

    engine = ensure_schema(store_url)
    with engine.connect() as conn:  # created, then rolled back: never remembered
        first = sensor_set_id(conn, ["p", "q"])
        assert sensor_set_id(conn, ["p", "q"]) == first  # the same transaction sees it
        conn.rollback()
        assert conn.execute(sa.select(sa.func.count()).select_from(sensor_sets)).scalar() == 0
        with engine.begin() as other:  # another writer creates the set for real
            other.execute(sa.insert(sensor_sets).values(id=41, sensors='["x"]', sensors_sha256="x"))
            real = sensor_set_id(other, ["p", "q"])
        assert sensor_set_id(conn, ["p", "q"]) == real  # looked up again, not the lost id
        conn.commit()
    with engine.connect() as conn:
        # found stored, or created here and committed: remembered on this connection
        # (asserted by moving the rows: a lookup would see the new ids)
        sid = sensor_set_id(conn, ["p", "q"])
        made = sensor_set_id(conn, ["r"])
        conn.commit()
        for old in (sid, made):
            conn.execute(sa.update(sensor_sets).where(sensor_sets.c.id == old).values(id=old + 100))
        assert (sensor_set_id(conn, ["p", "q"]), sensor_set_id(conn, ["r"])) == (sid, made)
        conn.rollback()
    dispose_engines()
    # a new engine (maybe at a freed engine's address) gets its own commit/rollback hooks
    fresh = ensure_schema(store_url)
    with fresh.connect() as conn:
        sensor_set_id(conn, ["p", "q"])
    assert sa.event.contains(fresh, "rollback", _sets_rolled_back)
    dispose_engines()


def test_repeated_times_within_a_batch_count_as_duplicates(store_url: str) -> None:
    engine = get_engine(store_url)
    upgrade(store_url)
    t = pd.to_datetime(["2026-03-01 00:00", "2026-03-01 00:01", "2026-03-01 00:00"])
    res = insert_frame(engine, "a2", t, np.array([[1.0], [2.0], [1.0]]), ["s"], ["A", "B", "A"])
    assert (res.inserted, res.duplicates) == (2, 1)
    frame = read_window_frame("a2", url=store_url)
    assert frame["s"].tolist() == [1.0, 2.0]
    assert frame["machine_status"].tolist() == ["A", "B"]


def test_bad_input_is_refused_with_a_reason(store_url: str, pump: pd.DataFrame) -> None:
    with pytest.raises(DataValidationError, match="no asset"):
        insert_readings(pump.drop(columns=["asset_id"]), url=store_url)
    engine = get_engine(store_url)
    with pytest.raises(DataValidationError, match="one value per sensor"):
        insert_frame(engine, "a", pd.date_range("2026", periods=2), np.ones((2, 3)), ["x", "y"])
    with pytest.raises(DataValidationError, match="time at position 0 is missing"):
        insert_frame(engine, "a", [pd.NaT, pd.Timestamp("2026")], np.ones((2, 1)), ["x"])
    with pytest.raises(StoreError, match="no readings for asset 'nope'"):
        read_window("nope", url=store_url)
    with pytest.raises(DataValidationError, match="empty window"):
        read_window("pump-01", "2026-01-02", "2026-01-01", url=store_url)
    with pytest.raises(DataValidationError, match="cannot read"):
        read_window("pump-01", "yesterday-ish", url=store_url)


def _scores(n: int, flags: list[int]) -> pd.DataFrame:
    flag = np.zeros(n, dtype=bool)
    flag[flags] = True
    return pd.DataFrame(
        {
            "score": np.linspace(0, 1, n),
            "is_anomaly": flag,
            "state": np.zeros(n, dtype=int),
            "top_sensors": ["vib;temp" if f else "flow" for f in flag],
        }
    )


def test_alarm_events_are_runs_of_anomalies() -> None:
    times = pd.date_range("2026-01-01", periods=10, freq="1min")
    alarms = alarms_from_scores(_scores(10, [2, 3, 4, 8]), times)
    assert [(a.start.minute, a.end.minute, a.n_readings) for a in alarms] == [(2, 4, 3), (8, 8, 1)]
    assert alarms[0].peak_score == pytest.approx(4 / 9)
    assert alarms[0].top_sensors == "vib;temp"
    assert alarms_from_scores(_scores(10, []), times) == []


def test_predictions_and_alarms_written_back_idempotently(store_url: str) -> None:
    times = pd.date_range("2026-01-01", periods=10, freq="1min")
    scores = _scores(10, [2, 3, 4, 8])
    kw = {"asset": "a1", "times": times, "model_name": "m", "model_version": 3, "url": store_url}
    assert write_predictions(scores, **kw) == 10  # type: ignore[arg-type]
    write_alarms(scores, **kw)  # type: ignore[arg-type]
    # rescoring the same window with the same version replaces, never duplicates
    scores.loc[5, "is_anomaly"] = True
    write_predictions(scores, **kw)  # type: ignore[arg-type]
    write_alarms(scores, **kw)  # type: ignore[arg-type]
    preds = read_predictions("a1", store_url)
    assert len(preds) == 10 and int(preds["is_anomaly"].sum()) == 5
    alarms = read_alarms("a1", store_url)
    assert list(alarms["n_readings"]) == [4, 1]  # the first alarm grew to minute 5
    assert set(alarms["model_version"]) == {"3"}
    with pytest.raises(DataValidationError, match="lack column"):
        write_predictions(scores.drop(columns=["state"]), **kw)  # type: ignore[arg-type]


def test_ingest_file_cli_and_export(store_url: str, tmp_path: Path, pump: pd.DataFrame) -> None:
    path = tmp_path / "pump.csv"
    pump.to_csv(path, index=False)
    runner = CliRunner()
    res = runner.invoke(app, ["db", "upgrade", "--url", store_url])
    assert res.exit_code == 0, res.output
    assert f"revision {head_revision()}" in res.output
    res = runner.invoke(app, ["ingest", str(path), "--url", store_url, "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["inserted"] == len(pump) and out["duplicates"] == 0
    res = runner.invoke(app, ["ingest", str(path), "--url", store_url, "--asset", "pump-01"])
    assert res.exit_code == 0 and "already stored" in res.output
    res = runner.invoke(app, ["store", "status", "--url", store_url, "--json"])
    assert json.loads(res.stdout)[0]["readings"] == len(pump)
    export = tmp_path / "window.csv"
    res = runner.invoke(
        app,
        [
            "store",
            "export",
            "--asset",
            "pump-01",
            "--start",
            "2026-01-01T12:00",
            "-o",
            str(export),
            "--url",
            store_url,
        ],
    )
    assert res.exit_code == 0, res.output
    assert len(pd.read_csv(export)) == 12 * 60
    # bad input: one line, exit code 2, no traceback
    res = runner.invoke(app, ["ingest", str(tmp_path / "missing.csv"), "--url", store_url])
    assert res.exit_code == 2 and "Traceback" not in res.output
    res = runner.invoke(
        app, ["store", "export", "--asset", "zz", "-o", str(export), "--url", store_url]
    )
    assert res.exit_code == 2 and "no readings for asset 'zz'" in res.output


def test_ingest_file_reports_progress(store_url: str, tmp_path: Path, pump: pd.DataFrame) -> None:
    path = tmp_path / "pump.parquet"
    pump.to_parquet(path, index=False)
    seen: list[tuple[int, int]] = []
    res = ingest_file(
        path, url=store_url, chunk_rows=500, on_progress=lambda d, t: seen.append((d, t))
    )
    assert res.inserted == len(pump)
    assert seen[-1] == (len(pump), len(pump)) and len(seen) == -(-len(pump) // 500)


def test_unreachable_store_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot reach the readings store"):
        upgrade("postgresql://nobody@127.0.0.1:1/none")


def test_store_score_cli_writes_predictions_and_alarms(store_url: str, tmp_path: Path) -> None:
    from sensorguard.detectors import make_detector

    data = Readings.from_frame(simulate_pump(days=2, seed=4, freq="2min"))
    normal = data.X[data.y == 0]
    model_dir = make_detector("pca").fit(normal).save(tmp_path / "pca-model")
    insert_readings(data, url=store_url)
    runner = CliRunner()
    res = runner.invoke(
        app,
        ["store", "score", "--asset", "pump-01", "--model", str(model_dir), "--url", store_url],
        env={"COLUMNS": "200"},
    )
    assert res.exit_code == 0, res.output
    assert f"{len(data):,} readings of pump-01 scored" in res.output
    preds = read_predictions("pump-01", store_url)
    assert len(preds) == len(data) and set(preds["model_version"]) == {"local"}
    assert preds["is_anomaly"].any()
    res = runner.invoke(
        app, ["store", "alarms", "--asset", "pump-01", "--url", store_url, "--json"]
    )
    alarms = json.loads(res.stdout)
    assert alarms and all(a["model_name"] == "pca-model" for a in alarms)
    # failures are flagged where the simulator labelled them
    flagged = preds.set_index("time")["is_anomaly"]
    broken = pd.Series(data.y, index=pd.DatetimeIndex(data.times)).astype(bool)
    assert flagged[broken.to_numpy()].mean() > flagged[~broken.to_numpy()].mean()
    res = runner.invoke(
        app,
        [
            "store",
            "score",
            "--asset",
            "pump-01",
            "--model",
            str(tmp_path / "none"),
            "--url",
            store_url,
        ],
    )
    assert res.exit_code == 2 and "Traceback" not in res.output


# ---- regressions from the reliability campaign (sensor sets, conflicts, limits)


def _wide(
    n_sensors: int, rows: int = 5, name_len: int = 12
) -> tuple[pd.DatetimeIndex, np.ndarray, list[str]]:
    rng = np.random.default_rng(n_sensors)
    # random names: PostgreSQL compresses index entries, so "s00001xxxx" names would hide it
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    names = [f"{i:05d}" + "".join(rng.choice(letters, name_len - 5)) for i in range(n_sensors)]
    times = pd.date_range("2026-05-01", periods=rows, freq="1min")
    return times, rng.normal(size=(rows, n_sensors)), names


def test_a_machine_with_1000_sensors_is_stored_and_read_back(store_url: str) -> None:
    # the unique index on the sensor-set JSON overflowed at ~200 sensors on PostgreSQL
    times, values, names = _wide(1000, rows=60)
    engine = ensure_schema(store_url)
    res = insert_frame(engine, "big", times, values, names)
    assert (res.inserted, res.duplicates) == (60, 0)
    again = insert_frame(engine, "big", times, values, names)  # same sensor set found again
    assert (again.inserted, again.duplicates) == (0, 60)
    frame = read_window_frame("big", url=store_url)
    assert list(frame.columns[2:]) == names
    np.testing.assert_array_equal(frame[names].to_numpy(), values)


def test_sensor_limit_is_a_specific_error_naming_the_limit(store_url: str) -> None:
    times, values, names = _wide(MAX_SENSORS + 1, rows=1)
    with pytest.raises(StoreLimitError, match=f"at most {MAX_SENSORS:,} sensors") as info:
        insert_frame(ensure_schema(store_url), "huge", times, values, names)
    assert info.value.limit["max"] == MAX_SENSORS and info.value.code == "too_many_sensors"
    with pytest.raises(StoreLimitError, match="status"):
        insert_frame(ensure_schema(store_url), "a", times[:1], values[:1, :1], ["s"], ["B" * 101])
    with pytest.raises(DataValidationError, match="NUL"):
        insert_frame(ensure_schema(store_url), "p\x00x", times[:1], values[:1, :1], ["s"])


def test_a_second_sensor_at_a_stored_time_is_merged_not_dropped(store_url: str) -> None:
    engine = ensure_schema(store_url)
    t = pd.to_datetime(["2026-06-01 00:00", "2026-06-01 00:01"])
    assert insert_frame(engine, "m", t, np.array([[1.5], [1.6]]), ["temp"]).inserted == 2
    res = insert_frame(engine, "m", t[:1], np.array([[7.25]]), ["pressure"])
    assert (res.inserted, res.merged, res.duplicates) == (0, 1, 0)
    frame = read_window_frame("m", url=store_url)
    assert frame["temp"].tolist() == [1.5, 1.6]
    assert frame["pressure"].tolist()[0] == 7.25 and np.isnan(frame["pressure"].iloc[1])
    # resending either message is idempotent; a null never erases a stored value
    assert insert_frame(engine, "m", t[:1], np.array([[7.25]]), ["pressure"]).duplicates == 1
    same = insert_frame(engine, "m", t[:1], np.array([[1.5, np.nan]]), ["temp", "pressure"])
    assert (same.merged, same.duplicates) == (0, 1)
    assert read_window_frame("m", url=store_url)["pressure"].iloc[0] == 7.25


def test_a_different_value_at_a_stored_time_is_a_conflict(store_url: str) -> None:
    engine = ensure_schema(store_url)
    t = pd.to_datetime(["2026-06-02 00:00", "2026-06-02 00:01"])
    insert_frame(engine, "c", t, np.array([[1.0], [2.0]]), ["temp"], ["NORMAL", "NORMAL"])
    with pytest.raises(ReadingConflictError, match=r"'temp' is stored as 2\.0, sent 2\.5") as info:
        insert_frame(engine, "c", t, np.array([[1.0, 5.0], [2.5, 6.0]]), ["temp", "p"])
    assert info.value.code == "reading_conflict" and info.value.conflicts == 1
    frame = read_window_frame("c", url=store_url)  # nothing of the refused batch stored
    assert list(frame.columns) == ["timestamp", "asset_id", "temp", "machine_status"]
    with pytest.raises(ReadingConflictError, match="status"):
        insert_frame(engine, "c", t[:1], np.array([[1.0]]), ["temp"], ["BROKEN"])


def test_conflicts_inside_one_batch(store_url: str) -> None:
    engine = ensure_schema(store_url)
    t = pd.to_datetime(["2026-03-01 00:00", "2026-03-01 00:01", "2026-03-01 00:00"])
    with pytest.raises(ReadingConflictError, match=r"'s' is sent 1\.0 and 9\.0 in one batch"):
        insert_frame(engine, "b", t, np.array([[1.0], [2.0], [9.0]]), ["s"])
    res = insert_frame(
        engine, "b", t, np.array([[1.0, np.nan], [2.0, 3.0], [np.nan, 4.0]]), ["s", "q"]
    )
    assert (res.rows, res.inserted, res.merged, res.duplicates) == (3, 2, 1, 0)
    assert read_window_frame("b", url=store_url)["q"].tolist() == [4.0, 3.0]


def test_times_distinct_only_below_a_microsecond_are_refused(store_url: str) -> None:
    engine = ensure_schema(store_url)
    base = pd.Timestamp("2026-07-01").value
    t = pd.to_datetime([base, base + 500, base + 1000, base + 1500], unit="ns")
    with pytest.raises(DataValidationError, match="below a microsecond"):
        insert_frame(engine, "ns", t, np.arange(4.0).reshape(4, 1), ["s"])
    # sub-microsecond digits that collapse nothing are kept to the microsecond, with a note
    res = insert_frame(engine, "ns", t[::2], np.array([[0.0], [2.0]]), ["s"])
    assert res.inserted == 2 and res.notes == []
    res = insert_frame(engine, "ns", t[1::2], np.array([[0.0], [2.0]]), ["s"])
    assert res.duplicates == 2 and "microsecond" in res.notes[0]


def test_out_of_range_times_are_refused(store_url: str) -> None:
    with pytest.raises(DataValidationError, match="outside the supported time range"):
        insert_frame(
            ensure_schema(store_url),
            "a",
            [datetime(1000, 1, 1)],
            np.ones((1, 1)),
            ["x"],
        )


def test_a_store_at_revision_0001_upgrades_and_keeps_its_readings(store_url: str) -> None:
    assert upgrade(store_url, "0001") == "0001"
    engine = get_engine(store_url)
    with engine.begin() as conn:  # what 0001-era code wrote: the set keyed by its JSON
        conn.execute(sa.text('INSERT INTO sensor_sets (id, sensors) VALUES (1, \'["a","b"]\')'))
        conn.execute(
            sa.text(
                "INSERT INTO readings (asset_id, time, sensor_set_id, sensor_values, status) "
                "VALUES ('old', :t, 1, :v, NULL)"
            ),
            {
                "t": datetime(2026, 1, 1),
                "v": [1.0, 2.0] if "postgresql" in store_url else "[1.0, 2.0]",
            },
        )
    assert upgrade(store_url) == head_revision()
    # the old set is found by its hash: a new reading with the same sensors reuses it
    res = insert_frame(
        engine, "old", [datetime(2026, 1, 1, 0, 1)], np.array([[3.0, 4.0]]), ["a", "b"]
    )
    assert res.inserted == 1
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM sensor_sets")).scalar() == 1
    assert read_window_frame("old", url=store_url)["b"].tolist() == [2.0, 4.0]


def _counts(url: str) -> tuple[dict[str, int], dict[str, int]]:
    """``reading_counts`` and the readings actually stored, per asset."""
    with get_engine(url).connect() as conn:
        kept = dict(conn.execute(sa.text("SELECT asset_id, n FROM reading_counts")).all())
        real = dict(
            conn.execute(sa.text("SELECT asset_id, count(*) FROM readings GROUP BY asset_id")).all()
        )
    return {a: int(n) for a, n in kept.items()}, {a: int(n) for a, n in real.items()}


def test_every_writer_keeps_the_readings_count_per_asset(store_url: str) -> None:
    # the watch service's late-readings check reads these counts (migration 0007):
    # inserts count, duplicates and merges do not, on every path of store.ingest
    from sensorguard.store.ingest import insert_frames, write_transaction

    engine = ensure_schema(store_url)
    t = [datetime(2026, 1, 1, 0, 0, s) for s in range(6)]
    insert_frame(engine, "a", t[:4], np.arange(8.0).reshape(4, 2), ["x", "y"])
    insert_frame(engine, "a", t[2:], np.arange(8.0).reshape(4, 2) + [[4.0, 4.0]] * 4, ["x", "y"])
    # the second call: t2, t3 identical (duplicates), t4, t5 new
    insert_frame(engine, "a", t[:1], np.array([[0.0]]), ["x"])  # a duplicate subset
    insert_frame(engine, "a", t[:2], np.array([[7.0], [8.0]]), ["z"])  # merged: no new row
    with write_transaction(engine) as conn:  # several frames in one COPY, then one by one
        insert_frames(
            conn,
            [
                ("b", t[:3], np.ones((3, 2)), ["x", "y"], None),
                ("c", t[:2], np.ones((2, 2)), ["x", "y"], None),
            ],
        )
    with write_transaction(engine) as conn:  # a stored time: the merge path
        insert_frames(
            conn,
            [
                ("b", t[2:5], np.ones((3, 2)), ["x", "y"], None),
                ("c", t[2:3], np.ones((1, 2)), ["x", "y"], None),
            ],
        )
    insert_readings(
        pd.DataFrame({"timestamp": t, "x": np.arange(6.0), "asset_id": "d"}), url=store_url
    )
    kept, real = _counts(store_url)
    assert kept == real == {"a": 6, "b": 5, "c": 3, "d": 6}


def test_upgrading_to_0007_counts_the_readings_already_stored(store_url: str) -> None:
    assert upgrade(store_url, "0006") == "0006"
    engine = get_engine(store_url)
    with engine.begin() as conn:  # what code before 0007 wrote: readings, no counts
        for day in (1, 2):
            conn.execute(
                sa.text(
                    "INSERT INTO readings (asset_id, time, sensor_set_id, sensor_values, status) "
                    "VALUES ('old', :t, 1, :v, NULL)"
                ),
                {"t": datetime(2026, 1, day), "v": [1.0] if "postgresql" in store_url else "[1.0]"},
            )
    assert upgrade(store_url) == head_revision()
    kept, real = _counts(store_url)
    assert kept == real == {"old": 2}


def test_raw_driver_errors_from_the_copy_paths_are_store_errors() -> None:
    # the COPY paths call psycopg2's cursor directly: its errors arrive unwrapped, and a
    # server restart mid-COPY must still be "unreachable, retry" (503), not a 500
    import psycopg2

    from sensorguard.errors import DataValidationError
    from sensorguard.store import StoreError
    from sensorguard.store.ingest import _database_errors

    with pytest.raises(StoreError, match="unreachable"), _database_errors():
        raise psycopg2.OperationalError("server closed the connection unexpectedly")
    with pytest.raises(StoreError, match="unreachable"), _database_errors():
        raise psycopg2.InterfaceError("connection already closed")

    class _DataError(psycopg2.DataError):
        pgcode = "22001"  # string_data_right_truncation

    with pytest.raises(DataValidationError), _database_errors():
        raise _DataError("value too long for type character varying(64)")
