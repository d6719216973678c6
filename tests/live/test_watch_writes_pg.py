"""The watch loop's PostgreSQL writes that the latency work changed: predictions of a
small step go in one INSERT, of a large one through COPY, with the same rows either
way; steps without an alarm transition commit without waiting for the WAL flush, steps
with one commit synchronously. On a throw-away PostgreSQL database (skipped, or failed
under SENSORGUARD_REQUIRE_SERVICES=1, when it is down)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from support.pg import pg_available, temp_database
from support.services import require_service

from sensorguard.live import watch_store
from sensorguard.store import ensure_schema

pytestmark = pytest.mark.postgres

SENSORS = ["flow", "pressure", "temp"]


@pytest.fixture
def pg_url(sg_home: Path) -> Iterator[str]:
    require_service(pg_available(), "PostgreSQL is not reachable at 127.0.0.1:5432")
    with temp_database("watchwrites") as (_, url):
        yield url


def _result(n: int, seed: int) -> Any:
    rng = np.random.default_rng(seed)
    score = rng.normal(1.0, 0.5, n)
    score[3] = np.inf  # capped like the COPY path
    return SimpleNamespace(
        score=score,
        top=rng.integers(0, len(SENSORS), (n, 2)),
        state=rng.integers(0, 4, n),
    )


def _write(engine: sa.Engine, asset: str, n: int, *, every: int = 1, offset: int = 0) -> None:
    times = np.datetime64("2026-01-01T00:00:00", "us") + np.arange(n).astype("timedelta64[s]")
    res = _result(n, seed=n)
    flags = np.zeros(n, dtype=bool)
    flags[5:9] = True
    with engine.begin() as conn:
        watch_store.write_predictions(
            conn,
            asset,
            times,
            res,
            flags,
            offset,
            every=every,
            model_name="pump",
            model_version="3",
            sensors=SENSORS,
        )


def _rows(engine: sa.Engine, asset: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                sa.text(
                    "SELECT time, model_name, model_version, score, is_anomaly, state, "
                    "top_sensors FROM predictions WHERE asset_id = :a ORDER BY time"
                ),
                {"a": asset},
            )
        ]


@pytest.mark.parametrize("every", [1, 4])
def test_insert_and_copy_paths_store_the_same_rows(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, every: int
) -> None:
    engine = ensure_schema(pg_url)
    n = 40
    monkeypatch.setattr(watch_store, "_INSERT_ROWS", 1000)  # one INSERT
    _write(engine, "via-insert", n, every=every, offset=1)
    monkeypatch.setattr(watch_store, "_INSERT_ROWS", 0)  # overlap probe + COPY
    _write(engine, "via-copy", n, every=every, offset=1)
    inserted, copied = _rows(engine, "via-insert"), _rows(engine, "via-copy")
    assert inserted == copied
    kept = [i for i in range(n) if (i + 1) % every == 0 or 5 <= i < 9]
    assert len(inserted) == len(kept)
    assert 3 in kept and inserted[kept.index(3)][3] == 1e308  # inf capped
    assert [r[4] for r in inserted] == [5 <= i < 9 for i in kept]
    # a step written again (a span scored before) adds nothing, on both paths
    for limit in (1000, 0):
        monkeypatch.setattr(watch_store, "_INSERT_ROWS", limit)
        _write(engine, "via-insert", n, every=every, offset=1)
    assert _rows(engine, "via-insert") == inserted


def test_relax_commit_is_local_to_its_transaction(pg_url: str) -> None:
    engine = ensure_schema(pg_url)
    with engine.begin() as conn:
        watch_store.relax_commit(conn)
        assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "off"
    with engine.connect() as conn:  # the pooled connection is back to the default
        assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"


def test_only_steps_without_transitions_relax_their_commit(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pandas as pd

    from sensorguard.data.simulator import simulate_pump
    from sensorguard.detectors import make_detector
    from sensorguard.live import watch as watch_mod
    from sensorguard.live.watch import WatchConfig, Watcher
    from sensorguard.pipelines.drift import training_profile
    from sensorguard.registry import LoadedModel
    from sensorguard.store import insert_readings

    train = simulate_pump(days=2, seed=1, failures=False)
    X = train.drop(columns=["timestamp", "asset_id", "machine_status", "failure_mode"])
    det = make_detector("operating-states").fit(X)
    test = simulate_pump(days=2, seed=2, n_failures=2)
    insert_readings(test.reset_index(drop=True), url=pg_url)
    relaxed: list[bool] = []

    def spy(conn: sa.Connection) -> None:
        relaxed.append(True)
        watch_store.relax_commit(conn)

    monkeypatch.setattr(watch_mod, "relax_commit", spy)
    config = WatchConfig(
        store_url=pg_url, model_ref="unused", model_poll_s=1e9, batch_rows=500, late_check_s=0.0
    )
    w = Watcher(config)
    profile: Any = training_profile(X)
    w.use(LoadedModel("pump", 1, "production", None, det, profile))
    steps = []
    while True:
        before = len(relaxed)
        stats = w.step()
        if stats.readings == 0 and not stats.transitions:
            break
        steps.append((bool(stats.transitions), len(relaxed) - before))
    # one asset: a step is one transaction, relaxed exactly when it had no transition
    assert any(t for t, _ in steps) and any(not t for t, _ in steps)
    assert all(r == (0 if t else 1) for t, r in steps), steps
    last = w.assets["pump-01"].ck.last_time
    assert last is not None and pd.Timestamp(last) == pd.Timestamp(test.timestamp.max())


def test_copy_of_several_assets_with_texts_of_other_lengths(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The binary COPY lays out rows by the byte lengths of their texts (asset, model,
    version, top sensors): a pass mixing lengths, and non-ASCII names, stores what the
    INSERT path stores."""
    engine = ensure_schema(pg_url)
    sensors = ["p", "druck-ä", "temperature_outlet", "x"]
    assets = ["a", "pump-Ø-0001", "b" * 60]
    times = np.datetime64("2026-01-01T00:00:00", "us") + np.arange(30).astype("timedelta64[s]")

    def parts(suffix: str) -> list[watch_store.Predictions]:
        out = []
        for k, asset in enumerate(assets):
            rng = np.random.default_rng(k)
            res = SimpleNamespace(
                score=rng.normal(1.0, 0.5, 30),
                top=rng.integers(0, len(sensors), (30, 3)),
                state=rng.integers(0, 4, 30),
            )
            flags = rng.random(30) < 0.3
            version = "12" if k else "7"
            out.append(
                watch_store.Predictions(
                    asset + suffix, times, res, flags, 0, "type-é", version, sensors
                )
            )
        return out

    monkeypatch.setattr(watch_store, "_INSERT_ROWS", 10_000)
    with engine.begin() as conn:
        watch_store.write_predictions_many(conn, parts("-i"), every=1)
    monkeypatch.setattr(watch_store, "_INSERT_ROWS", 0)
    with engine.begin() as conn:
        watch_store.write_predictions_many(conn, parts("-c"), every=1)
    for asset in assets:
        inserted, copied = _rows(engine, asset + "-i"), _rows(engine, asset + "-c")
        assert len(inserted) == 30 and inserted == copied
