"""``models list/show/history/promote/rollback/sign``, and the helpers ``train`` shares.

Wiring only: every command calls :mod:`sensorguard.pipelines.lifecycle` or
:mod:`sensorguard.registry`. The gate report (``_print_decision``, ``_report_outcome``)
and the ``--model``/``--fail-on-reject`` options live here because ``models promote``
and ``train`` print the same decision; :mod:`sensorguard.cli.train_cmds` imports them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from sensorguard.cli._common import (
    EXIT_REJECTED,
    console,
    fail,
    guarded,
    progress,
    quiet_mlflow,
)

models_app = typer.Typer(
    help="Registered model versions: list, show, promote (through the quality gate), "
    "rollback, and the audit history.",
    no_args_is_help=True,
)

_FAIL_ON_REJECT = typer.Option(
    False,
    "--fail-on-reject",
    help=f"Exit with code {EXIT_REJECTED} when the gate rejects (for scripts); default 0.",
)


def _settings(model: str | None = None) -> Any:
    """The settings, for registered model ``model`` when given (``--model``)."""
    from sensorguard.pipelines.fleet import settings_for

    quiet_mlflow()
    return settings_for(model)


_MODEL = typer.Option(
    None,
    "--model",
    "-m",
    help="Registered model = machine type, e.g. pump-centrifugal (default: "
    "SENSORGUARD_MODEL_NAME). Each model has its own versions, aliases, gate and history.",
)


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _print_decision(decision: Any) -> None:
    """The gate's checks and both versions' metrics (``decision``: GateDecision or its dict)."""
    from rich.table import Table

    d = decision if isinstance(decision, dict) else decision.to_dict()
    table = Table(title="quality gate")
    table.add_column("check", overflow="fold")
    table.add_column("result")
    table.add_column("detail", overflow="fold")
    for c in d["checks"]:
        table.add_row(c["name"], "[green]ok[/]" if c["passed"] else "[red]FAIL[/]", c["detail"])
    console.print(table)
    cmp = Table(title=f"evaluation on the same {d.get('evaluation_rows') or ''} readings")
    cmp.add_column("metric")
    cmp.add_column(f"candidate v{d['candidate_version']}", justify="right")
    if d.get("production") is not None:
        cmp.add_column(f"production v{d['production_version']}", justify="right")
    for key in ("f1", "precision", "recall", "event_recall", "false_alarms_per_day"):
        row = [key, _fmt(d["candidate"].get(key))]
        if d.get("production") is not None:
            row.append(_fmt(d["production"].get(key)))
        cmp.add_row(*row)
    console.print(cmp)


def _report_outcome(outcome: Any, fail_on_reject: bool) -> None:
    if outcome.action == "promote":
        prev = (
            f" (v{outcome.from_version} archived, alias 'previous')" if outcome.from_version else ""
        )
        console.print(
            f"[bold green]promoted[/] v{outcome.to_version} to production{prev}", highlight=False
        )
        return
    console.print(
        f"[bold yellow]rejected[/] v{outcome.to_version}: {'; '.join(outcome.decision.reasons)}",
        highlight=False,
    )
    current = outcome.from_version
    console.print(
        "production unchanged" + (f" (v{current})" if current else " (no production version yet)")
    )
    if fail_on_reject:
        raise typer.Exit(EXIT_REJECTED)


# ---------------------------------------------------------------- train


def models_list(
    limit: int = typer.Option(50, "--limit", min=1, help="Show at most this many versions."),
    model: str | None = _MODEL,
) -> None:
    """Every registered model with its production version; then the versions of one model
    (--model, default SENSORGUARD_MODEL_NAME) with aliases, lifecycle/gate tags and key
    metrics."""
    from rich import box
    from rich.table import Table

    from sensorguard.pipelines.fleet import list_models
    from sensorguard.registry import list_versions

    settings = _settings(model)
    if model is None:
        summaries = list_models(settings)
        if summaries:
            overview = Table(title="registered models", box=box.SIMPLE_HEAD, pad_edge=False)
            for col in ("model", "production", "previous", "latest", "versions"):
                overview.add_column(col, justify="left" if col == "model" else "right")
            for m in summaries:
                overview.add_row(
                    m.name,
                    "–" if m.production is None else f"v{m.production}",
                    "–" if m.previous is None else f"v{m.previous}",
                    "–" if m.latest is None else f"v{m.latest}",
                    str(m.versions),
                    style="bold" if m.name == settings.model_name else None,
                )
            console.print(overview)
            if settings.model_name not in {m.name for m in summaries}:
                console.print(
                    f"versions of one model: sensorguard models list --model {summaries[0].name}",
                    highlight=False,
                )
                return
    versions = list_versions(settings, limit=limit)
    table = Table(
        title=f"{settings.model_name} @ {settings.resolved_tracking_uri}",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        pad_edge=False,
        caption="F1, rec (event recall), FA/d (false alarms per day): on the version's "
        "held-out data; more with `sensorguard models show VERSION`",
    )
    for col, just, width in (
        ("ver", "right", 3),
        ("aliases", "left", 10),
        ("lifecycle", "left", 10),
        ("gate", "left", 8),
        ("created", "left", 11),
        ("trigger", "left", 7),
        ("F1", "right", 5),
        ("rec", "right", 4),
        ("FA/d", "right", 4),
    ):
        table.add_column(col, justify=just, min_width=width)  # type: ignore[arg-type]
    for v in versions:
        style = "bold green" if settings.production_alias in v.aliases else None
        table.add_row(
            str(v.version),
            ", ".join(v.aliases),
            v.lifecycle,
            v.tags.get("gate", ""),
            v.created.strftime("%m-%d %H:%M"),
            v.tags.get("trigger", ""),
            _fmt(v.metrics.get("eval_f1")),
            _fmt(v.metrics.get("eval_event_recall"), 2),
            _fmt(v.metrics.get("eval_false_alarms_per_day"), 2),
            style=style,
        )
    console.print(table)


def models_show(
    version: int = typer.Argument(..., help="Version number."), model: str | None = _MODEL
) -> None:
    """One version: aliases, tags, the training run's parameters and metrics."""
    from rich.table import Table

    from sensorguard.registry import show_version

    settings = _settings(model)
    v = show_version(version, settings)
    console.print(
        f"[bold]{settings.model_name}[/] version [bold]{v.version}[/]  "
        f"aliases: {', '.join(v.aliases) or '–'}  run: {v.run_id}  "
        f"created: {v.created:%Y-%m-%d %H:%M:%S} UTC",
        highlight=False,
    )
    console.print(f"  load: models:/{settings.model_name}/{v.version}", highlight=False)
    for title, items in (("tags", v.tags), ("metrics", v.metrics), ("params", v.params)):
        table = Table(title=title, show_header=False)
        table.add_column("key")
        table.add_column("value", overflow="fold")
        for k in sorted(items):
            table.add_row(k, _fmt(items[k], 4))
        console.print(table)


