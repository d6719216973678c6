"""A watch pass over several assets on PostgreSQL: one read, one transaction.

The pass reads the new readings of all its assets with one ``COPY`` (a ``LATERAL`` scan
per asset), and writes their checkpoints, predictions and alarms with one statement
each; these paths exist only on PostgreSQL (SQLite takes the per-asset ones), so they
are tested here on a throw-away database (skipped, or failed under
SENSORGUARD_REQUIRE_SERVICES=1, when it is down)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
from support.pg import pg_available, temp_database
from support.services import require_service

pytestmark = pytest.mark.postgres

ASSETS = ["pump-01", "pump-02", "pump-03"]


@pytest.fixture(scope="module")
def trained() -> dict[str, Any]:
    from sensorguard.data.simulator import simulate_pump
    from sensorguard.detectors import make_detector
    from sensorguard.pipelines.drift import training_profile

    train = simulate_pump(days=2, seed=1, failures=False)
    X = train.drop(columns=["timestamp", "asset_id", "machine_status", "failure_mode"])
    det = make_detector("operating-states").fit(X)
    tests = {
        a: simulate_pump(days=1, seed=10 + i, n_failures=2, asset_id=a)
        for i, a in enumerate(ASSETS)
    }
    return {"detector": det, "profile": training_profile(X), "tests": tests}


@pytest.fixture
def pg_url(sg_home: Path) -> Iterator[str]:
    require_service(pg_available(), "PostgreSQL is not reachable at 127.0.0.1:5432")
    with temp_database("watchpass") as (_, url):
        yield url


def _watcher(url: str, trained: dict[str, Any], **cfg: Any) -> Any:
    from sensorguard.live.watch import WatchConfig, Watcher
    from sensorguard.registry import LoadedModel

    cfg.setdefault("late_check_s", 0.0)
    w = Watcher(WatchConfig(store_url=url, model_ref="unused", model_poll_s=1e9, **cfg))
    w.use(LoadedModel("pump", 1, "production", None, trained["detector"], trained["profile"]))
    return w


def _insert(url: str, frame: pd.DataFrame) -> None:
    from sensorguard.store import insert_readings

    insert_readings(frame.reset_index(drop=True), url=url)


def _batch_events(trained: dict[str, Any], frame: pd.DataFrame) -> list[tuple[Any, Any]]:
    from sensorguard.data import Readings
    from sensorguard.scoring.readings import alarm_events, detect_readings

    r = Readings.from_frame(
        frame, time_column="timestamp", label_column="machine_status", asset_column="asset_id"
    )
    res = detect_readings(trained["detector"], r)
    return [(pd.Timestamp(e["start"]), pd.Timestamp(e["end"])) for e in alarm_events(res, r)]


def _live_events(url: str, asset: str) -> list[tuple[Any, Any]]:
    from sensorguard.store.alarms import list_alarms

    rows, _ = list_alarms(url=url, asset=asset, kind="failure", limit=1000)
    return sorted(
        (pd.Timestamp(a["start"]), pd.Timestamp(a["end"] or a["last_time"])) for a in rows
    )


def _counts(url: str, table: str) -> dict[str, int]:
    with sa.create_engine(url).connect() as conn:
        rows = conn.execute(sa.text(f"SELECT asset_id, count(*) FROM {table} GROUP BY asset_id"))
        return {r[0]: int(r[1]) for r in rows}


def _drain(w: Any) -> None:
    while w.step().readings:
        pass


@pytest.mark.parametrize(("pass_assets", "pass_rows"), [(100, 1_000_000), (2, 300), (100, 7)])
def test_a_pass_over_several_assets_equals_batch(
    trained: dict[str, Any], pg_url: str, pass_assets: int, pass_rows: int
) -> None:
    """Whatever the chunking (assets per transaction, readings per pass), each asset's
    failure alarms equal one batch pass, every reading has its prediction, and the
    readings that arrive after a pass continue from the checkpoints."""
    tests = trained["tests"]
    half = {a: len(f) // 2 for a, f in tests.items()}
    for a, f in tests.items():
        _insert(pg_url, f.iloc[: half[a]])
    w = _watcher(pg_url, trained, pass_assets=pass_assets, pass_rows=pass_rows)
    _drain(w)
    for a, f in tests.items():
        _insert(pg_url, f.iloc[half[a] :])
    _drain(w)
    assert _counts(pg_url, "predictions") == {a: len(f) for a, f in tests.items()}
    for a, f in tests.items():
        assert w.assets[a].ck.n_scored == len(f)
        events = _batch_events(trained, f)
        assert events, "the simulated failures must raise alarms"
        assert _live_events(pg_url, a) == events, a


def test_a_fenced_asset_is_not_written_and_the_rest_of_its_pass_is(
    trained: dict[str, Any], pg_url: str
) -> None:
    """Two processes that both think they own pump-02: in the pass of the one whose
    checkpoint is stale, pump-02 is fenced (nothing of it written, its state dropped)
    and the other assets of the same transaction are written as usual."""
    from sensorguard.live.watch import StepStats

    tests = trained["tests"]
    for f in tests.values():
        _insert(pg_url, f)
    a = _watcher(pg_url, trained, batch_rows=500)
    b = _watcher(pg_url, trained, batch_rows=500)
    sa_, sb = StepStats(), StepStats()
    assert a._step_assets(ASSETS, sa_) == set()  # 500 readings of each
    assert b._step_assets(["pump-02"], sb) == set()  # continues after a's checkpoint
    assert a._step_assets(ASSETS, sa_) == {"pump-02"}
    assert "pump-02" not in a.assets
    assert sa_.readings == 500 * 3 + 500 * 2 and sa_.fenced == 1
    assert _counts(pg_url, "predictions") == {"pump-01": 1000, "pump-02": 1000, "pump-03": 1000}
    while b._step_assets(["pump-02"], sb) or sb.backlog:
        sb.backlog = False
    while a._step_assets(["pump-01", "pump-03"], sa_) or sa_.backlog:
        sa_.backlog = False
    assert _counts(pg_url, "predictions") == {k: len(f) for k, f in tests.items()}
    for k, f in tests.items():
        assert _live_events(pg_url, k) == _batch_events(trained, f), k


def test_late_readings_are_counted_per_asset_in_one_statement(
    trained: dict[str, Any], pg_url: str
) -> None:
    """The late-readings check on PostgreSQL (one statement for all due assets): readings
    stored behind an asset's scored stream, before its first scored reading too, are
    counted for that asset alone; new readings are scored, not counted."""
    tests = trained["tests"]
    names = sorted(tests)
    held = {names[0]: [100, 150]}  # left out of the first insert, sent late
    for a in names:
        f = tests[a].iloc[20:300]
        _insert(pg_url, f.drop(index=tests[a].index[held.get(a, [])]))
    w = _watcher(pg_url, trained)
    _drain(w)
    w.step()
    late = {names[0]: [5, 100, 150], names[1]: [2]}  # 5, 2: before the first scored one
    for a, rows in late.items():
        _insert(pg_url, tests[a].iloc[rows])
    for a in names:
        _insert(pg_url, tests[a].iloc[300:320])  # new: scored, not late
    _drain(w)
    w.step()
    for a in names:
        ck = w.assets[a].ck
        assert (ck.n_late, ck.n_scored) == (len(late.get(a, [])), 300 - len(held.get(a, []))), a
