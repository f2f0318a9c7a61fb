"""The lists flow: persons and exposures → the four categories, the community lists, the clock.

Only wiring lives here; the steps are ``trace24/transforms/categories/classify.py``, the offices'
answers (``trace24/transforms/followup/``), the response (``trace24/transforms/response/``) and, in
``trace24/transforms/lists/``, the lists, their workbooks, the sheets and the clocks. The tables are
written in one transaction and the files into a staging folder that is swapped in after the
commit: a run that fails leaves the previous tables and lists whole.
"""


import datetime as dt
import shutil
import time
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE

from trace24.settings import DEFAULT_PROFILE, RunSettings
from trace24.transforms import database
from trace24.transforms.categories import classify
from trace24.transforms.followup import answers as followup_answers
from trace24.transforms.followup import escalations as followup_escalations
from trace24.transforms.followup import health_checks as followup_checks
from trace24.transforms.lists import (
    closure_clock,
    community_lists,
    escalation_sheets,
    list_workbooks,
    response_sheets,
    risk_area_sheets,
    tracing_clock,
    transfer_clock,
)
from trace24.transforms.persons import community, identity
from trace24.transforms.response import beds, closures, dispatch, history, trips


@task(cache_policy=NONE)
def classify_persons(con, params) -> dict[str, int]:
    return classify.build_categories(con, params)


@task(cache_policy=NONE)
def follow_up(con, settings: RunSettings, answers: list_workbooks.AnswerLayout) -> dict[str, dict[str, int]]:
    """Before the categories (a feverish check raises one): the offices' answers to their lists
    (``core_followup``) and the daily health checks (``core_health_checks``), with what was set aside.
    A phone or address an office corrected (信息有误) is in persons and their communities at once,
    as identity and community assignment take a record: the run's lists already use it."""
    community_lists.ensure_out_list_rows(con)
    counts = followup_answers.build_followup(con, followup_answers.followup_parameters(
        answers.values, list(answers.controlling), settings.as_of, answers.corrections))
    moved, rephoned = identity.note_corrected_persons(con)
    if moved:
        community.assign_communities(con, settings.linkage.auto_link, changed_only=True)
        identity.build_persons(con, changed_only=True)
        identity.forget_changes(con)
    if rephoned:
        identity.apply_corrected_phones(con)
    checks = followup_checks.build_health_checks(con, followup_checks.health_check_parameters(settings.as_of))
    return {"answers": counts, "health_checks": checks}


@task(cache_policy=NONE)
def escalate(con, settings: RunSettings, answers: list_workbooks.AnswerLayout) -> dict[str, int]:
    """After the categories: early releases refused, and whom an office could not bring under
    control or stopped checking (``followup_escalations``)."""
    refused = followup_checks.refuse_early_releases(con, followup_checks.health_check_parameters(settings.as_of))
    escalated = followup_escalations.build_escalations(con, followup_escalations.escalation_parameters(
        answers.escalations, answers.missing_checks, settings.rules.categories.missing_check_days,
        settings.layout.unknown_district, settings.as_of))
    return {"releases_refused": refused, "escalated": sum(escalated.values()), **escalated}


@task(cache_policy=NONE)
def build_lists(con, params) -> int:
    return community_lists.build_list_rows(con, params)


@task(cache_policy=NONE, retries=2, retry_delay_seconds=1)
def write_lists(con, settings: RunSettings, answers: list_workbooks.AnswerLayout, staging: Path) -> dict:
    """Each list as CSV and XLSX, and the escalation sheets: the manifest's entries. Writing files is
    I/O: retried (into the same staging folder) when a share hiccups."""
    layout_file = settings.schemas.root / "community_lists.yaml"
    sheet = list_workbooks.sheet_spec(settings.layout.headers, answers, settings.as_of)
    manifest = community_lists.write_lists(con, settings.layout, staging, settings.as_of, settings.rules.name, sheet)
    escalated = escalation_sheets.write_sheets(con, settings.layout,
                                               escalation_sheets.load_escalation_layout(layout_file), staging)
    return {**manifest, "escalation_sheets": escalated}


