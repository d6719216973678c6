"""Orchestration costs: Airflow metadata DB, DAG parsing, a training DAG run, drift.

    .venv/bin/python benchmarks/bench_airflow.py [--rows 1000000]

Everything runs in a temporary folder (own AIRFLOW_HOME with SQLite, own SensorGuard
home); the CLI `airflow` of this venv is used, as `airflow standalone` would.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _timed(cmd: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000, help="Rows for the drift timing.")
    args = ap.parse_args()

    import numpy as np
    import pandas as pd

    from sensorguard.data.simulator import simulate_pump
    from sensorguard.pipelines.drift import compute_drift, training_profile

    results: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="sg-bench-airflow-") as tmp:
        root = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
        env.update(
            AIRFLOW_HOME=str(root / "airflow"),
            AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            SENSORGUARD_HOME=str(root / "sg"),
            PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        )
        for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "SENSORGUARD_TRACKING_URI"):
            env.pop(var, None)
        airflow = str(BIN / "airflow")
        results.append(
            ("`airflow db migrate` (fresh SQLite)", _timed([airflow, "db", "migrate"], env))
        )
        driver = str(REPO / "tests" / "airflow_driver.py")
        results.append(
            (
                "DagBag of `dags/` in a fresh process (import + parse)",
                _timed([sys.executable, driver, "dagbag"], env),
            )
        )
        data = root / "history.csv"
        simulate_pump(days=5, freq="2min", seed=1).to_csv(data, index=False)
        conf = json.dumps(
            {
                "data_path": str(data),
                "eval_fraction": 0.4,
                "detector_params": {"max_states": 4, "silhouette_sample": 2000},
            }
        )
        cmd = [airflow, "dags", "test", "sensor_model_training", "-c", conf]
        results.append(
            (
                "`airflow dags test sensor_model_training` (first run, 3,600 rows, promoted)",
                _timed(cmd, env),
            )
        )

    rng = np.random.default_rng(0)
    cols = [f"s{i}" for i in range(9)]
    X = pd.DataFrame(rng.normal(size=(args.rows, 9)), columns=cols)
    started = time.perf_counter()
    profile = training_profile(X)
    results.append(
        (f"`training_profile`, {args.rows:,} rows × 9 sensors", time.perf_counter() - started)
    )
    started = time.perf_counter()
    compute_drift(profile, X + 0.1)
    results.append(
        (f"`compute_drift`, {args.rows:,} rows × 9 sensors", time.perf_counter() - started)
    )

    load = os.getloadavg()[0]
    print(f"load average (1 min) at the end: {load:.1f} on {os.cpu_count()} cores\n")
    print("| step | time |\n|---|---|")
    for name, seconds in results:
        print(f"| {name} | {seconds:.1f} s |")


if __name__ == "__main__":
    main()
