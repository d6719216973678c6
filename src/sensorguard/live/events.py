"""Alarm events of the live loop: what opened, changed and closed, reading by reading.

Rules of this room:

* A **transition** (:class:`Transition`) is one of ``opened``, ``updated``, ``closed``
  for one alarm, identified by ``(asset, kind, sensor, start, model_version)``; the
  watch service writes it to the ``alarms`` table and the notification outbox in the
  same transaction as the asset's checkpoint.
* A ``failure`` event is a run of readings whose alarm flag is on, exactly as
  ``scoring.readings.alarm_events`` cuts a batch: ``start`` = first flagged reading,
  ``end`` = last flagged reading (the event closes when the first unflagged reading
  arrives). The sensors to blame are the largest mean contributions over the event's
  readings, the failure type the model's failure profile nearest to that mean.
* ``updated`` is emitted when the set of the top sensors over the event changes, at
  most once per ``update_every`` readings of the event, so it depends only on the
  readings, never on how they were cut into batches: a restart from a checkpoint gives
  the same transitions.
* Every tracker's state is a JSON-able dict (``state()`` / ``from_state``): it lives in
  the asset's checkpoint.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from sensorguard.detectors.blame import top_indices

FAILURE = "failure"


def to_datetime(value: Any) -> datetime:
    """A naive UTC ``datetime`` from a numpy ``datetime64``, an ISO string or a datetime."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    return np.datetime64(value, "us").astype(datetime)  # type: ignore[no-any-return]


def iso(value: Any) -> str:
    return to_datetime(value).isoformat()


@dataclass
class Transition:
    """One change of one alarm. ``alarm`` holds the columns of the ``alarms`` row."""

    action: str  # opened | updated | closed
    asset_id: str
    kind: str
    sensor: str
    start: datetime
    model_version: str
    alarm: dict[str, Any] = field(default_factory=dict)
    at: datetime | None = None  # the reading that caused it (orders a step's transitions)
    update_no: int = 0  # 1, 2, ... for the updates of one event

    @property
    def name(self) -> str:
        """``opened``, ``updated:N`` or ``closed``: unique per alarm (the notification's
        idempotency key is the alarm id plus this)."""
        return f"updated:{self.update_no}" if self.action == "updated" else self.action

    @property
    def key(self) -> tuple[str, str, str, datetime, str]:
        return (self.asset_id, self.kind, self.sensor, self.start, self.model_version)

    def event(self) -> dict[str, Any]:
        """The notification body: the transition and the alarm as JSON."""
        body = {k: (iso(v) if isinstance(v, datetime) else v) for k, v in self.alarm.items()}
        return {"transition": self.action, **body}


def _peak(peak: float, score: np.ndarray) -> float:
    s = np.asarray(score, dtype=np.float64)
    s = s[~np.isnan(s)]
    return max(float(peak), float(s.max())) if s.size else float(peak)


def _blame(share: np.ndarray, sensors: list[str], k: int) -> dict[str, float]:
    """The top sensors' share of the event's mean contribution (0..1), for the console."""
    total = float(np.nansum(share))
    if not np.isfinite(total) or total <= 0:
        return {}
    order = np.argsort(-np.nan_to_num(share), kind="stable")[:k]
    return {sensors[j]: round(float(share[j]) / total, 4) for j in order}


def _top(share: np.ndarray, sensors: list[str], k: int) -> list[str]:
    order = np.argsort(-share, kind="stable")[: max(1, k)]
    return [sensors[int(j)] for j in order]


