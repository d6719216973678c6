"""Live monitoring commands: ``sensorguard watch`` (and the MQTT tools beside it)."""

from __future__ import annotations

import typer

from sensorguard.cli._common import (
    AssetColumnOpt,
    DuplicatesOpt,
    SepOpt,
    TimeColumnOpt,
    console,
    guarded,
    read_options,
    split_csv_list,
    stop_on_signals,
)


def register(app: typer.Typer) -> None:
    app.command("watch", rich_help_panel="Serving")(guarded(watch))
    app.command("replay", rich_help_panel="Serving")(guarded(replay))
    app.command("ingest-mqtt", rich_help_panel="Serving")(guarded(ingest_mqtt))
    app.command("dead-letters", rich_help_panel="Serving")(guarded(dead_letters))


def watch(
    model: str | None = typer.Option(
        None,
        "--model",
        "-m",
        help="Model to score every asset with: models:/NAME@ALIAS (followed on promotion), "
        "models:/NAME/VERSION or a folder [default: route by asset: a registered asset's "
        "model@production, any other asset models:/SENSORGUARD_MODEL_NAME@production].",
    ),
    assets: str | None = typer.Option(
        None, "--assets", help="Comma-separated assets to watch [default: every asset]."
    ),
    start: str = typer.Option(
        "earliest",
        "--from",
        help="Where an asset seen for the first time starts: 'earliest' (score its stored "
        "history) or 'latest' (only readings newer than the newest stored one).",
    ),
    ingest: bool = typer.Option(
        True, "--ingest/--no-ingest", help="Also run the MQTT ingester in this process."
    ),
    notify: bool = typer.Option(
        True, "--notify/--no-notify", help="Also deliver alarm notifications from this process."
    ),
    predictions_every: int | None = typer.Option(
        None,
        "--predictions-every",
        min=0,
        help="Store every N-th prediction (and all in alarm); 1 = all, 0 = none "
        "[default: SENSORGUARD_WATCH_PREDICTIONS_EVERY or 1].",
    ),
    pass_assets: int | None = typer.Option(
        None,
        "--pass-assets",
        min=1,
        help="Most assets scored in one pass: their predictions, alarms and checkpoints "
        "commit in one transaction; the other due assets are scored in the next passes "
        "[default: SENSORGUARD_WATCH_PASS_ASSETS or 100].",
    ),
    pass_rows: int | None = typer.Option(
        None,
        "--pass-rows",
        min=1,
        help="Most readings read in one pass, over all its assets (each gets at most this "
        "divided by the pass's assets; an asset with more is due again at the next pass): "
        "bounds a pass's memory [default: SENSORGUARD_WATCH_PASS_ROWS or 200000].",
    ),
    metrics_port: int | None = typer.Option(
        None,
        "--metrics-port",
        help="Serve Prometheus /metrics on this port [default: SENSORGUARD_WATCH_METRICS_PORT; "
        "unset = none].",
    ),
    metrics_host: str = typer.Option(
        "127.0.0.1", "--metrics-host", help="Bind address of /metrics (0.0.0.0 in a container)."
    ),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning or error."),
) -> None:
    """Watch every asset: score new readings from the store as they arrive, raise and
    close alarms, notify. Runs until SIGTERM / Ctrl-C (checkpoints are committed with
    every step, so a stop, even kill -9, loses nothing).

    Readings come from MQTT (`sensorguard/ASSET/readings`, ingested by this process
    unless --no-ingest), POST /v1/readings or `sensorguard ingest`. Alarms:
    GET /v1/alarms on `sensorguard serve` pointed at the same store.

    Examples:

      sensorguard watch

      sensorguard watch --no-ingest --metrics-port 9108

      SENSORGUARD_STORE_URL=postgresql://…/readings sensorguard watch -m models:/pump@production
    """
    import logging

    from pydantic import ValidationError

    from sensorguard.cli._common import fail
    from sensorguard.config import get_settings
    from sensorguard.live.watch import WatchConfig, run_service

    if start not in ("earliest", "latest"):
        raise fail(f"--from must be 'earliest' or 'latest', got {start!r}")
    try:
        settings = get_settings()
    except ValidationError as exc:  # a bad SENSORGUARD_* value: one line, no traceback
        first = exc.errors()[0]
        var = "SENSORGUARD_" + ".".join(str(p) for p in first["loc"]).upper()
        raise fail(
            f"invalid setting {var}={first.get('input')!r}: {first['msg']} — fix it in the "
            "environment or .env"
        ) from None
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    stop = stop_on_signals("stopping (checkpoints are committed)")
    config = WatchConfig.from_settings(
        settings,
        model_ref=model,
        start=start,
        predictions_every=predictions_every,
        pass_assets=pass_assets,
        pass_rows=pass_rows,
        assets=split_csv_list(assets) if assets else None,
    )

    def ready(w: object) -> None:
        m = getattr(w, "model", None)
        what = f"{m.name} version {m.version}" if m is not None else "no default model yet"
        types = getattr(w, "models", {})
        if getattr(w, "routing", False):
            what += " and routing by asset" + (
                f" ({', '.join(f'{t.name} v{t.version}' for t in types.values())})" if types else ""
            )
        console.print(f"watching with {what}; Ctrl-C to stop", highlight=False)

    watcher = run_service(
        config,
        settings=settings,
        stop=stop,
        ingest=ingest,
        notify=notify,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        on_ready=ready,
    )
    t = watcher.totals
    console.print(
        f"stopped: {t['readings']:,} readings scored, {t['transitions']:,} alarm transitions, "
        f"{t['late']:,} late readings",
        highlight=False,
    )


