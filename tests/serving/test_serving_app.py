"""The predictor app in-process (Starlette TestClient) on a real embedded MLflow registry.

Every request test runs twice: through the raw ASGI fast path the service uses, and
through the FastAPI route that documents the endpoint, so both stay identical.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from support.lifecycle import seed_store
from support.serving import SENSORS, fit, frame, reading, register, set_alias

from sensorguard.serving import schemas
from sensorguard.serving.app import create_app
from sensorguard.serving.settings import ServingSettings

MAX_BATCH = 50


def _settings(home: Path, **kw: Any) -> ServingSettings:
    base: dict[str, Any] = {
        "home": home,
        "tracking_uri": f"sqlite:///{home / 'mlflow.db'}",
        "registry_uri": f"sqlite:///{home / 'mlflow.db'}",
        "poll_interval": 0.2,
        "max_batch": MAX_BATCH,
        "max_body_mb": 0.05,
    }
    base.update(kw)
    return ServingSettings(**base)


def _wait_ready(client: TestClient, version: int | None = None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    body: Any = None
    while time.monotonic() < deadline:
        r = client.get("/readyz")
        body = r.json()
        if r.status_code == 200 and (version is None or body["model"]["version"] == version):
            return
        time.sleep(0.05)
    raise AssertionError(f"not ready: {body}")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    home = tmp_path_factory.mktemp("serving-app")
    seed_store(home)
    settings = _settings(home)
    detector = fit(seed=0)
    version = register(settings, detector)
    return {"home": home, "settings": settings, "detector": detector, "version": version}


@pytest.fixture(scope="module")
def app_client(registry: dict[str, Any]) -> Iterator[tuple[Any, TestClient]]:
    app = create_app(registry["settings"])
    with TestClient(app, raise_server_exceptions=False) as client:
        _wait_ready(client)
        yield app, client


@pytest.fixture(params=[True, False], ids=["fast-path", "fastapi-route"])
def client(request: pytest.FixtureRequest, app_client: tuple[Any, TestClient]) -> TestClient:
    app, c = app_client
    app.fast_path = request.param
    return c


def _post(client: TestClient, payload: Any, **kw: Any) -> Any:
    return client.post("/v1/predict", json=payload, **kw)


# ------------------------------------------------------------------ happy paths
def test_predict_records_matches_the_detector(client: TestClient, registry: dict[str, Any]) -> None:
    X = frame(20, seed=5)
    X.iloc[3, 2] = 500.0  # one wild reading
    # a new asset: its alarm state starts with this batch, like detect() on it
    asset = f"fresh-{time.monotonic_ns()}"
    r = _post(client, {"readings": [{**x, "asset_id": asset} for x in X.to_dict("records")]})
    assert r.status_code == 200, r.text
    body = r.json()
    schemas.PredictResponse.model_validate(body)
    name = registry["settings"].model_name
    assert body["model"] == {"name": name, "version": registry["version"]}
    assert r.headers["x-model-name"] == name
    assert r.headers["x-model-version"] == str(registry["version"])
    preds = body["predictions"]
    assert len(preds) == 20
    expected = registry["detector"].detect(X)
    np.testing.assert_allclose([p["score"] for p in preds], expected.score, rtol=1e-6)
    assert [p["is_anomaly"] for p in preds] == expected.is_anomaly.tolist()
    assert [p["state"] for p in preds] == expected.state.tolist()
    assert [p["top_sensors"] for p in preds] == expected.top_sensors(3)
    assert preds[3]["top_sensors"][0] == "s2"
    assert preds[3]["above_threshold"] is True
    assert [p["above_threshold"] for p in preds] == (expected.score > expected.threshold).tolist()


def test_columnar_request_and_response_agree_with_records(client: TestClient) -> None:
    # stateless: each request a batch on its own (in one stream, the second request's
    # ranking would continue the first's window)
    X = frame(30, seed=6)
    rec = client.post(
        "/v1/predict?stateless=true", json={"readings": X.to_dict(orient="records")}
    ).json()
    col_in = {"columns": {s: X[s].tolist() for s in SENSORS}}
    col = client.post("/v1/predict?stateless=true", json=col_in).json()
    assert col["predictions"] == rec["predictions"]
    out = client.post("/v1/predict?orient=columns&stateless=true", json=col_in)
    assert out.status_code == 200, out.text
    body = out.json()
    schemas.PredictResponse.model_validate(body)
    cols = body["columns"]
    assert cols["score"] == [p["score"] for p in rec["predictions"]]
    assert cols["top_sensors"] == [p["top_sensors"] for p in rec["predictions"]]
    assert cols["is_anomaly"] == [p["is_anomaly"] for p in rec["predictions"]]


def test_timestamp_and_asset_are_passed_through(client: TestClient) -> None:
    readings = [
        {"timestamp": "2026-01-01T00:00:00Z", "asset_id": "pump-01", **reading(0)},
        {"asset_id": "pump-02", **reading(1)},
    ]
    preds = _post(client, {"readings": readings}).json()["predictions"]
    assert preds[0]["timestamp"] == "2026-01-01T00:00:00Z"
    assert preds[0]["asset_id"] == "pump-01"
    assert preds[1]["timestamp"] is None
    assert preds[1]["asset_id"] == "pump-02"
    cols = {s: [reading(0)[s]] for s in SENSORS}
    cols["timestamp"] = ["t0"]
    out = client.post("/v1/predict?orient=columns", json={"columns": cols}).json()
    assert out["columns"]["timestamp"] == ["t0"]


def test_nulls_follow_the_models_missing_value_policy(
    client: TestClient, registry: dict[str, Any]
) -> None:
    det = registry["detector"]
    X = frame(4, seed=7)
    X.iloc[0, 1] = np.nan  # no earlier value: training median
    X.iloc[2, 4] = np.nan  # forward-filled from row 1
    payload = [
        {k: (None if pd.isna(v) else v) for k, v in row.items()} for row in X.to_dict("records")
    ]
    # stateless: the batch alone is the context (a tracked asset would continue its gaps
    # from its earlier readings, see test_serving_alarms.py)
    preds = client.post("/v1/predict?stateless=true", json={"readings": payload}).json()[
        "predictions"
    ]
    filled = X.copy()
    filled.iloc[0, 1] = det.schema_.fill_values[1]
    filled.iloc[2, 4] = X.iloc[1, 4]
    expected = det.detect(filled).score
    np.testing.assert_allclose([p["score"] for p in preds], expected, rtol=1e-6)
    assert det.schema_.missing_policy == "ffill-then-median"


def test_extra_fields_are_ignored(client: TestClient) -> None:
    r = _post(client, {"readings": [{**reading(0), "comment": "ok", "machine_status": "NORMAL"}]})
    assert r.status_code == 200, r.text


def test_model_endpoint(client: TestClient, registry: dict[str, Any]) -> None:
    r = client.get("/v1/model")
    assert r.status_code == 200
    info = schemas.ModelInfo.model_validate(r.json())
    det = registry["detector"]
    assert info.version == registry["version"]
    assert info.alias == "production"
    assert info.run_id
    assert info.sensors == SENSORS
    assert info.threshold == pytest.approx(det.threshold_)
    assert info.missing_policy == "ffill-then-median"
    assert list(info.fill_values.values()) == pytest.approx(det.schema_.fill_values)
    assert info.detector == "operating-states"


def test_health_ready_and_metrics(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    schemas.Readiness.model_validate(ready.json())
    before = _metric(client, "sensorguard_predictions_total")
    X = frame(7, seed=8)
    X.iloc[:, 0] = 1e4  # far outside training: anomalous, blamed on s0
    assert _post(client, {"readings": X.to_dict("records")}).status_code == 200
    text = client.get("/metrics").text
    assert _metric(client, "sensorguard_predictions_total") == before + 7
    assert 'sensorguard_anomalies_by_sensor_total{sensor="s0"}' in text
    assert _metric(client, 'sensorguard_anomalies_by_sensor_total{sensor="s0"}') >= 1
    assert 'sensorguard_model_info{alias="production"' in text
    assert "sensorguard_request_duration_seconds_bucket" in text
    assert _metric(client, "sensorguard_model_reloads_total") >= 1
    assert "sensorguard_model_reload_failures_total" in text


def _metric(client: TestClient, prefix: str) -> float:
    total = 0.0
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(prefix) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


# ------------------------------------------------------------------ bad input
BAD_RAW: list[tuple[str, bytes, int, str]] = [
    ("malformed", b'{"readings": [{"s0": 1,}]}', 400, "malformed_json"),
    ("nan-literal", b'{"readings": [{"s0": NaN}]}', 400, "malformed_json"),
    ("infinity-literal", b'{"readings": [{"s0": Infinity}]}', 400, "malformed_json"),
    ("overflowing-number", b'{"readings": [{"s0": 1e400}]}', 400, "malformed_json"),
    ("empty-body", b"", 400, "empty_body"),
    ("trailing-garbage", b'{"readings": []} x', 400, "malformed_json"),
    ("list-body", b"[1, 2, 3]", 422, "bad_body"),
    ("string-body", b'"hello"', 422, "bad_body"),
    ("number-body", b"42", 422, "bad_body"),
    ("null-body", b"null", 422, "bad_body"),
    ("no-known-key", b'{"rows": []}', 422, "bad_body"),
    ("readings-not-list", b'{"readings": {"s0": 1}}', 422, "bad_body"),
    ("columns-not-object", b'{"columns": [1]}', 422, "bad_body"),
    ("empty-batch", b'{"readings": []}', 422, "empty_batch"),
    (
        "empty-columns",
        b'{"columns": {"s0": [], "s1": [], "s2": [], "s3": [], "s4": [], "s5": []}}',
        422,
        "empty_batch",
    ),
]


@pytest.mark.parametrize(
    ("body", "status", "code"), [b[1:] for b in BAD_RAW], ids=[b[0] for b in BAD_RAW]
)
def test_bad_raw_bodies(client: TestClient, body: bytes, status: int, code: str) -> None:
    r = client.post("/v1/predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code
    assert err["message"]
    assert err.get("hint")


def _bad(client: TestClient, payload: Any) -> dict[str, Any]:
    r = _post(client, payload)
    assert 400 <= r.status_code < 500, r.text
    body = r.json()
    assert "model" in body  # the served model is named even on errors
    return {"status": r.status_code, **body["error"]}


def test_missing_sensors_are_listed(client: TestClient) -> None:
    one = reading(0)
    del one["s2"], one["s4"]
    err = _bad(client, {"readings": [reading(1), one, one]})
    assert err["status"] == 422
    assert err["code"] == "missing_sensors"
    assert err["missing"] == ["s2", "s4"]
    assert err["path"] == "readings[1]"
    assert "s2, s4" in err["message"] and "1 other reading" in err["message"]
    cols = {s: [1.0] for s in SENSORS if s != "s5"}
    err = _bad(client, {"columns": cols})
    assert (err["status"], err["code"], err["missing"]) == (422, "missing_sensors", ["s5"])


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("abc", "string"),
        ("1.5", "string"),
        (True, "boolean"),
        ({"v": 1}, "object"),
        ([1.0], "list"),
    ],
    ids=["text", "numeric-string", "bool", "nested-object", "nested-list"],
)
def test_non_numeric_values_name_their_path(client: TestClient, value: Any, kind: str) -> None:
    readings = [reading(i) for i in range(5)]
    readings[3]["s4"] = value
    err = _bad(client, {"readings": readings})
    assert (err["status"], err["code"], err["path"]) == (422, "non_numeric", "readings[3].s4")
    assert kind in err["message"]
    cols: dict[str, Any] = {s: [1.0, 2.0, 3.0] for s in SENSORS}
    cols["s1"][2] = value
    err = _bad(client, {"columns": cols})
    assert (err["code"], err["path"]) == ("non_numeric", "columns.s1[2]")


def test_every_value_nested_the_same_way_is_still_caught(client: TestClient) -> None:
    # numpy would happily build a 3-d array from these
    err = _bad(client, {"readings": [{s: [1.0, 2.0] for s in SENSORS}] * 2})
    assert (err["code"], err["path"]) == ("non_numeric", "readings[0].s0")


def test_reading_of_the_wrong_type(client: TestClient) -> None:
    err = _bad(client, {"readings": [reading(0), [1, 2, 3]]})
    assert (err["status"], err["code"], err["path"]) == (422, "bad_reading", "readings[1]")
    err = _bad(client, {"readings": ["s0=1"]})
    assert err["path"] == "readings[0]"


def test_ragged_columns(client: TestClient) -> None:
    cols: dict[str, Any] = {s: [1.0, 2.0] for s in SENSORS}
    cols["s3"] = [1.0]
    err = _bad(client, {"columns": cols})
    assert (err["code"], err["path"]) == ("ragged_columns", "columns.s3")
    cols["s3"] = 1.0
    assert _bad(client, {"columns": cols})["code"] == "bad_column"


def test_both_layouts_at_once_is_ambiguous(client: TestClient) -> None:
    err = _bad(client, {"readings": [reading(0)], "columns": {}})
    assert err["code"] == "bad_body" and "both" in err["message"]


def test_batch_over_the_limit_is_413(client: TestClient) -> None:
    err = _bad(client, {"readings": [reading(i) for i in range(MAX_BATCH + 1)]})
    assert (err["status"], err["code"], err["limit"]) == (413, "batch_too_large", MAX_BATCH)
    cols = {s: [1.0] * (MAX_BATCH + 1) for s in SENSORS}
    assert _bad(client, {"columns": cols})["status"] == 413
    assert _post(client, {"readings": [reading(i) for i in range(MAX_BATCH)]}).status_code == 200


def test_body_over_the_size_limit_is_413(client: TestClient) -> None:
    payload = {"readings": [{**reading(0), "note": "x" * 60_000}]}
    err = _bad(client, payload)
    assert (err["status"], err["code"]) == (413, "body_too_large")


def test_wrong_content_type_is_415(client: TestClient) -> None:
    r = client.post(
        "/v1/predict",
        content=b"s0=1&s1=2",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 415
    assert r.json()["error"]["code"] == "unsupported_media_type"
    ok = client.post(
        "/v1/predict",
        content=orjson.dumps({"readings": [reading(0)]}),
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert ok.status_code == 200


def test_bad_orient_is_422(client: TestClient) -> None:
    r = client.post("/v1/predict?orient=table", json={"readings": [reading(0)]})
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid_request"


def test_huge_numbers(client: TestClient) -> None:
    huge = [reading(0, s0=1e30, s1=-1e30), reading(1, s2=10**30)]
    r = _post(client, {"readings": huge})
    assert r.status_code == 200, r.text
    p = r.json()["predictions"][0]
    assert p["score"] > 1e6 and p["above_threshold"] is True
    err = _bad(client, {"readings": [reading(0), reading(1, s3=1e300)]})
    assert (err["status"], err["code"], err["path"]) == (422, "out_of_range", "readings[1].s3")
    cols = {s: [1.0, -1e200] for s in SENSORS}
    err = _bad(client, {"columns": cols})
    assert (err["code"], err["path"]) == ("out_of_range", "columns.s0[1]")


def test_unknown_route_and_method_are_json(client: TestClient) -> None:
    r = client.get("/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = client.get("/v1/predict")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


# ------------------------------------------------------------------ OpenAPI
def test_openapi_documents_predict_with_working_examples(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    op = spec["paths"]["/v1/predict"]["post"]
    content = op["requestBody"]["content"]["application/json"]
    refs = [s["$ref"].rsplit("/", 1)[1] for s in content["schema"]["oneOf"]]
    assert refs == ["RecordsRequest", "ColumnsRequest"]
    for name in [*refs, "PredictResponse", "ErrorResponse", "ModelInfo"]:
        assert name in spec["components"]["schemas"], name
    assert {"200", "400", "401", "403", "413", "415", "422", "503"} <= set(op["responses"])
    assert any(p["name"] == "orient" for p in op["parameters"])
    for name, example in content["examples"].items():
        r = _post(client, example["value"])
        assert r.status_code == 200, (name, r.text)
        schemas.PredictResponse.model_validate(r.json())
    for example in op["responses"]["200"]["content"]["application/json"]["examples"].values():
        schemas.PredictResponse.model_validate(example["value"])
    # the examples use the served model's sensors
    assert set(SENSORS) <= set(content["examples"]["records"]["value"]["readings"][0])
    assert client.get("/docs").status_code == 200


# ------------------------------------------------------------------ security
def test_admin_is_disabled_without_a_token(client: TestClient) -> None:
    r = client.post("/v1/admin/reload")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "admin_disabled"


def test_tokens_guard_predict_and_admin(registry: dict[str, Any]) -> None:
    settings = registry["settings"].model_copy(update={"api_token": "s3cret-token"})
    app = create_app(settings)
    with TestClient(app) as c:
        _wait_ready(c)
        for fast in (True, False):
            app.fast_path = fast
            body = {"readings": [reading(0)]}
            r = c.post("/v1/predict", json=body)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
            r = c.post("/v1/predict", json=body, headers={"authorization": "Bearer nope"})
            assert r.status_code == 403
            r = c.post("/v1/predict", json=body, headers={"authorization": "Basic czM="})
            assert r.status_code == 401
            ok = {"authorization": "Bearer s3cret-token"}
            assert c.post("/v1/predict", json=body, headers=ok).status_code == 200
        assert c.post("/v1/admin/reload").status_code == 401
        assert c.post("/v1/admin/reload", headers={"authorization": "Bearer x"}).status_code == 403
        r = c.post("/v1/admin/reload", headers={"authorization": "Bearer s3cret-token"})
        assert r.status_code == 200
        assert r.json()["changed"] is False
        assert c.get("/healthz").status_code == 200  # health stays open


# ------------------------------------------------------------------ hot swap
def test_reload_swaps_versions_and_survives_a_broken_one(
    registry: dict[str, Any], tmp_path: Path
) -> None:
    settings = registry["settings"].model_copy(
        update={"model_name": "swap-model", "api_token": "t", "poll_interval": 30.0}
    )
    auth = {"authorization": "Bearer t"}
    v1 = register(settings, fit(seed=1))
    app = create_app(settings)
    with TestClient(app) as c:
        _wait_ready(c, v1)
        v2 = register(settings, fit(seed=2, shift=1.0))
        assert _post(c, {"readings": [reading(0)]}, headers=auth).json()["model"]["version"] == v1
        r = c.post("/v1/admin/reload", headers=auth).json()
        assert (r["changed"], r["version"], r["previous"]) == (True, v2, v1)
        assert _post(c, {"readings": [reading(0)]}, headers=auth).json()["model"]["version"] == v2
        assert c.get("/v1/model").json()["version"] == v2

        # a version that is not a SensorGuard detector: the load fails, v2 keeps serving
        bad = _register_foreign_model(settings, tmp_path)
        r = c.post("/v1/admin/reload", headers=auth)
        assert r.status_code == 502
        assert r.json()["stage"] == "load" and r.json()["version"] == v2
        assert "not a SensorGuard detector" in r.json()["error"]
        p = _post(c, {"readings": [reading(0)]}, headers=auth)
        assert p.status_code == 200 and p.json()["model"]["version"] == v2
        assert _metric(c, 'sensorguard_model_reload_failures_total{stage="load"}') == 1
        assert c.get("/readyz").json()["last_error"].startswith("load:")

        # rollback to v1: swapped back, failure state cleared
        set_alias(settings, v1)
        r = c.post("/v1/admin/reload", headers=auth).json()
        assert (r["changed"], r["version"]) == (True, v1)
        assert c.get("/readyz").json()["last_error"] is None
        assert bad > v2


def _register_foreign_model(settings: ServingSettings, tmp_path: Path) -> int:
    import mlflow

    from sensorguard.registry import ensure_experiment, get_client

    code = tmp_path / "other_model.py"
    code.write_text(
        "import mlflow\n"
        "from mlflow.pyfunc import PythonModel\n\n"
        "class Echo(PythonModel):\n"
        "    def predict(self, context, model_input, params=None):\n"
        "        return model_input\n\n"
        "mlflow.models.set_model(Echo())\n"
    )
    exp = ensure_experiment(settings.experiment, settings)
    with mlflow.start_run(experiment_id=exp):
        info = mlflow.pyfunc.log_model(name="model", python_model=str(code))
    mv = mlflow.register_model(info.model_uri, settings.model_name)
    get_client(settings).set_registered_model_alias(settings.model_name, "production", mv.version)
    return int(mv.version)


def test_not_ready_until_a_model_exists(registry: dict[str, Any]) -> None:
    settings = registry["settings"].model_copy(update={"model_name": "not-yet-registered"})
    app = create_app(settings)
    with TestClient(app) as c:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and c.get("/readyz").json()["last_error"] is None:
            time.sleep(0.05)
        r = c.get("/readyz")
        assert r.status_code == 503
        assert "no registered model" in r.json()["last_error"]
        assert c.get("/healthz").status_code == 200
        p = _post(c, {"readings": [reading(0)]})
        assert p.status_code == 503 and p.json()["error"]["code"] == "not_ready"
        assert c.get("/v1/model").status_code == 503
        # registering it makes the service ready without a restart
        v = register(settings, fit(seed=3))
        _wait_ready(c, v, timeout=30)
        assert _post(c, {"readings": [reading(0)]}).json()["model"]["version"] == v


# ------------------------------------------------------------------ CLI
def test_serve_cli_reports_bad_options_in_one_line(tmp_path: Path) -> None:
    import socket

    from typer.testing import CliRunner

    from sensorguard.cli import app

    runner = CliRunner()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        r = runner.invoke(
            app, ["serve", "--port", str(port)], env={"SENSORGUARD_HOME": str(tmp_path)}
        )
    assert r.exit_code == 2
    assert "cannot listen on 127.0.0.1:" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["serve", "--log-level", "chatty"])
    assert r.exit_code == 2 and "unknown log level" in r.output
    r = runner.invoke(app, ["serve", "--port", "0"], env={"SENSORGUARD_MAX_BATCH": "-3"})
    assert r.exit_code == 2 and "max_batch" in r.output
    help_text = runner.invoke(app, ["serve", "--help"]).output
    assert "--poll-interval" in help_text and "one uvicorn worker" in help_text


# ------------------------------------------------------------------ issue-15 regressions
def test_405_names_the_allowed_methods(client: TestClient) -> None:
    r = client.get("/v1/predict")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    r = client.put("/v1/model")
    assert r.status_code == 405 and r.headers["allow"] == "GET"
    assert r.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    "body",
    [
        b'{"readings": [], "readings": [{"s0": 1, "s1": 2, "s2": 3, "s3": 4, "s4": 5, "s5": 6}]}',
        b'{"readings": [{"s0": 1, "s1": 2, "s2": 3, "s3": 4, "s4": 5, "s5": 6, "s0": 7}]}',
        b'{"columns": {"s0": [1], "s1": [1], "s2": [1], "s3": [1], "s4": [1], "s5": [1], '
        b'"s5": [2]}}',
        b'{"readings": [{"s0": 1, "s1": 2, "s2": 3, "s3": 4, "s4": 5, "s5": 6, '
        b'"meta": {"a": 1, "a": 2}}]}',
    ],
    ids=["top-level", "in-a-reading", "in-columns", "nested"],
)
def test_duplicate_keys_are_refused(client: TestClient, body: bytes) -> None:
    r = client.post("/v1/predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "duplicate_key"


def test_colons_in_strings_are_not_duplicates(client: TestClient) -> None:
    readings = [
        {"timestamp": f"2026-01-01T00:{i:02d}:00+01:00", "asset_id": "site:a", **reading(i)}
        for i in range(3)
    ]
    readings[1]["note"] = {"k:v": "x:y"}  # an ignored field with colons: the slow path
    r = _post(client, {"readings": readings})
    assert r.status_code == 200, r.text


def test_extra_fields_without_repeats_pass_the_key_count(client: TestClient) -> None:
    # no timestamp or asset: the one-count shortcut sees more colons than sensors and
    # must fall back to the exact count, not refuse
    r = _post(client, {"readings": [{**reading(0), "note": 1}, reading(1)]})
    assert r.status_code == 200, r.text
    body = b'{"readings": [{"s0": 1, "s1": 2, "s2": 3, "s3": 4, "s4": 5, "s5": 6, "s5": 7}]}'
    r = client.post("/v1/predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "duplicate_key"


def test_the_one_count_shortcut_keeps_fields_without_colons(client: TestClient) -> None:
    # a numeric timestamp or an extra number adds a colon but no string with one: the
    # body is not "exactly the sensors", so the fields still pass through or are refused
    r = _post(client, {"readings": [{**reading(0), "timestamp": 5}, reading(1)]})
    assert r.status_code == 200, r.text
    assert [p.get("timestamp") for p in r.json()["predictions"]] == [5, None]
    r = _post(client, {"readings": [reading(0), reading(1)]})
    assert r.status_code == 200, r.text
    assert all("timestamp" not in p for p in r.json()["predictions"])


def test_asset_ids_are_checked_when_stateless_too(client: TestClient) -> None:
    r = client.post(
        "/v1/predict?stateless=true", json={"readings": [{**reading(0), "asset_id": 2.5}]}
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "bad_asset_id"


def test_openapi_states_the_models_sensors_and_documents_500(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    comps = spec["components"]["schemas"]
    assert comps["Reading"]["required"] == SENSORS
    assert comps["ColumnsRequest"]["properties"]["columns"]["required"] == SENSORS
    limit = comps["Reading"]["properties"]["s0"]["anyOf"][0]["maximum"]
    r = _post(client, {"readings": [reading(0, s0=limit * 1.01)]})
    assert r.status_code == 422 and r.json()["error"]["code"] == "out_of_range"
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            assert "500" in op["responses"], (method, path)


def test_redact_masks_passwords_in_any_text() -> None:
    from sensorguard.config import redact

    text = "MLflow at postgresql+psycopg2://postgres:S3cret@127.0.0.1:5432/db failed"
    assert redact(text) == "MLflow at postgresql+psycopg2://postgres:***@127.0.0.1:5432/db failed"
    assert redact("http://u:p@ss:w@host/x?token=abc&x=1") == "http://u:***@host/x?token=***&x=1"
    assert redact("sqlite:////tmp/mlflow.db") == "sqlite:////tmp/mlflow.db"


def test_readyz_and_the_log_never_show_the_registry_password(
    registry: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    secret = "S3cretPassw0rd"
    uri = f"http://sg:{secret}@127.0.0.1:9"  # nothing listens on port 9: checks fail fast
    settings = registry["settings"].model_copy(
        update={"tracking_uri": uri, "registry_uri": uri, "registry_timeout": 2.0}
    )
    with caplog.at_level("INFO", logger="sensorguard"), TestClient(create_app(settings)) as c:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and c.get("/readyz").json()["last_error"] is None:
            time.sleep(0.1)
        ready = c.get("/readyz")
        assert ready.status_code == 503 and ready.json()["last_error"]
        assert ready.json()["registry"] == "http://sg:***@127.0.0.1:9"
        assert secret not in ready.text and secret not in c.get("/metrics").text
    assert "predictor starting" in caplog.text and "sg:***@" in caplog.text
    assert secret not in caplog.text


def test_a_failed_reload_reports_how_long_it_took(registry: dict[str, Any]) -> None:
    uri = "http://127.0.0.1:9"
    settings = registry["settings"].model_copy(
        update={"tracking_uri": uri, "registry_uri": uri, "api_token": "t", "poll_interval": 30}
    )
    with TestClient(create_app(settings)) as c:
        t0 = time.perf_counter()
        r = c.post("/v1/admin/reload", headers={"authorization": "Bearer t"})
        took = time.perf_counter() - t0
        body = schemas.ReloadResponse.model_validate(r.json())
    assert r.status_code == 502 and body.stage == "resolve"
    assert 0 < body.seconds <= took


def _stored_artifacts(settings: ServingSettings, version: int) -> Path:
    """The folder the embedded registry keeps ``version``'s model files in."""
    from urllib.parse import urlparse

    from sensorguard.registry import get_client

    client = get_client(settings)
    source = client.get_model_version(settings.model_name, str(version)).source
    if source.startswith("models:/"):  # MLflow 3: a logged model
        location = client.get_logged_model(source.split("/", 1)[1].strip("/")).artifact_location
    else:
        location = source
    folder = Path(urlparse(location).path)
    assert (folder / "MLmodel").exists(), folder
    return folder


