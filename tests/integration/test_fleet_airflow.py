"""Training jobs as Airflow DAG runs, against a real ``airflow api-server``.

The job is triggered through Airflow's REST API with the job as the run's conf; the
job's state is read back from the DAG run. No scheduler runs here, so the run stays
queued until the test ends it through the same API (as an operator would in the UI):
a failed run is a failed job with the run named; an unreachable Airflow fails the
submission with a hint and records the job as failed.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest
from support.serving import Proc, free_port, wait_http
from test_dags import BIN, _airflow_env, airflow_home  # noqa: F401 - the session's Airflow home

from sensorguard.errors import SensorGuardError

pytestmark = [pytest.mark.airflow, pytest.mark.integration, pytest.mark.slow]

DAG = "sensor_model_training"


def test_a_training_job_is_a_dag_run_and_follows_its_state(
    airflow_home: Path,  # noqa: F811
    sg_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os

    from sensorguard.config import get_settings
    from sensorguard.pipelines.jobs import job_status, submit_job
    from sensorguard.store.jobs import list_jobs

    port = free_port()
    env = _airflow_env(airflow_home, os.environ)
    env.update(AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True")
    done = subprocess.run(
        [str(BIN / "airflow"), "dags", "reserialize"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    api = Proc(
        [str(BIN / "airflow"), "api-server", "--port", str(port)], tmp_path / "api-server.log", env
    )
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_http(f"{url}/api/v2/monitor/health", timeout=180)
        except TimeoutError:
            raise AssertionError(f"api-server did not start:\n{api.output()[-4000:]}") from None
        monkeypatch.setenv("SENSORGUARD_AIRFLOW_URL", url)
        get_settings.cache_clear()
        request = {
            "model": "pump-airflow",
            "asset_ids": ["pump-01", "pump-02"],
            "params": {"max_states": 4},
        }
        job = submit_job(request)
        assert job.backend == "airflow" and job.airflow_run_id == f"job-{job.id}"

        # the DAG run exists in Airflow with the job as its conf
        run = httpx.get(f"{url}/api/v2/dags/{DAG}/dagRuns/{job.airflow_run_id}", timeout=30)
        assert run.status_code == 200, run.text
        conf = run.json()["conf"]
        assert conf["job_id"] == job.id
        assert conf["models"] == [{**request, "asset_ids": ["pump-01", "pump-02"]}]
        assert job_status(job.id).state in ("queued", "running")

        # the run fails (here: marked failed through the API): the job fails, naming it
        marked = httpx.patch(
            f"{url}/api/v2/dags/{DAG}/dagRuns/{job.airflow_run_id}",
            json={"state": "failed"},
            timeout=30,
        )
        assert marked.status_code == 200, marked.text
        failed = job_status(job.id)
        assert failed.state == "failed" and job.airflow_run_id in (failed.error or "")
        assert failed.hint and "Airflow" in failed.hint
        assert failed.to_dict()["error"] == failed.error and "version" not in failed.to_dict()
    finally:
        api.stop()

    # Airflow unreachable: the submission says so, and the job is not left queued
    monkeypatch.setenv("SENSORGUARD_AIRFLOW_URL", f"http://127.0.0.1:{free_port()}")
    get_settings.cache_clear()
    with pytest.raises(SensorGuardError, match="cannot reach Airflow"):
        submit_job({"model": "pump-airflow", "asset_ids": ["pump-01"]})
    newest = list_jobs(limit=1)[0]
    assert newest.state == "failed" and "cannot reach Airflow" in (newest.error or "")
