"""PostgreSQL ``COPY ... (FORMAT binary)`` encoding, laid out by numpy.

Rules of this room: pure bytes, no connection. A row is a numpy record (big-endian
field lengths and values), so a chunk of readings is one ``tobytes()`` with no per-value
formatting; missing values are NaN elements, never NULL. Used by the store's writers
(:mod:`sensorguard.store.writers`, :mod:`sensorguard.store.ingest`) and the live loop's
bulk reads.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in Unix microseconds (COPY binary times)
_PG_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_PG_COPY_TRAILER = struct.pack(">h", -1)
_FLOAT8_OID = 701


def float8_array_fields(k: int) -> list[tuple[str, Any] | tuple[str, Any, Any]]:
    """Record fields of one ``float8[]`` value of ``k`` elements in COPY binary format."""
    return [
        ("len_array", ">i4"),
        ("ndim", ">i4"),
        ("has_null", ">i4"),
        ("elem_oid", ">i4"),
        ("dim", ">i4"),
        ("lower_bound", ">i4"),
        ("elems", [("len", ">i4"), ("value", ">f8")], (k,)),
    ]


def _fill_float8_array(rec: np.ndarray, values: np.ndarray) -> None:
    """Fill the :func:`float8_array_fields` of ``rec`` with the rows of ``values``."""
    k = values.shape[1]
    rec["len_array"] = 20 + 12 * k
    rec["ndim"] = 1
    rec["has_null"] = 0  # missing values are NaN, never NULL elements
    rec["elem_oid"] = _FLOAT8_OID
    rec["dim"] = k
    rec["lower_bound"] = 1
    rec["elems"]["len"] = 8
    rec["elems"]["value"] = values


def _pg_copy_payload(times_us: np.ndarray, status_codes: np.ndarray, values: np.ndarray) -> bytes:
    """Rows ``(time timestamp, status int2, sensor_values float8[])`` in COPY binary format."""
    n, k = values.shape
    row = np.dtype(
        [
            ("nfields", ">i2"),
            ("len_time", ">i4"),
            ("time", ">i8"),
            ("len_status", ">i4"),
            ("status", ">i2"),
            *float8_array_fields(k),
        ]
    )
    rec = np.empty(n, dtype=row)
    rec["nfields"] = 3
    rec["len_time"] = 8
    rec["time"] = times_us - PG_EPOCH_US
    rec["len_status"] = 2
    rec["status"] = status_codes
    _fill_float8_array(rec, values)
    return _PG_COPY_HEADER + rec.tobytes() + _PG_COPY_TRAILER


def _readings_copy_payload(
    asset: str,
    sid: int,
    times_us: np.ndarray,
    codes: np.ndarray,
    labels: list[str],
    values: np.ndarray,
) -> bytes:
    """Rows of ``readings`` itself in COPY binary format.

    Rows with the same status have the same byte size, so each status group is laid out
    as one numpy record array (COPY does not care about row order)."""
    k = values.shape[1]
    asset_b = asset.encode()
    parts = [_PG_COPY_HEADER]
    for code in np.unique(codes):
        pos = np.flatnonzero(codes == code)
        status_b = labels[code - 1].encode() if code > 0 else b""
        fields: list[tuple[str, Any] | tuple[str, Any, Any]] = [
            ("nfields", ">i2"),
            ("len_asset", ">i4"),
        ]
        if asset_b:
            fields.append(("asset", f"S{len(asset_b)}"))
        fields += [
            ("len_time", ">i4"),
            ("time", ">i8"),
            ("len_sid", ">i4"),
            ("sid", ">i4"),
            *float8_array_fields(k),
            ("len_status", ">i4"),
        ]
        if status_b:
            fields.append(("status", f"S{len(status_b)}"))
        rec = np.empty(len(pos), dtype=np.dtype(fields))
        rec["nfields"] = 5
        rec["len_asset"] = len(asset_b)
        if asset_b:
            rec["asset"] = asset_b
        rec["len_time"] = 8
        rec["time"] = times_us[pos] - PG_EPOCH_US
        rec["len_sid"] = 4
        rec["sid"] = sid
        _fill_float8_array(rec, values[pos])
        rec["len_status"] = len(status_b) if code > 0 else -1
        if status_b:
            rec["status"] = status_b
        parts.append(rec.tobytes())
    parts.append(_PG_COPY_TRAILER)
    return b"".join(parts)
