"""Deployment and store commands: `stack up/status/down`, `ingest`, `db upgrade`,
`store status/score/alarms`. Wiring only: the work is in `sensorguard.store` and
`sensorguard.deploy.local_stack`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from sensorguard.cli._common import (
    LabelColumnOpt,
    SepOpt,
    TimeColumnOpt,
    console,
    err_console,
    guarded,
    progress,
    read_options,
)

PANEL = "Deployment and readings store"

stack_app = typer.Typer(
    help="Run MLflow (on PostgreSQL, serving artifacts) and the predictor as local processes.",
    no_args_is_help=True,
)
db_app = typer.Typer(help="Readings store schema (Alembic migrations).", no_args_is_help=True)
store_app = typer.Typer(
    help="Readings store: what is stored, score a stored window, list alarms.",
    no_args_is_help=True,
)

_URL_HELP = (
    "SQLAlchemy URL of the readings store, e.g. postgresql://user@host:5432/readings "
    "[default: SENSORGUARD_STORE_URL, else SQLite in the SensorGuard home]"
)


def _home(home: Path | None) -> Path:
    if home is not None:
        return home
    from sensorguard.config import get_settings

    return get_settings().home


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


# ------------------------------------------------------------------------- stack


def stack_up(
    pg_url: str = typer.Option(
        ...,
        "--pg-url",
        envvar="SENSORGUARD_PG_URL",
        help="PostgreSQL server URL with a user that may create databases, "
        "e.g. postgresql://postgres@127.0.0.1:5432/postgres. With a password, prefer "
        "SENSORGUARD_PG_URL or ~/.pgpass to the command line (argv is visible to every "
        "local user); the services get it by environment only.",
    ),
    mlflow_port: int = typer.Option(
        5001, "--mlflow-port", min=1, max=65535, help="MLflow server port."
    ),
    predictor_port: int = typer.Option(
        8000, "--predictor-port", min=1, max=65535, help="Predictor port."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Bind address of both services."),
    home: Path | None = typer.Option(
        None, "--home", help="SensorGuard home; pid files, logs and artifacts go to HOME/stack."
    ),
    mlflow_db: str = typer.Option("sensorguard_mlflow", help="Database for MLflow metadata."),
    readings_db: str = typer.Option("sensorguard_readings", help="Database for the store."),
    no_predictor: bool = typer.Option(False, "--no-predictor", help="Start MLflow only."),
    timeout: float = typer.Option(120.0, help="Seconds to wait for each service's health."),
) -> None:
    """Start a PostgreSQL-backed `mlflow server` (artifacts served from HOME/stack/artifacts)
    and the predictor as background processes; create their databases if missing."""
    from sensorguard.deploy.local_stack import StackConfig, up

    cfg = StackConfig(
        pg_url=pg_url,
        home=_home(home),
        host=host,
        mlflow_port=mlflow_port,
        predictor_port=predictor_port,
        mlflow_db=mlflow_db,
        readings_db=readings_db,
        start_timeout=timeout,
        start_predictor=not no_predictor,
    )
    infos = up(cfg, on_step=lambda msg: err_console.print(f"[dim]starting[/] {msg}"))
    _print_status(infos)
    mlflow = next(i for i in infos if i.name == "mlflow")
    typer.echo(
        f"\nexport MLFLOW_TRACKING_URI={mlflow.url}\n"
        f"export SENSORGUARD_STORE_URL={_safe_url(_readings_url(cfg))}\n"
        f"logs and pid files: {cfg.stack_dir}\n"
        "stop with: sensorguard stack down" + (f" --home {home}" if home else "")
    )


def _readings_url(cfg: object) -> str:
    from sensorguard.deploy.local_stack import StackConfig, pg_url

    assert isinstance(cfg, StackConfig)
    return pg_url(cfg.pg_url, cfg.readings_db).render_as_string(hide_password=False)


def _print_status(infos: list) -> None:  # type: ignore[type-arg]
    from rich.table import Table

    table = Table("service", "pid", "url", "state", "log")
    for info in infos:
        colour = "green" if info.healthy else "red" if info.pid else "dim"
        table.add_row(
            info.name,
            str(info.pid or "-"),
            info.url or "-",
            f"[{colour}]{info.detail}[/]",
            info.log,
        )
    console.print(table)


def stack_status(
    home: Path | None = typer.Option(None, "--home", help="SensorGuard home of the stack."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Show whether the local services run and answer their health checks."""
    from sensorguard.deploy.local_stack import status

    infos = status(_home(home))
    if as_json:
        typer.echo(json.dumps([i.as_dict() for i in infos], indent=2))
    else:
        _print_status(infos)
    if any(i.pid and not i.running for i in infos):
        raise typer.Exit(1)


