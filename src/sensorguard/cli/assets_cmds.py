"""``sensorguard assets add/list/show/remove``: the asset registry (wiring only).

Every command calls :mod:`sensorguard.pipelines.fleet` or :mod:`sensorguard.store.assets`.
"""

from __future__ import annotations

import json

import typer

from sensorguard.cli._common import console, fail, guarded

assets_app = typer.Typer(
    help="The asset registry: which machine (asset id) is of which machine type "
    "(registered model), where it stands, and the plant tags of its sensors.",
    no_args_is_help=True,
)


def _tags(items: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        sensor, sep, tag = item.partition("=")
        if not sep or not sensor.strip() or not tag.strip():
            raise fail(f"bad --tag {item!r}: write it as SENSOR=TAG, e.g. --tag flow_rate=FT-101")
        if sensor.strip() in out:
            raise fail(f"--tag names sensor {sensor.strip()!r} twice")
        out[sensor.strip()] = tag.strip()
    return out


def assets_add(
    asset_id: str = typer.Argument(..., help="Asset id, as the readings name it (e.g. pump-01)."),
    model: str = typer.Option(
        ..., "--model", "-m", help="Registered model = machine type (e.g. pump-centrifugal)."
    ),
    site: str | None = typer.Option(None, "--site", help="Site (plant)."),
    area: str | None = typer.Option(None, "--area", help="Area within the site."),
    description: str | None = typer.Option(None, "--description", help="Free text."),
    tag: list[str] | None = typer.Option(
        None, "--tag", help="SENSOR=TAG: the plant's tag of a sensor (repeatable)."
    ),
) -> None:
    """Register an asset (or replace its entry). The model must exist or be in training.

    Example: sensorguard assets add pump-01 --model pump-centrifugal --site north
    --tag flow_rate=FT-101
    """
    from sensorguard.pipelines.fleet import register_asset

    asset, created = register_asset(
        asset_id, model, site=site, area=area, description=description, sensor_tags=_tags(tag)
    )
    console.print(
        f"{'registered' if created else 'updated'} asset [bold]{asset.asset_id}[/] → model "
        f"[bold]{asset.model}[/]",
        highlight=False,
    )


def assets_list(
    model: str | None = typer.Option(None, "--model", "-m", help="Only assets of this model."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Registered assets, and the assets that send readings without being registered."""
    from rich import box
    from rich.table import Table

    from sensorguard.store.assets import list_registered_assets, unregistered_assets

    found = list_registered_assets(model)
    unknown = [] if model else unregistered_assets()
    if as_json:
        typer.echo(
            json.dumps({"assets": [a.to_dict() for a in found], "unregistered": unknown}, indent=2)
        )
        return
    if not found and not unknown:
        console.print("no assets registered yet: sensorguard assets add ID --model NAME")
        return
    table = Table(title="assets", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("asset", "model", "site", "area", "sensor tags", "description"):
        table.add_column(col, overflow="fold")
    for a in found:
        table.add_row(
            a.asset_id,
            a.model,
            a.site or "",
            a.area or "",
            ", ".join(f"{s}={t}" for s, t in a.sensor_tags.items()),
            a.description or "",
        )
    console.print(table)
    if unknown:
        console.print(
            f"[yellow]{len(unknown)} asset(s) send readings but are not registered[/] "
            "(their readings are stored; register them to route predictions):",
            highlight=False,
        )
        for u in unknown:
            console.print(
                f"  {u['asset_id']}: {u['readings']} readings, last {u['last_reading_at']}",
                highlight=False,
            )


def assets_show(asset_id: str = typer.Argument(..., help="Asset id.")) -> None:
    """One asset's registry entry (JSON)."""
    from sensorguard.store.assets import get_asset

    asset = get_asset(asset_id)
    if asset is None:
        raise fail(f"asset {asset_id!r} is not registered — see `sensorguard assets list`")
    typer.echo(json.dumps(asset.to_dict(), indent=2))


def assets_remove(asset_id: str = typer.Argument(..., help="Asset id.")) -> None:
    """Remove an asset's registry entry (its readings, predictions and alarms stay)."""
    from sensorguard.store.assets import remove_asset

    if not remove_asset(asset_id):
        raise fail(f"asset {asset_id!r} is not registered — see `sensorguard assets list`")
    console.print(f"removed asset {asset_id} from the registry (its readings stay)")


def register(app: typer.Typer) -> None:
    assets_app.command("add")(guarded(assets_add))
    assets_app.command("list")(guarded(assets_list))
    assets_app.command("show")(guarded(assets_show))
    assets_app.command("remove")(guarded(assets_remove))
    app.add_typer(assets_app, name="assets")
