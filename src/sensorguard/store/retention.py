"""Retention of the live loop's logs: the notification outbox with its delivery log, and
the dead-letter table. Without it both only grow (every alarm transition, every invalid
payload with its raw bytes, forever).

Rules of this room:

* **Delivery log** (``notifications`` + ``notification_deliveries``): a notification and
  its delivery rows are deleted when it was created before the cutoff, *every* one of
  its deliveries is finished (``delivered`` or ``failed``, never ``pending``: a
  transition still being retried is never lost) and finished before the cutoff (a
  receiver back after a month keeps the log of what it got today), and its alarm is
  over (the alarm's ``closed`` notification exists). The notifications of an alarm
  still open are kept whatever their age: the retained MQTT status of an asset is
  rebuilt from them (:func:`sensorguard.live.notify.asset_status`). Notifications are
  deleted oldest first, so a partly pruned alarm still ends with its ``closed`` row
  and the status stays right. A transition whose notification was pruned is sent
  again if the watch service ever produces it again (only when history older than the
  retention is scored afresh, e.g. after an asset's checkpoint was deleted).
* **Dead letters**: deleted when received before the cutoff.
* **Bounded**: deletes go in batches of ``batch`` rows, one short transaction each
  (ingestion and the notifier's drains go on between them), up to an optional time
  budget; a run stopped by its budget says so (``complete=False``) and the next run
  continues. On PostgreSQL each batch takes a transaction-level advisory lock per table,
  so several watch processes do not prune the same rows at once (the loser skips).
* **Who runs it**: the notifier prunes the delivery log and the MQTT ingester the dead
  letters, every ``SENSORGUARD_RETENTION_INTERVAL`` seconds (:class:`PeriodicPrune`);
  ``sensorguard store prune`` runs both once. ``0`` days = keep forever.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from sensorguard.store.schema import dead_letters, notifications
from sensorguard.store.schema import notification_deliveries as deliveries
from sensorguard.timeutil import utc_now

log = logging.getLogger(__name__)

BATCH = 1000
"""Rows per delete transaction: on PostgreSQL a batch of 1,000 notifications with two
deliveries each takes a few milliseconds, short enough to stay out of the way of the
ingester and the notifier."""


@dataclass(frozen=True)
class RetentionPolicy:
    """Days to keep each log (0 = forever) and rows per delete transaction."""

    delivery_days: float = 30.0
    dead_letter_days: float = 30.0
    batch: int = BATCH

    @classmethod
    def from_settings(cls, settings: Any = None, **overrides: Any) -> RetentionPolicy:
        if settings is None:
            from sensorguard.config import get_settings

            settings = get_settings()
        kw: dict[str, Any] = {
            "delivery_days": settings.delivery_retention_days,
            "dead_letter_days": settings.dead_letter_retention_days,
        }
        kw.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**kw)


@dataclass
class PruneResult:
    notifications: int = 0
    deliveries: int = 0
    dead_letters: int = 0
    complete: bool = True  # False: stopped by the time budget, more to delete
    seconds: float = 0.0

    def __add__(self, other: PruneResult) -> PruneResult:
        return PruneResult(
            self.notifications + other.notifications,
            self.deliveries + other.deliveries,
            self.dead_letters + other.dead_letters,
            self.complete and other.complete,
            self.seconds + other.seconds,
        )


def cutoff(days: float, now: datetime | None = None) -> datetime:
    return (now or utc_now()) - timedelta(days=days)


def _prunable_notifications(before: datetime) -> sa.Select[Any]:
    """Ids of the notifications the delivery-log rule lets go (oldest first)."""
    n = notifications.alias("n")
    closed = notifications.alias("c")
    d = deliveries
    finished = sa.func.coalesce(d.c.delivered_at, d.c.last_attempt_at, d.c.next_attempt_at)
    return (
        sa.select(n.c.id)
        .where(
            n.c.created_at < before,
            sa.exists().where(closed.c.event_id == n.c.event_id, closed.c.transition == "closed"),
            ~sa.exists().where(
                d.c.notification_id == n.c.id,
                sa.or_(d.c.state == "pending", finished >= before),
            ),
        )
        .order_by(n.c.id)
    )


def _prunable_dead_letters(before: datetime) -> sa.Select[Any]:
    return (
        sa.select(dead_letters.c.id)
        .where(dead_letters.c.received_at < before)
        .order_by(dead_letters.c.id)
    )


def _lock(conn: sa.Connection, name: str) -> bool:
    """This transaction's right to prune ``name`` (PostgreSQL; always True elsewhere)."""
    if conn.dialect.name != "postgresql":
        return True
    key = int.from_bytes(
        hashlib.sha256(f"sensorguard-retention:{name}".encode()).digest()[:8], "big", signed=True
    )
    return bool(conn.execute(sa.select(sa.func.pg_try_advisory_xact_lock(key))).scalar())


def _batches(
    engine: sa.Engine,
    name: str,
    select: sa.Select[Any],
    delete: Any,
    batch: int,
    deadline: float | None,
) -> tuple[int, int, bool]:
    """Delete ``select``'s rows ``batch`` at a time with ``delete(conn, ids)`` (which
    returns the extra rows it deleted); returns (rows, extra rows, complete)."""
    rows = extra = 0
    while True:
        if deadline is not None and time.monotonic() >= deadline:
            return rows, extra, False
        with engine.begin() as conn:
            if not _lock(conn, name):
                return rows, extra, True  # another process prunes this table now
            ids = list(conn.execute(select.limit(batch)).scalars())
            if ids:
                extra += delete(conn, ids)
        rows += len(ids)
        if len(ids) < batch:
            return rows, extra, True


