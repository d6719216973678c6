"""The state a watch step continues from: the model's stream scorer and each asset's state.

Rules of this room: in memory only what the asset's committed checkpoint can rebuild.
:func:`new_asset` restores an asset's stream, failure-event and data-quality state from
its checkpoint (a checkpoint of another model, or of another version, starts the stream
afresh); :func:`swap` closes the open failure event with reason ``model_changed`` when
the asset's model (machine type routed by the asset registry) or its version changes.
A model and its version are compared together: version 1 of one machine type is not
version 1 of another. The :class:`~sensorguard.live.watch.Watcher` drops an asset's
state whenever a step rolls back, and rebuilds it from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from sensorguard.live.checkpoints import Checkpoint
from sensorguard.live.events import FailureEvents, Transition
from sensorguard.live.quality_alarms import QualityMonitor, QualityRules, training_ranges
from sensorguard.live.regime_alarms import RegimeMonitor
from sensorguard.store.schema import readings


class _Model:
    """One loaded model version and the per-asset stream scorer built on it."""

    def __init__(self, loaded: Any, quality: QualityRules, top_k: int = 3) -> None:
        from sensorguard.scoring.stream import AssetStreams

        self.loaded = loaded
        self.name = str(loaded.name)
        self.version = str(loaded.version)
        self.detector = loaded.detector
        self.sensors = list(self.detector.schema_.sensors)
        self.streams = AssetStreams(self.detector, max_assets=None, top_k=top_k)
        self.streams.warm()
        self.failure_types = getattr(loaded, "failure_types", None) or getattr(
            self.detector, "failure_types_", None
        )
        profile = getattr(loaded, "training_profile", None)
        self.ranges = training_ranges(profile, quality.range_margin)
        # the regime rule's ranges are the plain min/max (its own tolerance is 5 %)
        self.regime_ranges = training_ranges(profile, 0.0)

    def regime(self, asset: str) -> RegimeMonitor:
        """A fresh regime monitor of ``asset`` under this model (its head starts now)."""
        return RegimeMonitor(
            asset,
            self.sensors,
            self.regime_ranges,
            model_name=self.name,
            model_version=self.version,
        )


@dataclass
class _Asset:
    ck: Checkpoint
    events: FailureEvents
    quality: QualityMonitor
    regime: RegimeMonitor
    last_arrival: float | None = None
    late_checked: float = 0.0


def new_asset(
    conn: sa.Connection,
    asset: str,
    ck: Checkpoint | None,
    m: _Model,
    *,
    top_k: int,
    rules: QualityRules,
    start: str,
) -> _Asset:
    """The state of ``asset`` from its committed checkpoint (a fresh one when ``ck`` is
    None, at the newest stored reading with ``start="latest"``)."""
    if ck is None:
        ck = Checkpoint(asset_id=asset, model_name=m.name, model_version=m.version)
        if start == "latest":
            ck.last_time = conn.execute(
                sa.select(sa.func.max(readings.c.time)).where(readings.c.asset_id == asset)
            ).scalar_one()
    st = ck.state or {}
    same = same_model(ck, m)
    # the open event belongs to the checkpoint's model: it closes (swap) with that
    # model's sensors, stored in the checkpoint beside it
    events = FailureEvents(
        asset,
        ck.model_name,
        ck.model_version,
        m.sensors if same else list(st.get("sensors") or m.sensors),
        top_k=top_k,
        failure_profiles=m.failure_types if same else None,
    )
    quality = QualityMonitor(
        asset,
        m.sensors,
        rules=rules,
        ranges=m.ranges,
        model_name=m.name,
        model_version=m.version,
    )
    events.restore(st.get("event"))
    quality.restore(st.get("quality"))
    regime = m.regime(asset)
    regime.restore(st.get("regime"), ck.n_scored)
    if same and st.get("stream") is not None:
        m.streams.restore(asset, st["stream"])
    else:
        m.streams.drop(asset)
    return _Asset(
        ck=ck,
        events=events,
        quality=quality,
        regime=regime,
        last_arrival=st.get("last_arrival"),
    )


def same_model(ck: Checkpoint, m: _Model) -> bool:
    """Whether the checkpoint was written by this model version."""
    return ck.model_name == m.name and ck.model_version == m.version


def swap(a: _Asset, m: _Model, top_k: int) -> list[Transition]:
    """The asset's checkpoint belongs to another model or version: close its open
    failure event with reason ``model_changed`` and start its stream afresh. The old
    model's regime alarm closes too (``model_changed``), a head it was still holding is
    judged on what it has and handed to the old failure events first, and the new
    model judges its own first readings."""
    out: list[Transition] = []
    held = a.regime.flush()
    if held is not None:
        out += a.events.feed(*held)
    out += a.regime.close("model_changed")
    out += a.events.close("model_changed")
    a.regime = m.regime(a.ck.asset_id)
    a.events = FailureEvents(
        a.ck.asset_id,
        m.name,
        m.version,
        m.sensors,
        top_k=top_k,
        failure_profiles=m.failure_types,
    )
    a.quality.ranges = m.ranges
    a.quality.model_name, a.quality.model_version = m.name, m.version
    m.streams.drop(a.ck.asset_id)
    a.ck.model_name, a.ck.model_version = m.name, m.version
    a.ck.is_anomaly = False
    return out
