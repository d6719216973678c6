"""Prometheus metrics of the live loop (ingestion, notifications; the watch loop adds its
own to the same registry). One registry per service object, so tests and several
services in one process never collide; ``serve_metrics`` exposes it over HTTP."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

BATCH_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class LiveMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.messages = Counter(
            "sensorguard_live_messages",
            "MQTT readings messages handled, by outcome (stored, dead_letter).",
            ["outcome"],
            registry=r,
        )
        self.readings = Counter(
            "sensorguard_live_readings",
            "Readings received over MQTT, by outcome (inserted, duplicate). "
            "rate() of it is readings/s.",
            ["outcome"],
            registry=r,
        )
        self.dead_letters = Counter(
            "sensorguard_live_dead_letters",
            "Invalid payloads kept in the dead_letters table, by error code.",
            ["code"],
            registry=r,
        )
        self.batch_seconds = Histogram(
            "sensorguard_live_ingest_batch_seconds",
            "Time to parse and commit one ingestion batch (many messages).",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.store_errors = Counter(
            "sensorguard_live_store_errors",
            "Ingestion batches that could not be committed (retried; nothing acknowledged).",
            registry=r,
        )
        self.last_stored = Gauge(
            "sensorguard_live_last_commit_timestamp_seconds",
            "Unix time of the last committed ingestion batch.",
            registry=r,
        )
        self.deliveries = Counter(
            "sensorguard_notify_deliveries",
            "Notification delivery attempts by receiver kind (webhook, mqtt) and outcome "
            "(delivered, failed, gave_up).",
            ["receiver_kind", "outcome"],
            registry=r,
        )
        self.webhook_failures = Counter(
            "sensorguard_webhook_failures",
            "Failed webhook delivery attempts (each is retried with backoff).",
            registry=r,
        )
        self.pending = Gauge(
            "sensorguard_notify_pending",
            "Notifications not yet delivered, over all receivers.",
            registry=r,
        )


def serve_metrics(metrics: LiveMetrics, port: int, host: str = "127.0.0.1") -> Any:
    """Expose ``/metrics`` on ``host:port`` from a daemon thread; returns the server."""
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=host, registry=metrics.registry)
    return server
