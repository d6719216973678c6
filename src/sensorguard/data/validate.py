"""The readings contract's validation procedure: a raw table in, checked columns out.

Readings are a time column plus numeric sensor columns, optionally an asset (machine)
id column and a label column. :meth:`Readings.from_frame` validates a raw table and
every problem is reported as a :class:`~sensorguard.errors.DataValidationError` that
names the source, the column and the row, and says how to fix it. The steps are
:func:`_resolve_roles` (which column is time, label, asset), :func:`_convert_columns`
(times parsed, sensors to float64, text kept aside) and :func:`_order_rows` (sort,
duplicates); :func:`validate_frame` runs them and :class:`~sensorguard.data.readings.Readings`
wraps the result (this module does not know that type, so the two never import in a circle).

One module at about 600 lines on purpose: it is one procedure, and its column readers (times,
labels, sensors) share the row locator ``_Where`` and the message rules with the steps that
call them; cut apart, every message helper would cross a module boundary.

Rows are numbered from 1 in the order of the input (for a CSV file, row 1 is the
first line after the header). Policies (see ``docs/data.md``):

* unsorted rows are sorted stably by (asset, time) and the count is noted;
* duplicated timestamps of one asset are an error naming the rows, unless
  ``duplicates="last"`` (keep the last row) or ``"first"``;
* missing sensor values stay NaN (filled later by the model, see
  :data:`sensorguard.detectors.base.MISSING_POLICY`); a column more than half empty
  gets a note;
* text columns that are not time, label or asset (e.g. ``failure_mode``) are kept in
  ``frame`` but are not sensors, with a note; a mostly numeric column with a few
  non-numeric cells is an error (dropping it would silently lose a sensor).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from sensorguard.errors import DataValidationError
from sensorguard.timeutil import TIME_MAX, TIME_MIN

TIME_CANDIDATES = ("timestamp", "time", "datetime", "date")
LABEL_CANDIDATES = ("machine_status", "label", "anomaly", "status")
ASSET_CANDIDATES = ("asset_id", "asset", "machine_id", "machine")

NORMAL_STATUSES = frozenset({"NORMAL"})
ABNORMAL_STATUSES = frozenset({"BROKEN", "RECOVERING"})
"""Status strings (case-insensitive) accepted in a label column; NORMAL -> 0, others -> 1."""

ANNOTATION_COLUMNS = frozenset(
    {"failure_mode", "failure_type", "fault", "fault_type", "comment", "comments", "note", "notes"}
)
"""Column names (case-insensitive) that annotate rows and are never sensors, even when
empty (an all-empty column is otherwise a sensor whose readings are all missing)."""

DUPLICATE_POLICIES = ("error", "last", "first")
MOSTLY_MISSING = 0.5
"""A sensor column with a larger fraction of missing values gets a note."""
MOSTLY_NUMERIC = 0.5
"""A text column whose non-empty cells are more than this fraction numbers is a sensor
with bad cells (an error), not a text column."""


_MAX_LISTED = 5
# a number dressed with a unit or thousands separators: "5 bar", "1,234.5", "80%"
_DRESSED_NUMBER = r"[+-]?\d[\d,.' ]*\s*[A-Za-z%°/³²]*"


@dataclass(frozen=True)
class _Where:
    """Formats row positions for messages."""

    source: str
    row_offset: int = 1
    line_offset: int | None = None

    def row(self, pos: int) -> str:
        text = f"row {pos + self.row_offset}"
        if self.line_offset is not None:
            text += f" (line {pos + self.line_offset})"
        return text

    def rows(self, positions: Sequence[int]) -> str:
        shown = ", ".join(str(p + self.row_offset) for p in positions[:_MAX_LISTED])
        more = f" and {len(positions) - _MAX_LISTED} more" if len(positions) > _MAX_LISTED else ""
        return f"rows {shown}{more}"


def _find_column(
    columns: list[str],
    wanted: str | None,
    candidates: Sequence[str],
    role: str,
    where: _Where,
    flag: str,
) -> str | None:
    if wanted is not None:
        if wanted in columns:
            return wanted
        lowered = {c.lower().strip(): c for c in columns}
        if wanted.lower().strip() in lowered:
            return lowered[wanted.lower().strip()]
        raise DataValidationError(
            f"{where.source}: {role} column {wanted!r} not found (columns found: {_list(columns)})",
            f"pass the right name with {flag}",
        )
    lowered = {c.lower().strip(): c for c in columns}
    for cand in candidates:
        if cand in lowered:
            return lowered[cand]
    return None


def _list(items: Sequence[Any], limit: int = 12) -> str:
    items = [str(i) for i in items]
    if len(items) <= limit:
        return ", ".join(items)
    return ", ".join(items[:limit]) + f", … ({len(items) - limit} more)"


def _parse_times(raw: pd.Series, col: str, where: _Where, notes: list[str]) -> pd.Series:
    missing = raw.isna()
    if missing.any():
        pos = np.flatnonzero(missing.to_numpy())
        raise DataValidationError(
            f"{where.source}: time column '{col}' is empty at {where.row(int(pos[0]))} "
            f"({len(pos)} empty time value(s): {where.rows(pos.tolist())})",
            "every reading needs a timestamp; fill or delete those rows",
        )
    if pd.api.types.is_datetime64_any_dtype(raw.dtype):
        parsed = raw
    elif pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
        seconds = raw.to_numpy(dtype=np.float64)
        with np.errstate(invalid="ignore"):
            inside = (seconds >= TIME_MIN.timestamp()) & (seconds <= TIME_MAX.timestamp())
        _refuse_out_of_range(raw, ~inside, col, where, "Unix epoch seconds")
        parsed = pd.Series(pd.to_datetime(seconds, unit="s"), index=raw.index)
        notes.append(f"time column '{col}' is numeric: read as Unix epoch seconds")
    else:
        parsed = _parse_text_times(raw.astype(str).str.strip(), col, where, notes)
    if isinstance(parsed.dtype, pd.DatetimeTZDtype):
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
        notes.append(f"time column '{col}' had time zones: converted to UTC")
    _refuse_out_of_range(raw, ~((parsed >= TIME_MIN) & (parsed <= TIME_MAX)).to_numpy(), col, where)
    return parsed.astype("datetime64[ns]").rename(col)


def _refuse_out_of_range(
    raw: pd.Series, bad: np.ndarray, col: str, where: _Where, unit: str | None = None
) -> None:
    """Times outside the nanosecond range would silently become missing (NaT) or crash."""
    if not bad.any():
        return
    pos = np.flatnonzero(bad)
    hint = "numeric times are Unix epoch seconds since 1970 (not milliseconds)" if unit else ""
    raise DataValidationError(
        f"{where.source}: time column '{col}' has the value {_cell(raw.iloc[int(pos[0])])!r} at "
        f"{where.row(int(pos[0]))}, outside the supported range {TIME_MIN.date()} .. "
        f"{TIME_MAX.date()} ({len(pos)} such value(s): {where.rows(pos.tolist())})",
        (hint + "; " if hint else "") + "fix or delete those rows",
    )


def _cell(value: Any) -> Any:
    """A cell for a message: numpy scalars as plain Python values."""
    return value.item() if isinstance(value, np.generic) else value


def _parse_text_times(text: pd.Series, col: str, where: _Where, notes: list[str]) -> pd.Series:
    """Strings to times by one rule for the whole column (see ``docs/data.md``):

    1. ISO 8601 (several offsets are converted to UTC);
    2. else one format guessed from the first value, read month first and day first: the
       reading that fits every row is used (with a note); when both fit and differ, the
       column is ambiguous and refused;
    3. a column mixing formats is refused, naming a row of each: per-value inference
       reads "02/01/2026" as 1 February next to ISO dates, moving rows by up to a month.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        iso = _try_to_datetime(text, format="ISO8601")
        if iso is None:  # several offsets
            iso = _try_to_datetime(text, format="ISO8601", utc=True)
        if iso is not None and not iso.isna().any():
            return iso
        not_iso = np.ones(len(text), dtype=bool) if iso is None else iso.isna().to_numpy()
        if not not_iso.all():  # some ISO 8601, some not
            others = _try_to_datetime(text[not_iso], format="mixed")
            readable = np.zeros(len(text), dtype=bool)
            if others is not None:
                readable[np.flatnonzero(not_iso)] = others.notna().to_numpy()
            if readable.any():
                _refuse_mixed(text, readable, np.flatnonzero(~not_iso)[0], col, where)
            _refuse_unparseable(text, not_iso, col, where)
        return _one_guessed_format(text, col, where, notes)


