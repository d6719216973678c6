"""MQTT plumbing of the live loop: broker URL, topics, clients with persistent sessions.

Rules of this room:

* Every client speaks MQTT 5 at QoS 1. A consumer connects with ``clean_start=False``
  and a session expiry, under a client id that stays the same across restarts, so the
  broker keeps its subscription and queues what is published while it is away.
* Topics are ``<root>/<asset_id>/readings`` (in), ``<root>/<asset_id>/alarms`` and the
  retained ``<root>/<asset_id>/status`` (out); the root is ``SENSORGUARD_MQTT_TOPIC_ROOT``
  (default ``sensorguard``). Asset ids must not contain ``/``, ``+`` or ``#``.
* Nothing here parses payloads or touches the store.
"""

from __future__ import annotations

import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from sensorguard.errors import ConfigurationError, SensorGuardError

DEFAULT_URL = "mqtt://127.0.0.1:1883"
DEFAULT_ROOT = "sensorguard"
SESSION_EXPIRY_S = 7 * 24 * 3600
"""How long the broker keeps a disconnected consumer's session (and queues for it)."""
RECEIVE_MAXIMUM = 2000
"""Unacknowledged QoS 1 messages the broker may have in flight to a consumer. The
ingester acknowledges only after its batch is committed (up to 50 ms of messages under
load), so the default of 20 would cap it at 20 messages per commit."""


class MqttError(SensorGuardError):
    """The broker is unreachable, refused the connection, or did not acknowledge."""


@dataclass(frozen=True)
class MqttSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls: bool = False

    @classmethod
    def from_url(cls, url: str | None = None) -> MqttSettings:
        """``mqtt://[user:password@]host[:port]`` (``mqtts://`` = TLS, port 8883)."""
        if url is None:
            from sensorguard.config import get_settings

            url = get_settings().mqtt_url
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parts.hostname:
            raise ConfigurationError(
                f"invalid MQTT URL {_redact(url)!r}",
                "use mqtt://host:1883 or mqtt://user:password@host:1883 (mqtts:// for TLS)",
            )
        tls = parts.scheme in ("mqtts", "ssl")
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError:
            raise ConfigurationError(
                f"invalid port in MQTT URL {_redact(url)!r}", "the port is a number"
            ) from None
        return cls(
            host=parts.hostname,
            port=port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
        )

    @property
    def display(self) -> str:
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url


def topic_root(root: str | None = None) -> str:
    if root is None:
        from sensorguard.config import get_settings

        root = get_settings().mqtt_topic_root
    return root.strip("/")


def check_asset_for_topic(asset: str) -> str:
    if not asset or any(c in asset for c in "/+#") or len(asset) > 200:
        raise SensorGuardError(
            f"asset id {asset!r} cannot be an MQTT topic level",
            "use 1-200 characters without '/', '+' or '#'",
        )
    return asset


def readings_topic(asset: str, root: str | None = None) -> str:
    return f"{topic_root(root)}/{check_asset_for_topic(asset)}/readings"


def alarms_topic(asset: str, root: str | None = None) -> str:
    return f"{topic_root(root)}/{check_asset_for_topic(asset)}/alarms"


def status_topic(asset: str, root: str | None = None) -> str:
    return f"{topic_root(root)}/{check_asset_for_topic(asset)}/status"


def readings_subscription(root: str | None = None) -> str:
    return f"{topic_root(root)}/+/readings"


def asset_of_topic(topic: str) -> str | None:
    """``<root>/<asset>/readings`` -> ``asset`` (None for any other shape)."""
    parts = topic.split("/")
    if len(parts) >= 3 and parts[-1] == "readings" and parts[-2]:
        return parts[-2]
    return None


def make_client(
    client_id: str,
    settings: MqttSettings,
    *,
    manual_ack: bool = False,
    max_inflight: int = 1000,
) -> Any:
    """A paho MQTT 5 client (not yet connected), credentials and TLS set."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=manual_ack,
    )
    if settings.username is not None:
        client.username_pw_set(settings.username, settings.password)
    if settings.tls:
        client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
    # paho's own cap on our outgoing QoS 1 messages (default 20); the broker's receive
    # maximum still applies on top
    client.max_inflight_messages_set(max_inflight)
    client.max_queued_messages_set(0)
    return client


def connect_properties(persistent: bool) -> Any:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.CONNECT)
    if persistent:
        props.SessionExpiryInterval = SESSION_EXPIRY_S
    props.ReceiveMaximum = RECEIVE_MAXIMUM
    return props


def connect(
    client: Any, settings: MqttSettings, *, persistent: bool, timeout: float = 10.0
) -> bool:
    """Connect and start the network thread; wait for CONNACK. Returns session-present.

    ``persistent``: resume the session stored under this client id (``clean_start=False``
    and a session expiry), so nothing published while we were away is lost."""
    done = threading.Event()
    outcome: dict[str, Any] = {}
    previous = client.on_connect

    def on_connect(c: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        outcome["reason"] = reason
        outcome["session_present"] = bool(getattr(flags, "session_present", False))
        done.set()
        if previous is not None:
            previous(c, userdata, flags, reason, props)

    client.on_connect = on_connect
    try:
        client.connect(
            settings.host,
            settings.port,
            keepalive=30,
            clean_start=not persistent,
            properties=connect_properties(persistent),
        )
    except (OSError, ValueError) as exc:
        raise MqttError(
            f"cannot reach the MQTT broker at {settings.display}: {exc}",
            "start Mosquitto (mosquitto -d) or set SENSORGUARD_MQTT_URL",
        ) from None
    client.loop_start()
    if not done.wait(timeout):
        client.loop_stop()
        raise MqttError(
            f"the MQTT broker at {settings.display} did not answer within {timeout:g} s",
            "check the broker and SENSORGUARD_MQTT_URL",
        )
    client.on_connect = previous
    reason = outcome["reason"]
    if getattr(reason, "is_failure", False):
        client.loop_stop()
        raise MqttError(
            f"the MQTT broker at {settings.display} refused the connection: {reason}",
            "check the user name and password in SENSORGUARD_MQTT_URL",
        )
    return bool(outcome["session_present"])


def disconnect(client: Any) -> None:
    try:
        client.disconnect()
    finally:
        client.loop_stop()


class AckTracker:
    """Counts QoS 1 publishes the broker acknowledged (PUBACK), for publishers that must
    not exit before everything is stored by the broker."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.sent = 0
        self.acked = 0
        self.failed = 0

    def install(self, client: Any) -> None:
        def on_publish(c: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
            with self._cond:
                if getattr(reason, "is_failure", False):
                    self.failed += 1
                self.acked += 1
                self._cond.notify_all()

        client.on_publish = on_publish

    def publish(self, client: Any, topic: str, payload: bytes, retain: bool = False) -> None:
        import paho.mqtt.client as mqtt

        with self._cond:
            self.sent += 1
        info = client.publish(topic, payload, qos=1, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            with self._cond:
                self.sent -= 1
            raise MqttError(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")

    def wait(self, timeout: float | None = None, *, below: int = 0) -> bool:
        """Wait until at most ``below`` publishes are unacknowledged."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self.sent - self.acked > below:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left if left is not None else 1.0)
        return True
