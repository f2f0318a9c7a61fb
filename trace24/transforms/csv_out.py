"""Out stage, files: CSV that opens safely and identically in Excel, written all-or-nothing.

What belongs here: cell escaping against formula injection, the encoding Excel reads (UTF-8 with a
byte-order mark) and the write-then-rename that leaves an old file intact when a
run fails. What does not: which rows go in a file (the stage that builds them), where a file sits
(``lists/list_paths.py``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from pathlib import Path

# A cell starting with one of these is a formula to Excel (and to LibreOffice and Google Sheets).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


def excel_safe(value: object) -> str:
    """The text of a cell; one that would start a formula gets a leading apostrophe."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


FORMULA_START = list(_FORMULA_START)


def csv_line_sql(cells: str) -> str:
    """SQL for the CSV line (without its terminator) that ``write_csv`` writes for a VARCHAR[]
    expression: each cell made ``excel_safe``, then quoted as ``csv.writer`` quotes (a cell holding a
    comma, a quote or a line break). Done in the database: fetching a city's lists as Python lists
    cost more than writing them. Needs the parameter ``$formula_start`` (``FORMULA_START``)."""
    safe = ("CASE WHEN cell IS NULL THEN '' WHEN list_contains($formula_start, left(cell, 1)) "
            "THEN chr(39) || cell ELSE cell END")
    quoted = ("CASE WHEN regexp_matches(cell, '[,\"\\r\\n]') "
              "THEN '\"' || replace(cell, '\"', '\"\"') || '\"' ELSE cell END")
    return (f"array_to_string(list_transform(list_transform({cells}, lambda cell: {safe}), "
            f"lambda cell: {quoted}), ',')")


@contextmanager
def _csv_file(path: Path, header: Sequence[str]):
    """The partial file beside ``path``, header written (UTF-8 with BOM, CRLF), as a csv writer and
    its handle; renamed over ``path`` only when the block ends without an error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w", newline="", encoding="utf-8-sig") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow([excel_safe(h) for h in header])
        yield writer, handle
    os.replace(partial, path)


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> int:
    """Write rows atomically (temp file, then rename); returns the number of rows written."""
    count = 0
    with _csv_file(path, header) as (writer, _):
        for row in rows:
            writer.writerow([excel_safe(v) for v in row])
            count += 1
    return count


def write_csv_text(path: Path, header: Sequence[str], body: str) -> str:
    """``write_csv`` for a body already formatted: ``csv_line_sql`` lines, each ended by CRLF (a
    whole file's rows joined in the database). Returns the SHA-256 of the bytes written."""
    head = io.StringIO()
    csv.writer(head, lineterminator="\r\n").writerow([excel_safe(h) for h in header])
    data = ("\ufeff" + head.getvalue() + body).encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)
    return hashlib.sha256(data).hexdigest()
