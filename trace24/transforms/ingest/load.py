"""Ingestion steps: one landed file → raw → staged/quarantine, audited, in one transaction.

What belongs here: the unit of work a flow repeats per file (load it, or set it aside whole with
its reason), the skip of files already loaded, warnings for feeds missing on a day, and the audit
summary. Each file commits or rolls back whole, so a run that dies half-way leaves every earlier
file loaded and nothing half-loaded. What does not: the order of work and retries (``trace24/flows/``).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

import duckdb

from trace24.schemas.contracts import Schemas
from trace24.transforms.ingest import landing, raw, staged

log = logging.getLogger(__name__)

SETTLED_STATUSES = ("loaded", "empty", "unreadable")


@dataclass(frozen=True)
class FileOutcome:
    source_file: str
    feed: str
    status: str  # loaded | empty | unreadable | skipped
    load_id: int | None = None
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    rows_superseded: int = 0


def start_run(con: duckdb.DuckDBPyConnection, landing_dir: Path) -> int:
    run_id = con.execute("SELECT coalesce(max(run_id), 0) + 1 FROM ingest_runs").fetchone()[0]
    con.execute("INSERT INTO ingest_runs (run_id, landing_dir, started_at) VALUES (?, ?, ?)",
                [run_id, str(landing_dir), dt.datetime.now()])
    return run_id


def finish_run(con, run_id: int, outcomes: list[FileOutcome]) -> None:
    loaded = sum(o.status != "skipped" for o in outcomes)
    con.execute("UPDATE ingest_runs SET finished_at = ?, files_loaded = ?, files_skipped = ? WHERE run_id = ?",
                [dt.datetime.now(), loaded, len(outcomes) - loaded, run_id])


def file_sha256(con, landed: landing.LandedFile) -> str:
    """The file's SHA-256: from ``landed_files`` when its path, size and modification time are those
    of a file hashed before (months of deliveries are not read again every hour), else computed.
    Rewriting a file changes its modification time, so a corrected delivery is always hashed."""
    stat = landed.path.stat()
    fingerprint = [landed.relative_path, stat.st_size, stat.st_mtime_ns]
    cached = con.execute("SELECT file_sha256 FROM landed_files WHERE source_file = ? AND file_bytes = ? "
                         "AND modified_ns = ?", fingerprint).fetchall()
    if cached:
        return cached[0][0]
    sha256 = landing.sha256_of(landed.path)
    con.execute("INSERT OR REPLACE INTO landed_files VALUES (?, ?, ?, ?)", [*fingerprint, sha256])
    return sha256


def already_loaded(con, landed: landing.LandedFile, sha256: str) -> bool:
    return con.execute(
        "SELECT count(*) > 0 FROM load_audit WHERE source_file = ? AND file_sha256 = ? AND file_status IN ?",
        [landed.relative_path, sha256, list(SETTLED_STATUSES)],
    ).fetchone()[0]


def is_loaded(con, landed: landing.LandedFile) -> bool:
    """True when this exact file (path and content) was loaded before: nothing to do."""
    return already_loaded(con, landed, file_sha256(con, landed))


def _audit(con, run_id: int, load_id: int, landed: landing.LandedFile, agency: str, sha256: str, status: str,
           *, encoding=None, column_map=None, read=0, loaded=0, quarantined=0, superseded=0,
           unmapped=None, message=None) -> None:
    if read != loaded + quarantined:
        # The CHECK constraint would also refuse it; say which file broke the count.
        raise RuntimeError(f"{landed.relative_path}: read {read} != loaded {loaded} + quarantined {quarantined}")
    con.execute(
        "INSERT INTO load_audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [load_id, run_id, landed.delivery_date, agency, landed.feed, landed.relative_path, sha256,
         landed.path.stat().st_size, encoding, column_map, status, read, loaded, quarantined, superseded,
         unmapped or [], None, message],
    )


def archive_dir_for(db_path: Path) -> Path:
    """Where delivered Parquet files are archived as the raw layer: beside the database."""
    db_path = Path(db_path)
    return db_path.resolve().parent / f"{db_path.stem}_raw"


def ingest_file(con: duckdb.DuckDBPyConnection, schemas: Schemas, landed: landing.LandedFile,
                run_id: int, archive_dir: Path) -> FileOutcome:
    """Load one file whole, or quarantine it whole; never half. Skips a file loaded before."""
    contract = schemas.feeds[landed.feed]
    sha256 = file_sha256(con, landed)
    if already_loaded(con, landed, sha256):
        return FileOutcome(landed.relative_path, landed.feed, "skipped")
    con.begin()
    try:
        # Drawn inside the transaction: a run killed before the commit leaves no trace of the id,
        # so the rerun gives the file the id an uninterrupted run would have given it.
        load_id = con.execute("SELECT nextval('load_id_sequence')").fetchall()[0][0]
        loaded_raw = raw.load_raw(con, schemas, landed, load_id, archive_dir)
        result = staged.stage_load(con, contract, loaded_raw.column_map, load_id,
                                   loaded_raw.source, loaded_raw.source_params, loaded_raw.typed_columns)
        malformed = staged.quarantine_malformed(con, contract, landed, load_id, loaded_raw.malformed)
        read = loaded_raw.rows_in_raw + malformed
        status = "loaded" if read else "empty"
        _audit(con, run_id, load_id, landed, contract.agency, sha256, status,
               encoding=loaded_raw.encoding, column_map=loaded_raw.column_map.name, read=read,
               loaded=result.rows_loaded, quarantined=result.rows_quarantined + malformed,
               superseded=result.rows_superseded, unmapped=loaded_raw.unmapped_columns,
               message="the file holds no rows" if not read else None)
        con.commit()
    except landing.UnreadableFile as exc:
        con.rollback()
        con.begin()
        staged.quarantine_file(con, contract, landed, load_id, str(exc))
        _audit(con, run_id, load_id, landed, contract.agency, sha256, "unreadable", message=str(exc))
        con.commit()
        log.warning("%s: unreadable, set aside: %s", landed.relative_path, exc)
        return FileOutcome(landed.relative_path, landed.feed, "unreadable", load_id)
    except BaseException:
        con.rollback()
        raise
    if status == "empty":
        log.warning("%s: the file is empty", landed.relative_path)
    return FileOutcome(landed.relative_path, landed.feed, status, load_id, read, result.rows_loaded,
                       result.rows_quarantined + malformed, result.rows_superseded)


def missing_feeds(schemas: Schemas, landing_dir: Path, files: list[landing.LandedFile],
                  through: dt.date | None = None) -> list[tuple[dt.date, str]]:
    """(day, feed) pairs with no file on a delivery day: a warning, never an error."""
    delivered = {(f.delivery_date, f.feed) for f in files}
    daily = sorted(feed for feed, contract in schemas.feeds.items() if contract.expected_daily)
    return [(day, feed) for day, _ in landing.delivery_days(landing_dir, through) for feed in daily
            if (day, feed) not in delivered]


def record_warnings(con, run_id: int, missing: list[tuple[dt.date, str]], unknown: list[str]) -> list[str]:
    """Store each delivery warning once (a rerun does not repeat it); return the new ones as text."""
    rows = [(day, feed, None, f"no {feed} file delivered on {day}") for day, feed in missing]
    rows += [(None, None, path, f"{path}: not a file of any known feed; ignored") for path in unknown]
    new = []
    for day, feed, path, text in rows:
        seen = con.execute("SELECT count(*) > 0 FROM delivery_warnings WHERE warning = ?", [text]).fetchone()[0]
        if not seen:
            con.execute("INSERT INTO delivery_warnings VALUES (?, ?, ?, ?, ?)", [run_id, day, feed, path, text])
            new.append(text)
    return new


def loads_awaiting_validation(con) -> list[tuple[str, int, str]]:
    """(feed, load_id, file) of every load not validated yet: this run's, and those of a run that
    was stopped after loading and before validating."""
    return con.execute("SELECT feed, load_id, source_file FROM load_audit "
                       "WHERE file_status = 'loaded' AND validation_passed IS NULL ORDER BY load_id").fetchall()


def set_validation(con, load_id: int, passed: bool) -> None:
    con.execute("UPDATE load_audit SET validation_passed = ? WHERE load_id = ?", [passed, load_id])


AUDIT_SUMMARY_SQL = """
    SELECT delivery_date, agency, feed, source_file, file_status, rows_read, rows_loaded,
           rows_quarantined, rows_superseded, validation_passed
    FROM load_audit
    WHERE run_id = $run_id
    ORDER BY delivery_date, agency, feed, source_file
"""


def audit_summary(con, run_id: int) -> list[tuple]:
    return con.execute(AUDIT_SUMMARY_SQL, {"run_id": run_id}).fetchall()
