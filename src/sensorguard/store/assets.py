"""The asset registry: which machine (asset id) is of which machine type (registered model).

Rules of this module:

* one row per asset: ``asset_id`` → ``model_name`` (the machine type), site, area,
  description and ``sensor_tags`` (sensor name → the plant's tag for it, e.g.
  ``flow_rate → FT-101``);
* a tag names one sensor of one asset: a tag given twice, or already used by another
  asset, is a :class:`~sensorguard.errors.SensorGuardError` naming both places;
* the store never refuses readings because their asset is not registered: readings are
  keyed by asset id alone, and :func:`unregistered_assets` reports the assets that send
  readings without a registry entry;
* whether the model exists is checked one layer up (``pipelines/fleet.py``), where the
  MLflow registry is known; this module only stores and reads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa

from sensorguard.errors import SensorGuardError
from sensorguard.store.engine import ensure_schema
from sensorguard.store.schema import assets, readings
from sensorguard.timeutil import utc_now

ASSET_ID_MAX = 200
# no "/": an asset id is one segment of MQTT topics and of /v1/assets/{id}
ASSET_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"  # no "/": it would split models:/ URIs
_ASSET = re.compile(ASSET_ID_PATTERN)
_MODEL = re.compile(MODEL_NAME_PATTERN)


class AssetError(SensorGuardError):
    """A refused registration; ``code`` says why (``bad_asset``, ``unknown_model``,
    ``conflicting_sensors``)."""

    def __init__(self, message: str, hint: str | None = None, code: str = "bad_asset") -> None:
        super().__init__(message, hint)
        self.code = code


@dataclass
class Asset:
    """A registered machine."""

    asset_id: str
    model: str
    site: str | None = None
    area: str | None = None
    description: str | None = None
    sensor_tags: dict[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "asset_id": self.asset_id,
            "model": self.model,
            "site": self.site,
            "area": self.area,
            "description": self.description,
            "sensor_tags": dict(self.sensor_tags),
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
        }


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.replace(tzinfo=UTC).isoformat()


def check_name(value: Any, what: str) -> str:
    """An asset id (letters, digits and ``._:-``) or, with ``what="model name"``, a
    registered model name (letters, digits and ``._-``)."""
    model = what == "model name"
    example = "pump-centrifugal" if model else "pump-01"
    if not isinstance(value, str) or not value.strip():
        raise AssetError(f"{what} must be a non-empty string", f"e.g. {example}")
    value = value.strip()
    if len(value) > ASSET_ID_MAX or not (_MODEL if model else _ASSET).match(value):
        chars = ". _ -" if model else ". _ : -"
        raise AssetError(
            f"invalid {what} {value!r}",
            f"use at most {ASSET_ID_MAX} letters, digits and {chars} (starting with a "
            f"letter or digit), e.g. {example}",
        )
    return value


def check_sensor_tags(tags: Any) -> dict[str, str]:
    """``{sensor: tag}`` with text keys and values; one tag never names two sensors."""
    if tags is None:
        return {}
    if not isinstance(tags, dict):
        raise AssetError(
            "sensor_tags must be an object of sensor name: tag",
            'e.g. {"flow_rate": "FT-101", "bearing_temp": "TT-204"}',
        )
    out: dict[str, str] = {}
    seen: dict[str, str] = {}
    for sensor, tag in tags.items():
        if not isinstance(sensor, str) or not sensor.strip():
            raise AssetError("sensor names in sensor_tags must be non-empty strings")
        if not isinstance(tag, str) or not tag.strip():
            raise AssetError(
                f"the tag of sensor {sensor!r} must be a non-empty string",
                'e.g. {"flow_rate": "FT-101"}',
            )
        tag = tag.strip()
        if tag in seen:
            raise AssetError(
                f"conflicting sensors: tag {tag!r} is given to both {seen[tag]!r} and {sensor!r}",
                "a tag names one sensor; fix the sensor_tags",
                code="conflicting_sensors",
            )
        seen[tag] = sensor
        out[sensor] = tag
    return out


def _row(r: Any) -> Asset:
    return Asset(
        asset_id=r.asset_id,
        model=r.model_name,
        site=r.site,
        area=r.area,
        description=r.description,
        sensor_tags=orjson.loads(r.sensor_tags or "{}"),
        created_at=r.created_at,
        updated_at=r.updated_at,
    )


def put_asset(
    asset_id: str,
    model: str,
    *,
    site: str | None = None,
    area: str | None = None,
    description: str | None = None,
    sensor_tags: dict[str, str] | None = None,
    url: str | None = None,
) -> tuple[Asset, bool]:
    """Register or replace an asset; returns it and whether it was new.

    Tags are checked against every other asset inside the writing transaction
    (registrations are rare, operator-driven writes; two racing ones are not excluded
    by a database constraint, since tags live in one JSON column per asset).
    """
    asset_id = check_name(asset_id, "asset id")
    model = check_name(model, "model name")
    tags = check_sensor_tags(sensor_tags)
    for key, value in (("site", site), ("area", area), ("description", description)):
        if value is not None and not isinstance(value, str):
            raise AssetError(f"{key} must be a string", f"e.g. a {key} text")
    engine = ensure_schema(url)
    now = utc_now()
    with engine.begin() as conn:
        others = conn.execute(
            sa.select(assets.c.asset_id, assets.c.sensor_tags).where(assets.c.asset_id != asset_id)
        ).all()
        owner = {
            tag: (other, sensor)
            for other, raw in others
            for sensor, tag in orjson.loads(raw or "{}").items()
        }
        for sensor, tag in tags.items():
            if tag in owner:
                other, other_sensor = owner[tag]
                raise AssetError(
                    f"conflicting sensors: tag {tag!r} (sensor {sensor!r}) already belongs to "
                    f"sensor {other_sensor!r} of asset {other!r}",
                    f"fix the tag, or change asset {other!r} first "
                    f"(`sensorguard assets show {other}`)",
                    code="conflicting_sensors",
                )
        existing = conn.execute(
            sa.select(assets.c.created_at).where(assets.c.asset_id == asset_id)
        ).scalar()
        values = {
            "model_name": model,
            "site": site,
            "area": area,
            "description": description,
            "sensor_tags": orjson.dumps(tags).decode(),
            "updated_at": now,
        }
        if existing is None:
            conn.execute(assets.insert().values(asset_id=asset_id, created_at=now, **values))
        else:
            conn.execute(assets.update().where(assets.c.asset_id == asset_id).values(**values))
    created = existing is None
    return (
        Asset(asset_id, model, site, area, description, tags, existing if existing else now, now),
        created,
    )


def get_asset(asset_id: str, url: str | None = None) -> Asset | None:
    """The asset, or ``None`` when it is not registered."""
    engine = ensure_schema(url)
    with engine.connect() as conn:
        r = conn.execute(sa.select(assets).where(assets.c.asset_id == asset_id)).first()
    return None if r is None else _row(r)


def list_registered_assets(model: str | None = None, url: str | None = None) -> list[Asset]:
    """Registered assets (of one model when given), ordered by id."""
    engine = ensure_schema(url)
    q = sa.select(assets).order_by(assets.c.asset_id)
    if model is not None:
        q = q.where(assets.c.model_name == model)
    with engine.connect() as conn:
        return [_row(r) for r in conn.execute(q)]


def remove_asset(asset_id: str, url: str | None = None) -> bool:
    """Remove the registry entry (its readings stay); ``False`` if it was not registered."""
    engine = ensure_schema(url)
    with engine.begin() as conn:
        n = conn.execute(assets.delete().where(assets.c.asset_id == asset_id)).rowcount
    return bool(n)


def asset_models(url: str | None = None) -> dict[str, str]:
    """asset id → model name of every registered asset (what the predictor routes by)."""
    engine = ensure_schema(url)
    with engine.connect() as conn:
        return {a: m for a, m in conn.execute(sa.select(assets.c.asset_id, assets.c.model_name))}


def registered_models(url: str | None = None) -> list[str]:
    """The distinct model names the registered assets use."""
    engine = ensure_schema(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(assets.c.model_name).distinct().order_by(assets.c.model_name))
        return [r[0] for r in rows]


def unregistered_assets(url: str | None = None) -> list[dict[str, Any]]:
    """Assets with readings in the store but no registry entry: ``asset_id, readings, last``.

    Their readings are kept like any other; this is how they are reported.
    """
    engine = ensure_schema(url)
    q = (
        sa.select(
            readings.c.asset_id,
            sa.func.count().label("readings"),
            sa.func.max(readings.c.time).label("last"),
        )
        .where(~readings.c.asset_id.in_(sa.select(assets.c.asset_id)))
        .group_by(readings.c.asset_id)
        .order_by(readings.c.asset_id)
    )
    with engine.connect() as conn:
        return [
            {"asset_id": a, "readings": int(n), "last_reading_at": _iso(last)}
            for a, n, last in conn.execute(q)
        ]
