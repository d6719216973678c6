"""Log a detector as a registered MLflow model, and load a model back: one ``load_model``.

The room's rules:

* Logging: a pyfunc "from code" (``model_code.py``) whose ``detector`` artifact is the
  detector's JSON + npz folder, plus a ``profiles`` artifact (the training drift profile
  and the failure types). Registration signs the artifacts (:mod:`.signing`).
* Loading never runs code from the registry. :func:`load_model` downloads the files, reads
  ``MLmodel`` as YAML text, refuses anything that is not a SensorGuard model **before**
  anything is deserialised or imported, checks the signature, and then reads only the
  detector's JSON and npz (``allow_pickle=False``). MLflow's pyfunc loader (pickle, or the
  artifact's ``model_code.py``) is never called; ``model_code.py`` is only there so that
  ``mlflow.pyfunc.load_model`` works for people who choose to use it.

(About 450 lines on purpose: logging and loading are one module because every
load-side check (flavour, signature, manifest) reads exactly the files the log side
writes; split, the file layout would be defined in two places.)
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from sensorguard.config import Settings, get_settings
from sensorguard.errors import DataValidationError, RegistryError
from sensorguard.registry import tags as T
from sensorguard.registry.setup import configure_mlflow, get_client, registry_errors
from sensorguard.registry.signing import UntrustedModel, sign_folder, verify_folder
from sensorguard.registry.versions import get_version, resolve_alias

if TYPE_CHECKING:  # pragma: no cover
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.models.model import ModelInfo

    from sensorguard.detectors.base import BaseDetector

MODEL_CODE = Path(__file__).with_name("model_code.py")
"""The models-from-code file logged with every model (ships as package data)."""

MODEL_ARTIFACT_NAME = "model"
DETECTOR_ARTIFACT = "detector"
PROFILES_ARTIFACT = "profiles"
TRAINING_PROFILE_FILE = "training_profile.json"
FAILURE_TYPES_FILE = "failure_types.json"
_CODE_LOADER = "mlflow.pyfunc.loaders.code_model"

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
    training_profile: dict[str, Any] | None = None,
    failure_types: dict[str, Any] | None = None,
) -> ModelInfo:
    """Log ``detector`` as a pyfunc model in the active MLflow run (models from code).

    ``training_profile`` (drift profile incl. per-sensor min/max) and ``failure_types``
    travel inside the model, so they are signed with it and one download brings them.
    """
    import mlflow

    from sensorguard import __version__

    sensors = list(detector.sensors)
    example = input_example[sensors].astype("float64").head(5).reset_index(drop=True)
    meta = {
        "sensorguard_version": __version__,
        "detector": detector.name,
        "sensors": sensors,
        "threshold": float(detector.threshold_),
        **(extra_metadata or {}),
    }
    with tempfile.TemporaryDirectory(prefix="sg-detector-") as tmp:
        artifacts = {DETECTOR_ARTIFACT: str(detector.save(Path(tmp) / DETECTOR_ARTIFACT))}
        if training_profile is not None or failure_types is not None:
            prof = Path(tmp) / PROFILES_ARTIFACT
            prof.mkdir()
            if training_profile is not None:
                (prof / TRAINING_PROFILE_FILE).write_text(json.dumps(training_profile))
            if failure_types is not None:
                (prof / FAILURE_TYPES_FILE).write_text(json.dumps(failure_types, default=float))
            artifacts[PROFILES_ARTIFACT] = str(prof)
        return mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT_NAME,
            python_model=str(MODEL_CODE),
            artifacts=artifacts,
            signature=model_signature(sensors),
            input_example=example,
            pip_requirements=pip_requirements(),
            metadata=meta,
        )


def _download(uri: str, dst: str, what: str, settings: Settings) -> Path:
    """The files behind ``uri``; a missing file is named as such, not "not found"."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=dst))
    except (MlflowException, OSError) as exc:
        first = str(getattr(exc, "message", exc)).splitlines()[0]
        if "connection" in first.lower() or "max retries" in first.lower():
            with registry_errors(what, settings):
                raise
        raise RegistryError(
            f"the artifacts of {what} cannot be read ({first})",
            "the version is registered but its files are missing or unreadable in the "
            "artifact store: restore them, or train and register a new version",
        ) from None


def artifact_signature(
    model_uri: str, settings: Settings | None = None
) -> tuple[str, dict[str, str]]:
    """(signature, manifest) of the logged model at ``model_uri`` (key created on first use)."""
    settings = configure_mlflow(settings)
    with tempfile.TemporaryDirectory(prefix="sg-sign-") as tmp:
        local = _download(model_uri, tmp, f"model {model_uri}", settings)
        check_flavour(local, f"model {model_uri}")
        return sign_folder(local, settings)


