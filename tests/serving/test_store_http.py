"""``POST /v1/readings``: batched, idempotent ingestion with precise 4xx errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sensorguard.serving.errors import install_handlers
from sensorguard.serving.routes import readings
from sensorguard.serving.settings import ServingSettings
from sensorguard.store import dispose_engines, read_window_frame

pytestmark = pytest.mark.contract


def _client(url: str, **settings: object) -> TestClient:
    """The readings router on its own app, with the predictor's error handlers."""
    app = FastAPI()
    app.state.settings = ServingSettings(store_url=url, **settings)  # type: ignore[arg-type]
    install_handlers(app, lambda: None)
    app.include_router(readings.router)
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
    assert r.json() == {
        "asset_ids": ["pump-01"],
        "received": 3,
        "inserted": 3,
        "merged": 0,
        "duplicates": 0,
    }
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


# ---- readings at a stored (asset, time): merged per sensor, or 409; limits are 4xx


def test_one_message_per_sensor_is_merged_not_dropped(url: str) -> None:
    client = _client(url)
    t = "2026-02-01T00:00:00Z"
    r = client.post(
        "/v1/readings", json={"asset_id": "p", "readings": [{"timestamp": t, "temp": 1.5}]}
    )
    assert r.status_code == 200 and r.json()["inserted"] == 1
    r = client.post(
        "/v1/readings", json={"asset_id": "p", "readings": [{"timestamp": t, "pressure": 7.25}]}
    )
    assert r.status_code == 200, r.text
    assert (r.json()["inserted"], r.json()["merged"], r.json()["duplicates"]) == (0, 1, 0)
    # both in one batch (two sensor groups) merge too; a resend is a duplicate
    body = {
        "asset_id": "q",
        "readings": [{"timestamp": t, "temp": 1.5}, {"timestamp": t, "p": 2.0}],
    }
    assert client.post("/v1/readings", json=body).json()["merged"] == 1
    assert client.post("/v1/readings", json=body).json()["duplicates"] == 2
    frame = read_window_frame("p", url=url)
    assert (frame["temp"].iloc[0], frame["pressure"].iloc[0]) == (1.5, 7.25)


def test_a_different_value_at_a_stored_time_is_409_naming_it(url: str) -> None:
    client = _client(url)
    t = "2026-02-02T00:00:00Z"
    ok = {"asset_id": "p", "readings": [{"timestamp": t, "temp": 1.5}]}
    assert client.post("/v1/readings", json=ok).status_code == 200
    bad = {"asset_id": "p", "readings": [{"timestamp": t, "temp": 1.7, "pressure": 3.0}]}
    r = client.post("/v1/readings", json=bad)
    assert r.status_code == 409, r.text
    err = r.json()["error"]
    assert (
        err["code"] == "reading_conflict" and "'temp' is stored as 1.5, sent 1.7" in err["message"]
    )
    assert err["conflict"]["field"] == "temp"
    assert "pressure" not in read_window_frame("p", url=url).columns  # nothing of it stored


