"""The MQTT ingester's batching rules that set the publish-to-stored latency: a message
at an idle writer is committed after a short linger, at a busy one it waits (up to
``flush_seconds``) for company; a batch's times reach the store as one datetime64
array, stored exactly as the general rule stores them. No broker needed: the batching
is exercised on the ingester's own queue, the store is SQLite."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import orjson
import pytest

from sensorguard.live.ingest import (
    LINGER_SECONDS,
    Message,
    MqttIngester,
    ingest_messages,
    parse_messages,
)
from sensorguard.store import dispose_engines, ensure_schema
from sensorguard.store.query import read_window_frame


def _ingester(flush: float) -> MqttIngester:
    return MqttIngester("sqlite://", "mqtt://127.0.0.1:1", flush_seconds=flush)


def _msg(asset: str, times: list[str]) -> Message:
    body = {"readings": [{"timestamp": t, "flow": 1.0 + i} for i, t in enumerate(times)]}
    return Message(f"sensorguard/{asset}/readings", orjson.dumps(body), 1, 1)


def test_a_message_at_an_idle_writer_is_not_held_for_the_flush_window(sg_home: Path) -> None:
    ing = _ingester(flush=2.0)
    ing._queue.append(_msg("p1", ["2026-01-01T00:00:00Z"]))
    started = time.monotonic()
    batch = ing._take()
    took = time.monotonic() - started
    assert len(batch) == 1
    assert LINGER_SECONDS * 0.9 <= took < 1.0  # the linger, far from the 2 s window


def test_a_busy_writer_gathers_until_it_is_free(sg_home: Path) -> None:
    ing = _ingester(flush=5.0)
    ing._unwritten = 1  # an earlier batch is being committed
    ing._queue.append(_msg("p1", ["2026-01-01T00:00:00Z"]))

    def writer_done() -> None:
        time.sleep(0.3)
        ing._on_message(None, None, _FakeMqtt("p2"))  # arrives meanwhile
        time.sleep(0.3)
        with ing._cond:
            ing._unwritten -= 1
            ing._cond.notify_all()

    t = threading.Thread(target=writer_done)
    started = time.monotonic()
    t.start()
    batch = ing._take()
    took = time.monotonic() - started
    t.join()
    assert [m.topic.split("/")[1] for m in batch] == ["p1", "p2"]  # shared one commit
    assert 0.5 <= took < 4.0  # ended by the writer, not by the 5 s window


class _FakeMqtt:
    """The three attributes paho's message has that the callback reads."""

    def __init__(self, asset: str) -> None:
        m = _msg(asset, ["2026-01-01T00:00:01Z"])
        self.topic, self.payload, self.mid, self.qos = m.topic, m.payload, 2, 1


def test_batch_times_are_one_array_and_store_like_the_general_rule(sg_home: Path) -> None:
    msgs = [
        _msg("p1", ["2026-01-01T00:00:00Z", "2026-01-01T00:00:02.5+00:00"]),
        _msg("p2", ["2026-01-01T01:00:00"]),
        _msg("p1", ["2026-01-01T00:00:01Z"]),
    ]
    parsed = parse_messages(msgs)
    times = {f[0]: f[1] for f in parsed.frames}
    assert all(isinstance(t, np.ndarray) and t.dtype == "datetime64[us]" for t in times.values())
    assert times["p1"].tolist() == [
        np.datetime64("2026-01-01T00:00:00", "us").item(),
        np.datetime64("2026-01-01T00:00:02.500", "us").item(),
        np.datetime64("2026-01-01T00:00:01", "us").item(),
    ]
    # digits below a microsecond take the general rule (pandas keeps them, the store
    # refuses what they would collapse): the frame keeps its list
    fine = parse_messages([_msg("p3", ["2026-01-01T00:00:00.0000005Z"])])
    assert isinstance(fine.frames[0][1], list)

    engine = ensure_schema(f"sqlite:///{sg_home / 'a.db'}")
    with engine.begin() as conn:
        out = ingest_messages(conn, msgs)
    assert (out.inserted, out.dead_letters) == (4, 0)
    stored = read_window_frame("p1", url=f"sqlite:///{sg_home / 'a.db'}")
    assert [str(t) for t in stored["timestamp"]] == [
        "2026-01-01 00:00:00",
        "2026-01-01 00:00:01",
        "2026-01-01 00:00:02.500000",
    ]
    assert stored["flow"].tolist() == [1.0, 1.0, 2.0]
    dispose_engines()


@pytest.mark.parametrize(
    "bad", [np.array(["NaT"], dtype="datetime64[us]"), np.array([10**17], dtype="datetime64[us]")]
)
def test_an_array_outside_the_range_takes_the_general_rule(bad: np.ndarray) -> None:
    from sensorguard.errors import DataValidationError
    from sensorguard.store.prepare import _reading_ns

    with pytest.raises(DataValidationError):
        _reading_ns(bad)
