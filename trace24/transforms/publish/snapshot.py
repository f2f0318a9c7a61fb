"""Out layer: the read-only snapshot that epidemiologists open while the pipeline writes.

DuckDB lets one process write a file and nobody else open it, so the working store is never
shared. After each run the published tables (exactly the columns their contracts in
``schemas/published/`` list) are copied into a new file beside the final one, which is then
swapped in with one rename: a reader opens the old snapshot or the new one, whole, and a reader
holding the old one open keeps reading it. What belongs here: that copy and the swap.
What does not: the tables' logic (their stages) or their meaning (the contracts).

Rows are unsorted (a reader who needs an order says ORDER BY): sorting 30 M person records cost
10 s a run at a million residents. The new file starts as a copy of the previous snapshot, and
``person_records`` only takes the exact links of loads it does not hold yet (they never change once
written; the few other links are replaced): copying all 30 M rows cost 10 s a run. The history
tables (``carried_by: as_of`` in their contracts) take only the runs whose rows differ from the
store's. Every other table is written anew. When the previous snapshot is not of this store (its
exact links differ from the store's for the loads it holds), it is not reused.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import duckdb

from trace24.schemas.published import Published
from trace24.transforms.database import contract_literal, quote, scalar
from trace24.transforms.persons.identity import exact_link


def snapshot_path_for(db_path: Path) -> Path:
    """Where a store's snapshot goes by default: ``<store>_read.duckdb`` beside it."""
    db_path = Path(db_path)
    return db_path.with_name(f"{db_path.stem}_read.duckdb")


def _copy_table(con: duckdb.DuckDBPyConnection, table, source: str) -> int:
    columns = ", ".join(quote(c) for c in table.column_names)
    con.execute(f"DROP TABLE IF EXISTS snapshot.{quote(table.name)}")
    con.execute(f"CREATE TABLE snapshot.{quote(table.name)} AS SELECT {columns} FROM {source}.{quote(table.name)}")
    return _describe(con, table)


# Exact links never change once written; the others are rewritten by linkage.
_EXACT = exact_link()
# Per load, a checksum of its exact links: equal in the store and the previous snapshot, the
# snapshot's rows are the store's.
_LOAD_CHECKSUMS = f"""
SELECT load_id, count(*) AS links, bit_xor(hash(feed, source_row_number, person_id)) AS checksum
FROM {{table}} WHERE {_EXACT} AND {{loads}} GROUP BY load_id
"""


def _held_as_published(con: duckdb.DuckDBPyConnection, table) -> bool:
    """The previous snapshot holds ``table`` with the contract's columns and types."""
    if table.name not in _snapshot_tables(con):
        return False
    held = con.execute("""SELECT column_name, data_type FROM duckdb_columns()
                          WHERE database_name = 'snapshot' AND table_name = $table
                          ORDER BY column_index""", {"table": table.name}).fetchall()
    return [name for name, _ in held] == list(table.column_names) and [
        kind for _, kind in held] == [column.type for column in table.columns]


def _carry_history(con: duckdb.DuckDBPyConnection, table, source: str) -> int | None:
    """Bring the previous snapshot's copy of a history table up to the store's: the rows of each
    value of ``table.carried_by`` (a run's as_of) stay where their count and checksum equal the
    store's, and are copied where they differ or are new (a run redone at the same as_of, the
    newest run). None when the snapshot does not hold the table as published.

    Copying every run's rows each run made the snapshot grow slower with every run: list rows are
    ~60 k a run at a million residents, 1.8 M after a month of daily runs."""
    if not _held_as_published(con, table):
        return None
    name, part = quote(table.name), quote(table.carried_by)
    columns = ", ".join(quote(c) for c in table.column_names)
    checksums = f"SELECT {part} AS part, count(*) AS n, bit_xor(hash({columns})) AS checksum FROM {{rows}} GROUP BY ALL"
    con.execute(f"""CREATE OR REPLACE TEMP TABLE stale_parts AS
                    SELECT part FROM (({checksums.format(rows=f'{source}.{name}')})
                                      EXCEPT ({checksums.format(rows=f'snapshot.{name}')}))
                    UNION
                    SELECT part FROM (({checksums.format(rows=f'snapshot.{name}')})
                                      EXCEPT ({checksums.format(rows=f'{source}.{name}')}))""")
    stale = f"EXISTS (SELECT 1 FROM stale_parts AS s WHERE s.part IS NOT DISTINCT FROM {part})"
    con.execute(f"DELETE FROM snapshot.{name} WHERE {stale}")
    con.execute(f"INSERT INTO snapshot.{name} ({columns}) SELECT {columns} FROM {source}.{name} WHERE {stale}")
    con.execute("DROP TABLE stale_parts")
    return _describe(con, table)


def _append_person_records(con: duckdb.DuckDBPyConnection, table, source: str) -> int | None:
    """Bring the previous snapshot's person_records up to the store's: the exact links of new loads
    added, the other links replaced. None when the snapshot's links are not the store's."""
    if not _held_as_published(con, table):
        return None  # none, or of another version of the contract
    con.execute("CREATE OR REPLACE TEMP TABLE snapshot_loads AS "
                + _LOAD_CHECKSUMS.format(table="snapshot.person_records", loads="true"))
    differing = scalar(con, f"""
        SELECT count(*) FROM snapshot_loads AS h
        LEFT JOIN ({_LOAD_CHECKSUMS.format(table=f'{source}.person_records',
                                           loads='load_id IN (SELECT load_id FROM snapshot_loads)')}) AS s
          USING (load_id)
        WHERE s.checksum IS DISTINCT FROM h.checksum OR s.links IS DISTINCT FROM h.links""")
    if differing:
        return None
    columns = ", ".join(quote(c) for c in table.column_names)
    con.execute(f"DELETE FROM snapshot.person_records WHERE NOT ({_EXACT})")
    con.execute(f"""INSERT INTO snapshot.person_records ({columns})
                    SELECT {columns} FROM {source}.person_records
                    WHERE NOT ({_EXACT})
                       OR load_id NOT IN (SELECT load_id FROM snapshot_loads)""")
    con.execute("DROP TABLE snapshot_loads")
    return _describe(con, table)


def _snapshot_tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {name for (name,) in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = 'snapshot'").fetchall()}


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
    if snapshot_path.exists():
        shutil.copyfile(snapshot_path, partial)  # readers of the old file are not disturbed
    source = scalar(con, "SELECT current_database()")
    counts: dict[str, int] = {}
    try:
        con.execute("ATTACH $path AS snapshot", {"path": str(partial)})
    except duckdb.Error:
        # Not a database DuckDB can open (damaged, or of another version): start afresh.
        partial.unlink(missing_ok=True)
        con.execute("ATTACH $path AS snapshot", {"path": str(partial)})
    try:
        own = [t for t in published.tables if t.stage == "snapshot"]
        for stale in _snapshot_tables(con) - {t.name for t in published.tables if t.stage != "snapshot"}:
            con.execute(f"DROP TABLE snapshot.{quote(stale)}")  # its own tables, and any no longer published
        for table in published.tables:
            if table.stage == "snapshot":
                continue
            if table.name == "person_records":
                carried = _append_person_records(con, table, quote(source))
            else:
                carried = _carry_history(con, table, quote(source)) if table.carried_by else None
            counts[table.name] = carried if carried is not None else _copy_table(con, table, quote(source))
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
