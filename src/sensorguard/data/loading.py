"""Read readings from CSV (any separator) or Parquet, and write result tables.

The file type comes from the suffix. For CSV the separator is given (``sep``) or
detected from the first lines: :class:`csv.Sniffer` first, checked by requiring the
same number of fields on every sampled line, then each of ``,`` ``;`` tab ``|``, then
runs of whitespace. Text must be UTF-8 (a byte-order mark is fine) unless another
``encoding`` is given.
"""

from __future__ import annotations

import codecs
import csv
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from sensorguard.data.readings import Readings
from sensorguard.errors import DataValidationError

CSV_SUFFIXES = (".csv", ".tsv", ".txt", ".dat")
PARQUET_SUFFIXES = (".parquet", ".pq")
COMPRESSION_SUFFIXES = (".gz", ".bz2", ".zip", ".xz", ".zst")
SEPARATORS = (",", ";", "\t", "|")
WHITESPACE = r"\s+"
_SNIFF_LINES = 50
_SNIFF_BYTES = 256 * 1024

_SEP_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}


def file_kind(path: str | Path) -> str:
    """``"csv"`` or ``"parquet"`` from the suffix; other suffixes are an error."""
    p = Path(path)
    suffixes = [s.lower() for s in p.suffixes]
    if suffixes and suffixes[-1] in COMPRESSION_SUFFIXES:
        suffixes = suffixes[:-1]
    last = suffixes[-1] if suffixes else ""
    if last in CSV_SUFFIXES:
        return "csv"
    if last in PARQUET_SUFFIXES:
        return "parquet"
    raise DataValidationError(
        f"{p}: unknown file type {''.join(p.suffixes) or '(no suffix)'!r}",
        "use a .csv/.tsv/.txt file (optionally .gz/.bz2/.zip/.xz) or a .parquet file",
    )


def normalise_sep(sep: str | None) -> str | None:
    """Accept friendly separator names (``tab``, ``\\t``, ``whitespace``)."""
    if sep is None or sep == "":
        return None
    low = sep.lower()
    if low in _SEP_NAMES:
        return _SEP_NAMES[low]
    if low in ("whitespace", "space", "spaces", r"\s+"):
        return WHITESPACE
    return sep


def _check_file(path: Path) -> None:
    if not path.exists():
        raise DataValidationError(f"file not found: {path}", "check the path")
    if path.is_dir():
        raise DataValidationError(f"{path} is a folder, not a file", "pass a .csv or .parquet file")
    try:
        size = path.stat().st_size
        with path.open("rb"):
            pass
    except OSError as exc:
        raise DataValidationError(
            f"{path}: cannot be read ({exc.strerror or exc})", "check the file permissions"
        ) from None
    if size == 0:
        raise DataValidationError(
            f"{path}: the file is empty", "provide a file with a header row and readings"
        )


def _read_text_sample(path: Path, encoding: str, compression: str | None) -> str:
    """The first lines of a (possibly compressed) text file, decoded."""
    import bz2
    import gzip
    import lzma

    if compression == "zip":
        with zipfile.ZipFile(path) as zf:
            names = [i for i in zf.infolist() if not i.is_dir()]
            if not names:
                raise DataValidationError(f"{path}: the zip archive is empty", "zip one CSV file")
            with zf.open(names[0]) as fh:
                raw = fh.read(_SNIFF_BYTES)
        return _decode_sample(path, raw, encoding)
    if compression == "zstd":
        try:
            import zstandard
        except ImportError:
            raise DataValidationError(
                f"{path}: reading .zst files needs the zstandard package",
                "decompress the file first, or use .gz",
            ) from None
        with path.open("rb") as fz, zstandard.ZstdDecompressor().stream_reader(fz) as fh:
            raw = fh.read(_SNIFF_BYTES)
        return _decode_sample(path, raw, encoding)
    openers: dict[str, Callable[..., Any]] = {"gzip": gzip.open, "bz2": bz2.open, "xz": lzma.open}
    opener = openers.get(compression or "", open)
    with opener(path, "rb") as fh:
        raw = fh.read(_SNIFF_BYTES)
    return _decode_sample(path, raw, encoding)


