"""Score a stored window with a model and write the results back to the readings store.

A pipeline, not a store function: it joins the readings store, the registry (the model)
and scoring. The model is loaded once (an alias is resolved to one version first, so a
promotion in between cannot mix versions) and named in every stored row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sensorguard.config import get_settings
from sensorguard.registry import load_model
from sensorguard.store import read_window, write_alarms, write_predictions


@dataclass
class StoreScoreResult:
    asset: str
    model_name: str
    model_version: str
    readings: int
    anomalies: int
    alarms: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def score_window_and_store(
    asset: str,
    start: Any = None,
    end: Any = None,
    *,
    model: str | None = None,
    url: str | None = None,
) -> StoreScoreResult:
    """Score ``asset``'s readings in ``[start, end)`` with ``model`` (``models:/…`` or a
    folder; default: the production alias) and store per-reading predictions and alarm
    events."""
    loaded = load_model(model, get_settings())
    name, version = loaded.name, str(loaded.version)
    readings = read_window(asset, start, end, url)
    scores = loaded.detector.detect(readings.X).to_frame()
    times = readings.times
    write_predictions(
        scores, asset=asset, times=times, model_name=name, model_version=version, url=url
    )
    alarms = write_alarms(
        scores, asset=asset, times=times, model_name=name, model_version=version, url=url
    )
    return StoreScoreResult(
        asset=asset,
        model_name=name,
        model_version=version,
        readings=len(readings),
        anomalies=int(scores["is_anomaly"].sum()),
        alarms=len(alarms),
    )
