"""Failure types for every detector: profiled, saved with the model, loaded back.

Old saved models (tests/fixtures/old_models, written before failure types were saved for
every detector) keep loading and simply have none.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sensorguard.data import Readings
from sensorguard.detectors import available_detectors, load_detector, make_detector
from sensorguard.evaluation.failure_types import profile_failures

SENSORS = ["vibration", "current", "pressure", "flow"]
OLD_MODELS = Path(__file__).parents[1] / "fixtures" / "old_models"


def _normal(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    load = 0.3 * rng.standard_normal(n)
    noise = rng.standard_normal((n, len(SENSORS)))
    return pd.DataFrame(
        np.column_stack(
            [
                1.0 + 0.2 * load + 0.1 * noise[:, 0],
                10.0 + 1.5 * load + 0.2 * noise[:, 1],
                5.0 - 0.8 * load + 0.1 * noise[:, 2],
                30.0 + 3.0 * load + 0.3 * noise[:, 3],
            ]
        ),
        columns=SENSORS,
    )


@pytest.mark.parametrize("name", available_detectors())
def test_failure_types_are_profiled_and_saved_for_every_detector(name: str, tmp_path: Path) -> None:
    det = make_detector(name).fit(_normal(1500, 1))
    x = _normal(1000, 2)
    label = np.zeros(1000, dtype=int)
    for s in (200, 600):  # two episodes disturbing "pressure" by 2 (20 of its std-devs)
        x.loc[s : s + 39, "pressure"] += 2.0
        label[s : s + 40] = 1
    frame = x.assign(timestamp=pd.date_range("2026-01-01", periods=1000, freq="1min"), y=label)
    prof = profile_failures(det, Readings.from_frame(frame, label_column="y"))
    assert prof["n_episodes"] == 2 and prof["n_types"] == 1
    (t,) = prof["types"]
    assert t["top_sensors"][0] == "pressure"
    # a state-free detector's mean deviation: z from the readings outside the episodes
    assert t["mean_deviation"]["pressure"] > 3
    det.failure_types_ = prof
    det.save(tmp_path / "m")
    assert load_detector(tmp_path / "m").failure_types_ == prof


def test_numpy_numbers_in_a_profile_survive_saving(tmp_path: Path) -> None:
    det = make_detector("pca-smoothed").fit(_normal(500, 1))
    det.failure_types_ = {"types": [{"type": np.int64(0), "share": np.float64(0.5)}]}
    det.save(tmp_path / "m")
    assert load_detector(tmp_path / "m").failure_types_ == {"types": [{"type": 0, "share": 0.5}]}


@pytest.mark.parametrize("name", ["drift-robust", "iforest", "operating-states", "pca"])
def test_old_models_load_without_failure_types(name: str) -> None:
    det = load_detector(OLD_MODELS / name)
    assert getattr(det, "failure_types_", None) is None
