"""Training jobs on demand: submit, run (local worker or Airflow), report.

Rules of this module:

* a job is ``{"model", "asset_ids" | an uploaded file, optional "start", "end",
  "detector", "params", "holdout"}``; :func:`check_request` refuses a malformed one at
  submission (one line: what is wrong and how to fix it), everything that needs the data
  (readings present, enough normal rows, ...) fails the job later with its reason;
* **local backend** (no ``SENSORGUARD_AIRFLOW_URL``): jobs wait in the store's
  ``training_jobs`` table and :func:`run_worker` runs them one at a time, oldest first.
  A worker heartbeats while it trains; a job whose worker died is queued again
  (``store.jobs.requeue_stale``) when a worker starts or polls, so queued and
  interrupted jobs survive restarts. Training is idempotent per job id (the registered
  version is tagged with it), so a re-run after a crash never registers twice;
* **Airflow backend** (``SENSORGUARD_AIRFLOW_URL`` set): submitting triggers a run of the
  training DAG through Airflow's REST API with the job as its conf; the job's state is
  that DAG run's, read back (and mirrored into the table) when the job is asked for;
* ``succeeded`` means trained and registered, and carries the run id, the version and
  the gate verdict with its reasons (a rejection by the gate is a normal outcome); any
  error is ``failed`` with the error and its hint — never reported as completed.

(About 450 lines on purpose: both backends answer the same three calls (submit, status,
run) with the same job states; split by backend, the rules of those states would live
twice.)
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from sensorguard.config import Settings, get_settings
from sensorguard.errors import SensorGuardError
from sensorguard.store.jobs import Job

log = logging.getLogger("sensorguard.jobs")

_KEYS = {"model", "asset_ids", "start", "end", "detector", "params", "holdout"}
UPLOAD_SUFFIXES = (".csv", ".parquet", ".csv.gz", ".tsv", ".txt")


def check_request(request: dict[str, Any], *, upload_name: str | None = None) -> dict[str, Any]:
    """The job parameters, checked: a clear ``SensorGuardError`` for a bad one."""
    from sensorguard.detectors import get_detector_class, make_detector
    from sensorguard.store.assets import check_name

    if not isinstance(request, dict):
        raise SensorGuardError(
            "a training job is a JSON object", 'e.g. {"model": "pump-a", "asset_ids": ["pump-01"]}'
        )
    unknown = sorted(set(request) - _KEYS)
    if unknown:
        raise SensorGuardError(
            f"unknown field(s) {', '.join(unknown)} in the training job",
            f"accepted: {', '.join(sorted(_KEYS))}",
        )
    out: dict[str, Any] = {"model": check_name(request.get("model"), "model name")}
    assets = request.get("asset_ids")
    if upload_name is None:
        if not isinstance(assets, list) or not assets:
            raise SensorGuardError(
                "asset_ids must be a non-empty list of asset ids (or upload a readings file)",
                'e.g. "asset_ids": ["pump-01", "pump-02"]',
            )
        ids = [check_name(a, "asset id") for a in assets]
        if len(set(ids)) != len(ids):
            raise SensorGuardError("asset_ids names an asset twice", "name each asset once")
        out["asset_ids"] = ids
    elif assets is not None:
        raise SensorGuardError(
            "give either asset_ids (readings from the store) or an uploaded file, not both"
        )
    from sensorguard.timeutil import to_utc_naive

    for key in ("start", "end"):
        value = request.get(key)
        if value is not None:
            if not isinstance(value, str):  # to_utc_naive would read a number as epoch seconds
                raise SensorGuardError(
                    f"{key} must be an ISO 8601 time (text), got {value!r}",
                    f'e.g. "{key}": "2026-01-01" or "2026-01-01T06:00:00Z"',
                )
            out[key] = to_utc_naive(value, what=key).isoformat()
    if "start" in out and "end" in out and out["end"] <= out["start"]:
        raise SensorGuardError(f"end {out['end']} is not after start {out['start']}")
    detector = request.get("detector")
    if detector is not None:
        if not isinstance(detector, str):
            raise SensorGuardError("detector must be a detector name")
        get_detector_class(detector)
        out["detector"] = detector
    params = request.get("params")
    if params is not None:
        if not isinstance(params, dict):
            raise SensorGuardError(
                "params must be an object of detector parameters",
                'e.g. "params": {"max_states": 6}',
            )
        make_detector(detector or get_settings().detector, **params)  # names, types, ranges
        out["params"] = params
    holdout = request.get("holdout")
    if holdout is not None:
        if isinstance(holdout, bool) or not isinstance(holdout, int | float):
            raise SensorGuardError("holdout must be a number in (0, 1)", '"holdout": 0.3')
        if not 0 < holdout < 1:
            raise SensorGuardError(f"holdout must be in (0, 1), got {holdout}", '"holdout": 0.3')
        out["holdout"] = float(holdout)
    return out


def submit_job(
    request: dict[str, Any],
    *,
    upload: bytes | None = None,
    upload_name: str | None = None,
    settings: Settings | None = None,
) -> Job:
    """Check ``request`` and queue it (local) or trigger a DAG run (Airflow)."""
    from sensorguard.store.jobs import enqueue_job, update_job

    settings = settings or get_settings()
    if upload is not None:
        upload_name = Path(upload_name or "upload.csv").name
        if not upload_name.lower().endswith(UPLOAD_SUFFIXES):
            raise SensorGuardError(
                f"uploaded file {upload_name!r}: not a readings file",
                "upload CSV (.csv, .csv.gz, .tsv) or Parquet (.parquet)",
            )
        if not upload:
            raise SensorGuardError("the uploaded file is empty", "upload readings to train on")
    spec = check_request(request, upload_name=upload_name if upload is not None else None)
    url = settings.resolved_store_url
    backend = "airflow" if settings.airflow_url else "local"
    job = enqueue_job(
        spec["model"], spec, backend=backend, upload=upload, upload_name=upload_name, url=url
    )
    if backend == "airflow":
        client = AirflowClient.from_settings(settings)
        try:
            run_id = client.trigger(job.id, spec, upload_name=job.upload_name)
        except SensorGuardError as exc:
            from sensorguard.store.jobs import finish_job

            finish_job(
                job.id, worker=None, succeeded=False, error=exc.message, hint=exc.hint, url=url
            )
            raise
        update_job(job.id, url, airflow_run_id=run_id)
        job.airflow_run_id = run_id
    return job


def job_status(job_id: str, settings: Settings | None = None) -> Job:
    """The job (``SensorGuardError`` when there is none); Airflow jobs are refreshed."""
    from sensorguard.store.jobs import get_job

    settings = settings or get_settings()
    job = get_job(job_id, settings.resolved_store_url)
    if job is None:
        raise SensorGuardError(
            f"no training job {job_id!r}", "list the jobs with GET /v1/training-jobs"
        )
    if job.backend == "airflow" and job.state in ("queued", "running") and job.airflow_run_id:
        job = AirflowClient.from_settings(settings).refresh(job, settings)
    return job


# ---------------------------------------------------------------- running one job


def run_job(job: Job, settings: Settings | None = None) -> dict[str, Any]:
    """Train, register and gate one job; the result stored with a succeeded job."""
    from sensorguard.pipelines.fleet import fleet_detector, job_readings, settings_for
    from sensorguard.pipelines.lifecycle import gate_and_promote
    from sensorguard.pipelines.training import train_and_register

    settings = settings_for(job.model, settings or get_settings())
    spec = job.request
    readings = job_readings(job, settings)
    detector, params = fleet_detector(readings, spec.get("detector"), spec.get("params"), settings)
    result = train_and_register(
        readings,
        detector_name=detector,
        params=params,
        settings=settings,
        trigger=f"job:{job.id}",
        holdout=float(spec.get("holdout", 0.3)),
        idempotency_key=f"job:{job.id}",
    )
    out: dict[str, Any] = {
        "run_id": result.run_id,
        "version": result.version,
        "detector": result.detector_name,
        "train_rows": result.train_rows,
        "eval_rows": result.eval_rows,
    }
    if result.reused or result.eval_readings is None or result.version is None:
        # no labelled held-out data (or a re-run that found its version): the gate cannot
        # judge here; the version stays a candidate
        reason = (
            "the readings have no labels, so the gate cannot measure detection"
            if result.eval_readings is None and not result.reused
            else "version registered by an earlier attempt of this job; gate it with "
            f"`sensorguard models promote {result.version} --model {job.model}`"
        )
        out["gate"] = {"passed": False, "evaluated": False, "reasons": [reason]}
        out["promoted"] = False
        return out
    outcome = gate_and_promote(
        result.version,
        result.eval_readings,
        settings=settings,
        trigger=f"job:{job.id}",
        candidate_detector=result.detector,
        candidate_metrics=result.evaluation,
    )
    decision = outcome.decision
    out["gate"] = {
        "passed": bool(decision.passed) if decision else False,
        "evaluated": True,
        "reasons": list(decision.reasons) if decision else [],
        "summary": decision.summary() if decision else "",
        "production_version": decision.production_version if decision else None,
    }
    out["promoted"] = outcome.action == "promote"
    return out


# ---------------------------------------------------------------- the local worker


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_worker(
    stop: threading.Event | None = None,
    *,
    settings: Settings | None = None,
    poll: float = 1.0,
    once: bool = False,
    name: str | None = None,
) -> int:
    """Run queued local jobs one at a time until ``stop`` is set; returns jobs run.

    ``once``: stop when the queue is empty. Stale running jobs (dead workers) are
    queued again first, on every poll.
    """
    from sensorguard.store.jobs import claim_next_job, requeue_stale

    settings = settings or get_settings()
    stop = stop or threading.Event()
    name = name or worker_name()
    url = settings.resolved_store_url
    done = 0
    while not stop.is_set():
        for job_id in requeue_stale(settings.job_stale_seconds, url):
            log.warning("training job %s lost its worker: queued again", job_id)
        job = claim_next_job(name, url)
        if job is None:
            if once:
                break
            stop.wait(poll)
            continue
        execute(job, name, settings)
        done += 1
    return done


def execute(job: Job, worker: str, settings: Settings) -> bool:
    """Run a claimed job with heartbeats; record success or failure. True if succeeded."""
    from sensorguard.store.jobs import finish_job, heartbeat

    url = settings.resolved_store_url
    beat_stop = threading.Event()
    interval = max(1.0, settings.job_stale_seconds / 4)

    def beat() -> None:
        while not beat_stop.wait(interval):
            if not heartbeat(job.id, worker, url):
                log.warning("training job %s is no longer this worker's", job.id)
                return

    beater = threading.Thread(target=beat, name=f"job-heartbeat-{job.id}", daemon=True)
    beater.start()
    log.info("training job %s (model %s) started on %s", job.id, job.model, worker)
    t0 = time.perf_counter()
    try:
        result = run_job(job, settings)
    except SensorGuardError as exc:
        finish_job(
            job.id, worker=worker, succeeded=False, error=exc.message, hint=exc.hint, url=url
        )
        log.warning("training job %s failed: %s", job.id, exc)
        return False
    except Exception as exc:  # a fault, not a user error: keep the worker alive, say so
        log.exception("training job %s crashed", job.id)
        finish_job(
            job.id,
            worker=worker,
            succeeded=False,
            error=f"internal error: {type(exc).__name__}: {exc}",
            hint="see the worker's log; submit the job again once the cause is fixed",
            url=url,
        )
        return False
    finally:
        beat_stop.set()
        beater.join(timeout=5)
    result["seconds"] = round(time.perf_counter() - t0, 2)
    finish_job(job.id, worker=worker, succeeded=True, result=result, url=url)
    log.info("training job %s succeeded: version %s", job.id, result.get("version"))
    return True


# ---------------------------------------------------------------- Airflow


_AIRFLOW_STATES = {
    "queued": "queued",
    "running": "running",
    "success": "succeeded",
    "failed": "failed",
}


class AirflowClient:
    """Airflow 3's REST API (``/api/v2``) with a JWT from ``/auth/token``."""

    def __init__(self, url: str, dag_id: str, username: str | None, password: str | None):
        self.url = url.rstrip("/")
        self.dag_id = dag_id
        self.username = username
        self.password = password
        self._token: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> AirflowClient:
        if not settings.airflow_url:
            raise SensorGuardError("SENSORGUARD_AIRFLOW_URL is not set")
        return cls(
            settings.airflow_url,
            settings.airflow_training_dag,
            settings.airflow_username,
            settings.airflow_password,
        )

    def _headers(self) -> dict[str, str]:
        import httpx

        if self._token is None and self.username:
            try:
                r = httpx.post(
                    f"{self.url}/auth/token",
                    json={"username": self.username, "password": self.password or ""},
                    timeout=10,
                )
            except httpx.HTTPError as exc:
                raise self._unreachable(exc) from None
            if r.status_code >= 400:
                raise SensorGuardError(
                    f"Airflow at {self.url} refused the login ({r.status_code})",
                    "check SENSORGUARD_AIRFLOW_USERNAME / SENSORGUARD_AIRFLOW_PASSWORD",
                )
            self._token = str(r.json()["access_token"])
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    def _unreachable(self, exc: Exception) -> SensorGuardError:
        return SensorGuardError(
            f"cannot reach Airflow at {self.url}: {exc}",
            "check SENSORGUARD_AIRFLOW_URL and that `airflow api-server` runs",
        )

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        import httpx

        try:
            r = httpx.request(
                method, f"{self.url}{path}", headers=self._headers(), timeout=15, **kw
            )
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        if r.status_code >= 400:
            raise SensorGuardError(
                f"Airflow answered {r.status_code} to {method} {path}: {r.text[:300]}",
                f"check that the DAG {self.dag_id} exists and is not paused",
            )
        return r.json()

    def trigger(self, job_id: str, spec: dict[str, Any], upload_name: str | None = None) -> str:
        """Start a run of the training DAG for ``spec``; returns the DAG run id."""
        run_id = f"job-{job_id}"
        model = {**spec, "upload_name": upload_name} if upload_name else dict(spec)
        conf = {"job_id": job_id, "models": [model]}
        self._call(
            "POST",
            f"/api/v2/dags/{self.dag_id}/dagRuns",
            json={"dag_run_id": run_id, "logical_date": None, "conf": conf},
        )
        return run_id

    def refresh(self, job: Job, settings: Settings) -> Job:
        """Mirror the DAG run's state into the job (and its verdict once it ended)."""
        from sensorguard.store.jobs import finish_job, get_job, update_job

        url = settings.resolved_store_url
        base = f"/api/v2/dags/{self.dag_id}/dagRuns/{job.airflow_run_id}"
        run = self._call("GET", base)
        state = _AIRFLOW_STATES.get(str(run.get("state")), "running")
        if state in ("queued", "running"):
            if state != job.state:
                update_job(job.id, url, state=state)
            return get_job(job.id, url) or job
        tasks = self._call("GET", f"{base}/taskInstances").get("task_instances", [])
        if state == "failed":
            failed = [
                t["task_id"] for t in tasks if t.get("state") in ("failed", "upstream_failed")
            ]
            finish_job(
                job.id,
                worker=None,
                succeeded=False,
                error=f"the DAG run {job.airflow_run_id} failed"
                + (f" in {', '.join(sorted(set(failed)))}" if failed else ""),
                hint=f"see the task logs of run {job.airflow_run_id} in the Airflow UI",
                url=url,
            )
        else:
            result: dict[str, Any] = {"airflow_run_id": job.airflow_run_id}
            for task_id, key in (("train.train_candidate", "train"), ("train.gate", "gate")):
                try:
                    entry = self._call(
                        "GET",
                        f"{base}/taskInstances/{task_id}/xcomEntries/return_value",
                        params={"map_index": 0},
                    )
                except SensorGuardError:
                    continue
                value = entry.get("value")
                if key == "train" and isinstance(value, dict):
                    result.update(run_id=value.get("run_id"), version=value.get("version"))
                elif isinstance(value, dict):
                    result["gate"] = {
                        "passed": bool(value.get("passed")),
                        "evaluated": True,
                        "reasons": value.get("reasons", []),
                        "summary": value.get("reason", ""),
                    }
            finish_job(job.id, worker=None, succeeded=True, result=result, url=url)
        return get_job(job.id, url) or job
