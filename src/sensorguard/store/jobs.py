"""The training-job queue: one row per job in ``training_jobs``.

Rules of this module:

* states go ``queued`` → ``running`` → ``succeeded`` | ``failed`` and nothing else; a job
  is only ever reported ``succeeded`` by :func:`finish_job` with a result;
* a worker claims a job with a conditional update (``state = 'queued'``), so two workers
  never run the same job; it renews ``heartbeat_at`` while it runs;
* a ``running`` job whose heartbeat is older than ``stale_seconds`` lost its worker
  (killed, machine gone): :func:`requeue_stale` puts it back in the queue, at most
  :data:`MAX_ATTEMPTS` times, then fails it with that reason;
* a finish from a worker that no longer owns the job (it was requeued meanwhile) is
  ignored, so a late writer cannot overwrite the newer attempt.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa

from sensorguard.store.engine import ensure_schema
from sensorguard.store.schema import training_jobs
from sensorguard.timeutil import utc_now

STATES = ("queued", "running", "succeeded", "failed")
MAX_ATTEMPTS = 3


@dataclass
class Job:
    id: str
    state: str
    model: str
    request: dict[str, Any]
    backend: str
    attempts: int
    created_at: datetime
    started_at: datetime | None = None
    heartbeat_at: datetime | None = None
    finished_at: datetime | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    hint: str | None = None
    airflow_run_id: str | None = None
    worker: str | None = None
    upload_name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "state": self.state,
            "model": self.model,
            "backend": self.backend,
            "request": self.request,
            "attempts": self.attempts,
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
        }
        if self.upload_name:
            out["upload_name"] = self.upload_name
        if self.airflow_run_id:
            out["airflow_run_id"] = self.airflow_run_id
        if self.result:
            out.update(self.result)
        if self.state == "failed":
            out["error"] = self.error or "the job failed"
            out["hint"] = self.hint
        return out


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.replace(tzinfo=UTC).isoformat()


def _job(r: Any) -> Job:
    return Job(
        id=r.id,
        state=r.state,
        model=r.model_name,
        request=orjson.loads(r.request),
        backend=r.backend,
        attempts=int(r.attempts),
        created_at=r.created_at,
        started_at=r.started_at,
        heartbeat_at=r.heartbeat_at,
        finished_at=r.finished_at,
        result=orjson.loads(r.result) if r.result else None,
        error=r.error,
        hint=r.hint,
        airflow_run_id=r.airflow_run_id,
        worker=r.worker,
        upload_name=r.upload_name,
    )


_LIGHT = [c for c in training_jobs.c if c.name != "upload"]


def enqueue_job(
    model: str,
    request: dict[str, Any],
    *,
    backend: str = "local",
    upload: bytes | None = None,
    upload_name: str | None = None,
    url: str | None = None,
) -> Job:
    """A new ``queued`` job (the uploaded file, if any, is kept in the row)."""
    engine = ensure_schema(url)
    job_id = uuid.uuid4().hex
    now = utc_now()
    with engine.begin() as conn:
        conn.execute(
            training_jobs.insert().values(
                id=job_id,
                state="queued",
                model_name=model,
                request=orjson.dumps(request).decode(),
                upload=upload,
                upload_name=upload_name,
                backend=backend,
                attempts=0,
                created_at=now,
            )
        )
    return Job(job_id, "queued", model, request, backend, 0, now, upload_name=upload_name)


def get_job(job_id: str, url: str | None = None) -> Job | None:
    engine = ensure_schema(url)
    with engine.connect() as conn:
        r = conn.execute(sa.select(*_LIGHT).where(training_jobs.c.id == job_id)).first()
    return None if r is None else _job(r)


def job_upload(job_id: str, url: str | None = None) -> bytes | None:
    """The file uploaded with the job, if any."""
    engine = ensure_schema(url)
    with engine.connect() as conn:
        return conn.execute(  # type: ignore[no-any-return]
            sa.select(training_jobs.c.upload).where(training_jobs.c.id == job_id)
        ).scalar()


def list_jobs(
    *,
    state: str | None = None,
    model: str | None = None,
    limit: int = 100,
    url: str | None = None,
) -> list[Job]:
    """Jobs, newest first."""
    engine = ensure_schema(url)
    q = sa.select(*_LIGHT).order_by(training_jobs.c.created_at.desc()).limit(limit)
    if state is not None:
        q = q.where(training_jobs.c.state == state)
    if model is not None:
        q = q.where(training_jobs.c.model_name == model)
    with engine.connect() as conn:
        return [_job(r) for r in conn.execute(q)]


def requeue_stale(stale_seconds: float, url: str | None = None) -> list[str]:
    """Queue again the local jobs whose worker stopped sending heartbeats; returns their ids.

    After :data:`MAX_ATTEMPTS` attempts a job is failed instead (it may be what kills
    its worker).
    """
    engine = ensure_schema(url)
    cutoff = utc_now() - timedelta(seconds=stale_seconds)
    t = training_jobs
    stale = (t.c.state == "running") & (t.c.backend == "local") & (t.c.heartbeat_at < cutoff)
    with engine.begin() as conn:
        rows = conn.execute(sa.select(t.c.id, t.c.attempts, t.c.worker).where(stale)).all()
        requeued = []
        for job_id, attempts, worker in rows:
            cond = (t.c.id == job_id) & (t.c.state == "running") & (t.c.worker == worker)
            if attempts >= MAX_ATTEMPTS:
                conn.execute(
                    t.update()
                    .where(cond)
                    .values(
                        state="failed",
                        finished_at=utc_now(),
                        error=f"the worker running this job stopped {attempts} times "
                        f"(last: {worker})",
                        hint="check the worker's log for what killed it (memory?), then "
                        "submit the job again",
                    )
                )
            else:
                conn.execute(t.update().where(cond).values(state="queued", worker=None))
                requeued.append(job_id)
    return requeued


def claim_next_job(worker: str, url: str | None = None) -> Job | None:
    """Move the oldest queued local job to ``running`` for ``worker``; ``None`` if none."""
    engine = ensure_schema(url)
    t = training_jobs
    for _ in range(5):  # another worker may win the race for a job: try the next one
        with engine.begin() as conn:
            job_id = conn.execute(
                sa.select(t.c.id)
                .where((t.c.state == "queued") & (t.c.backend == "local"))
                .order_by(t.c.created_at)
                .limit(1)
            ).scalar()
            if job_id is None:
                return None
            now = utc_now()
            won = conn.execute(
                t.update()
                .where((t.c.id == job_id) & (t.c.state == "queued"))
                .values(
                    state="running",
                    worker=worker,
                    started_at=now,
                    heartbeat_at=now,
                    attempts=t.c.attempts + 1,
                )
            ).rowcount
        if won:
            return get_job(job_id, url)
    return None


def heartbeat(job_id: str, worker: str, url: str | None = None) -> bool:
    """Renew the claim; ``False`` when the job is no longer this worker's."""
    engine = ensure_schema(url)
    t = training_jobs
    with engine.begin() as conn:
        n = conn.execute(
            t.update()
            .where((t.c.id == job_id) & (t.c.worker == worker) & (t.c.state == "running"))
            .values(heartbeat_at=utc_now())
        ).rowcount
    return bool(n)