def prune_deliveries(
    engine: sa.Engine,
    days: float,
    *,
    now: datetime | None = None,
    batch: int = BATCH,
    budget_s: float | None = None,
) -> PruneResult:
    """Apply the delivery-log rule with a cutoff of ``days`` days (0 = nothing)."""
    started = time.monotonic()
    if days <= 0:
        return PruneResult()

    def delete(conn: sa.Connection, ids: list[int]) -> int:
        gone = conn.execute(sa.delete(deliveries).where(deliveries.c.notification_id.in_(ids)))
        conn.execute(sa.delete(notifications).where(notifications.c.id.in_(ids)))
        return int(gone.rowcount or 0)

    deadline = None if budget_s is None else started + budget_s
    n, d, complete = _batches(
        engine, "deliveries", _prunable_notifications(cutoff(days, now)), delete, batch, deadline
    )
    return PruneResult(
        notifications=n, deliveries=d, complete=complete, seconds=time.monotonic() - started
    )


def prune_dead_letters(
    engine: sa.Engine,
    days: float,
    *,
    now: datetime | None = None,
    batch: int = BATCH,
    budget_s: float | None = None,
) -> PruneResult:
    """Delete the dead letters received more than ``days`` days ago (0 = nothing)."""
    started = time.monotonic()
    if days <= 0:
        return PruneResult()

    def delete(conn: sa.Connection, ids: list[int]) -> int:
        conn.execute(sa.delete(dead_letters).where(dead_letters.c.id.in_(ids)))
        return 0

    deadline = None if budget_s is None else started + budget_s
    n, _, complete = _batches(
        engine, "dead_letters", _prunable_dead_letters(cutoff(days, now)), delete, batch, deadline
    )
    return PruneResult(dead_letters=n, complete=complete, seconds=time.monotonic() - started)


def prune(
    engine: sa.Engine,
    policy: RetentionPolicy | None = None,
    *,
    now: datetime | None = None,
    budget_s: float | None = None,
) -> PruneResult:
    """Both rules once (``sensorguard store prune``)."""
    policy = policy or RetentionPolicy.from_settings()
    a = prune_deliveries(
        engine, policy.delivery_days, now=now, batch=policy.batch, budget_s=budget_s
    )
    b = prune_dead_letters(
        engine, policy.dead_letter_days, now=now, batch=policy.batch, budget_s=budget_s
    )
    return a + b


def count_prunable(
    engine: sa.Engine, policy: RetentionPolicy, *, now: datetime | None = None
) -> PruneResult:
    """What :func:`prune` would delete now (``sensorguard store prune --dry-run``)."""
    out = PruneResult()
    with engine.connect() as conn:
        if policy.delivery_days > 0:
            ids = _prunable_notifications(cutoff(policy.delivery_days, now)).subquery()
            out.notifications = conn.execute(
                sa.select(sa.func.count()).select_from(ids)
            ).scalar_one()
            out.deliveries = conn.execute(
                sa.select(sa.func.count()).where(
                    deliveries.c.notification_id.in_(sa.select(ids.c.id))
                )
            ).scalar_one()
        if policy.dead_letter_days > 0:
            ids = _prunable_dead_letters(cutoff(policy.dead_letter_days, now)).subquery()
            out.dead_letters = conn.execute(
                sa.select(sa.func.count()).select_from(ids)
            ).scalar_one()
    return out


class PeriodicPrune:
    """One retention rule, run from a service's loop: ``maybe_run(engine)`` prunes when
    ``interval_s`` has passed since the last complete run, at most ``budget_s`` seconds
    per call (a run cut short continues at the next call). A store error is logged and
    retried at the next interval: retention never stops the service it runs in."""

    def __init__(
        self,
        what: str,
        days: float,
        *,
        interval_s: float = 3600.0,
        batch: int = BATCH,
        budget_s: float = 0.25,
    ) -> None:
        if what not in ("deliveries", "dead_letters"):
            raise ValueError(f"unknown retention rule {what!r}")
        self.what = what
        self.days = days
        self.interval_s = interval_s
        self.batch = batch
        self.budget_s = budget_s
        self.totals = PruneResult()
        self._next = time.monotonic()  # first run at the first call

    @classmethod
    def from_settings(cls, what: str, settings: Any = None) -> PeriodicPrune:
        if settings is None:
            from sensorguard.config import get_settings

            settings = get_settings()
        days = (
            settings.delivery_retention_days
            if what == "deliveries"
            else settings.dead_letter_retention_days
        )
        return cls(what, days, interval_s=settings.retention_interval)

    def maybe_run(self, engine: sa.Engine, now: float | None = None) -> PruneResult | None:
        """Prune if due; the result, or None when not due (or turned off)."""
        mono = time.monotonic() if now is None else now
        if self.days <= 0 or mono < self._next:
            return None
        fn = prune_deliveries if self.what == "deliveries" else prune_dead_letters
        try:
            res = fn(engine, self.days, batch=self.batch, budget_s=self.budget_s)
        except sa.exc.DBAPIError as exc:
            log.warning(
                "retention of %s failed (%s); retrying in %.0f s",
                self.what,
                str(exc).splitlines()[0],
                self.interval_s,
            )
            self._next = mono + self.interval_s
            return None
        self.totals = self.totals + res
        deleted = res.notifications + res.dead_letters
        if deleted:
            log.info(
                "retention: deleted %d %s older than %g days in %.2f s%s",
                deleted,
                "notifications" if self.what == "deliveries" else "dead letters",
                self.days,
                res.seconds,
                "" if res.complete else " (more to delete)",
            )
        # cut short: continue soon (the caller's next loop), not in an hour
        self._next = mono + (self.interval_s if res.complete else 0.0)
        return res
