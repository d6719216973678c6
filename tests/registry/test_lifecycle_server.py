"""The lifecycle against a real ``mlflow server`` (MLFLOW_TRACKING_URI, proxied artifacts).

Same library calls as on the embedded store; here every run, model file, alias, tag and
audit record travels over MLflow's REST API, as it does in the deployed stack.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.serving import mlflow_server

from sensorguard import registry
from sensorguard.config import get_settings
from sensorguard.errors import RegistryError


@pytest.mark.integration
def test_lifecycle_on_a_real_mlflow_server(
    sg_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sensorguard.data import Readings
    from sensorguard.data.simulator import simulate_pump
    from sensorguard.pipelines import lifecycle
    from sensorguard.pipelines.training import train_and_register
    from sensorguard.registry import load_by_alias, resolve_alias
    from sensorguard.registry.runs import load_holdout

    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    readings = Readings.from_frame(simulate_pump(days=5, seed=1, freq="2min"), source="sim")
    with mlflow_server(tmp_path / "server") as (_proc, url):
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        get_settings.cache_clear()
        settings = get_settings()
        assert not settings.is_embedded

        result = train_and_register(
            readings,
            params={"max_states": 4, "silhouette_sample": 2000},
            settings=settings,
            trigger="test",
            holdout=0.4,
            idempotency_key="manual__server",
        )
        assert result.version == 1
        # the artifacts went through the server's proxy, not to a local folder
        assert not (sg_home / "artifacts").exists()
        held = load_holdout(result.run_id, settings)
        assert held is not None and len(held) == result.eval_rows

        outcome = lifecycle.gate_and_promote(1, held, settings=settings, trigger="test")
        assert outcome.action == "promote", outcome.decision.summary()
        assert resolve_alias(settings.model_name, "production", settings) == 1
        loaded = load_by_alias(settings.model_name, "production", settings)
        expected = result.detector.detect(readings.X).to_frame()
        assert loaded.predict(readings.X).equals(expected)

        again = train_and_register(
            readings, settings=settings, trigger="test", idempotency_key="manual__server"
        )
        assert again.reused and again.version == 1
        (event,) = registry.history(settings)
        assert (event.action, event.to_version, event.trigger) == ("promote", 1, "test")

    # the server is gone: a clear error with a hint, quickly, no traceback
    get_settings.cache_clear()
    from sensorguard.registry import setup

    setup._reachable.clear()
    with pytest.raises(RegistryError, match="cannot reach the MLflow server") as info:
        resolve_alias("sensor-failure-detector", "production")
    assert "MLFLOW_TRACKING_URI" in (info.value.hint or "")


@pytest.mark.integration
def test_sensorguard_ui_serves_the_embedded_store(sg_home: Path, tmp_path: Path) -> None:
    import httpx
    from support.lifecycle import seed_store
    from support.serving import SG, Proc, base_env, free_port, wait_http

    seed_store(sg_home)
    port = free_port()
    proc = Proc(
        [SG, "ui", "--port", str(port)],
        tmp_path / "ui.log",
        base_env(SENSORGUARD_HOME=str(sg_home)),
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/health", timeout=180)
        r = httpx.get(f"{url}/api/2.0/mlflow/experiments/get-by-name?experiment_name=sensorguard")
        assert r.status_code == 200
        location = r.json()["experiment"]["artifact_location"]
        assert location == (sg_home / "artifacts" / "sensorguard").resolve().as_uri()
        assert f"MLflow UI on {url}" in proc.output()
    finally:
        proc.stop()