@pytest.mark.parametrize("tamper", ["threshold", "code"])
def test_tampered_artifacts_are_refused_and_the_old_model_serves_on(
    registry: dict[str, Any], tmp_path: Path, tamper: str
) -> None:
    settings = registry["settings"].model_copy(
        update={"model_name": f"tamper-{tamper}", "api_token": "t", "poll_interval": 30.0}
    )
    auth = {"authorization": "Bearer t"}
    v1 = register(settings, fit(seed=1))
    with TestClient(create_app(settings)) as c:
        _wait_ready(c, v1)
        v2 = register(settings, fit(seed=2))  # the alias moves to v2 ...
        folder = _stored_artifacts(settings, v2)  # ... whose stored files are then edited
        marker = tmp_path / "ran"
        if tamper == "threshold":  # a detector that would never alarm (seen served before)
            files = [p for p in folder.rglob("*.json") if '"threshold_"' in p.read_text()]
            assert files, sorted(str(p) for p in folder.rglob("*"))
            text = files[0].read_text()
            files[0].write_text(text.replace('"threshold_": ', '"threshold_": 1e9, "_was": '))
        else:  # a line of code in the model's module
            code = next(folder.rglob("model_code.py"))
            code.write_text(code.read_text() + f"\nopen({str(marker)!r}, 'w').write('x')\n")
        r = c.post("/v1/admin/reload", headers=auth)
        assert r.status_code == 502, r.text
        assert r.json()["stage"] == "load" and r.json()["version"] == v1
        assert "signature" in r.json()["error"]
        p = _post(c, {"readings": [reading(0)]}, headers=auth)
        assert p.status_code == 200 and p.json()["model"]["version"] == v1
        assert c.get("/readyz").json()["last_error"].startswith("load:")
    assert not marker.exists()  # nothing from the artifact ran


