"""The daily tracing flow: every stage, landing folder to community lists, the clock and the snapshot.

Only wiring lives here. Each stage is its own flow (``trace24 ingest`` and ``link`` run them alone),
run here as a step of this flow: ingest (new deliveries only), identity, exposures, lists, then the
contact graph and validation of the new loads (no list needs either, so the lists do not wait for
them). Then the run publishes: a read-only snapshot of the published tables swapped in whole, and
Prefect artifacts that sum the run up (counts only). Each stage commits whole or not at all and
recomputes from what is stored, so a run killed anywhere and run again ends where an uninterrupted
run ends; the snapshot changes only when a run finishes.
"""


import datetime as dt
import time
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE

from flows.exposures import exposure_flow, graph_flow
from flows.identity import identity_flow
from flows.ingest import ingest_flow, validation_flow
from flows.lists import lists_flow
from schemas import load_schemas
from schemas.published import load_published
from trace24.peak_memory import peak_memory_bytes
from transforms import community_lists, database, run_report, snapshot


class StageClock:
    """Wall time of each stage and the process's peak memory when it ended (DuckDB's included):
    for the run report, and for the benchmarks, which read them from the result."""

    def __init__(self):
        self.stages: list[dict] = []
        self._started = time.perf_counter()

    def done(self, stage: str) -> None:
        now = time.perf_counter()
        peak = peak_memory_bytes() / 2**30
        self.stages.append({"stage": stage, "seconds": round(now - self._started, 2),
                            "peak_memory_gib": round(peak, 2)})
        self._started = now


def stage(stage_flow, **parameters):
    """Run a stage's flow as a step of this flow run: its tasks become this run's tasks. As a
    subflow each stage cost ~0.4 s of API calls to create and settle its own flow run (and its
    heartbeat thread 1 s more, PrefectHQ/prefect#19641): a fifth of a new result's way to the lists."""
    return stage_flow.fn(**parameters)


@task(cache_policy=NONE, retries=2, retry_delay_seconds=1)
def publish_snapshot(db_path: Path, snapshot_path: Path, info: dict) -> dict[str, int]:
    """Copying into a new file and renaming it is I/O: retried."""
    con = database.connect(db_path, load_schemas())
    try:
        return snapshot.publish_snapshot(con, load_published(), snapshot_path, info)
    finally:
        con.close()


@task(cache_policy=NONE)
def report_run(db_path: Path, ingest_run_id: int, as_of: dt.datetime, profile: str,
               stages: list[dict]) -> run_report.RunReport:
    """The run's summary as Prefect artifacts: a markdown page and its tables (counts only)."""
    layout = community_lists.load_layout()
    con = database.connect(db_path, load_schemas())
    try:
        report = run_report.summarise(con, ingest_run_id, as_of, profile, layout.unknown_district, stages)
    finally:
        con.close()
    create_markdown_artifact(report.markdown, key="daily-tracing-summary",
                             description=f"trace24 daily run as of {as_of:%Y-%m-%d %H:%M}")
    for key, rows in report.tables.items():
        create_table_artifact(rows, key=key, description=f"{key} as of {as_of:%Y-%m-%d %H:%M}")
    return report


@flow(name="daily_tracing", log_prints=False)
def daily_tracing(landing_dir: Path, db_path: Path, out_dir: Path, as_of: dt.datetime | None = None,
                  profile: str = "nhc-v6", run_validation: bool = True, progress: bool = False,
                  snapshot_path: Path | None = None) -> dict:
    """Ingest what was delivered by ``as_of``, resolve persons, find exposures, classify, write the
    lists, publish the snapshot. ``as_of`` defaults to the end of the last delivery day."""
    logger = get_run_logger()
    clock = StageClock()
    through = (as_of - dt.timedelta(microseconds=1)).date() if as_of else None
    # Until the lists are out, no stage's connection checkpoints the store on closing (the graph
    # stage's, the first after them, does it for all).
    with database.checkpoints_deferred():
        ingested = stage(ingest_flow, landing_dir=landing_dir, db_path=db_path, run_validation=False,
                         progress=progress, through=through)
        clock.done("ingest")
        identity = stage(identity_flow, db_path=db_path, review_csv=db_path.with_name("link_review.csv"),
                         reviewed_pairs=db_path.with_name("reviewed_pairs.csv"))
        clock.done("identity")
        traced = stage(exposure_flow, db_path=db_path, profile=profile, as_of=as_of, with_graph=False)
        clock.done("exposures")
        listed = stage(lists_flow, db_path=db_path, out_dir=out_dir, as_of=as_of, profile=profile)
        clock.done("lists")
    # The contact graph is for epidemiologists (read in the snapshot, published below): no list
    # waits for it.
    stage(graph_flow, db_path=db_path)
    clock.done("graph")
    if run_validation:
        stage(validation_flow, db_path=db_path)
        clock.done("validation")
    as_of = listed["as_of"]
    snapshot_path = Path(snapshot_path or snapshot.snapshot_path_for(db_path))
    tables = publish_snapshot(db_path, snapshot_path, {
        "as_of": as_of, "profile": listed["profile"], "ingest_run_id": ingested["run_id"],
        "list_folder": listed["lists_dir"]})
    clock.done("snapshot")
    report_run(db_path, ingested["run_id"], as_of, listed["profile"], clock.stages)
    logger.info("daily tracing as of %s (%s): %s; snapshot %s with %d tables", as_of, listed["profile"],
                listed["categories"], snapshot_path, len(tables))
    return {**listed, "as_of": as_of.isoformat(sep=" "), "ingest_run_id": ingested["run_id"],
            "persons": identity["persons"], "cases": traced["cases"], "snapshot": str(snapshot_path),
            "stages": clock.stages}
