"""Alarm notifications that arrive exactly once as far as a receiver can tell.

Rules of this room:

* **Outbox.** An alarm transition becomes a row of ``notifications`` written by
  :func:`enqueue` in the same transaction as the alarm event itself, plus one
  ``notification_deliveries`` row per configured receiver. No transition is notified
  that was not committed, and none committed is forgotten by a crash.
* **Idempotent.** A transition is identified by ``(event_id, transition)``; enqueueing it
  again (a restarted watch service replaying a stream) adds nothing. Every delivery of
  it carries ``Idempotency-Key: <event_id>:<transition>``, so a receiver that got a
  delivery whose acknowledgement was lost can drop the repeat.
* **In order, at least once.** Each receiver's queue is drained in outbox order; a
  delivery that fails is retried with exponential backoff (``backoff_base`` doubling to
  ``backoff_max``) and the receiver's later transitions wait behind it, so a receiver
  that was down for ten minutes gets every transition afterwards, in order. Attempts,
  the last error and HTTP status are kept in ``notification_deliveries`` (the delivery
  log). ``SENSORGUARD_WEBHOOK_MAX_ATTEMPTS`` > 0 gives a delivery up (state ``failed``)
  after that many attempts and moves on.
* **Retention.** Between drains the notifier deletes, every
  ``SENSORGUARD_RETENTION_INTERVAL`` s, the notifications (and delivery rows) finished
  more than ``SENSORGUARD_DELIVERY_RETENTION_DAYS`` ago whose alarm is closed; pending
  deliveries are never deleted (rules in :mod:`sensorguard.store.retention`).
* **One sender per receiver.** On PostgreSQL a drain holds an advisory lock per
  receiver, so several watch processes never send the same transition concurrently or
  out of order. The embedded SQLite store assumes one process.
* **Signed.** Webhook bodies are signed with HMAC-SHA256 over
  ``"<X-SensorGuard-Timestamp>.<body>"`` with ``SENSORGUARD_WEBHOOK_SECRET``; header
  ``X-SensorGuard-Signature: sha256=<hex>``. :func:`verify_signature` checks it.
* **MQTT.** The receiver ``"mqtt"`` publishes each transition to
  ``<root>/<asset_id>/alarms`` (QoS 1, waits for the broker's PUBACK) and then the
  asset's current state, retained, to ``<root>/<asset_id>/status``.

(About 640 lines on purpose: the outbox is one concept. :func:`enqueue`, the
:class:`Notifier`'s drain (per-receiver lock, order, backoff) and the delivery log read
and write the same two tables and delivery states; split, the exactly-once rule would
live in two rooms.)
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import random
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa

from sensorguard.jsonsafe import json_safe
from sensorguard.live.metrics import LiveMetrics
from sensorguard.live.watch_metrics import TRACE
from sensorguard.store.engine import dialect_insert
from sensorguard.store.retention import PeriodicPrune
from sensorguard.store.schema import notification_deliveries as deliveries
from sensorguard.store.schema import notifications
from sensorguard.timeutil import utc_now

log = logging.getLogger(__name__)

MQTT_RECEIVER = "mqtt"
SIGNATURE_HEADER = "X-SensorGuard-Signature"
TIMESTAMP_HEADER = "X-SensorGuard-Timestamp"
EVENT_HEADER = "X-SensorGuard-Event"
IDEMPOTENCY_HEADER = "Idempotency-Key"
_DRAIN_BATCH = 100
_RECORD_EVERY = 0.25
"""Seconds of sends recorded in one commit of the delivery log (:meth:`Notifier._record_all`)."""
_SENDERS = 4  # sender threads when several receivers are configured


@dataclass(frozen=True)
class Transition:
    """One alarm transition, as the watch service produces it.

    ``transition`` is ``opened``, ``updated`` or ``closed``; repeated updates of one
    event need distinct names (``updated:2``, ``updated:3`` ...), since
    ``(event_id, transition)`` identifies a notification. ``event`` is the alarm event
    as the API shows it (JSON-able: ids, asset, kind, state, start, end, top sensors,
    model version ...)."""

    event_id: str
    transition: str
    asset_id: str
    kind: str
    event: Mapping[str, Any]

    @property
    def key(self) -> str:
        return f"{self.event_id}:{self.transition}"


def configured_receivers(settings: Any = None) -> list[str]:
    """``SENSORGUARD_WEBHOOK_URLS`` (comma-separated) plus ``"mqtt"`` when
    ``SENSORGUARD_NOTIFY_MQTT`` is on."""
    if settings is None:
        from sensorguard.config import get_settings

        settings = get_settings()
    urls = [u.strip() for u in (settings.webhook_urls or "").split(",") if u.strip()]
    if settings.notify_mqtt:
        urls.append(MQTT_RECEIVER)
    return urls


def notification_body(t: Transition, created_at: datetime) -> bytes:
    """The JSON document every receiver gets for ``t`` (the same bytes on every retry)."""
    base = t.transition.split(":", 1)[0]
    doc = {
        "id": t.key,
        "type": f"alarm.{base}",
        "transition": t.transition,
        "event_id": str(t.event_id),
        "asset_id": t.asset_id,
        "kind": t.kind,
        "created_at": created_at.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z"),
        "event": json_safe(dict(t.event)),
    }
    return orjson.dumps(doc)


def _insert_ignore(conn: sa.Connection, table: sa.Table) -> Any:
    return dialect_insert(conn, table).on_conflict_do_nothing()


def enqueue(
    conn: sa.Connection,
    transition: Transition,
    receivers: Sequence[str] | None = None,
    *,
    now: datetime | None = None,
) -> int | None:
    """Put ``transition`` in the outbox for every receiver, in the caller's transaction.

    Returns the notification id, or None when this ``(event_id, transition)`` was
    enqueued before (nothing is added: a replayed transition is not sent twice)."""
    now = now or utc_now()
    if receivers is None:
        receivers = configured_receivers()
    body = notification_body(transition, now).decode()
    stmt = _insert_ignore(conn, notifications).returning(notifications.c.id)
    new_id = conn.execute(
        stmt,
        {
            "event_id": str(transition.event_id),
            "transition": transition.transition,
            "asset_id": transition.asset_id,
            "kind": transition.kind,
            "body": body,
            "created_at": now,
        },
    ).scalar()
    if new_id is None:
        return None
    if receivers:
        conn.execute(
            sa.insert(deliveries),
            [
                {
                    "notification_id": new_id,
                    "receiver": r,
                    "state": "pending",
                    "attempts": 0,
                    "next_attempt_at": now,
                }
                for r in dict.fromkeys(receivers)
            ],
        )
    return int(new_id)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256(secret, ``"<timestamp>.<body>"``)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: str,
    body: bytes,
    timestamp: str,
    signature: str,
    *,
    tolerance_s: float | None = 300.0,
    now: float | None = None,
) -> bool:
    """A receiver's check: the signature matches and the timestamp is recent (replays of
    an old delivery fail). Constant-time comparison."""
    if not signature or not timestamp:
        return False
    if tolerance_s is not None:
        try:
            age = abs((now if now is not None else time.time()) - float(timestamp))
        except ValueError:
            return False
        if age > tolerance_s:
            return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


@dataclass
class DeliveryResult:
    ok: bool
    status: int | None = None
    error: str | None = None


class Notifier:
    """Drains the outbox to every receiver. ``run(stop)`` in the foreground, or
    ``start()`` / ``stop()`` on a thread; ``wake()`` after committing transitions to
    send them now instead of at the next poll."""

    def __init__(
        self,
        store_url: str | None = None,
        mqtt_url: str | None = None,
        *,
        secret: str | None = None,
        topic_root: str | None = None,
        metrics: LiveMetrics | None = None,
        poll_seconds: float = 0.5,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        timeout: float | None = None,
        max_attempts: int | None = None,
        client_id: str | None = None,
    ) -> None:
        from sensorguard.config import get_settings

        settings = get_settings()
        self.store_url = store_url
        self.mqtt_url = mqtt_url or settings.mqtt_url
        self.topic_root = topic_root if topic_root is not None else settings.mqtt_topic_root
        self.secret = secret if secret is not None else settings.webhook_secret
        self.metrics = metrics or LiveMetrics()
        self.poll_seconds = poll_seconds
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.timeout = timeout if timeout is not None else settings.webhook_timeout
        self.max_attempts = (
            max_attempts if max_attempts is not None else settings.webhook_max_attempts
        )
        self.client_id = client_id or f"{settings.mqtt_client_id}-notify"
        # the delivery log's retention runs between drains (store.retention)
        self.retention = PeriodicPrune.from_settings("deliveries", settings)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._http: dict[str, Any] = {}  # one client per webhook URL (one sender thread each)
        self._pool: Any = None
        self._mqtt: Any = None
        self._mqtt_acks: Any = None
        self._warned_unsigned = False

    # -- senders
    def _http_client(self, url: str = "") -> Any:
        client = self._http.get(url)
        if client is None:
            import httpx

            client = self._http[url] = httpx.Client(timeout=self.timeout, follow_redirects=False)
        return client

    def _post(self, url: str, row: Any) -> DeliveryResult:
        import httpx

        body = row["body"].encode()
        ts = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "sensorguard-notify",
            IDEMPOTENCY_HEADER: f"{row['event_id']}:{row['transition']}",
            EVENT_HEADER: "alarm." + row["transition"].split(":", 1)[0],
            TIMESTAMP_HEADER: ts,
            "X-SensorGuard-Attempt": str(row["attempts"] + 1),
        }
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, ts, body)
        elif not self._warned_unsigned:
            log.warning("SENSORGUARD_WEBHOOK_SECRET is not set: webhooks are sent unsigned")
            self._warned_unsigned = True
        try:
            resp = self._http_client(url).post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return DeliveryResult(False, None, f"{type(exc).__name__}: {exc}"[:500])
        if 200 <= resp.status_code < 300:
            return DeliveryResult(True, resp.status_code)
        text = resp.text.strip().splitlines()[0][:200] if resp.text.strip() else ""
        return DeliveryResult(False, resp.status_code, f"HTTP {resp.status_code} {text}".strip())

    def _mqtt_client(self) -> tuple[Any, Any]:
        if self._mqtt is None:
            from sensorguard.live.mqtt import AckTracker, MqttSettings, connect, make_client

            settings = MqttSettings.from_url(self.mqtt_url)
            client = make_client(self.client_id, settings)
            acks = AckTracker()
            acks.install(client)
            connect(client, settings, persistent=False)
            self._mqtt, self._mqtt_acks = client, acks
        return self._mqtt, self._mqtt_acks

    def _publish(self, conn: sa.Connection, row: Any) -> DeliveryResult:
        from sensorguard.live.mqtt import MqttError, alarms_topic, status_topic

        try:
            client, acks = self._mqtt_client()
            acks.publish(
                client, alarms_topic(row["asset_id"], self.topic_root), row["body"].encode()
            )
            status = asset_status(conn, row["asset_id"], up_to=row["notification_id"])
            acks.publish(
                client,
                status_topic(row["asset_id"], self.topic_root),
                orjson.dumps(status),
                retain=True,
            )
            if not acks.wait(self.timeout):
                return DeliveryResult(False, None, "the broker did not acknowledge in time")
        except MqttError as exc:
            self._close_mqtt()
            return DeliveryResult(False, None, exc.message)
        except Exception as exc:  # the asset id cannot be a topic, ...
            return DeliveryResult(False, None, f"{type(exc).__name__}: {exc}"[:500])
        return DeliveryResult(True)

    def _close_mqtt(self) -> None:
        if self._mqtt is not None:
            from sensorguard.live.mqtt import disconnect

            with contextlib.suppress(Exception):  # already gone
                disconnect(self._mqtt)
            self._mqtt = None

    def _deliver(self, conn: sa.Connection, receiver: str, row: Any) -> DeliveryResult:
        if receiver == MQTT_RECEIVER:
            return self._publish(conn, row)
        return self._post(receiver, row)

    # -- draining
    def backoff(self, attempts: int) -> float:
        """Seconds before attempt ``attempts + 1``: doubling from ``backoff_base``, capped,
        with ±10 % jitter so receivers coming back are not hit in lockstep."""
        delay = min(self.backoff_base * 2 ** max(attempts - 1, 0), self.backoff_max)
        return delay * random.uniform(0.9, 1.1)

    def drain_once(self) -> int:
        """Send what is due to every receiver, in order; returns deliveries made."""
        from sensorguard.store import ensure_schema

        engine = ensure_schema(self.store_url)
        if TRACE is not None:
            TRACE.write("drain", t=time.time())
        with engine.connect() as conn:
            receivers = [
                r
                for (r,) in conn.execute(
                    sa.select(deliveries.c.receiver)
                    .where(deliveries.c.state == "pending")
                    .distinct()
                )
            ]
        if len(receivers) > 1:
            # Receivers are independent queues: each drains on its own thread, so the
            # webhook does not wait behind the MQTT receiver's PUBACKs and status
            # queries (order holds within each receiver, which is what is promised).
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(_SENDERS, thread_name_prefix="sensorguard-send")
            futures = [self._pool.submit(self._drain_receiver, engine, r) for r in receivers]
            sent = sum(f.result() for f in futures)
        else:
            sent = sum(self._drain_receiver(engine, r) for r in receivers)
        self._update_pending(engine)
        return sent

    def _update_pending(self, engine: sa.Engine) -> None:
        with engine.connect() as conn:
            n = conn.execute(
                sa.select(sa.func.count()).where(deliveries.c.state == "pending")
            ).scalar_one()
        self.metrics.pending.set(n)

    def _drain_receiver(self, engine: sa.Engine, receiver: str) -> int:
        sent = 0
        with engine.connect() as conn:
            pg = conn.dialect.name == "postgresql"
            lock_key = int.from_bytes(
                hashlib.sha256(f"sensorguard-notify:{receiver}".encode()).digest()[:8],
                "big",
                signed=True,
            )
            if pg:
                got = conn.execute(sa.select(sa.func.pg_try_advisory_lock(lock_key))).scalar()
                conn.commit()
                if not got:
                    return 0  # another process drains this receiver
            try:
                while not self._stop.is_set():
                    rows = (
                        conn.execute(
                            sa.select(
                                deliveries.c.id,
                                deliveries.c.notification_id,
                                deliveries.c.attempts,
                                deliveries.c.next_attempt_at,
                                notifications.c.event_id,
                                notifications.c.transition,
                                notifications.c.asset_id,
                                notifications.c.body,
                            )
                            .join(notifications, notifications.c.id == deliveries.c.notification_id)
                            .where(
                                deliveries.c.receiver == receiver, deliveries.c.state == "pending"
                            )
                            .order_by(deliveries.c.notification_id)
                            .limit(_DRAIN_BATCH)
                        )
                        .mappings()
                        .all()
                    )
                    conn.commit()
                    if not rows:
                        break
                    picked = time.time()
                    blocked = False
                    done: list[tuple[Any, DeliveryResult, float]] = []
                    try:
                        for row in rows:
                            if row["next_attempt_at"] > utc_now():
                                blocked = True  # the head waits for its backoff; so do the rest
                                break
                            result = self._deliver(conn, receiver, row)
                            done.append((row, result, time.time()))
                            if result.ok:
                                sent += 1
                            elif not self._gave_up(row, result):
                                blocked = True
                                break
                            if done[-1][2] - done[0][2] >= _RECORD_EVERY:
                                batch, done = done, []  # not recorded twice if this fails
                                self._record_all(conn, receiver, batch, picked)
                    finally:
                        self._record_all(conn, receiver, done, picked)
                    if blocked or len(rows) < _DRAIN_BATCH:
                        break
            finally:
                if pg:
                    conn.rollback()
                    conn.execute(sa.select(sa.func.pg_advisory_unlock(lock_key)))
                    conn.commit()
        return sent

    def _gave_up(self, row: Any, result: DeliveryResult) -> bool:
        return not result.ok and self.max_attempts > 0 and row["attempts"] + 1 >= self.max_attempts

    def _record_all(
        self,
        conn: sa.Connection,
        receiver: str,
        done: list[tuple[Any, DeliveryResult, float]],
        picked: float,
    ) -> None:
        """The delivery log of the sends in ``done``, in one commit.

        One commit per send cost a WAL flush each: with 50 alarms opening in one pass,
        the 50th webhook waited for 49 of them. A crash before this commit re-sends
        at most ``_RECORD_EVERY`` seconds of sends, with the same ``Idempotency-Key``
        (a crash between a send and its commit re-sent one before)."""
        if not done:
            return
        for row, result, _sent in done:
            self._record(conn, receiver, row, result)
        conn.commit()
        if TRACE is not None:
            recorded = time.time()
            for row, _result, sent_at in done:
                TRACE.write(
                    "sent",
                    key=f"{row['event_id']}:{row['transition']}",
                    picked=picked,
                    sent=sent_at,
                    recorded=recorded,
                )

    def _record(self, conn: sa.Connection, receiver: str, row: Any, result: DeliveryResult) -> None:
        now = utc_now()
        kind = "mqtt" if receiver == MQTT_RECEIVER else "webhook"
        attempts = row["attempts"] + 1
        values: dict[str, Any] = {
            "attempts": attempts,
            "last_attempt_at": now,
            "last_status": result.status,
        }
        if result.ok:
            values.update(state="delivered", delivered_at=now)
            self.metrics.deliveries.labels(kind, "delivered").inc()
        else:
            values["last_error"] = result.error
            if kind == "webhook":
                self.metrics.webhook_failures.inc()
            if self._gave_up(row, result):
                values["state"] = "failed"
                self.metrics.deliveries.labels(kind, "gave_up").inc()
                log.error(
                    "gave up notification %s to %s after %d attempts: %s",
                    f"{row['event_id']}:{row['transition']}",
                    _safe_receiver(receiver),
                    attempts,
                    result.error,
                )
            else:
                delay = self.backoff(attempts)
                values["next_attempt_at"] = now + timedelta(seconds=delay)
                self.metrics.deliveries.labels(kind, "failed").inc()
                log.warning(
                    "notification %s to %s failed (attempt %d: %s); retry in %.1f s",
                    f"{row['event_id']}:{row['transition']}",
                    _safe_receiver(receiver),
                    attempts,
                    result.error,
                    delay,
                )
        conn.execute(sa.update(deliveries).where(deliveries.c.id == row["id"]).values(**values))

    # -- service
    def wake(self) -> None:
        self._wake.set()

    def run(self, stop: threading.Event | None = None) -> None:
        if stop is not None:
            self._stop = stop
        backoff = 0.5
        # the HTTP client before the first alarm, not at it: importing httpx and building
        # the client took about 1.2 s of the first delivery (py-spy), the p99 tail of the
        # publish -> webhook latency benchmark
        for receiver in configured_receivers():
            if receiver != MQTT_RECEIVER:
                self._http_client(receiver)
        try:
            while not self._stop.is_set():
                self._wake.clear()
                try:
                    self.drain_once()
                    from sensorguard.store import ensure_schema

                    self.retention.maybe_run(ensure_schema(self.store_url))
                    backoff = 0.5
                except (sa.exc.DBAPIError, OSError) as exc:
                    log.error("notifier: store unavailable (%s); retrying", exc)
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 30.0)
                    continue
                self._wake.wait(self.poll_seconds)
        finally:
            self.close()

    def start(self) -> threading.Thread:
        self._thread = threading.Thread(target=self.run, name="sensorguard-notify", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        for client in self._http.values():
            client.close()
        self._http = {}
        self._close_mqtt()


def _safe_receiver(receiver: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(receiver)
    if parts.password:
        return receiver.replace(f":{parts.password}@", ":***@")
    return receiver


def asset_status(conn: sa.Connection, asset_id: str, up_to: int | None = None) -> dict[str, Any]:
    """The asset's alarm state after notification ``up_to`` (default: all): its open
    alarms (opened, not yet closed), for the retained status topic."""
    n = notifications
    q = sa.select(n.c.id, n.c.event_id, n.c.transition, n.c.body).where(n.c.asset_id == asset_id)
    if up_to is not None:
        q = q.where(n.c.id <= up_to)
    open_events: dict[str, Any] = {}
    last: Any = None
    for row in conn.execute(q.order_by(n.c.id)):
        last = row
        base = row.transition.split(":", 1)[0]
        if base == "closed":
            open_events.pop(row.event_id, None)
        else:  # opened, updated: the latest view of the event
            open_events[row.event_id] = orjson.loads(row.body)["event"]
    return {
        "asset_id": asset_id,
        "state": "alarm" if open_events else "ok",
        "open_alarms": list(open_events.values()),
        "last_notification": f"{last.event_id}:{last.transition}" if last is not None else None,
    }


def read_deliveries(
    engine: sa.Engine, receiver: str | None = None, limit: int = 1000
) -> list[dict[str, Any]]:
    """The delivery log, oldest notification first."""
    q = (
        sa.select(
            deliveries,
            notifications.c.event_id,
            notifications.c.transition,
            notifications.c.asset_id,
        )
        .join(notifications, notifications.c.id == deliveries.c.notification_id)
        .order_by(deliveries.c.notification_id, deliveries.c.receiver)
        .limit(limit)
    )
    if receiver is not None:
        q = q.where(deliveries.c.receiver == receiver)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(q).mappings()]