@task(cache_policy=NONE)
def run_clock(con, params) -> list[tuple]:
    return tracing_clock.build_clock(con, params)


@task(cache_policy=NONE, retries=2, retry_delay_seconds=1)
def publish_lists(staging: Path, out_dir: Path, as_of: dt.datetime) -> Path:
    """Swapping the folder in is I/O: retried."""
    return community_lists.publish(staging, out_dir, as_of)


def _plan_transfers(con, settings: RunSettings) -> dict:
    rules, as_of = settings.rules, settings.as_of
    hops = settings.districts.hops()
    facilities = beds.build_bed_pools(con, beds.bed_parameters(rules, settings.facilities, as_of))
    params = dispatch.dispatch_parameters(rules.dispatch, settings.layout.unknown_district, as_of)
    planned = dispatch.assign_beds(con, rules.dispatch, hops, params)
    planned_trips = trips.plan_trips(con, rules.dispatch, hops, as_of)
    history.record_history(con, as_of)
    return {"facilities": facilities, **planned, **planned_trips}


# The response runs as three tasks, not one per step: each task run costs the flow its own API
# calls, and the response must stay a small part of a new result's way to the lists.
@task(cache_policy=NONE)
def respond(con, settings: RunSettings) -> dict:
    """Beds as of the run, the assignment and the trips (``bed_occupancy``, ``dispatch_plan`` and the
    rest), then the risk areas the cases make (``risk_areas``, ``risk_area_history``)."""
    transfers = _plan_transfers(con, settings)
    params = closures.closure_parameters(settings.rules.closures, list(settings.districts.borders),
                                         settings.layout.unknown_district, settings.as_of)
    return {"transfers": transfers, "areas": closures.build_risk_areas(con, params)}


@task(cache_policy=NONE, retries=2, retry_delay_seconds=1)
def write_response_sheets(con, settings: RunSettings, staging: Path) -> dict[str, list[dict]]:
    """Each district's 风险区域清单 (recorded in ``out_risk_area_rows``) and 转运车次单, each
    facility's arrival sheet: their manifest entries. Writing is I/O, so retried."""
    scopes = [a.scope for a in settings.rules.closures.areas]
    params = risk_area_sheets.sheet_parameters(settings.area_sheet, scopes, settings.layout.unknown_district,
                                               settings.as_of)
    risk_area_sheets.build_sheet_rows(con, params)
    area_entries = risk_area_sheets.write_sheets(con, settings.area_sheet, staging)
    sheets = response_sheets.load_sheets_layout(settings.schemas.root / "community_lists.yaml")
    return {"risk_area_sheets": area_entries,
            **response_sheets.write_sheets(con, settings.layout, sheets, settings.rules.dispatch, staging,
                                           settings.as_of)}


@task(cache_policy=NONE)
def run_response_clocks(con, settings: RunSettings) -> tuple[list[tuple], list[tuple]]:
    """The 疫点封控 clock and the transfer clock: their compliance rows."""
    unknown, as_of = settings.layout.unknown_district, settings.as_of
    closed = closure_clock.build_closure_clock(
        con, closure_clock.closure_clock_parameters(settings.rules.closures, unknown, as_of))
    transferred = transfer_clock.build_transfer_clock(
        con, transfer_clock.transfer_clock_parameters(settings.rules.dispatch, unknown, as_of))
    return closed, transferred


