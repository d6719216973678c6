"""Run SensorGuard's DAGs with ``dag.test()`` in a fresh process; print what Airflow recorded.

Used by ``tests/integration/test_dags.py``: Airflow reads its configuration (AIRFLOW_HOME, the
metadata DB) once per process at import, so each batch of DAG runs gets its own process
with the test's environment, and the test process itself never imports Airflow.

    python tests/support/airflow_driver.py dagbag
    python tests/support/airflow_driver.py run '[{"dag_id": "...", "conf": {...}}, ...]'

The last stdout line is ``SG_RESULT <json>``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

MARK = "SG_RESULT "


def _dagbag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])


def _asset_uris(cond: Any) -> list[str]:
    if cond is None:
        return []
    if hasattr(cond, "uri"):
        return [cond.uri]
    return sorted(u for o in getattr(cond, "objects", []) for u in _asset_uris(o))


def describe_dags() -> dict[str, Any]:
    started = time.perf_counter()
    bag = _dagbag()
    parse_s = time.perf_counter() - started
    dags = {}
    for dag_id, dag in bag.dags.items():
        dags[dag_id] = {
            "tags": sorted(dag.tags),
            "catchup": dag.catchup,
            "max_active_runs": dag.max_active_runs,
            "start_date": str(dag.start_date) if dag.start_date else None,
            "timetable": type(dag.timetable).__name__,
            "cron": getattr(getattr(dag.timetable, "timetable", dag.timetable), "expression", None),
            "schedule_assets": _asset_uris(getattr(dag.timetable, "asset_condition", None)),
            "tasks": {
                t.task_id: {
                    "retries": t.retries,
                    "downstream": sorted(t.downstream_task_ids),
                    "outlets": [getattr(o, "uri", None) or f"alias:{o.name}" for o in t.outlets],
                }
                for t in dag.tasks
            },
        }
    return {
        "import_errors": {str(k): str(v) for k, v in bag.import_errors.items()},
        "dags": dags,
        "parse_seconds": parse_s,
        # parsing must stay cheap: the DAG files import sensorguard/mlflow inside tasks only
        "heavy_modules_loaded": sorted(
            m for m in ("sensorguard", "mlflow", "sklearn", "pandas") if m in sys.modules
        ),
    }


def _key(task_id: str, map_index: int | None) -> str:
    """``task_id``, or ``task_id[i]`` for instance ``i`` of a mapped task (group)."""
    return task_id if map_index is None or map_index < 0 else f"{task_id}[{map_index}]"


def _recorded(dag_id: str, run_id: str) -> dict[str, Any]:
    from airflow.models.asset import AssetDagRunQueue, AssetEvent
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as s:
        xcoms: dict[str, dict[str, Any]] = {}
        rows = s.scalars(
            select(XComModel).where(XComModel.dag_id == dag_id, XComModel.run_id == run_id)
        )
        for x in rows:
            xcoms.setdefault(_key(x.task_id, x.map_index), {})[x.key] = XComModel.deserialize_value(
                x
            )
        events = [
            {"uri": e.asset.uri, "extra": e.extra, "source_task_id": e.source_task_id}
            for e in s.scalars(select(AssetEvent).where(AssetEvent.source_run_id == run_id))
        ]
        queued = sorted(q.target_dag_id for q in s.scalars(select(AssetDagRunQueue)))
    return {"xcom": xcoms, "asset_events": events, "queued_dag_runs": queued}


def run(spec: list[dict[str, Any]]) -> list[dict[str, Any]]:
    bag = _dagbag()
    if bag.import_errors:
        raise SystemExit(f"import errors: {bag.import_errors}")
    results = []
    for item in spec:
        dag = bag.dags[item["dag_id"]]
        started = time.perf_counter()
        dr = dag.test(run_conf=item.get("conf") or {})
        results.append(
            {
                "dag_id": dag.dag_id,
                "run_id": dr.run_id,
                "state": str(dr.state),
                "seconds": round(time.perf_counter() - started, 2),
                "tasks": {
                    _key(ti.task_id, ti.map_index): str(ti.state) for ti in dr.get_task_instances()
                },
                **_recorded(dag.dag_id, dr.run_id),
            }
        )
    return results


def main() -> None:
    if sys.argv[1] == "dagbag":
        out: Any = describe_dags()
    else:
        out = run(json.loads(sys.argv[2]))
    sys.stdout.write("\n" + MARK + json.dumps(out, default=str) + "\n")


if __name__ == "__main__":
    main()
