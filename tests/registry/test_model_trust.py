"""Loading a model never runs code from the registry (real MLflow store, real artifacts).

Regression tests of the reliability campaign: a cloudpickled foreign pyfunc aliased
``production`` is refused before anything is unpickled; a line appended to an artifact's
``model_code.py`` and an edited threshold (1e9) are refused by the artifact signature;
versions without a signature are refused unless signed (``models sign``) or allowed; a
deleted artifact folder is reported as missing files, not as an unknown version.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from support.lifecycle import seed_store
from support.serving import fit, register
from typer.testing import CliRunner

from sensorguard.config import Settings, get_settings
from sensorguard.errors import RegistryError


@pytest.fixture
def store(sg_home: Path) -> Settings:
    seed_store(sg_home)
    return get_settings()


def _model_dir(settings: Settings, version: int) -> Path:
    """The on-disk folder of a registered version's logged model (embedded store)."""
    from sensorguard.registry import get_client

    client = get_client(settings)
    mv = client.get_model_version(settings.model_name, str(version))
    model_id = mv.source.removeprefix("models:/")
    location = client.get_logged_model(model_id).artifact_location
    return Path(location.removeprefix("file://"))


def _load(settings: Settings, version: int) -> Any:
    from sensorguard.registry import load_model

    return load_model(f"models:/{settings.model_name}/{version}", settings)