def _signature_tags(signature: str, files: dict[str, str]) -> dict[str, str]:
    text = json.dumps(files, sort_keys=True, separators=(",", ":"))
    return {T.SIGNATURE: signature, **({T.MANIFEST: text} if len(text) <= 5000 else {})}


def register_model_version(
    model_uri: str,
    run_id: str,
    name: str,
    tags: dict[str, str],
    settings: Settings | None = None,
) -> ModelVersion:
    """A new, signed version of registered model ``name`` (created on first use)."""
    from mlflow.exceptions import MlflowException

    settings = settings or get_settings()
    client = get_client(settings)
    signature, files = artifact_signature(model_uri, settings)
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
            tags={**tags, **_signature_tags(signature, files)},
            model_id=_parse_model_id_if_present(model_uri),
        )


def sign_version(version: int, settings: Settings | None = None) -> str:
    """(Re-)sign the current artifacts of ``version`` after a person has reviewed them.

    For versions registered before signing existed. The flavour check still applies:
    a foreign model cannot be signed into trust.
    """
    settings = configure_mlflow(settings)
    name = settings.model_name
    get_version(name, version, settings)
    signature, files = artifact_signature(f"models:/{name}/{version}", settings)
    T.set_tags(version, _signature_tags(signature, files), settings)
    return signature


# ---------------------------------------------------------------- loading


@dataclass
class LoadedModel:
    """A model loaded into memory, with where it came from.

    ``version`` is the registry version, or ``"local"`` for a folder saved by
    ``Detector.save``. ``training_profile`` is the drift profile of the training data
    (per-sensor mean/std/min/max/bins) and ``failure_types`` the failure-type profiles;
    both ``None`` for models that do not carry them (folders, versions from older code).
    """

    name: str
    version: int | str
    alias: str | None
    run_id: str | None
    detector: BaseDetector
    input_example: pd.DataFrame | None = None
    training_profile: dict[str, Any] | None = None
    failure_types: dict[str, Any] | None = None
    signed: bool = False
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def threshold(self) -> float:
        return float(self.detector.threshold_)

    @property
    def sensors(self) -> list[str]:
        return list(self.detector.sensors)

    @property
    def uri(self) -> str:
        if self.version == "local":
            return self.name
        if self.alias:
            return f"models:/{self.name}@{self.alias}"
        return f"models:/{self.name}/{self.version}"

    def predict(self, frame: pd.DataFrame, top_k: int = 3) -> pd.DataFrame:
        """One row per reading: score, is_anomaly, state, top_sensors (the pyfunc's output)."""
        return self.detector.detect(frame).to_frame(k=top_k, index=frame.index)


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


def load_model(ref: str | Path | None = None, settings: Settings | None = None) -> LoadedModel:
    """A model from a folder saved by ``Detector.save`` (version ``"local"``) or from the
    registry (``models:/NAME@ALIAS``, ``models:/NAME/VERSION``; default: the production
    alias). An alias is resolved to its version once and that version is loaded, so a
    promotion in between cannot mix two versions."""
    settings = settings or get_settings()
    if ref is None:
        ref = f"models:/{settings.model_name}@{settings.production_alias}"
    text = str(ref)
    if text.startswith("models:/"):
        name, version, alias = parse_model_uri(text)
        if version is None:
            assert alias is not None
            version = resolve_alias(name, alias, settings)
        return load_version(name, version, alias=alias, settings=settings)
    return _load_folder(Path(text))


def _load_folder(path: Path) -> LoadedModel:
    from sensorguard.detectors import load_detector

    if not path.exists():
        raise DataValidationError(
            f"model folder {path} does not exist",
            "pass a folder saved by a detector, or a registry URI such as "
            "models:/sensor-failure-detector@production",
        )
    if (path / "MLmodel").is_file():
        # a logged model copied out of a registry: read as data, like a registered version
        check_flavour(path, f"model folder {path}")
        profiles = path / "artifacts" / PROFILES_ARTIFACT
        return LoadedModel(
            name=path.resolve().name,
            version="local",
            alias=None,
            run_id=None,
            detector=load_detector(path / "artifacts" / DETECTOR_ARTIFACT),
            input_example=_input_example(path),
            training_profile=_optional_json(profiles / TRAINING_PROFILE_FILE),
            failure_types=_optional_json(profiles / FAILURE_TYPES_FILE),
        )
    return LoadedModel(
        name=path.resolve().name,
        version="local",
        alias=None,
        run_id=None,
        detector=load_detector(path),
        training_profile=_optional_json(path / TRAINING_PROFILE_FILE),
        failure_types=_optional_json(path / FAILURE_TYPES_FILE),
    )


