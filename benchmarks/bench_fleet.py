"""Memory per model a predictor holds (one model per machine type), and the cost of routing.

    .venv/bin/python benchmarks/bench_fleet.py [--models 8] [--sensors 9] [--rows 20000]

Trains one detector per simulated machine type into a temporary embedded MLflow store,
then loads each model's production version the way the predictor does
(``RegistrySource.load`` + warm-up, one ``ServedModel`` each) and reports per model: the
Python/numpy heap it adds (``tracemalloc``) and the growth of the process' resident set
(RSS). The first load also pays for importing MLflow and friends; it is reported apart.
Then the predict path: one reading per request through the default model vs. routed by
``"model"`` (an in-process ASGI call, no network), median of many requests.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _train(names: list[str], rows: int, detector: str) -> None:
    import mlflow

    from sensorguard.config import get_settings
    from sensorguard.data.simulator import SENSORS, simulate_pump
    from sensorguard.detectors import make_detector
    from sensorguard.registry import (
        configure_mlflow,
        ensure_experiment,
        get_client,
        log_detector_model,
        register_model_version,
    )

    base = get_settings()
    for i, name in enumerate(names):
        settings = base.model_copy(update={"model_name": name})
        frame = simulate_pump(days=rows / 1440, freq="1min", seed=i, failures=False)
        X = frame[list(SENSORS)]
        params = {"max_states": 6} if detector == "operating-states" else {}
        det = make_detector(detector, **params).fit(X)
        configure_mlflow(settings)
        exp = ensure_experiment(settings.experiment, settings)
        with mlflow.start_run(experiment_id=exp) as run:
            info = log_detector_model(det, X.head(5))
        mv = register_model_version(info.model_uri, run.info.run_id, name, {}, settings)
        get_client(settings).set_registered_model_alias(name, "production", mv.version)


def _load_all(names: list[str]) -> tuple[list[Any], list[tuple[float, float]]]:
    from sensorguard.serving.holder import RegistrySource
    from sensorguard.serving.settings import ServingSettings

    served, costs = [], []
    base = ServingSettings()
    for name in names:
        gc.collect()
        heap0, rss0 = tracemalloc.get_traced_memory()[0], _rss_mb()
        source = RegistrySource(base.model_copy(update={"model_name": name}))
        model = source.load(source.resolve())
        model.warm()
        served.append(model)
        gc.collect()
        costs.append(((tracemalloc.get_traced_memory()[0] - heap0) / 2**20, _rss_mb() - rss0))
    return served, costs


async def _latency(app: Any, body: bytes, n: int) -> float:
    """Median seconds of ``n`` in-process POST /v1/predict calls."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(_message: dict[str, Any]) -> None:
        return None

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/predict",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
    }
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        await app(scope, receive, send)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


async def _routing(names: list[str], n: int) -> dict[str, float]:
    import orjson

    from sensorguard.data.simulator import SENSORS
    from sensorguard.serving.app import create_app
    from sensorguard.serving.settings import ServingSettings

    app = create_app(ServingSettings(model_name=names[0], poll_interval=3600))
    async with app.router.lifespan_context(app):
        while app.state.holder.served is None:
            await asyncio.sleep(0.1)
        await app.state.pool.served(names[1])
        reading = {s: 1.0 + i for i, s in enumerate(SENSORS)}
        plain = orjson.dumps({"readings": [reading]})
        routed = orjson.dumps({"model": names[1], "readings": [reading]})
        await _latency(app, plain, 200)  # warm
        await _latency(app, routed, 200)
        return {
            "default_us": await _latency(app, plain, n) * 1e6,
            "routed_us": await _latency(app, routed, n) * 1e6,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=8)
    parser.add_argument("--rows", type=int, default=20_000, help="training rows per model")
    parser.add_argument("--detector", default="operating-states")
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sg-bench-fleet-") as tmp:
        os.environ["SENSORGUARD_HOME"] = str(Path(tmp) / "home")
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
        names = [f"type-{i:02d}" for i in range(args.models)]
        t0 = time.perf_counter()
        _train(names, args.rows, args.detector)
        print(f"trained and registered {args.models} models in {time.perf_counter() - t0:.1f} s")
        tracemalloc.start()
        _served, costs = _load_all(names)
        tracemalloc.stop()
        first, rest = costs[0], costs[1:]
        print(
            f"\nfirst load (includes importing MLflow): heap +{first[0]:.1f} MiB, "
            f"RSS +{first[1]:.1f} MiB"
        )
        if rest:
            heap = statistics.median(c[0] for c in rest)
            rss = statistics.median(c[1] for c in rest)
            print(
                f"each further model ({args.detector}, 9 sensors): heap +{heap:.2f} MiB, "
                f"RSS +{rss:.2f} MiB (median of {len(rest)})"
            )
            print(
                f"a full pool of {args.models} models: heap {sum(c[0] for c in costs):.1f} MiB, "
                f"RSS {sum(c[1] for c in costs):.1f} MiB"
            )
        if args.models >= 2:
            lat = asyncio.run(_routing(names, args.requests))
            print(
                f"\none reading per request, in process: default model "
                f'{lat["default_us"]:.0f} µs, routed by "model" {lat["routed_us"]:.0f} µs '
                f"(ratio {lat['routed_us'] / lat['default_us']:.2f})"
            )


if __name__ == "__main__":
    main()
