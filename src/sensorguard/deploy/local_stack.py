"""The compose stack as local processes: a PostgreSQL-backed ``mlflow server`` with
served artifacts, and the predictor pointed at it.

Each service runs in its own session (process group) with a pid file and a log under
``<home>/stack/``; ``down`` sends SIGTERM to the group and SIGKILL after a timeout. A pid
file is trusted only while that pid still runs the command it recorded, so a stale file
never makes us signal an unrelated process. When only the leader died (MLflow's parent
killed, its uvicorn worker reparented and still holding the port), the group is still
found — members of the recorded session started after it — and ``down`` stops them.

Secrets never reach process arguments or the pid file: the MLflow backend URI (it holds
the PostgreSQL password) is passed as ``MLFLOW_BACKEND_STORE_URI`` in the environment,
which only the same user can read (``/proc/<pid>/environ`` is mode 0400), and anything
recorded is passed through :func:`sensorguard.config.redact`.

MLflow runs lean: one uvicorn worker (the default of 4 plus the job runner's 7 huey
processes needs ~2.2 GB, and several workers per process add a keep-alive delay) and no
job execution (``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``; jobs serve GenAI features
SensorGuard does not use). Scale out with several such processes behind a proxy.

(About 500 lines on purpose: the pid-file record, its liveness and group checks and the
stack plan that writes and reads it are one concept; split, each half would need the
other's private format.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from sensorguard.config import redact
from sensorguard.errors import ConfigurationError, SensorGuardError

SERVICES = ("mlflow", "predictor")
MLFLOW_DB = "sensorguard_mlflow"
READINGS_DB = "sensorguard_readings"


class StackError(SensorGuardError):
    """A local service failed to start or stop."""


@dataclass
class StackConfig:
    pg_url: str
    home: Path
    host: str = "127.0.0.1"
    mlflow_port: int = 5001
    predictor_port: int = 8000
    mlflow_db: str = MLFLOW_DB
    readings_db: str = READINGS_DB
    start_timeout: float = 120.0
    start_predictor: bool = True
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def stack_dir(self) -> Path:
        return stack_dir(self.home)

    @property
    def artifacts_dir(self) -> Path:
        return self.stack_dir / "artifacts"


@dataclass
class ServiceInfo:
    name: str
    pid: int | None
    url: str
    log: str
    running: bool = False
    healthy: bool = False
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def stack_dir(home: Path) -> Path:
    return Path(home).expanduser().resolve() / "stack"


# --------------------------------------------------------------------------- databases


def pg_url(url: str, database: str | None = None) -> URL:
    """Parse a PostgreSQL URL, pinned to psycopg2, optionally for another database."""
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise ConfigurationError(
            f"invalid PostgreSQL URL {url!r}: {exc}",
            "use e.g. postgresql://postgres@127.0.0.1:5432/postgres",
        ) from None
    if parsed.get_backend_name() != "postgresql":
        raise ConfigurationError(
            f"--pg-url must be a PostgreSQL URL, got {parsed.drivername}://",
            "use e.g. postgresql://postgres@127.0.0.1:5432/postgres",
        )
    parsed = parsed.set(drivername="postgresql+psycopg2")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed


def ensure_database(admin_url: str, name: str) -> str:
    """Create database ``name`` on the server of ``admin_url`` if missing; its URL."""
    if not name.replace("_", "").isalnum():
        raise ConfigurationError(f"invalid database name {name!r}", "use letters, digits and _")
    engine = sa.create_engine(pg_url(admin_url), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            exists = conn.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            ).scalar()
            if not exists:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        first = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise StackError(
            f"cannot reach PostgreSQL at {pg_url(admin_url).render_as_string()}: {first}",
            "check --pg-url and that the server runs (pg_isready -h HOST -p PORT)",
        ) from None
    finally:
        engine.dispose()
    return pg_url(admin_url, name).render_as_string(hide_password=False)


# --------------------------------------------------------------------------- commands


def allowed_hosts(port: int) -> str:
    """``--allowed-hosts`` replaces MLflow's default list, so name every form clients use."""
    return ",".join(
        ["localhost", f"localhost:{port}", "127.0.0.1", f"127.0.0.1:{port}", "[::1]:" + str(port)]
    )


def mlflow_command(cfg: StackConfig) -> list[str]:
    """The MLflow server's argv; the backend URI goes in :func:`mlflow_env` (a secret)."""
    return mlflow_server_command(
        cfg.artifacts_dir, cfg.host, cfg.mlflow_port, allowed=allowed_hosts(cfg.mlflow_port)
    )


def mlflow_server_command(
    artifacts: str | Path, host: str, port: int, *, allowed: str | None = None
) -> list[str]:
    """``mlflow server`` serving artifacts from ``artifacts``, one worker (the stack and
    ``sensorguard ui``); ``allowed``: its ``--allowed-hosts`` (None: MLflow's default)."""
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--serve-artifacts",
        "--artifacts-destination",
        str(artifacts),
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    return cmd if allowed is None else [*cmd, "--allowed-hosts", allowed]


