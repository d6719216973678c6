"""Bad input on the command line: a one-line error and a non-zero exit, never a traceback.

Regression tests for inputs that used to crash (wrong --param value types, an unknown
--encoding, a bad --plot name found only after the work was done, an --output-dir that
is a file, an out-of-range port) or were accepted silently (non-positive --limit,
--min-rows, --window-seconds).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.cli import assert_fails_cleanly
from typer.testing import CliRunner

from sensorguard.cli import app
from sensorguard.detectors import make_detector
from sensorguard.errors import SensorGuardError

runner = CliRunner()


def _fails_cleanly(args: list[str], *needles: str) -> str:
    return assert_fails_cleanly(runner.invoke(app, args), *needles)


@pytest.fixture
def readings(tmp_path: Path) -> Path:
    path = tmp_path / "x.csv"
    res = runner.invoke(app, ["simulate", "-o", str(path), "--days", "1", "--seed", "3"])
    assert res.exit_code == 0, res.output
    return path


@pytest.mark.parametrize(
    ("detector", "param", "needles"),
    [
        ("operating-states", "max_states=[1]", ["'max_states'", "an integer"]),
        ("pca", "n_components=abc", ["'n_components'", "a number"]),
        ("drift-robust", "margin=foo", ["'margin'", "a number", "margin=1.2"]),
        ("drift-robust", "spread=1", ["'spread'", "true or false"]),
        ("iforest", "bogus=1", ["no parameter 'bogus'", "n_estimators=200"]),
    ],
)
def test_train_bad_param_values(
    sg_home: Path, readings: Path, detector: str, param: str, needles: list[str]
) -> None:
    args = ["train", str(readings), "-d", detector, "-p", param, "--no-promote"]
    _fails_cleanly(args, "error:", *needles)


def test_make_detector_checks_types_and_converts_integral_floats() -> None:
    det = make_detector("operating-states", max_states=6.0, scale_floor=1)
    assert det.max_states == 6 and isinstance(det.max_states, int)  # type: ignore[attr-defined]
    with pytest.raises(SensorGuardError, match="must be an integer"):
        make_detector("operating-states", max_states=6.5)
    with pytest.raises(SensorGuardError, match="must be a number"):
        make_detector("pca", quantile=True)


def test_benchmark_bad_param_value(tmp_path: Path) -> None:
    data = tmp_path / "bench"
    data.mkdir()
    (data / "a.csv").write_text("datetime,s1,anomaly\n2026-01-01 00:00:00,1.0,0\n")
    _fails_cleanly(
        ["benchmark", str(data), "-o", str(tmp_path / "out"), "-p", "margin=foo"],
        "'margin'",
    )


def test_validate_unknown_encoding(readings: Path) -> None:
    _fails_cleanly(["validate", str(readings), "--encoding", "bogus"], "unknown text encoding")


@pytest.mark.parametrize("command", ["score", "evaluate"])
def test_bad_plot_name_fails_before_any_work(tmp_path: Path, readings: Path, command: str) -> None:
    out_file = tmp_path / "scored.csv"
    args = [command, str(readings), "--model", str(tmp_path / "no-model")]
    args += ["--plot", str(tmp_path / "p.txt")]
    if command == "score":
        args += ["-o", str(out_file)]
    _fails_cleanly(args, "cannot write a plot", ".png")
    assert not out_file.exists()


def test_drift_bad_plot_name(tmp_path: Path, readings: Path) -> None:
    _fails_cleanly(
        ["drift", str(readings), "-r", str(readings), "--plot", str(tmp_path / "p.txt")],
        "cannot write a plot",
    )


def test_benchmark_output_dir_is_a_file(tmp_path: Path, readings: Path) -> None:
    data = tmp_path / "bench"
    data.mkdir()
    _fails_cleanly(["benchmark", str(data), "-o", str(readings)], "is a file, not a folder")


def test_benchmark_window_seconds_must_be_positive(tmp_path: Path) -> None:
    data = tmp_path / "bench"
    data.mkdir()
    _fails_cleanly(
        ["benchmark", str(data), "-o", str(tmp_path / "o"), "--window-seconds", "0"],
        "--window-seconds must be positive",
    )


@pytest.mark.parametrize(
    "args",
    [
        ["models", "list", "--limit", "0"],
        ["models", "history", "--limit", "-3"],
        ["validate", "x.csv", "--for-training", "--min-rows", "-5"],
        ["ui", "--port", "99999"],
        ["stack", "up", "--pg-url", "postgresql://u@127.0.0.1:1/x", "--mlflow-port", "0"],
    ],
)
def test_out_of_range_numbers_are_usage_errors(args: list[str]) -> None:
    _fails_cleanly(args, "Invalid value")


def test_serve_port_out_of_range(sg_home: Path) -> None:
    _fails_cleanly(["serve", "--port", "99999"], "cannot listen on", "0-65535")


def test_train_reports_a_column_left_out_of_the_sensors(sg_home: Path, readings: Path) -> None:
    import pandas as pd

    frame = pd.read_csv(readings)
    frame["flow_rate"] = "abc"
    bad = readings.with_name("text.csv")
    frame.to_csv(bad, index=False)
    res = runner.invoke(app, ["train", str(bad), "--no-promote"])
    assert res.exit_code == 0, res.output
    assert "column 'flow_rate' is not numeric" in res.output


@pytest.mark.parametrize("option", ["--days", "--new-days"])
def test_demo_names_the_bad_days_option(sg_home: Path, tmp_path: Path, option: str) -> None:
    args = ["demo", "--quick", "-o", str(tmp_path / "demo"), option, "0"]
    _fails_cleanly(args, f"{option} must be positive")


def test_multi_character_separator_is_read(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("timestamp::s1::s2\n2026-01-01 00:00::1.0::2.0\n2026-01-01 00:01::1.5::2.5\n")
    res = runner.invoke(app, ["validate", str(path), "--sep", "::"])
    assert res.exit_code == 0, res.output
    assert "2: s1, s2" in res.output
    out = _fails_cleanly(["validate", str(path), "--sep", "abc"], "columns found")
    assert "low_memory" not in out


def test_drift_names_sensors_only_one_side_has(tmp_path: Path, readings: Path) -> None:
    import pandas as pd

    from sensorguard.data import load_readings

    frame = pd.read_csv(readings)
    sensors = load_readings(readings).sensors
    ref, recent = tmp_path / "ref.csv", tmp_path / "recent.csv"
    frame.drop(columns=[sensors[0]]).to_csv(ref, index=False)
    frame.drop(columns=[sensors[1]]).to_csv(recent, index=False)
    for extra in ([], ["--json"]):
        res = runner.invoke(app, ["drift", str(recent), "-r", str(ref), *extra])
        assert res.exit_code == 0, res.output
        warning = [ln for ln in res.output.splitlines() if ln.startswith("warning:")]
        assert len(warning) == 1, res.output
        assert f"not in the reference: {sensors[0]}" in warning[0]
        assert f"not in the recent readings: {sensors[1]}" in warning[0]


def test_drift_without_a_shared_sensor_is_an_error(tmp_path: Path) -> None:
    ref, recent = tmp_path / "ref.csv", tmp_path / "recent.csv"
    ref.write_text("timestamp,a,b\n2026-01-01 00:00,1,2\n2026-01-01 00:01,1.5,2.5\n")
    recent.write_text("timestamp,c\n2026-01-01 00:00,1\n2026-01-01 00:01,2\n")
    _fails_cleanly(
        ["drift", str(recent), "-r", str(ref)], "error:", "no sensor column in common", "a, b"
    )


def test_score_names_a_text_sensor_column(tmp_path: Path, readings: Path) -> None:
    import pandas as pd

    from sensorguard.data import load_readings

    model = tmp_path / "model"
    make_detector("pca").fit(load_readings(readings).X).save(model)
    frame = pd.read_csv(readings)
    frame["flow_rate"] = "n/a"
    frame.loc[3, "flow_rate"] = "broken"
    bad = tmp_path / "text.csv"
    frame.to_csv(bad, index=False)
    out = _fails_cleanly(
        ["score", str(bad), "--model", str(model), "-o", str(tmp_path / "s.csv")],
        "error:",
        "sensor column 'flow_rate' is present but not numeric",
        "'broken' at row 4",
    )
    assert "missing" not in out.replace("missing readings", "")


@pytest.mark.parametrize(
    ("detector", "param", "needles"),
    [
        ("drift-robust", "quantile=1.5", ["bad value 1.5", "between 0 and 1 (exclusive)"]),
        ("pca", "n_components=0", ["'n_components'", "the default is 0.9"]),
        ("iforest", "n_estimators=0", ["'n_estimators'", "at least 1"]),
        ("operating-states", "threshold_margin=-1", ["'threshold_margin'", "greater than 0"]),
    ],
)
def test_train_out_of_range_param(
    sg_home: Path, readings: Path, detector: str, param: str, needles: list[str]
) -> None:
    out = _fails_cleanly(
        ["train", str(readings), "-d", detector, "-p", param, "--no-promote"], "error:", *needles
    )
    assert len([ln for ln in out.splitlines() if ln.startswith("error:")]) == 1, out


def test_benchmark_out_of_range_param(tmp_path: Path) -> None:
    data = tmp_path / "bench"
    data.mkdir()
    (data / "a.csv").write_text("datetime,s1,anomaly\n2026-01-01 00:00:00,1.0,0\n")
    _fails_cleanly(
        [
            "benchmark",
            str(data),
            "-o",
            str(tmp_path / "o"),
            "-d",
            "drift-robust",
            "-p",
            "quantile=1.5",
        ],
        "bad value 1.5 for parameter 'quantile' of detector 'drift-robust'",
        "between 0 and 1 (exclusive)",
        "--param quantile=0.99",
    )


# ---- malformed files from the reliability campaign: each is an error naming the row


def _pump_lines(readings: Path) -> tuple[str, list[str]]:
    lines = readings.read_text().replace('"', "").splitlines()
    return lines[0], lines[1:]


@pytest.fixture
def model(tmp_path: Path, readings: Path) -> Path:
    from sensorguard.data import load_readings

    return make_detector("pca").fit(load_readings(readings).X).save(tmp_path / "pca")


@pytest.mark.parametrize("epoch", ["10000000000000", "-1e11"])
@pytest.mark.parametrize("command", ["validate", "score", "ingest"])
def test_out_of_range_epoch_cell_is_one_line_naming_the_row(
    sg_home: Path, tmp_path: Path, readings: Path, model: Path, epoch: str, command: str
) -> None:
    import pandas as pd

    header, rows = _pump_lines(readings)
    out = [header]
    for i, row in enumerate(rows):
        cells = row.split(",")
        cells[0] = epoch if i == 5 else str(int(pd.Timestamp(cells[0]).timestamp()))
        out.append(",".join(cells))
    bad = tmp_path / "epoch.csv"
    bad.write_text("\n".join(out) + "\n")
    args = {
        "validate": ["validate", str(bad)],
        "score": ["score", str(bad), "--model", str(model), "-o", str(tmp_path / "s.csv")],
        "ingest": ["ingest", str(bad)],
    }[command]
    text = _fails_cleanly(args, "error:", "row 6 (line 7)", "outside the supported range")
    assert len([ln for ln in text.splitlines() if ln.startswith("error:")]) == 1
    assert not (tmp_path / "s.csv").exists()


def test_score_refuses_a_file_whose_sensors_are_all_empty(
    tmp_path: Path, readings: Path, model: Path
) -> None:
    header, rows = _pump_lines(readings)
    cols = header.split(",")
    keep = {cols.index(c) for c in ("timestamp", "asset_id", "machine_status", "failure_mode")}
    blank = [",".join(v if i in keep else "" for i, v in enumerate(r.split(","))) for r in rows]
    bad = tmp_path / "all_nan.csv"
    bad.write_text("\n".join([header, *blank]) + "\n")
    out_file = tmp_path / "s.csv"
    _fails_cleanly(
        ["score", str(bad), "--model", str(model), "-o", str(out_file)], "no sensor has a value"
    )
    assert not out_file.exists()


def test_train_refuses_far_more_sensors_than_rows_quickly(sg_home: Path, tmp_path: Path) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    path = tmp_path / "wide.csv"
    with path.open("w") as fh:  # 2,500 columns x 100 rows: refused before any fitting
        fh.write("timestamp," + ",".join(f"s{i}" for i in range(2500)) + "\n")
        for k in range(100):
            fh.write(f"2026-01-01T00:{k // 60:02d}:{k % 60:02d},")
            fh.write(",".join(f"{v:.3f}" for v in rng.random(2500)) + "\n")
    _fails_cleanly(["train", str(path), "--no-promote"], "at most 2,000 sensors")


def test_binary_hole_is_refused_by_every_command(tmp_path: Path, readings: Path) -> None:
    bad = tmp_path / "hole.csv"
    with bad.open("wb") as fh:
        fh.write(b"timestamp,a\n")
        fh.truncate(32 * 1024 * 1024)
    _fails_cleanly(["validate", str(bad)], "NUL bytes")
