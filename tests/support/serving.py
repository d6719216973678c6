"""Test support for the predictor tests: tiny models in a real registry, real processes.

Models are fitted on a few hundred simulated readings of six sensors and registered
through ``sensorguard.registry`` (the same calls training uses), so every test serves a
genuine models-from-code pyfunc out of a genuine MLflow store.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

SENSORS = [f"s{i}" for i in range(6)]
_SCALE = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
_CENTER = np.array([10.0, 20.0, 30.0, 40.0, 50.0, 60.0])
SG = str(Path(sys.executable).with_name("sensorguard"))
MLFLOW = str(Path(sys.executable).with_name("mlflow"))


def frame(n: int = 300, seed: int = 0, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(n, len(SENSORS))) * _SCALE + _CENTER + shift
    return pd.DataFrame(values, columns=SENSORS)


def fit(seed: int = 0, shift: float = 0.0) -> Any:
    from sensorguard.detectors import make_detector

    return make_detector("operating-states", min_states=2, max_states=2).fit(
        frame(300, seed, shift)
    )


def register(settings: Any, detector: Any, alias: str | None = "production") -> int:
    """Log ``detector`` as a pyfunc, register a version, optionally point ``alias`` at it."""
    import mlflow

    from sensorguard.registry import (
        configure_mlflow,
        ensure_experiment,
        get_client,
        log_detector_model,
        register_model_version,
    )

    configure_mlflow(settings)
    exp = ensure_experiment(settings.experiment, settings)
    example = frame(5, seed=99)
    with mlflow.start_run(experiment_id=exp) as run:
        info = log_detector_model(detector, example)
    mv = register_model_version(
        info.model_uri, run.info.run_id, settings.model_name, tags={}, settings=settings
    )
    if alias:
        get_client(settings).set_registered_model_alias(settings.model_name, alias, mv.version)
    return int(mv.version)


def set_alias(settings: Any, version: int, alias: str = "production") -> None:
    from sensorguard.registry import get_client

    get_client(settings).set_registered_model_alias(settings.model_name, alias, str(version))


def reading(i: int = 0, **override: Any) -> dict[str, Any]:
    base = {s: float(_CENTER[j] + 0.1 * (i % 7)) for j, s in enumerate(SENSORS)}
    base.update(override)
    return base


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float, ok: tuple[int, ...] = (200,)) -> httpx.Response:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            r = httpx.get(url, timeout=2.0)
            if r.status_code in ok:
                return r
            last = r.status_code
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.2)
    raise TimeoutError(f"{url} not answering {ok} after {timeout} s (last: {last})")


class Proc:
    """A subprocess with its output in a log file, stopped by its own pid."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str]) -> None:
        self.log = log
        self._fh = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.p = subprocess.Popen(
            args, stdout=self._fh, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.p.poll() is None:
            # the whole session: `mlflow server` runs its app in child processes
            os.killpg(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait(timeout=10)
        self._fh.close()


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENSORGUARD_", "MLFLOW_"))}
    env.update(extra)
    return env


@contextmanager
def predictor(home: Path, log: Path, *args: str, **env: str) -> Iterator[tuple[Proc, str]]:
    """``sensorguard serve --port 0`` in a subprocess; yields (process, base URL)."""
    proc = Proc(
        [SG, "serve", "--port", "0", *args],
        log,
        base_env(SENSORGUARD_HOME=str(home), **env),
    )
    try:
        deadline = time.monotonic() + 60
        url = None
        while time.monotonic() < deadline and url is None:
            m = re.search(r"on (http://127\.0\.0\.1:\d+)", proc.output())
            if m:
                url = m.group(1)
                break
            if proc.p.poll() is not None:
                raise RuntimeError(f"sensorguard serve exited:\n{proc.output()}")
            time.sleep(0.1)
        if url is None:
            raise TimeoutError(f"sensorguard serve printed no URL:\n{proc.output()}")
        # the URL is printed just before uvicorn listens: wait for the socket too
        wait_http(f"{url}/healthz", timeout=60)
        yield proc, url
    except (TimeoutError, AssertionError) as exc:
        raise type(exc)(
            f"{exc}\n--- sensorguard serve output ---\n{proc.output()[-4000:]}"
        ) from exc
    finally:
        proc.stop()


@contextmanager
def mlflow_server(folder: Path, port: int | None = None) -> Iterator[tuple[Proc, str]]:
    """A real ``mlflow server`` on loopback: SQLite backend, proxied artifacts."""
    port = port or free_port()
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "mlflow.db").exists():
        from support.lifecycle import seed_store

        seed_store(folder)  # a migrated template: skips minutes of migrations on a busy box
    proc = Proc(
        [
            MLFLOW,
            "server",
            "--backend-store-uri",
            f"sqlite:///{folder / 'mlflow.db'}",
            "--serve-artifacts",
            "--artifacts-destination",
            str(folder / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        folder / f"mlflow-{time.time_ns()}.log",
        base_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"),  # no job runner needed
    )
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_http(f"{url}/health", timeout=180)
        except TimeoutError:
            raise RuntimeError(f"mlflow server did not start:\n{proc.output()}") from None
        yield proc, url
    finally:
        proc.stop()