def _try_to_datetime(text: pd.Series, **kwargs: Any) -> pd.Series | None:
    try:
        out = pd.to_datetime(text, errors="coerce", **kwargs)
    except (ValueError, TypeError, OverflowError):
        return None
    return out if pd.api.types.is_datetime64_any_dtype(out.dtype) else None


def _one_guessed_format(text: pd.Series, col: str, where: _Where, notes: list[str]) -> pd.Series:
    from pandas.tseries.api import guess_datetime_format

    first = str(text.iloc[0])
    readings: dict[str, pd.Series] = {}
    for dayfirst in (False, True):
        fmt = guess_datetime_format(first, dayfirst=dayfirst)
        if fmt is not None and fmt not in readings:
            out = _try_to_datetime(text, format=fmt)
            if out is not None:
                readings[fmt] = out
    fitting = {f: out for f, out in readings.items() if not out.isna().any()}
    if len(fitting) == 2:
        (f1, a), (f2, b) = fitting.items()
        if not a.equals(b):
            raise DataValidationError(
                f"{where.source}: time column '{col}' can be read day first or month first "
                f"(every value fits both {f1} and {f2}; {first!r} at {where.row(0)} is "
                f"{a.iloc[0]:%d %B} or {b.iloc[0]:%d %B})",
                "write ISO 8601 times such as 2026-01-02T00:00:00",
            )
    if fitting:
        fmt, out = next(iter(fitting.items()))
        notes.append(f"time column '{col}' is not ISO 8601: read with the format {fmt}")
        return out
    mixed = _try_to_datetime(text, format="mixed")
    if mixed is not None and mixed.notna().all() and readings:
        best = min(readings.values(), key=lambda out: int(out.isna().sum()))
        _refuse_mixed(text, best.isna().to_numpy(), 0, col, where, iso=False)
    bad = np.ones(len(text), dtype=bool) if mixed is None else mixed.isna().to_numpy()
    _refuse_unparseable(text, bad, col, where)
    raise AssertionError("unreachable")  # pragma: no cover


