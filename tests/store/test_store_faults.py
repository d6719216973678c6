"""Fault injection with real processes: PostgreSQL restarted under a bulk ingest and
under ``POST /v1/readings`` at the same time.

One restart of the shared server per run (``pg_ctlcluster … restart``, about a second),
so both writers see the same fault and other tests see it once. What must hold:

* every acknowledged reading is stored, and no batch is stored in part (each HTTP batch
  is one transaction: 0 or all of its readings), no (asset, time) twice;
* the interrupted ingest fails with ONE line that says how far it got and that re-running
  is safe; the re-run stores the rest and counts the stored part as duplicates.

Marked ``postgres`` and ``slow``: it restarts the PostgreSQL server other tests use
(``-m "not slow"`` leaves it out). Needs root or the postgres user for pg_ctlcluster.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from support.pg import pg_available, temp_database
from support.services import require_service

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.integration]

SG = str(Path(sys.executable).with_name("sensorguard"))
ROWS = 1_000_000
BATCH = 500


def _cluster() -> tuple[str, str] | None:
    conf = Path("/etc/postgresql")
    if shutil.which("pg_ctlcluster") is None or not conf.is_dir():
        return None
    versions = sorted(p.name for p in conf.iterdir() if (p / "main").is_dir())
    return (versions[-1], "main") if versions else None


def _restart(cluster: tuple[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", *cluster, "restart", "-m", "fast"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return time.perf_counter() - started


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _count(url: str, sql: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(sql)).scalar_one())
    finally:
        engine.dispose()


def _write_file(path: Path) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(ROWS, 9)).round(3), columns=[f"s{i}" for i in range(9)])
    frame.insert(0, "timestamp", pd.date_range("2030-01-01", periods=ROWS, freq="1s"))
    frame.insert(1, "asset_id", "pump-bulk")
    frame.to_csv(path, index=False)


class _Writer(threading.Thread):
    """POSTs batches of unique times until stopped; logs every answer."""

    def __init__(self, base: str) -> None:
        super().__init__(daemon=True)
        self.base, self.stop, self.log = base, threading.Event(), []  # type: ignore[var-annotated]

    def batch(self, first: int) -> bytes:
        t0 = pd.Timestamp("2040-01-01")
        rows = [
            {"timestamp": (t0 + pd.Timedelta(seconds=first + k)).isoformat() + "Z", "a": k}
            for k in range(BATCH)
        ]
        return json.dumps({"asset_id": "pump-http", "readings": rows}).encode()

    def run(self) -> None:
        first = 0
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                try:
                    r = client.post(
                        self.base + "/v1/readings",
                        content=self.batch(first),
                        headers={"content-type": "application/json"},
                    )
                    self.log.append((first, r.status_code, r.json()))
                except httpx.HTTPError as exc:
                    self.log.append((first, None, {"exc": repr(exc)}))
                first += BATCH
                time.sleep(0.01)


def _ingest(path: Path, url: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SG, "ingest", str(path), "--url", url, "--chunk-rows", "20000", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_postgres_restart_during_ingest_and_http_writes(tmp_path: Path) -> None:
    require_service(pg_available(), "PostgreSQL is not reachable at 127.0.0.1:5432")
    cluster = _cluster()
    require_service(cluster is not None, "pg_ctlcluster is not installed (cannot restart)")
    assert cluster is not None
    data = tmp_path / "big.csv"
    _write_file(data)
    with temp_database("faults") as (_, url):
        env = {**os.environ, "SENSORGUARD_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
        env["SENSORGUARD_STORE_URL"] = url
        subprocess.run(
            [SG, "db", "upgrade", "--url", url],
            env=env,
            check=True,
            capture_output=True,
        )
        port = _free_port()
        server = subprocess.Popen(
            [SG, "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        writer = _Writer(f"http://127.0.0.1:{port}")
        try:
            deadline = time.time() + 60
            while time.time() < deadline:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.3)
            else:
                pytest.fail(f"the predictor did not start: {server.stderr}")
            writer.start()
            ingest = subprocess.Popen(
                [SG, "ingest", str(data), "--url", url, "--chunk-rows", "20000", "--json"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            sql_bulk = "SELECT count(*) FROM readings WHERE asset_id = 'pump-bulk'"
            stored_before = 0
            deadline = time.time() + 300
            while time.time() < deadline and ingest.poll() is None:
                stored_before = _count(url, sql_bulk)
                if stored_before >= 100_000:
                    break
                time.sleep(0.2)
            assert ingest.poll() is None, "the ingest finished before the restart; use more rows"
            window = _restart(cluster)
            out, err = ingest.communicate(timeout=600)
            time.sleep(1.0)  # HTTP batches after the restart
            writer.stop.set()
            writer.join(timeout=60)
        finally:
            writer.stop.set()
            server.terminate()
            server.wait(timeout=30)

        # the ingest: one line, how far it got, re-running is safe
        assert ingest.returncode == 2, (out, err)
        lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
        assert "Traceback" not in err and len(lines) == 1, err
        assert "readings were stored before that" in lines[0]
        assert "re-running the same command is safe" in lines[0]
        partial = _count(url, sql_bulk)
        assert partial % 20_000 == 0 and partial >= stored_before  # whole chunks only
        rerun = _ingest(data, url, env)
        assert rerun.returncode == 0, rerun.stderr
        result = json.loads(rerun.stdout.strip().splitlines()[-1])
        assert (result["inserted"], result["duplicates"]) == (ROWS - partial, partial)
        assert _count(url, sql_bulk) == ROWS

        # HTTP: acknowledged = stored, whole batches only, nothing twice
        acked = [(first, res["inserted"]) for first, status, res in writer.log if status == 200]
        failed = [first for first, status, _ in writer.log if status != 200]
        assert acked and failed, writer.log[-5:]  # the restart was seen, and survived
        assert all(n == BATCH for _, n in acked)
        unexpected = [(s, res) for _, s, res in writer.log if s not in (200, 503, None)]
        assert not unexpected, unexpected[:3]  # never a 500
        engine = sa.create_engine(url)
        try:
            with engine.connect() as conn:
                times = pd.DatetimeIndex(
                    conn.execute(
                        sa.text("SELECT time FROM readings WHERE asset_id = 'pump-http'")
                    ).scalars()
                )
        finally:
            engine.dispose()
        assert times.is_unique
        offsets = ((times - pd.Timestamp("2040-01-01")).total_seconds()).astype(int)
        per_batch = pd.Series(offsets // BATCH * BATCH).value_counts()
        assert set(per_batch) == {BATCH}  # no batch stored in part
        assert set(per_batch.index) == {first for first, _ in acked} | (
            set(per_batch.index) & set(failed)
        )
        assert {first for first, _ in acked} <= set(per_batch.index)
        figures = {
            "restart_seconds": round(window, 2),
            "http_batches": len(writer.log),
            "http_acknowledged_readings": BATCH * len(acked),
            "http_failed_batches": len(failed),
            "http_failed_answers": sorted(
                {str(s) for _, s, _ in writer.log if s != 200}
                | {str(r.get("error", {}).get("code")) for _, s, r in writer.log if s == 503}
            ),
            "http_stored_readings": len(times),
            "ingest_stored_before_failure": partial,
            "ingest_rerun_inserted": result["inserted"],
            "ingest_rerun_duplicates": result["duplicates"],
            "ingest_error": lines[0],
        }
        print(json.dumps(figures, indent=1))
        Path(os.environ.get("SENSORGUARD_FAULT_FIGURES", tmp_path / "f.json")).write_text(
            json.dumps(figures, indent=1)
        )
