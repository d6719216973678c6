"""Memory per model a predictor holds (one model per machine type), and the cost of routing.

    .venv/bin/python benchmarks/bench_fleet.py [--models 8] [--rows 20000] [--home DIR]

A child process trains one detector per simulated machine type into an embedded MLflow
store (kept with ``--home``, reused when it exists). This process then loads each
model's production version the way the predictor does (``RegistrySource.load`` +
warm-up, one ``ServedModel`` each) and reports per model the Python/numpy heap it adds
(``tracemalloc``) and the growth of the resident set (RSS); the first load also pays for
importing MLflow and friends and is reported apart. Then the predict path: one reading
per request through the default model vs. routed by ``"model"`` (in-process ASGI calls,
no network), median of ``--requests`` requests each.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import subprocess
import sys
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
    parser.add_argument("--home", help="SensorGuard home to keep (default: a temporary one)")
    parser.add_argument("--train-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    names = [f"type-{i:02d}" for i in range(args.models)]
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    if args.train_only:
        _train(names, args.rows, args.detector)
        return
    with tempfile.TemporaryDirectory(prefix="sg-bench-fleet-") as tmp:
        home = Path(args.home or Path(tmp) / "home")
        os.environ["SENSORGUARD_HOME"] = str(home)
        if not (home / "mlflow.db").exists():
            # trained in a child process: this one then holds only what a predictor holds
            t0 = time.perf_counter()
            cmd = [
                sys.executable,
                __file__,
                "--train-only",
                "--models",
                str(args.models),
                "--rows",
                str(args.rows),
                "--detector",
                args.detector,
            ]
            subprocess.run(cmd, check=True)
            print(f"trained {args.models} models in {time.perf_counter() - t0:.1f} s", flush=True)
        tracemalloc.start()
        _served, costs = _load_all(names)
        tracemalloc.stop()
        first, rest = costs[0], costs[1:]
        print(
            f"\nfirst load (includes importing MLflow, pandas, scikit-learn): heap "
            f"+{first[0]:.1f} MiB, RSS +{first[1]:.1f} MiB (process RSS now {_rss_mb():.0f} MiB)"
        )
        if rest:
            heap = statistics.median(c[0] for c in rest)
            rss = statistics.median(c[1] for c in rest)
            print(
                f"each further model ({args.detector}, 9 sensors): heap +{heap:.3f} MiB, "
                f"RSS +{rss:.2f} MiB (median of {len(rest)})"
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
