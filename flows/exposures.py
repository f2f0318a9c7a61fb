"""The exposure flow: cases and windows → exposures and contacts → the contact graph tables.

Only wiring lives here; the steps are in ``transforms/exposures.py`` and ``contact_graph.py``.
Everything runs in one transaction: a run that fails half-way leaves the previous results whole.
The daily flow builds the graph tables (epidemiologists' tables, which no list needs) with
``graph_flow`` after the lists are out instead.
"""


import datetime as dt
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE

from schemas import load_schemas
from schemas.rules import load_facilities, load_rule_profile
from transforms import contact_graph, database, exposures


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


@flow(name="exposures", log_prints=False)
def exposure_flow(db_path: Path, profile: str = "nhc-v6", as_of: dt.datetime | None = None,
                  schemas_dir: Path | None = None, facilities_path: Path | None = None,
                  with_graph: bool = True) -> dict:
    """Find every exposure to an infectious case by the profile's rules and build the contact graph
    (unless ``with_graph`` is false: then ``graph_flow`` must run next)."""
    logger = get_run_logger()
    rules = load_rule_profile(profile)
    facilities = load_facilities(facilities_path)
    con = database.connect(db_path, load_schemas(schemas_dir))
    try:
        as_of = as_of or exposures.default_as_of(con)
        params = exposures.rule_parameters(rules, facilities, as_of)
        cases, by_setting, graph, plan = database.in_transaction(con, _trace, con, rules, facilities, params, as_of,
                                                                 with_graph)
        levels = dict(con.execute("SELECT contact_level, count(*) FROM core_contacts GROUP BY 1 ORDER BY 1")
                      .fetchall())
    finally:
        con.close()
    logger.info("exposures (%s, as of %s): %d cases, %d exposure rows; %s", rules.name, as_of, cases,
                sum(by_setting.values()), "venue rule for changed cases only" if plan.is_incremental else plan.reason)
    return {"profile": rules.name, "as_of": as_of.isoformat(sep=" "), "cases": cases, "plan": plan.reason,
            "exposures_by_setting": by_setting, "contacts_by_level": levels, "graph": graph}


@flow(name="contact_graph", log_prints=False)
def graph_flow(db_path: Path, schemas_dir: Path | None = None) -> dict[str, int]:
    """Rebuild the contact graph tables from the stored cases and contacts, in one transaction."""
    con = database.connect(db_path, load_schemas(schemas_dir))
    try:
        graph = database.in_transaction(con, build_graph, con)
    finally:
        con.close()
    get_run_logger().info("contact graph: %s", graph)
    return graph
