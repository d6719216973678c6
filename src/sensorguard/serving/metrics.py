"""Prometheus metrics of one predictor app (its own registry, so apps never collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (
    0.0002,
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)


class ServingMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.latency = Histogram(
            "sensorguard_request_duration_seconds",
            "Time spent handling a request, by endpoint (parsing, scoring, encoding).",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.requests = Counter(
            "sensorguard_predict_requests",
            "Prediction requests by outcome (ok, or the error code returned).",
            ["outcome"],
            registry=r,
        )
        self.predictions = Counter(
            "sensorguard_predictions",
            "Readings scored, by model version.",
            ["model", "version"],
            registry=r,
        )
        self.anomalies = Counter(
            "sensorguard_anomalies",
            "Readings flagged anomalous, by model version.",
            ["model", "version"],
            registry=r,
        )
        self.regime_changes = Counter(
            "sensorguard_regime_changes",
            "Assets judged a regime change (first 60 readings under a version outside its "
            "training range), by model version.",
            ["model", "version"],
            registry=r,
        )
        self.anomalies_by_sensor = Counter(
            "sensorguard_anomalies_by_sensor",
            "Anomalous readings by their top contributing sensor.",
            ["sensor"],
            registry=r,
        )
        self.model_info = Gauge(
            "sensorguard_model_info",
            "The model being served (value 1): name, version, alias and run id.",
            ["model", "version", "alias", "run_id"],
            registry=r,
        )
        self.model_version = Gauge(
            "sensorguard_model_version",
            "Version number of the model being served (0 before the first load).",
            registry=r,
        )
        self.model_loaded_at = Gauge(
            "sensorguard_model_loaded_timestamp_seconds",
            "Unix time the served model was loaded.",
            registry=r,
        )
        self.tracked_assets = Gauge(
            "sensorguard_tracked_assets",
            "Assets whose alarm state the served model version holds.",
            registry=r,
        )
        self.ready = Gauge("sensorguard_ready", "1 once a model is loaded and serving.", registry=r)
        self.reloads = Counter(
            "sensorguard_model_reloads",
            "Successful model swaps (including the first load).",
            registry=r,
        )
        self.reload_failures = Counter(
            "sensorguard_model_reload_failures",
            "Failed alias checks or model loads; the previous model keeps serving.",
            ["stage"],
            registry=r,
        )
        self.load_seconds = Histogram(
            "sensorguard_model_load_duration_seconds",
            "Time to load and warm up a model version.",
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
            registry=r,
        )
        # pre-create the label sets so dashboards show zeros instead of gaps
        for stage in ("resolve", "load", "warmup"):
            self.reload_failures.labels(stage)
        self.predict_latency = self.latency.labels("/v1/predict")
        self.ok_requests = self.requests.labels("ok")