def _last_stage(con, settings: RunSettings, staging: Path) -> dict:
    """Everything after the contacts, in order; ``settings.as_of`` is the run's. For the benchmarks,
    ``response_seconds`` times the response's parts (beds and trips, areas, their sheets and clocks)
    and ``followup_seconds`` the offices' answers and checks, and their escalations."""
    rules, layout, as_of = settings.rules, settings.layout, settings.as_of
    timer = _Timer()
    answer_layout = list_workbooks.load_answer_layout(settings.schemas.root / "community_lists.yaml")
    followed = follow_up(con, settings, answer_layout)
    timer.lap("answers_and_checks", part="followup")
    counts = classify_persons(con, classify.category_parameters(rules, list(settings.facilities.isolating_hospitals),
                                                                 as_of))
    timer.lap(None)
    answers = {**followed["answers"], **escalate(con, settings, answer_layout)}
    timer.lap("escalations", part="followup")
    response = respond(con, settings)
    timer.lap("dispatch_and_closures")
    build_lists(con, community_lists.list_parameters(layout, rules, as_of))
    manifest = write_lists(con, settings, answer_layout, staging)
    timer.lap(None)
    manifest = {**manifest, **write_response_sheets(con, settings, staging)}
    timer.lap("sheets")
    community_lists.write_manifest(staging, manifest)   # once, with every file of the run
    compliance = run_clock(con, tracing_clock.clock_parameters(rules, layout.unknown_district, as_of))
    timer.lap(None)
    closure_compliance, transfer_compliance = run_response_clocks(con, settings)
    timer.lap("clocks")
    return {"categories": counts, "answers": answers, "health_checks": followed["health_checks"],
            "transfers": response["transfers"], "areas": response["areas"],
            "manifest": manifest,
            "compliance": compliance, "closure_compliance": closure_compliance,
            "transfer_compliance": transfer_compliance, "response_seconds": timer.parts["response"],
            "followup_seconds": timer.parts["followup"]}


class _Timer:
    """Wall time of the named steps of a stage, grouped by part (``response``, ``followup``); a step
    named None is timed for no part."""

    def __init__(self):
        self.parts: dict[str, dict[str, float]] = {"response": {}, "followup": {}}
        self._at = time.perf_counter()

    def lap(self, name: str | None, part: str = "response") -> None:
        now = time.perf_counter()
        if name:
            self.parts[part][name] = round(now - self._at, 3)
        self._at = now


def lists_stage(settings: RunSettings) -> dict:
    """Classify everyone, plan transfers and closures, write each community's list under
    ``<out>/<as-of date>``, run the clocks."""
    logger = get_run_logger()
    con = database.connect(settings.db_path, settings.schemas)
    try:
        settings = settings.with_as_of_from(con)
        staging = community_lists.staging_folder(settings.out_dir, settings.as_of)
        try:
            done = database.in_transaction(con, _last_stage, con, settings, staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    finally:
        con.close()
    as_of, manifest = settings.as_of, done["manifest"]
    lists_dir = publish_lists(staging, settings.out_dir, as_of)
    logger.info("lists as of %s (%s): %s; %d list files", as_of, settings.rules.name, done["categories"],
                len(manifest["files"]))
    return {"as_of": as_of, "profile": settings.rules.name, "categories": done["categories"],
            "answers": done["answers"], "health_checks": done["health_checks"],
            "transfers": done["transfers"], "areas": done["areas"], "lists_dir": str(lists_dir),
            "list_files": len(manifest["files"]), "list_rows": manifest["rows"],
            "area_sheets": len(manifest["risk_area_sheets"]), "escalation_sheets": len(manifest["escalation_sheets"]),
            "trip_sheets": len(manifest["trip_sheets"]), "arrival_sheets": len(manifest["arrival_sheets"]),
            "compliance": [list(map(str, row)) for row in done["compliance"]],
            "closure_compliance": [list(map(str, row)) for row in done["closure_compliance"]],
            "transfer_compliance": [list(map(str, row)) for row in done["transfer_compliance"]],
            "response_seconds": done["response_seconds"], "followup_seconds": done["followup_seconds"]}


@flow(name="lists", log_prints=False)
def lists_flow(db_path: Path, out_dir: Path, as_of: dt.datetime | None = None, profile: str = DEFAULT_PROFILE,
               schemas_dir: Path | None = None, facilities_path: Path | None = None) -> dict:
    """Classify everyone, write each community's list under ``out_dir/<as-of date>``, run the clock."""
    settings = RunSettings.build(db_path, out_dir=out_dir, as_of=as_of, profile=profile, schemas_dir=schemas_dir,
                                 facilities_path=facilities_path)
    return lists_stage(settings)
