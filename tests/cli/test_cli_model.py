"""`sensorguard score` and `sensorguard evaluate` through Typer's runner."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from sensorguard.cli import app
from sensorguard.data import Readings, write_frame
from sensorguard.data.simulator import simulate_pump
from sensorguard.detectors.states import OperatingStateDetector

runner = CliRunner()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli_model")
    train = Readings.from_frame(simulate_pump(days=4, seed=21, failures=False))
    OperatingStateDetector(silhouette_sample=1500, max_states=5).fit(train.X).save(root / "model")
    data = simulate_pump(days=3, seed=22, n_failures=3)
    write_frame(data, root / "eval.csv")
    write_frame(data.drop(columns=["machine_status"]), root / "unlabelled.csv")
    write_frame(data.drop(columns=["flow_rate"]), root / "no_flow.csv")
    semi = data.drop(columns=["failure_mode"]).rename(columns={"timestamp": "ts"})
    semi.to_csv(root / "semicolon.csv", sep=";", index=False)
    return {
        "root": root,
        "model": root / "model",
        "eval": root / "eval.csv",
        "unlabelled": root / "unlabelled.csv",
        "no_flow": root / "no_flow.csv",
        "semicolon": root / "semicolon.csv",
    }


def _one_line_error(result: object) -> str:
    out = result.output  # type: ignore[attr-defined]
    assert result.exit_code == 2, out  # type: ignore[attr-defined]
    assert "Traceback" not in out
    lines = [ln for ln in out.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, out
    return lines[0]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_score_writes_one_row_per_reading(files: dict[str, Path], suffix: str) -> None:
    out = files["root"] / f"scored{suffix}"
    result = runner.invoke(
        app, ["score", str(files["eval"]), "--model", str(files["model"]), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "alarm event(s)" in result.output
    frame = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    assert len(frame) == 3 * 1440
    assert list(frame.columns) == [
        "timestamp",
        "asset_id",
        "score",
        "is_anomaly",
        "state",
        "top_sensors",
        "machine_status",
    ]
    assert frame["is_anomaly"].any()
    assert frame["top_sensors"].str.count(";").eq(2).all()


def test_score_two_assets_matches_each_alone(files: dict[str, Path]) -> None:
    from sensorguard.detectors import load_detector
    from sensorguard.scoring.readings import score_readings

    a = simulate_pump(days=1, seed=23, n_failures=1, asset_id="pump-a")
    b = simulate_pump(days=1, seed=24, n_failures=1, asset_id="pump-b")
    both = Readings.from_frame(pd.concat([a, b], ignore_index=True))
    det = load_detector(files["model"])
    out = score_readings(det, both)
    assert len(out) == len(a) + len(b)
    for frame in (a, b):
        alone = score_readings(det, Readings.from_frame(frame)).reset_index(drop=True)
        part = out[out["asset_id"] == frame["asset_id"].iloc[0]].reset_index(drop=True)
        pd.testing.assert_frame_equal(part, alone)


def test_score_with_separator_and_time_column(files: dict[str, Path]) -> None:
    out = files["root"] / "semi_scored.csv"
    result = runner.invoke(
        app,
        [
            "score",
            str(files["semicolon"]),
            "-m",
            str(files["model"]),
            "-o",
            str(out),
            "--sep",
            ";",
            "--time-column",
            "ts",
            "--top-k",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out)
    assert frame.columns[0] == "ts"
    assert not frame["top_sensors"].str.contains(";").any()


def test_evaluate_table_and_json(files: dict[str, Path]) -> None:
    result = runner.invoke(app, ["evaluate", str(files["eval"]), "-m", str(files["model"])])
    assert result.exit_code == 0, result.output
    for word in ("precision", "F1", "events detected", "false alarm events", "By failure"):
        assert word in result.output
    result = runner.invoke(
        app, ["evaluate", str(files["eval"]), "-m", str(files["model"]), "--json"]
    )
    assert result.exit_code == 0, result.output
    start = result.output.index("{")
    metrics = json.loads(result.output[start:])
    assert metrics["events_total"] == 3
    assert 0 <= metrics["f1"] <= 1
    assert set(metrics["by_mode"]) <= {
        "bearing_wear",
        "cavitation",
        "leak",
        "stuck_sensor",
        "spike",
    }


def test_plots(files: dict[str, Path]) -> None:
    png = files["root"] / "score.png"
    result = runner.invoke(
        app,
        [
            "score",
            str(files["eval"]),
            "-m",
            str(files["model"]),
            "-o",
            str(files["root"] / "p.csv"),
            "--plot",
            str(png),
        ],
    )
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:4] == b"\x89PNG"
    svg = files["root"] / "eval.svg"
    result = runner.invoke(
        app, ["evaluate", str(files["eval"]), "-m", str(files["model"]), "--plot", str(svg)]
    )
    assert result.exit_code == 0, result.output
    assert "<svg" in svg.read_text()[:2000]


def test_missing_model_folder(files: dict[str, Path]) -> None:
    result = runner.invoke(app, ["evaluate", str(files["eval"]), "-m", str(files["root"] / "nope")])
    assert "does not exist" in _one_line_error(result)


def test_folder_without_model(files: dict[str, Path]) -> None:
    result = runner.invoke(app, ["evaluate", str(files["eval"]), "-m", str(files["root"])])
    assert "does not hold a saved detector" in _one_line_error(result)


def test_missing_sensor(files: dict[str, Path]) -> None:
    result = runner.invoke(
        app,
        ["score", str(files["no_flow"]), "-m", str(files["model"]), "-o", "x.csv"],
    )
    assert "missing sensor column(s): flow_rate" in _one_line_error(result)


def test_evaluate_needs_labels(files: dict[str, Path]) -> None:
    result = runner.invoke(app, ["evaluate", str(files["unlabelled"]), "-m", str(files["model"])])
    assert "needs labelled readings" in _one_line_error(result)


def test_bad_output_suffix(files: dict[str, Path]) -> None:
    result = runner.invoke(
        app,
        ["score", str(files["eval"]), "-m", str(files["model"]), "-o", "out.xlsx"],
    )
    assert "unknown file type" in _one_line_error(result)


def test_missing_data_file(files: dict[str, Path]) -> None:
    result = runner.invoke(app, ["score", "nope.csv", "-m", str(files["model"]), "-o", "out.csv"])
    _one_line_error(result)


def test_help_mentions_examples() -> None:
    for cmd in ("score", "evaluate"):
        result = runner.invoke(app, [cmd, "--help"])
        assert result.exit_code == 0
        assert "models:/" in result.output


def test_shared_file_options_map_onto_load_readings() -> None:
    from sensorguard.cli._common import read_options, split_csv_list

    assert split_csv_list(None) == [] and split_csv_list(" a, ,b ") == ["a", "b"]
    assert split_csv_list(["a,b", "c"]) == ["a", "b", "c"]  # a repeatable option
    # unset options are left out, so load_readings' own defaults apply
    assert read_options(sep=None, time_column="ts", ignore_columns=None) == {"time_column": "ts"}
    assert read_options(ignore_columns="note, x", duplicates="last") == {
        "ignore_columns": ["note", "x"],
        "duplicates": "last",
    }