def replay(
    path: str = typer.Argument(..., help="Readings file (CSV or Parquet), as for `validate`."),
    asset: str | None = typer.Option(
        None,
        "--asset",
        "-a",
        help="Asset id of every reading [default: the file's asset column, one topic each].",
    ),
    speed: float | None = typer.Option(
        None,
        "--speed",
        help="Time factor: 60 = one hour of readings per minute [default: as fast as possible].",
    ),
    batch: int = typer.Option(500, "--batch", min=1, help="Readings per message."),
    http: str | None = typer.Option(
        None,
        "--http",
        help="POST to this predictor's /v1/readings (e.g. http://127.0.0.1:8000) instead of "
        "publishing to MQTT; the token is SENSORGUARD_API_TOKEN.",
    ),
    mqtt_url: str | None = typer.Option(
        None, "--mqtt-url", help="Broker [default: SENSORGUARD_MQTT_URL, mqtt://127.0.0.1:1883]."
    ),
    sep: SepOpt = None,
    time_column: TimeColumnOpt = None,
    asset_column: AssetColumnOpt = None,
    duplicates: DuplicatesOpt = "error",
    timeout: float = typer.Option(
        60.0, "--timeout", help="Seconds to wait for the broker's acknowledgements."
    ),
) -> None:
    """Replay a readings file as a live stream: publish each asset's readings to
    `sensorguard/ASSET/readings` (QoS 1) and exit once the broker has acknowledged every
    message, or post them to `/v1/readings` with --http.

    Examples:

      sensorguard replay pump.csv --asset pump-01

      sensorguard replay plant.parquet --speed 60          # one hour per minute, per asset column

      sensorguard replay pump.csv --asset pump-01 --http http://127.0.0.1:8000
    """
    from sensorguard.cli._common import progress
    from sensorguard.data import load_readings
    from sensorguard.live.replay import replay as run_replay

    readings = load_readings(
        path,
        **read_options(
            sep=sep, time_column=time_column, asset_column=asset_column, duplicates=duplicates
        ),
    )
    verb = "posting" if http else "publishing"
    with progress() as bar:
        task = bar.add_task(f"{verb} {len(readings):,} readings", total=len(readings))

        def step(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        result = run_replay(
            readings,
            asset,
            speed=speed,
            batch=batch,
            mqtt_url=mqtt_url,
            http_url=http,
            timeout=timeout,
            on_progress=step,
        )
    what = "stored by" if http else "acknowledged by"
    extra = (
        f" ({result.inserted:,} new, {result.duplicates:,} duplicates)"
        if result.inserted is not None and result.duplicates is not None
        else ""
    )
    console.print(
        f"{result.readings:,} readings of {len(result.assets)} asset(s) in "
        f"{result.messages:,} messages {what} {result.target}{extra} in "
        f"{result.seconds:.1f} s ({result.readings_per_second:,.0f} readings/s)",
        highlight=False,
    )


def ingest_mqtt(
    client_id: str | None = typer.Option(
        None,
        "--client-id",
        help="MQTT client id; the broker keeps the persistent session under it "
        "[default: SENSORGUARD_MQTT_CLIENT_ID, sensorguard-ingest].",
    ),
    metrics_port: int | None = typer.Option(
        None, "--metrics-port", help="Serve Prometheus /metrics on this port."
    ),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning or error."),
) -> None:
    """Ingest readings from MQTT into the readings store (without scoring them), until
    SIGTERM / Ctrl-C. `sensorguard watch` runs the same ingester in its own process.

    Subscribes to `sensorguard/+/readings` at QoS 1 in a persistent session: what is
    published while it is stopped is delivered when it comes back. Invalid payloads
    go to the dead-letter table (`sensorguard dead-letters`).

    Examples:

      sensorguard ingest-mqtt

      SENSORGUARD_MQTT_URL=mqtt://ingest:secret@broker:1883 sensorguard ingest-mqtt
    """
    import logging

    from sensorguard.live.ingest import MqttIngester
    from sensorguard.live.metrics import LiveMetrics, serve_metrics

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    stop = stop_on_signals("stopping after the current batch")
    metrics = LiveMetrics()
    if metrics_port is not None:
        serve_metrics(metrics, metrics_port, host="0.0.0.0")
    ingester = MqttIngester(client_id=client_id, metrics=metrics)

    def ready(i: MqttIngester) -> None:
        console.print(
            f"ingesting {i.subscription} from {i.mqtt.display}; Ctrl-C to stop",
            highlight=False,
            soft_wrap=True,
        )

    ingester.run(stop, on_ready=ready)
    t = ingester.totals
    console.print(
        f"stopped: {t.messages:,} messages, {t.inserted:,} readings stored, "
        f"{t.duplicates:,} duplicates, {t.dead_letters:,} dead letters",
        highlight=False,
    )


def dead_letters(
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="How many, newest first."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON lines (payload as text)."),
) -> None:
    """Show the newest invalid payloads kept in the dead-letter table, with the reason.

    Examples:

      sensorguard dead-letters -n 5
    """
    import orjson

    from sensorguard.live.ingest import read_dead_letters
    from sensorguard.store import ensure_schema

    rows = read_dead_letters(ensure_schema(), limit=limit)
    if as_json:
        for r in rows:
            doc = {k: v for k, v in r.items() if k != "payload"}
            doc["payload"] = bytes(r["payload"]).decode("utf-8", "replace")
            typer.echo(orjson.dumps(doc, default=str).decode())
        return
    if not rows:
        console.print("no dead letters")
        return
    from rich.table import Table

    table = Table("id", "received", "topic", "code", "reason", "payload")
    for r in rows:
        payload = bytes(r["payload"]).decode("utf-8", "replace")
        table.add_row(
            str(r["id"]),
            str(r["received_at"])[:19],
            r["topic"] or r["source"],
            r["code"],
            r["reason"],
            payload[:60] + ("…" if len(payload) > 60 else ""),
        )
    console.print(table)


def live_demo(settings: object) -> None:
    """The live part of `sensorguard demo --live`: stream, show transitions, say where."""
    from sensorguard.live.demo import describe, run_live_demo

    console.print(
        "\n[bold]live[/]: streaming simulated readings with failures through ingestion → "
        "store → watch loop (in-process, SQLite; no broker needed)",
        highlight=False,
    )

    def show(t: object) -> None:
        d = describe(t)  # type: ignore[arg-type]
        colour = {"opened": "red", "closed": "green"}.get(d["transition"].split(":")[0], "yellow")
        what = d["kind"] + (f" ({d['sensor']})" if d["sensor"] else "")
        when = f"{d['start']:%Y-%m-%d %H:%M}"
        if d["end"] is not None:
            when += f" → {d['end']:%H:%M}"
        extra = ""
        if d["top_sensors"] and d["kind"] == "failure":
            extra = f"  sensors: {', '.join(d['top_sensors'])}"
        if d["failure_type"] is not None:
            extra += f"  type {d['failure_type']}"
        if d["reason"] not in (None, "normal"):
            extra += f"  ({d['reason']})"
        console.print(
            f"  [{colour}]{d['transition']:<9}[/] {what:<22} {when}{extra}"
            f"  [dim]v{d['model_version']}[/]",
            highlight=False,
            soft_wrap=True,
        )

    report = run_live_demo(settings, on_transition=show)  # type: ignore[arg-type]
    console.print(
        f"live: {report.readings:,} readings of {report.asset} scored by {report.model}; "
        f"{report.failure_events} failure alarm(s), {report.failures_caught}/"
        f"{report.failures_injected} injected failures caught, in {report.seconds:.1f} s",
        highlight=False,
    )
    console.print(
        f"see them: [bold]sensorguard serve[/] then GET http://127.0.0.1:8000/v1/alarms?asset="
        f"{report.asset} (store {report.store_url}); live on a broker: [bold]sensorguard watch[/] "
        "+ [bold]sensorguard replay FILE --asset ID[/]",
        highlight=False,
    )
