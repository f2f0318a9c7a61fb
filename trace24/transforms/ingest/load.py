"""Ingestion steps: one landed file → raw → staged/quarantine, audited, in one transaction.

What belongs here: the unit of work a flow repeats per file (load it, or set it aside whole with
its reason), the skip of files already loaded, warnings for feeds missing on a day, and the audit
summary. Each file commits or rolls back whole (a feed's small files of a day together), so a run
that dies half-way leaves every earlier file loaded and nothing half-loaded. What does not: the
order of work and retries (``trace24/flows/``).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
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


def file_hashes(con, files: list[landing.LandedFile]) -> dict[str, str]:
    """``file_sha256`` of many files with two statements, not two per file."""
    fingerprints = {}
    for landed in files:
        stat = landed.path.stat()
        fingerprints[landed.relative_path] = (stat.st_size, stat.st_mtime_ns)
    cached = con.execute(
        "SELECT source_file, file_bytes, modified_ns, file_sha256 FROM landed_files "
        "WHERE list_contains($files, source_file)", {"files": list(fingerprints)}).fetchall()
    hashes = {path: sha256 for path, size, modified, sha256 in cached if fingerprints[path] == (size, modified)}
    new = [(landed.relative_path, *fingerprints[landed.relative_path], landing.sha256_of(landed.path))
           for landed in files if landed.relative_path not in hashes]
    if new:
        con.execute("INSERT OR REPLACE INTO landed_files "
                    "SELECT unnest($paths), unnest($sizes), unnest($modified), unnest($hashes)",
                    {name: list(column) for name, column in zip(("paths", "sizes", "modified", "hashes"),
                                                                 zip(*new, strict=True), strict=True)})
        hashes.update((path, sha256) for path, _, _, sha256 in new)
    return hashes


def already_loaded(con, landed: landing.LandedFile, sha256: str) -> bool:
    return con.execute(
        "SELECT count(*) > 0 FROM load_audit WHERE source_file = ? AND file_sha256 = ? AND file_status IN ?",
        [landed.relative_path, sha256, list(SETTLED_STATUSES)],
    ).fetchone()[0]


AUDIT_COLUMNS = ("load_id", "run_id", "delivery_date", "agency", "feed", "source_file", "file_sha256", "file_bytes",
                 "encoding", "column_map", "file_status", "rows_read", "rows_loaded", "rows_quarantined",
                 "rows_superseded", "unmapped_columns", "validation_passed", "message")
AUDIT_TYPES = ("INTEGER", "INTEGER", "DATE", "VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "BIGINT", "VARCHAR",
               "VARCHAR", "VARCHAR", "BIGINT", "BIGINT", "BIGINT", "BIGINT", "VARCHAR[]", "BOOLEAN", "VARCHAR")


def _audit_row(run_id: int, load_id: int, landed: landing.LandedFile, agency: str, sha256: str, status: str,
               *, encoding=None, column_map=None, read=0, loaded=0, quarantined=0, superseded=0,
               unmapped=None, message=None) -> tuple:
    if read != loaded + quarantined:
        # The CHECK constraint would also refuse it; say which file broke the count.
        raise RuntimeError(f"{landed.relative_path}: read {read} != loaded {loaded} + quarantined {quarantined}")
    return (load_id, run_id, landed.delivery_date, agency, landed.feed, landed.relative_path, sha256,
            landed.path.stat().st_size, encoding, column_map, status, read, loaded, quarantined, superseded,
            unmapped or [], None, message)


def _insert_audit(con, rows: list[tuple]) -> None:
    """The audit rows of a batch in one statement (a statement costs ~1 ms on a big store)."""
    columns = list(zip(*rows, strict=True))
    con.execute(f"INSERT INTO load_audit ({', '.join(AUDIT_COLUMNS)}) SELECT "
                + ", ".join(f"CAST(unnest(${name}) AS {kind})" for name, kind in zip(
                    AUDIT_COLUMNS, AUDIT_TYPES, strict=True)),
                {name: list(values) for name, values in zip(AUDIT_COLUMNS, columns, strict=True)})


def archive_dir_for(db_path: Path) -> Path:
    """Where delivered Parquet files are archived as the raw layer: beside the database."""
    db_path = Path(db_path)
    return db_path.resolve().parent / f"{db_path.stem}_raw"


# Text files of one feed and delivery day are loaded together up to this many bytes: a city's
# offices return hundreds of small files a day, and a file's fixed cost (planning the staging
# query, quarantine and supersede statements, a transaction) is ~50 ms whatever its rows.
BATCH_BYTES = 64 << 20


def ingest_files(con: duckdb.DuckDBPyConnection, schemas: Schemas, files: list[landing.LandedFile],
                 run_id: int, archive_dir: Path, on_file=None) -> list[FileOutcome]:
    """Load every file not loaded before (same path, same SHA-256), in the order given.

    Consecutive text files of one feed and delivery day form a batch (up to ``BATCH_BYTES``),
    loaded in one transaction and staged in one query; any other file is a batch of its own. A
    batch commits or rolls back whole, and gives every file the load id, rows, quarantine and audit
    it would have had alone (tested). ``on_file(outcome)`` is called for each file, in order.
    """
    outcomes: list[FileOutcome] = []
    pending: list[tuple[landing.LandedFile, str]] = []

    def report(batch_outcomes):
        for outcome in batch_outcomes:
            outcomes.append(outcome)
            if on_file:
                on_file(outcome)

    def flush():
        if pending:
            report(_ingest_batch(con, schemas, pending, run_id, archive_dir))
            pending.clear()

    hashes = file_hashes(con, files)
    settled = _settled_loads(con, files)
    pending_bytes = 0
    for landed in files:
        sha256 = hashes[landed.relative_path]
        if (landed.relative_path, sha256) in settled:
            flush()
            report([FileOutcome(landed.relative_path, landed.feed, "skipped")])
            continue
        size = landed.path.stat().st_size
        if pending and not (landed.format != "parquet" and pending[0][0].feed == landed.feed
                            and pending[0][0].delivery_date == landed.delivery_date
                            and pending_bytes + size <= BATCH_BYTES):
            flush()
        if not pending:
            pending_bytes = 0
        pending.append((landed, sha256))
        pending_bytes += size
        if landed.format == "parquet":
            flush()
    flush()
    return outcomes


def _settled_loads(con, files: list[landing.LandedFile]) -> set[tuple[str, str]]:
    """(file, SHA-256) of the given paths' loads that are settled: one query, not one per file."""
    return set(con.execute(
        "SELECT source_file, file_sha256 FROM load_audit WHERE file_status IN $statuses "
        "AND list_contains($files, source_file)",
        {"statuses": list(SETTLED_STATUSES), "files": [f.relative_path for f in files]}).fetchall())