def test_foreign_pickled_model_is_refused_before_unpickling(
    store: Settings, tmp_path: Path
) -> None:
    import mlflow

    from sensorguard.registry import UntrustedModel, configure_mlflow, ensure_experiment

    marker = tmp_path / "PWNED_BY_PICKLE"

    class Boom:
        def __reduce__(self) -> Any:
            return (os.system, (f"echo unpickled > {marker}",))

    class Evil(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
        def __init__(self) -> None:
            self.payload = Boom()

        def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
            return model_input

    configure_mlflow(store)
    exp = ensure_experiment("pickle-test", store)
    with mlflow.start_run(experiment_id=exp):
        info = mlflow.pyfunc.log_model(name="model", python_model=Evil())
    mv = mlflow.register_model(info.model_uri, store.model_name)
    mlflow.MlflowClient().set_registered_model_alias(store.model_name, "production", mv.version)
    assert not marker.exists()  # logging pickled it, nothing unpickled it yet

    with pytest.raises(UntrustedModel, match="not a SensorGuard detector model") as info_:
        from sensorguard.registry import load_model

        load_model(f"models:/{store.model_name}@production", store)
    assert "refusing to load" in str(info_.value)
    assert not marker.exists(), "the foreign model was unpickled"
    # `sensorguard models sign` cannot sign a foreign model into trust either
    res = CliRunner().invoke(_app(), ["models", "sign", str(mv.version)])
    assert res.exit_code == 2 and "not a SensorGuard detector model" in res.output
    assert not marker.exists()


def test_edited_model_code_is_refused_and_never_runs(store: Settings, tmp_path: Path) -> None:
    from sensorguard.registry import UntrustedModel

    version = register(store, fit(seed=1), alias="production")
    assert _load(store, version).signed
    marker = tmp_path / "PWNED_BY_MODEL_CODE"
    code = _model_dir(store, version) / "model_code.py"
    code.write_text(
        code.read_text() + f"\nimport pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
    )
    with pytest.raises(UntrustedModel, match="do not match their signature") as info:
        _load(store, version)
    assert "changed: model_code.py" in str(info.value)
    assert "models sign" in (info.value.hint or "")
    assert not marker.exists()


def test_edited_threshold_is_refused(store: Settings) -> None:
    from sensorguard.registry import UntrustedModel

    version = register(store, fit(seed=2), alias=None)
    path = _model_dir(store, version) / "artifacts" / "detector" / "detector.json"
    doc = json.loads(path.read_text())
    doc["scalars"]["threshold_"] = 1e9
    path.write_text(json.dumps(doc))
    with pytest.raises(UntrustedModel, match=r"changed: artifacts/detector/detector\.json"):
        _load(store, version)
    # another key cannot verify it either: a forged signature needs the key
    other = store.model_copy(update={"signing_key": "not-the-key"})
    with pytest.raises(UntrustedModel, match="do not match"):
        _load(other, version)


def test_unsigned_versions_need_a_review_and_a_signature(
    store: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sensorguard.registry import UntrustedModel, get_client
    from sensorguard.registry import tags as T

    detector = fit(seed=3)
    version = register(store, detector, alias=None)
    client = get_client(store)
    for tag in (T.SIGNATURE, T.MANIFEST):  # what a version registered by older code looks like
        client.delete_model_version_tag(store.model_name, str(version), tag)
    with pytest.raises(UntrustedModel, match="carries no artifact signature") as info:
        _load(store, version)
    assert "sensorguard models sign" in (info.value.hint or "")
    assert "SENSORGUARD_ALLOW_UNSIGNED_MODELS" in (info.value.hint or "")

    allowed = store.model_copy(update={"allow_unsigned_models": True})
    loaded = _load(allowed, version)
    assert not loaded.signed and loaded.threshold == detector.threshold_

    res = CliRunner().invoke(_app(), ["models", "sign", str(version)])
    assert res.exit_code == 0, res.output
    assert f"signed v{version}" in res.output
    loaded = _load(store, version)
    assert loaded.signed and loaded.threshold == detector.threshold_


def test_missing_artifacts_are_named_as_missing_files(store: Settings) -> None:
    version = register(store, fit(seed=4), alias=None)
    shutil.rmtree(_model_dir(store, version))
    with pytest.raises(RegistryError) as info:
        _load(store, version)
    assert "artifacts of version" in info.value.message
    assert "not found in the registry" not in str(info.value)
    assert "missing" in (info.value.hint or "")


def test_signing_key_file_is_private_and_the_setting_wins(
    store: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sensorguard.registry.signing import key_file

    register(store, fit(seed=5), alias=None)
    path = key_file(store)
    assert path.is_file() and (path.stat().st_mode & 0o777) == 0o600
    monkeypatch.setenv("SENSORGUARD_SIGNING_KEY", "k" * 32)
    get_settings.cache_clear()
    keyed = get_settings()
    version = register(keyed, fit(seed=6), alias=None)
    assert _load(keyed, version).signed
    from sensorguard.registry import UntrustedModel

    with pytest.raises(UntrustedModel, match="do not match"):
        _load(store, version)  # the key file is another key


def _app() -> Any:
    from sensorguard.cli import app

    return app


def test_a_version_registered_by_the_previous_code_loads_once_signed(
    store: Settings, tmp_path: Path
) -> None:
    """A version registered before signing (the MLflow folder of an old-code version,
    tests/fixtures/old_models/mlflow-operating-states, with its old model_code.py) is
    refused as unsigned, loads after `models sign`, and scores as it did."""
    import numpy as np
    import pandas as pd

    from sensorguard.registry import UntrustedModel, get_client

    fixtures = Path(__file__).parents[1] / "fixtures" / "old_models"
    folder = tmp_path / "old-version"
    shutil.copytree(fixtures / "mlflow-operating-states", folder)
    client = get_client(store)
    client.create_registered_model(store.model_name)
    mv = client.create_model_version(store.model_name, folder.resolve().as_uri(), run_id=None)
    version = int(mv.version)

    with pytest.raises(UntrustedModel, match="carries no artifact signature"):
        _load(store, version)
    res = CliRunner().invoke(_app(), ["models", "sign", str(version)])
    assert res.exit_code == 0, res.output
    loaded = _load(store, version)
    assert loaded.signed and loaded.training_profile is None  # older versions carry none
    with np.load(fixtures / "operating-states" / "expected.npz", allow_pickle=False) as npz:
        expected = {k: npz[k] for k in npz.files}
    columns = json.loads((fixtures / "operating-states" / "columns.json").read_text())["columns"]
    X = pd.DataFrame(expected["X"], columns=columns)
    result = loaded.detector.detect(X)
    # to float32 rounding: another CPU's BLAS rounds 1-2 ulp differently (see test_old_models)
    np.testing.assert_allclose(result.score, expected["score"], rtol=1e-6, atol=0)
    np.testing.assert_array_equal(result.is_anomaly, expected["is_anomaly"])
    # the same folder given as a path loads as data too (flavour checked, no code run)
    from sensorguard.registry import load_model

    local = load_model(folder, store)
    assert local.version == "local"
    np.testing.assert_allclose(
        local.detector.score_samples(X), expected["score"], rtol=1e-6, atol=0
    )
