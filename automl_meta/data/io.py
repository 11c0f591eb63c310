"""Reading tables: formats, encodings, size and time bounds, the one suffix table.

Supported formats (by file name, optionally gzipped): CSV (delimiter detected), TSV, Parquet,
ARFF. Text is UTF-8 (BOM or not), UTF-16 / UTF-32 with a BOM, else Windows-1252 / Latin-1;
binary files (Excel workbooks, ZIP, PDF, …) are refused saying what they are.
"""


from __future__ import annotations

import codecs
import csv
import decimal
import gzip
import hashlib
import io
import os
import re
import stat
import sys
import tempfile
import time
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from automl_meta.errors import UsageError

# ---------------------------------------------------------------------------------- reading
_SNIFF_BYTES = 8192
_HEAD_BYTES = 65536  # what is looked at before parsing: magic bytes, encoding, delimiter
_CHUNK = 1 << 20
_MAGIC = (  # leading bytes of formats people try to read as a table, and what to do instead
    (b"PK\x03\x04", "a ZIP archive (an Excel .xlsx workbook?); export the sheet as CSV"),
    (b"\xd0\xcf\x11\xe0", "an Excel .xls workbook (OLE file); export the sheet as CSV"),
    (b"%PDF", "a PDF document, not a table"),
    (b"SQLite format 3", "an SQLite database; export the table as CSV"),
    (b"\x89HDF", "an HDF5 file; export the table as CSV or Parquet"),
)
_BOMS = ((b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"),
         (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))
MAX_INPUT_ENV = "AUTOML_META_MAX_INPUT_BYTES"
# decompressed text may take 1/n of the available memory: pandas' tokenizer and the parsed
# frame of short numeric fields take about ten times the text
_MEMORY_SHARE = 16
_ARFF_SHARE = 8  # ARFF text becomes Python lists first: a smaller share of that limit



def _one_line(text: str, limit: int = 300) -> str:
    """Collapse whitespace (newlines included) so a message fits on one line."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _human(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def _available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``), else the
    physical memory, else None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        return None


def max_input_bytes() -> int:
    """The most decompressed bytes of input read into memory.

    ``AUTOML_META_MAX_INPUT_BYTES`` (a number of bytes, or with a ``K`` / ``M`` / ``G``
    suffix) when set; else a sixteenth of the memory available now (``MemAvailable`` on
    Linux), at least 64 MB; 4 GB when the available memory is unknown.
    """
    env = os.environ.get(MAX_INPUT_ENV, "").strip()
    if env:
        m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?", env, re.IGNORECASE)
        if not m:
            raise UsageError(f"{MAX_INPUT_ENV}={env!r} is not a size; use a number of bytes "
                             "such as 500000000 or 500M")
        scale = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}[m.group(2).lower()]
        return max(1, int(float(m.group(1)) * scale))
    available = _available_memory()
    if available is None:  # pragma: no cover - neither /proc/meminfo nor sysconf
        return 4 * 10**9
    return max(available // _MEMORY_SHARE, 64 * 2**20)


@dataclass(frozen=True)
class Deadline:
    """The part of a command's time budget that reading and typing the data may use.

    Parameters
    ----------
    started : float
        ``time.monotonic()`` when the command started.
    budget : float
        The command's time budget in seconds; reading and typing fail with a
        :class:`UsageError` once it is spent.
    """

    started: float
    budget: float

    def elapsed(self) -> float:
        """Seconds since ``started``."""
        return time.monotonic() - self.started

    def check(self, what: str = "DATA") -> None:
        """Raise :class:`UsageError` when the budget is spent."""
        elapsed = self.elapsed()
        if elapsed > self.budget:
            raise UsageError(_one_line(
                f"reading {what} took {elapsed:.1f} s of the {self.budget:g} s time budget, "
                "leaving no time to search; raise --time-budget, or pass fewer rows or "
                "columns"))


def _too_large(path: Path, seen: int, limit: int, qualifier: str = "more than "
               ) -> UsageError:
    size = f"{qualifier}{_human(seen)}"
    origin = f"set by {MAX_INPUT_ENV}" if os.environ.get(MAX_INPUT_ENV, "").strip() else \
        f"1/{_MEMORY_SHARE} of the available memory"
    return UsageError(_one_line(
        f"{path}: the data is too large to read into memory here ({size} of text, limit "
        f"{_human(limit)}, {origin}); use a sample of the rows or a machine with more "
        f"memory, or set {MAX_INPUT_ENV} to a larger number of bytes"))


class _Tap(io.RawIOBase):
    """A read-only byte stream passing another one through, and watching it.

    It hashes the bytes (``sha256``), stops at ``limit`` bytes (:class:`UsageError`),
    checks the ``deadline`` every chunk and counts NUL bytes (``n_nul``, and the newlines
    before the first one) so that a text reader can name them afterwards.
    """

    def __init__(self, inner: Any, path: Path, limit: int | None = None,
                 deadline: Deadline | None = None, hash_bytes: bool = False,
                 count_nul: bool = False):
        super().__init__()
        self.inner, self.path, self.limit, self.deadline = inner, path, limit, deadline
        self.sha256 = hashlib.sha256() if hash_bytes else None
        self.count_nul = count_nul
        self.n_bytes = 0
        self.n_nul = 0
        self.lines_before_nul = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        want = len(view) if self.limit is None else min(len(view), self.limit - self.n_bytes + 1)
        data = self.inner.read(max(want, 1))
        n = len(data)
        if not n:
            return 0
        view[:n] = data
        if self.sha256 is not None:
            self.sha256.update(data)
        if self.count_nul:
            nul = data.count(0)
            if not self.n_nul:
                first = data.find(0)
                self.lines_before_nul += data.count(b"\n", 0, first if first >= 0 else n)
            self.n_nul += nul
        self.n_bytes += n
        if self.limit is not None and self.n_bytes > self.limit:
            raise _too_large(self.path, self.limit, self.limit)
        if self.deadline is not None:
            self.deadline.check(str(self.path))
        return n

    def drain(self) -> None:
        """Read to the end (bounded by ``limit`` and the deadline) to finish the counts."""
        buf = bytearray(_CHUNK)
        while self.readinto(buf):
            pass


class _Input:
    """A data file opened once: decompressed bytes as a buffered stream, bounded in size."""

    def __init__(self, path: Path, shown: Path, limit: int, deadline: Deadline | None,
                 count_nul: bool = True):
        self.path, self.shown = path, shown
        fh = open(path, "rb")
        try:
            self.raw = _Tap(fh, shown, deadline=deadline, hash_bytes=True)
            buffered = io.BufferedReader(self.raw, _CHUNK)
            self.gzipped = shown.name.lower().endswith(".gz") or buffered.peek(2)[:2] == \
                b"\x1f\x8b"
            inner: Any = gzip.GzipFile(fileobj=buffered, mode="rb") if self.gzipped else buffered
            self.text = _Tap(inner, shown, limit=limit, deadline=deadline, count_nul=count_nul)
            self.stream = io.BufferedReader(self.text, _CHUNK)
            self.head = self._peek_head()
        except BaseException:
            fh.close()
            raise
        self._fh = fh

    def _peek_head(self) -> bytes:
        try:
            return bytes(self.stream.peek(_HEAD_BYTES)[:_HEAD_BYTES])
        except (OSError, EOFError, zlib.error) as exc:
            if not self.gzipped:
                raise
            raise UsageError(f"{self.shown}: not a valid gzip file ({_one_line(exc)})") from None

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> _Input:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _gzip_error(inp: _Input, exc: BaseException) -> UsageError | None:
    if inp.gzipped and isinstance(exc, (OSError, EOFError, zlib.error)) and not isinstance(
            exc, PermissionError):
        return UsageError(f"{inp.shown}: not a valid gzip file ({_one_line(exc)})")
    return None


def _utf16_without_bom(head: bytes) -> str | None:
    """``utf-16-le`` / ``-be`` when every other byte of ASCII-range text is NUL."""
    head = head[: len(head) // 2 * 2]
    if len(head) < 8:
        return None
    odd, even = head[1::2], head[0::2]
    if odd.count(0) > 0.9 * len(odd) and even.count(0) < 0.1 * len(even):
        return "utf-16-le"
    if even.count(0) > 0.9 * len(even) and odd.count(0) < 0.1 * len(odd):
        return "utf-16-be"
    return None


def _cp1252_bytes(exc: UnicodeError) -> tuple[str, int]:
    """Codec error handler: bytes that are not UTF-8 read as Windows-1252 (Latin-1 for the
    five bytes Windows-1252 leaves undefined)."""
    if not isinstance(exc, UnicodeDecodeError):  # pragma: no cover - decoding only
        raise exc
    bad = exc.object[exc.start:exc.end]
    return "".join(bytes([b]).decode("cp1252", errors="ignore") or chr(b) for b in bad), exc.end


_FALLBACK_ERRORS = "automl_meta.cp1252"
codecs.register_error(_FALLBACK_ERRORS, _cp1252_bytes)


def _text_encoding(head: bytes, path: Path) -> tuple[str, str]:
    """(encoding, codec error handler) of a text file from its first bytes; refuse what is
    known not to be a text table."""
    for magic, what in _MAGIC:
        if head.startswith(magic):
            raise UsageError(f"{path}: this is {what}")
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return encoding, "strict"
    encoding = _utf16_without_bom(head[:_SNIFF_BYTES])
    if encoding:
        return encoding, "strict"
    return "utf-8", _FALLBACK_ERRORS


def _head_text(head: bytes, encoding: str, errors: str) -> str:
    """The decoded start of the file (a character cut by the end of ``head`` is left out)."""
    decoder = codecs.getincrementaldecoder("utf-8-sig" if encoding == "utf-8" else encoding)(
        errors="ignore" if errors == "strict" else errors)
    return decoder.decode(head[:len(head) - 4] if len(head) == _HEAD_BYTES else head,
                          final=len(head) < _HEAD_BYTES)


def _check_text(text: str, path: Path) -> str:
    """Refuse decoded 'text' that is mostly control characters (a binary file)."""
    head = text[:_SNIFF_BYTES]
    controls = sum(1 for ch in head if (ord(ch) < 32 and ch not in "\t\n\r\f\v")
                   or 0x7F <= ord(ch) < 0xA0 or ch == "\ufffd")
    if head and controls > max(2, 0.01 * len(head)):
        raise UsageError(f"{path}: looks like a binary file, not a text table "
                         "(expected CSV, TSV, Parquet or ARFF)")
    return text


def _refuse_nul(inp: _Input) -> None:
    """After parsing: NUL bytes in a UTF-8 / 8-bit text file are an error naming them."""
    tap = inp.text
    if not tap.count_nul or not tap.n_nul:
        return
    tap.drain()
    binary = UsageError(f"{inp.shown}: looks like a binary file, not a text table "
                        "(expected CSV, TSV, Parquet or ARFF)")
    if tap.n_nul > max(8, tap.n_bytes // 10_000):
        raise binary
    try:
        _check_text(inp.head[:_SNIFF_BYTES * 4].replace(b"\x00", b"").decode(
            "utf-8", errors="ignore"), inp.shown)
    except UsageError:
        raise binary from None
    raise UsageError(f"{inp.shown}: contains {tap.n_nul} NUL byte(s), the first on line "
                     f"{tap.lines_before_nul + 1}; a text table has none: remove them (e.g. tr "
                     "-d '\\000' < in.csv > out.csv) or export the file again")


def _file_format(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    for fmt, suffixes in (("parquet", (".parquet", ".pq")), ("arff", (".arff",)),
                          ("tsv", (".tsv", ".tab")), ("csv", (".csv", ".txt", ".data"))):
        if name.endswith(suffixes):
            return fmt
    return "csv"


_QUOTED = re.compile(r'"[^"]*"')
_SNIFF_CHARS = 16384
_SNIFF_LINES = 30


def _sniff_delimiter(text: str, default: str = ",") -> str:
    """The delimiter among ``, ; TAB |`` that splits the first lines most consistently.

    Work is bounded: the first few KB and lines only, quoted fields blanked out first (one
    linear pass), then each candidate counted per line.
    """
    sample = _QUOTED.sub('""', text[:_SNIFF_CHARS])
    lines = [line for line in sample.splitlines() if line.strip()]
    if len(text) > _SNIFF_CHARS and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut
    lines = lines[:_SNIFF_LINES]
    if not lines:
        return default
    counts = {d: lines[0].count(d) for d in ",;\t|"}
    if sum(1 for v in counts.values() if v) == 1:  # one candidate in the header: take it
        return max(counts, key=counts.get)
    best, best_score = None, (0.0, 0)
    for d in ",;\t|":
        per_line = [line.count(d) for line in lines]
        width = per_line[0] if per_line[0] else max(set(per_line), key=per_line.count)
        if not width:
            continue
        score = (sum(c == width for c in per_line) / len(per_line), width)
        if score > best_score:
            best, best_score = d, score
    if best is not None:
        return best
    return max(counts, key=counts.get) if max(counts.values()) else default


_PARSER_FIELDS = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def _header_names(text: str, sep: str) -> list[str] | None:
    """The header row's names as written (pandas renames duplicates on its own)."""
    try:
        return next(csv.reader(io.StringIO(text), delimiter=sep, skipinitialspace=True))
    except (csv.Error, StopIteration, TypeError):  # TypeError: a multi-character delimiter
        return None


def _read_delimited(path: Path, shown: Path, sep: str | None, limit: int,
                    deadline: Deadline | None) -> pd.DataFrame:
    with _Input(path, shown, limit, deadline) as inp:
        encoding, errors = _text_encoding(inp.head, shown)
        inp.text.count_nul = encoding == "utf-8"
        head = _head_text(inp.head, encoding, errors)
        if inp.text.count_nul and b"\x00" in inp.head:
            _refuse_nul(inp)
        _check_text(head, shown)
        if not head.strip() and len(inp.head) < _HEAD_BYTES:
            raise UsageError(f"{shown}: the file is empty")
        sep = sep or _sniff_delimiter(head)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                # index_col=False: a trailing delimiter on every row must not shift the columns
                df = pd.read_csv(inp.stream, sep=sep, low_memory=False, index_col=False,
                                 encoding=encoding, encoding_errors=errors,
                                 skipinitialspace=True, skip_blank_lines=True,
                                 na_values=["?", "NA", "N/A", "na", "n/a", "NaN", "nan", "null",
                                            "NULL", ""])
            _refuse_nul(inp)
            if any("does not match length of data" in str(w.message) for w in caught):
                _check_row_widths(path, shown, sep, limit, deadline)
        except UsageError:
            raise
        except pd.errors.EmptyDataError:
            _refuse_nul(inp)
            raise UsageError(f"{shown}: the file is empty") from None
        except pd.errors.ParserError as exc:
            _refuse_nul(inp)
            msg = str(exc).strip().splitlines()[-1] if str(exc).strip() else "parser error"
            m = _PARSER_FIELDS.search(msg)
            if m:
                expected, line, saw = m.groups()
                raise UsageError(f"{shown}: line {line} has {saw} fields but the header has "
                                 f"{expected} (delimiter {sep!r}); fix that line, or quote "
                                 "fields that contain the delimiter") from None
            raise UsageError(f"{shown}: cannot parse as delimited text "
                             f"({_one_line(msg)})") from None
        except UnicodeDecodeError as exc:
            raise UsageError(f"{shown}: cannot decode the file as {encoding} "
                             f"({_one_line(exc)})") from None
        except (ValueError, csv.Error) as exc:  # e.g. "field larger than field limit"
            _refuse_nul(inp)
            raise UsageError(f"{shown}: cannot parse as delimited text "
                             f"({_one_line(exc)})") from None
        except (OSError, EOFError, zlib.error) as exc:
            raise (_gzip_error(inp, exc) or exc) from None
        header = _header_names(head, sep)
        if header is not None and len(header) == df.shape[1]:
            df.columns = header  # the names as written; duplicates are renamed by read_table
        if df.shape[1] > 256:  # one block per dtype: per-column blocks make every later
            df = df.copy()  # selection on a wide table cost seconds
        df.attrs["delimiter"] = sep
        inp.raw.drain()
        df.attrs["sha256"] = inp.raw.sha256.hexdigest()
    return df


def _check_row_widths(path: Path, shown: Path, sep: str, limit: int,
                      deadline: Deadline | None) -> None:
    """Refuse rows with more (non-empty) fields than the header; a trailing delimiter is ok."""
    width = None
    with _Input(path, shown, limit, deadline, count_nul=False) as inp:
        encoding, errors = _text_encoding(inp.head, shown)
        text = io.TextIOWrapper(inp.stream, encoding="utf-8-sig" if encoding == "utf-8"
                                else encoding, errors=errors, newline="")
        try:
            reader = csv.reader(text, delimiter=sep, skipinitialspace=True)
            for row in reader:
                if width is None:
                    width = len(row) if row else None
                    continue
                if len(row) > width and any(f.strip() for f in row[width:]):
                    raise UsageError(f"{shown}: line {reader.line_num} has {len(row)} fields "
                                     f"but the header has {width} (delimiter {sep!r}); fix "
                                     "that line, or quote fields that contain the delimiter")
        except (csv.Error, TypeError, UnicodeDecodeError):
            return


def _read_arff(path: Path, shown: Path, limit: int, deadline: Deadline | None) -> pd.DataFrame:
    with _Input(path, shown, max(1, limit // _ARFF_SHARE), deadline) as inp:
        encoding, errors = _text_encoding(inp.head, shown)
        inp.text.count_nul = encoding == "utf-8"
        _check_text(_head_text(inp.head, encoding, errors), shown)
        try:
            text = io.TextIOWrapper(inp.stream, encoding="utf-8-sig" if encoding == "utf-8"
                                    else encoding, errors=errors).read()
        except UsageError as exc:
            if "too large" in str(exc):
                raise UsageError(_one_line(
                    f"{shown}: the ARFF file is too large to parse in memory here (limit "
                    f"{_human(limit // _ARFF_SHARE)} for ARFF, an eighth of the limit for "
                    f"CSV); convert it to CSV or Parquet, or raise {MAX_INPUT_ENV}")) from None
            raise
        except UnicodeDecodeError as exc:
            raise UsageError(f"{shown}: cannot decode the file as {encoding} "
                             f"({_one_line(exc)})") from None
        except (OSError, EOFError, zlib.error) as exc:
            raise (_gzip_error(inp, exc) or exc) from None
        _refuse_nul(inp)
        df = read_arff_text(text, str(shown))
        df.attrs["sha256"] = inp.raw.sha256.hexdigest()
    return df


def _read_parquet(path: Path, shown: Path, limit: int) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        meta = pf.metadata
        size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        if size > limit:
            raise _too_large(shown, size, limit, "")
        table = pf.read()
    except UsageError:
        raise
    except Exception as exc:  # pyarrow raises many types
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise UsageError(f"{shown}: cannot read as Parquet ({type(exc).__name__}: "
                         f"{_one_line(first)})") from None
    nested = [f.name for f in table.schema if pa.types.is_nested(f.type)]
    if nested:
        table = table.select([i for i, f in enumerate(table.schema)
                              if not pa.types.is_nested(f.type)])
    written = list(table.column_names)
    # names may repeat in a Parquet file; make them unique before pandas sees them
    unique = _clean_column_names(pd.Index(written))[0]
    if unique != written:
        table = table.replace_schema_metadata(None).rename_columns(unique)
    binary = [f.name for f in table.schema
              if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)
              or pa.types.is_fixed_size_binary(f.type)]
    try:
        df = table.to_pandas()
    except Exception as exc:  # unconvertible Arrow types (e.g. extension types)
        raise UsageError(f"{shown}: cannot convert the Parquet table ({type(exc).__name__}: "
                         f"{_one_line(exc)})") from None
    for c in binary:  # bytes are read as UTF-8 text; other bytes as \xNN escapes
        df[c] = df[c].map(lambda v: v.decode("utf-8", errors="backslashreplace")
                          if isinstance(v, bytes) else v).astype(object)
    for c in df.columns:  # decimal128 arrives as Python Decimal objects
        s = df[c]
        if s.dtype == object:
            first = s.dropna().head(1)
            if len(first) and isinstance(first.iloc[0], decimal.Decimal):
                df[c] = pd.to_numeric(s.map(lambda v: None if v is None else float(v)),
                                      errors="coerce")
    if len(written) == df.shape[1]:
        df.columns = written  # the names as written; read_table makes them unique again
    if nested:
        df.attrs["nested_dropped"] = nested
    return df


def read_arff_text(text: str, name: str = "<arff>") -> pd.DataFrame:
    """Parse ARFF text into a DataFrame; nominal attributes become ordered categoricals.

    The declared nominal values are kept as the categories (in declaration order), which is
    what OpenML's qualities count. Dense and sparse ARFF are both read (liac-arff). Empty
    fields (``4,,100``, as Weka files have them) are missing values.
    """
    import arff  # liac-arff, the parser openml-python uses

    text, date_formats = _arff_dates_as_strings(text)
    try:
        decoded = arff.loads(text)
    except Exception as exc:  # liac-arff raises its own hierarchy plus ValueError
        hint = ""
        if type(exc).__name__ == "BadDataFormat":
            n_attrs = len(re.findall(r"^\s*@attribute\s", text, re.IGNORECASE | re.MULTILINE))
            hint = (f"; each @data line needs {n_attrs} comma-separated values, one per "
                    "@attribute (? or an empty field for a missing value)")
        raise UsageError(f"{name}: malformed ARFF ({type(exc).__name__}: "
                         f"{_one_line(exc, 200)}){hint}") from None
    columns = [a[0] for a in decoded["attributes"]]
    try:
        df = pd.DataFrame(decoded["data"], columns=columns)
    except (ValueError, TypeError) as exc:  # pragma: no cover - liac-arff checks widths
        raise UsageError(f"{name}: malformed ARFF data ({_one_line(exc)})") from None
    for i, (_attr_name, attr_type) in enumerate(decoded["attributes"]):
        col = df.iloc[:, i]
        if isinstance(attr_type, list):
            values = [str(v) for v in attr_type]
            cats = list(dict.fromkeys(values))
            labels = [None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
                      for v in col.tolist()]
            new = pd.Categorical(labels, categories=cats)
        elif isinstance(attr_type, str) and attr_type.upper() in ("NUMERIC", "REAL", "INTEGER"):
            new = pd.to_numeric(col, errors="coerce").astype(float)
        elif i in date_formats:
            new = _parse_datetime(_stripped(col.astype(object)), date_formats[i])
        else:
            new = col.astype(object)
        df.isetitem(i, new)
    df.attrs["arff_relation"] = decoded.get("relation", "")
    return df


_ARFF_ATTRIBUTE = re.compile(
    r"""^(\s*@attribute\s+('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[^\s{]+)\s+)(.*)$""",
    re.IGNORECASE)
_JAVA_DATE = (("yyyy", "%Y"), ("yy", "%y"), ("MM", "%m"), ("dd", "%d"), ("HH", "%H"),
              ("mm", "%M"), ("ss", "%S"), ("SSS", "%f"), ("Z", "%z"), ("'T'", "T"))


def _arff_dates_as_strings(text: str) -> tuple[str, dict[int, str]]:
    """Declare ARFF ``DATE`` attributes as ``string`` (liac-arff cannot read dates); return
    the text and ``{attribute index: datetime format}`` to parse them afterwards."""
    head_end = re.search(r"^\s*@data\b", text, re.IGNORECASE | re.MULTILINE)
    if head_end is None or not re.search(r"\bdate\b", text[:head_end.start()], re.IGNORECASE):
        return text, {}
    lines = text[:head_end.start()].split("\n")
    formats: dict[int, str] = {}
    index = 0
    for k, line in enumerate(lines):
        m = _ARFF_ATTRIBUTE.match(line)
        if not m:
            continue
        kind = m.group(3).strip()
        if kind[:4].lower() == "date" and (len(kind) == 4 or kind[4].isspace()):
            java = kind[4:].strip().strip("'\"")
            fmt = "ISO8601"
            if java:
                fmt = java.replace("SSS", "\0f").replace("yyyy", "\0Y")
                for token, directive in _JAVA_DATE:
                    if token not in ("SSS", "yyyy"):
                        fmt = fmt.replace(token, directive)
                fmt = fmt.replace("\0f", "%f").replace("\0Y", "%Y")
                if re.search(r"[A-Za-z](?<!%[YymdHMSfz])", fmt.replace("T", "")):
                    fmt = "mixed"  # a Java pattern we do not translate: guess per value
            formats[index] = fmt
            lines[k] = m.group(1) + "string"
        index += 1
    return "\n".join(lines) + text[head_end.start():], formats


def _spool(src: Any, shown: Path, directory: str, limit: int,
           deadline: Deadline | None) -> Path:
    """Copy a pipe's bytes to a temporary file, at most ``limit`` bytes."""
    target = Path(directory) / "input"
    tap = _Tap(src, shown, limit=limit, deadline=deadline)
    with open(target, "wb") as out:
        buf = bytearray(_CHUNK)
        while True:
            n = tap.readinto(buf)
            if not n:
                break
            out.write(memoryview(buf)[:n])
    return target


def _regular_source(path: Path) -> str:
    """``"file"``, ``"pipe"`` (a FIFO or a pipe), or raise for what is not read as data."""
    if not path.exists():
        raise UsageError(f"{path}: no such file")
    if path.is_dir():
        raise UsageError(f"{path}: is a directory, expected a data file")
    mode = path.stat().st_mode
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISFIFO(mode):
        return "pipe"
    what = ("a character device" if stat.S_ISCHR(mode) else "a block device"
            if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "special")
    raise UsageError(f"{path}: not a regular file ({what}); pass a data file, a pipe, or - "
                     "to read standard input")


def read_table(path: str | Path, sep: str | None = None, *,
               deadline: Deadline | None = None, max_bytes: int | None = None) -> pd.DataFrame:
    """Read a CSV, TSV, Parquet or ARFF file (optionally gzipped) into a DataFrame.

    Parameters
    ----------
    path : str or Path
        The file. The format is chosen by its name (``.csv``, ``.tsv``, ``.parquet``,
        ``.arff``, each optionally ``.gz``); unknown names are read as delimited text (a
        Parquet file is recognised by its content whatever its name, gzip too). A named
        pipe (``<(zcat x.csv.gz)``) is read like a file; ``"-"`` reads standard input.
        Devices (``/dev/zero``) and sockets are refused.
    sep : str, optional
        Delimiter for delimited text; detected when omitted.
    deadline : Deadline, optional
        Reading fails with a :class:`UsageError` once the deadline's budget is spent.
    max_bytes : int, optional
        The most decompressed bytes read (default :func:`max_input_bytes`); a larger input
        is a :class:`UsageError` saying the size seen and the limit.

    The file is read and decompressed once, as a stream; its SHA-256 is computed on the
    way (``df.attrs["sha256"]``). Column names are stripped of surrounding whitespace;
    empty names become ``Unnamed: i`` and repeated names get a suffix (``x``, ``x.1``);
    ``df.attrs["duplicate_columns"]`` maps each renamed column to the name written in the
    file.

    Raises
    ------
    UsageError
        When the file is missing, unreadable, empty, malformed, too large, or the deadline
        passes.
    """
    stdin = str(path) == "-"
    path = Path(path)
    shown = Path("<stdin>") if stdin else path
    limit = max_input_bytes() if max_bytes is None else max_bytes
    try:
        kind = "pipe" if stdin else _regular_source(path)
        with tempfile.TemporaryDirectory(prefix="automl-meta-input-") as spool_dir:
            if kind == "pipe":  # read once into a file: Parquet seeks, errors re-read lines
                if stdin:
                    source = _spool(sys.stdin.buffer, shown, spool_dir, limit, deadline)
                else:
                    with open(path, "rb") as fh:
                        source = _spool(fh, shown, spool_dir, limit, deadline)
            else:
                source = path
            df = _read_source(source, shown, sep, limit, deadline)
    except PermissionError:
        raise UsageError(f"{shown}: permission denied") from None
    except MemoryError:
        raise UsageError(_one_line(
            f"{shown}: not enough memory to read the file; use a sample of the rows, or a "
            "machine with more memory")) from None
    except OSError as exc:
        raise UsageError(f"{shown}: cannot read the file ({_one_line(exc)})") from None
    if df.shape[1] == 0:
        raise UsageError(f"{shown}: no columns found")
    if df.shape[0] == 0:
        raise UsageError(f"{shown}: the file has a header but no data rows")
    attrs = dict(df.attrs)
    names, duplicates = _clean_column_names(df.columns)
    df.columns = names
    df.attrs.update(attrs)
    if duplicates:
        df.attrs["duplicate_columns"] = duplicates
    if deadline is not None:
        deadline.check(str(shown))
    return df


def _read_source(path: Path, shown: Path, sep: str | None, limit: int,
                 deadline: Deadline | None) -> pd.DataFrame:
    fmt = _file_format(shown)
    if fmt != "parquet":
        with open(path, "rb") as fh:
            if fh.read(4) == b"PAR1":
                fmt = "parquet"
    if fmt == "parquet":
        df = _read_parquet(path, shown, limit)
        df.attrs["sha256"] = file_sha256(path)
        return df
    if path.stat().st_size > limit and not (
            shown.name.lower().endswith(".gz") or _starts_with(path, b"\x1f\x8b")):
        raise _too_large(shown, path.stat().st_size, limit, "")
    isize = _gzip_size(path)
    if isize is not None and isize > limit and _gzip_exceeds(path, limit):
        raise _too_large(shown, limit, limit)
    if fmt == "arff":
        return _read_arff(path, shown, limit, deadline)
    return _read_delimited(path, shown, "\t" if fmt == "tsv" and sep is None else sep,
                           limit, deadline)


def _gzip_exceeds(path: Path, limit: int) -> bool:
    """Whether a gzip file inflates to more than ``limit`` bytes: decompressed and counted,
    nothing kept (a file whose trailer declares a large size, before it is parsed).
    A damaged file answers False: the reading that follows names the damage."""
    n = 0
    try:
        with gzip.open(path, "rb") as fh:
            while True:
                chunk = fh.read(_CHUNK)
                if not chunk:
                    return False
                n += len(chunk)
                if n > limit:
                    return True
    except (OSError, EOFError, zlib.error):
        return False


def _starts_with(path: Path, magic: bytes) -> bool:
    with open(path, "rb") as fh:
        return fh.read(len(magic)) == magic


def _gzip_size(path: Path) -> int | None:
    """The decompressed size a one-member gzip file declares (its last 4 bytes, modulo
    2**32: a lower bound at best), or None when the file is not gzip."""
    if not _starts_with(path, b"\x1f\x8b"):
        return None
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        if fh.tell() < 18:
            return None
        fh.seek(-4, os.SEEK_END)
        return int.from_bytes(fh.read(4), "little")


def _clean_column_names(columns: pd.Index) -> tuple[list[str], dict[str, str]]:
    """Strip names, name empty ones ``Unnamed: i`` and make repeated names unique.

    Returns the names and ``{renamed: name as written}`` for the renamed duplicates.
    """
    stripped = []
    for i, c in enumerate(columns):
        name = re.sub(r"[\r\n\t]+", " ", str(c)).strip()
        stripped.append(name if name else f"Unnamed: {i}")
    taken = set(stripped)
    names: list[str] = []
    used: set[str] = set()
    duplicates: dict[str, str] = {}
    for name in stripped:
        if name in used:
            k = 1
            while f"{name}.{k}" in taken or f"{name}.{k}" in used:
                k += 1
            duplicates[f"{name}.{k}"] = name
            name = f"{name}.{k}"
        used.add(name)
        names.append(name)
    return names, duplicates


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------------------- typing

def _stripped(s: pd.Series) -> pd.Series:
    """An object Series: strings stripped (blank ones missing), missing values as None."""
    if _all_strings(s):  # strip each distinct value once
        codes, uniques = pd.factorize(s, use_na_sentinel=True)
        stripped = np.array([u.strip() or None for u in uniques] + [None], dtype=object)
        return pd.Series(stripped[codes], index=s.index, dtype=object, name=s.name)
    arr = s.to_numpy(dtype=object)
    out = np.empty(len(arr), dtype=object)
    for i, v in enumerate(arr):
        if isinstance(v, str):
            v = v.strip()
            out[i] = v if v else None
        else:
            out[i] = None if _is_missing(v) else v
    return pd.Series(out, index=s.index, dtype=object, name=s.name)


def _parse_datetime(strings: pd.Series, fmt: str) -> pd.Series:
    """Parse stripped strings with ``fmt`` (``"mixed"``: each on its own) → naive datetimes.

    Offsets are converted to UTC; values that are not strings or datetimes are missing.
    """
    if _all_strings(strings) and len(strings) > 1:  # each distinct string parsed once
        return _per_distinct(strings, lambda u: _parse_datetime_values(u, fmt).to_numpy(
            dtype="datetime64[us]"), np.datetime64("NaT"), "datetime64[us]")
    return _parse_datetime_values(strings, fmt)


def _parse_datetime_values(strings: pd.Series, fmt: str) -> pd.Series:
    """Parse stripped strings with ``fmt`` (``"mixed"``: each on its own) → naive datetimes.

    Offsets are converted to UTC; values that are not strings or datetimes are missing.
    """
    values = strings if _all_strings(strings) else strings.map(
        lambda v: v if isinstance(v, (str, pd.Timestamp)) else None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            parsed = pd.to_datetime(values, errors="coerce", format=fmt, utc=True)
        except (ValueError, TypeError, OverflowError):
            try:
                parsed = pd.to_datetime(values, errors="coerce", format="mixed", utc=True)
            except (ValueError, TypeError, OverflowError):
                return pd.Series(pd.NaT, index=strings.index, dtype="datetime64[us]")
    if not pd.api.types.is_datetime64_any_dtype(parsed.dtype):  # pragma: no cover
        return pd.Series(pd.NaT, index=strings.index, dtype="datetime64[us]")
    return parsed.dt.tz_convert(None)

def _all_strings(s: pd.Series) -> bool:
    """Every present value is a ``str`` (the vectorised ``.str`` methods apply)."""
    if isinstance(s.dtype, pd.StringDtype):
        return True
    return s.dtype == object and pd.api.types.infer_dtype(s, skipna=True) in ("string",
                                                                              "empty")


def _is_missing(v: Any) -> bool:
    if v is None or v is pd.NA or v is pd.NaT:
        return True
    if isinstance(v, (float, np.floating)):
        return not bool(np.isfinite(v))  # an infinity is as good as missing here
    if isinstance(v, np.datetime64):
        return bool(np.isnat(v))
    return False


def _per_distinct(strings: pd.Series, fn: Any, fill: Any, dtype: Any) -> pd.Series:
    """``fn`` (vectorised, on an object Series) applied to each distinct string once."""
    codes, uniques = pd.factorize(strings, use_na_sentinel=True)
    mapped = np.asarray(fn(pd.Series(uniques, dtype=object)), dtype=dtype)
    out = np.append(mapped, np.array([fill], dtype=dtype))[codes]
    return pd.Series(out, index=strings.index, name=strings.name)
