"""The daily tracing flow: every stage, landing folder to community lists and the 24-hour clock.

Only wiring lives here. Ingest, identity and exposures are their own flows (subflows here); the
last stage (categories, lists, clock) writes its tables in one transaction and its files into a
staging folder, commits, then swaps the folder in: a run that fails leaves the previous tables
and lists whole.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE

from flows.exposures import exposure_flow
from flows.identity import identity_flow
from flows.ingest import ingest_flow
from schemas import load_schemas
from schemas.rules import load_facilities, load_rule_profile
from transforms import categories, community_lists, database, exposures, tracing_clock


@task(cache_policy=NONE)
def classify(con, params) -> dict[str, int]:
    return categories.build_categories(con, params)


@task(cache_policy=NONE)
def build_lists(con, params) -> int:
    return community_lists.build_list_rows(con, params)


@task(cache_policy=NONE, retries=2, retry_delay_seconds=1)
def write_lists(con, layout, staging: Path, as_of: dt.datetime, profile: str) -> dict:
    """Writing files is I/O: retried (into the same staging folder) when a share hiccups."""
    return community_lists.write_lists(con, layout, staging, as_of, profile)


@task(cache_policy=NONE)
def run_clock(con, params) -> list[tuple]:
    return tracing_clock.build_clock(con, params)


def _last_stage(con, category_params, list_params, clock_params, layout, staging, as_of, profile):
    counts = classify(con, category_params)
    build_lists(con, list_params)
    manifest = write_lists(con, layout, staging, as_of, profile)
    compliance = run_clock(con, clock_params)
    return counts, manifest, compliance


@flow(name="daily_tracing", log_prints=False)
def daily_tracing(landing_dir: Path, db_path: Path, out_dir: Path, as_of: dt.datetime | None = None,
                  profile: str = "nhc-v6", run_validation: bool = True, progress: bool = False) -> dict:
    """Ingest what was delivered by ``as_of``, resolve persons, find exposures, classify, write the lists."""
    logger = get_run_logger()
    rules = load_rule_profile(profile)
    facilities = load_facilities()
    layout = community_lists.load_layout()
    through = (as_of - dt.timedelta(microseconds=1)).date() if as_of else None
    ingested = ingest_flow(landing_dir=landing_dir, db_path=db_path, run_validation=run_validation,
                           progress=progress, through=through)
    identity = identity_flow(db_path=db_path, review_csv=db_path.with_name("link_review.csv"),
                             reviewed_pairs=db_path.with_name("reviewed_pairs.csv"))
    traced = exposure_flow(db_path=db_path, profile=profile, as_of=as_of)
    con = database.connect(db_path, load_schemas())
    try:
        as_of = as_of or exposures.default_as_of(con)
        category_params = categories.category_parameters(rules, list(facilities.isolating_hospitals), as_of)
        list_params = community_lists.list_parameters(layout, rules, as_of)
        clock_params = tracing_clock.clock_parameters(rules, layout.unknown_district, as_of)
        staging = community_lists.staging_folder(out_dir, as_of)
        try:
            counts, manifest, compliance = database.in_transaction(
                con, _last_stage, con, category_params, list_params, clock_params, layout, staging, as_of,
                rules.name)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        lists_dir = community_lists.publish(staging, out_dir, as_of)
    finally:
        con.close()
    logger.info("daily tracing as of %s (%s): %s; %d list files", as_of, rules.name, counts, len(manifest["files"]))
    return {"as_of": as_of.isoformat(sep=" "), "profile": rules.name, "ingest_run_id": ingested["run_id"],
            "persons": identity["persons"], "cases": traced["cases"], "categories": counts,
            "lists_dir": str(lists_dir), "list_files": len(manifest["files"]), "list_rows": manifest["rows"],
            "compliance": [list(map(str, row)) for row in compliance]}
