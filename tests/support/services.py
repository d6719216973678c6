"""Service checks: skip with the reason on a machine without the server, fail under CI."""

from __future__ import annotations

import os

import pytest


def require_service(available: bool, reason: str) -> None:
    """Skip the test with ``reason``; fail instead when ``SENSORGUARD_REQUIRE_SERVICES=1``
    (set by ``.ci/run``), so CI always runs what it needs."""
    if available:
        return
    if os.environ.get("SENSORGUARD_REQUIRE_SERVICES") == "1":
        pytest.fail(f"required service missing (SENSORGUARD_REQUIRE_SERVICES=1): {reason}")
    pytest.skip(reason)
