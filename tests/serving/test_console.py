"""The operator console in a real browser: Debian's chromium driven by Playwright.

A real predictor (``sensorguard serve``, uvicorn) runs on an embedded home whose store
holds registered assets, readings, scores and alarms; the test logs in, checks what a
person sees (the asset with an open failure alarm first, its top sensors, labels that
reach the API), logs out, and saves a screenshot of every page in the test's temp folder.
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from support.services import require_service
from support.serving import SENSORS, fit, predictor, register, wait_http

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
TOKEN = "console-test-token"
MODEL = "pump-centrifugal"
SHOTS_ENV = "SENSORGUARD_CONSOLE_SHOTS"  # set to a folder to keep the screenshots (docs/images)


def _browser_available() -> tuple[bool, str]:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False, "playwright is not installed (pip install playwright)"
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        return False, "Debian's chromium is missing (apt-get install chromium)"
    return True, ""


def _transition(action: str, asset: str, kind: str, start: datetime, **alarm: Any) -> Any:
    from sensorguard.live.events import Transition

    row = {
        "asset_id": asset,
        "kind": kind,
        "sensor": alarm.pop("sensor", ""),
        "state": "closed" if action == "closed" else "open",
        "start_time": start,
        "last_time": alarm.pop("last_time", start),
        "model_name": MODEL,
        "model_version": "1",
        **alarm,
    }
    return Transition(action, asset, kind, row["sensor"], start, "1", row, at=start)


def seed_store(url: str, now: datetime) -> dict[str, int]:
    """Five pumps: one in a failure alarm, one flat-lined, one with a closed alarm, one
    fine, one in a regime change (its model does not apply to its readings)."""
    import sqlalchemy as sa

    from sensorguard.store.alarms import apply_transitions
    from sensorguard.store.assets import put_asset
    from sensorguard.store.engine import ensure_schema
    from sensorguard.store.ingest import insert_frame
    from sensorguard.store.schema import predictions

    engine = ensure_schema(url)
    rng = np.random.default_rng(3)
    times = [now - timedelta(minutes=60 - i) for i in range(60)]
    for i, asset in enumerate(["pump-01", "pump-02", "pump-03", "pump-04", "pump-05"]):
        put_asset(asset, MODEL, site=f"plant-a/line-{i + 1}", url=url)
        values = rng.normal(size=(60, len(SENSORS))) + np.arange(10, 70, 10)
        if asset == "pump-03":
            values[40:, 2] += 25.0  # s2 runs away: the alarm's top sensor
        insert_frame(engine, asset, times, values, SENSORS)
        score = rng.uniform(0.5, 1.5, size=60)
        if asset == "pump-03":
            score[40:] = np.linspace(4, 9, 20)
        rows = [
            {
                "asset_id": asset,
                "time": t,
                "model_name": MODEL,
                "model_version": "1",
                "score": float(s),
                "is_anomaly": bool(s > 3),
                "state": 0,
                "top_sensors": "[]",
                "created_at": now,
            }
            for t, s in zip(times, score, strict=True)
        ]
        with engine.begin() as conn:
            conn.execute(sa.insert(predictions), rows)
    start = times[40]
    with engine.begin() as conn:
        ids = apply_transitions(
            conn,
            [
                _transition(
                    "opened",
                    "pump-03",
                    "failure",
                    start,
                    peak_score=9.0,
                    n_readings=20,
                    first_top_sensors=["s2", "s4"],
                    top_sensors=["s2", "s4"],
                    last_time=times[-1],
                    detail={"blame": {"s2": 0.81, "s4": 0.11}},
                ),
                _transition(
                    "opened", "pump-04", "flatline", times[30], sensor="s1", last_time=times[-1]
                ),
                _transition(
                    "closed",
                    "pump-02",
                    "failure",
                    times[5],
                    end_time=times[12],
                    last_time=times[12],
                    peak_score=4.2,
                    top_sensors=["s0"],
                    close_reason="returned",
                ),
                _transition(
                    "opened",
                    "pump-05",
                    "regime_change",
                    times[0],
                    last_time=times[-1],
                    first_top_sensors=["s1"],
                    top_sensors=["s1"],
                    detail={
                        "summary": "regime change: s1 outside the training range from the "
                        "first reading on",
                        "hint": "check the named sensors, then retrain on recent normal readings",
                        "head": 60,
                        "sensors": [
                            {
                                "sensor": "s1",
                                "train_min": 17.5,
                                "train_max": 22.5,
                                "since": 0,
                                "median": 41.0,
                                "share_out": 1.0,
                                "share_out_head": 1.0,
                            }
                        ],
                    },
                ),
            ],
        )
    return {"failure": ids[0], "flatline": ids[1], "closed": ids[2], "regime": ids[3]}


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Any:
    ok, why = _browser_available()
    require_service(ok, why)
    from sensorguard.config import Settings

    home = tmp_path_factory.mktemp("console-home")
    # explicit URIs: an earlier test in the session may have pointed MLflow elsewhere
    uri = f"sqlite:///{home / 'mlflow.db'}"
    settings = Settings(home=home, model_name=MODEL, tracking_uri=uri, registry_uri=uri)
    from sensorguard.pipelines.lifecycle import promote

    register(settings, fit())
    promote(
        register(settings, fit(seed=1), alias=None),
        settings=settings,
        force=True,
        reason="console test: second version",
    )
    ids = seed_store(settings.resolved_store_url, datetime.now(UTC).replace(tzinfo=None))
    log = home / "serve.log"
    with predictor(
        home,
        log,
        SENSORGUARD_API_TOKEN=TOKEN,
        SENSORGUARD_MODEL_NAME=MODEL,
        SENSORGUARD_CONSOLE_REFRESH_SECONDS="1",
    ) as (_, url):
        wait_http(f"{url}/readyz", timeout=90)
        yield url, ids, home


@pytest.fixture(scope="module")
def browser() -> Any:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ],
        )
        yield b
        b.close()


def _shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get(SHOTS_ENV) or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _login(page: Any, url: str) -> None:
    page.goto(f"{url}/console")
    assert "/console/login" in page.url
    page.fill("#token", TOKEN)
    page.keyboard.press("Enter")  # keyboard-usable: no mouse needed to log in
    page.wait_for_url(f"{url}/console")


def test_overview_lists_the_alarm_first_and_updates_live(
    console: Any, browser: Any, tmp_path: Path
) -> None:
    url, _, _ = console
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    _login(page, url)
    rows = page.locator("#assets tbody tr")
    assert rows.count() == 5
    first = rows.nth(0)
    assert first.get_attribute("data-asset") == "pump-03"
    assert "alarm" in first.inner_text()
    # a regime change next: a status of its own, not "normal", not data quality
    assert rows.nth(1).get_attribute("data-asset") == "pump-05"
    assert rows.nth(1).get_attribute("data-status-name") == "regime-change"
    assert "regime change" in rows.nth(1).inner_text()
    assert rows.nth(2).get_attribute("data-asset") == "pump-04"  # data quality after it
    assert "data quality" in rows.nth(2).inner_text()
    assert "regime change 1" in page.locator(".summary").inner_text()
    page.select_option("#status-filter", "regime-change")
    assert page.locator("#assets tbody tr:not([hidden])").count() == 1
    page.select_option("#status-filter", "")
    assert first.locator("svg.spark polyline").count() == 1
    assert page.locator(".summary").inner_text().count("alarm") >= 1
    page.screenshot(path=str(_shots(tmp_path) / "console-overview.png"), full_page=True)

    page.fill("#filter", "line-2")
    assert page.locator("#assets tbody tr:not([hidden])").count() == 1
    page.fill("#filter", "")
    page.click("th[data-key=asset] button")
    assert rows.nth(0).get_attribute("data-asset") == "pump-01"

    # live: the overview polls its fragment; a new open alarm on pump-01 shows up without reload
    from sensorguard.config import Settings
    from sensorguard.store.alarms import apply_transitions
    from sensorguard.store.engine import ensure_schema

    home = console[2]
    now = datetime.now(UTC).replace(tzinfo=None)
    with ensure_schema(Settings(home=home).resolved_store_url).begin() as conn:
        apply_transitions(conn, [_transition("opened", "pump-01", "silent", now)])
    from playwright.sync_api import expect

    # (locator assertions, not wait_for_function: the page's CSP forbids eval)
    expect(page.locator("#assets tr[data-asset='pump-01']")).to_have_attribute(
        "data-status-name", "data-quality", timeout=10_000
    )
    page.close()


def test_alarm_view_shows_sensors_and_labels_reach_the_api(
    console: Any, browser: Any, tmp_path: Path
) -> None:
    url, ids, _ = console
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    _login(page, url)
    page.click("#assets tr[data-asset='pump-03'] a:has-text('open')")
    page.wait_for_url(f"{url}/console/alarms/{ids['failure']}")
    assert page.locator("#top-sensors li").first.inner_text().startswith("s2")
    assert "81 %" in page.locator("#top-sensors").inner_text()
    assert page.locator("svg.chart").count() >= 2  # score + at least one sensor
    assert page.locator("svg.chart rect.span").count() >= 1
    page.screenshot(path=str(_shots(tmp_path) / "console-alarm.png"), full_page=True)

    page.select_option("#label-select", "false_alarm")
    page.fill("textarea[name=note]", "valve maintenance on line 3")
    page.fill("form[data-api$='/label'] input[name=by]", "ana")
    page.click("#label-button")
    page.wait_for_load_state("load")
    body = httpx.get(
        f"{url}/v1/alarms/{ids['failure']}",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    ).json()
    label = body.get("label") or (body.get("alarm") or {}).get("label")
    assert label and label["label"] == "false_alarm" and label["by"] == "ana"
    assert "false_alarm" in page.locator("dl.facts").inner_text()

    page.fill("form[data-api$='/acknowledge'] input[name=by]", "ana")
    page.click("#ack-button")
    from playwright.sync_api import expect

    expect(page.locator("dl.facts")).to_contain_text("by ana at", timeout=10_000)
    page.close()


def test_regime_change_is_a_kind_of_its_own(console: Any, browser: Any, tmp_path: Path) -> None:
    url, ids, _ = console
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    _login(page, url)
    page.goto(f"{url}/console/alarms")
    kinds = page.locator("#kind option").all_inner_texts()
    assert "regime change" in kinds and "failure" in kinds and "out of range" in kinds
    page.select_option("#kind", "regime_change")
    page.click("form.toolbar button[type=submit]")
    page.wait_for_url("**/console/alarms?*kind=regime_change*")
    rows = page.locator("table tbody tr")
    assert rows.count() == 1
    assert "pump-05" in rows.first.inner_text() and "regime change" in rows.first.inner_text()
    page.select_option("#kind", "failure")
    page.click("form.toolbar button[type=submit]")
    page.wait_for_url("**/console/alarms?*kind=failure*")
    assert "pump-05" not in page.locator("table tbody").inner_text()
    assert page.locator("table tbody tr").count() == 2  # pump-03 open, pump-02 closed
    # the alarm view says what moved and what to do, not "failure type"
    page.goto(f"{url}/console/alarms/{ids['regime']}")
    assert "regime change" in page.locator("dl.facts").inner_text()
    assert "Failure type" not in page.locator("dl.facts").inner_text()
    regime = page.locator("#regime").inner_text()
    assert "s1" in regime and "17.5" in regime and "41" in regime and "retrain" in regime
    page.screenshot(path=str(_shots(tmp_path) / "console-regime.png"), full_page=True)
    page.close()


def test_tablet_width_models_view_and_logout(console: Any, browser: Any, tmp_path: Path) -> None:
    url, _, _ = console
    page = browser.new_page(viewport={"width": 820, "height": 1180})
    _login(page, url)
    # narrow screens drop secondary columns, never the asset or its status
    assert page.locator("#assets th.hide-narrow").first.is_hidden()
    assert page.locator("#assets tbody tr").first.locator("td").nth(2).is_visible()
    page.screenshot(path=str(_shots(tmp_path) / "console-tablet.png"), full_page=True)

    page.click("nav >> text=Models")
    page.wait_for_url(f"{url}/console/models")
    text = page.locator("main").inner_text()
    assert MODEL in text and "console test: second version" in text  # the audit trail
    assert page.locator("dl.facts").first.inner_text().split() == [
        "Production",
        "v2",
        "Previous",
        "v1",
    ]
    page.screenshot(path=str(_shots(tmp_path) / "console-models.png"), full_page=True)

    # one-click rollback, behind a confirmation
    page.once("dialog", lambda dialog: dialog.accept())
    page.fill("input[name=reason]", "v2 alarms on every start-up")
    page.click("button:has-text('Roll back to v1')")
    page.wait_for_url("**/console/models?flash=*")
    assert "production is now v1" in page.locator(".flash").inner_text()
    from sensorguard.config import Settings
    from sensorguard.registry.versions import version_at

    uri = f"sqlite:///{console[2] / 'mlflow.db'}"
    settings = Settings(home=console[2], model_name=MODEL, tracking_uri=uri, registry_uri=uri)
    assert version_at(MODEL, "production", settings) == 1

    page.click("header form button:has-text('Log out')")
    page.wait_for_url(f"{url}/console/login")
    page.goto(f"{url}/console/models")
    assert "/console/login" in page.url  # the cookie is gone
    page.close()


def test_forms_without_csrf_or_login_are_refused(console: Any) -> None:
    url, ids, _ = console
    with httpx.Client(base_url=url, follow_redirects=False, timeout=10) as c:
        r = c.get("/console")
        assert r.status_code == 303 and "/console/login" in r.headers["location"]
        r = c.post("/console/login", data={"token": TOKEN, "csrf": "forged"})
        assert r.status_code == 403
        c.get("/console/login")  # sets the CSRF cookie
        csrf = c.cookies["sg_csrf"]
        r = c.post("/console/login", data={"token": "wrong", "csrf": csrf})
        assert r.status_code == 401
        r = c.post("/console/login", data={"token": TOKEN, "csrf": csrf})
        assert r.status_code == 303
        assert "httponly" in r.headers["set-cookie"].lower()
        r = c.post(f"/console/alarms/{ids['closed']}/acknowledge", data={"csrf": "x", "by": "e"})
        assert r.status_code == 403  # logged in, but the CSRF token does not match
        # the API accepts the cookie only together with the CSRF header
        r = c.post(f"/v1/alarms/{ids['closed']}/acknowledge", json={"by": "eve"})
        assert r.status_code in (401, 403)
        r = c.post(
            f"/v1/alarms/{ids['closed']}/acknowledge",
            json={"by": "eve"},
            headers={"X-CSRF-Token": csrf},
        )
        assert r.status_code == 200, r.text
