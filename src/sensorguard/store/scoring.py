"""Score a stored window with a registered model and write the results back."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sensorguard.store.query import read_window, write_alarms, write_predictions

if TYPE_CHECKING:
    from sensorguard.detectors.base import BaseDetector


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


def load_scoring_model(ref: str | None) -> tuple[BaseDetector, str, str]:
    """``(detector, model_name, model_version)`` for ``models:/name@alias``,
    ``models:/name/N`` or a folder saved by ``Detector.save``. An alias is resolved to its
    version once and that version is loaded, so a promotion in between cannot mix them."""
    from sensorguard.config import get_settings

    settings = get_settings()
    if ref is None:
        ref = f"models:/{settings.model_name}@{settings.production_alias}"
    if ref.startswith("models:/"):
        from sensorguard.registry import load_version, parse_model_uri, resolve_alias

        name, version, alias = parse_model_uri(ref)
        if version is None:
            version = resolve_alias(name, alias or settings.production_alias, settings)
        loaded = load_version(name, version, alias=alias, settings=settings)
        return loaded.detector, name, str(loaded.version)
    from sensorguard.detectors import load_detector

    path = Path(ref)
    return load_detector(path), path.resolve().name, "local"


def score_window_and_store(
    asset: str,
    start: Any = None,
    end: Any = None,
    *,
    model: str | None = None,
    url: str | None = None,
) -> StoreScoreResult:
    """Score ``asset``'s readings in ``[start, end)`` with ``model`` (default: the
    production alias) and store per-reading predictions and alarm events."""
    detector, name, version = load_scoring_model(model)
    readings = read_window(asset, start, end, url)
    scores = detector.detect(readings.X).to_frame()
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