def _decode_sample(path: Path, raw: bytes, encoding: str) -> str:
    wide = encoding.lower().replace("-", "").replace("_", "").startswith(("utf16", "utf32"))
    nul = -1 if wide else raw.find(b"\x00")
    if nul >= 0:  # pandas would read a 2 GB hole of NULs as one field (MemoryError at 6.4 GB)
        raise DataValidationError(
            f"{path}: holds NUL bytes (the first at byte {nul:,}): binary data, not a text file",
            "check the file (a damaged or sparse copy?); pass a CSV text file or Parquet",
        )
    try:
        return str(raw.decode(encoding))
    except UnicodeDecodeError as exc:
        if exc.end >= len(raw) - 4:  # a multi-byte character cut at the sample's end
            return str(raw[: exc.start].decode(encoding))
        raise _encoding_error(path, encoding, exc) from None


def _encoding_error(path: Path, encoding: str, exc: UnicodeDecodeError) -> DataValidationError:
    return DataValidationError(
        f"{path}: not valid {encoding} text (byte {exc.object[exc.start : exc.start + 1]!r} at "
        f"offset {exc.start})",
        "save the file as UTF-8, or pass the file's encoding (e.g. --encoding latin-1)",
    )


def _consistent_fields(lines: list[str], sep: str) -> int:
    """Number of fields if every line has the same count (>1), else 0."""
    try:
        counts = {len(row) for row in csv.reader(lines, delimiter=sep) if row}
    except csv.Error:  # e.g. a field larger than the csv module's limit
        return 0
    if len(counts) == 1:
        n = counts.pop()
        return n if n > 1 else 0
    return 0


def sniff_separator(sample: str) -> str:
    """The field separator of CSV text (see the module docstring for the order)."""
    lines = [ln for ln in sample.splitlines()[:_SNIFF_LINES] if ln.strip()]
    if len(lines) > 1 and not sample.endswith("\n"):
        lines = lines[:-1]  # the last line may be cut
    if not lines:
        return ","
    try:
        dialect = csv.Sniffer().sniff("\n".join(lines), delimiters="".join(SEPARATORS))
        if _consistent_fields(lines, dialect.delimiter):
            return str(dialect.delimiter)
    except csv.Error:
        pass
    best, best_n = None, 0
    for sep in SEPARATORS:
        n = _consistent_fields(lines, sep)
        if n > best_n:
            best, best_n = sep, n
    if best is not None:
        return best
    ws = {len(ln.split()) for ln in lines}
    if len(ws) == 1 and ws.pop() > 1:
        return WHITESPACE
    return ","


MAX_TEXT_BYTES: int | None = None
"""Largest text file loaded, in bytes; None = ``SENSORGUARD_MAX_FILE_MB`` (default 1024)."""


def _max_bytes() -> int:
    if MAX_TEXT_BYTES is not None:
        return MAX_TEXT_BYTES
    from sensorguard.config import get_settings

    return get_settings().max_file_mb * 1024 * 1024


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} GB"  # pragma: no cover


def _check_size(path: Path, size: int, what: str = "") -> None:
    """Refuse tables larger than the memory budget before reading them: loading holds
    the whole table in memory (measured: 457 MB peak RSS for a 109 MB CSV of 1M rows)."""
    limit = _max_bytes()
    if size > limit:
        raise DataValidationError(
            f"{path}: {what or 'the file'} ({_human(size)}) is larger than the {_human(limit)} "
            "limit for one readings file",
            "loading holds the whole table in memory (about 3.4x a CSV's size at peak): split "
            "the file by time, convert it to Parquet, or raise SENSORGUARD_MAX_FILE_MB",
        )