def _refuse_mixed(
    text: pd.Series, other: np.ndarray, ref: int, col: str, where: _Where, iso: bool = True
) -> None:
    pos = np.flatnonzero(other)
    kind = "ISO 8601" if iso else f"the format of {where.row(int(ref))}"
    raise DataValidationError(
        f"{where.source}: time column '{col}' mixes time formats: {text.iloc[int(pos[0])]!r} at "
        f"{where.row(int(pos[0]))} next to {text.iloc[int(ref)]!r} at {where.row(int(ref))} "
        f"({len(pos)} row(s) not in {kind}: {where.rows(pos.tolist())})",
        "write every time in one format, preferably ISO 8601 (2026-01-02T00:00:00); mixed "
        "formats are ambiguous (is 02/01 the 2nd of January or the 1st of February?)",
    )


def _refuse_unparseable(text: pd.Series, bad: np.ndarray, col: str, where: _Where) -> None:
    pos = np.flatnonzero(bad)
    if not len(pos):
        return
    raise DataValidationError(
        f"{where.source}: time column '{col}' has an unparseable value "
        f"{text.iloc[int(pos[0])]!r} at {where.row(int(pos[0]))} "
        f"({len(pos)} bad value(s): {where.rows(pos.tolist())})",
        "use ISO 8601 times such as 2026-01-01T00:00:00, or name the right "
        "column with --time-column",
    )


def label_to_binary(labels: pd.Series, col: str, source: str) -> np.ndarray:
    """0/1 labels from a 0/1 or status-string column; unknown values are an error."""
    if pd.api.types.is_bool_dtype(labels.dtype):
        return labels.to_numpy(dtype=np.int64)
    if pd.api.types.is_numeric_dtype(labels.dtype):
        values = labels.to_numpy(dtype=np.float64, na_value=np.nan)
        ok = (values == 0) | (values == 1)
        if not ok.all():
            bad = pd.unique(labels[~ok])
            raise DataValidationError(
                f"{source}: label column '{col}' has value(s) other than 0/1: {_list(list(bad))}",
                "labels must be 0/1 or NORMAL/BROKEN/RECOVERING; pass --label-column to "
                "choose another column or --ignore-columns to drop it",
            )
        return values.astype(np.int64)
    text = labels.astype(str).str.strip().str.upper()
    normal = text.isin(NORMAL_STATUSES | {"0", "FALSE", "0.0"})
    abnormal = text.isin(ABNORMAL_STATUSES | {"1", "TRUE", "1.0"})
    unknown = ~(normal | abnormal)
    if unknown.any():
        bad = pd.unique(labels[unknown].astype(str))
        raise DataValidationError(
            f"{source}: label column '{col}' has unknown value(s): {_list(list(bad))}",
            "labels must be 0/1 or NORMAL/BROKEN/RECOVERING (any case); pass "
            "--label-column to choose another column or --ignore-columns to drop it",
        )
    return abnormal.to_numpy(dtype=np.int64)


