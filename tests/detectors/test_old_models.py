"""Models saved by earlier code keep loading and score as they did.

Flags exactly, scores to float32 rounding (see RTOL).

The fixtures in ``tests/fixtures/old_models/`` were written by the code of the commit
named in each ``columns.json`` (``make_old_models.py`` there): one small model per
detector saved with that code's ``save``, the fixed input it was scored on and the
outputs it gave; ``mlflow-operating-states/`` is one of them in the folder format the
registry stores (an MLflow pyfunc model whose ``model_code.py`` is that commit's copy).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sensorguard.detectors import available_detectors, load_detector

FIXTURES = Path(__file__).parents[1] / "fixtures" / "old_models"

# Scores and contributions: equal to float32 rounding, not bit for bit. On the machine
# that wrote the fixtures they were bit-identical; on another CPU (AMD EPYC, 2026-12-01)
# the BLAS kernels round 1-2 ulp differently (float64 2.2e-16, float32 2.4e-7 relative),
# with the same code. Flags, states and thresholds stay exact.
RTOL = 1e-6


def _same(actual: np.ndarray, expected: np.ndarray) -> None:
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=0)


def _case(name: str) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    columns = json.loads((FIXTURES / name / "columns.json").read_text())["columns"]
    with np.load(FIXTURES / name / "expected.npz", allow_pickle=False) as npz:
        expected = {k: npz[k] for k in npz.files}
    return pd.DataFrame(expected.pop("X"), columns=columns), expected


# the detectors that existed when the fixtures were written
OLD_DETECTORS = ["drift-robust", "iforest", "operating-states", "pca"]


def test_every_old_detector_has_an_old_model() -> None:
    found = sorted(p.name for p in FIXTURES.iterdir() if (p / "expected.npz").is_file())
    assert found == OLD_DETECTORS
    assert set(OLD_DETECTORS) <= set(available_detectors())


@pytest.mark.parametrize("name", OLD_DETECTORS)
def test_old_model_scores_as_it_did(name: str) -> None:
    X, expected = _case(name)
    det = load_detector(FIXTURES / name)
    assert det.threshold_ == float(expected["threshold"])
    _same(det.score_samples(X), expected["score"])
    np.testing.assert_array_equal(det.predict(X), expected["predict"])
    res = det.detect(X)
    _same(res.score, expected["score"])
    np.testing.assert_array_equal(res.is_anomaly, expected["is_anomaly"])
    np.testing.assert_array_equal(res.state, expected["state"])
    _same(res.contributions, expected["contributions"])
    assert expected["is_anomaly"].any() and not expected["is_anomaly"].all()


def test_old_model_keeps_its_parameters_under_todays_names() -> None:
    det = load_detector(FIXTURES / "operating-states")
    saved = json.loads((FIXTURES / "operating-states" / "detector.json").read_text())["params"]
    assert "threshold_quantile" in saved  # written by the old code
    params = det.get_params()
    assert params["quantile"] == saved["threshold_quantile"]
    assert params["margin"] == saved["threshold_margin"]
    assert "threshold_quantile" not in params


def test_old_registry_folder_loads_and_scores_as_it_did() -> None:
    mlflow = pytest.importorskip("mlflow")
    X, expected = _case("operating-states")
    model = mlflow.pyfunc.load_model(str(FIXTURES / "mlflow-operating-states"))
    det = model.unwrap_python_model().detector
    np.testing.assert_array_equal(det.detect(X).is_anomaly, expected["is_anomaly"])
    out = model.predict(X)
    _same(out["score"].to_numpy(), expected["score"])
    np.testing.assert_array_equal(out["is_anomaly"].to_numpy(), expected["is_anomaly"])