def models_history(
    limit: int = typer.Option(50, "--limit", min=1, help="Show at most this many events."),
    model: str | None = _MODEL,
) -> None:
    """The audit trail of one model: every promotion, rejection and rollback, newest first."""
    from rich import box
    from rich.table import Table

    from sensorguard.registry import history

    settings = _settings(model)
    events = history(settings, limit=limit)
    if not events:
        console.print(f"no lifecycle events recorded for '{settings.model_name}' yet")
        return
    table = Table(
        title=f"lifecycle history of {settings.model_name}",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    for col, width in (("time UTC", 11), ("action", 7), ("versions", 6), ("trigger", 7),
                       ("user", 4), ("F1 cand/prod", 11)):  # fmt: skip
        table.add_column(col, min_width=width)
    table.add_column("reason", overflow="fold", min_width=16)
    for e in events:
        gate = e.gate or {}
        cand = (gate.get("candidate") or {}).get("f1")
        prod = (gate.get("production") or {}).get("f1")
        f1 = "" if cand is None else f"{cand:.3f}/{'–' if prod is None else f'{prod:.3f}'}"
        action = e.action + (" (forced)" if e.forced else "")
        versions = (
            f"{'–' if e.from_version is None else f'v{e.from_version}'}→"
            f"{'–' if e.to_version is None else f'v{e.to_version}'}"
        )
        table.add_row(
            e.time.strftime("%m-%d %H:%M"), action, versions, e.trigger, e.user, f1, e.reason
        )
    console.print(table)


def models_promote(
    version: int = typer.Argument(..., help="Version to promote to production."),
    data: Path | None = typer.Option(
        None,
        "--data",
        help="Labelled readings to evaluate on (default: the version's own held-out data).",
    ),
    force: bool = typer.Option(False, "--force", help="Skip the gate (needs --reason)."),
    reason: str = typer.Option("", "--reason", help="Why the gate is bypassed (with --force)."),
    fail_on_reject: bool = _FAIL_ON_REJECT,
    model: str | None = _MODEL,
) -> None:
    """Promote a version through the quality gate (candidate vs production, same data)."""
    from sensorguard.errors import SensorGuardError
    from sensorguard.pipelines.lifecycle import gate_and_promote, promote
    from sensorguard.registry import show_version
    from sensorguard.registry.runs import load_holdout

    settings = _settings(model)
    if force:
        if not reason.strip():
            raise fail("--force needs --reason 'why the gate is bypassed'")
        outcome = promote(version, settings=settings, trigger="cli", force=True, reason=reason)
        console.print(
            f"[bold yellow]forced[/] v{version} to production (gate bypassed: {reason})",
            highlight=False,
        )
        if outcome.from_version:
            console.print(f"v{outcome.from_version} archived, alias 'previous'")
        return
    info = show_version(version, settings)
    if data is not None:
        from sensorguard.data import load_readings

        readings = load_readings(data)
    else:
        held = load_holdout(info.run_id, settings) if info.run_id else None
        if held is None:
            raise SensorGuardError(
                f"v{version} has no stored held-out data to evaluate on",
                "pass labelled readings with --data FILE (or --force --reason TEXT)",
            )
        readings = held
    with progress() as bar:
        task = bar.add_task("quality gate: evaluating candidate and production", total=None)
        outcome = gate_and_promote(version, readings, settings=settings, trigger="cli")
        bar.update(task, total=1, completed=1)
    _print_decision(outcome.decision)
    _report_outcome(outcome, fail_on_reject)


def models_rollback(
    reason: str = typer.Option("", "--reason", help="Why (recorded in the audit trail)."),
    model: str | None = _MODEL,
) -> None:
    """Put the previous production version of one model back into production (one step);
    other models are not touched."""
    from sensorguard.pipelines.lifecycle import rollback

    settings = _settings(model)
    out = rollback(settings=settings, trigger="cli", reason=reason)
    console.print(
        f"[bold green]rolled back[/]: production v{out.from_version} → v{out.to_version}; "
        f"v{out.from_version} is now '{settings.previous_alias}' (run rollback again to undo)",
        highlight=False,
    )


def models_sign(
    version: int = typer.Argument(..., help="Version whose current artifacts are signed."),
    model: str | None = _MODEL,
) -> None:
    """Sign a version's artifacts so the predictor loads it (after you reviewed them).

    For versions registered before artifact signing, or whose artifacts were changed on
    purpose. Only SensorGuard models can be signed; the key is SENSORGUARD_SIGNING_KEY
    (default: <home>/signing.key). See docs/deployment.md, "Trust model".
    """
    from sensorguard.registry import sign_version

    settings = _settings(model)
    signature = sign_version(version, settings)
    console.print(
        f"signed v{version} of '{settings.model_name}' ({signature[:15]}…)", highlight=False
    )


def register(app: typer.Typer) -> None:
    models_app.command("list")(guarded(models_list))
    models_app.command("show")(guarded(models_show))
    models_app.command("history")(guarded(models_history))
    models_app.command("promote")(guarded(models_promote))
    models_app.command("rollback")(guarded(models_rollback))
    models_app.command("sign")(guarded(models_sign))
    app.add_typer(models_app, name="models")