@dataclass
class FailureEvents:
    """The open ``failure`` event of one asset (or none), fed with scored readings."""

    asset_id: str
    model_name: str
    model_version: str
    sensors: list[str]
    top_k: int = 3
    update_every: int = 10
    failure_profiles: dict[str, Any] | None = None
    open: dict[str, Any] | None = None

    def state(self) -> dict[str, Any] | None:
        return None if self.open is None else dict(self.open)

    def restore(self, state: dict[str, Any] | None) -> None:
        self.open = None if state is None else dict(state)

    def _failure_type(self, share: np.ndarray) -> int | None:
        if not self.failure_profiles or not self.failure_profiles.get("types"):
            return None
        from sensorguard.evaluation.failure_types import assign_failure_type

        profiles = self.failure_profiles
        if list(profiles.get("sensors", [])) != self.sensors:
            return None
        return assign_failure_type(profiles, share)

    def _row(
        self, ev: dict[str, Any], action: str, at: Any, reason: str | None = None
    ) -> Transition:
        share = np.asarray(ev["sum"], dtype=np.float64) / max(1, ev["n"])
        top = _top(share, self.sensors, self.top_k)
        start = to_datetime(ev["start"])
        last = to_datetime(ev["last"])
        closed = action == "closed"
        alarm = {
            "asset_id": self.asset_id,
            "kind": FAILURE,
            "sensor": "",
            "state": "closed" if closed else "open",
            "start_time": start,
            "end_time": last if closed else None,
            "last_time": last,
            "model_name": ev.get("model_name", self.model_name),
            "model_version": ev["version"],
            "peak_score": float(ev["peak"]),
            "n_readings": int(ev["n"]),
            "first_top_sensors": list(ev["first_top"]),
            "top_sensors": top,
            "failure_type": self._failure_type(share),
            "close_reason": reason if closed else None,
            "detail": {
                "blame": _blame(share, self.sensors, self.top_k),
                **({"duration_s": (last - start).total_seconds()} if closed else {}),
            },
        }
        at_time = to_datetime(at)
        return Transition(action, self.asset_id, FAILURE, "", start, ev["version"], alarm, at_time)

    def feed(
        self, times: np.ndarray, flags: np.ndarray, score: np.ndarray, contrib: np.ndarray
    ) -> list[Transition]:
        """Transitions caused by these readings (in time order). ``contrib``: (n, sensors)."""
        out: list[Transition] = []
        f = np.asarray(flags, dtype=bool)
        n = f.size
        if n == 0:
            return out
        # walk the runs of equal flags, not the readings: events are rare
        edges = np.flatnonzero(np.diff(f.astype(np.int8))) + 1
        bounds = np.concatenate([[0], edges, [n]]).tolist()
        for a, b in itertools.pairwise(bounds):
            if not f[a]:
                if self.open is not None:
                    out.append(self._row(self.open, "closed", times[a], "normal"))
                    self.open = None
                continue
            if self.open is None:
                first = _top(np.asarray(contrib[a], dtype=np.float64), self.sensors, self.top_k)
                self.open = {
                    "start": iso(times[a]),
                    "last": iso(times[a]),
                    "peak": float(score[a]),
                    "n": 0,
                    "sum": [0.0] * len(self.sensors),
                    "first_top": first,
                    "reported": sorted(first),
                    "since_update": 0,
                    "version": self.model_version,
                    "model_name": self.model_name,
                }
                opened = self._row(
                    {**self.open, "n": 1, "sum": contrib[a].tolist()}, "opened", times[a]
                )
                out.append(opened)
            out.extend(self._grow(times, score, contrib, a, b))
        return out

    def _grow(
        self, times: np.ndarray, score: np.ndarray, contrib: np.ndarray, a: int, b: int
    ) -> list[Transition]:
        """Add flagged readings ``a..b-1`` to the open event; ``updated`` where the top
        sensors over the event change (checked reading by reading, hence chunk-free)."""
        ev = self.open
        assert ev is not None
        out: list[Transition] = []
        block = np.asarray(contrib[a:b], dtype=np.float64)
        sums = np.cumsum(block, axis=0) + np.asarray(ev["sum"], dtype=np.float64)
        k = max(1, min(self.top_k, len(self.sensors)))
        since = int(ev["since_update"])
        reported = list(ev["reported"])
        n0 = int(ev["n"])
        m = b - a
        # the top-k set of every reading at once, where the update rule may fire (one
        # sort per reading in Python was a tenth of the watch loop's time with 50 of 100
        # assets in alarm, py-spy); top_indices ranks exactly as the stable sort _top does
        first = max(0, self.update_every - since - 1)
        tops: list[list[int]] = []
        if first < m:
            counts = np.arange(n0 + first + 1, n0 + m + 1, dtype=np.float64)
            means = sums[first:] / counts[:, None]
            tops = np.sort(top_indices(means, k), axis=1).tolist()
        index = {name: j for j, name in enumerate(self.sensors)}
        rep = sorted(index[name] for name in reported)
        for i in range(m):
            since += 1
            if since < self.update_every:
                continue
            top_ix = tops[i - first]
            if top_ix != rep:
                rep = top_ix
                reported = sorted(self.sensors[j] for j in top_ix)
                since = 0
                ev["updates"] = int(ev.get("updates", 0)) + 1
                snap = {
                    **ev,
                    "n": n0 + i + 1,
                    "sum": sums[i].tolist(),
                    "last": iso(times[a + i]),
                    "peak": _peak(ev["peak"], score[a : a + i + 1]),
                }
                t = self._row(snap, "updated", times[a + i])
                t.update_no = int(ev["updates"])
                out.append(t)
        ev["n"] = n0 + (b - a)
        ev["sum"] = sums[-1].tolist()
        ev["last"] = iso(times[b - 1])
        ev["peak"] = _peak(ev["peak"], score[a:b])
        ev["since_update"] = since
        ev["reported"] = reported
        return out

    def close(self, reason: str) -> list[Transition]:
        """Close the open event now (e.g. ``model_changed``); end = its last flagged reading."""
        if self.open is None:
            return []
        t = self._row(self.open, "closed", self.open["last"], reason)
        self.open = None
        return [t]
