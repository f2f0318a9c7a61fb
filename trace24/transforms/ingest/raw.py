"""Raw layer: one landed file kept as delivered, plus lineage, and read back as text cells.

What belongs here: choosing the column map whose headers a file carries, renaming source headers
to canonical columns, and keeping every cell as delivered with delivery day, file, row number and
load id. A row whose field count is wrong cannot be placed in columns; it is returned to the caller
to be quarantined. What does not: any change to a value (that is ``staged.py``).

Text files (CSV, XLSX) are parsed row by row, so their cells are written to ``raw_<feed>``.
A Parquet delivery is already typed, columnar and immutable: it is archived whole under the
store's ``<db>_raw/`` folder (content-hashed in ``load_audit``) and staging scans the archived
file directly. Copying tens of millions of cells into a second table would double the cost of
the biggest feed and add nothing the archived file does not hold.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from trace24.schemas.contracts import ColumnMap, FeedContract, Schemas
from trace24.transforms import normalise
from trace24.transforms.database import quote, raw_table
from trace24.transforms.ingest.landing import (
    ROW_NUMBER,
    LandedFile,
    MalformedRow,
    TextTableReader,
    UnreadableFile,
    clean_header,
)


@dataclass
class RawLoad:
    column_map: ColumnMap
    encoding: str
    rows_in_raw: int
    source: str  # a query over the load's raw cells (canonical names, lineage), for staging
    source_params: dict = field(default_factory=dict)
    malformed: list[MalformedRow] = field(default_factory=list)
    unmapped_columns: list[str] = field(default_factory=list)
    typed_columns: frozenset[str] = frozenset()  # cells that already have their staged type


def choose_column_map(schemas: Schemas, feed: str, headers: list[str]) -> ColumnMap:
    """The map of ``feed`` that covers the file's headers best; every required column must be there."""
    present = set(headers)
    contract = schemas.feeds[feed]
    best, best_score, complaints = None, -1, []
    for candidate in schemas.maps_for(feed):
        mapped = {column for header, column in candidate.columns.items() if header in present}
        missing = [h for h, c in candidate.columns.items() if c not in mapped and contract.field(c).required]
        if missing:
            complaints.append(f"{candidate.name} lacks {missing}")
            continue
        if len(mapped) > best_score:
            best, best_score = candidate, len(mapped)
    if best is None:
        raise UnreadableFile(
            "its headers match no column map of feed "
            f"{feed!r} ({'; '.join(complaints)}); add a map under schemas/column_maps/"
        )
    return best


def _select_cells(contract: FeedContract, column_map: ColumnMap, headers: list[str], source: str,
                  row_number_sql: str, cell_sql) -> str:
    """SELECT lineage and the canonical text columns, in contract order, from a source relation."""
    by_column = {column: header for header, column in column_map.columns.items() if header in headers}
    cells = [
        f"{cell_sql(quote(by_column[f.name])) if f.name in by_column else 'CAST(NULL AS VARCHAR)'} AS {quote(f.name)}"
        for f in contract.fields
    ]
    return (
        f"SELECT CAST($load_id AS INTEGER) AS load_id, CAST($delivery_date AS DATE) AS delivery_date, "
        f"CAST($source_file AS VARCHAR) AS source_file, CAST({row_number_sql} AS BIGINT) AS source_row_number, "
        f"CAST($column_map AS VARCHAR) AS column_map, {', '.join(cells)} FROM {source}"
    )


def _params(landed: LandedFile, load_id: int, column_map: ColumnMap) -> dict:
    return {"load_id": load_id, "delivery_date": landed.delivery_date, "source_file": landed.relative_path,
            "column_map": column_map.name}


def raw_loads_source(feed: str) -> str:
    """The staging source of text loads: their rows in ``raw_<feed>`` (params: ``raw_loads_params``)."""
    return (f"SELECT * FROM {raw_table(feed)} "
            "WHERE load_id BETWEEN $first_load AND $last_load AND list_contains($load_ids, load_id)")


def raw_loads_params(load_ids: list[int]) -> dict:
    # The range lets DuckDB skip the raw table's row groups of other loads; the list picks exactly.
    return {"load_ids": load_ids, "first_load": min(load_ids), "last_load": max(load_ids)}


# A text file this small is read in Python and its rows inserted with the rest of its batch: one
# statement for a batch's files, where DuckDB's own CSV reader is one statement (~3 ms) per file.
PYTHON_READ_BYTES = 1 << 20