def lean_mlflow_env() -> dict[str, str]:
    return {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def mlflow_env(backend_uri: str) -> dict[str, str]:
    """``mlflow server`` reads its backend from the environment: no password in argv."""
    return {**lean_mlflow_env(), "MLFLOW_BACKEND_STORE_URI": backend_uri}


def sensorguard_command(*args: str) -> list[str]:
    script = Path(sys.executable).parent / "sensorguard"
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-c", "from sensorguard.cli import main; main()", *args]


def predictor_env(cfg: StackConfig, readings_url: str) -> dict[str, str]:
    return {
        "MLFLOW_TRACKING_URI": f"http://{cfg.host}:{cfg.mlflow_port}",
        "SENSORGUARD_HOME": str(Path(cfg.home).expanduser().resolve()),
        "SENSORGUARD_STORE_URL": readings_url,
        "SENSORGUARD_HOST": cfg.host,
        "SENSORGUARD_PORT": str(cfg.predictor_port),
    }


# --------------------------------------------------------------------------- processes


def _pid_file(sdir: Path, name: str) -> Path:
    return sdir / f"{name}.pid"


def _log_file(sdir: Path, name: str) -> Path:
    return sdir / f"{name}.log"


def _read_pid(sdir: Path, name: str) -> dict[str, Any] | None:
    path = _pid_file(sdir, name)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("pid"), int) else None


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (None off Linux or if gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def _alive(record: dict[str, Any]) -> bool:
    """The recorded process still runs and is the one we started: same pid *and* same
    kernel start time, so a reused pid is never mistaken for it. A zombie counts as gone."""
    pid = int(record["pid"])
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    stat = _proc_stat(pid)
    if stat is None:
        return not Path("/proc/self/stat").exists()  # no procfs: trust the pid
    if stat[0] == "Z":
        return False
    started = record.get("proc_start")
    return started is None or stat[19] == started


def start_service(
    sdir: Path, name: str, cmd: list[str], env: dict[str, str], url: str
) -> dict[str, Any]:
    """Start ``cmd`` in its own session with output to ``<name>.log``; write the pid file."""
    sdir.mkdir(parents=True, exist_ok=True)
    existing = _read_pid(sdir, name)
    if existing and _alive(existing):
        raise StackError(
            f"{name} already runs (pid {existing['pid']}, {existing.get('url')})",
            "use `sensorguard stack status`, or `sensorguard stack down` first",
        )
    log = _log_file(sdir, name)
    with open(log, "ab") as out:
        out.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {name}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            start_new_session=True,
            cwd=str(sdir),
        )
    stat = _proc_stat(proc.pid)
    record = {
        "pid": proc.pid,
        "cmd": [redact(c) for c in cmd],
        "url": url,
        "started": time.time(),
        "proc_start": stat[19] if stat else None,  # kernel start time, against pid reuse
    }
    _pid_file(sdir, name).write_text(json.dumps(record))
    return record