def _sensor_or_text(
    s: pd.Series,
    col: str,
    where: _Where,
    notes: list[str],
    text_columns: dict[str, str] | None = None,
) -> pd.Series | None:
    """A float64 sensor column, or None for a text column (noted, and its first
    non-numeric value recorded in ``text_columns``)."""
    if pd.api.types.is_bool_dtype(s.dtype):
        return s.astype("float64")
    if pd.api.types.is_numeric_dtype(s.dtype):
        return s.astype("float64")
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        notes.append(f"column '{col}' holds times, not sensor values: not used as a sensor")
        return None
    present = s.notna()
    n_present = int(present.sum())
    if n_present == 0:
        # an entirely empty column is read as text by some engines
        return pd.Series(np.nan, index=s.index, dtype="float64", name=col)
    text = s.astype(str).str.strip()
    conv = pd.to_numeric(text.where(present), errors="coerce")
    bad = conv.isna() & present
    if bad.any():
        # decimal commas (1,5) are common in ;-separated files
        alt = pd.to_numeric(text.where(present).str.replace(",", ".", regex=False), errors="coerce")
        if not (alt.isna() & present).any():
            notes.append(f"column '{col}': decimal commas read as decimal points")
            return alt.astype("float64")
    n_bad = int(bad.sum())
    if n_bad == 0:
        return conv.astype("float64")
    if (n_present - n_bad) / n_present > MOSTLY_NUMERIC:
        pos = np.flatnonzero(bad.to_numpy())
        raise DataValidationError(
            f"{where.source}: sensor column '{col}' has a non-numeric value "
            f"{text.iloc[int(pos[0])]!r} at {where.row(int(pos[0]))} "
            f"({n_bad} such value(s): {where.rows(pos.tolist())})",
            "sensor values must be numbers; leave the cell empty for a missing reading, "
            f"or drop the column with --ignore-columns {col}",
        )
    dressed = text.where(present).str.fullmatch(_DRESSED_NUMBER, na=False)
    if int(dressed.sum()) / n_present > MOSTLY_NUMERIC:
        pos = np.flatnonzero((dressed & bad).to_numpy())
        raise DataValidationError(
            f"{where.source}: column '{col}' holds numbers with units or separators, e.g. "
            f"{text.iloc[int(pos[0])]!r} at {where.row(int(pos[0]))}",
            "write plain numbers (no units, no thousands separators), or drop the column "
            f"with --ignore-columns {col}",
        )
    notes.append(f"column '{col}' is not numeric: kept but not used as a sensor")
    if text_columns is not None:
        first = int(np.flatnonzero(bad.to_numpy())[0])
        text_columns[col] = f"{text.iloc[first]!r} at {where.row(first)}"
    return None


class ValidatedFrame(NamedTuple):
    """What :func:`validate_frame` hands to :class:`~sensorguard.data.readings.Readings`."""

    frame: pd.DataFrame
    sensors: list[str]
    time_column: str
    label_column: str | None
    asset_column: str | None
    notes: list[str]
    text_columns: dict[str, str]


def validate_frame(
    df: pd.DataFrame,
    *,
    time_column: str | None,
    label_column: str | None,
    asset_column: str | None,
    ignore_columns: Iterable[str],
    source: str,
    duplicates: str,
    row_offset: int = 1,
    line_offset: int | None = None,
) -> ValidatedFrame:
    """Validate a raw table (the rules are in the module docstring); rows numbered
    from ``row_offset`` in messages, and quoted as lines from ``line_offset``."""
    where = _Where(source, row_offset, line_offset)
    if not isinstance(df, pd.DataFrame):
        raise DataValidationError(
            f"{source}: expected a pandas DataFrame, got {type(df).__name__}",
            "load files with sensorguard.data.load_readings",
        )
    if duplicates not in DUPLICATE_POLICIES:
        raise DataValidationError(
            f"unknown duplicates policy {duplicates!r}",
            f"use one of: {', '.join(DUPLICATE_POLICIES)}",
        )
    notes: list[str] = []
    df, columns, tcol, lcol, acol = _resolve_roles(
        df, time_column, label_column, asset_column, ignore_columns, where, notes
    )
    frame, sensors, text_columns = _convert_columns(df, columns, tcol, lcol, acol, where, notes)
    frame = _order_rows(frame, tcol, acol, duplicates, where, notes)
    return ValidatedFrame(frame, sensors, tcol, lcol, acol, notes, text_columns)