def load_text_table(con, schemas: Schemas, landed: LandedFile, load_id: int,
                    deferred: list[pa.RecordBatch] | None = None, reader: TextTableReader | None = None) -> RawLoad:
    """Read a CSV or XLSX file into ``raw_<feed>``. With ``deferred``, a small file's rows are
    appended to it instead, as record batches of the raw table's columns, for ``insert_deferred``.
    ``reader``: the file already opened (a workbook parsed ahead, on another thread)."""
    reader = reader or TextTableReader(landed)
    contract = schemas.feeds[landed.feed]
    table = raw_table(landed.feed)
    source, source_params = raw_loads_source(landed.feed), raw_loads_params([load_id])
    if not reader.headers:
        return RawLoad(schemas.maps_for(landed.feed)[0], reader.encoding or "", 0, source, source_params)
    column_map = choose_column_map(schemas, landed.feed, reader.headers)
    defer = deferred is not None and landed.path.stat().st_size <= PYTHON_READ_BYTES
    rows = None
    if landed.format == "csv" and reader.encoding in ("utf-8", "utf-8-sig") and not defer:
        rows = _load_utf8_csv(con, contract, column_map, landed, load_id, reader.headers)
    if rows is None:
        sql = f"INSERT INTO {table} " + _select_cells(
            contract, column_map, reader.headers, "batch", quote(ROW_NUMBER), lambda c: c)
        params = _params(landed, load_id, column_map)
        rows, read = 0, []
        for batch in reader.batches(columns=[h for h in reader.headers if h in column_map.columns]):
            if defer:
                read.append(_raw_batch(contract, column_map, landed, load_id, batch))
            else:
                con.register("batch", batch)
                try:
                    con.execute(sql, params)
                finally:
                    con.unregister("batch")
            rows += batch.num_rows
        if defer:
            deferred.extend(read)   # only a file read to its end: an unreadable one leaves nothing
    reader.close()
    return RawLoad(
        column_map=column_map, encoding=reader.encoding or "", rows_in_raw=rows, source=source,
        source_params=source_params, malformed=reader.malformed,
        unmapped_columns=[h for h in reader.headers if h not in column_map.columns],
    )


def _raw_batch(contract: FeedContract, column_map: ColumnMap, landed: LandedFile, load_id: int,
               batch: pa.RecordBatch) -> pa.RecordBatch:
    """A reader's batch as rows of ``raw_<feed>``: lineage, then the contract's columns (NULL where
    the file has none), as ``_select_cells`` makes them in SQL."""
    size = batch.num_rows
    cells = {column_map.columns[h]: batch.column(h) for h in batch.schema.names if h in column_map.columns}
    arrays = [pa.array([load_id] * size, pa.int32()), pa.array([landed.delivery_date] * size, pa.date32()),
              pa.array([landed.relative_path] * size, pa.string()), batch.column(ROW_NUMBER),
              pa.array([column_map.name] * size, pa.string())]
    arrays += [cells.get(f.name, pa.nulls(size, pa.string())) for f in contract.fields]
    names = ["load_id", "delivery_date", "source_file", "source_row_number", "column_map",
             *(f.name for f in contract.fields)]
    return pa.RecordBatch.from_arrays(arrays, names=names)


def insert_deferred(con, contract: FeedContract, deferred: list[pa.RecordBatch]) -> None:
    """The rows ``load_text_table`` deferred, into ``raw_<feed>`` with one statement."""
    if not deferred:
        return
    con.register("deferred_rows", pa.Table.from_batches(deferred))
    try:
        con.execute(f"INSERT INTO {raw_table(contract.feed)} BY NAME SELECT * FROM deferred_rows")
    finally:
        con.unregister("deferred_rows")


