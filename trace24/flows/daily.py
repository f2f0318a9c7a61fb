"""The daily tracing flow: every stage, landing folder to community lists, the clock and the snapshot.

Only wiring lives here. Each stage is its own flow (``trace24 ingest``, ``link`` and ``exposures``
run them alone), run here as a step of this flow with the run's settings, read once: ingest (new
deliveries only), identity, exposures, lists, then the contact graph and validation of the new loads
(no list needs either, so the lists do not wait for them). Then the run publishes: a read-only
snapshot of the published tables swapped in whole, and Prefect artifacts that sum the run up (counts
only). Each stage commits whole or not at all and recomputes from what is stored, so a run killed
anywhere and run again ends where an uninterrupted run ends; the snapshot changes only when a run
finishes.
"""


import dataclasses
import datetime as dt
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE

from trace24.flows.exposures import exposure_stage, graph_stage
from trace24.flows.identity import identity_stage
from trace24.flows.ingest import ingest_stage, validation_stage
from trace24.flows.lists import lists_stage
from trace24.settings import DEFAULT_PROFILE, RunSettings
from trace24.transforms import database
from trace24.transforms.publish import run_report, snapshot


@task(cache_policy=NONE, retries=2, retry_delay_seconds=1)
def publish_snapshot(settings: RunSettings, info: dict) -> dict[str, int]:
    """Copying into a new file and renaming it is I/O: retried."""
    con = database.connect(settings.db_path, settings.schemas)
    try:
        return snapshot.publish_snapshot(con, settings.published, settings.snapshot_path, info)
    finally:
        con.close()


@task(cache_policy=NONE)
def report_run(settings: RunSettings, ingest_run_id: int, stages: list[dict]) -> run_report.RunReport:
    """The run's summary as Prefect artifacts: a markdown page and its tables (counts only)."""
    as_of = settings.as_of
    con = database.connect(settings.db_path, settings.schemas)
    try:
        report = run_report.summarise(con, ingest_run_id, as_of, settings.rules.name,
                                      settings.layout.unknown_district, stages)
    finally:
        con.close()
    create_markdown_artifact(report.markdown, key="daily-tracing-summary",
                             description=f"trace24 daily run as of {as_of:%Y-%m-%d %H:%M}")
    for key, rows in report.tables.items():
        create_table_artifact(rows, key=key, description=f"{key} as of {as_of:%Y-%m-%d %H:%M}")
    return report


def _as_of_fixed(settings: RunSettings) -> RunSettings:
    """The settings with the run's as-of time, once the deliveries are in: every later stage uses it."""
    con = database.connect(settings.db_path, settings.schemas)
    try:
        return settings.with_as_of_from(con)
    finally:
        con.close()


@flow(name="daily_tracing", log_prints=False)
def daily_tracing(landing_dir: Path, db_path: Path, out_dir: Path, as_of: dt.datetime | None = None,
                  profile: str = DEFAULT_PROFILE, run_validation: bool = True, progress: bool = False,
                  snapshot_path: Path | None = None, schemas_dir: Path | None = None,
                  facilities_path: Path | None = None) -> dict:
    """Ingest what was delivered by ``as_of``, resolve persons, find exposures, classify, write the
    lists, publish the snapshot. ``as_of`` defaults to the end of the last delivery day."""
    logger = get_run_logger()
    clock = run_report.StageClock()
    # Every contract file is read here, once: a broken one stops the run before it touches data.
    settings = RunSettings.build(db_path, landing_dir=landing_dir, out_dir=out_dir, as_of=as_of, profile=profile,
                                 schemas_dir=schemas_dir, facilities_path=facilities_path,
                                 snapshot_path=snapshot_path, run_validation=run_validation)
    # Each stage runs as a step of this flow run, not as a subflow: a subflow cost ~0.4 s of API
    # calls to create and settle its own flow run (and its heartbeat thread 1 s more,
    # PrefectHQ/prefect#19641), a fifth of a new result's way to the lists. Until the lists are
    # out, no stage's connection checkpoints the store on closing (the graph stage's, the first
    # after them, does it for all).
    with database.checkpoints_deferred():
        # The new loads are validated after the lists (below), so no list waits for them.
        ingested = ingest_stage(dataclasses.replace(settings, run_validation=False), progress)
        clock.done("ingest")
        settings = _as_of_fixed(settings)
        identity = identity_stage(settings)
        clock.done("identity")
        traced = exposure_stage(settings, with_graph=False)
        clock.done("exposures")
        listed = lists_stage(settings)
        clock.done("lists")
    # The contact graph is for epidemiologists (read in the snapshot, published below): no list
    # waits for it.
    graph_stage(settings)
    clock.done("graph")
    if settings.run_validation:
        validation_stage(settings)
        clock.done("validation")
    tables = publish_snapshot(settings, {
        "as_of": settings.as_of, "profile": settings.rules.name, "ingest_run_id": ingested["run_id"],
        "list_folder": listed["lists_dir"]})
    clock.done("snapshot")
    report_run(settings, ingested["run_id"], clock.stages)
    logger.info("daily tracing as of %s (%s): %s; snapshot %s with %d tables", settings.as_of, settings.rules.name,
                listed["categories"], settings.snapshot_path, len(tables))
    return {**listed, "as_of": settings.as_of.isoformat(sep=" "), "ingest_run_id": ingested["run_id"],
            "persons": identity["persons"], "cases": traced["cases"], "snapshot": str(settings.snapshot_path),
            "stages": clock.stages}
