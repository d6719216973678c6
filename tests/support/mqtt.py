"""Mosquitto helpers for the live tests: the real broker at 127.0.0.1:1883.

``mqtt_url()`` is the broker (``SENSORGUARD_TEST_MQTT_URL`` overrides it);
``require_mqtt()`` skips a test with the reason when no broker answers, and fails it
when ``SENSORGUARD_REQUIRE_SERVICES=1`` (CI). Tests share the broker with each other and
with anything else running here, so each one takes its own topic root and client ids
(``unique_root()``): no test ever sees another's messages or sessions.
"""

from __future__ import annotations

import os
import socket
import uuid
from urllib.parse import urlsplit

import pytest

MQTT_URL = os.environ.get("SENSORGUARD_TEST_MQTT_URL", "mqtt://127.0.0.1:1883")


def mqtt_url() -> str:
    return MQTT_URL


def mqtt_available(url: str = MQTT_URL, timeout: float = 2.0) -> bool:
    """A broker answers CONNECT with CONNACK (an open port alone is not enough)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 1883
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            # MQTT 3.1.1 CONNECT, clean session, keepalive 10 s, client id "sgprobe"
            client_id = b"sgprobe" + uuid.uuid4().hex[:8].encode()
            var = b"\x00\x04MQTT\x04\x02\x00\x0a"
            body = var + len(client_id).to_bytes(2, "big") + client_id
            sock.sendall(bytes([0x10, len(body)]) + body)
            sock.settimeout(timeout)
            ack = sock.recv(4)
            sock.sendall(b"\xe0\x00")  # DISCONNECT
            # CONNACK; return code 5 (not authorised) still means a broker runs, but the
            # tests connect anonymously, so only 0 counts
            return len(ack) == 4 and ack[0] == 0x20 and ack[3] == 0
    except OSError:
        return False


def require_mqtt() -> str:
    from support.services import require_service

    require_service(
        mqtt_available(),
        f"no MQTT broker accepting anonymous clients at {MQTT_URL} "
        "(start one: mosquitto -d -c /etc/mosquitto/mosquitto.conf)",
    )
    return MQTT_URL


def unique_root(prefix: str = "sgtest") -> str:
    """A topic root (and client id prefix) no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def mqtt_broker() -> str:
    """The broker URL; skips (or fails in CI) when no broker answers."""
    return require_mqtt()