def ingest_file(con: duckdb.DuckDBPyConnection, schemas: Schemas, landed: landing.LandedFile,
                run_id: int, archive_dir: Path) -> FileOutcome:
    """Load one file whole, or quarantine it whole; never half. Skips a file loaded before."""
    sha256 = file_sha256(con, landed)
    if already_loaded(con, landed, sha256):
        return FileOutcome(landed.relative_path, landed.feed, "skipped")
    return _ingest_batch(con, schemas, [(landed, sha256)], run_id, archive_dir)[0]


def _ingest_batch(con, schemas: Schemas, batch: list[tuple[landing.LandedFile, str]], run_id: int,
                  archive_dir: Path) -> list[FileOutcome]:
    """Files of one feed in one transaction: each loaded whole, or set aside whole (unreadable)."""
    contract = schemas.feeds[batch[0][0].feed]
    con.begin()
    try:
        # Drawn inside the transaction: a run killed before the commit leaves no trace of the ids,
        # so the rerun gives the files the ids an uninterrupted run would have given them.
        load_ids = [i for (i,) in con.execute("SELECT nextval('load_id_sequence') FROM range($n) ORDER BY 1",
                                              {"n": len(batch)}).fetchall()]
        loads = []  # (landed, sha256, load_id, RawLoad, or the reason the file is unreadable)
        deferred = []  # small files' raw rows, inserted together
        opened = _opened_ahead([landed for landed, _ in batch])
        for (landed, sha256), load_id in zip(batch, load_ids, strict=True):
            try:
                reader = next(opened).result()
                loads.append((landed, sha256, load_id,
                              raw.load_raw(con, schemas, landed, load_id, archive_dir, deferred, reader)))
            except landing.UnreadableFile as exc:
                if landed.format != "parquet":  # rows read before the fault are not kept
                    raw.discard_load(con, contract, load_id)
                staged.quarantine_file(con, contract, landed, load_id, str(exc))
                loads.append((landed, sha256, load_id, str(exc)))
        opened.close()
        raw.insert_deferred(con, contract, deferred)
        results = _stage(con, contract, [entry for entry in loads if isinstance(entry[3], raw.RawLoad)])
        outcomes, audit = [], []
        for landed, sha256, load_id, loaded_raw in loads:
            if not isinstance(loaded_raw, raw.RawLoad):
                audit.append(_audit_row(run_id, load_id, landed, contract.agency, sha256, "unreadable",
                                        message=loaded_raw))
                outcomes.append(FileOutcome(landed.relative_path, landed.feed, "unreadable", load_id))
                continue
            result = results[load_id]
            malformed = staged.quarantine_malformed(con, contract, landed, load_id, loaded_raw.malformed)
            read = loaded_raw.rows_in_raw + malformed
            status = "loaded" if read else "empty"
            quarantined = result.rows_quarantined + malformed
            audit.append(_audit_row(
                run_id, load_id, landed, contract.agency, sha256, status, encoding=loaded_raw.encoding,
                column_map=loaded_raw.column_map.name, read=read, loaded=result.rows_loaded, quarantined=quarantined,
                superseded=result.rows_superseded, unmapped=loaded_raw.unmapped_columns,
                message="the file holds no rows" if not read else None))
            outcomes.append(FileOutcome(landed.relative_path, landed.feed, status, load_id, read,
                                        result.rows_loaded, quarantined, result.rows_superseded))
        _insert_audit(con, audit)
        con.commit()
    except BaseException:
        con.rollback()
        raise
    for outcome, (landed, *_rest, loaded_raw) in zip(outcomes, loads, strict=True):
        if outcome.status == "unreadable":
            log.warning("%s: unreadable, set aside: %s", landed.relative_path, loaded_raw)
        elif outcome.status == "empty":
            log.warning("%s: the file is empty", landed.relative_path)
    return outcomes


