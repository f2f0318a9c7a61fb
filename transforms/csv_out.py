"""Out stage, files: CSV that opens safely and identically in Excel, written all-or-nothing.

What belongs here: cell escaping against formula injection, the encoding Excel reads (UTF-8 with a
byte-order mark), safe file names, and the write-then-rename that leaves an old file intact when a
run fails. What does not: which rows go in a file (the stage that builds them).
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

# A cell starting with one of these is a formula to Excel (and to LibreOffice and Google Sheets).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


def excel_safe(value: object) -> str:
    """The text of a cell; one that would start a formula gets a leading apostrophe."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def safe_file_name(name: str) -> str:
    """A file name from data: no folders, no traversal, nothing a file system or Excel trips on."""
    cleaned = re.sub(r"[^\w\-.]", "_", name, flags=re.UNICODE).strip("._")
    return cleaned[:120] or "unnamed"


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> int:
    """Write rows atomically (temp file, then rename); returns the number of rows written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    count = 0
    with open(partial, "w", newline="", encoding="utf-8-sig") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow([excel_safe(h) for h in header])
        for row in rows:
            writer.writerow([excel_safe(v) for v in row])
            count += 1
    os.replace(partial, path)
    return count