def _resolve_roles(
    df: pd.DataFrame,
    time_column: str | None,
    label_column: str | None,
    asset_column: str | None,
    ignore_columns: Iterable[str],
    where: _Where,
    notes: list[str],
) -> tuple[pd.DataFrame, list[str], str, str | None, str | None]:
    """Column names made distinct strings, ignored columns dropped, and the time, label
    and asset columns found: ``(df, columns, time, label, asset)``."""
    source = where.source
    if isinstance(df.index, pd.DatetimeIndex) and time_column is None:
        # a time-indexed frame: the index is the time column
        name = str(df.index.name or "timestamp")
        if name not in {str(c) for c in df.columns}:
            df = df.reset_index(names=name)
    if not (isinstance(df.index, pd.RangeIndex) and df.index.start == 0 and df.index.step == 1):
        # a slice or a shuffled frame: the row labels would realign every column below
        df = df.reset_index(drop=True)
    columns = [str(c) for c in df.columns]
    if len(set(columns)) != len(columns):
        dup = sorted({c for c in columns if columns.count(c) > 1})
        raise DataValidationError(
            f"{source}: column name(s) appear more than once: {_list(dup)}",
            "give every column a distinct name",
        )
    if columns != list(df.columns):
        df = df.set_axis(columns, axis=1)

    ignore = [str(c) for c in ignore_columns]
    if ignore:
        unknown = [c for c in ignore if c not in columns]
        if unknown:
            raise DataValidationError(
                f"{source}: column(s) to ignore not found: {_list(unknown)} "
                f"(columns found: {_list(columns)})",
                "check the names given to --ignore-columns",
            )
        df = df.drop(columns=ignore)
        columns = [c for c in columns if c not in set(ignore)]
        notes.append(f"ignored column(s): {', '.join(ignore)}")

    tcol = _find_column(columns, time_column, TIME_CANDIDATES, "time", where, "--time-column")
    if tcol is None:
        raise DataValidationError(
            f"{source}: no time column found (columns found: {_list(columns)}); "
            f"looked for {', '.join(TIME_CANDIDATES)}",
            "name the time column with --time-column",
        )
    lcol = _find_column(columns, label_column, LABEL_CANDIDATES, "label", where, "--label-column")
    acol = _find_column(columns, asset_column, ASSET_CANDIDATES, "asset", where, "--asset-column")
    roles = [c for c in (tcol, lcol, acol) if c is not None]
    if len(set(roles)) != len(roles):
        raise DataValidationError(
            f"{source}: the same column is used for two roles (time={tcol}, label={lcol}, "
            f"asset={acol})",
            "name each role's column explicitly",
        )

    if len(df) == 0:
        raise DataValidationError(
            f"{source}: no readings (the table has a header but no rows)",
            "provide at least one row of readings",
        )
    return df, columns, tcol, lcol, acol


