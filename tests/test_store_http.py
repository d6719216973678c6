"""``POST /v1/readings``: batched, idempotent ingestion with precise 4xx errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sensorguard.config import Settings
from sensorguard.serving.readings_routes import router
from sensorguard.store import dispose_engines, read_window_frame

pytestmark = pytest.mark.contract


def _client(url: str, **settings: object) -> TestClient:
    app = FastAPI()
    app.state.settings = Settings(store_url=url, **settings)  # type: ignore[arg-type]
    app.include_router(router)
    return TestClient(app)


@pytest.fixture
def url(sg_home: Path) -> Iterator[str]:
    yield f"sqlite:///{sg_home / 'readings.db'}"
    dispose_engines()


def _batch(n: int = 3, start: int = 0) -> dict:
    return {
        "asset_id": "pump-01",
        "readings": [
            {
                "timestamp": f"2026-01-01T00:{i:02d}:00Z",
                "flow_rate": 50.0 + i,
                "vibration_rms": None if i == 1 else 0.5,
                "machine_status": "NORMAL",
            }
            for i in range(start, start + n)
        ],
    }


def test_batch_is_stored_once(url: str) -> None:
    client = _client(url)
    r = client.post("/v1/readings", json=_batch(3))
    assert r.status_code == 200, r.text
    assert r.json() == {"asset_ids": ["pump-01"], "received": 3, "inserted": 3, "duplicates": 0}
    r = client.post("/v1/readings", json=_batch(3, start=1))  # 2 repeats, 1 new
    assert r.json()["inserted"] == 1 and r.json()["duplicates"] == 2
    frame = read_window_frame("pump-01", url=url)
    assert len(frame) == 4
    assert frame["flow_rate"].tolist() == [50.0, 51.0, 52.0, 53.0]
    assert frame["vibration_rms"].isna().tolist() == [False, True, False, False]
    assert set(frame["machine_status"]) == {"NORMAL"}


def test_per_reading_asset_and_zone(url: str) -> None:
    client = _client(url)
    body = {
        "readings": [
            {"timestamp": "2026-01-01T01:00:00+01:00", "asset_id": "a", "x": 1},
            {"timestamp": "2026-01-01T00:00:00", "asset_id": "b", "x": 2},
        ]
    }
    r = client.post("/v1/readings", json=body)
    assert r.status_code == 200, r.text
    assert sorted(r.json()["asset_ids"]) == ["a", "b"]
    assert str(read_window_frame("a", url=url)["timestamp"].iloc[0]) == "2026-01-01 00:00:00"


@pytest.mark.parametrize(
    ("body", "status", "code", "path"),
    [
        (b"", 400, "empty_body", None),
        (b"{not json", 400, "malformed_json", None),
        (b"[1, 2]", 422, "bad_body", "$"),
        (b'{"asset_id": "p", "readings": []}', 422, "empty_batch", "readings"),
        (b'{"asset_id": "p", "readings": {}}', 422, "bad_body", "readings"),
        (
            b'{"asset_id": "p", "readings": [{"x": 1}]}',
            422,
            "missing_timestamp",
            "readings[0].timestamp",
        ),
        (
            b'{"asset_id": "p", "readings": [{"timestamp": "soon", "x": 1}]}',
            422,
            "bad_timestamp",
            "readings[0].timestamp",
        ),
        (
            b'{"readings": [{"timestamp": "2026-01-01T00:00:00", "x": 1}]}',
            422,
            "missing_asset",
            "readings[0].asset_id",
        ),
        (
            b'{"asset_id": "p", "readings": [{"timestamp": "2026-01-01T00:00:00", "x": 1},'
            b' {"timestamp": "2026-01-01T00:01:00", "x": "high"}]}',
            422,
            "not_a_number",
            "readings[1].x",
        ),
        (
            b'{"asset_id": "p", "readings": [{"timestamp": "2026-01-01T00:00:00", "x": true}]}',
            422,
            "not_a_number",
            "readings[0].x",
        ),
        (
            b'{"asset_id": "p", "readings": [{"timestamp": "2026-01-01T00:00:00"}]}',
            422,
            "no_sensors",
            "readings[0]",
        ),
        (
            b'{"asset_id": "p", "readings": [{"timestamp": "2026-01-01T00:00:00", "x": NaN}]}',
            400,
            "malformed_json",
            None,
        ),
        (
            b'{"asset_id": "", "readings": [{"timestamp": "2026-01-01T00:00:00", "x": 1}]}',
            422,
            "bad_asset",
            "asset_id",
        ),
    ],
)
def test_bad_input_names_the_field(
    url: str, body: bytes, status: int, code: str, path: str | None
) -> None:
    r = _client(url).post(
        "/v1/readings", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code
    assert err.get("path") == path
    assert err["message"]


def test_nothing_is_stored_from_a_bad_batch(url: str) -> None:
    client = _client(url)
    body = _batch(3)
    body["readings"][2]["flow_rate"] = "n/a"
    assert client.post("/v1/readings", json=body).status_code == 422
    assert client.post("/v1/readings", json=_batch(1, start=9)).status_code == 200
    assert len(read_window_frame("pump-01", url=url)) == 1  # only the good batch


def test_batch_limit_and_token(url: str) -> None:
    client = _client(url, max_batch=2, api_token="s3cret")
    assert client.post("/v1/readings", json=_batch(1)).status_code == 401
    bad = client.post("/v1/readings", json=_batch(1), headers={"authorization": "Bearer nope"})
    assert bad.status_code == 403
    auth = {"authorization": "Bearer s3cret"}
    r = client.post("/v1/readings", json=_batch(3), headers=auth)
    assert r.status_code == 413 and r.json()["error"]["code"] == "batch_too_large"
    assert client.post("/v1/readings", json=_batch(2), headers=auth).status_code == 200


def test_unreachable_store_is_503(tmp_path: Path) -> None:
    client = _client("postgresql://nobody@127.0.0.1:1/none")
    r = client.post("/v1/readings", json=_batch(1))
    assert r.status_code == 503 and r.json()["error"]["code"] == "store_unavailable"


def test_openapi_documents_the_body(url: str) -> None:
    spec = _client(url).get("/openapi.json").json()
    op = spec["paths"]["/v1/readings"]["post"]
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["readings"]
    assert {"200", "400", "413", "422", "503"} <= set(op["responses"])
