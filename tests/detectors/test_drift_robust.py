"""Model behaviour of the drift-robust detector's alarm boundaries on the synthetic pump
rig: the end-of-alarm test, the on-delay and the backdating of confirmed events. Each
test also runs the mechanism switched off, so it shows the mechanism is what helps."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from sensorguard.detectors import make_detector
from sensorguard.detectors.events import flag_spans
from sensorguard.evaluation.synthetic import SENSORS, pump_rig_file

pytestmark = pytest.mark.model


def _spans(frame: pd.DataFrame, **params: Any) -> list[tuple[int, int]]:
    det = make_detector("drift-robust", **params).fit(frame[SENSORS].iloc[:400])
    starts, ends = flag_spans(det.predict(frame[SENSORS].iloc[400:]))
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def _segment(frame: pd.DataFrame) -> tuple[int, int]:
    """First and last anomalous row of the predicted part."""
    rows = np.flatnonzero(frame["anomaly"].to_numpy()[400:])
    return int(rows[0]), int(rows[-1])


@pytest.mark.parametrize("seed", [0, 1])
def test_the_alarm_ends_within_a_few_readings_of_the_return(seed: int) -> None:
    frame = pump_rig_file(seed, kind="valve_outlet", strength_range=(1.2, 1.6))
    _, last = _segment(frame)
    with_test = _spans(frame)
    without = _spans(frame, end_test=0)
    assert len(with_test) == 1 and len(without) == 1
    assert 0 <= with_test[0][1] - last <= 8
    # the 20-reading median alone needs far longer to see the return
    assert without[0][1] - last >= 15


def test_confirmed_events_are_dated_back_to_where_the_score_rose() -> None:
    frame = pump_rig_file(2, kind="valve_outlet", strength_range=(1.2, 1.6))
    first, _ = _segment(frame)
    assert abs(_spans(frame)[0][0] - first) <= 3
    assert _spans(frame, backdate=0)[0][0] - first >= 10


def test_an_excursion_shorter_than_the_on_delay_is_not_an_event() -> None:
    frame = pump_rig_file(5, kind="none")
    blip = slice(700, 735)  # 35 readings: a valve nudged and put back
    frame.loc[frame.index[blip], "Volume Flow RateRMS"] *= 0.85
    frame.loc[frame.index[blip], "Pressure"] += 0.08
    frame.loc[frame.index[blip], "Current"] += 0.05
    no_delay = _spans(frame, confirm=0)
    assert any(s <= 300 + 35 and e >= 300 for s, e in no_delay), no_delay
    assert _spans(frame) == []  # the default on-delay of 60 readings drops it


def test_a_long_excursion_passes_the_on_delay() -> None:
    frame = pump_rig_file(5, kind="none")
    step = slice(700, 900)
    frame.loc[frame.index[step], "Volume Flow RateRMS"] *= 0.85
    frame.loc[frame.index[step], "Pressure"] += 0.08
    frame.loc[frame.index[step], "Current"] += 0.05
    spans = _spans(frame)
    assert len(spans) == 1
    start, end = spans[0]
    assert abs(start - 300) <= 5 and 0 <= end - 499 <= 8
