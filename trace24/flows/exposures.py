"""The exposure flow: cases and windows → exposures and contacts → the contact graph tables.

Only wiring lives here; the steps are in ``trace24/transforms/contacts/``: ``exposures.py`` and
``contact_graph.py``. Everything runs in one transaction: a run that fails half-way leaves the
previous results whole. The daily flow builds the graph tables (epidemiologists' tables, which no
list needs) with ``graph_stage`` after the lists are out instead.
"""


import datetime as dt
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE

from trace24.settings import DEFAULT_PROFILE, RunSettings
from trace24.transforms import database
from trace24.transforms.contacts import contact_graph, exposures


@task(cache_policy=NONE)
def build_cases(con, params) -> int:
    return exposures.build_cases(con, params)


@task(cache_policy=NONE)
def plan_exposures(con, profile, facilities, as_of) -> exposures.ExposurePlan:
    return exposures.plan_exposures(con, profile, facilities, as_of)


@task(cache_policy=NONE)
def build_exposures(con, profile, params, plan) -> dict[str, int]:
    return exposures.build_exposures(con, profile, params, plan)


@task(cache_policy=NONE)
def build_graph(con) -> dict[str, int]:
    return contact_graph.build_graph_tables(con)


def _trace(con, rules, facilities, params, as_of, with_graph):
    plan = plan_exposures(con, rules, facilities, as_of)
    cases = build_cases(con, params)
    by_setting = build_exposures(con, rules, params, plan)
    graph = build_graph(con) if with_graph else {}
    exposures.record_run(con, rules, as_of, plan)
    return cases, by_setting, graph, plan


def exposure_stage(settings: RunSettings, with_graph: bool = True) -> dict:
    """Find every exposure to an infectious case by the profile's rules as of the settings' as-of
    time, and build the contact graph (unless ``with_graph`` is false: then ``graph_stage`` must run next)."""
    logger = get_run_logger()
    rules, facilities = settings.rules, settings.facilities
    con = database.connect(settings.db_path, settings.schemas)
    try:
        as_of = settings.with_as_of_from(con).as_of
        params = exposures.rule_parameters(rules, facilities, as_of)
        cases, by_setting, graph, plan = database.in_transaction(con, _trace, con, rules, facilities, params, as_of,
                                                                 with_graph)
        levels = exposures.contacts_by_level(con)
    finally:
        con.close()
    logger.info("exposures (%s, as of %s): %d cases, %d exposure rows; %s", rules.name, as_of, cases,
                sum(by_setting.values()), "venue rule for changed cases only" if plan.is_incremental else plan.reason)
    return {"profile": rules.name, "as_of": as_of.isoformat(sep=" "), "cases": cases, "plan": plan.reason,
            "exposures_by_setting": by_setting, "contacts_by_level": levels, "graph": graph}


def graph_stage(settings: RunSettings) -> dict[str, int]:
    """Rebuild the contact graph tables from the stored cases and contacts, in one transaction."""
    con = database.connect(settings.db_path, settings.schemas)
    try:
        graph = database.in_transaction(con, build_graph, con)
    finally:
        con.close()
    get_run_logger().info("contact graph: %s", graph)
    return graph


@flow(name="exposures", log_prints=False)
def exposure_flow(db_path: Path, profile: str = DEFAULT_PROFILE, as_of: dt.datetime | None = None,
                  schemas_dir: Path | None = None, facilities_path: Path | None = None,
                  with_graph: bool = True) -> dict:
    """Find every exposure to an infectious case by the profile's rules and build the contact graph."""
    settings = RunSettings.build(db_path, as_of=as_of, profile=profile, schemas_dir=schemas_dir,
                                 facilities_path=facilities_path)
    return exposure_stage(settings, with_graph)


@flow(name="contact_graph", log_prints=False)
def graph_flow(db_path: Path, schemas_dir: Path | None = None) -> dict[str, int]:
    """Rebuild the contact graph tables from the stored cases and contacts, in one transaction."""
    return graph_stage(RunSettings.build(db_path, schemas_dir=schemas_dir))
