"""Log a detector as a registered MLflow pyfunc model, and load it back by version or alias."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from sensorguard.config import Settings, get_settings
from sensorguard.errors import RegistryError
from sensorguard.registry.setup import configure_mlflow, get_client, registry_errors

if TYPE_CHECKING:  # pragma: no cover
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.models.model import ModelInfo

    from sensorguard.detectors.base import BaseDetector

MODEL_CODE = Path(__file__).with_name("model_code.py")
"""The models-from-code file logged with every model (ships as package data)."""

MODEL_ARTIFACT_NAME = "model"

# Pinned from the running environment: inferring requirements costs ~3 s per log call.
_REQUIREMENTS = ("mlflow", "numpy", "pandas", "scikit-learn", "scipy", "pyarrow")


def pip_requirements() -> list[str]:
    """What the logged model needs, pinned to the versions it was trained with."""
    out = []
    for dist in _REQUIREMENTS:
        try:
            out.append(f"{dist}=={importlib_metadata.version(dist)}")
        except importlib_metadata.PackageNotFoundError:
            out.append(dist)
    return out


def model_signature(sensors: list[str]) -> Any:
    """Sensor columns in (double), the per-reading detector output out."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    inputs = Schema([ColSpec("double", s) for s in sensors])
    outputs = Schema(
        [
            ColSpec("double", "score"),
            ColSpec("boolean", "is_anomaly"),
            ColSpec("long", "state"),
            ColSpec("string", "top_sensors"),
        ]
    )
    params = ParamSchema([ParamSpec("top_k", "long", 3)])
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def log_detector_model(
    detector: BaseDetector,
    input_example: pd.DataFrame,
    *,
    extra_metadata: dict[str, Any] | None = None,
) -> ModelInfo:
    """Log ``detector`` as a pyfunc model in the active MLflow run (models from code)."""
    import mlflow

    sensors = list(detector.sensors)
    example = input_example[sensors].astype("float64").head(5).reset_index(drop=True)
    from sensorguard import __version__

    meta = {
        "sensorguard_version": __version__,
        "detector": detector.name,
        "sensors": sensors,
        "threshold": float(detector.threshold_),
        **(extra_metadata or {}),
    }
    with tempfile.TemporaryDirectory(prefix="sg-detector-") as tmp:
        folder = detector.save(Path(tmp) / "detector")
        return mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT_NAME,
            python_model=str(MODEL_CODE),
            artifacts={"detector": str(folder)},
            signature=model_signature(sensors),
            input_example=example,
            pip_requirements=pip_requirements(),
            metadata=meta,
        )


def register_model_version(
    model_uri: str,
    run_id: str,
    name: str,
    tags: dict[str, str],
    settings: Settings | None = None,
) -> ModelVersion:
    """A new version of registered model ``name`` (created on first use)."""
    from mlflow.exceptions import MlflowException

    settings = settings or get_settings()
    client = get_client(settings)
    with registry_errors(f"registered model '{name}'", settings):
        try:
            client.get_registered_model(name)
        except MlflowException:
            try:
                client.create_registered_model(
                    name,
                    description=(
                        "SensorGuard failure detector. The alias "
                        f"'{settings.production_alias}' is the version the predictor "
                        f"serves; '{settings.previous_alias}' is the one rollback restores."
                    ),
                )
            except MlflowException:
                client.get_registered_model(name)  # created concurrently: fine
        # a remote tracking server only accepts a models:/<model_id> source together
        # with that model_id (as mlflow.register_model does)
        from mlflow.store.artifact.utils.models import _parse_model_id_if_present

        return client.create_model_version(
            name,
            model_uri,
            run_id=run_id,
            tags=tags,
            model_id=_parse_model_id_if_present(model_uri),
        )


# ---------------------------------------------------------------- loading


@dataclass
class LoadedModel:
    """A registered model version loaded into memory, with where it came from."""

    name: str
    version: int
    alias: str | None
    run_id: str | None
    detector: BaseDetector
    pyfunc: Any
    input_example: pd.DataFrame | None
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def threshold(self) -> float:
        return float(self.detector.threshold_)

    @property
    def sensors(self) -> list[str]:
        return list(self.detector.sensors)

    @property
    def uri(self) -> str:
        if self.alias:
            return f"models:/{self.name}@{self.alias}"
        return f"models:/{self.name}/{self.version}"


