"""Fleets: one registered model per machine type, many assets per model.

Rules of this module:

* a **machine type is a registered model** (``pump-centrifugal``, ``compressor-screw``);
  every lifecycle function already works on ``settings.model_name``, so per-model work
  is the same call with :func:`settings_for` — aliases, gate, archive, rollback and the
  audit trail of one model never touch another;
* an **asset** (one machine) belongs to one model through the asset registry
  (:mod:`sensorguard.store.assets`); registering one checks here that the model exists
  (or is being trained by a job) and that its sensor tags name sensors the production
  version knows;
* training on several assets reads each asset's window from the readings store and
  keeps the asset column, so per-asset calibration (``asset-calibrated``) and per-asset
  evaluation see which machine every row came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sensorguard.config import Settings, get_settings
from sensorguard.errors import DataValidationError, SensorGuardError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from sensorguard.data import Readings
    from sensorguard.store.assets import Asset
    from sensorguard.store.jobs import Job


def settings_for(model: str | None, settings: Settings | None = None) -> Settings:
    """``settings`` for registered model ``model`` (unchanged when ``model`` is None)."""
    settings = settings or get_settings()
    if model is None or model == settings.model_name:
        return settings
    from sensorguard.store.assets import check_name

    return settings.model_copy(update={"model_name": check_name(model, "model name")})


# ---------------------------------------------------------------- models


@dataclass
class ModelSummary:
    """One registered model: its production and previous versions, its version count."""

    name: str
    production: int | None
    previous: int | None
    latest: int | None
    versions: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "production_version": self.production,
            "previous_version": self.previous,
            "latest_version": self.latest,
            "versions": self.versions,
        }


def model_names(settings: Settings | None = None) -> list[str]:
    """Every registered model name, sorted."""
    from sensorguard.registry.versions import list_model_names

    return list_model_names(settings or get_settings())


def list_models(settings: Settings | None = None) -> list[ModelSummary]:
    """Every registered model with its production and previous version and version count."""
    from sensorguard.registry.versions import search_versions, version_at

    settings = settings or get_settings()
    out = []
    for name in model_names(settings):
        versions = [int(v.version) for v in search_versions(name, settings)]
        out.append(
            ModelSummary(
                name=name,
                production=version_at(name, settings.production_alias, settings),
                previous=version_at(name, settings.previous_alias, settings),
                latest=max(versions) if versions else None,
                versions=len(versions),
            )
        )
    return out


def production_sensors(model: str, settings: Settings | None = None) -> list[str] | None:
    """Sensors of the production version of ``model`` (from its training run), if any."""
    from sensorguard.registry import load_model

    settings = settings_for(model, settings)
    from sensorguard.registry.versions import version_at

    if version_at(model, settings.production_alias, settings) is None:
        return None
    return list(load_model(f"models:/{model}@{settings.production_alias}", settings).sensors)


def model_known(model: str, settings: Settings | None = None) -> bool:
    """Registered in MLflow, or the model of a queued/running/succeeded training job."""
    from sensorguard.registry.versions import model_exists

    settings = settings or get_settings()
    if model_exists(model, settings):
        return True
    from sensorguard.store.jobs import list_jobs

    url = settings.resolved_store_url
    return any(j.state != "failed" for j in list_jobs(model=model, limit=20, url=url))


# ---------------------------------------------------------------- assets


def register_asset(
    asset_id: str,
    model: str,
    *,
    site: str | None = None,
    area: str | None = None,
    description: str | None = None,
    sensor_tags: dict[str, str] | None = None,
    settings: Settings | None = None,
) -> tuple[Asset, bool]:
    """Validate and store an asset; returns it and whether it is new.

    Refused with a one-line error: a model that is neither registered nor being trained
    by a job, sensor tags naming sensors the model's production version does not have,
    and a tag that another sensor or asset already uses.
    """
    from sensorguard.store.assets import AssetError, check_name, check_sensor_tags, put_asset

    settings = settings or get_settings()
    asset_id = check_name(asset_id, "asset id")
    model = check_name(model, "model name")
    tags = check_sensor_tags(sensor_tags)
    if not model_known(model, settings):
        known = ", ".join(model_names(settings)) or "none yet"
        raise AssetError(
            f"unknown model '{model}' for asset '{asset_id}' (registered models: {known})",
            f"train it first: `sensorguard train FILE --model {model}` or "
            "POST /v1/training-jobs; see `sensorguard models list`",
            code="unknown_model",
        )
    if tags:
        sensors = production_sensors(model, settings)
        if sensors is not None:
            unknown = [s for s in tags if s not in sensors]
            if unknown:
                raise AssetError(
                    f"conflicting sensors: model '{model}' has no sensor(s) "
                    f"{', '.join(unknown)} (it knows {', '.join(sensors)})",
                    "tag the model's own sensor names, or register the asset under the "
                    "model of its machine type",
                    code="conflicting_sensors",
                )
    return put_asset(
        asset_id,
        model,
        site=site,
        area=area,
        description=description,
        sensor_tags=tags,
        url=settings.resolved_store_url,
    )


def fleet_readings(
    asset_ids: list[str],
    *,
    start: Any = None,
    end: Any = None,
    settings: Settings | None = None,
) -> Readings:
    """The readings of several assets in one window, with the asset column kept.

    An asset without readings in the window is an error naming it (a silently smaller
    fleet would train a different model than the one asked for).
    """
    import pandas as pd

    from sensorguard.data import Readings
    from sensorguard.store import StoreError, read_window_frame

    settings = settings or get_settings()
    if not asset_ids:
        raise DataValidationError("no assets given to train on", "name at least one asset id")
    if len(set(asset_ids)) != len(asset_ids):
        raise DataValidationError("an asset id is given twice", "name each asset once")
    frames: list[pd.DataFrame] = []
    empty: list[str] = []
    for asset in asset_ids:
        try:
            frames.append(read_window_frame(asset, start, end, url=settings.resolved_store_url))
        except StoreError:
            empty.append(asset)
    if empty:
        raise DataValidationError(
            f"the readings store has no readings of asset(s) {', '.join(empty)} in the window "
            f"[{start or 'beginning'}, {end or 'end'})",
            "ingest their readings (`sensorguard ingest FILE`, POST /v1/readings) or widen "
            "the window (start, end)",
        )
    labelled = all("machine_status" in f.columns for f in frames)
    if not labelled:
        frames = [f.drop(columns=["machine_status"], errors="ignore") for f in frames]
    frame = pd.concat(frames, ignore_index=True)
    return Readings.from_frame(
        frame,
        time_column="timestamp",
        label_column="machine_status" if labelled else None,
        asset_column="asset_id",
        source=f"store:{','.join(asset_ids)}",
    )


# ---------------------------------------------------------------- simulated fleets


def simulate_fleet(
    n_assets: int = 20,
    *,
    days: float = 7.0,
    freq: str = "2min",
    seed: int = 0,
    spread: float = 1.0,
    failures: bool = True,
    prefix: str = "pump",
) -> pd.DataFrame:
    """``n_assets`` simulated pumps of one type that differ in operating point and wear.

    Each asset is :func:`~sensorguard.data.simulator.simulate_pump` with its own seed,
    then moved to its own operating point: a system curve that shifts flow and
    pressures by a few per cent, its own suction head, a wear level that raises
    vibration, bearing temperature and current, and sensor offsets — per asset, constant
    over time (``spread`` scales all of them; 0 = identical pumps). Returns one frame
    (``asset_id`` = ``pump-00`` …) with the same columns as the simulator.
    """
    import numpy as np
    import pandas as pd

    from sensorguard.data.simulator import simulate_pump

    rng = np.random.default_rng(np.random.SeedSequence([seed, 13]))
    frames = []
    for i in range(n_assets):
        asset = f"{prefix}-{i:02d}"
        f = simulate_pump(
            days=days, freq=freq, seed=seed * 1000 + i, asset_id=asset, failures=failures
        )
        wear = spread * rng.uniform(0.0, 1.0)  # 0 = new, 1 = worn
        system = 1.0 + spread * rng.normal(0.0, 0.06)  # system curve: flow and head
        head = spread * rng.normal(0.0, 0.25)  # suction head (bar)
        f["flow_rate"] = f["flow_rate"] * system
        f["discharge_pressure"] = f["discharge_pressure"] * (2.0 - system) + head
        f["suction_pressure"] = f["suction_pressure"] + head
        f["vibration_rms"] = f["vibration_rms"] * (1.0 + 0.6 * wear) + 0.3 * wear
        f["bearing_temp"] = f["bearing_temp"] + 8.0 * wear + spread * rng.normal(0.0, 2.0)
        f["motor_current"] = f["motor_current"] * (1.0 + 0.05 * wear)
        f["power"] = f["power"] * (1.0 + 0.05 * wear)
        f["fluid_temp"] = f["fluid_temp"] + spread * rng.normal(0.0, 1.5)
        f.attrs = {}
        frames.append(f)
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------- training a machine type


FLEET_BASE = "operating-states"
"""The base detector of a fleet's per-asset calibration when the settings' detector
cannot be one: a streaming detector (a score with a filter state, ``score_stream``:
``pca-smoothed``, ``knn``, ``drift-robust``). Measured (docs/quality.md, "Default of
`sensorguard train`"): ``asset-calibrated`` maps each asset onto the fleet's operating
states, and a detector without states gives one, so the gains stay at 1 (offsets
only); and the wrapper has no ``score_stream``, so live scoring
(:class:`~sensorguard.scoring.stream.AssetStreams`) scores every reading from the
training mean while batch scoring runs the filter — on a simulated fleet of 4 pumps
(8 days scored) live scores of ``pca-smoothed`` differed from batch by up to 37 % and
25 of 23,040 alarm flags differed; with ``operating-states`` both are identical."""


def fleet_base(name: str) -> str:
    """``name`` when ``asset-calibrated`` can wrap it, else :data:`FLEET_BASE`."""
    from sensorguard.detectors.names import detector_class

    return FLEET_BASE if hasattr(detector_class(name), "score_stream") else name


def fleet_detector(
    readings: Readings,
    detector: str | None,
    params: dict[str, Any] | None,
    settings: Settings | None = None,
) -> tuple[str | None, dict[str, Any] | None]:
    """The detector and parameters to train on ``readings``.

    Readings of several assets and no detector named: ``asset-calibrated`` (the measured
    default, docs/quality.md "Fleet calibration") around the settings' detector, or
    around :data:`FLEET_BASE` when that is a streaming detector (e.g. ``pca-smoothed``),
    the given parameters becoming the base detector's. Otherwise unchanged.
    """
    settings = settings or get_settings()
    if detector is not None or not settings.fleet_calibration or readings.asset is None:
        return detector, params
    if readings.asset.nunique() < 2:
        return detector, params
    base = fleet_base(settings.detector)
    return "asset-calibrated", {"base": base, "base_params": dict(params or {})}


def plan_training(params: dict[str, Any], default_model: str) -> list[dict[str, Any]]:
    """The machine types one run of the training DAG trains, one spec each.

    ``params["models"]`` lists them (each ``{"model", ...}`` overriding the run's
    params); else a run with ``data_path`` or ``asset`` trains ``default_model``; else
    every model of the asset registry is trained on its registered assets' readings;
    else ``default_model`` (whose extraction then asks for a data source).
    """
    from sensorguard.store.assets import check_name, list_registered_assets

    shared = {
        k: params.get(k)
        for k in (
            "data_path",
            "asset",
            "window_end",
            "window_days",
            "eval_fraction",
            "detector",
            "detector_params",
            "job_id",
        )
    }
    listed = params.get("models") or []
    if not isinstance(listed, list) or not all(isinstance(m, dict) for m in listed):
        raise DataValidationError(
            "the DAG param 'models' must be a list of objects",
            'e.g. [{"model": "pump-a", "asset_ids": ["pump-01"]}]',
        )
    if listed:
        specs = []
        for m in listed:
            spec = {**shared, **m}
            if "params" in m and "detector_params" not in m:  # a training job's names
                spec["detector_params"] = m["params"]
            if "holdout" in m and "eval_fraction" not in m:
                spec["eval_fraction"] = m["holdout"]
            spec["model"] = check_name(m.get("model"), "model name")
            specs.append(spec)
        names = [s["model"] for s in specs]
        if len(set(names)) != len(names):
            raise DataValidationError("a model is listed twice in 'models'", "list each once")
        return specs
    if shared["data_path"] or shared["asset"]:
        return [{**shared, "model": default_model}]
    by_model: dict[str, list[str]] = {}
    for a in list_registered_assets():
        by_model.setdefault(a.model, []).append(a.asset_id)
    if by_model:
        return [{**shared, "model": m, "asset_ids": ids} for m, ids in sorted(by_model.items())]
    return [{**shared, "model": default_model}]


def job_readings(job: Job, settings: Settings) -> Readings:
    """The training readings of a job: its uploaded file, else its assets' store window."""
    import tempfile
    from pathlib import Path

    from sensorguard.data import load_readings
    from sensorguard.store.jobs import job_upload

    spec = job.request
    if job.upload_name:
        data = job_upload(job.id, settings.resolved_store_url)
        if not data:
            raise SensorGuardError(f"job {job.id}: its uploaded file is missing")
        with tempfile.TemporaryDirectory(prefix="sg-job-") as tmp:
            path = Path(tmp) / job.upload_name
            path.write_bytes(data)
            return load_readings(path)
    return fleet_readings(
        list(spec["asset_ids"]), start=spec.get("start"), end=spec.get("end"), settings=settings
    )


def extract_model_window(
    run_id: str, spec: dict[str, Any], run_after: Any = None
) -> dict[str, Any]:
    """The training window of one planned model, saved for the next DAG steps.

    Sources, first match: an uploaded job file (``job_id``), ``asset_ids`` (several
    assets from the store), ``asset`` or ``data_path`` (as a single-model run). Store
    windows end at ``end``/``window_end`` (default: the run's time) and start
    ``window_days`` earlier unless ``start`` is given.
    """
    from datetime import timedelta

    from sensorguard.pipelines.windows import as_time, read_source, run_folder, save_window

    settings = settings_for(spec["model"])
    end = as_time(spec.get("end") or spec.get("window_end") or run_after)
    days = float(spec.get("window_days") or 14.0)
    start = as_time(spec.get("start")) or (None if end is None else end - timedelta(days=days))
    readings: Readings
    job_id = spec.get("job_id")
    if job_id and spec.get("upload_name"):
        from sensorguard.store.jobs import get_job

        job = get_job(job_id, settings.resolved_store_url)
        if job is None:
            raise DataValidationError(f"no training job {job_id!r} in the store")
        readings = job_readings(job, settings)
    elif spec.get("asset_ids"):
        readings = fleet_readings(list(spec["asset_ids"]), start=start, end=end, settings=settings)
    else:
        readings = read_source(
            data_path=spec.get("data_path"),
            asset=spec.get("asset"),
            start=start if spec.get("asset") else None,
            end=end if spec.get("asset") else None,
            settings=settings,
        )
    window = save_window(readings, run_folder(f"{run_id}/{spec['model']}", settings))
    window["eval_fraction"] = float(spec.get("eval_fraction") or 0.3)
    window["model"] = spec["model"]
    detector, params = fleet_detector(
        readings, spec.get("detector"), spec.get("detector_params"), settings
    )
    window["detector"] = detector
    window["detector_params"] = params or {}
    return window
