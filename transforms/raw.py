"""Raw layer: one landed file into ``raw_<feed>``, every cell as delivered text, plus lineage.

What belongs here: choosing the column map whose headers a file carries, renaming source headers
to canonical columns, and writing the text cells with delivery day, file, row number and load id.
A row whose field count is wrong cannot be placed in columns; it is returned to the caller to be
quarantined. What does not: any change to a value (that is ``staged.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb

from schemas import ColumnMap, FeedContract, Schemas
from transforms.database import quote, raw_table
from transforms.landing import ROW_NUMBER, LandedFile, MalformedRow, TextTableReader, UnreadableFile, clean_header


@dataclass
class RawLoad:
    column_map: ColumnMap
    encoding: str
    rows_in_raw: int
    malformed: list[MalformedRow] = field(default_factory=list)
    unmapped_columns: list[str] = field(default_factory=list)
    headers: list[str] = field(default_factory=list)


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


def _insert_select(contract: FeedContract, column_map: ColumnMap, headers: list[str], source: str,
                   row_number_sql: str, cell_sql) -> str:
    """INSERT ... SELECT from a source relation, canonical columns in contract order."""
    by_column = {column: header for header, column in column_map.columns.items() if header in headers}
    cells = [
        f"{cell_sql(quote(by_column[f.name])) if f.name in by_column else 'NULL'} AS {quote(f.name)}"
        for f in contract.fields
    ]
    return (
        f"INSERT INTO {raw_table(contract.feed)} "
        f"SELECT $load_id, $delivery_date, $source_file, {row_number_sql}, $column_map, {', '.join(cells)} "
        f"FROM {source}"
    )


def _params(landed: LandedFile, load_id: int, column_map: ColumnMap) -> dict:
    return {"load_id": load_id, "delivery_date": landed.delivery_date, "source_file": landed.relative_path,
            "column_map": column_map.name}


def _count(con: duckdb.DuckDBPyConnection, contract: FeedContract, load_id: int) -> int:
    return con.execute(f"SELECT count(*) FROM {raw_table(contract.feed)} WHERE load_id = $1", [load_id]).fetchone()[0]


def load_text_table(con, schemas: Schemas, landed: LandedFile, load_id: int) -> RawLoad:
    reader = TextTableReader(landed)
    contract = schemas.feeds[landed.feed]
    if not reader.headers:
        return RawLoad(schemas.maps_for(landed.feed)[0], reader.encoding or "", 0)
    column_map = choose_column_map(schemas, landed.feed, reader.headers)
    sql = _insert_select(contract, column_map, reader.headers, "batch", quote(ROW_NUMBER), lambda c: c)
    params = _params(landed, load_id, column_map)
    for batch in reader.batches():
        con.register("batch", batch)
        try:
            con.execute(sql, params)
        finally:
            con.unregister("batch")
    return RawLoad(
        column_map=column_map, encoding=reader.encoding or "", rows_in_raw=_count(con, contract, load_id),
        malformed=reader.malformed, headers=reader.headers,
        unmapped_columns=[h for h in reader.headers if h not in column_map.columns],
    )


def load_parquet(con, schemas: Schemas, landed: LandedFile, load_id: int) -> RawLoad:
    """DuckDB scans the Parquet file itself: no row passes through Python."""
    contract = schemas.feeds[landed.feed]
    try:
        described = con.execute("DESCRIBE SELECT * FROM read_parquet($path)", {"path": str(landed.path)}).fetchall()
    except duckdb.Error as exc:
        raise UnreadableFile(f"not a readable Parquet file: {exc}") from exc
    actual = {clean_header(name): name for name, *_ in described}
    column_map = choose_column_map(schemas, landed.feed, list(actual))
    # Parquet columns keep their physical names; map cleaned header -> physical name for the select.
    physical_map = ColumnMap(column_map.name, column_map.feed, column_map.source,
                             {actual[h]: c for h, c in column_map.columns.items() if h in actual},
                             column_map.time_formats)
    sql = _insert_select(
        contract, physical_map, list(actual.values()),
        "read_parquet($path, file_row_number = true)", "file_row_number + 1",
        lambda c: f"CAST({c} AS VARCHAR)",
    )
    con.execute(sql, {**_params(landed, load_id, column_map), "path": str(landed.path)})
    return RawLoad(
        column_map=column_map, encoding="parquet", rows_in_raw=_count(con, contract, load_id),
        headers=list(actual), unmapped_columns=[h for h in actual if h not in column_map.columns],
    )


def load_raw(con, schemas: Schemas, landed: LandedFile, load_id: int) -> RawLoad:
    if landed.format == "parquet":
        return load_parquet(con, schemas, landed, load_id)
    return load_text_table(con, schemas, landed, load_id)