def stack_down(
    home: Path | None = typer.Option(None, "--home", help="SensorGuard home of the stack."),
    timeout: float = typer.Option(15.0, help="Seconds between SIGTERM and SIGKILL."),
) -> None:
    """Stop the local services: SIGTERM, then SIGKILL after the timeout."""
    from sensorguard.deploy.local_stack import down

    for name, outcome in down(_home(home), timeout).items():
        console.print(f"{name}: {outcome}")


# ------------------------------------------------------------------------- db


def db_upgrade(
    url: str | None = typer.Option(None, "--url", help=_URL_HELP),
    revision: str = typer.Option("head", help="Target migration revision."),
) -> None:
    """Create or migrate the readings store tables (readings, predictions, alarm_events)."""
    from sensorguard.store import resolve_url, upgrade

    target = resolve_url(url)
    rev = upgrade(target, revision)
    console.print(f"readings store at {_safe_url(target)} is at revision {rev}", highlight=False)


def db_current(url: str | None = typer.Option(None, "--url", help=_URL_HELP)) -> None:
    """Show the applied migration revision and the newest one shipped."""
    from sensorguard.store import current_revision, head_revision

    current = current_revision(url)
    console.print(f"current: {current or 'none (empty database)'}   head: {head_revision()}")


# ------------------------------------------------------------------------- ingest