def load_by_alias(name: str, alias: str, settings: Settings | None = None) -> LoadedModel:
    """Load the version ``name@alias`` points at."""
    return load_model(f"models:/{name}@{alias}", settings)


def check_flavour(folder: Path, what: str) -> dict[str, Any]:
    """The parsed ``MLmodel`` of a SensorGuard model; :class:`UntrustedModel` otherwise.

    Reads YAML text only (``safe_load``): nothing of the model is imported or unpickled.
    A SensorGuard model is a pyfunc "from code" whose only flavour is ``python_function``,
    loaded by MLflow's code-model loader, with a ``detector`` artifact and no pickled
    python model.
    """
    import yaml

    mlmodel = folder / "MLmodel"
    if not mlmodel.is_file():
        raise RegistryError(
            f"the artifacts of {what} are missing (no MLmodel file in the artifact store)",
            "the version is registered but its files are missing or incomplete: restore "
            "them, or train and register a new version",
        )
    try:
        meta = yaml.safe_load(mlmodel.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UntrustedModel(
            f"{what}: MLmodel is not readable YAML ({type(exc).__name__})",
            "register models with `sensorguard train`",
        ) from None
    flavours = meta.get("flavors") if isinstance(meta, dict) else None
    pyfunc = flavours.get("python_function") if isinstance(flavours, dict) else None
    artifacts = pyfunc.get("artifacts") if isinstance(pyfunc, dict) else None
    detector = artifacts.get(DETECTOR_ARTIFACT) if isinstance(artifacts, dict) else None
    ok = (
        isinstance(flavours, dict)
        and set(flavours) == {"python_function"}
        and isinstance(pyfunc, dict)
        and pyfunc.get("loader_module") == _CODE_LOADER
        and "python_model" not in pyfunc  # a pickled PythonModel
        and isinstance(detector, dict)
        and detector.get("path") == f"artifacts/{DETECTOR_ARTIFACT}"
    )
    if not ok:
        kinds = ", ".join(sorted(flavours)) if isinstance(flavours, dict) else "none"
        raise UntrustedModel(
            f"{what} is not a SensorGuard detector model (flavours: {kinds}); "
            "refusing to load it (loading a foreign model could run its code)",
            "register models with `sensorguard train`; point the alias at a SensorGuard "
            "version (`sensorguard models list`)",
        )
    return dict(meta)


def load_version(
    name: str,
    version: int | str,
    alias: str | None = None,
    settings: Settings | None = None,
) -> LoadedModel:
    """Download, check and load version ``version`` of ``name`` (see the module rules)."""
    from sensorguard.detectors import load_detector

    settings = configure_mlflow(settings or get_settings())
    mv = get_version(name, version, settings)
    what = f"version {mv.version} of '{name}'"
    tags = dict(mv.tags or {})
    with tempfile.TemporaryDirectory(prefix="sg-model-") as tmp:
        local = _download(f"models:/{name}/{mv.version}", tmp, what, settings)
        check_flavour(local, what)
        recorded = _manifest_tag(tags.get(T.MANIFEST))
        verify_folder(local, tags.get(T.SIGNATURE), settings, what=what, recorded=recorded)
        try:
            detector = load_detector(local / "artifacts" / DETECTOR_ARTIFACT)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RegistryError(
                f"the detector files of {what} are unreadable ({type(exc).__name__}: {exc})",
                "restore the artifacts, or train and register a new version",
            ) from None
        profiles = local / "artifacts" / PROFILES_ARTIFACT
        return LoadedModel(
            name=name,
            version=int(mv.version),
            alias=alias,
            run_id=mv.run_id,
            detector=detector,
            input_example=_input_example(local),
            training_profile=_optional_json(profiles / TRAINING_PROFILE_FILE),
            failure_types=_optional_json(profiles / FAILURE_TYPES_FILE),
            signed=bool(tags.get(T.SIGNATURE)),
        )


def _manifest_tag(text: str | None) -> dict[str, str] | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _optional_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    value = json.loads(path.read_text())
    return value if isinstance(value, dict) else None


def _input_example(folder: Path) -> pd.DataFrame | None:
    """The logged input example (JSON, "split" orient); an example is a convenience."""
    path = folder / "input_example.json"
    try:
        doc = json.loads(path.read_text())
        return pd.DataFrame(doc["data"], columns=doc["columns"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
