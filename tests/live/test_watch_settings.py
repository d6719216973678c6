"""The pass size of the watch loop as settings: ``SENSORGUARD_WATCH_PASS_ASSETS`` /
``SENSORGUARD_WATCH_PASS_ROWS`` and ``sensorguard watch --pass-assets/--pass-rows``
reach the watch config; a bad value is a one-line error, never a traceback."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from support.cli import assert_fails_cleanly
from typer.testing import CliRunner

from sensorguard.cli import app, live_cmds

runner = CliRunner()


@pytest.fixture
def started(sg_home: Path, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The configs ``sensorguard watch`` would run with (the service is not started)."""
    from sensorguard.live import watch as watch_mod

    got: list[Any] = []

    def fake_run_service(config: Any, **_kw: Any) -> Any:
        got.append(config)
        return type("W", (), {"totals": {"readings": 0, "transitions": 0, "late": 0}})()

    monkeypatch.setattr(watch_mod, "run_service", fake_run_service)
    # the command installs SIGTERM/SIGINT handlers: not in the test process
    monkeypatch.setattr(live_cmds, "stop_on_signals", lambda *_a: threading.Event())
    return got


def test_settings_reach_the_watch_config(sg_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sensorguard.config import get_settings
    from sensorguard.live.watch import WatchConfig

    cfg = WatchConfig.from_settings(get_settings())
    assert (cfg.pass_assets, cfg.pass_rows) == (100, 200_000)  # the defaults
    monkeypatch.setenv("SENSORGUARD_WATCH_PASS_ASSETS", "25")
    monkeypatch.setenv("SENSORGUARD_WATCH_PASS_ROWS", "5000")
    get_settings.cache_clear()
    cfg = WatchConfig.from_settings(get_settings())
    assert (cfg.pass_assets, cfg.pass_rows) == (25, 5000)


def test_options_override_the_environment(
    started: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sensorguard.config import get_settings

    monkeypatch.setenv("SENSORGUARD_WATCH_PASS_ASSETS", "25")
    get_settings.cache_clear()
    res = runner.invoke(app, ["watch", "--no-ingest", "--no-notify"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["watch", "--no-ingest", "--pass-assets", "7", "--pass-rows", "900"])
    assert res.exit_code == 0, res.output
    assert [(c.pass_assets, c.pass_rows) for c in started] == [(25, 200_000), (7, 900)]


@pytest.mark.parametrize("option", ["--pass-assets", "--pass-rows"])
@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_bad_option_values_are_refused(started: list[Any], option: str, value: str) -> None:
    res = runner.invoke(app, ["watch", option, value])
    assert_fails_cleanly(res, "Invalid value", option)
    assert not started


@pytest.mark.parametrize("var", ["SENSORGUARD_WATCH_PASS_ASSETS", "SENSORGUARD_WATCH_PASS_ROWS"])
@pytest.mark.parametrize(("value", "why"), [("0", "greater than or equal to 1"), ("x", "integer")])
def test_bad_environment_values_are_refused(
    started: list[Any], monkeypatch: pytest.MonkeyPatch, var: str, value: str, why: str
) -> None:
    from sensorguard.config import get_settings

    monkeypatch.setenv(var, value)
    get_settings.cache_clear()
    res = runner.invoke(app, ["watch", "--no-ingest"])
    assert_fails_cleanly(res, "invalid setting", var, why)
    assert not started
