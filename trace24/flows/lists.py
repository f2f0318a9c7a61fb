"""The lists flow: persons and exposures → the four categories, the community lists, the clock.

Only wiring lives here; the steps are ``trace24/transforms/categories/classify.py`` and, in
``trace24/transforms/lists/``, ``community_lists.py`` and ``tracing_clock.py``. The tables are
written in one transaction and the files into a staging folder that is swapped in after the
commit: a run that fails leaves the previous tables and lists whole.
"""


import datetime as dt
import shutil
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE

from trace24.settings import DEFAULT_PROFILE, RunSettings
from trace24.transforms import database
from trace24.transforms.categories import classify
from trace24.transforms.lists import community_lists, tracing_clock


@task(cache_policy=NONE)
def classify_persons(con, params) -> dict[str, int]:
    return classify.build_categories(con, params)


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


@task(cache_policy=NONE, retries=2, retry_delay_seconds=1)
def publish_lists(staging: Path, out_dir: Path, as_of: dt.datetime) -> Path:
    """Swapping the folder in is I/O: retried."""
    return community_lists.publish(staging, out_dir, as_of)


def _last_stage(con, category_params, list_params, clock_params, layout, staging, as_of, profile):
    counts = classify_persons(con, category_params)
    build_lists(con, list_params)
    manifest = write_lists(con, layout, staging, as_of, profile)
    compliance = run_clock(con, clock_params)
    return counts, manifest, compliance


def lists_stage(settings: RunSettings) -> dict:
    """Classify everyone, write each community's list under ``<out>/<as-of date>``, run the clock."""
    logger = get_run_logger()
    rules, layout, out_dir = settings.rules, settings.layout, settings.out_dir
    con = database.connect(settings.db_path, settings.schemas)
    try:
        as_of = settings.with_as_of_from(con).as_of
        category_params = classify.category_parameters(rules, list(settings.facilities.isolating_hospitals), as_of)
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
    finally:
        con.close()
    lists_dir = publish_lists(staging, out_dir, as_of)
    logger.info("lists as of %s (%s): %s; %d list files", as_of, rules.name, counts, len(manifest["files"]))
    return {"as_of": as_of, "profile": rules.name, "categories": counts, "lists_dir": str(lists_dir),
            "list_files": len(manifest["files"]), "list_rows": manifest["rows"],
            "compliance": [list(map(str, row)) for row in compliance]}


@flow(name="lists", log_prints=False)
def lists_flow(db_path: Path, out_dir: Path, as_of: dt.datetime | None = None, profile: str = DEFAULT_PROFILE,
               schemas_dir: Path | None = None, facilities_path: Path | None = None) -> dict:
    """Classify everyone, write each community's list under ``out_dir/<as-of date>``, run the clock."""
    settings = RunSettings.build(db_path, out_dir=out_dir, as_of=as_of, profile=profile, schemas_dir=schemas_dir,
                                 facilities_path=facilities_path)
    return lists_stage(settings)
