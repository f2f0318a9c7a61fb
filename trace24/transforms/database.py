"""The DuckDB store: connection set-up and the tables of the raw and staged layers.

What belongs here: table definitions generated from the contracts (``raw_<feed>``,
``staged_<feed>``) and the bookkeeping tables every stage shares (``load_audit``,
``quarantine``, ``validation_results``, ``ingest_runs``, ``stage_state``) with the helpers to read
them, and how a connection is opened and closed. What does not: how rows get in (``raw.py``,
``staged.py``).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import duckdb
import pyarrow as pa

from trace24.schemas.contracts import FeedContract, Schemas
from trace24.transforms import normalise

LINEAGE_COLUMNS = (
    ("load_id", "INTEGER NOT NULL"),
    ("delivery_date", "DATE NOT NULL"),
    ("source_file", "VARCHAR NOT NULL"),
    ("source_row_number", "BIGINT NOT NULL"),
)

BOOKKEEPING_DDL = (
    """CREATE SEQUENCE IF NOT EXISTS load_id_sequence START 1""",
    # What a stage's last results were computed from (fingerprints), so that the next run can tell
    # whether they still hold and which part it may skip.
    """CREATE TABLE IF NOT EXISTS stage_state (
        stage VARCHAR NOT NULL,
        state_key VARCHAR NOT NULL,
        fingerprint VARCHAR NOT NULL,
        PRIMARY KEY (stage, state_key)
    )""",
    # What stage_state replaced: a store from before it has no state rows, so its stages rebuild once.
    "DROP TABLE IF EXISTS identity_state",
    "DROP TABLE IF EXISTS exposure_state",
    """CREATE TABLE IF NOT EXISTS ingest_runs (
        run_id INTEGER PRIMARY KEY,
        landing_dir VARCHAR NOT NULL,
        started_at TIMESTAMP NOT NULL,
        finished_at TIMESTAMP,
        files_loaded INTEGER,
        files_skipped INTEGER
    )""",
    """CREATE TABLE IF NOT EXISTS load_audit (
        load_id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL,
        delivery_date DATE NOT NULL,
        agency VARCHAR NOT NULL,
        feed VARCHAR NOT NULL,
        source_file VARCHAR NOT NULL,
        file_sha256 VARCHAR,
        file_bytes BIGINT,
        encoding VARCHAR,
        column_map VARCHAR,
        file_status VARCHAR NOT NULL,
        rows_read BIGINT NOT NULL,
        rows_loaded BIGINT NOT NULL,
        rows_quarantined BIGINT NOT NULL,
        rows_superseded BIGINT NOT NULL,
        unmapped_columns VARCHAR[],
        validation_passed BOOLEAN,
        message VARCHAR,
        CHECK (rows_read = rows_loaded + rows_quarantined)
    )""",
    """CREATE TABLE IF NOT EXISTS quarantine (
        load_id INTEGER NOT NULL,
        delivery_date DATE NOT NULL,
        agency VARCHAR NOT NULL,
        feed VARCHAR NOT NULL,
        source_file VARCHAR NOT NULL,
        source_row_number BIGINT,
        reason_codes VARCHAR[] NOT NULL,
        reasons VARCHAR[] NOT NULL,
        raw_values JSON
    )""",
    # Fingerprints of landed files already hashed: a file whose path, size and modification time
    # are unchanged is not read again on every run.
    """CREATE TABLE IF NOT EXISTS landed_files (
        source_file VARCHAR PRIMARY KEY,
        file_bytes BIGINT NOT NULL,
        modified_ns BIGINT NOT NULL,
        file_sha256 VARCHAR NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS delivery_warnings (
        run_id INTEGER NOT NULL,
        delivery_date DATE,
        feed VARCHAR,
        source_file VARCHAR,
        warning VARCHAR NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS validation_results (
        load_id INTEGER NOT NULL,
        feed VARCHAR NOT NULL,
        source_file VARCHAR NOT NULL,
        expectation VARCHAR NOT NULL,
        column_name VARCHAR,
        success BOOLEAN NOT NULL,
        element_count BIGINT,
        unexpected_count BIGINT
    )""",
)


def quote(identifier: str) -> str:
    """A SQL identifier; identifiers cannot be bound as parameters, so they are quoted here."""
    return '"' + identifier.replace('"', '""') + '"'


def contract_literal(text: str) -> str:
    """A SQL string literal for contract text (never data) where DuckDB takes no parameter: COMMENT ON."""
    return "'" + text.replace("'", "''") + "'"


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: dict | None = None):
    """The single value a query returns; the result is read to its end, so the connection is free again."""
    rows = con.execute(sql, params or {}).fetchall()
    return rows[0][0] if rows else None


def temp_table(con: duckdb.DuckDBPyConnection, name: str, rows: pa.Table) -> None:
    """A temporary table of Python-made rows, handed over as Arrow columns (empty or a city's)."""
    con.register("python_rows", rows)
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM python_rows")
    finally:
        con.unregister("python_rows")


def table_names(con: duckdb.DuckDBPyConnection) -> set[str]:
    """The store's own tables (not temporary ones)."""
    return {name for (name,) in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE NOT temporary AND schema_name = 'main'").fetchall()}


def fingerprint(values: object) -> str:
    """A hash of values' repr: equal for equal inputs, run after run."""
    return hashlib.sha256(repr(values).encode()).hexdigest()


def get_state(con: duckdb.DuckDBPyConnection, stage: str) -> dict[str, str]:
    """A stage's fingerprints by key; empty when the stage has not recorded any."""
    return dict(con.execute("SELECT state_key, fingerprint FROM stage_state WHERE stage = $stage",
                            {"stage": stage}).fetchall())


def set_state(con: duckdb.DuckDBPyConnection, stage: str, key: str, value: str | None) -> None:
    """Record (or with None, forget) what a stage's results were computed from."""
    con.execute("DELETE FROM stage_state WHERE stage = $stage AND state_key = $key", {"stage": stage, "key": key})
    if value is not None:
        con.execute("INSERT INTO stage_state VALUES ($stage, $key, $value)",
                    {"stage": stage, "key": key, "value": value})


def in_transaction(con: duckdb.DuckDBPyConnection, step, *args):
    """Run ``step(*args)`` so that what it writes commits whole or not at all."""
    con.execute("BEGIN TRANSACTION")
    try:
        result = step(*args)
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")
    return result


def bound_parameters(sql: str, params: dict) -> dict:
    """The parameters ``sql`` uses: DuckDB refuses unused ones (a feed without times has no $time_formats).
    Whole names only: ``$days_before_sample`` is not bound by ``$days_before_sample_onset_unknown``."""
    return {name: value for name, value in params.items() if re.search(rf"\${name}\b", sql)}


def current_records(feed: str, alias: str) -> str:
    """Current, not deleted rows of a staged feed with the person each row is about.
    ``feed`` is a contract name (an identifier), never a value from the data."""
    return f"""(
        SELECT {alias}.*, pr.person_id
        FROM staged_{feed} AS {alias}
        JOIN person_records AS pr
          ON pr.feed = '{feed}' AND pr.load_id = {alias}.load_id
         AND pr.source_row_number = {alias}.source_row_number
        WHERE {alias}.is_current AND NOT {alias}.is_deleted
    )"""


def raw_table(feed: str) -> str:
    return f"raw_{feed}"


def staged_table(feed: str) -> str:
    return f"staged_{feed}"


def staged_columns(contract: FeedContract) -> list[tuple[str, str]]:
    """Typed columns of a staged table, derived columns right after the column they come from."""
    columns = []
    for spec in contract.fields:
        columns.append((spec.name, normalise.SQL_TYPES[spec.type]))
        if spec.type == "id_number":
            columns += [(f"{spec.name}_status", "VARCHAR"), (f"{spec.name}_birth_date", "DATE"),
                        (f"{spec.name}_sex", "VARCHAR")]
        elif spec.type == "phone":
            columns.append((f"{spec.name}_kind", "VARCHAR"))
    return columns


def _create_feed_tables(con: duckdb.DuckDBPyConnection, contract: FeedContract) -> None:
    lineage = [f"{name} {sql_type}" for name, sql_type in LINEAGE_COLUMNS]
    raw_cols = [f"{quote(f.name)} VARCHAR" for f in contract.fields]
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {raw_table(contract.feed)} "
        f"({', '.join([*lineage, 'column_map VARCHAR NOT NULL', *raw_cols])})"
    )
    typed = [f"{quote(name)} {sql_type}" for name, sql_type in staged_columns(contract)]
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {staged_table(contract.feed)} "
        f"({', '.join([*lineage, *typed, 'is_current BOOLEAN NOT NULL', 'is_deleted BOOLEAN NOT NULL'])})"
    )


_checkpoint_on_close: ContextVar[bool] = ContextVar("checkpoint_on_close", default=True)


@contextmanager
def checkpoints_deferred() -> Iterator[None]:
    """Stores opened inside are closed without a checkpoint: their committed changes stay in the
    write-ahead log, durable, and the next connection replays it in milliseconds. The daily flow
    opens the store once per stage, and each closing checkpoint cost ~2 s at a million residents
    before the lists were out; the first store closed outside this block checkpoints the lot."""
    token = _checkpoint_on_close.set(False)
    try:
        yield
    finally:
        _checkpoint_on_close.reset(token)


def memory_limit() -> str:
    """DuckDB's memory limit for the store: TRACE24_DUCKDB_MEMORY_LIMIT, else 3GB (a million residents
    fit in 4 GB with it; a ten-million city on a 24 GB machine runs with 10GB, README Benchmarks)."""
    return os.environ.get("TRACE24_DUCKDB_MEMORY_LIMIT", "3GB")


def connect(path: Path | str, schemas: Schemas) -> duckdb.DuckDBPyConnection:
    """Open (or create) the store, install the normalisers and make sure every table exists."""
    # A bounded memory limit makes DuckDB spill to disk instead of growing with the file size.
    # Insertion order is kept explicitly: the CSV reader numbers rows in scan order (raw.py).
    config = {"memory_limit": memory_limit(), "preserve_insertion_order": True}
    # What a query may spill (DuckDB's default: 90% of the free disk). An operator caps it so that
    # a runaway plan fails its run, leaving the last results, instead of filling the disk.
    if os.environ.get("TRACE24_DUCKDB_TEMP_LIMIT"):
        config["max_temp_directory_size"] = os.environ["TRACE24_DUCKDB_TEMP_LIMIT"]
    con = duckdb.connect(str(path), config=config)
    if not _checkpoint_on_close.get():
        con.execute("PRAGMA disable_checkpoint_on_shutdown")
    normalise.register(con)
    for ddl in BOOKKEEPING_DDL:
        con.execute(ddl)
    for contract in schemas.feeds.values():
        _create_feed_tables(con, contract)
    return con


# The follow-up stage writes core_health_checks before the categories read it; a store it has not
# run on (a stage run alone, a test) gets the table empty.
CORE_HEALTH_CHECKS_DDL = """
CREATE TABLE IF NOT EXISTS core_health_checks (
    person_id BIGINT, check_date DATE, temperature_c DOUBLE, symptoms VARCHAR, observation_status VARCHAR,
    row_key VARCHAR, reporter_code VARCHAR, reporter_kind VARCHAR, community_code VARCHAR, district VARCHAR,
    load_id BIGINT, delivery_date DATE, source_file VARCHAR, source_row_number BIGINT
)
"""


def ensure_core_health_checks(con: duckdb.DuckDBPyConnection) -> None:
    """``core_health_checks``, empty in a store the follow-up stage has not run on."""
    con.execute(CORE_HEALTH_CHECKS_DDL)


# An office's 信息有误 answer with the correct phone or address: a record of the person, which
# identity and community assignment read (the follow-up stage writes it, after identity has run
# once; a store it has not run on gets the table empty). One definition: the follow-up inserts into it.
CORE_OFFICE_CORRECTIONS_DDL = """
CREATE TABLE IF NOT EXISTS core_office_corrections (
    person_id BIGINT NOT NULL, phone VARCHAR, address VARCHAR, office_code VARCHAR NOT NULL,
    row_key VARCHAR NOT NULL, load_id BIGINT NOT NULL, delivery_date DATE NOT NULL, source_file VARCHAR NOT NULL,
    source_row_number BIGINT NOT NULL
)
"""


def ensure_core_office_corrections(con: duckdb.DuckDBPyConnection) -> None:
    """``core_office_corrections``, empty in a store the follow-up stage has not run on."""
    con.execute(CORE_OFFICE_CORRECTIONS_DDL)
