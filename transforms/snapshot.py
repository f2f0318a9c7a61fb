"""Out layer: the read-only snapshot that epidemiologists open while the pipeline writes.

DuckDB lets one process write a file and nobody else open it, so the working store is never
shared. After each run the published tables (exactly the columns their contracts in
``schemas/published/`` list) are copied into a new file beside the final one, which is then
swapped in with one rename: a reader opens the old snapshot or the new one, whole, and a reader
holding the old one open keeps reading it. What belongs here: that copy and the swap.
What does not: the tables' logic (their stages) or their meaning (the contracts).

Rows keep the store's order, unsorted: sorting 30 M person records cost 10 s a run at a million
residents, and a reader who needs an order says ORDER BY.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import duckdb

from schemas.published import Published
from transforms.database import contract_literal, quote, scalar


def snapshot_path_for(db_path: Path) -> Path:
    """Where a store's snapshot goes by default: ``<store>_read.duckdb`` beside it."""
    db_path = Path(db_path)
    return db_path.with_name(f"{db_path.stem}_read.duckdb")


def _copy_table(con: duckdb.DuckDBPyConnection, table, source: str) -> int:
    columns = ", ".join(quote(c) for c in table.column_names)
    con.execute(f"CREATE TABLE snapshot.{quote(table.name)} AS SELECT {columns} FROM {source}.{quote(table.name)}")
    return _describe(con, table)


def _describe(con: duckdb.DuckDBPyConnection, table) -> int:
    """The contract's descriptions as comments: ``duckdb_columns()`` shows them to a reader."""
    con.execute(f"COMMENT ON TABLE snapshot.{quote(table.name)} IS {contract_literal(table.description)}")
    for column in table.columns:
        con.execute(f"COMMENT ON COLUMN snapshot.{quote(table.name)}.{quote(column.name)} "
                    f"IS {contract_literal(column.description)}")
    return scalar(con, f"SELECT count(*) FROM snapshot.{quote(table.name)}")


def publish_snapshot(con: duckdb.DuckDBPyConnection, published: Published, snapshot_path: Path,
                     info: dict) -> dict[str, int]:
    """Write every published table into a new snapshot file and swap it in; return rows per table.

    ``info`` fills ``snapshot_info`` (as_of, profile, ingest_run_id, list_folder). Reads the
    committed state of ``con``'s database; call it after the run's last commit.
    """
    snapshot_path = Path(snapshot_path)
    snapshot_path.parent.mkdir(parents=True, exist_ok=True)
    for stale in snapshot_path.parent.glob(f".{snapshot_path.name}.partial-*"):
        stale.unlink(missing_ok=True)  # a killed run's; the store's lock makes this run the only writer
    partial = snapshot_path.with_name(f".{snapshot_path.name}.partial-{os.getpid()}")
    source = scalar(con, "SELECT current_database()")
    counts: dict[str, int] = {}
    con.execute("ATTACH $path AS snapshot", {"path": str(partial)})
    try:
        own = [t for t in published.tables if t.stage == "snapshot"]
        for table in published.tables:
            if table.stage != "snapshot":
                counts[table.name] = _copy_table(con, table, quote(source))
        con.execute("""CREATE TABLE snapshot.snapshot_info AS
                       SELECT $published_at::TIMESTAMPTZ AS published_at, $as_of::TIMESTAMP AS as_of,
                              $profile AS profile, $ingest_run_id::INTEGER AS ingest_run_id,
                              $list_folder AS list_folder""",
                    {"published_at": dt.datetime.now(dt.UTC), **info})
        con.execute("CREATE TABLE snapshot.snapshot_tables (table_name VARCHAR, row_count BIGINT)")
        con.executemany("INSERT INTO snapshot.snapshot_tables VALUES (?, ?)", sorted(counts.items()))
        for table in own:
            _describe(con, table)
    except BaseException:
        con.execute("DETACH snapshot")
        partial.unlink(missing_ok=True)
        raise
    con.execute("DETACH snapshot")
    os.replace(partial, snapshot_path)  # atomic on one file system: readers see old or new, whole
    return counts
