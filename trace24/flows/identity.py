"""The identity flow: staged records → persons, person_records, link_review, person_communities.

Only wiring lives here; the steps are in ``trace24/transforms/persons/``: ``identity.py``,
``linkage.py`` and ``community.py``. Each step that writes is one transaction: a run that fails half-way leaves the
persons of the previous run as they were, and the next run finishes what it began. Linkage runs
only when its inputs changed, and only the persons with new records are redone when nothing else
moved (``linkage.plan_linkage``, ``identity.refresh_scope``).
"""


import logging
from dataclasses import asdict
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE

from trace24.settings import RunSettings
from trace24.transforms import database
from trace24.transforms.persons import community, identity, linkage

log = logging.getLogger(__name__)


@task(cache_policy=NONE)
def link_exact(con, schemas) -> dict:
    return {"records_added": identity.add_identity_records(con, schemas), "exact_links": identity.link_exact(con)}


@task(cache_policy=NONE)
def plan_linkage(con, profile, reviewed) -> linkage.LinkagePlan:
    return linkage.plan_linkage(con, profile, reviewed)


@task(cache_policy=NONE)
def score_pairs(con, profile) -> int:
    return linkage.score_pairs(con, profile)


@task(cache_policy=NONE)
def resolve_links(con, profile, reviewed) -> linkage.LinkOutcome:
    return linkage.resolve(con, profile, reviewed)


@task(cache_policy=NONE)
def assign_communities(con, certain_at, changed_only) -> dict[str, int]:
    return community.assign_communities(con, certain_at, changed_only)


@task(cache_policy=NONE)
def build_persons(con, changed_only) -> int:
    return identity.build_persons(con, changed_only)


def identity_stage(settings: RunSettings) -> dict:
    """Resolve who every staged record is about and where each person belongs."""
    logger = get_run_logger()
    schemas, profile = settings.schemas, settings.linkage
    reviewed = linkage.read_reviewed_pairs(settings.reviewed_pairs)  # a bad decisions file stops here
    con = database.connect(settings.db_path, schemas)
    try:
        database.in_transaction(con, identity.ensure_tables, con)  # an older store's new tables: whole
        exact = database.in_transaction(con, link_exact, con, schemas)  # new records, linked by ID: one step
        plan = plan_linkage(con, profile, reviewed)  # reads only; its results are temporary tables
        if plan.is_needed:
            score_pairs(con, profile)  # likewise
        outcome, scope, methods, persons = database.in_transaction(con, _decide, con, profile, reviewed, plan)
        review_rows = linkage.export_review(con, settings.review_csv)
    finally:
        con.close()
    logger.info("identity: %d persons; %d records without a valid ID, %d pairs to review; linkage: %s; "
                "persons redone: %s", persons, outcome.records, outcome.review_pairs, plan.reason, scope.reason)
    return {"persons": persons, **exact, "linkage": asdict(outcome), "linkage_reason": plan.reason,
            "refresh": scope.reason, "communities": methods, "review_csv": str(settings.review_csv),
            "review_rows": review_rows}


@flow(name="identity", log_prints=False)
def identity_flow(db_path: Path, review_csv: Path | None = None, reviewed_pairs: Path | None = None,
                  schemas_dir: Path | None = None, linkage_profile: Path | None = None) -> dict:
    """Resolve who every staged record is about and where each person belongs (the review queue and
    the analysts' decisions beside the store unless named)."""
    return identity_stage(RunSettings.build(db_path, schemas_dir=schemas_dir, linkage_path=linkage_profile,
                                            review_csv=review_csv, reviewed_pairs=reviewed_pairs))


def _decide(con, profile, reviewed, plan):
    outcome = resolve_links(con, profile, reviewed) if plan.is_needed else linkage.stored_outcome(con)
    linkage.store_profiles(con, plan)
    scope = identity.refresh_scope(con, plan.is_needed)
    methods = assign_communities(con, profile.auto_link, scope.changed_only)
    persons = build_persons(con, scope.changed_only)
    identity.finish_refresh(con, scope)
    return outcome, scope, methods, persons