def resolve_alias(name: str, alias: str, settings: Settings | None = None) -> int:
    """The version number ``name@alias`` points at; ``RegistryError`` if there is none."""
    from mlflow.exceptions import MlflowException

    settings = settings or get_settings()
    client = get_client(settings)
    with registry_errors(f"registered model '{name}'", settings):
        try:
            mv = client.get_model_version_by_alias(name, alias)
        except MlflowException as exc:
            if getattr(exc, "error_code", "") in {
                "RESOURCE_DOES_NOT_EXIST",
                "INVALID_PARAMETER_VALUE",
            }:
                _raise_missing(client, name, alias)
            raise
        return int(mv.version)


def _raise_missing(client: Any, name: str, alias: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        raise RegistryError(
            f"no registered model named '{name}'",
            "train and register one with `sensorguard train DATA` or `sensorguard demo`",
        ) from None
    raise RegistryError(
        f"model '{name}' has no version with alias '{alias}'",
        "promote a version with `sensorguard models promote VERSION` "
        "(see `sensorguard models list`)",
    )


def load_version(
    name: str,
    version: int | str,
    alias: str | None = None,
    settings: Settings | None = None,
) -> LoadedModel:
    """Download and load version ``version`` of ``name`` (pickle-free) into memory."""
    from mlflow.models import Model

    import mlflow

    settings = settings or get_settings()
    configure_mlflow(settings)
    client = get_client(settings)
    with registry_errors(f"version {version} of model '{name}'", settings):
        mv = client.get_model_version(name, str(version))
        with tempfile.TemporaryDirectory(prefix="sg-model-") as tmp:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{name}/{mv.version}", dst_path=tmp
            )
            pyfunc = mlflow.pyfunc.load_model(local)
            try:
                example = Model.load(local).load_input_example(local)
            except Exception:  # an example is a convenience, not a requirement
                example = None
    python_model = pyfunc.unwrap_python_model()
    detector = getattr(python_model, "detector", None)
    if detector is None:
        raise RegistryError(
            f"version {mv.version} of '{name}' is not a SensorGuard detector model",
            "register models with `sensorguard train`",
        )
    return LoadedModel(
        name=name,
        version=int(mv.version),
        alias=alias,
        run_id=mv.run_id,
        detector=detector,
        pyfunc=pyfunc,
        input_example=example if isinstance(example, pd.DataFrame) else None,
    )


def load_by_alias(name: str, alias: str, settings: Settings | None = None) -> LoadedModel:
    """Load the version ``name@alias`` points at (``models:/name@alias``)."""
    version = resolve_alias(name, alias, settings)
    return load_version(name, version, alias=alias, settings=settings)


def parse_model_uri(uri: str) -> tuple[str, int | None, str | None]:
    """``models:/name@alias`` → (name, None, alias); ``models:/name/3`` → (name, 3, None)."""
    if not uri.startswith("models:/"):
        raise RegistryError(
            f"not a model URI: {uri!r}", "use models:/NAME@ALIAS or models:/NAME/VERSION"
        )
    rest = uri[len("models:/") :].strip("/")
    if "@" in rest:
        name, alias = rest.rsplit("@", 1)
        if name and alias:
            return name, None, alias
    elif "/" in rest:
        name, ver = rest.rsplit("/", 1)
        if name and ver.isdigit():
            return name, int(ver), None
    raise RegistryError(
        f"cannot parse model URI {uri!r}", "use models:/NAME@ALIAS or models:/NAME/VERSION"
    )


def load_model_uri(uri: str, settings: Settings | None = None) -> LoadedModel:
    """Load ``models:/name@alias`` or ``models:/name/version``."""
    name, version, alias = parse_model_uri(uri)
    if alias is not None:
        return load_by_alias(name, alias, settings)
    assert version is not None
    return load_version(name, version, settings=settings)
