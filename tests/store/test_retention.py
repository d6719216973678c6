"""Retention of the delivery log and the dead-letter table (store.retention), on a
throw-away PostgreSQL database and on the embedded SQLite store: what is deleted, what
must never be (pending deliveries, the notifications of an alarm still open), bounded
batches, and the periodic runs inside the notifier and the MQTT ingester."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from support.mqtt import mqtt_broker, unique_root  # noqa: F401  (mqtt_broker: fixture)
from support.pg import pg_available, temp_database
from support.services import require_service
from typer.testing import CliRunner

from sensorguard.cli import app
from sensorguard.live.ingest import MqttIngester, read_dead_letters
from sensorguard.live.notify import Notifier, Transition, asset_status, enqueue
from sensorguard.store import dispose_engines, ensure_schema
from sensorguard.store.retention import (
    PeriodicPrune,
    RetentionPolicy,
    count_prunable,
    prune,
    prune_dead_letters,
    prune_deliveries,
)
from sensorguard.store.schema import dead_letters, notification_deliveries, notifications
from sensorguard.timeutil import utc_now

HOOK = "http://127.0.0.1:9/hook"
NOW = utc_now()
OLD = NOW - timedelta(days=40)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, sg_home: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{sg_home / 'readings.db'}"
        dispose_engines()
        return
    require_service(pg_available(), "PostgreSQL is not reachable at 127.0.0.1:5432")
    with temp_database("retention") as (_, url):
        yield url


@pytest.fixture
def pg_url(sg_home: Path) -> Iterator[str]:
    require_service(pg_available(), "PostgreSQL is not reachable at 127.0.0.1:5432")
    with temp_database("retention") as (_, url):
        yield url


def _event(
    engine: sa.Engine,
    event: int,
    transitions: list[str],
    *,
    created: object = OLD,
    asset: str = "pump-01",
    receivers: tuple[str, ...] = (HOOK, "mqtt"),
) -> list[int]:
    """Enqueue ``transitions`` of alarm ``event`` (created at ``created``); their ids."""
    ids = []
    for name in transitions:
        body = {"id": event, "asset_id": asset, "kind": "failure", "state": name}
        with engine.begin() as conn:
            nid = enqueue(
                conn,
                Transition(str(event), name, asset, "failure", body),
                list(receivers),
                now=created,  # type: ignore[arg-type]
            )
        assert nid is not None
        ids.append(nid)
    return ids


def _finish(
    engine: sa.Engine, ids: list[int], state: str = "delivered", at: object = OLD, **where: str
) -> None:
    d = notification_deliveries
    values = {"state": state, "attempts": 1, "last_attempt_at": at}
    if state == "delivered":
        values["delivered_at"] = at
    q = sa.update(d).where(d.c.notification_id.in_(ids))
    if "receiver" in where:
        q = q.where(d.c.receiver == where["receiver"])
    with engine.begin() as conn:
        conn.execute(q.values(**values))


def _left(engine: sa.Engine) -> tuple[set[int], set[int]]:
    with engine.connect() as conn:
        n = set(conn.execute(sa.select(notifications.c.id)).scalars())
        d = set(conn.execute(sa.select(notification_deliveries.c.notification_id)).scalars())
    return n, d


def test_delivery_log_rule_keeps_pending_open_and_recent(store_url: str) -> None:
    engine = ensure_schema(store_url)
    done = _event(engine, 1, ["opened", "updated:1", "closed"])  # over, sent long ago
    _finish(engine, done)
    gave_up = _event(engine, 2, ["opened", "closed"])  # given up long ago: also prunable
    _finish(engine, gave_up, state="failed")
    # closed, but the receiver still retries the closing transition: that one stays
    retried = _event(engine, 3, ["opened", "closed"])
    _finish(engine, retried[:1])
    _finish(engine, retried[1:], receiver="mqtt")
    # an alarm still open (no closed transition), sent long ago: kept for the status
    still_open = _event(engine, 4, ["opened", "updated:1"])
    _finish(engine, still_open)
    # created long ago, delivered today (the receiver was down for a month): kept
    late = _event(engine, 5, ["opened", "closed"])
    _finish(engine, late, at=NOW)
    recent = _event(engine, 6, ["opened", "closed"], created=NOW)  # new
    _finish(engine, recent, at=NOW)
    with engine.connect() as conn:
        status_before = asset_status(conn, "pump-01")

    policy = RetentionPolicy(delivery_days=30, dead_letter_days=30)
    counted = count_prunable(engine, policy)
    res = prune_deliveries(engine, 30, batch=2)
    assert res.complete
    gone = {*done, *gave_up, retried[0]}
    assert (counted.notifications, counted.deliveries) == (len(gone), 2 * len(gone))
    assert (res.notifications, res.deliveries) == (len(gone), 2 * len(gone))
    kept = {retried[1], *still_open, *late, *recent}
    assert _left(engine) == (kept, kept)
    with engine.connect() as conn:
        status_after = asset_status(conn, "pump-01")
    # the retained status (open alarms) is rebuilt the same from what is left
    assert status_after["open_alarms"] == status_before["open_alarms"]
    assert [a["id"] for a in status_after["open_alarms"]] == [4]
    assert prune_deliveries(engine, 30).notifications == 0  # nothing more: idempotent
    assert prune_deliveries(engine, 0).notifications == 0  # 0 days = keep forever

    # the retried delivery finishes; once that is older than the cutoff it goes too
    _finish(engine, [retried[1]], receiver=HOOK)
    assert prune_deliveries(engine, 30).notifications == 1
    assert _left(engine)[0] == {*still_open, *late, *recent}


def test_dead_letters_older_than_the_cutoff_are_deleted(store_url: str) -> None:
    engine = ensure_schema(store_url)
    rows = [
        {
            "received_at": at,
            "source": "mqtt",
            "topic": "sensorguard/p/readings",
            "asset_id": "p",
            "code": "invalid_json",
            "reason": "not JSON",
            "path": None,
            "payload": b"x" * 10,
        }
        for at in [OLD] * 5 + [NOW - timedelta(days=29)] * 2
    ]
    with engine.begin() as conn:
        conn.execute(sa.insert(dead_letters), rows)
    assert count_prunable(engine, RetentionPolicy(dead_letter_days=30)).dead_letters == 5
    assert prune_dead_letters(engine, 0).dead_letters == 0
    res = prune_dead_letters(engine, 30, batch=2)  # 3 batches of at most 2
    assert (res.dead_letters, res.complete) == (5, True)
    assert len(read_dead_letters(engine)) == 2
    assert prune_dead_letters(engine, 28).dead_letters == 2


@pytest.mark.postgres
def test_a_time_budget_bounds_one_run_and_the_next_continues(pg_url: str) -> None:
    engine = ensure_schema(pg_url)
    ids = _event(engine, 1, [f"updated:{k}" for k in range(1, 60)] + ["closed"])
    _finish(engine, ids)
    first = prune_deliveries(engine, 30, batch=10, budget_s=0.0)
    assert (first.notifications, first.complete) == (0, False)
    periodic = PeriodicPrune("deliveries", 30, interval_s=3600, batch=10, budget_s=0.0)
    assert periodic.maybe_run(engine) is not None  # due at once, cut short
    assert periodic.maybe_run(engine) is not None  # cut short: due again at once
    periodic.budget_s = 60.0
    done = periodic.maybe_run(engine)
    assert done is not None and done.complete and done.notifications == 60
    assert periodic.maybe_run(engine) is None  # complete: next run in an hour
    assert _left(engine) == (set(), set())


@pytest.mark.postgres
def test_two_pruners_at_once_delete_each_row_once(pg_url: str) -> None:
    engine = ensure_schema(pg_url)
    for e in range(30):
        _finish(engine, _event(engine, e, ["opened", "closed"], receivers=(HOOK,)))
    results: list[int] = []

    def run() -> None:
        total = 0
        while True:  # a loser of the advisory lock skips; go on until nothing is left
            r = prune_deliveries(engine, 30, batch=5)
            total += r.notifications
            if not _left(engine)[0]:
                break
        results.append(total)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sum(results) == 60 and _left(engine) == (set(), set())


@pytest.mark.postgres
def test_the_notifier_prunes_the_delivery_log_while_it_runs(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sensorguard.config import get_settings

    monkeypatch.setenv("SENSORGUARD_DELIVERY_RETENTION_DAYS", "30")
    monkeypatch.setenv("SENSORGUARD_RETENTION_INTERVAL", "0.2")
    get_settings.cache_clear()
    engine = ensure_schema(pg_url)
    old = _event(engine, 1, ["opened", "closed"], receivers=(HOOK,))
    _finish(engine, old)
    # a pending delivery to a receiver that refuses connections: retried, never pruned
    pending = _event(engine, 2, ["opened", "closed"], receivers=(HOOK,))
    notifier = Notifier(pg_url, backoff_base=0.05, backoff_max=0.1, timeout=1.0)
    assert notifier.retention.interval_s == 0.2
    notifier.start()
    try:
        deadline = time.monotonic() + 20
        while _left(engine)[0] != set(pending):
            assert time.monotonic() < deadline, _left(engine)
            time.sleep(0.1)
        time.sleep(0.6)  # several more retention runs and retries
        assert _left(engine) == (set(pending), set(pending))
    finally:
        notifier.stop()
    with engine.connect() as conn:
        attempts = conn.execute(sa.select(sa.func.max(notification_deliveries.c.attempts)))
        assert attempts.scalar_one() >= 1  # it was being retried all along
    assert notifier.retention.totals.notifications == 2


@pytest.mark.postgres
def test_the_ingester_prunes_old_dead_letters(
    pg_url: str,
    mqtt_broker: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sensorguard.config import get_settings
    from sensorguard.live.ingest import ingest_payload

    monkeypatch.setenv("SENSORGUARD_DEAD_LETTER_RETENTION_DAYS", "30")
    get_settings.cache_clear()
    root = unique_root()
    engine = ensure_schema(pg_url)
    ingest_payload(engine, b"{not json", f"{root}/p1/readings")
    ingest_payload(engine, b"[1, 2]", f"{root}/p1/readings")
    with engine.begin() as conn:
        conn.execute(sa.update(dead_letters).where(dead_letters.c.id == 1).values(received_at=OLD))
    ing = MqttIngester(pg_url, mqtt_broker, client_id=f"ret-{root}", topic_root=root)
    stop = threading.Event()
    t = threading.Thread(target=ing.run, args=(stop,))
    t.start()
    try:
        deadline = time.monotonic() + 20
        while len(read_dead_letters(engine)) != 1:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        stop.set()
        t.join(20)
    assert [r["id"] for r in read_dead_letters(engine)] == [2]
    assert ing.retention.totals.dead_letters == 1


def test_store_prune_command(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from sensorguard.config import get_settings

    monkeypatch.setenv("SENSORGUARD_STORE_URL", store_url)
    get_settings.cache_clear()
    engine = ensure_schema(store_url)
    _finish(engine, _event(engine, 1, ["opened", "closed"]))
    runner = CliRunner()
    res = runner.invoke(app, ["store", "prune", "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "would delete 2 notifications (4 delivery rows) and 0 dead letters" in res.output
    assert len(_left(engine)[0]) == 2
    res = runner.invoke(app, ["store", "prune", "--delivery-days", "50"])
    assert res.exit_code == 0 and "deleted 0 notifications" in res.output, res.output
    res = runner.invoke(app, ["store", "prune"])
    assert res.exit_code == 0 and "deleted 2 notifications" in res.output, res.output
    assert _left(engine) == (set(), set())
    assert prune(engine, RetentionPolicy()).notifications == 0
