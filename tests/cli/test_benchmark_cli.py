"""`sensorguard benchmark` end to end on a tiny folder in the benchmark contract's format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from sensorguard.cli import app
from sensorguard.evaluation.changepoint import changepoint_score
from sensorguard.evaluation.metrics import Confusion, confusion
from sensorguard.evaluation.synthetic import pump_rig_file

TRAIN_ROWS = 300
ARGS = [
    "--sep",
    ";",
    "--time-column",
    "datetime",
    "--label-column",
    "anomaly",
    "--ignore-columns",
    "changepoint",
    "--train-rows",
    str(TRAIN_ROWS),
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rig")
    (root / "valve 1").mkdir()
    for i, kind in enumerate(["valve_outlet", "imbalance"]):
        pump_rig_file(10 + i, kind=kind, n=800).to_csv(
            root / "valve 1" / f"run {i}.csv", sep=";", index=False
        )
    free = pump_rig_file(12, kind="none", n=500).drop(columns=["anomaly", "changepoint"])
    free.to_csv(root / "anomaly-free.csv", sep=";", index=False)
    return root


@pytest.mark.parametrize("detector", [None, "pca"])
def test_benchmark_writes_outputs_and_consistent_summary(
    data_dir: Path, tmp_path: Path, detector: str | None
) -> None:
    out = tmp_path / "out"
    extra = ["--detector", detector] if detector else []
    res = CliRunner().invoke(
        app, ["benchmark", str(data_dir), "--output-dir", str(out), *ARGS, *extra]
    )
    assert res.exit_code == 0, res.output
    assert "skipped anomaly-free.csv" in res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["detector"] == (detector or "pca-smoothed")
    assert summary["train_rows"] == TRAIN_ROWS
    assert [s["file"] for s in summary["skipped"]] == ["anomaly-free.csv"]
    assert not (out / "anomaly-free.csv").exists()

    total = Confusion(0, 0, 0, 0)
    cp_total = None
    per_file = {f["file"]: f for f in summary["files"]}
    assert sorted(per_file) == ["valve 1/run 0.csv", "valve 1/run 1.csv"]
    for name, info in per_file.items():
        src = pd.read_csv(data_dir / name, sep=";")
        pred = pd.read_csv(out / name, sep=";")
        assert list(pred.columns) == ["datetime", "score", "is_anomaly"]
        assert len(pred) == len(src) - TRAIN_ROWS
        assert pred["datetime"].tolist() == src["datetime"].iloc[TRAIN_ROWS:].tolist()
        assert set(pred["is_anomaly"].unique()) <= {0, 1}
        assert np.isfinite(pred["score"]).all()
        c = confusion(src["anomaly"].iloc[TRAIN_ROWS:].to_numpy(), pred["is_anomaly"].to_numpy())
        assert (info["tp"], info["fp"], info["fn"], info["tn"]) == (c.tp, c.fp, c.fn, c.tn)
        total = total + c
        cp = changepoint_score(
            pd.to_datetime(pred["datetime"]),
            pred["is_anomaly"].to_numpy(),
            true_changepoints=src["changepoint"].iloc[TRAIN_ROWS:].to_numpy(),
            window_seconds=60,
        )
        cp_total = cp if cp_total is None else cp_total + cp
    m = summary["metrics"]
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (total.tp, total.fp, total.fn, total.tn)
    assert m["f1"] == pytest.approx(total.tp / (total.tp + (total.fp + total.fn) / 2))
    assert m["far_percent"] == pytest.approx(100 * total.fp / (total.fp + total.tn))
    assert m["mar_percent"] == pytest.approx(100 * total.fn / (total.fn + total.tp))
    assert cp_total is not None
    assert summary["changepoint"]["scores"] == pytest.approx(cp_total.normalised())
    assert set(summary["changepoint"]["scores"]) == {"standard", "reward_low_FP", "reward_low_FN"}


def test_labels_and_ignored_columns_never_reach_fit(data_dir: Path, tmp_path: Path) -> None:
    from sensorguard.evaluation.benchmark import evaluate_series
    from sensorguard.evaluation.readers import read_contract_csv

    series = read_contract_csv(
        data_dir / "valve 1" / "run 0.csv",
        "x.csv",
        sep=";",
        time_column="datetime",
        label_column="anomaly",
        ignore_columns=["changepoint"],
    )
    assert not isinstance(series, type(None))
    assert list(series.X.columns) == [  # type: ignore[union-attr]
        "Accelerometer1RMS",
        "Accelerometer2RMS",
        "Current",
        "Pressure",
        "Temperature",
        "Thermocouple",
        "Voltage",
        "Volume Flow RateRMS",
    ]
    out, _, _, info = evaluate_series(series, detector="pca", train_rows=TRAIN_ROWS)  # type: ignore[arg-type]
    assert info["train_rows"] == TRAIN_ROWS and len(out) == 800 - TRAIN_ROWS


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--detector", "nope"], "unknown detector 'nope'"),
        (["--param", "oops"], "bad --param"),
        (["--time-column", "when"], "no time column 'when'"),
        (["--train-rows", "5000"], "not more than --train-rows=5000"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    data_dir: Path, tmp_path: Path, argv: list[str], message: str
) -> None:
    base = ["benchmark", str(data_dir), "--output-dir", str(tmp_path / "o"), *ARGS]
    res = CliRunner().invoke(app, [*base, *argv])
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert "Traceback" not in res.output


def test_missing_folder(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app, ["benchmark", str(tmp_path / "none"), "--output-dir", str(tmp_path / "o")]
    )
    assert res.exit_code == 2 and "is not a folder" in res.output


def test_benchmark_reports_a_regime_change(tmp_path: Path) -> None:
    # the readings after the training rows sit far outside the training range from the
    # first predicted row on: a regime change, reported per file and in the summary
    rng = np.random.default_rng(0)
    n = 500
    times = pd.date_range("2026-01-01", periods=n, freq="s")
    x = rng.normal(0, 1, (n, 2))
    x[200:, 1] += 50
    frame = pd.DataFrame({"datetime": times, "a": x[:, 0], "b": x[:, 1], "anomaly": 0})
    data = tmp_path / "bench"
    data.mkdir()
    frame.to_csv(data / "moved.csv", index=False)
    out = tmp_path / "out"
    res = CliRunner().invoke(
        app,
        ["benchmark", str(data), "-o", str(out), "--time-column", "datetime",
         "--label-column", "anomaly", "--train-rows", "200"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "regime change (b outside the training range" in res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["regime_changes"] == ["moved.csv"]
    verdict = summary["files"][0]["regime"]
    assert verdict["verdict"] == "regime_change" and verdict["sensors"][0]["sensor"] == "b"
