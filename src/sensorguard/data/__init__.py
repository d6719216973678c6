"""Readings: loading, validation (the data contract) and the pump simulator.

``load_readings`` reads CSV (any separator) or Parquet into validated
:class:`Readings`; ``Readings.from_frame`` applies the same rules to a DataFrame;
``validate_for_training`` adds the checks that only matter for training. The
simulator lives in :mod:`sensorguard.data.simulator` (imported lazily by callers).
"""

from sensorguard.data.loading import load_readings, read_table, sniff_separator, write_frame
from sensorguard.data.readings import (
    DEFAULT_MIN_TRAIN_ROWS,
    Readings,
    label_to_binary,
    validate_for_training,
)

__all__ = [
    "DEFAULT_MIN_TRAIN_ROWS",
    "Readings",
    "label_to_binary",
    "load_readings",
    "read_table",
    "sniff_separator",
    "validate_for_training",
    "write_frame",
]
