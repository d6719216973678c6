"""One rule for making values JSON-safe (MLflow tags and params, XCom, reports, HTTP).

JSON has no NaN or infinity and no numpy types. Rules of this room:

* :func:`json_safe` turns a nested value into plain JSON: non-finite floats become
  ``None`` (a delay "with nothing detected" is unknown, not infinite), numpy scalars and
  arrays become Python numbers and lists, tuples and sets become lists, dict keys become
  strings, dates and times become ISO strings, paths become strings; anything else is
  returned unchanged (``json.dumps`` will say what it cannot encode);
* :func:`finite_metrics` keeps only the finite numbers of a metrics dict, as floats,
  for stores that refuse anything else (MLflow metrics).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from pathlib import PurePath
from typing import Any

import numpy as np


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON (see the module docstring)."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return [json_safe(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return json_safe(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, PurePath):
        return str(value)
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )


def finite_metrics(
    values: Mapping[str, Any], keys: Iterable[str] | None = None, *, prefix: str = ""
) -> dict[str, float]:
    """The finite numbers of ``values`` (only ``keys`` when given), as floats, with
    ``prefix`` added to each name. Booleans, None, NaN and infinities are left out."""
    names = list(values) if keys is None else list(keys)
    out: dict[str, float] = {}
    for k in names:
        v: Any = values.get(k)
        if _is_number(v) and math.isfinite(float(v)):
            out[f"{prefix}{k}"] = float(v)
    return out