def ingest(
    file: Path = typer.Argument(..., help="Readings file (CSV, CSV.gz or Parquet)."),
    asset: str | None = typer.Option(
        None, "--asset", help="Asset id of every reading (else the file's asset column)."
    ),
    url: str | None = typer.Option(None, "--url", help=_URL_HELP),
    sep: SepOpt = None,
    time_column: TimeColumnOpt = None,
    label_column: LabelColumnOpt = None,
    chunk_rows: int = typer.Option(100_000, min=1, help="Readings per COPY batch."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Validate a readings file and store it (PostgreSQL: binary COPY). Idempotent:
    readings already stored for the same asset and time are counted as duplicates, new
    sensors at a stored time are merged, a changed value is refused as a conflict."""
    from sensorguard.store import ingest_file, resolve_url

    target = resolve_url(url)
    with progress() as bar:
        task = bar.add_task(f"ingesting {file.name}", total=None)

        def on_progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        result = ingest_file(
            file,
            asset=asset,
            url=target,
            chunk_rows=chunk_rows,
            on_progress=on_progress,
            **read_options(sep=sep, time_column=time_column, label_column=label_column),
        )
    if as_json:
        typer.echo(json.dumps(result.as_dict()))
        return
    console.print(
        f"{result.rows:,} readings for {', '.join(result.assets)}: {result.inserted:,} "
        f"inserted, {result.merged:,} merged into stored readings, "
        f"{result.duplicates:,} already stored "
        f"({result.seconds:.2f}s, {result.readings_per_second:,.0f} readings/s) "
        f"into {_safe_url(target)}",
        highlight=False,
    )
    for note in result.notes:
        err_console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)


# ------------------------------------------------------------------------- store


def store_status(
    url: str | None = typer.Option(None, "--url", help=_URL_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List the stored assets with reading counts and time ranges."""
    from rich.table import Table

    from sensorguard.store import list_assets

    frame = list_assets(url)
    if as_json:
        typer.echo(frame.to_json(orient="records", date_format="iso"))
        return
    if frame.empty:
        console.print("no readings stored yet — add some with `sensorguard ingest FILE`")
        return
    table = Table("asset", "readings", "first", "last")
    for row in frame.itertuples(index=False):
        table.add_row(str(row.asset_id), f"{row.readings:,}", str(row.first), str(row.last))
    console.print(table)


def store_export(
    asset: str = typer.Option(..., "--asset", help="Asset to export."),
    output: Path = typer.Option(..., "--output", "-o", help="File to write: .csv or .parquet."),
    start: str | None = typer.Option(None, "--start", help="Window start (ISO 8601, UTC)."),
    end: str | None = typer.Option(None, "--end", help="Window end, exclusive."),
    url: str | None = typer.Option(None, "--url", help=_URL_HELP),
) -> None:
    """Write a stored window of readings to a file (e.g. to train on it with `train`)."""
    from sensorguard.data.loading import write_frame
    from sensorguard.store import read_window_frame

    frame = read_window_frame(asset, start, end, url)
    path = write_frame(frame, output)
    console.print(
        f"{len(frame):,} readings of {asset} ({frame['timestamp'].iloc[0]} to "
        f"{frame['timestamp'].iloc[-1]}) written to {path}",
        highlight=False,
    )


def store_score(
    asset: str = typer.Option(..., "--asset", help="Asset whose readings are scored."),
    start: str | None = typer.Option(None, "--start", help="Window start (ISO 8601, UTC)."),
    end: str | None = typer.Option(None, "--end", help="Window end, exclusive."),
    model: str | None = typer.Option(
        None,
        "--model",
        help="models:/NAME@ALIAS, models:/NAME/VERSION or a model folder "
        "[default: the production alias]",
    ),
    url: str | None = typer.Option(None, "--url", help=_URL_HELP),
) -> None:
    """Score a stored window and write predictions and alarm events back to the store."""
    from sensorguard.pipelines.store_scoring import score_window_and_store

    with progress() as bar:
        bar.add_task(f"scoring {asset}", total=None)
        res = score_window_and_store(asset, start, end, model=model, url=url)
    console.print(
        f"{res.readings:,} readings of {res.asset} scored with {res.model_name} "
        f"v{res.model_version}: {res.anomalies:,} anomalous, {res.alarms} alarm event(s) stored",
        highlight=False,
    )


def store_alarms(
    asset: str | None = typer.Option(None, "--asset", help="Only this asset."),
    url: str | None = typer.Option(None, "--url", help=_URL_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List stored alarm events (start, end, blamed sensors, model version)."""
    from rich.table import Table

    from sensorguard.store import read_alarms

    frame = read_alarms(asset, url)
    if as_json:
        typer.echo(frame.to_json(orient="records", date_format="iso"))
        return
    if frame.empty:
        console.print("no alarm events stored")
        return
    table = Table("asset", "start", "end", "readings", "peak score", "top sensors", "model")
    for r in frame.itertuples(index=False):
        table.add_row(
            str(r.asset_id),
            str(r.start_time),
            str(r.end_time),
            str(r.n_readings),
            f"{r.peak_score:.3g}",
            str(r.top_sensors),
            f"{r.model_name} v{r.model_version}",
        )
    console.print(table)


def store_prune(
    delivery_days: float | None = typer.Option(
        None,
        "--delivery-days",
        min=0,
        help="Keep the delivery log this many days; 0 = forever "
        "[default: SENSORGUARD_DELIVERY_RETENTION_DAYS or 30].",
    ),
    dead_letter_days: float | None = typer.Option(
        None,
        "--dead-letter-days",
        min=0,
        help="Keep dead letters this many days; 0 = forever "
        "[default: SENSORGUARD_DEAD_LETTER_RETENTION_DAYS or 30].",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only count what would be deleted."),
    url: str | None = typer.Option(None, "--url", help=_URL_HELP),
) -> None:
    """Delete old rows of the notification delivery log and the dead-letter table, as
    the watch service does every SENSORGUARD_RETENTION_INTERVAL seconds. Pending
    deliveries and the notifications of alarms still open are never deleted.

    Examples:

      sensorguard store prune --dry-run

      sensorguard store prune --delivery-days 7 --dead-letter-days 3
    """
    from sensorguard.store import ensure_schema
    from sensorguard.store.retention import RetentionPolicy, count_prunable, prune

    policy = RetentionPolicy.from_settings(
        delivery_days=delivery_days, dead_letter_days=dead_letter_days
    )
    engine = ensure_schema(url)
    res = count_prunable(engine, policy) if dry_run else prune(engine, policy)
    verb = "would delete" if dry_run else "deleted"
    keep = ", ".join(
        f"{what} kept {days:g} days" if days > 0 else f"{what} kept forever"
        for what, days in (
            ("delivery log", policy.delivery_days),
            ("dead letters", policy.dead_letter_days),
        )
    )
    console.print(
        f"{verb} {res.notifications:,} notifications ({res.deliveries:,} delivery rows) and "
        f"{res.dead_letters:,} dead letters ({keep})",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    stack_app.command("up")(guarded(stack_up))
    stack_app.command("status")(guarded(stack_status))
    stack_app.command("down")(guarded(stack_down))
    db_app.command("upgrade")(guarded(db_upgrade))
    db_app.command("current")(guarded(db_current))
    store_app.command("status")(guarded(store_status))
    store_app.command("export")(guarded(store_export))
    store_app.command("score")(guarded(store_score))
    store_app.command("alarms")(guarded(store_alarms))
    store_app.command("prune")(guarded(store_prune))
    app.add_typer(stack_app, name="stack", rich_help_panel=PANEL)
    app.add_typer(db_app, name="db", rich_help_panel=PANEL)
    app.add_typer(store_app, name="store", rich_help_panel=PANEL)
    app.command("ingest", rich_help_panel=PANEL)(guarded(ingest))