def _load_utf8_csv(con, contract: FeedContract, column_map: ColumnMap, landed: LandedFile, load_id: int,
                   headers: list[str]) -> int | None:
    """DuckDB's own CSV reader for a UTF-8 file: parallel, no row through Python.

    Row numbers come from the scan order (DuckDB keeps insertion order), so they are right only if
    no line was rejected; when one was, the rows are taken back and None sends the file to the
    Python reader, which numbers every record and keeps the malformed lines.
    """
    names = [f"c{i}" for i in range(len(headers))]
    by_header = dict(zip(headers, names, strict=True))
    scan = (
        "read_csv($path, header = true, auto_detect = false, columns = $columns, delim = ',', quote = '\"', "
        "escape = '\"', strict_mode = true, null_padding = false, store_rejects = true, "
        "rejects_table = 't24_csv_rejects', rejects_scan = 't24_csv_reject_scans')"
    )
    sql = f"INSERT INTO {raw_table(contract.feed)} " + _select_cells(
        contract, ColumnMap(column_map.name, column_map.feed, column_map.source,
                            {by_header[h]: c for h, c in column_map.columns.items() if h in by_header},
                            column_map.time_formats),
        names, f"(SELECT row_number() OVER () AS line_order, * FROM {scan})", "line_order",
        lambda c: f"coalesce({c}, '')",  # as delivered: an empty cell is '', as the Python reader gives it
    )
    params = {**_params(landed, load_id, column_map), "path": str(landed.path),
              "columns": {name: "VARCHAR" for name in names}}
    try:
        inserted = con.execute(sql, params).fetchall()[0][0]
        rejected = con.execute("SELECT count(*) FROM t24_csv_rejects").fetchall()[0][0]
    except duckdb.Error:
        rejected = -1  # anything DuckDB cannot parse, the Python reader reports row by row
    if rejected:
        con.execute(f"DELETE FROM {raw_table(contract.feed)} WHERE load_id = $1", [load_id])
        return None
    return inserted


def discard_load(con, contract: FeedContract, load_id: int) -> None:
    """Take back the rows a text file put into ``raw_<feed>`` before it turned out unreadable."""
    con.execute(f"DELETE FROM {raw_table(contract.feed)} WHERE load_id = $1", [load_id])


KEPT_TYPED = ("timestamp", "date")


def archive_path(archive_dir: Path, landed: LandedFile) -> Path:
    return archive_dir / landed.relative_path


def load_parquet(con, schemas: Schemas, landed: LandedFile, load_id: int, archive_dir: Path) -> RawLoad:
    """Archive the delivered Parquet file; staging scans the archive: no row passes through Python."""
    contract = schemas.feeds[landed.feed]
    try:
        described = con.execute("DESCRIBE SELECT * FROM read_parquet($path)", {"path": str(landed.path)}).fetchall()
        rows = con.execute("SELECT sum(num_rows) FROM parquet_file_metadata($path)",
                           {"path": str(landed.path)}).fetchone()[0] or 0
    except duckdb.Error as exc:
        raise UnreadableFile(f"not a readable Parquet file: {exc}") from exc
    actual = {clean_header(name): name for name, *_ in described}
    column_map = choose_column_map(schemas, landed.feed, list(actual))
    # Parquet columns keep their physical names; select them by those.
    physical_map = ColumnMap(column_map.name, column_map.feed, column_map.source,
                             {actual[h]: c for h, c in column_map.columns.items() if h in actual},
                             column_map.time_formats)
    archived = archive_path(archive_dir, landed)
    archived.parent.mkdir(parents=True, exist_ok=True)
    temporary = archived.with_name(archived.name + ".partial")
    shutil.copyfile(landed.path, temporary)
    os.replace(temporary, archived)  # atomic: an archived file is always whole
    # A TIMESTAMP or DATE column is kept typed: a round trip through text and the time parser
    # would give the same value at a cost. Every other cell is read as text, as from a CSV file.
    physical_type = {name: column_type for name, column_type, *_ in described}
    typed = {quote(header) for header, column in physical_map.columns.items()
             if contract.field(column).type in KEPT_TYPED
             and physical_type[header] == normalise.SQL_TYPES[contract.field(column).type]}
    source = _select_cells(
        contract, physical_map, list(actual.values()),
        "read_parquet($archived_path, file_row_number = true)", "file_row_number + 1",
        lambda c: c if c in typed else f"CAST({c} AS VARCHAR)",
    )
    return RawLoad(
        column_map=column_map, encoding="parquet", rows_in_raw=rows, source=source,
        source_params={**_params(landed, load_id, column_map), "archived_path": str(archived)},
        unmapped_columns=[h for h in actual if h not in column_map.columns],
        typed_columns=frozenset(column for header, column in physical_map.columns.items() if quote(header) in typed),
    )


def load_raw(con, schemas: Schemas, landed: LandedFile, load_id: int, archive_dir: Path,
             deferred: list[pa.RecordBatch] | None = None, reader: TextTableReader | None = None) -> RawLoad:
    if landed.format == "parquet":
        return load_parquet(con, schemas, landed, load_id, archive_dir)
    return load_text_table(con, schemas, landed, load_id, deferred, reader)
