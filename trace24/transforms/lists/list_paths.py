"""Out layer: where each delivered file sits, from the data that names it.

What belongs here: the relative path of a community's list (``<区>/<街道>/<社区编码>_<社区名称>.csv``),
of a district's unplaced list and sheets (``<区>/<file>``), every part one safe name whatever a
feed delivered (a ``/`` or ``..`` in a name makes no folder), and the run's ``list_files`` table
that maps each community to its file. What does not: writing the files (``community_lists.py``,
``csv_out.py``), the sheets' own names (``response_sheets.py``, ``risk_area_sheets.py``).
"""

from __future__ import annotations

import hashlib
import logging
import re

import duckdb
import pyarrow as pa

from trace24.transforms.database import temp_table

log = logging.getLogger(__name__)

# Linux and Windows allow 255 bytes per file name; a part keeps room for the code, a suffix
# and the extension. Chinese characters are 3 bytes each in UTF-8.
PART_BYTES = 150
FALLBACK = "unnamed"


def _cleaned(text: str | None, max_bytes: int) -> str:
    cleaned = re.sub(r"_+", "_", re.sub(r"[^\w\-]", "_", text or "", flags=re.UNICODE)).strip("_")
    while len(cleaned.encode("utf-8")) > max_bytes:
        cleaned = cleaned[:-1]
    return cleaned


def path_part(text: str | None, max_bytes: int = PART_BYTES) -> str:
    """One folder or file name from data: letters, digits (any script), ``_`` and ``-`` kept, every
    other character (separators, dots, spaces, controls) one ``_``; never empty, never a folder."""
    return _cleaned(text, max_bytes) or FALLBACK


def is_plain_file_name(name: str, suffixes: tuple[str, ...] = (".csv",)) -> bool:
    """A file name that is one safe name and one of ``suffixes`` (no folder, no dot file)."""
    return any(name.endswith(s) and path_part(name.removesuffix(s)) == name.removesuffix(s) for s in suffixes)


def workbook_file(list_file: str) -> str:
    """The workbook beside a list: the same path, ``.xlsx``."""
    return list_file.removesuffix(".csv") + ".xlsx"


def district_file(district: str | None, file_name: str) -> str:
    """``<区>/<file>``: a district's unplaced list or sheet (``file_name`` comes from the layout)."""
    return f"{path_part(district)}/{file_name}"


def community_file(district: str | None, street: str | None, community_code: str, community_name: str | None,
                   unknown_street: str) -> str:
    """``<区>/<街道>/<社区编码>_<社区名称>.csv``; a community with no street in the register goes
    under ``unknown_street``, one with no name (or none a file name can hold) is ``<社区编码>.csv``."""
    code, name = path_part(community_code), _cleaned(community_name, PART_BYTES)
    name = f"{code}_{name}" if name else code
    return f"{path_part(district)}/{path_part(street or unknown_street)}/{name}.csv"


def list_file_rows(communities: list[tuple], unplaced_file: str, unknown_street: str) -> list[tuple]:
    """Each (district, street, community code, community name) with its file. Two communities (or
    districts) whose names differ only in characters a file name cannot hold would share a file:
    a name that needed no change keeps the plain file, the other (or the later in sorted order) gets
    a short hash of what was delivered, so nothing is merged and the choice never depends on order."""
    def order(key: tuple) -> tuple:
        changed = any(v is not None and path_part(v) != v for v in key)
        return changed, tuple("" if v is None else v for v in key)

    owner_of: dict[str, tuple] = {}
    rows = []
    for key in sorted(communities, key=order):
        district, street, code, name = key
        owner = (district,) if code is None else key   # a district's unplaced persons share one file
        path = (district_file(district, unplaced_file) if code is None
                else community_file(district, street, code, name, unknown_street))
        if owner_of.setdefault(path, owner) != owner:
            digest = hashlib.sha256("\x1f".join("" if v is None else v for v in owner).encode()).hexdigest()[:8]
            stem, ext = path.rsplit(".", 1)
            log.warning("two delivered names make the list file %s; this one is %s_%s.%s", path, stem, digest, ext)
            path = f"{stem}_{digest}.{ext}"
            owner_of.setdefault(path, owner)
        rows.append((*key, path))
    return rows


def district_files(districts: list[str], file_name: str) -> dict[str, str]:
    """Each district's ``<区>/<file_name>`` (a sheet), two districts never on one file."""
    rows = list_file_rows([(d, None, None, None) for d in set(districts)], file_name, FALLBACK)
    return {row[0]: row[-1] for row in rows}


def street_files(streets: list[tuple[str, str | None]], file_name: str, unknown_street: str) -> dict[tuple, str]:
    """Each (district, street)'s ``<区>/<街道>/<file_name>``, two streets never on one file."""
    owner_of: dict[str, tuple] = {}
    paths = {}
    for key in sorted(set(streets), key=lambda k: (any(v is not None and path_part(v) != v for v in k),
                                                    tuple(v or "" for v in k))):
        district, street = key
        path = f"{path_part(district)}/{path_part(street or unknown_street)}/{file_name}"
        if owner_of.setdefault(path, key) != key:
            digest = hashlib.sha256("\x1f".join(v or "" for v in key).encode()).hexdigest()[:8]
            path = path.removesuffix(".csv") + f"_{digest}.csv"
        paths[key] = path
    return paths


def build_list_files(con: duckdb.DuckDBPyConnection, unplaced_file: str, unknown_street: str) -> int:
    """``list_files`` (temporary): the file of every community and district on this run's lists
    (``current_list_rows``); returns how many files."""
    communities = con.execute("SELECT DISTINCT district, street, community_code, community_name "
                              "FROM current_list_rows").fetchall()
    rows = list_file_rows(communities, unplaced_file, unknown_street)
    columns = ("district", "street", "community_code", "community_name", "list_file")
    temp_table(con, "list_files", pa.table({c: pa.array([r[i] for r in rows], pa.string())
                                            for i, c in enumerate(columns)}))
    return len({r[-1] for r in rows})
