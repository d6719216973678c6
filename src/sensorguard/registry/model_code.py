"""The MLflow pyfunc wrapper of a SensorGuard detector (MLflow "models from code").

MLflow copies this file into the logged model and runs it on load, so no pickle is
involved: the detector itself is the JSON + npz folder logged as the ``detector``
artifact and read back with ``load_detector``. Loading therefore works with
``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false``.
"""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel, PythonModelContext

from sensorguard.detectors.base import BaseDetector
from sensorguard.detectors.catalog import load_detector

TOP_K = 3


class DetectorModel(PythonModel):  # type: ignore[misc]
    """``predict`` returns one row per reading: score, is_anomaly, state, top_sensors.

    ``.detector`` is the loaded detector, so a service can call it directly (no
    DataFrame round trip through the pyfunc layer) when it needs speed.
    """

    detector: BaseDetector | None = None

    def load_context(self, context: PythonModelContext) -> None:
        self.detector = load_detector(context.artifacts["detector"])

    def predict(
        self,
        context: PythonModelContext | None,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        if self.detector is None:  # used without load_context (e.g. in a unit test)
            if context is None:
                raise RuntimeError("the detector has not been loaded")
            self.load_context(context)
        assert self.detector is not None
        k = int((params or {}).get("top_k", TOP_K))
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        return self.detector.detect(frame).to_frame(k=k, index=frame.index)


mlflow.models.set_model(DetectorModel())
