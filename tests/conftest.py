"""Shared fixtures.

Services: tests that need PostgreSQL or docker-compose call ``require_service`` — it
skips with the reason on a machine without them, and fails instead when
``SENSORGUARD_REQUIRE_SERVICES=1`` (set by ``.ci/run``) so CI always runs them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.services import require_service

__all__ = ["require_service"]


@pytest.fixture
def sg_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An isolated embedded SensorGuard home (SQLite MLflow store, artifacts, readings)."""
    from sensorguard.config import get_settings

    home = tmp_path / "sghome"
    monkeypatch.setenv("SENSORGUARD_HOME", str(home))
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "SENSORGUARD_TRACKING_URI"):
        monkeypatch.delenv(var, raising=False)
    get_settings.cache_clear()
    yield home
    get_settings.cache_clear()