def _convert_columns(
    df: pd.DataFrame,
    columns: list[str],
    tcol: str,
    lcol: str | None,
    acol: str | None,
    where: _Where,
    notes: list[str],
) -> tuple[pd.DataFrame, list[str], dict[str, str]]:
    """Times parsed, asset and label checked, the other columns read as float64 sensors
    or kept as text: ``(frame with the roles first, sensors, text_columns)``."""
    source = where.source
    roles = [c for c in (tcol, lcol, acol) if c is not None]
    times = _parse_times(df[tcol], tcol, where, notes)
    out: dict[str, pd.Series] = {tcol: times}

    asset: pd.Series | None = None
    if acol is not None:
        raw_asset = df[acol]
        if raw_asset.isna().any():
            pos = np.flatnonzero(raw_asset.isna().to_numpy())
            raise DataValidationError(
                f"{source}: asset column '{acol}' is empty at {where.row(int(pos[0]))} "
                f"({len(pos)} empty value(s))",
                "fill in the asset id on every row, or drop the column with --ignore-columns",
            )
        asset = raw_asset.astype(str)
        out[acol] = asset

    if lcol is not None:
        raw_label = df[lcol]
        if raw_label.isna().any():
            pos = np.flatnonzero(raw_label.isna().to_numpy())
            raise DataValidationError(
                f"{source}: label column '{lcol}' is empty at {where.row(int(pos[0]))} "
                f"({len(pos)} empty label(s): {where.rows(pos.tolist())})",
                "label every row (0/1 or NORMAL/BROKEN/RECOVERING), or drop the column with "
                f"--ignore-columns {lcol}",
            )
        label_to_binary(raw_label, lcol, source)  # raises on unknown values
        out[lcol] = raw_label

    sensors: list[str] = []
    text_columns: dict[str, str] = {}
    for col in columns:
        if col in roles:
            continue
        if col.lower().strip() in ANNOTATION_COLUMNS:
            out[col] = df[col]
            notes.append(f"column '{col}' is an annotation: kept but not used as a sensor")
            continue
        conv = _sensor_or_text(df[col], col, where, notes, text_columns)
        if conv is None:
            out[col] = df[col]
            continue
        out[col] = conv
        sensors.append(col)
    if not sensors:
        raise DataValidationError(
            f"{source}: no numeric sensor columns (columns found: {_list(columns)})",
            "readings need at least one numeric sensor column next to the time column",
        )

    frame = pd.DataFrame(out, index=pd.RangeIndex(len(df)))
    # keep the input column order except the roles, which lead
    ordered = roles + [c for c in columns if c not in roles]
    frame = frame[ordered]

    values = frame[sensors].to_numpy(dtype=np.float64)
    if np.isnan(values).all():
        # scoring it would report "0 in alarm" for a machine nobody can see
        raise DataValidationError(
            f"{source}: no sensor has a value: every cell of the {len(sensors)} sensor "
            f"column(s) ({_list(sensors)}) is empty in all {len(frame):,} rows",
            "check the separator and the export (a sensor cell is a number; empty = missing)",
        )
    for col in sensors:
        frac = float(frame[col].isna().mean())
        if frac == 1.0:
            notes.append(f"sensor '{col}' has no values at all")
        elif frac > MOSTLY_MISSING:
            notes.append(f"sensor '{col}' is {frac:.0%} missing")
    return frame, sensors, text_columns


def _order_rows(
    frame: pd.DataFrame,
    tcol: str,
    acol: str | None,
    duplicates: str,
    where: _Where,
    notes: list[str],
) -> pd.DataFrame:
    """Sort stably by (asset, time) and apply the duplicates policy, all in numpy."""
    n = len(frame)
    t = frame[tcol].to_numpy().view(np.int64)
    asset = frame[acol] if acol is not None else None
    if asset is not None and n and (asset == asset.iloc[0]).all():
        asset = None  # one asset: a time sort is enough
    if asset is None:
        codes = np.zeros(n, dtype=np.int64)
    else:
        codes = pd.factorize(asset, sort=True)[0].astype(np.int64)
    same_key_next = (codes[1:] == codes[:-1]) & (t[1:] == t[:-1])
    in_order = bool(
        ((codes[1:] > codes[:-1]) | ((codes[1:] == codes[:-1]) & (t[1:] >= t[:-1]))).all()
    )
    order = np.arange(n)
    if not in_order:
        order = np.lexsort((t, codes))  # stable: equal keys keep their input order
        if asset is None:
            moved = int((order != np.arange(n)).sum())
            notes.append(f"{moved} row(s) were out of time order: sorted by time (stable)")
        else:
            notes.append(f"rows sorted by {acol}, then time (stable)")
        t, codes = t[order], codes[order]
        same_key_next = (codes[1:] == codes[:-1]) & (t[1:] == t[:-1])
    if same_key_next.any():
        dup_next = np.r_[same_key_next, False]  # row has a later twin
        dup_prev = np.r_[False, same_key_next]  # row has an earlier twin
        involved = order[dup_next | dup_prev]  # original positions
        n_extra = int(dup_prev.sum())
        if duplicates == "error":
            first = int(involved.min())
            ts = pd.Timestamp(frame[tcol].iloc[first])
            per = f" of asset {frame[acol].iloc[first]!r}" if acol is not None else ""
            raise DataValidationError(
                f"{where.source}: duplicated timestamp {ts}{per} at {where.row(first)} "
                f"({n_extra} duplicate row(s) in {where.rows(sorted(involved.tolist()))})",
                "remove the duplicate rows, or keep the last reading of each timestamp "
                "with duplicates='last' (CLI: --duplicates last)",
            )
        keep = ~dup_next if duplicates == "last" else ~dup_prev
        order = order[keep]
        notes.append(f"{n_extra} row(s) with a duplicated timestamp dropped (kept {duplicates})")
    if not in_order or len(order) != n:
        frame = frame.iloc[order]
    return frame.reset_index(drop=True)
