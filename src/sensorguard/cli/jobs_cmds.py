"""``sensorguard jobs submit/list/show/worker``: training jobs (wiring only).

Every command calls :mod:`sensorguard.pipelines.jobs` or :mod:`sensorguard.store.jobs`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import typer

from sensorguard.cli._common import (
    console,
    err_console,
    fail,
    guarded,
    parse_params,
    quiet_mlflow,
    stop_on_signals,
)

jobs_app = typer.Typer(
    help="Training jobs: queue a training of one model on some assets' readings (or a "
    "file), run the queue with a worker, and see each job's outcome.",
    no_args_is_help=True,
)


def _echo(job: Any) -> None:
    typer.echo(json.dumps(job.to_dict(), indent=2, default=str))


def jobs_submit(
    model: str = typer.Option(..., "--model", "-m", help="Registered model to train."),
    asset: list[str] | None = typer.Option(
        None, "--asset", "-a", help="Asset whose stored readings train it (repeatable)."
    ),
    file: Path | None = typer.Option(None, "--file", help="A readings file instead of assets."),
    start: str | None = typer.Option(None, "--start", help="Window start (ISO time)."),
    end: str | None = typer.Option(None, "--end", help="Window end, exclusive (ISO time)."),
    detector: str | None = typer.Option(None, "--detector", "-d", help="Detector name."),
    param: list[str] | None = typer.Option(None, "--param", "-p", help="NAME=VALUE."),
) -> None:
    """Queue a training job (or trigger the training DAG when Airflow is configured)."""
    from sensorguard.pipelines.jobs import submit_job

    request: dict[str, Any] = {"model": model}
    if asset:
        request["asset_ids"] = list(asset)
    for key, value in (("start", start), ("end", end), ("detector", detector)):
        if value is not None:
            request[key] = value
    if param:
        request["params"] = parse_params(param, "max_states=6")
    upload = file.read_bytes() if file is not None else None
    job = submit_job(request, upload=upload, upload_name=file.name if file else None)
    console.print(f"job [bold]{job.id}[/] {job.state} ({job.backend})", highlight=False)


def jobs_list(
    state: str | None = typer.Option(None, "--state", help="queued, running, succeeded, failed"),
    model: str | None = typer.Option(None, "--model", "-m", help="Only jobs of this model."),
    limit: int = typer.Option(50, "--limit", min=1),
) -> None:
    """Jobs, newest first."""
    from rich import box
    from rich.table import Table

    from sensorguard.store.jobs import STATES, list_jobs

    if state is not None and state not in STATES:
        raise fail(f"unknown state {state!r}: use one of {', '.join(STATES)}")
    table = Table(title="training jobs", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("id", no_wrap=True)  # scripts copy it
    for col in ("state", "model", "created", "version", "detail"):
        table.add_column(col, overflow="fold")
    for j in list_jobs(state=state, model=model, limit=limit):
        r = j.result or {}
        detail = j.error or ((r.get("gate") or {}).get("summary") or "")
        table.add_row(
            j.id,
            j.state,
            j.model,
            f"{j.created_at:%m-%d %H:%M:%S}",
            str(r.get("version") or ""),
            detail,
        )
    console.print(table)


def jobs_show(job_id: str = typer.Argument(..., help="Job id.")) -> None:
    """One job as JSON (Airflow jobs: the DAG run's state, read now)."""
    from sensorguard.pipelines.jobs import job_status

    _echo(job_status(job_id))


def jobs_worker(
    once: bool = typer.Option(False, "--once", help="Exit when the queue is empty."),
    poll: float = typer.Option(1.0, "--poll", min=0.05, help="Seconds between queue checks."),
) -> None:
    """Run queued training jobs one at a time until SIGTERM/SIGINT.

    Jobs left running by a worker that died are queued again once their heartbeat is
    older than SENSORGUARD_JOB_STALE_SECONDS.
    """
    from sensorguard.pipelines.jobs import run_worker, worker_name

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    quiet_mlflow()
    stop = stop_on_signals()
    name = worker_name()
    err_console.print(f"training-job worker {name} waiting for jobs", highlight=False)
    done = run_worker(stop, poll=poll, once=once, name=name)
    err_console.print(f"worker {name} stopped after {done} job(s)", highlight=False)


def register(app: typer.Typer) -> None:
    jobs_app.command("submit")(guarded(jobs_submit))
    jobs_app.command("list")(guarded(jobs_list))
    jobs_app.command("show")(guarded(jobs_show))
    jobs_app.command("worker")(guarded(jobs_worker))
    app.add_typer(jobs_app, name="jobs")
