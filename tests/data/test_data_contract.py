"""Data contract: loading, sniffing, validation messages and policies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sensorguard.data import (
    Readings,
    load_readings,
    sniff_separator,
    validate_for_training,
    write_frame,
)
from sensorguard.errors import DataValidationError, SensorGuardError

pytestmark = pytest.mark.contract

HEADER = ["timestamp", "temp", "pressure", "machine_status"]
ROWS = [
    ["2026-01-01 00:00:00", "20.5", "1.25", "NORMAL"],
    ["2026-01-01 00:01:00", "20.7", "1.30", "NORMAL"],
    ["2026-01-01 00:02:00", "21.0", "1.20", "BROKEN"],
    ["2026-01-01 00:03:00", "20.9", "1.10", "RECOVERING"],
]


def write_text(tmp_path: Path, text: str, name: str = "r.csv") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def table(
    sep: str = ",", header: list[str] | None = None, rows: list[list[str]] | None = None
) -> str:
    lines = [sep.join(header or HEADER)] + [sep.join(r) for r in (rows or ROWS)]
    return "\n".join(lines) + "\n"


def simple_frame(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "timestamp": pd.date_range("2026-01-01", periods=n, freq="1min"),
            "a": rng.normal(size=n),
            "b": rng.normal(size=n),
        }
    )


# ---------------------------------------------------------------- reading files


@pytest.mark.parametrize("sep", [",", ";", "\t", "|"])
def test_separator_is_sniffed(tmp_path: Path, sep: str) -> None:
    r = load_readings(write_text(tmp_path, table(sep)))
    assert r.sensors == ["temp", "pressure"]
    assert r.label_column == "machine_status"
    np.testing.assert_allclose(r.X["temp"].to_numpy(), [20.5, 20.7, 21.0, 20.9])
    assert r.times.iloc[2] == pd.Timestamp("2026-01-01 00:02:00")


def test_whitespace_separated_file_is_read(tmp_path: Path) -> None:
    text = "time a b\n1767225600 1.0 2.0\n1767225660 1.5 2.5\n1767225720 1.7 2.1\n"
    r = load_readings(write_text(tmp_path, text, "r.txt"))
    assert r.sensors == ["a", "b"]
    assert r.times.iloc[0] == pd.Timestamp("2026-01-01")
    assert any("epoch seconds" in n for n in r.notes)


def test_sniffer_prefers_consistent_separator() -> None:
    # decimal commas inside ;-separated fields must not fool the sniffer
    sample = "timestamp;a;b\n2026-01-01 00:00;1,5;2,25\n2026-01-01 00:01;1,7;2,5\n"
    assert sniff_separator(sample) == ";"
    assert sniff_separator("t\ta\n1\t2\n") == "\t"


def test_explicit_separator_and_decimal_commas(tmp_path: Path) -> None:
    text = "timestamp;a;b\n2026-01-01 00:00;1,5;2\n2026-01-01 00:01;1,7;3\n"
    r = load_readings(write_text(tmp_path, text), sep=";")
    np.testing.assert_allclose(r.X["a"].to_numpy(), [1.5, 1.7])
    assert any("decimal commas" in n for n in r.notes)
    r2 = load_readings(write_text(tmp_path, table("\t"), "t.tsv"), sep="tab")
    assert r2.sensors == ["temp", "pressure"]


def test_wrong_explicit_separator_is_reported(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match=r"only one column.*--sep"):
        load_readings(write_text(tmp_path, table(";")), sep=",")


def test_parquet_round_trip(tmp_path: Path) -> None:
    df = simple_frame()
    df["machine_status"] = ["NORMAL"] * 50 + ["BROKEN"] * 10
    path = write_frame(df, tmp_path / "sub" / "r.parquet")
    r = load_readings(path)
    assert r.sensors == ["a", "b"]
    np.testing.assert_array_equal(r.X.to_numpy(), df[["a", "b"]].to_numpy())
    assert (r.times.to_numpy() == df["timestamp"].to_numpy()).all()
    assert r.y is not None and r.y.sum() == 10


def test_compressed_csv_round_trip(tmp_path: Path) -> None:
    df = simple_frame(10)
    path = write_frame(df, tmp_path / "r.csv.gz")
    r = load_readings(path)
    np.testing.assert_allclose(r.X.to_numpy(), df[["a", "b"]].to_numpy())


def test_write_frame_refuses_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match=r"unknown file type '\.xlsx'"):
        write_frame(simple_frame(3), tmp_path / "out.xlsx")


def test_unknown_suffix(tmp_path: Path) -> None:
    p = write_text(tmp_path, table(), "r.json")
    with pytest.raises(DataValidationError, match=r"r\.json: unknown file type.*\.parquet"):
        load_readings(p)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="file not found"):
        load_readings(tmp_path / "nope.csv")
    folder = tmp_path / "d.csv"
    folder.mkdir()
    with pytest.raises(DataValidationError, match="is a folder"):
        load_readings(folder)


def test_empty_file(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match=r"r\.csv: the file is empty"):
        load_readings(write_text(tmp_path, ""))


def test_header_only(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="header but no rows"):
        load_readings(write_text(tmp_path, "timestamp,a,b\n"))


def test_encoding_problem_is_named(tmp_path: Path) -> None:
    p = tmp_path / "r.csv"
    p.write_bytes("timestamp,température\n2026-01-01,1.0\n".encode("latin-1"))
    with pytest.raises(DataValidationError, match=r"r\.csv: not valid utf-8.*--encoding"):
        load_readings(p)
    r = load_readings(p, encoding="latin-1")
    assert r.sensors == ["température"]


def test_byte_order_mark_is_tolerated(tmp_path: Path) -> None:
    p = tmp_path / "r.csv"
    p.write_bytes("\ufefftimestamp,a\n2026-01-01,1.0\n".encode())
    assert load_readings(p).time_column == "timestamp"


def test_damaged_parquet(tmp_path: Path) -> None:
    p = tmp_path / "r.parquet"
    p.write_bytes(b"this is not parquet")
    with pytest.raises(DataValidationError, match=r"r\.parquet: cannot be read as Parquet"):
        load_readings(p)


# ---------------------------------------------------------------- columns


def test_missing_time_column_lists_columns(tmp_path: Path) -> None:
    p = write_text(tmp_path, table(header=["ts", "temp", "pressure", "machine_status"]))
    with pytest.raises(DataValidationError) as err:
        load_readings(p)
    msg = str(err.value)
    assert str(p) in msg
    assert "no time column" in msg and "ts, temp, pressure, machine_status" in msg
    assert "--time-column" in msg
    r = load_readings(p, time_column="ts")
    assert r.time_column == "ts"


def test_named_column_not_found(tmp_path: Path) -> None:
    p = write_text(tmp_path, table())
    with pytest.raises(
        DataValidationError, match=r"label column 'state' not found.*--label-column"
    ):
        load_readings(p, label_column="state")


def test_unparseable_time_names_row_and_value(tmp_path: Path) -> None:
    rows = [list(r) for r in ROWS]
    rows[2][0] = "yesterday"
    p = write_text(tmp_path, table(rows=rows))
    with pytest.raises(DataValidationError) as err:
        load_readings(p)
    msg = str(err.value)
    assert str(p) in msg and "'timestamp'" in msg
    assert "'yesterday'" in msg and "row 3 (line 4)" in msg
    assert "ISO 8601" in msg


def test_empty_time_names_row(tmp_path: Path) -> None:
    rows = [list(r) for r in ROWS]
    rows[1][0] = ""
    with pytest.raises(
        DataValidationError, match=r"time column 'timestamp' is empty at row 2 \(line 3\)"
    ):
        load_readings(write_text(tmp_path, table(rows=rows)))


def test_time_zones_are_converted_to_utc(tmp_path: Path) -> None:
    text = "timestamp,a\n2026-01-01T01:00:00+01:00,1\n2026-01-01T00:01:00Z,2\n"
    r = load_readings(write_text(tmp_path, text))
    assert list(r.times) == [pd.Timestamp("2026-01-01 00:00"), pd.Timestamp("2026-01-01 00:01")]
    assert any("UTC" in n for n in r.notes)


def test_non_numeric_sensor_value_names_column_row_value(tmp_path: Path) -> None:
    rows = [list(r) for r in ROWS]
    rows[3][2] = "n/a?"
    p = write_text(tmp_path, table(rows=rows))
    with pytest.raises(DataValidationError) as err:
        load_readings(p)
    msg = str(err.value)
    assert str(p) in msg
    assert "sensor column 'pressure'" in msg and "'n/a?'" in msg and "row 4 (line 5)" in msg
    assert "leave the cell empty" in msg


def test_text_column_is_not_a_sensor(tmp_path: Path) -> None:
    header = [*HEADER, "operator"]
    rows = [[*r, name] for r, name in zip(ROWS, ["ann", "bob", "ann", "cy"], strict=True)]
    r = load_readings(write_text(tmp_path, table(header=header, rows=rows)))
    assert r.sensors == ["temp", "pressure"]
    assert "operator" in r.frame.columns and r.extra_columns == ["operator"]
    assert any("'operator' is not numeric" in n for n in r.notes)


def test_empty_annotation_column_is_not_a_sensor(tmp_path: Path) -> None:
    # a failure-free simulation written to CSV has an all-empty failure_mode column
    header = [*HEADER, "failure_mode"]
    rows = [[*r, ""] for r in ROWS]
    r = load_readings(write_text(tmp_path, table(header=header, rows=rows)))
    assert r.sensors == ["temp", "pressure"]


def test_empty_sensor_column_stays_a_sensor(tmp_path: Path) -> None:
    header = [*HEADER, "flow"]
    rows = [[*r, ""] for r in ROWS]
    r = load_readings(write_text(tmp_path, table(header=header, rows=rows)))
    assert r.sensors == ["temp", "pressure", "flow"]
    assert r.X["flow"].isna().all()
    assert any("'flow' has no values" in n for n in r.notes)


def test_ignore_columns_drops_first(tmp_path: Path) -> None:
    rows = [list(r) for r in ROWS]
    rows[0][2] = "broken"  # would be an error if the column were read
    p = write_text(tmp_path, table(rows=rows))
    r = load_readings(p, ignore_columns=["pressure"])
    assert r.sensors == ["temp"]
    assert "pressure" not in r.frame.columns
    with pytest.raises(DataValidationError, match=r"to ignore not found: nope"):
        load_readings(p, ignore_columns=["nope"])


def test_no_sensor_columns(tmp_path: Path) -> None:
    text = "timestamp,machine_status\n2026-01-01,NORMAL\n"
    with pytest.raises(DataValidationError, match="no numeric sensor columns"):
        load_readings(write_text(tmp_path, text))


def test_duplicate_column_names() -> None:
    df = pd.DataFrame([[pd.Timestamp("2026-01-01"), 1.0, 2.0]], columns=["timestamp", "a", "a"])
    with pytest.raises(DataValidationError, match="more than once: a"):
        Readings.from_frame(df)


def test_missing_values_are_kept(tmp_path: Path) -> None:
    rows = [list(r) for r in ROWS]
    rows[1][1] = ""
    rows[2][1] = "NaN"
    r = load_readings(write_text(tmp_path, table(rows=rows)))
    assert len(r) == 4
    assert r.X["temp"].isna().sum() == 2
    assert not any("missing" in n for n in r.notes)  # exactly half missing: no note


def test_mostly_missing_sensor_gets_a_note() -> None:
    df = simple_frame(10)
    df.loc[:7, "b"] = np.nan
    r = Readings.from_frame(df)
    assert "sensor 'b' is 80% missing" in r.notes


# ---------------------------------------------------------------- rows: order, duplicates


def test_unsorted_rows_are_sorted_stably(tmp_path: Path) -> None:
    rows = [ROWS[2], ROWS[0], ROWS[3], ROWS[1]]
    r = load_readings(write_text(tmp_path, table(rows=rows)))
    assert r.times.is_monotonic_increasing
    np.testing.assert_allclose(r.X["temp"].to_numpy(), [20.5, 20.7, 21.0, 20.9])
    assert list(r.status) == ["NORMAL", "NORMAL", "BROKEN", "RECOVERING"]
    assert any("out of time order" in n for n in r.notes)


def test_duplicate_timestamps_are_an_error_naming_rows(tmp_path: Path) -> None:
    rows = [list(r) for r in ROWS]
    rows[3][0] = rows[1][0]
    p = write_text(tmp_path, table(rows=rows))
    with pytest.raises(DataValidationError) as err:
        load_readings(p)
    msg = str(err.value)
    assert str(p) in msg and "duplicated timestamp 2026-01-01 00:01:00" in msg
    assert "rows 2, 4" in msg and "duplicates='last'" in msg


def test_duplicates_last_keeps_the_last_row(tmp_path: Path) -> None:
    rows = [list(r) for r in ROWS]
    rows[3][0] = rows[1][0]
    r = load_readings(write_text(tmp_path, table(rows=rows)), duplicates="last")
    assert len(r) == 3
    assert r.X["temp"].tolist() == [20.5, 20.9, 21.0]
    r_first = load_readings(write_text(tmp_path, table(rows=rows)), duplicates="first")
    assert r_first.X["temp"].tolist() == [20.5, 20.7, 21.0]
    with pytest.raises(DataValidationError, match="unknown duplicates policy"):
        load_readings(write_text(tmp_path, table(rows=rows)), duplicates="mean")


def test_same_time_on_two_assets_is_fine_and_sorted_per_asset() -> None:
    t = pd.to_datetime(
        ["2026-01-01 00:01", "2026-01-01 00:00", "2026-01-01 00:00", "2026-01-01 00:01"]
    )
    df = pd.DataFrame({"time": t, "machine": ["p2", "p2", "p1", "p1"], "x": [4.0, 3.0, 1.0, 2.0]})
    r = Readings.from_frame(df)
    assert r.asset_column == "machine"
    assert r.assets == ["p1", "p2"]
    assert r.X["x"].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert r.for_asset("p2").X["x"].tolist() == [3.0, 4.0]
    df.loc[3, "machine"] = "p2"
    df.loc[3, "time"] = t[1]
    with pytest.raises(DataValidationError, match=r"duplicated timestamp .* of asset 'p2'"):
        Readings.from_frame(df)


# ---------------------------------------------------------------- labels


def test_status_labels_map_to_binary_case_insensitive() -> None:
    df = simple_frame(4)
    df["machine_status"] = ["normal", "BROKEN", " Recovering ", "NORMAL"]
    r = Readings.from_frame(df)
    assert r.y is not None
    assert r.y.tolist() == [0, 1, 1, 0]
    assert r.y.dtype == np.int64
    assert r.status is not None and r.status.iloc[1] == "BROKEN"


def test_numeric_labels() -> None:
    df = simple_frame(4)
    df["label"] = [0, 1, 1, 0]
    r = Readings.from_frame(df)
    assert r.label_column == "label" and r.y is not None and r.y.tolist() == [0, 1, 1, 0]
    assert "label" not in r.sensors


def test_unknown_labels_are_listed() -> None:
    df = simple_frame(4)
    df["status"] = ["NORMAL", "WARNING", "BROKEN", "OFF"]
    with pytest.raises(DataValidationError) as err:
        Readings.from_frame(df, source="plant.csv")
    msg = str(err.value)
    assert "plant.csv" in msg and "'status'" in msg and "WARNING, OFF" in msg


def test_numeric_labels_other_than_01() -> None:
    df = simple_frame(3)
    df["anomaly"] = [0, 2, 1]
    with pytest.raises(DataValidationError, match=r"'anomaly' has value\(s\) other than 0/1: 2"):
        Readings.from_frame(df)


def test_empty_label_names_row() -> None:
    df = simple_frame(3)
    df["label"] = ["NORMAL", None, "BROKEN"]
    with pytest.raises(DataValidationError, match=r"label column 'label' is empty at row 2"):
        Readings.from_frame(df)


# ---------------------------------------------------------------- training checks


def test_too_few_rows_to_train() -> None:
    r = Readings.from_frame(simple_frame(20), source="small.csv")
    with pytest.raises(DataValidationError, match=r"small\.csv: only 20 reading\(s\); at least 50"):
        validate_for_training(r)
    assert validate_for_training(r, min_rows=20) is r
    with pytest.raises(DataValidationError, match="only 20"):
        Readings.from_frame(simple_frame(20), min_rows=21)


def test_constant_sensor_is_refused_for_training() -> None:
    df = simple_frame()
    df["c"] = 3.0
    df.loc[5, "c"] = np.nan
    r = Readings.from_frame(df, source="x.csv")
    with pytest.raises(DataValidationError) as err:
        validate_for_training(r)
    msg = str(err.value)
    assert "x.csv" in msg and "'c' = 3" in msg and "zero variance" in msg
    assert "--ignore-columns c" in msg


def test_empty_sensor_is_refused_for_training() -> None:
    df = simple_frame()
    df["e"] = np.nan
    with pytest.raises(DataValidationError, match=r"with no values: e.*--ignore-columns e"):
        validate_for_training(Readings.from_frame(df))


# ---------------------------------------------------------------- the Readings object


def test_readings_interface() -> None:
    df = simple_frame(10)
    df["a"] = df["a"].astype("float32")
    df["n"] = np.arange(10)
    r = Readings.from_frame(df)
    assert len(r) == 10 and r.source == "<frame>"
    assert list(r.X.dtypes) == [np.float64] * 3
    assert r.y is None and r.status is None and r.asset is None
    part = r.slice(2, 5)
    assert len(part) == 3 and part.times.iloc[0] == df["timestamp"].iloc[2]
    assert part.sensors == r.sensors
    assert r.summary()["rows"] == 10


def test_from_frame_refuses_non_frames() -> None:
    with pytest.raises(SensorGuardError, match="expected a pandas DataFrame"):
        Readings.from_frame([[1, 2]])  # type: ignore[arg-type]


def test_ignored_and_role_columns_are_never_sensors() -> None:
    df = simple_frame(5)
    df["asset_id"] = "p1"
    df["secret"] = 1.0
    r = Readings.from_frame(df, ignore_columns=["secret"])
    assert r.sensors == ["a", "b"]
    assert r.asset_column == "asset_id"


def test_time_index_is_used_as_time_column() -> None:
    df = simple_frame(5).set_index("timestamp")
    r = Readings.from_frame(df)
    assert r.time_column == "timestamp" and r.sensors == ["a", "b"]
    assert r.times.iloc[-1] == pd.Timestamp("2026-01-01 00:04")


def test_numbers_with_units_are_not_silently_dropped() -> None:
    df = simple_frame(4)
    df["pressure"] = ["5 bar", "5.2 bar", "5.1 bar", "4.9 bar"]
    with pytest.raises(
        DataValidationError, match=r"column 'pressure' holds numbers with units.*'5 bar' at row 1"
    ):
        Readings.from_frame(df)
    df["pressure"] = ["1,234.5", "1,240.0", "1,250.5", "1,251.0"]
    with pytest.raises(DataValidationError, match="no thousands separators"):
        Readings.from_frame(df)
    # identifiers and dates are text, not dressed numbers
    df["pressure"] = ["pump-01", "2026-01-01", "10:00", "ok"]
    assert Readings.from_frame(df).sensors == ["a", "b"]


def test_zip_round_trip_and_damaged_archives(tmp_path: Path) -> None:
    df = simple_frame(10)
    r = load_readings(write_frame(df, tmp_path / "r.csv.zip"))
    np.testing.assert_allclose(r.X.to_numpy(), df[["a", "b"]].to_numpy())
    for name in ("bad.csv.zip", "bad.csv.gz", "bad.csv.bz2"):
        (tmp_path / name).write_text("timestamp,a\n2026-01-01,1\n")
        with pytest.raises(DataValidationError, match=rf"{name}: cannot be read"):
            load_readings(tmp_path / name)


def test_trailing_separator_column_is_dropped(tmp_path: Path) -> None:
    text = "timestamp;a;\n2026-01-01 00:00;1;\n2026-01-01 00:01;2;\n"
    r = load_readings(write_text(tmp_path, text))
    assert r.sensors == ["a"]
    assert any("without a name dropped" in n for n in r.notes)


# ------------------------------------------- regressions: silent corruption on load


def _epoch_file(tmp_path: Path, bad: float, at: int = 5, n: int = 60) -> Path:
    start = int(pd.Timestamp("2026-01-01").timestamp())
    lines = ["timestamp,a,b"]
    for i in range(n):
        t = bad if i == at else start + 60 * i
        lines.append(f"{t!r},{i % 7},{i % 5}" if isinstance(t, float) else f"{t},{i % 7},{i % 5}")
    return write_text(tmp_path, "\n".join(lines) + "\n")


@pytest.mark.parametrize("bad", [1e13, 10**13, -1e11, float("inf")])
def test_out_of_range_epoch_names_the_row(tmp_path: Path, bad: float) -> None:
    # 1e13 used to become an empty time (NaT, "valid"); -1e11 crashed every command
    with pytest.raises(DataValidationError, match=r"outside the supported range") as err:
        load_readings(_epoch_file(tmp_path, bad))
    assert "row 6 (line 7)" in str(err.value) and "seconds" in str(err.value)


def test_out_of_range_iso_and_parquet_times_name_the_row(tmp_path: Path) -> None:
    rows = [list(r) for r in ROWS]
    rows[1][0] = "0001-01-01 00:00:00"
    with pytest.raises(DataValidationError, match=r"row 2.*outside the supported range"):
        load_readings(write_text(tmp_path, table(rows=rows)))
    frame = pd.DataFrame(
        {
            "timestamp": np.array(["2026-01-01", "3000-01-01"], dtype="datetime64[s]"),
            "a": [1.0, 2.0],
        }
    )
    path = tmp_path / "far.parquet"
    frame.to_parquet(path)
    with pytest.raises(DataValidationError, match=r"row 2.*outside the supported range"):
        load_readings(path)


def test_day_first_dates_mixed_with_iso_are_refused(tmp_path: Path) -> None:
    # one row in three was "dd/mm/YYYY" and was re-read month first (moved by up to a month)
    times = pd.date_range("2026-01-01", periods=90, freq="1h")
    cells = [t.strftime("%d/%m/%Y %H:%M") if i % 3 == 0 else str(t) for i, t in enumerate(times)]
    text = "timestamp,a\n" + "".join(f"{c},{i}\n" for i, c in enumerate(cells))
    with pytest.raises(DataValidationError, match="mixes time formats") as err:
        load_readings(write_text(tmp_path, text))
    assert "'01/01/2026 00:00' at row 1" in str(err.value) and "30 row(s)" in str(err.value)


def test_one_non_iso_format_is_read_when_unambiguous(tmp_path: Path) -> None:
    times = pd.date_range("2026-01-10", periods=5, freq="1D")  # days 10..14: only day first fits
    text = "timestamp,a\n" + "".join(f"{t:%d/%m/%Y},{i}\n" for i, t in enumerate(times))
    r = load_readings(write_text(tmp_path, text))
    assert list(r.times) == list(times)
    assert any("%d/%m/%Y" in n for n in r.notes)


def test_ambiguous_day_month_dates_are_refused(tmp_path: Path) -> None:
    text = "timestamp,a\n02/01/2026,1\n03/01/2026,2\n04/01/2026,3\n"
    with pytest.raises(DataValidationError, match="day first or month first"):
        load_readings(write_text(tmp_path, text))


def test_a_file_without_any_sensor_value_is_refused(tmp_path: Path) -> None:
    # scored as "0 in alarm", exit 0, before
    text = "timestamp,a,b,machine_status\n2026-01-01 00:00,,,NORMAL\n2026-01-01 00:01,,,BROKEN\n"
    with pytest.raises(DataValidationError, match="no sensor has a value") as err:
        load_readings(write_text(tmp_path, text))
    assert "a, b" in str(err.value)


def test_binary_content_is_refused_before_reading(tmp_path: Path) -> None:
    p = tmp_path / "hole.csv"
    with p.open("wb") as fh:  # a header, then a sparse hole of NUL bytes
        fh.write(b"timestamp,a\n")
        fh.truncate(64 * 1024 * 1024)
    with pytest.raises(DataValidationError, match="NUL bytes"):
        load_readings(p)
    q = tmp_path / "nul.csv"
    q.write_bytes(b"\x00" * 300_000)
    with pytest.raises(DataValidationError, match="NUL bytes"):
        load_readings(q)


def test_files_above_the_size_limit_are_refused_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sensorguard.data import loading

    p = write_text(tmp_path, table())
    monkeypatch.setattr(loading, "MAX_TEXT_BYTES", 100)
    with pytest.raises(DataValidationError, match="larger than the 100 B limit") as err:
        load_readings(p)
    assert "memory" in str(err.value) and "Parquet" in str(err.value)


def test_training_refuses_more_sensors_than_it_can_learn() -> None:
    from sensorguard.data.readings import MAX_TRAIN_SENSORS

    rng = np.random.default_rng(0)
    wide = pd.DataFrame(rng.normal(size=(300, 400)), columns=[f"s{i}" for i in range(400)])
    wide.insert(0, "timestamp", pd.date_range("2026-01-01", periods=300, freq="1min"))
    with pytest.raises(DataValidationError, match="400 sensors but only 300 readings"):
        validate_for_training(Readings.from_frame(wide))
    cols = {f"s{i}": rng.normal(size=10) for i in range(MAX_TRAIN_SENSORS + 1)}
    huge = pd.DataFrame({"timestamp": pd.date_range("2026", periods=10, freq="1min"), **cols})
    with pytest.raises(DataValidationError, match=f"at most {MAX_TRAIN_SENSORS:,} sensors"):
        validate_for_training(Readings.from_frame(huge), min_rows=5)


def test_a_sliced_or_shuffled_frame_keeps_its_values() -> None:
    # A frame whose index is not 0..n-1 (a slice, shuffled rows) used to realign every
    # column on the new row numbers: all sensors empty, or NaT times.
    from sensorguard.data.simulator import simulate_pump

    full = simulate_pump(days=1, seed=4)
    part = Readings.from_frame(full.iloc[100:150])
    assert part.X.shape == (50, len(part.sensors)) and not part.X.isna().to_numpy().any()
    assert part.X.iloc[0].tolist() == full[part.sensors].iloc[100].tolist()
    rows = full.sample(frac=1.0, random_state=0).iloc[:80]
    shuffled = Readings.from_frame(rows)
    expected = rows.sort_values("timestamp", kind="stable")[shuffled.sensors].to_numpy()
    np.testing.assert_array_equal(shuffled.X.to_numpy(), expected)  # NaN where the file had gaps
