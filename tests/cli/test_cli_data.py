"""`sensorguard simulate` and `sensorguard validate` through Typer's runner."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from sensorguard.cli import app
from sensorguard.data import load_readings
from sensorguard.data.simulator import SENSORS

runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def assert_one_line_error(code: int, output: str, *needles: str) -> None:
    assert code == 2, output
    lines = [ln for ln in output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("error:")
    assert "Traceback" not in output
    for needle in needles:
        assert needle in output, (needle, output)


def test_help_texts() -> None:
    for cmd in ("simulate", "validate"):
        code, out = run(cmd, "--help")
        assert code == 0
        assert "Examples" in out
    code, out = run("--help")
    assert "simulate" in out and "validate" in out


def test_simulate_writes_file_and_summary(tmp_path: Path) -> None:
    out_file = tmp_path / "data" / "pump.csv"
    code, out = run(
        "simulate", "--output", str(out_file), "--days", "3", "--seed", "4",
        "--failure-modes", "leak,spike", "--asset-id", "p-9",
    )  # fmt: skip
    assert code == 0, out
    assert "4,320 rows" in out and "3 failure(s)" in out
    assert "leak" in out and "spike" in out
    r = load_readings(out_file)
    assert len(r) == 3 * 24 * 60 and r.sensors == list(SENSORS)
    assert r.assets == ["p-9"]
    assert set(r.frame["failure_mode"].dropna()) == {"leak", "spike"}


def test_simulate_is_deterministic_and_writes_parquet(tmp_path: Path) -> None:
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    for p in (a, b):
        code, out = run("simulate", "-o", str(p), "--days", "1", "--seed", "7")
        assert code == 0, out
    pd.testing.assert_frame_equal(pd.read_parquet(a), pd.read_parquet(b))


def test_simulate_without_failures_is_trainable(tmp_path: Path) -> None:
    p = tmp_path / "normal.csv"
    code, out = run("simulate", "-o", str(p), "--days", "1", "--no-failures")
    assert code == 0 and "0 failure(s)" in out
    code, out = run("validate", str(p), "--for-training")
    assert code == 0, out
    assert "valid for training" in out
    assert "labels" in out and "0.0% abnormal" in out


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--output", "x.xlsx"], ["unknown file type '.xlsx'"]),
        (["--output", "x.csv", "--failure-modes", "rust"], ["unknown failure mode(s): rust"]),
        (["--output", "x.csv", "--freq", "soon"], ["invalid sampling frequency"]),
        (["--output", "x.csv", "--days", "-1"], ["days must be positive"]),
    ],
)
def test_simulate_bad_options(tmp_path: Path, args: list[str], needles: list[str]) -> None:
    args = [str(tmp_path / a) if a.startswith("x.") else a for a in args]
    code, out = run("simulate", *args)
    assert_one_line_error(code, out, *needles)
    assert not list(tmp_path.iterdir())  # nothing written


def test_validate_reports_what_it_found(tmp_path: Path) -> None:
    p = tmp_path / "pump.csv"
    run("simulate", "-o", str(p), "--days", "2", "--seed", "1")
    code, out = run("validate", str(p))
    assert code == 0, out
    assert "2,880" in out
    assert "2026-01-01 00:00:00" in out and "2026-01-02 23:59:00" in out
    assert "9: motor_speed" in out
    assert "machine_status" in out and "% abnormal" in out
    assert "note:" in out and "failure_mode" in out
    assert out.strip().endswith("valid")


def test_validate_semicolon_file_with_options(tmp_path: Path) -> None:
    p = tmp_path / "plant.txt"
    p.write_text(
        "ts;a;b;comment\n"
        + "".join(f"2026-01-01 00:{i:02d};{i};{np.sin(i):.3f};x\n" for i in range(60))
    )
    code, out = run(
        "validate", str(p), "--sep", ";", "--time-column", "ts",
        "--ignore-columns", "comment", "--for-training",
    )  # fmt: skip
    assert code == 0, out
    assert "2: a, b" in out and "labels" in out and "none" in out


@pytest.mark.parametrize(
    ("content", "extra", "needles"),
    [
        ("ts,a\n2026-01-01,1\n", [], ["no time column", "ts, a", "--time-column"]),
        (
            "timestamp,a\n2026-01-01 00:00,1\n2026-01-01 00:01,x1\n2026-01-01 00:02,3\n",
            [],
            ["sensor column 'a'", "'x1'", "row 2 (line 3)"],
        ),
        (
            "timestamp,a\n2026-01-01 00:00,1\nlater,2\n",
            [],
            ["time column 'timestamp'", "'later'", "row 2 (line 3)"],
        ),
        (
            "timestamp,a\n2026-01-01 00:00,1\n2026-01-01 00:00,2\n",
            [],
            ["duplicated timestamp", "rows 1, 2"],
        ),
        (
            "timestamp,a\n2026-01-01 00:00,1\n2026-01-01 00:01,2\n",
            ["--for-training"],
            ["only 2 reading(s)"],
        ),
        (
            "timestamp,a,label\n2026-01-01 00:00,1,ok\n",
            [],
            ["label column 'label' has unknown value(s): ok"],
        ),
        ("", [], ["the file is empty"]),
    ],
)
def test_validate_errors_are_one_line(
    tmp_path: Path, content: str, extra: list[str], needles: list[str]
) -> None:
    p = tmp_path / "bad.csv"
    p.write_text(content)
    code, out = run("validate", str(p), *extra)
    assert_one_line_error(code, out, str(p), *needles)


def test_validate_constant_column_for_training(tmp_path: Path) -> None:
    p = tmp_path / "c.csv"
    p.write_text("timestamp,a,c\n" + "".join(f"2026-01-01 00:{i:02d},{i},5\n" for i in range(60)))
    code, out = run("validate", str(p))
    assert code == 0, out
    code, out = run("validate", str(p), "--for-training")
    assert_one_line_error(code, out, "'c' = 5", "--ignore-columns c")


def test_validate_duplicates_last(tmp_path: Path) -> None:
    p = tmp_path / "d.csv"
    p.write_text("timestamp,a\n2026-01-01 00:00,1\n2026-01-01 00:00,2\n2026-01-01 00:01,3\n")
    code, out = run("validate", str(p), "--duplicates", "last")
    assert code == 0, out
    assert "1 row(s) with a duplicated timestamp dropped" in out


def test_validate_missing_file(tmp_path: Path) -> None:
    code, out = run("validate", str(tmp_path / "nope.csv"))
    assert_one_line_error(code, out, "file not found")


@pytest.mark.slow  # matplotlib import and two 9-panel figures
def test_plots_are_written(tmp_path: Path) -> None:
    data, png = tmp_path / "p.parquet", tmp_path / "plots" / "p.png"
    code, out = run("simulate", "-o", str(data), "--days", "1", "--plot", str(png))
    assert code == 0, out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = tmp_path / "v.svg"
    code, out = run("validate", str(data), "--plot", str(svg))
    assert code == 0, out
    assert "<svg" in svg.read_text()[:500]
    code, out = run("validate", str(data), "--plot", str(tmp_path / "v.txt"))
    assert_one_line_error(code, out, "cannot write a plot to v.txt")


# ---- the launcher leaves the caller's directory alone (it used to cd to the project root)

ROOT = Path(__file__).resolve().parents[2]


def _launcher_ready() -> bool:
    import hashlib

    stamp = ROOT / ".venv" / ".sensorguard-installed"
    want = hashlib.sha256(
        (ROOT / "requirements.lock").read_bytes() + (ROOT / "pyproject.toml").read_bytes()
    ).hexdigest()[:16]
    return stamp.is_file() and stamp.read_text().strip() == want


def test_sg_resolves_paths_against_the_callers_directory(tmp_path: Path) -> None:
    import subprocess

    if not _launcher_ready():
        pytest.skip("the project's .venv is not prepared for this lock file (run ./sg once)")
    (tmp_path / "pump.csv").write_text(
        "timestamp,a,b\n2026-01-01 00:00,1,2\n2026-01-01 00:01,3,4\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SENSORGUARD_HOME": str(tmp_path / "h")}
    sg = str(ROOT / "sg")
    res = subprocess.run(
        [sg, "validate", "pump.csv"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    assert "2: a, b" in res.stdout and "rows" in res.stdout  # the caller's 2-row file
    res = subprocess.run(
        [sg, "simulate", "-o", "out.csv", "--days", "0.01"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "out.csv").is_file() and not (ROOT / "out.csv").exists()
