"""Landing: find the delivered files and read them as text, row by row, losing nothing.

What belongs here: the layout of the landing folder, format and encoding detection, and readers
that stream a file as Arrow batches of text cells with their 1-based data-row numbers. What does
not: column meaning (``schemas/``), typing and checks (``normalise.py``, ``staged.py``).

Parquet is not read here: DuckDB scans it directly (``raw.py``), because it is the big feed.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import hashlib
import io
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

FORMATS = {".csv": "csv", ".xlsx": "xlsx", ".parquet": "parquet"}
BATCH_ROWS = 100_000
ROW_NUMBER = "source_row_number"
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class UnreadableFile(Exception):
    """The file cannot be read at all; the message says why (the file is quarantined whole)."""


@dataclass(frozen=True)
class LandedFile:
    delivery_date: dt.date
    agency: str
    feed: str
    path: Path
    relative_path: str  # to the landing folder, with '/' separators: the file's name in every table
    format: str


@dataclass
class MalformedRow:
    row_number: int
    fields: list[str]
    expected: int


def delivery_days(landing: Path, through: dt.date | None = None) -> list[tuple[dt.date, Path]]:
    """The delivery-day folders (YYYY-MM-DD), oldest first, up to ``through`` when given (a run as of
    a past time sees only what had been delivered by then); other entries are ignored."""
    days = []
    for entry in sorted(landing.iterdir()):
        if entry.is_dir() and _DAY.match(entry.name):
            try:
                day = dt.date.fromisoformat(entry.name)
            except ValueError:
                continue
            if through is None or day <= through:
                days.append((day, entry))
    return days


def discover(landing: Path, feeds_by_agency: dict[str, list[str]],
             through: dt.date | None = None) -> tuple[list[LandedFile], list[str]]:
    """Every landed file that belongs to a known feed, in a fixed order, and what is not recognised."""
    files, unknown = [], []
    for day, folder in delivery_days(landing, through):
        for agency in sorted(p.name for p in folder.iterdir() if p.is_dir()):
            feeds = feeds_by_agency.get(agency)
            for path in sorted((folder / agency).iterdir()):
                rel = path.relative_to(landing).as_posix()
                fmt = FORMATS.get(path.suffix.lower())
                feed = next((f for f in sorted(feeds or (), key=len, reverse=True) if path.name.startswith(f)), None)
                if not path.is_file() or fmt is None or feed is None:
                    unknown.append(rel)
                    continue
                files.append(LandedFile(day, agency, feed, path, rel, fmt))
    return files, unknown


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def detect_encoding(path: Path) -> str:
    """'utf-8-sig' (BOM), 'utf-8', or 'gb18030' (a superset of GBK) for a text file."""
    with path.open("rb") as handle:
        head = handle.read(3)
        if head == codecs.BOM_UTF8:
            return "utf-8-sig"
        handle.seek(0)
        decoder = codecs.getincrementaldecoder("utf-8")()
        try:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
            return "utf-8"
        except UnicodeDecodeError:
            pass
        handle.seek(0)
        decoder = codecs.getincrementaldecoder("gb18030")()
        try:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            raise UnreadableFile(f"not UTF-8 and not GBK/GB18030 text (byte {exc.start} of a chunk)") from exc
        return "gb18030"


def clean_header(header: str) -> str:
    return unicodedata.normalize("NFKC", str(header or "")).strip()


def _batch(headers: list[str], kept: list[int], rows: list[list], numbers: list[int]) -> pa.RecordBatch:
    """The kept columns of the rows as text (a workbook's cells are turned into text only here,
    for the columns that are read), with the rows' numbers."""
    columns = [pa.array([_text(row[i]) for row in rows], pa.string()) for i in kept]
    columns.append(pa.array(numbers, pa.int64()))
    return pa.RecordBatch.from_arrays(columns, names=[*(headers[i] for i in kept), ROW_NUMBER])


def _text(value) -> str:
    # Most cells are text already (a CSV's all; calamine gives '' for an empty one): no call.
    return value if value.__class__ is str else _cell_text(value)


def _is_blank(cells) -> bool:
    """No cell holds anything but spaces (a workbook's empty cell is '' or None; a 0 is a value)."""
    if cells.count("") == len(cells):
        return True
    for value in cells:
        if value.__class__ is str:
            if value.strip():
                return False
        elif value is not None:
            return False
    return True


class TextTableReader:
    """Streams a CSV or XLSX file: ``headers``, then ``batches()``; ``malformed`` fills as it goes."""

    def __init__(self, landed: LandedFile):
        self.landed = landed
        self.encoding: str | None = None
        self.headers: list[str] = []
        self.malformed: list[MalformedRow] = []
        self._rows: Iterator[list[str]]
        if landed.format == "csv":
            self._rows = self._csv_rows()
        elif landed.format == "xlsx":
            self._rows = self._xlsx_rows()
        else:
            raise ValueError(f"{landed.format} is not a text table")
        first = next(self._rows, None)
        self.headers = [clean_header(_text(h)) for h in first] if first else []
        duplicated = sorted({h for h in self.headers if self.headers.count(h) > 1})
        if duplicated:
            raise UnreadableFile(f"the header repeats columns {duplicated}")

    def _csv_rows(self) -> Iterator[list[str]]:
        self.encoding = detect_encoding(self.landed.path)
        handle = io.TextIOWrapper(self.landed.path.open("rb"), encoding=self.encoding, newline="")
        with handle:
            try:
                yield from csv.reader(handle, strict=False)
            except csv.Error as exc:
                raise UnreadableFile(f"CSV cannot be parsed: {exc}") from exc

    def _xlsx_rows(self) -> Iterator[list]:
        """The sheet's rows as calamine gives them (str, float, datetime...): ``_batch`` makes text."""
        # calamine (Rust) reads a sheet ten times faster than openpyxl's read-only mode: an office's
        # returned list is a workbook, and a city's offices return hundreds of them a day.
        from python_calamine import CalamineError, CalamineWorkbook

        self.encoding = "xlsx"
        try:
            book = CalamineWorkbook.from_path(str(self.landed.path))
            sheet = book.get_sheet_by_index(0)
        except (CalamineError, OSError, ValueError) as exc:
            raise UnreadableFile(f"not a readable .xlsx workbook: {exc.__class__.__name__}: {exc}") from exc
        try:
            yield from sheet.iter_rows()
        finally:
            book.close()

    def close(self) -> None:
        """Release the file when the rows are read some other way."""
        self._rows.close()

    def batches(self, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        """Record batches of the rows' cells as text, with their row numbers; only ``columns``
        (headers) when given: a returned list has thirty columns, of which five are read."""
        width = len(self.headers)
        kept = [i for i, h in enumerate(self.headers) if columns is None or h in columns]
        rows: list[list[str]] = []
        numbers: list[int] = []
        number = 0
        for row in self._rows:
            if _is_blank(row):
                continue  # a blank line carries no record
            number += 1
            if self.landed.format == "xlsx" and len(row) > width and _is_blank(row[width:]):
                row = row[:width]  # spreadsheets pad rows with empty cells
            if len(row) != width:
                self.malformed.append(MalformedRow(number, [_text(cell) for cell in row], width))
                continue
            rows.append(row)
            numbers.append(number)
            if len(rows) >= BATCH_ROWS:
                yield _batch(self.headers, kept, rows, numbers)
                rows, numbers = [], []
        if rows:
            yield _batch(self.headers, kept, rows, numbers)


def _cell_text(value: object) -> str:
    """A spreadsheet cell as the text a person would read in it."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)