def test_mlflow_http_client_settings_have_one_source() -> None:
    """The predictor fails a check fast (its poll loop is the retry); commands retry."""
    from sensorguard.config import Settings
    from sensorguard.registry.setup import mlflow_http_env

    serving = mlflow_http_env(ServingSettings(registry_timeout=2.0))
    assert serving["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"
    assert serving["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "2"
    assert mlflow_http_env(Settings())["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "3"


def test_an_unexpected_fault_is_a_json_500_that_does_not_escape() -> None:
    """Starlette's last-resort handler answers and then re-raises, and uvicorn closes a
    connection whose app raised; the predictor's handler answers and stops there."""
    from fastapi import FastAPI

    from sensorguard.serving.errors import install_handlers

    app = FastAPI()
    install_handlers(app, lambda: None)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    with TestClient(app, raise_server_exceptions=True) as c:  # an escape would raise here
        r = c.get("/boom")
    assert r.status_code == 500
    assert r.json() == {
        "error": {
            "code": "internal_error",
            "message": "internal server error; the details are in the server log",
        }
    }


def test_a_model_that_refuses_extra_fields_refuses_them_past_the_one_count_shortcut() -> None:
    # the shortcut skips the extra-field check only for bodies of exactly the sensors
    import dataclasses

    from sensorguard.registry.models import LoadedModel
    from sensorguard.serving.errors import RequestError
    from sensorguard.serving.model import ServedModel
    from sensorguard.serving.parsing import parse_predict_body

    det = fit(seed=0)
    det.schema_ = dataclasses.replace(det.schema_, extra_columns="error")
    served = ServedModel(LoadedModel(name="m", version=1, alias=None, run_id=None, detector=det))
    assert served.refuse_extra

    def body(readings: list[dict[str, Any]]) -> bytes:
        return orjson.dumps({"readings": readings})

    bare = parse_predict_body(body([reading(0), reading(1)]), served, MAX_BATCH)
    assert bare.passthrough == {}
    timed = [{**reading(0), "timestamp": "t0"}, {**reading(1), "timestamp": "t1"}]
    full = parse_predict_body(body(timed), served, MAX_BATCH)
    assert full.passthrough == {"timestamp": ["t0", "t1"]}
    np.testing.assert_array_equal(bare.values, full.values)
    with pytest.raises(RequestError) as err:
        parse_predict_body(body([{**reading(0), "note": 1}, reading(1)]), served, MAX_BATCH)
    assert err.value.code == "unexpected_columns"
