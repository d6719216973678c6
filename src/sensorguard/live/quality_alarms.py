"""Data-quality alarms: a dead sensor is the most common "failure" in a plant.

Each kind has its own open/close rule; all but ``silent`` depend only on the readings
(so a restart from a checkpoint gives the same events), and every rule carries its run
lengths across batches, so batch boundaries never matter.

========================  ===========================================================
kind                      rule (settings in :class:`QualityRules`)
========================  ===========================================================
``silent``                no new reading of the asset has *arrived* for
                          ``silent_after_s`` seconds of wall-clock time (opens at the
                          check, start = the last reading's time; closes when a reading
                          arrives, end = that reading's time). Wall-clock based, so not
                          reproducible by a replay.
``sensor_missing``        a sensor is missing (NaN, or absent from the reading) in
                          ``missing_readings`` consecutive readings; closes at the first
                          reading that has it. Start/end = first/last missing reading.
``flatline``              a sensor repeats exactly the same value for
                          ``flatline_readings`` consecutive readings; closes when it
                          changes.
``out_of_range``          a sensor is outside its training range (min/max of the model's
                          training profile, widened by ``range_margin`` × the span) in
                          ``range_readings`` consecutive readings; closes after
                          ``range_release`` consecutive readings inside.
========================  ===========================================================

A per-sensor alarm is keyed by ``(asset, kind, sensor, start)``. Rules are evaluated
on runs of the condition (vectorised), not reading by reading.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from sensorguard.live.events import Transition, iso, to_datetime

SILENT = "silent"
SENSOR_MISSING = "sensor_missing"
FLATLINE = "flatline"
OUT_OF_RANGE = "out_of_range"
QUALITY_KINDS = (SILENT, SENSOR_MISSING, FLATLINE, OUT_OF_RANGE)


@dataclass(frozen=True)
class QualityRules:
    silent_after_s: float = 300.0
    missing_readings: int = 30
    flatline_readings: int = 60
    range_readings: int = 3
    range_release: int = 5
    range_margin: float = 0.5


def training_ranges(
    profile: dict[str, Any] | None, margin: float
) -> dict[str, tuple[float, float]]:
    """Per-sensor ``(low, high)`` from a training profile's min/max, widened by
    ``margin`` × (max - min); sensors without both are left out."""
    out: dict[str, tuple[float, float]] = {}
    for name, stats in ((profile or {}).get("sensors") or {}).items():
        lo, hi = stats.get("min"), stats.get("max")
        if lo is None or hi is None:
            continue
        pad = margin * (float(hi) - float(lo))
        out[str(name)] = (float(lo) - pad, float(hi) + pad)
    return out


def _fresh() -> dict[str, Any]:
    return {"run": 0, "off": 0, "open": False, "run_start": None, "start": None, "last": None}


class QualityMonitor:
    """The data-quality alarms of one asset."""

    def __init__(
        self,
        asset_id: str,
        sensors: list[str],
        *,
        rules: QualityRules | None = None,
        ranges: dict[str, tuple[float, float]] | None = None,
        model_name: str = "",
        model_version: str = "",
    ) -> None:
        self.asset_id = asset_id
        self.sensors = list(sensors)
        self.rules = rules or QualityRules()
        self.ranges = dict(ranges or {})
        self.model_name = model_name
        self.model_version = model_version
        self.runs: dict[str, dict[str, Any]] = {}
        self.last: list[float | None] = [None] * len(self.sensors)
        # per sensor: the run keys of its three rules, and its range as two arrays (no
        # range: +-inf, and the rule is not run)
        self._keys = [
            (f"{SENSOR_MISSING}|{s}", f"{FLATLINE}|{s}", f"{OUT_OF_RANGE}|{s}")
            for s in self.sensors
        ]
        self._ranged = [s in self.ranges for s in self.sensors]
        bounds = np.array([self.ranges.get(s, (-np.inf, np.inf)) for s in self.sensors], float)
        self._lo, self._hi = bounds.reshape(-1, 2).T
        self.silent: dict[str, Any] = {"open": False, "start": None}
        r = self.rules
        self._rules = {
            SENSOR_MISSING: (max(1, r.missing_readings), 1),
            FLATLINE: (max(2, r.flatline_readings), 1),
            OUT_OF_RANGE: (max(1, r.range_readings), max(1, r.range_release)),
        }

    # ---- state
    def state(self) -> dict[str, Any]:
        return {"runs": self.runs, "last": self.last, "silent": self.silent}

    def restore(self, state: dict[str, Any] | None) -> None:
        if not state:
            return
        self.runs = {k: dict(v) for k, v in state.get("runs", {}).items()}
        last = list(state.get("last") or [])
        self.last = (last + [None] * len(self.sensors))[: len(self.sensors)]
        self.silent = dict(state.get("silent") or {"open": False, "start": None})

    def open_alarms(self) -> list[tuple[str, str]]:
        out = [tuple(k.split("|", 1)) for k, v in self.runs.items() if v.get("open")]
        if self.silent.get("open"):
            out.append((SILENT, ""))
        return out  # type: ignore[return-value]

    # ---- readings
    def feed(self, times: np.ndarray, X: np.ndarray) -> list[Transition]:
        """Transitions caused by these readings (time order); ``X``: (n, sensors), NaN =
        missing, columns in ``sensors`` order."""
        n = X.shape[0]
        out: list[tuple[int, Transition]] = []
        if n == 0:
            return []
        nan = np.isnan(X)
        prev = np.array([np.nan if v is None else v for v in self.last], dtype=np.float64)
        stacked = np.vstack([prev[None, :], X])
        same = (stacked[1:] == stacked[:-1]) & ~nan
        with np.errstate(invalid="ignore"):
            bad = np.less(X, self._lo) | np.greater(X, self._hi)
        # which rule has a reading to look at, for all sensors in three calls: a rule with
        # nothing pending and no hit is skipped (per sensor and rule, the check cost 30
        # numpy calls an asset and pass, 110 us per asset fed 150 readings)
        hits = np.vstack([nan.any(axis=0), same.any(axis=0), bad.any(axis=0)]).T.tolist()
        runs = self.runs
        for j, name in enumerate(self.sensors):
            k_missing, k_flat, k_range = self._keys[j]
            h_missing, h_flat, h_range = hits[j]
            if h_missing or k_missing in runs:
                out += self._rule(SENSOR_MISSING, name, nan[:, j], times, X[:, j])
            if h_flat or k_flat in runs:
                out += self._rule(FLATLINE, name, same[:, j], times, X[:, j])
            if self._ranged[j] and (h_range or k_range in runs):
                out += self._rule(OUT_OF_RANGE, name, bad[:, j], times, X[:, j])
        # remember each sensor's last value (a NaN keeps the last real one: a flat line
        # interrupted by a dropout is still the same value)
        ok = ~nan
        seen = ok.any(axis=0)
        at = n - 1 - np.argmax(ok[::-1], axis=0)  # the last real reading of each column
        vals = X[at, np.arange(X.shape[1])].tolist()
        for j in np.flatnonzero(seen).tolist():
            self.last[j] = float(vals[j])
        out.sort(key=lambda it: (it[0], it[1].kind, it[1].sensor))
        return [t for _, t in out]

    def _rule(
        self, kind: str, sensor: str, cond: np.ndarray, times: np.ndarray, values: np.ndarray
    ) -> list[tuple[int, Transition]]:
        key = f"{kind}|{sensor}"
        st = self.runs.get(key)
        if st is None:
            if not cond.any():
                return []  # the common case: nothing to remember
            st = self.runs[key] = _fresh()
        open_after, close_after = self._rules[kind]
        out: list[tuple[int, Transition]] = []
        c = np.asarray(cond, dtype=bool)
        n = c.size
        edges = np.flatnonzero(np.diff(c.astype(np.int8))) + 1
        bounds = np.concatenate([[0], edges, [n]]).tolist()
        for a, b in itertools.pairwise(bounds):
            length = b - a
            if c[a]:
                prior = int(st["run"])
                if prior == 0:
                    st["run_start"] = iso(times[a])
                st["run"] = prior + length
                st["off"] = 0
                if not st["open"] and st["run"] >= open_after:
                    at = a + max(0, open_after - prior - 1)
                    st["open"], st["start"] = True, st["run_start"]
                    st["last"] = iso(times[b - 1])
                    detail = {"value": _num(values[at])}
                    out.append((at, self._t("opened", kind, sensor, st, times[at], detail)))
                elif st["open"]:
                    st["last"] = iso(times[b - 1])
            else:
                st["run"] = 0
                st["off"] = int(st["off"]) + length
                if st["open"] and st["off"] >= close_after:
                    at = a + max(0, close_after - (st["off"] - length) - 1)
                    out.append((at, self._t("closed", kind, sensor, st, times[at], {})))
                    st["open"], st["start"], st["last"] = False, None, None
        if not st["open"] and st["run"] == 0:
            del self.runs[key]  # nothing pending: keep the checkpoint small
        return out

    def _t(
        self,
        action: str,
        kind: str,
        sensor: str,
        st: dict[str, Any],
        at: Any,
        detail: dict[str, Any],
    ) -> Transition:
        start = to_datetime(st["start"])
        last = to_datetime(st["last"])
        closed = action == "closed"
        if closed:
            detail = {**detail, "duration_s": (last - start).total_seconds()}
        if kind == OUT_OF_RANGE and sensor in self.ranges:
            detail["range"] = list(self.ranges[sensor])
        version = self.model_version if kind == OUT_OF_RANGE else ""
        alarm = {
            "asset_id": self.asset_id,
            "kind": kind,
            "sensor": sensor,
            "state": "closed" if closed else "open",
            "start_time": start,
            "end_time": last if closed else None,
            "last_time": last,
            "model_name": self.model_name if version else "",
            "model_version": version,
            "peak_score": None,
            "n_readings": 0,
            "first_top_sensors": [sensor],
            "top_sensors": [sensor],
            "failure_type": None,
            "close_reason": "normal" if closed else None,
            "detail": detail,
        }
        return Transition(
            action, self.asset_id, kind, sensor, start, version, alarm, to_datetime(at)
        )

    # ---- silence (wall clock)
    def check_silence(
        self, now: float, last_arrival: float | None, last_time: Any, arrived: Any = None
    ) -> list[Transition]:
        """``silent`` transitions at wall-clock ``now`` (epoch seconds): opens when
        nothing arrived since ``last_arrival`` for ``silent_after_s``; ``arrived`` = the
        time of the first reading that arrived in this step (closes the alarm)."""
        st = self.silent
        if st.get("open") and arrived is not None:
            t = self._silent(
                "closed", st["start"], arrived, {"silent_after_s": self.rules.silent_after_s}
            )
            self.silent = {"open": False, "start": None}
            return [t]
        if (
            not st.get("open")
            and arrived is None
            and last_arrival is not None
            and last_time is not None
            and now - last_arrival >= self.rules.silent_after_s
        ):
            self.silent = {"open": True, "start": iso(last_time)}
            detail = {
                "silent_after_s": self.rules.silent_after_s,
                "silent_for_s": now - last_arrival,
            }
            return [self._silent("opened", self.silent["start"], last_time, detail)]
        return []

    def _silent(self, action: str, start: Any, end: Any, detail: dict[str, Any]) -> Transition:
        s, e = to_datetime(start), to_datetime(end)
        closed = action == "closed"
        alarm: dict[str, Any] = {
            "asset_id": self.asset_id,
            "kind": SILENT,
            "sensor": "",
            "state": "closed" if closed else "open",
            "start_time": s,
            "end_time": e if closed else None,
            "last_time": e,
            "model_name": "",
            "model_version": "",
            "peak_score": None,
            "n_readings": 0,
            "first_top_sensors": [],
            "top_sensors": [],
            "failure_type": None,
            "close_reason": "normal" if closed else None,
            "detail": {**detail, **({"duration_s": (e - s).total_seconds()} if closed else {})},
        }
        return Transition(action, self.asset_id, SILENT, "", s, "", alarm, e)


def _num(v: Any) -> float | None:
    f = float(v)
    return None if np.isnan(f) else f