def _compression(path: Path) -> str | None:
    suffix = path.suffix.lower()
    return {".gz": "gzip", ".bz2": "bz2", ".zip": "zip", ".xz": "xz", ".zst": "zstd"}.get(suffix)


def read_table(
    path: str | Path, *, sep: str | None = None, encoding: str = "utf-8"
) -> tuple[pd.DataFrame, list[str]]:
    """Read a CSV or Parquet file into a raw DataFrame (no validation) plus notes."""
    p = Path(path)
    kind = file_kind(p)
    _check_file(p)
    notes: list[str] = []
    if kind == "parquet":
        return _read_parquet(p), notes
    _check_size(p, p.stat().st_size)
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise DataValidationError(
            f"unknown text encoding {encoding!r}",
            "pass a Python codec name such as utf-8, latin-1 or cp1252 (--encoding)",
        ) from None
    compression = _compression(p)
    sep = normalise_sep(sep)
    try:  # also refuses binary content (NUL bytes) before pandas reads it all
        sample = _read_text_sample(p, encoding, compression)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
        if isinstance(exc, DataValidationError):
            raise
        raise DataValidationError(
            f"{p}: cannot be read as {compression or 'plain'} text ({exc})",
            "check that the file is not damaged and that its suffix matches its content",
        ) from None
    if sep is None:
        if not sample.strip():
            raise DataValidationError(
                f"{p}: the file holds no text", "provide a header row and readings"
            )
        sep = sniff_separator(sample)
        if sep != ",":
            notes.append(f"separator detected: {'whitespace' if sep == WHITESPACE else repr(sep)}")
    kwargs: dict[str, object] = {"encoding": encoding, "compression": compression}
    if sep == WHITESPACE:
        kwargs["sep"] = WHITESPACE  # the C engine handles this pattern natively
        kwargs["engine"] = "c"
    else:
        kwargs["sep"] = sep
        kwargs["engine"] = "c" if len(sep) == 1 else "python"
    if kwargs["engine"] == "c":
        kwargs["low_memory"] = False  # the python engine (multi-character --sep) rejects it
    if encoding.lower().replace("-", "") in ("utf8", "utf8sig"):
        kwargs["encoding"] = "utf-8-sig"  # tolerate a byte-order mark
    try:
        df = pd.read_csv(p, **kwargs)  # type: ignore[call-overload]
    except UnicodeDecodeError as exc:
        raise _encoding_error(p, encoding, exc) from None
    except pd.errors.EmptyDataError:
        raise DataValidationError(
            f"{p}: the file holds no header or data", "provide a header row and readings"
        ) from None
    except pd.errors.ParserError as exc:
        raise DataValidationError(
            f"{p}: cannot be parsed as CSV with separator {sep!r} ({_first_line(exc)})",
            "check that every line has the same number of fields, or pass --sep",
        ) from None
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
        raise DataValidationError(
            f"{p}: cannot be read ({_first_line(exc)})",
            "check that the file is not damaged and that its suffix matches its content",
        ) from None
    # a trailing separator on every line makes a nameless, empty last column
    blank = [c for c in df.columns if str(c).startswith("Unnamed: ") and df[c].isna().all()]
    if blank:
        df = df.drop(columns=blank)
        notes.append(f"{len(blank)} empty column(s) without a name dropped")
    if df.shape[1] == 1 and any(c in str(df.columns[0]) for c in ",;\t| "):
        raise DataValidationError(
            f"{p}: only one column found ({df.columns[0]!r}) with separator {sep!r}",
            "pass the separator with --sep (e.g. --sep ';' or --sep tab)",
        )
    return df, notes


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _read_parquet(p: Path) -> pd.DataFrame:
    try:
        import pyarrow.parquet as pq

        meta = pq.read_metadata(p)
    except Exception as exc:  # pyarrow raises several unrelated types for bad files
        raise DataValidationError(
            f"{p}: cannot be read as Parquet ({_first_line(exc)})",
            "check that the file is a complete Parquet file (or use CSV)",
        ) from None
    table_bytes = meta.num_rows * meta.num_columns * 8
    _check_size(p, table_bytes, f"the table of {meta.num_rows:,} rows x {meta.num_columns} columns")
    try:
        table = pq.read_table(p)
    except Exception as exc:  # pyarrow raises several unrelated types for bad files
        raise DataValidationError(
            f"{p}: cannot be read as Parquet ({_first_line(exc)})",
            "check that the file is a complete Parquet file (or use CSV)",
        ) from None
    return table.to_pandas()


