"""The ingest flow: landing folder → raw → staged, validated, audited.

Only wiring lives here: which step runs after which, with what retries. The steps are in
``trace24/transforms/ingest/``. Files load one after another on one DuckDB connection (DuckDB allows
one writer); each file (or a feed's small files of a day) is its own transaction, so an interrupted
run keeps what it finished.
"""


import datetime as dt
import logging
from dataclasses import asdict
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE

from trace24.settings import RunSettings
from trace24.transforms import database
from trace24.transforms.ingest import landing, load

log = logging.getLogger(__name__)


@task(cache_policy=NONE, retries=2, retry_delay_seconds=1)
def discover_files(landing_dir: Path, feeds_by_agency: dict[str, list[str]], through: dt.date | None = None):
    """Reading the landing folder is I/O: retried when a share hiccups."""
    return landing.discover(landing_dir, feeds_by_agency, through)


# One task for the day's files, not one per file: a task run costs ~70 ms of API calls, and a city's
# offices return a list and a health-check file each, 500 files a day at a million residents.
# What each file gave is in the load audit and the run's summary artifact.
@task(cache_policy=NONE)
def load_new_files(con, schemas, files: list[landing.LandedFile], run_id: int, archive_dir: Path,
                   advance) -> list[load.FileOutcome]:
    """Load every file not loaded before (same path, same SHA-256); a feed's small files of a day
    together, any other file in a transaction of its own."""
    logger = get_run_logger()

    def loaded(outcome: load.FileOutcome) -> None:
        if outcome.status != "skipped":
            logger.info("file %s: %s", outcome.source_file, outcome.status)   # a path, no person
        advance(outcome.source_file)

    return load.ingest_files(con, schemas, files, run_id, archive_dir, on_file=loaded)


@task(cache_policy=NONE)
def validate_loads(con, schemas, db_path: Path) -> str | None:
    from trace24.transforms.ingest.validate import Validator

    loads = load.loads_awaiting_validation(con)
    if not loads:
        return None
    validator = Validator(db_path)
    by_feed: dict[str, list[tuple[int, str]]] = {}
    for feed, load_id, source_file in loads:
        by_feed.setdefault(feed, []).append((load_id, source_file))
    for feed, feed_loads in sorted(by_feed.items()):
        load.set_validation(con, validator.validate_loads(con, schemas.feeds[feed], feed_loads))
    return validator.build_docs()


def validation_stage(settings: RunSettings) -> str | None:
    """Validate every load not validated yet against its feed's suite; return the data docs' index."""
    con = database.connect(settings.db_path, settings.schemas)
    try:
        return validate_loads(con, settings.schemas, settings.db_path)
    finally:
        con.close()


@flow(name="validation", log_prints=False)
def validation_flow(db_path: Path, schemas_dir: Path | None = None) -> str | None:
    """Validate every load not validated yet against its feed's suite; return the data docs' index.

    Nothing downstream waits for it (a load is used whatever its validation says; analysts read the
    outcome), so the daily flow runs it after the lists are out."""
    return validation_stage(RunSettings.build(db_path, schemas_dir=schemas_dir))


def ingest_stage(settings: RunSettings, progress: bool = False) -> dict:
    """Load every new file under the landing folder into the store (delivery days before the
    settings' as-of time only, when it is set); validate the new loads if the settings say so."""
    logger = get_run_logger()
    schemas, db_path, landing_dir, through = settings.schemas, settings.db_path, settings.landing_dir, settings.through
    feeds_by_agency: dict[str, list[str]] = {}
    for contract in schemas.feeds.values():
        feeds_by_agency.setdefault(contract.agency, []).append(contract.feed)
    files, unknown = discover_files(landing_dir, feeds_by_agency, through)
    con = database.connect(db_path, schemas)
    try:
        run_id = load.start_run(con, landing_dir)
        missing = load.missing_feeds(schemas, landing_dir, files, through)
        warnings = load.record_warnings(con, run_id, missing, unknown)
        for text in warnings:
            logger.warning(text)
        with _progress(progress, len(files)) as advance:
            outcomes = load_new_files(con, schemas, files, run_id, load.archive_dir_for(db_path), advance)
        docs = validate_loads(con, schemas, db_path) if settings.run_validation else None
        load.finish_run(con, run_id, outcomes)
        loaded = [o for o in outcomes if o.status != "skipped"]
        logger.info("run %s: %d files loaded, %d already loaded before", run_id, len(loaded),
                    len(outcomes) - len(loaded))
        return {"run_id": run_id, "files": [asdict(o) for o in outcomes], "warnings": warnings,
                "data_docs": docs}
    finally:
        con.close()


@flow(name="ingest", log_prints=False)
def ingest_flow(landing_dir: Path, db_path: Path, schemas_dir: Path | None = None, run_validation: bool = True,
                progress: bool = False, as_of: dt.datetime | None = None) -> dict:
    """Load every new file under ``landing_dir`` into the DuckDB file ``db_path`` (delivery days
    before ``as_of`` only, when given)."""
    settings = RunSettings.build(db_path, landing_dir=landing_dir, schemas_dir=schemas_dir, as_of=as_of,
                                 run_validation=run_validation)  # a broken configuration stops here
    return ingest_stage(settings, progress)


class _progress:
    """A rich progress bar over files when asked for, a no-op otherwise."""

    def __init__(self, enabled: bool, total: int):
        self.enabled, self.total = enabled, total

    def __enter__(self):
        if not self.enabled:
            return lambda _name: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(TextColumn("[bold]ingest"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), TextColumn("{task.description}"), transient=True)
        self._bar.start()
        task_id = self._bar.add_task("", total=self.total)
        return lambda name: self._bar.update(task_id, advance=1, description=name)

    def __exit__(self, *exc):
        if self.enabled:
            self._bar.stop()
        return False
