"""The readings contract, by its historical name: re-exports only.

The value type lives in :mod:`sensorguard.data.readings`, the validation procedure in
:mod:`sensorguard.data.validate`; import from there (or from :mod:`sensorguard.data`).
"""

from sensorguard.data.readings import (
    DEFAULT_MIN_TRAIN_ROWS,
    MAX_TRAIN_SENSORS,
    Readings,
    check_min_rows,
    row_blocks,
    validate_for_training,
)
from sensorguard.data.validate import (
    ABNORMAL_STATUSES,
    ANNOTATION_COLUMNS,
    ASSET_CANDIDATES,
    DUPLICATE_POLICIES,
    LABEL_CANDIDATES,
    MOSTLY_MISSING,
    MOSTLY_NUMERIC,
    NORMAL_STATUSES,
    TIME_CANDIDATES,
    label_to_binary,
)

__all__ = [
    "ABNORMAL_STATUSES",
    "ANNOTATION_COLUMNS",
    "ASSET_CANDIDATES",
    "DEFAULT_MIN_TRAIN_ROWS",
    "DUPLICATE_POLICIES",
    "LABEL_CANDIDATES",
    "MAX_TRAIN_SENSORS",
    "MOSTLY_MISSING",
    "MOSTLY_NUMERIC",
    "NORMAL_STATUSES",
    "TIME_CANDIDATES",
    "Readings",
    "check_min_rows",
    "label_to_binary",
    "row_blocks",
    "validate_for_training",
]
