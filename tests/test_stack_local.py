"""Process management of the native stack (no PostgreSQL needed): pid files, SIGTERM
then SIGKILL, stale pid files, and the commands it would run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sensorguard.cli import app
from sensorguard.deploy import local_stack as ls

SLEEPER = [sys.executable, "-c", "import time\nwhile True: time.sleep(0.1)"]
STUBBORN = [
    sys.executable,
    "-c",
    "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready', flush=True)\nwhile True: time.sleep(0.1)",
]


def _wait_ready(log: Path) -> None:
    import time

    for _ in range(100):
        if "ready" in log.read_text():
            return
        time.sleep(0.05)
    raise AssertionError(log.read_text())


def test_start_status_and_graceful_stop(tmp_path: Path) -> None:
    sdir = tmp_path / "stack"
    rec = ls.start_service(sdir, "mlflow", SLEEPER, {}, "http://127.0.0.1:1")
    assert ls._alive(rec)
    assert json.loads((sdir / "mlflow.pid").read_text())["pid"] == rec["pid"]
    with pytest.raises(ls.StackError, match="already runs"):
        ls.start_service(sdir, "mlflow", SLEEPER, {}, "http://127.0.0.1:1")
    info = {i.name: i for i in ls.status(tmp_path)}
    assert info["mlflow"].running and not info["mlflow"].healthy  # nothing answers /health
    assert info["predictor"].detail == "not started"
    assert ls.stop_service(sdir, "mlflow", timeout=5) == "stopped"
    assert not ls._alive(rec)
    assert not (sdir / "mlflow.pid").exists()
    assert ls.stop_service(sdir, "mlflow") == "not running"


def test_sigkill_after_timeout(tmp_path: Path) -> None:
    sdir = tmp_path / "stack"
    rec = ls.start_service(sdir, "predictor", STUBBORN, {}, "http://127.0.0.1:1")
    _wait_ready(sdir / "predictor.log")
    outcome = ls.stop_service(sdir, "predictor", timeout=0.5)
    assert outcome.startswith("killed"), outcome
    assert not ls._alive(rec)


def test_stale_or_reused_pid_is_never_signalled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sdir = tmp_path / "stack"
    sdir.mkdir(parents=True)
    import os

    # our own pid, but a different start time: a reused pid, not the service
    (sdir / "mlflow.pid").write_text(
        json.dumps({"pid": os.getpid(), "cmd": ["x"], "url": "u", "proc_start": "1"})
    )
    sent: list[int] = []
    monkeypatch.setattr(ls.os, "killpg", lambda pid, sig: sent.append(pid))
    monkeypatch.setattr(ls.os, "kill", lambda pid, sig: sent.append(pid) if sig else None)
    assert ls.stop_service(sdir, "mlflow") == "not running (stale pid file removed)"
    assert sent == []


def test_commands_are_lean_and_serve_artifacts(tmp_path: Path) -> None:
    cfg = ls.StackConfig(pg_url="postgresql://u@h/db", home=tmp_path, mlflow_port=5123)
    cmd = ls.mlflow_command(cfg, "postgresql+psycopg2://u@h/sg_mlflow")
    assert cmd[cmd.index("--workers") + 1] == "1"
    assert "--serve-artifacts" in cmd
    assert cmd[cmd.index("--artifacts-destination") + 1] == str(
        tmp_path.resolve() / "stack" / "artifacts"
    )
    assert "127.0.0.1:5123" in cmd[cmd.index("--allowed-hosts") + 1].split(",")
    assert ls.lean_mlflow_env() == {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env = ls.predictor_env(cfg, "postgresql+psycopg2://u@h/sg_readings")
    assert env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5123"
    assert ls.pg_url("postgresql://u@h:5/x", "y").render_as_string() == (
        "postgresql+psycopg2://u@h:5/y"
    )


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["stack", "up", "--pg-url", "sqlite:///x.db", "--home", str(tmp_path)])
    assert res.exit_code == 2 and "must be a PostgreSQL URL" in res.output
    assert "Traceback" not in res.output
    res = runner.invoke(
        app,
        ["stack", "up", "--pg-url", "postgresql://nobody@127.0.0.1:1/x", "--home", str(tmp_path)],
    )
    assert res.exit_code == 2 and "cannot reach PostgreSQL" in res.output
    res = runner.invoke(app, ["stack", "status", "--home", str(tmp_path), "--json"])
    assert res.exit_code == 0
    assert {s["name"] for s in json.loads(res.stdout)} == {"mlflow", "predictor"}
    res = runner.invoke(app, ["stack", "down", "--home", str(tmp_path)])
    assert res.exit_code == 0 and "mlflow: not running" in res.output


@pytest.mark.postgres
def test_port_taken_by_another_program_is_refused(tmp_path: Path) -> None:
    """Else another program's /health could pass for our server."""
    import socket
    import uuid

    from _pg import PG_URL, drop_database, pg_available
    from conftest import require_service

    require_service(pg_available(), "PostgreSQL is not reachable at 127.0.0.1:5432")
    tag = uuid.uuid4().hex[:8]
    cfg = ls.StackConfig(
        pg_url=PG_URL,
        home=tmp_path,
        mlflow_db=f"sgtest_portm_{tag}",
        readings_db=f"sgtest_portr_{tag}",
    )
    try:
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            cfg.mlflow_port = busy.getsockname()[1]
            assert not ls.port_free("127.0.0.1", cfg.mlflow_port)
            with pytest.raises(ls.StackError, match=f"port {cfg.mlflow_port} .* in use"):
                ls.up(cfg)
        assert not (tmp_path / "stack" / "mlflow.pid").exists()  # nothing was started
    finally:
        drop_database(cfg.mlflow_db)
        drop_database(cfg.readings_db)
