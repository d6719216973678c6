"""The ``regime_change`` alarm: the model does not apply to this asset's readings.

The live twin of ``sensorguard score``'s regime verdict, with the same rule
(:class:`~sensorguard.evaluation.regime.RegimeStream`, from the model's training
profile): every time a model (version) starts scoring an asset, its first ``head`` (60)
readings are judged against the training range. Rules of this room:

* **Hold-back.** The failure flags of the head are held until the head is judged (in the
  checkpoint, so a restart continues the same head): that is the only way not to open a
  ``failure`` alarm over a regime change that the head has not yet proven. The cost is
  latency for the first ``head`` readings of an asset-model pair only: a failure that
  starts there is reported when the head is complete (60 readings = 60 s at 1 Hz).
* **Verdict ok**: the held rows go to the failure events unchanged, so the events equal
  the batch ones; from then on the rule costs one attribute check per step.
* **Regime change**: one ``regime_change`` alarm opens (sensor ``""``, at the head's last
  reading, start = the asset's first reading under this model) naming the moved
  sensors with their training range and head median, the retrain hint and the model
  version; the failure alarm the regime carries is dropped exactly as
  :func:`~sensorguard.evaluation.regime.suppress_regime_alarms` drops it in batch
  (flag runs that start in the head, to their end; later failure alarms are kept).
* **Close**: reason ``normal`` when ``release`` (60) consecutive readings have no moved
  sensor out (end = the last reading out), reason ``model_changed`` on a new version or
  another routed model, which then judges its own first readings. Not re-armed after
  it closed: only the first readings under a model count (a later lasting shift is what
  a failure looks like).
* A model without a training profile (min/max per sensor) is not judged; an asset
  checkpointed before this rule existed continues unjudged (its head is past).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np

from sensorguard.evaluation.regime import (
    DONE,
    HEAD,
    REGIME_CHANGE,
    RETRAIN_HINT,
    RegimeStream,
    RegimeVerdict,
    suppress_regime_alarms,
)
from sensorguard.live.events import Transition, iso, to_datetime

Rows = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # times, flags, score, contrib


class RegimeMonitor:
    """The regime rule of one asset under one model version (see the module docstring)."""

    def __init__(
        self,
        asset_id: str,
        sensors: list[str],
        ranges: dict[str, tuple[float, float]],
        *,
        model_name: str = "",
        model_version: str = "",
    ) -> None:
        self.asset_id = asset_id
        self.model_name = model_name
        self.model_version = model_version
        self.stream = RegimeStream(sensors, ranges)
        self.held: list[Any] | None = None  # [times (µs), flags, score, contrib] of the head
        self.suppress = False  # the failure run the regime carries is still on
        self.open: dict[str, Any] | None = None  # the open regime_change alarm

    @property
    def idle(self) -> bool:
        """Nothing to do per step: head judged, no regime open, nothing suppressed."""
        return self.stream.phase == DONE and not self.suppress

    # ---- state (in the asset's checkpoint)
    def state(self) -> dict[str, Any]:
        st: dict[str, Any] = {
            "stream": self.stream.state(),
            "suppress": self.suppress,
            "open": self.open,
            "model": [self.model_name, self.model_version],
        }
        if self.stream.phase == HEAD:
            # the head's rule travels with it: a restart under another model still
            # judges (and flushes) these rows with the model that scored them
            st["held"] = self.held
            st["sensors"] = self.stream.sensors
            st["ranges"] = {
                s: [float(self.stream.lo[j]), float(self.stream.hi[j])]
                for j, s in enumerate(self.stream.names)
            }
        return st

    def restore(self, st: dict[str, Any] | None, n_scored: int) -> None:
        if not st:
            if n_scored > 0:  # checkpointed before this rule: its head is long past
                self.stream.phase = DONE
            return
        if st.get("ranges") is not None:
            self.stream = RegimeStream(
                list(st["sensors"]), {s: (r[0], r[1]) for s, r in st["ranges"].items()}
            )
        if st.get("model"):
            self.model_name, self.model_version = (str(v) for v in st["model"])
        self.stream.restore(st.get("stream"))
        self.held = st.get("held")
        self.suppress = bool(st.get("suppress", False))
        self.open = st.get("open")

    # ---- readings
    def feed(
        self, times: np.ndarray, X: np.ndarray, flags: np.ndarray, score: np.ndarray, c: np.ndarray
    ) -> tuple[list[Transition], Rows]:
        """The regime transitions of these readings and the rows (``times, flags, score,
        contributions``) the failure events get now: none while the head fills, the held
        head and these rows once it is judged, with the regime's failure run dropped."""
        if self.idle:
            self.stream.n += times.size
            return [], (times, flags, score, c)
        was_head = self.stream.phase == HEAD
        decisions = self.stream.feed(X)
        out: list[Transition] = []
        if was_head:
            self._hold(times, flags, score, c)
            if self.stream.phase == HEAD:
                empty = np.empty(0, dtype=bool)
                return out, (times[:0], empty, score[:0], c[:0])
            rows = self._release()
            times_all = rows[0]
            base = 0  # the held rows start at the stream's first reading
        else:
            rows = (times, self._drop_carried(flags), score, c)
            times_all, base = times, self.stream.n - times.size
        if self.open is not None and self.stream.last_out >= base:
            self.open["last"] = iso(times_all[self.stream.last_out - base])
        for what, row in decisions:
            at = times_all[row - base]
            if what == "opened":
                out.append(self._opened(times_all, at))
            else:
                out.append(self._closed(at, "normal"))
        return out, rows

    def _hold(self, times: np.ndarray, flags: np.ndarray, score: np.ndarray, c: np.ndarray) -> None:
        if self.held is None:
            self.held = [[], [], [], []]
        h = self.held
        # µs since the epoch: an ISO string per reading cost 70 % of a head's hold time
        h[0] += np.asarray(times, dtype="datetime64[us]").astype(np.int64).tolist()
        h[1] += np.asarray(flags, dtype=bool).tolist()
        h[2] += np.asarray(score, dtype=np.float64).tolist()
        h[3] += np.asarray(c, dtype=np.float64).tolist()

    def _release(self) -> Rows:
        """The held rows, judged: as they are (ok), or without the regime's failure run."""
        assert self.held is not None
        t_us, f, s, c = self.held
        self.held = None
        times = np.asarray(t_us, dtype=np.int64).astype("datetime64[us]")
        flags = np.asarray(f, dtype=bool)
        score = np.asarray(s, dtype=np.float64)
        contrib = np.asarray(c, dtype=np.float64).reshape(len(f), -1)
        if self.stream.moved:
            h = min(self.stream.head, flags.size)
            verdict = RegimeVerdict(REGIME_CHANGE, flags.size, h, since=0)
            kept, _ = suppress_regime_alarms(flags, verdict)
            # the run open at the head's end goes on being dropped until it ends
            self.suppress = bool(flags[h - 1 :].all())
            flags = kept
        return times, flags, score, contrib

    def _drop_carried(self, flags: np.ndarray) -> np.ndarray:
        if not self.suppress:
            return flags
        f = np.asarray(flags, dtype=bool)
        off = np.flatnonzero(~f)
        if off.size == 0:
            return np.zeros_like(f)
        self.suppress = False
        f = f.copy()
        f[: int(off[0])] = False
        return f

    def flush(self) -> Rows | None:
        """A head that will not fill up under this model (it is being replaced): judge
        the rows it has, as a short file is judged, and give them to the failure events.
        No regime alarm: the model it would be about is gone."""
        if self.stream.phase != HEAD or not self.held:
            return None
        self.stream.finish()
        rows = self._release()
        self.stream.phase, self.suppress = DONE, False
        return rows

    def close(self, reason: str) -> list[Transition]:
        """Close the open regime alarm now (e.g. ``model_changed``)."""
        if self.open is None:
            return []
        return [self._closed(self.open["last"], reason)]

    # ---- alarm rows
    def _opened(self, times: np.ndarray, at: Any) -> Transition:
        shifts = self.stream.sensor_shifts()
        verdict = RegimeVerdict(
            REGIME_CHANGE, self.stream.head, self.stream.head, shifts, RETRAIN_HINT, since=0
        )
        self.open = {
            "start": iso(times[0]),
            "last": iso(times[self.stream.last_out]),
            "sensors": [s.sensor for s in shifts],
            "detail": {
                "summary": verdict.summary(),
                "hint": RETRAIN_HINT,
                "head": self.stream.head,
                "sensors": [asdict(s) for s in shifts],
            },
        }
        return self._t("opened", at, None)

    def _closed(self, at: Any, reason: str) -> Transition:
        t = self._t("closed", at, reason)
        self.open = None
        return t

    def _t(self, action: str, at: Any, reason: str | None) -> Transition:
        ev = self.open
        assert ev is not None
        start, last = to_datetime(ev["start"]), to_datetime(ev["last"])
        closed = action == "closed"
        detail = dict(ev["detail"])
        if closed:
            detail["duration_s"] = (last - start).total_seconds()
        alarm = {
            "asset_id": self.asset_id,
            "kind": REGIME_CHANGE,
            "sensor": "",
            "state": "closed" if closed else "open",
            "start_time": start,
            "end_time": last if closed else None,
            "last_time": last,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "peak_score": None,
            "n_readings": 0,
            "first_top_sensors": list(ev["sensors"]),
            "top_sensors": list(ev["sensors"]),
            "failure_type": None,
            "close_reason": reason if closed else None,
            "detail": detail,
        }
        return Transition(
            action,
            self.asset_id,
            REGIME_CHANGE,
            "",
            start,
            self.model_version,
            alarm,
            to_datetime(at),
        )