def test_times_distinct_only_below_a_microsecond_are_refused(url: str) -> None:
    body = {
        "asset_id": "p",
        "readings": [
            {"timestamp": "2026-02-03T00:00:00.0000001Z", "a": 1.0},
            {"timestamp": "2026-02-03T00:00:00.0000002Z", "a": 2.0},
        ],
    }
    r = _client(url).post("/v1/readings", json=body)
    assert r.status_code == 422, r.text
    assert "below a microsecond" in r.json()["error"]["message"]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_url(request: pytest.FixtureRequest, sg_home: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{sg_home / 'readings.db'}"
        dispose_engines()
        return
    from support.pg import pg_available, temp_database
    from support.services import require_service

    require_service(pg_available(), "PostgreSQL is not reachable at 127.0.0.1:5432")
    with temp_database("http") as (_, db):
        yield db


def test_1000_sensors_are_stored_and_the_limit_is_a_4xx(any_url: str) -> None:
    # PostgreSQL answered 503 "store unreachable" (index row too large) at ~200 sensors
    client = _client(any_url)
    wide = {f"sensor_{i:04d}_{i * 7919 % 10007:05d}": float(i) for i in range(1000)}
    r = client.post(
        "/v1/readings",
        json={"asset_id": "w", "readings": [{"timestamp": "2026-02-04T00:00:00Z", **wide}]},
    )
    assert r.status_code == 200, r.text
    assert len(read_window_frame("w", url=any_url).columns) == 1002
    from sensorguard.store import MAX_SENSORS

    huge = {f"s{i}": 1.0 for i in range(MAX_SENSORS + 1)}
    r = client.post(
        "/v1/readings",
        json={"asset_id": "w", "readings": [{"timestamp": "2026-02-04T00:01:00Z", **huge}]},
    )
    assert 400 <= r.status_code < 500, r.text
    assert f"at most {MAX_SENSORS:,} sensors" in r.json()["error"]["message"]


# ------------------------------------------------------------------ client mistakes, never a 500
def _one(ts: object = "2026-01-01T00:00:00Z", **fields: object) -> bytes:
    import orjson

    asset = fields.pop("asset_id", "p")
    return orjson.dumps({"asset_id": asset, "readings": [{"timestamp": ts, "x": 1.0, **fields}]})


@pytest.mark.parametrize(
    ("body", "code", "path"),
    [
        (_one("0001-01-01T00:00:00+01:00"), "bad_timestamp", "readings[0].timestamp"),
        (_one("9999-12-31T23:59:59-01:00"), "bad_timestamp", "readings[0].timestamp"),
        (_one(1e13), "bad_timestamp", "readings[0].timestamp"),
        (_one(True), "bad_timestamp", "readings[0].timestamp"),
        (_one(asset_id="pump\u0000x"), "bad_text", "asset_id"),
        (_one(machine_status="BRO\u0000KEN"), "bad_text", "readings[0].machine_status"),
        (_one(machine_status="B" * 101), "too_long", "readings[0].machine_status"),
        (
            b'{"asset_id": "p", "readings": [{"timestamp": "2026-01-01T00:00:00Z", "x": 1}], '
            b'"readings": [{"timestamp": "2026-01-01T00:01:00Z", "y": 2}]}',
            "duplicate_key",
            None,
        ),
        (
            b'{"asset_id": "p", "readings": [{"timestamp": "2026-01-01T00:00:00Z", "x": 1, '
            b'"x": 2}]}',
            "duplicate_key",
            None,
        ),
    ],
    ids=[
        "year-1-offset",
        "year-9999-offset",
        "epoch-ms",
        "bool-time",
        "nul-asset",
        "nul-status",
        "status-101",
        "dup-readings",
        "dup-sensor",
    ],
)
def test_client_mistakes_are_422_and_keep_nothing(
    url: str, body: bytes, code: str, path: str | None
) -> None:
    r = _client(url).post("/v1/readings", content=body, headers=_JSON)
    assert r.status_code == 422, r.text
    assert (r.json()["error"]["code"], r.json()["error"].get("path")) == (code, path)


_JSON = {"content-type": "application/json"}


def test_time_formats_of_the_file_contract_are_accepted(url: str) -> None:
    client = _client(url)
    body = {
        "asset_id": "t",
        "readings": [
            {"timestamp": "2026-01-01 00:00:00", "x": 1.0},  # no T, no zone: UTC
            {"timestamp": 1767225660, "x": 2.0},  # epoch seconds
            {"timestamp": "2026-01-01T01:02:00+01:00", "x": 3.0},  # offset -> UTC
            {"timestamp": "2026-01-01T00:03:00.250Z", "machine_status": "B" * 100, "x": 4.0},
        ],
    }
    r = client.post("/v1/readings", json=body)
    assert r.status_code == 200, r.text
    import pandas as pd

    times = list(read_window_frame("t", url=url)["timestamp"])
    assert times == [
        pd.Timestamp(t)
        for t in (
            "2026-01-01 00:00",
            "2026-01-01 00:01",
            "2026-01-01 00:02",
            "2026-01-01 00:03:00.25",
        )
    ]


@pytest.mark.parametrize(
    "ctype", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", None]
)
def test_only_json_is_accepted(url: str, ctype: str | None) -> None:
    """A web page can post text/plain, forms or an untyped body cross-site without a CORS
    preflight: a write endpoint must refuse them all (415), stored nothing."""
    headers = {"content-type": ctype} if ctype else {}
    r = _client(url).post("/v1/readings", content=_one(), headers=headers)
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type"
    ok = _client(url).post(
        "/v1/readings", content=_one(), headers={"content-type": "application/json; charset=utf-8"}
    )
    assert ok.status_code == 200
    assert len(read_window_frame("p", url=url)) == 1


def test_the_body_limit_applies(url: str) -> None:
    client = _client(url, max_body_mb=0.01)
    big = {
        "asset_id": "p",
        "readings": [
            {"timestamp": f"2026-01-01T00:00:{i % 60:02d}Z", "x": float(i)} for i in range(400)
        ],
    }
    r = client.post("/v1/readings", json=big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"


def test_store_errors_map_to_what_the_client_can_do(tmp_path: Path) -> None:
    """Real driver errors: a value the store cannot hold is the request's fault (422, and
    retrying cannot help), a database that does not answer is an outage (503)."""
    import sqlalchemy as sa
    from support.pg import pg_available, temp_database
    from support.services import require_service

    from sensorguard.serving.errors import as_request_error

    require_service(pg_available(), "PostgreSQL is not running on 127.0.0.1:5432")
    with temp_database("httperr") as (_, pg):
        engine = sa.create_engine(pg)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text("CREATE TABLE t (s varchar(3), b text)"))
                conn.execute(sa.text("CREATE INDEX t_b ON t (b)"))
            errors = {}
            for name, sql in {
                "too_long": "INSERT INTO t (s) VALUES ('abcdef')",
                "index_row": "INSERT INTO t (b) SELECT string_agg(md5(g::text), '') "
                "FROM generate_series(1, 400) g",
            }.items():
                with pytest.raises(sa.exc.DBAPIError) as info, engine.begin() as conn:
                    conn.execute(sa.text(sql))
                errors[name] = as_request_error(info.value)
        finally:
            engine.dispose()
    assert (errors["too_long"].status, errors["too_long"].code) == (422, "bad_readings")
    assert (errors["index_row"].status, errors["index_row"].code) == (422, "store_limit")
    assert "retrying" in (errors["index_row"].hint or "")
    dead = sa.create_engine("postgresql+psycopg2://nobody@127.0.0.1:1/x")
    with pytest.raises(sa.exc.DBAPIError) as info:
        dead.connect()
    assert as_request_error(info.value).status == 503


def test_postgres_store_answers_client_mistakes_with_422(tmp_path: Path) -> None:
    from support.pg import pg_available, temp_database
    from support.services import require_service

    require_service(pg_available(), "PostgreSQL is not running on 127.0.0.1:5432")
    with temp_database("httpnul") as (_, pg):
        client = _client(pg)
        for body in (
            _one(asset_id="p\u0000"),
            _one(machine_status="x\u0000"),
            _one(machine_status="S" * 101),
        ):
            r = client.post("/v1/readings", content=body, headers=_JSON)
            assert r.status_code == 422, r.text
        ok = client.post("/v1/readings", content=_one(machine_status="S" * 100), headers=_JSON)
        assert ok.status_code == 200, ok.text
        dispose_engines()


def test_openapi_describes_the_readings_rules(url: str) -> None:
    spec = _client(url).get("/openapi.json").json()
    op = spec["paths"]["/v1/readings"]["post"]
    item = op["requestBody"]["content"]["application/json"]["schema"]["properties"]["readings"]
    status = item["items"]["properties"]["machine_status"]["anyOf"][0]
    assert status["maxLength"] == 100
    assert {"200", "400", "401", "403", "413", "415", "422", "500", "503"} <= set(op["responses"])
