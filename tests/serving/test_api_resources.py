"""The alarms, assets and training-jobs routes in-process, on a real embedded registry and
readings store: the answers the HTTP fuzz test (``test_api_fuzz.py``) once found wrong,
each pinned by a request that failed before its fix.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from support.lifecycle import seed_store
from support.serving import fit, register

from sensorguard.serving.app import create_app
from sensorguard.serving.settings import ServingSettings

BIG = 12914164405850128384  # > 2**63 - 1: SQLite raised OverflowError (a 500)


def _seed_alarm(url: str) -> int:
    from sensorguard.live.events import Transition
    from sensorguard.store.alarms import apply_transitions
    from sensorguard.store.engine import ensure_schema

    start = datetime(2026, 1, 1)
    row = {
        "asset_id": "pump-01",
        "kind": "failure",
        "sensor": "",
        "state": "open",
        "start_time": start,
        "last_time": start,
        "model_name": "m",
        "model_version": "1",
    }
    with ensure_schema(url).begin() as conn:
        (alarm_id,) = apply_transitions(
            conn, [Transition("opened", "pump-01", "failure", "", start, "1", row, at=start)]
        )
    return alarm_id


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, ServingSettings]]:
    home: Path = tmp_path_factory.mktemp("api-resources")
    seed_store(home)
    uri = f"sqlite:///{home / 'mlflow.db'}"
    settings = ServingSettings(home=home, tracking_uri=uri, registry_uri=uri, poll_interval=0.2)
    register(settings, fit(seed=0))
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client, settings


def _error(r: Any, status: int) -> str:
    assert r.status_code == status, r.text
    code: str = r.json()["error"]["code"]
    return code


def test_alarm_ids_are_bounded_and_times_carry_their_zone(
    app: tuple[TestClient, ServingSettings],
) -> None:
    from sensorguard.store.alarms import AlarmNotFound, get_alarm

    c, settings = app
    alarm_id = _seed_alarm(settings.resolved_store_url)
    one = c.get(f"/v1/alarms/{alarm_id}").json()
    assert one["start"] == "2026-01-01T00:00:00Z"  # the store's naive UTC, with its zone
    assert one["opened_at"].endswith("Z") and one["end"] is None
    for r in (
        c.get(f"/v1/alarms/{BIG}"),
        c.post(f"/v1/alarms/{BIG}/acknowledge"),
        c.post(f"/v1/alarms/{BIG}/label", json={"label": "failure"}),
        c.get("/v1/alarms/0"),
        c.get("/v1/alarms", params={"offset": 2**63}),
    ):
        assert _error(r, 422) == "invalid_request"
    assert _error(c.get(f"/v1/alarms/{2**63 - 1}"), 404) == "alarm_not_found"
    with pytest.raises(AlarmNotFound):  # the library refuses it the same way
        get_alarm(BIG, settings.resolved_store_url)

    acked = c.post(f"/v1/alarms/{alarm_id}/acknowledge", json={"by": "ann"}).json()
    assert acked["acknowledged_at"].endswith("Z")
    # a body that is not UTF-8 is a documented 400, in the shared error shape
    bad = c.post(
        f"/v1/alarms/{alarm_id}/acknowledge",
        content=b"\xff",
        headers={"Content-Type": "application/json"},
    )
    assert _error(bad, 400) == "malformed_json"


def test_alarm_filters_take_iso_times_only(app: tuple[TestClient, ServingSettings]) -> None:
    c, settings = app
    _seed_alarm(settings.resolved_store_url)
    for value in ("0.5", "1767225600", "yesterday"):  # numbers were read as epoch seconds
        assert _error(c.get("/v1/alarms", params={"start": value}), 422) == "invalid_request"
    for value in ("2026-01-01", "2026-01-01T00:00:00", "2026-01-01T01:00:00+01:00"):
        body = c.get("/v1/alarms", params={"start": value, "end": "2026-01-02"}).json()
        assert body["total"] == 1, (value, body)
    assert c.get("/v1/alarms", params={"end": "2025-12-31T23:59:59Z"}).json()["total"] == 0


def test_unregistering_leaves_the_asset_and_removes_its_registration(
    app: tuple[TestClient, ServingSettings],
) -> None:
    c, _ = app
    reading = {"timestamp": "2026-01-01T00:01:00", "temperature": 70.0}
    r = c.post("/v1/readings", json={"asset_id": "pump-07", "readings": [reading]})
    assert r.status_code == 200, r.text
    live = c.get("/v1/assets/pump-07").json()
    assert live["registered"] is False and live["last_reading_at"] == "2026-01-01T00:01:00Z"
    assert _error(c.get("/v1/assets/pump-07/registration"), 404) == "unknown_asset"

    put = c.put("/v1/assets/pump-07", json={"model": "sensor-failure-detector", "site": "n"})
    assert put.status_code == 201, put.text
    assert put.json()["created_at"].endswith("Z") and put.json()["registered"] is True
    entry = c.get("/v1/assets/pump-07/registration").json()
    assert entry["model"] == "sensor-failure-detector" and entry["site"] == "n"
    listed = {a["asset_id"]: a for a in c.get("/v1/assets").json()["assets"]}
    assert listed["pump-07"]["last_reading_at"] == "2026-01-01T00:01:00Z"

    assert c.delete("/v1/assets/pump-07/registration").status_code == 204
    assert _error(c.get("/v1/assets/pump-07/registration"), 404) == "unknown_asset"
    assert _error(c.delete("/v1/assets/pump-07/registration"), 404) == "unknown_asset"
    after = c.get("/v1/assets/pump-07").json()  # its readings stay, and so does its live view
    assert after["registered"] is False and after["last_reading_at"] == "2026-01-01T00:01:00Z"
    # there is no DELETE of the asset itself
    assert _error(c.delete("/v1/assets/pump-07"), 405) == "method_not_allowed"
    assert _error(c.get("/v1/assets/ghost"), 404) == "unknown_asset"


def test_asset_registration_refuses_what_its_schema_refuses(
    app: tuple[TestClient, ServingSettings],
) -> None:
    c, _ = app
    model = {"model": "sensor-failure-detector"}
    for path, body in (
        ("/v1/assets/%20pump-08", model),  # surrounding blanks were stripped and accepted
        ("/v1/assets/pump:08%2A", model),
        ("/v1/assets/pump-08", {"model": " sensor-failure-detector"}),
        ("/v1/assets/pump-08", {**model, "site": "x" * 201}),
        ("/v1/assets/pump-08", {**model, "sensor_tags": {"": "FT-1"}}),
    ):
        assert _error(c.put(path, json=body), 422) == "invalid_request", (path, body)
    assert c.put("/v1/assets/pump:08", json=model).status_code == 201


def test_training_job_fields_have_their_documented_types(
    app: tuple[TestClient, ServingSettings],
) -> None:
    c, _ = app
    job = {"model": "sensor-failure-detector", "asset_ids": ["pump-01"]}
    for bad in ({"end": 0}, {"start": 1767225600}, {"holdout": 1.5}, {"asset_ids": [" pump-01"]}):
        r = c.post("/v1/training-jobs", json={**job, **bad})
        assert _error(r, 422) == "bad_training_job", bad
    ok = c.post("/v1/training-jobs", json={**job, "start": "2026-01-01", "end": "2026-01-15"})
    assert ok.status_code == 202, ok.text
