"""Time the model lifecycle: the demo (twice), one training, loading by alias.

Runs in a temporary SENSORGUARD_HOME (embedded SQLite store), so it never touches a real
store. Usage:

    .venv/bin/python benchmarks/bench_lifecycle.py [--days 14] [--quick]

Prints JSON: wall time of each demo run and of its steps, and the time to load the
production model by alias (cold: download + load).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--days", type=float, default=14.0)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    out: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="sg-bench-lifecycle-") as home:
        os.environ["SENSORGUARD_HOME"] = home
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
        t0 = time.perf_counter()
        from sensorguard.config import get_settings
        from sensorguard.pipelines.demo import run_demo
        from sensorguard.registry import configure_mlflow, load_by_alias

        settings = get_settings()
        configure_mlflow(settings)
        out["import_s"] = round(time.perf_counter() - t0, 2)
        for run in (1, 2):
            t = time.perf_counter()
            report = run_demo(days=args.days, quick=args.quick, settings=settings)
            out[f"demo_run_{run}"] = {
                "wall_s": round(time.perf_counter() - t, 2),
                "steps_s": report.step_seconds,
                "gate_passed": report.gate_passed,
                "events_detected": f"{report.events_detected}/{report.events_total}",
            }
        t = time.perf_counter()
        load_by_alias(settings.model_name, settings.production_alias, settings)
        out["load_by_alias_s"] = round(time.perf_counter() - t, 3)
    out["load_average"] = os.getloadavg()[0]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
