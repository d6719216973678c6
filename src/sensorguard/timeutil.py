"""One rule for turning a time value into SensorGuard's time: UTC, no zone, in range.

Everything SensorGuard stores or compares is a naive UTC timestamp with nanosecond
resolution (``datetime64[ns]``), so the representable range is pandas' nanosecond range,
:data:`TIME_MIN` to :data:`TIME_MAX` (1677-09-22 .. 2262-04-11). A value outside it is
an error that says so, never a silently missing time (``NaT``) or an overflow.

Rules of this room:

* strings are ISO 8601 (``2026-01-01T06:00:00``, ``…Z``, ``…+01:00``) or anything
  :class:`pandas.Timestamp` reads; a zone or offset is converted to UTC and dropped;
* numbers are Unix epoch seconds (booleans are refused);
* ``datetime``/``Timestamp``/``datetime64`` values keep their instant;
* a missing value (None, NaN, NaT) is an error naming the position.

Errors are :class:`~sensorguard.errors.DataValidationError`; ``what`` names the value
in the message (e.g. ``"readings[3].timestamp"`` or ``"start"``). :func:`to_seconds`
turns times into float seconds; :func:`utc_now` is "now" in the same convention.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from typing import Any, overload

import numpy as np
import pandas as pd

from sensorguard.errors import DataValidationError

TIME_MIN = pd.Timestamp("1677-09-22")
TIME_MAX = pd.Timestamp("2262-04-11")
"""Inclusive bounds of a SensorGuard time (whole days inside pandas' nanosecond range)."""

TIME_HINT = "use ISO 8601, e.g. 2026-01-01T00:00:00Z (times without a zone are UTC)"
_RANGE = f"{TIME_MIN.date()} .. {TIME_MAX.date()}"


def _range_error(what: str, value: Any) -> DataValidationError:
    number = isinstance(value, int | float | np.integer | np.floating)
    return DataValidationError(
        f"{what}: {value!r} is outside the supported time range {_RANGE}",
        "epoch numbers are seconds since 1970 (not milliseconds)" if number else TIME_HINT,
    )


def _scalar(value: Any, what: str) -> pd.Timestamp:
    if value is None or value is pd.NaT:
        raise DataValidationError(f"{what}: missing time", TIME_HINT)
    if isinstance(value, bool | np.bool_):
        raise DataValidationError(f"{what}: {value!r} is not a time", TIME_HINT)
    if isinstance(value, int | float | np.integer | np.floating):
        seconds = float(value)
        if math.isnan(seconds):
            raise DataValidationError(f"{what}: missing time", TIME_HINT)
        if not math.isfinite(seconds) or not (
            TIME_MIN.timestamp() <= seconds <= TIME_MAX.timestamp()
        ):
            raise _range_error(what, value)
        ts = pd.Timestamp(seconds, unit="s")
    elif isinstance(value, str | datetime | date | np.datetime64):
        try:
            ts = pd.Timestamp(value.strip() if isinstance(value, str) else value)
        except (ValueError, TypeError):
            raise DataValidationError(
                f"{what}: cannot read {value!r} as a time", TIME_HINT
            ) from None
        except OverflowError:
            raise _range_error(what, value) from None
    else:
        raise DataValidationError(
            f"{what}: cannot read a {type(value).__name__} as a time", TIME_HINT
        )
    if ts is pd.NaT:
        raise DataValidationError(f"{what}: missing time", TIME_HINT)
    if ts.tzinfo is not None:
        try:
            ts = ts.tz_convert("UTC").tz_localize(None)
        except (OverflowError, ValueError):  # near year 1 or 9999 with an offset
            raise _range_error(what, value) from None
    if not TIME_MIN <= ts <= TIME_MAX:
        raise _range_error(what, value)
    return ts.as_unit("ns")


def _many(values: Any, what: str) -> pd.DatetimeIndex:
    arr = values.to_numpy() if isinstance(values, pd.Series | pd.Index) else np.asarray(values)
    arr = arr.ravel()
    if arr.dtype.kind == "M" and not isinstance(getattr(values, "dtype", None), pd.DatetimeTZDtype):
        idx = pd.DatetimeIndex(arr)  # naive datetime64 of any unit: vectorised
    elif isinstance(getattr(values, "dtype", None), pd.DatetimeTZDtype):
        idx = pd.DatetimeIndex(values).tz_convert("UTC").tz_localize(None)
    elif all(type(v) is datetime and v.tzinfo is None for v in arr.tolist()):
        try:  # naive datetimes (parsed JSON, store rows): vectorised
            idx = pd.DatetimeIndex(arr)
        except (OverflowError, ValueError, pd.errors.OutOfBoundsDatetime):
            idx = pd.DatetimeIndex(
                [_scalar(v, f"{what} at position {i}") for i, v in enumerate(arr)]
            )
    elif (
        len(arr)
        and all(type(v) is str for v in arr.tolist())
        and (fast := _iso_strings(arr)) is not None
    ):
        idx = fast
    else:  # strings / numbers / aware datetimes: one rule per value
        idx = pd.DatetimeIndex(
            [_scalar(v, f"{what} at position {i}") for i, v in enumerate(arr.tolist())]
        )
    if idx.hasnans:
        missing = np.asarray(idx.isna())
        raise DataValidationError(
            f"{what} at position {int(np.flatnonzero(missing)[0])} is missing "
            f"({int(missing.sum())} missing)",
            "give every reading a time",
        )
    if len(idx) and (idx.min() < TIME_MIN or idx.max() > TIME_MAX):
        bad = int(np.flatnonzero((idx < TIME_MIN) | (idx > TIME_MAX))[0])
        raise _range_error(f"{what} at position {bad}", str(idx[bad]))
    return idx.as_unit("ns")


def _iso_strings(arr: np.ndarray) -> pd.DatetimeIndex | None:
    """All-ISO 8601 strings in one vectorised pass (zones to UTC), else None."""
    try:
        idx = pd.DatetimeIndex(pd.to_datetime(arr, format="ISO8601", utc=True))
    except (ValueError, TypeError, OverflowError):
        return None
    return None if idx.hasnans else idx.tz_convert("UTC").tz_localize(None)


@overload
def to_utc_naive(value: pd.Series, *, what: str = ...) -> pd.Series: ...
@overload
def to_utc_naive(
    value: pd.Index | np.ndarray | list[Any] | tuple[Any, ...], *, what: str = ...
) -> pd.DatetimeIndex: ...
@overload
def to_utc_naive(value: Any, *, what: str = ...) -> pd.Timestamp: ...


def to_utc_naive(value: Any, *, what: str = "time") -> Any:
    """A time as naive UTC ``datetime64[ns]`` (see the module docstring for the rules).

    A scalar gives a :class:`pandas.Timestamp` (a ``datetime`` subclass), a Series a
    Series with the same index, anything list-like a :class:`pandas.DatetimeIndex`.
    """
    if isinstance(value, pd.Series):
        return pd.Series(_many(value, what), index=value.index, name=value.name)
    if isinstance(value, pd.Index | np.ndarray | list | tuple):
        return _many(value, what)
    return _scalar(value, what)


def to_seconds(times: Any) -> np.ndarray:
    """Times as float64 seconds: datetimes since the Unix epoch (zones converted to
    UTC), timedeltas as durations, plain numbers unchanged."""
    arr = times.to_numpy() if isinstance(times, pd.Series | pd.Index) else np.asarray(times)
    if isinstance(getattr(times, "dtype", None), pd.DatetimeTZDtype):
        arr = to_utc_naive(pd.DatetimeIndex(times)).to_numpy()
    if arr.dtype.kind == "M":
        return arr.astype("datetime64[ns]").astype(np.int64) / 1e9
    if arr.dtype.kind == "m":
        return arr.astype("timedelta64[ns]").astype(np.int64) / 1e9
    if arr.dtype.kind == "O":
        if len(arr) and all(isinstance(v, pd.Timedelta) for v in arr.ravel()):
            return pd.to_timedelta(arr.ravel()).to_numpy().astype(np.int64) / 1e9
        return to_utc_naive(arr).to_numpy().astype(np.int64) / 1e9
    return arr.astype(np.float64)


def utc_now() -> datetime:
    """Now as SensorGuard keeps times: naive UTC (``datetime.utcnow`` is deprecated)."""
    return datetime.now(UTC).replace(tzinfo=None)