# Workbooks parsed ahead on threads (calamine parses without holding the GIL: two cores read two
# workbooks at once), a few files ahead of the one being loaded, so memory stays bounded.
READ_AHEAD = 4


def _opened_ahead(files: list[landing.LandedFile]) -> Iterator[Future]:
    """Futures of each file's ``TextTableReader`` (None for a Parquet file), in order; a file that
    cannot be read raises its ``UnreadableFile`` from ``result()``."""
    def open_reader(landed):
        return None if landed.format == "parquet" else landing.TextTableReader(landed)

    if len(files) == 1:
        done = Future()
        try:
            done.set_result(open_reader(files[0]))
        except landing.UnreadableFile as exc:
            done.set_exception(exc)
        yield done
        return
    with ThreadPoolExecutor(max_workers=min(READ_AHEAD, os.cpu_count() or 1)) as pool:
        pending: deque[Future] = deque()
        for landed in files:
            pending.append(pool.submit(open_reader, landed))
            if len(pending) > READ_AHEAD:
                yield pending.popleft()
        while pending:
            yield pending.popleft()


def _stage(con, contract, loads: list[tuple]) -> dict[int, staged.StageResult]:
    """Stage the loads: text files read through one column map together, from the raw table; a
    Parquet file from its archive; then supersede once for them all."""
    results: dict[int, staged.StageResult] = {}
    by_map: dict[str, list[tuple]] = {}
    for entry in loads:
        loaded_raw = entry[3]
        if loaded_raw.encoding == "parquet":
            results.update(staged.stage_loads(con, contract, loaded_raw.column_map, [entry[2]], loaded_raw.source,
                                              loaded_raw.source_params, loaded_raw.typed_columns))
        else:
            by_map.setdefault(loaded_raw.column_map.name, []).append(entry)
    for entries in by_map.values():
        load_ids = [load_id for _, _, load_id, _ in entries]
        results.update(staged.stage_loads(con, contract, entries[0][3].column_map, load_ids,
                                          raw.raw_loads_source(contract.feed), raw.raw_loads_params(load_ids)))
    if results:
        for load_id, flipped in staged.supersede(con, contract, sorted(results)).items():
            results[load_id].rows_superseded = flipped
    return results


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


def set_validation(con, verdicts: dict[int, bool]) -> None:
    """Each load's verdict, in one statement."""
    if verdicts:
        con.execute("UPDATE load_audit SET validation_passed = v.passed "
                    "FROM (SELECT unnest($ids) AS load_id, unnest($passed) AS passed) AS v "
                    "WHERE load_audit.load_id = v.load_id",
                    {"ids": list(verdicts), "passed": list(verdicts.values())})


AUDIT_SUMMARY_SQL = """
    SELECT delivery_date, agency, feed, source_file, file_status, rows_read, rows_loaded,
           rows_quarantined, rows_superseded, validation_passed
    FROM load_audit
    WHERE run_id = $run_id
    ORDER BY delivery_date, agency, feed, source_file
"""


def audit_summary(con, run_id: int) -> list[tuple]:
    return con.execute(AUDIT_SUMMARY_SQL, {"run_id": run_id}).fetchall()
