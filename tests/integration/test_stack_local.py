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
    cmd = ls.mlflow_command(cfg)
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


def test_backend_password_stays_out_of_argv_and_pid_file(tmp_path: Path) -> None:
    # the backend URI holds the PostgreSQL password: environment only, never argv or files
    secret = "S3cretPassw0rd"
    backend = f"postgresql+psycopg2://postgres:{secret}@127.0.0.1:5432/sg_mlflow"
    cfg = ls.StackConfig(pg_url="postgresql://u@h/db", home=tmp_path)
    cmd = ls.mlflow_command(cfg)
    assert "--backend-store-uri" not in cmd and not any(secret in c for c in cmd)
    env = ls.mlflow_env(backend)
    assert env["MLFLOW_BACKEND_STORE_URI"] == backend
    sdir = tmp_path / "stack"
    # the service sees the variable (as `mlflow server` reads it); a secret that still
    # reaches argv is redacted in the pid file
    probe = [
        sys.executable,
        "-c",
        "import os\nprint('ready', os.environ['MLFLOW_BACKEND_STORE_URI'].endswith('sg_mlflow'),"
        " flush=True)\nimport time\nwhile True: time.sleep(0.1)",
        f"--url=postgresql://u:{secret}@h/x",
    ]
    ls.start_service(sdir, "mlflow", probe, env, "http://127.0.0.1:1")
    try:
        _wait_ready(sdir / "mlflow.log")
        assert "ready True" in (sdir / "mlflow.log").read_text()
        pid_file = (sdir / "mlflow.pid").read_text()
        assert secret not in pid_file and "postgresql://u:***@h/x" in pid_file
    finally:
        ls.stop_service(sdir, "mlflow", timeout=5)


def test_down_stops_the_group_when_only_the_leader_died(tmp_path: Path) -> None:
    # like `mlflow server`: a parent with a worker child; killing only the parent leaves
    # the worker (reparented, same process group) holding the port
    import os
    import signal
    import time

    sdir = tmp_path / "stack"
    parent = [
        sys.executable,
        "-c",
        "import subprocess, sys, time\n"
        "w = subprocess.Popen([sys.executable, '-c', 'import time\\nwhile True: "
        "time.sleep(0.1)'])\n"
        "print('ready', w.pid, flush=True)\nwhile True: time.sleep(0.1)",
    ]
    rec = ls.start_service(sdir, "mlflow", parent, {}, "http://127.0.0.1:1")
    _wait_ready(sdir / "mlflow.log")
    worker = int((sdir / "mlflow.log").read_text().split("ready")[-1].split()[0])
    os.kill(rec["pid"], signal.SIGKILL)
    for _ in range(100):
        if not ls._alive(rec):
            break
        time.sleep(0.05)
    assert not ls._alive(rec)
    assert ls.orphans(rec) == [worker]
    info = {i.name: i for i in ls.status(tmp_path)}["mlflow"]
    assert info.running and str(worker) in info.detail and "stack down" in info.detail
    cfg = ls.StackConfig(pg_url="postgresql://u@h/db", home=tmp_path)
    outcome = ls.stop_service(sdir, "mlflow", timeout=5)
    assert outcome == "stopped 1 orphaned process(es) of its group", outcome
    for _ in range(100):
        if not Path(f"/proc/{worker}").exists() or ls._proc_stat(worker) in (None,):
            break
        stat = ls._proc_stat(worker)
        if stat and stat[0] == "Z":
            break
        time.sleep(0.05)
    stat = ls._proc_stat(worker)
    assert stat is None or stat[0] == "Z", stat
    assert not (sdir / "mlflow.pid").exists()
    assert cfg.stack_dir == sdir.resolve()


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

    from support.pg import PG_URL, drop_database, pg_available
    from support.services import require_service

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