def finish_job(
    job_id: str,
    *,
    worker: str | None,
    succeeded: bool,
    result: dict[str, Any] | None = None,
    error: str | None = None,
    hint: str | None = None,
    url: str | None = None,
) -> bool:
    """Record the outcome; ``False`` (nothing written) when ``worker`` lost the job."""
    engine = ensure_schema(url)
    t = training_jobs
    cond = (t.c.id == job_id) & t.c.state.in_(("queued", "running"))
    if worker is not None:
        cond = cond & (t.c.worker == worker)
    with engine.begin() as conn:
        n = conn.execute(
            t.update()
            .where(cond)
            .values(
                state="succeeded" if succeeded else "failed",
                finished_at=utc_now(),
                result=None if result is None else orjson.dumps(result).decode(),
                error=None if succeeded else (error or "the job failed"),
                hint=None if succeeded else hint,
            )
        ).rowcount
    return bool(n)


def update_job(job_id: str, url: str | None = None, **values: Any) -> None:
    """Set columns of a job (the Airflow backend mirrors the DAG run's state here)."""
    if "result" in values and values["result"] is not None:
        values["result"] = orjson.dumps(values["result"]).decode()
    engine = ensure_schema(url)
    with engine.begin() as conn:
        conn.execute(training_jobs.update().where(training_jobs.c.id == job_id).values(**values))