def port_free(host: str, port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def http_ok(url: str, timeout: float = 2.0) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def wait_healthy(
    record: dict[str, Any], health_url: str, timeout: float, log: Path, name: str
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if http_ok(health_url):
            return
        if not _alive(record):
            raise StackError(f"{name} exited during start-up:\n{tail(log)}", f"see {log}")
        time.sleep(0.3)
    raise StackError(
        f"{name} did not answer {health_url} within {timeout:.0f}s:\n{tail(log)}", f"see {log}"
    )


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


def orphans(record: dict[str, Any]) -> list[int]:
    """Live members of the service's session whose leader is gone (e.g. MLflow's worker
    after its parent was killed): same process group and session id as the recorded pid
    (``start_new_session`` made it the leader of both), started no earlier than it, so a
    reused pid is never taken for ours. Empty off Linux (no procfs)."""
    pid = int(record["pid"])
    started = record.get("proc_start")
    out = []
    for entry in Path("/proc").glob("[0-9]*"):
        stat = _proc_stat(int(entry.name))
        if stat is None or int(entry.name) == pid or stat[0] == "Z":
            continue
        ours = int(stat[2]) == pid and int(stat[3]) == pid
        if ours and (started is None or int(stat[19]) >= int(started)):
            out.append(int(entry.name))
    return sorted(out)


def _running(record: dict[str, Any]) -> bool:
    return _alive(record) or bool(orphans(record))


def stop_service(sdir: Path, name: str, timeout: float = 15.0) -> str:
    """SIGTERM the service's process group, SIGKILL after ``timeout``; remove the pid file.

    Also when only the leader is gone: its orphaned group members are stopped the same way.
    """
    record = _read_pid(sdir, name)
    pid_path = _pid_file(sdir, name)
    if record is None:
        return "not running"
    leader = _alive(record)
    left = orphans(record)
    if not leader and not left:
        pid_path.unlink(missing_ok=True)
        return "not running (stale pid file removed)"
    pid = int(record["pid"])
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _running(record):
        time.sleep(0.1)
    outcome = "stopped" if leader else f"stopped {len(left)} orphaned process(es) of its group"
    if _running(record):
        _signal_group(pid, signal.SIGKILL)
        outcome = f"killed (no exit {timeout:.0f}s after SIGTERM)"
        for _ in range(50):
            if not _running(record):
                break
            time.sleep(0.1)
    pid_path.unlink(missing_ok=True)
    return outcome


def _signal_group(pid: int, sig: signal.Signals) -> None:
    # we started it with start_new_session, so its pid is the group id, and the group
    # outlives the leader as long as a member runs
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return
    except PermissionError:  # not our group (cannot happen for a verified record)
        return


# --------------------------------------------------------------------------- stack


def up(cfg: StackConfig, on_step: Callable[[str], None] | None = None) -> list[ServiceInfo]:
    """Create the databases if missing, start MLflow and the predictor, wait for health."""
    step = on_step or (lambda _msg: None)
    sdir = cfg.stack_dir
    sdir.mkdir(parents=True, exist_ok=True)
    cfg.artifacts_dir.mkdir(parents=True, exist_ok=True)
    step(f"databases {cfg.mlflow_db} and {cfg.readings_db}")
    backend = ensure_database(cfg.pg_url, cfg.mlflow_db)
    readings = ensure_database(cfg.pg_url, cfg.readings_db)
    from sensorguard.store import upgrade

    upgrade(readings)
    (sdir / "stack.json").write_text(
        json.dumps(
            {
                "mlflow_url": f"http://{cfg.host}:{cfg.mlflow_port}",
                "predictor_url": f"http://{cfg.host}:{cfg.predictor_port}",
                "backend_store_uri": make_url(backend).render_as_string(hide_password=True),
                "readings_url": make_url(readings).render_as_string(hide_password=True),
                "artifacts": str(cfg.artifacts_dir),
            },
            indent=2,
        )
    )
    mlflow_url = f"http://{cfg.host}:{cfg.mlflow_port}"
    pred_url = f"http://{cfg.host}:{cfg.predictor_port}"
    plan = [
        (
            "mlflow",
            mlflow_command(cfg),
            {**mlflow_env(backend), **cfg.extra_env},
            mlflow_url,
            "/health",
        )
    ]
    if cfg.start_predictor:
        plan.append(
            (
                "predictor",
                sensorguard_command("serve", "--host", cfg.host, "--port", str(cfg.predictor_port)),
                {**predictor_env(cfg, readings), **cfg.extra_env},
                pred_url,
                "/healthz",
            )
        )
    started: list[str] = []
    try:
        for name, cmd, env, url, health in plan:
            existing = _read_pid(sdir, name)
            if existing and not _alive(existing) and orphans(existing):
                raise StackError(
                    f"{name}'s process {existing['pid']} exited but its group still runs "
                    f"(pid {', '.join(map(str, orphans(existing)))}) and may hold {url}",
                    "run `sensorguard stack down` first",
                )
            if existing and _alive(existing):
                if existing.get("url") != url:
                    raise StackError(
                        f"{name} already runs at {existing.get('url')} (pid {existing['pid']})",
                        "run `sensorguard stack down` first to move it",
                    )
                step(f"{name} already running on {url}")
                record = existing
            else:
                port = int(url.rsplit(":", 1)[1])
                if not port_free(cfg.host, port):
                    # else another program's health endpoint could pass for ours
                    raise StackError(
                        f"port {port} on {cfg.host} is in use by another program",
                        f"stop it, or choose another --{name}-port",
                    )
                step(f"{name} on {url}")
                record = start_service(sdir, name, cmd, env, url)
                started.append(name)
            wait_healthy(record, url + health, cfg.start_timeout, _log_file(sdir, name), name)
    except BaseException:
        for name in reversed(started):  # leave services started earlier alone
            stop_service(sdir, name)
        raise
    return status(cfg.home)


def status(home: Path) -> list[ServiceInfo]:
    sdir = stack_dir(home)
    infos = []
    for name in SERVICES:
        record = _read_pid(sdir, name)
        log = str(_log_file(sdir, name))
        if record is None:
            infos.append(ServiceInfo(name, None, "", log, detail="not started"))
            continue
        running = _alive(record)
        url = str(record.get("url", ""))
        info = ServiceInfo(name, int(record["pid"]), url, log, running=running)
        left = [] if running else orphans(record)
        if left:
            info.running = True
            info.detail = (
                f"its process {record['pid']} exited but its group still runs "
                f"(pid {', '.join(map(str, left))}): `sensorguard stack down` stops it"
            )
        elif not running:
            info.detail = "exited (see log)"
        elif name == "mlflow":
            info.healthy = http_ok(url + "/health")
            info.detail = "healthy" if info.healthy else "not answering /health"
        else:
            info.healthy = http_ok(url + "/healthz")
            ready = info.healthy and http_ok(url + "/readyz")
            info.detail = (
                "ready"
                if ready
                else "alive, not ready (no production model yet?)"
                if info.healthy
                else "not answering /healthz"
            )
        infos.append(info)
    return infos


def down(home: Path, timeout: float = 15.0) -> dict[str, str]:
    sdir = stack_dir(home)
    return {name: stop_service(sdir, name, timeout) for name in reversed(SERVICES)}