def load_readings(
    path: str | Path,
    *,
    sep: str | None = None,
    time_column: str | None = None,
    label_column: str | None = None,
    asset_column: str | None = None,
    ignore_columns: Iterable[str] = (),
    min_rows: int | None = None,
    duplicates: str = "error",
    encoding: str = "utf-8",
) -> Readings:
    """Load and validate readings from a CSV or Parquet file.

    Columns are auto-detected when not named (time: timestamp/time/datetime/date; label:
    machine_status/label/anomaly/status; asset: asset_id/asset/machine_id/machine, all
    case-insensitive). ``min_rows`` only checks the row count; call
    :func:`~sensorguard.data.validate_for_training` before training.
    Raises :class:`~sensorguard.errors.DataValidationError` naming file, column and row.
    """
    p = Path(path)
    df, notes = read_table(p, sep=sep, encoding=encoding)
    is_text = file_kind(p) == "csv"
    readings = Readings.from_frame(
        df,
        time_column=time_column,
        label_column=label_column,
        asset_column=asset_column,
        ignore_columns=ignore_columns,
        source=str(p),
        duplicates=duplicates,
        min_rows=min_rows,
        line_offset=2 if is_text else None,
    )
    readings.notes[:0] = notes
    return readings


def write_frame(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a table as CSV (``.csv``/``.tsv``, optionally compressed) or Parquet.

    Parent folders are created. Other suffixes are an error.
    """
    p = Path(path)
    kind = file_kind(p)
    if df.attrs:  # attrs are not part of the table (and may not be JSON-serialisable)
        df = df.copy(deep=False)
        df.attrs = {}
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        if kind == "parquet":
            df.to_parquet(p, index=False)
        else:
            stem_suffix = [s.lower() for s in p.suffixes if s.lower() not in COMPRESSION_SUFFIXES]
            sep = "\t" if stem_suffix and stem_suffix[-1] == ".tsv" else ","
            compression: Any = _compression(p)
            if compression is not None or not _write_csv_fast(df, p, sep):
                df.to_csv(p, index=False, sep=sep, compression=compression)
    except OSError as exc:
        raise DataValidationError(
            f"cannot write {p} ({exc.strerror or exc})",
            "check that the folder exists and is writable",
        ) from None
    return p


def _write_csv_fast(df: pd.DataFrame, path: Path, sep: str) -> bool:
    """Write CSV with pyarrow (several times faster than pandas); False if it cannot.

    Whole-second timestamps are written as ``2026-01-01 00:00:00`` (like pandas);
    missing values become empty cells.
    """
    try:
        import pyarrow as pa
        import pyarrow.csv as pa_csv
    except ImportError:
        return False
    try:
        table = pa.Table.from_pandas(df, preserve_index=False)
        for i, fld in enumerate(table.schema):
            if pa.types.is_timestamp(fld.type) and fld.type.unit != "s":
                col = table.column(i)
                as_s = col.cast(pa.timestamp("s", fld.type.tz), safe=False)
                if as_s.cast(fld.type).equals(col):
                    table = table.set_column(i, fld.name, as_s)
        options = pa_csv.WriteOptions(delimiter=sep, quoting_style="needed")
        pa_csv.write_csv(table, path, write_options=options)
    except (pa.ArrowException, TypeError, ValueError):
        return False
    return True
