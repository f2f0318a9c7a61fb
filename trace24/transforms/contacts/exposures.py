"""Core layer: cases with their infectious windows, and exposures by the rule profile's rules.

What belongs here: the SQL that turns staged records and persons into ``core_isolation_events``,
``core_cases``, ``core_exposures`` (one row per exposed person, source, setting and rule, with
the evidence records) and ``core_contacts`` (one row per exposed person and source). Every join
is case-centric: it starts from the few infectious people and reaches into the big tables by
equality keys (venue, trip, room, household), so the cost is one scan of each feed, never a
pairwise comparison of everyone. Profile values travel as bound parameters. What does not
belong: the graph (``contact_graph.py``) and the categories built on the contacts (a later stage).

Window of a case: from ``days_before_onset`` before its onset date; for an asymptomatic case,
``days_before_sample`` before its first positive sample; when the onset is unknown (a positive
result with no case card yet), ``days_before_sample_onset_unknown`` before that sample (or before
the case report when there is no sample). It ends at the first isolation event, or the run's as-of time.

Incremental runs: the venue rule is nearly all the cost (a case's scans against every scan of its
venues). When nothing but cases moved since the last run (no new load of a feed other than the
lab results and fever clinic, no link without a valid ID moved, the same profile and facilities,
no secondary contacts), the venue exposures are redone only for the cases whose window changed;
the other rules, cheap, run for every case. ``core_contacts`` is redone for the cases whose
exposures changed. The result is the rebuild's (a test holds it to that).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb

from trace24.schemas.rules import Facilities, RuleProfile
from trace24.transforms.database import (
    bound_parameters,
    current_records,
    fingerprint,
    get_state,
    scalar,
    set_state,
    table_names,
)
from trace24.transforms.persons.identity import exact_link

CONFIRMED_CLASSES = ["确诊病例", "无症状感染者"]


def evidence(feed: str, alias: str) -> str:
    return (f"{{'feed': '{feed}', 'load_id': {alias}.load_id, "
            f"'source_row_number': {alias}.source_row_number}}")


ISOLATION_EVENTS_SQL = f"""
CREATE OR REPLACE TABLE core_isolation_events AS
WITH admissions AS (
    SELECT * FROM {current_records('inpatients', 'i')}
),
visits AS (
    SELECT * FROM {current_records('fever_clinic', 'v')}
),
cards AS (
    SELECT * FROM {current_records('case_reports', 'c')}
),
samples AS (
    SELECT * FROM {current_records('lab_results', 'l')}
),
events AS (
    SELECT person_id, admitted_at AS isolated_at, 'isolating_admission' AS isolation_source,
           {evidence('inpatients', 'admissions')} AS evidence
    FROM admissions
    WHERE list_contains($isolating_hospitals, hospital_code)
       OR len(list_filter($isolation_ward_markers, lambda marker: contains(ward, marker))) > 0
    UNION ALL
    SELECT person_id, visited_at, 'fever_clinic_isolation', {evidence('fever_clinic', 'visits')}
    FROM visits WHERE list_contains($isolating_dispositions, disposition)
    UNION ALL
    -- Any case card, suspected included: a reported suspected case goes to isolation.
    SELECT person_id, reported_at, 'case_report', {evidence('case_reports', 'cards')}
    FROM cards WHERE case_class <> '排除病例'
    UNION ALL
    SELECT person_id, coalesce(reported_at, sampled_at), 'positive_result', {evidence('lab_results', 'samples')}
    FROM samples WHERE result = '阳性'
    UNION ALL
    -- A contact is sampled in observation: isolated by the time of the sample at the latest.
    SELECT person_id, sampled_at, 'contact_observation', {evidence('lab_results', 'samples')}
    FROM samples WHERE test_reason = '密接'
)
SELECT * FROM events WHERE isolated_at IS NOT NULL AND isolated_at <= $as_of
"""

CASES_SQL = f"""
CREATE OR REPLACE TABLE core_cases AS
WITH cards AS (
    SELECT * FROM {current_records('case_reports', 'c')}
),
samples AS (
    SELECT * FROM {current_records('lab_results', 'l')}
),
case_cards AS (
    SELECT * FROM cards WHERE list_contains($confirmed_classes, case_class) AND reported_at <= $as_of
),
positive_samples AS (
    SELECT * FROM samples WHERE result = '阳性' AND coalesce(reported_at, sampled_at) <= $as_of
),
card_facts AS (
    SELECT person_id,
           arg_max(case_class, (reported_at, delivery_date, load_id, source_row_number)) AS latest_class,
           min(onset_date) AS onset_date,
           min(reported_at) AS first_case_report_at,
           list({evidence('case_reports', 'case_cards')} ORDER BY reported_at, load_id, source_row_number) AS evidence
    FROM case_cards GROUP BY person_id
),
lab_facts AS (
    SELECT person_id, min(sampled_at) AS first_positive_sampled_at,
           min(coalesce(reported_at, sampled_at)) AS first_positive_reported_at,
           list({evidence('lab_results', 'positive_samples')} ORDER BY sampled_at, load_id, source_row_number)
               AS evidence
    FROM positive_samples GROUP BY person_id
),
facts AS (
    SELECT person_id, c.latest_class, c.onset_date, c.first_case_report_at, l.first_positive_sampled_at,
           l.first_positive_reported_at,
           coalesce(c.latest_class = '无症状感染者', false) AS is_asymptomatic,
           list_concat(coalesce(c.evidence, []), coalesce(l.evidence, [])) AS evidence
    FROM card_facts AS c FULL JOIN lab_facts AS l USING (person_id)
),
windows AS (
    SELECT *,
           CASE WHEN NOT is_asymptomatic AND onset_date IS NOT NULL
                THEN CAST(onset_date AS TIMESTAMP) - to_days(CAST($days_before_onset AS INTEGER))
                WHEN is_asymptomatic AND first_positive_sampled_at IS NOT NULL
                THEN first_positive_sampled_at - to_days(CAST($days_before_sample AS INTEGER))
                ELSE coalesce(first_positive_sampled_at, first_case_report_at)
                     - to_days(CAST($days_before_sample_onset_unknown AS INTEGER)) END AS window_start_at,
           CASE WHEN NOT is_asymptomatic AND onset_date IS NOT NULL THEN 'onset'
                WHEN is_asymptomatic AND first_positive_sampled_at IS NOT NULL THEN 'asymptomatic_sample'
                WHEN first_positive_sampled_at IS NOT NULL THEN 'sample_onset_unknown'
                ELSE 'report_onset_unknown' END AS window_basis
    FROM facts
),
isolations AS (
    -- The first isolation from two weeks before the window on: an older episode (a stay in
    -- observation that ended) does not close the window; one just before it leaves it empty.
    SELECT w.person_id, arg_min(e.isolated_at, (e.isolated_at, e.isolation_source)) AS isolated_at,
           arg_min(e.isolation_source, (e.isolated_at, e.isolation_source)) AS isolation_source
    FROM windows AS w JOIN core_isolation_events AS e USING (person_id)
    WHERE e.isolated_at >= w.window_start_at - INTERVAL 14 DAY
    GROUP BY w.person_id
)
SELECT w.person_id,
       printf('C%07d', w.person_id) AS case_code,  -- lpad would cut ids of eight digits
       w.is_asymptomatic, w.onset_date, w.first_positive_sampled_at, w.first_case_report_at,
       least(w.first_case_report_at, w.first_positive_reported_at) AS clock_started_at,
       -- The onset, or where unknown the time the window implies (an asymptomatic case: its sample).
       CASE WHEN w.window_basis = 'onset' THEN CAST(w.onset_date AS TIMESTAMP)
            WHEN w.window_basis = 'asymptomatic_sample' THEN w.first_positive_sampled_at
            ELSE w.window_start_at + to_days(CAST($days_before_onset AS INTEGER)) END AS estimated_onset_at,
       i.isolated_at, i.isolation_source,
       w.window_basis, w.window_start_at,
       greatest(w.window_start_at, least(coalesce(i.isolated_at, $as_of), $as_of)) AS window_end_at,
       w.evidence
FROM windows AS w LEFT JOIN isolations AS i USING (person_id)
ORDER BY w.person_id
"""


# Each rule: a SELECT over a ``sources`` relation (person_id, window_start_at, window_end_at) of
# infectious people, yielding exposed_person_id, source_person_id, setting, contact_level,
# rule_id, first_exposure_at, last_exposure_at, evidence (a list of record references).

_FLAT = "concat_ws('|', {p}.community_code, {p}.compound, {p}.building, {p}.unit, {p}.room)"

HOUSEHOLD_SQL = f"""
WITH homes AS (
    SELECT s.*, h.household_id, {_FLAT.format(p='h')} AS flat_key,
           h.compound IS NOT NULL AND h.building IS NOT NULL AND h.room IS NOT NULL AS has_flat
    FROM sources AS s JOIN active_persons AS h USING (person_id)
),
members AS (
    SELECT homes.person_id AS source_person_id, m.person_id, 'household_same_hukou' AS rule_id,
           homes.window_start_at, homes.window_end_at
    FROM homes JOIN active_persons AS m ON m.household_id = homes.household_id
    UNION ALL
    SELECT homes.person_id, m.person_id, 'household_same_flat', homes.window_start_at, homes.window_end_at
    FROM homes JOIN active_persons AS m ON {_FLAT.format(p='m')} = homes.flat_key
    WHERE homes.has_flat
),
-- The register rows behind it: of the people in these households only, not of the whole register.
register_rows AS (
    SELECT person_id, list({{'feed': 'residents', 'load_id': load_id, 'source_row_number': source_row_number}}
                           ORDER BY load_id, source_row_number) AS evidence
    FROM person_records
    WHERE feed = 'residents'
      AND person_id IN (SELECT person_id FROM members UNION ALL SELECT source_person_id FROM members)
    GROUP BY person_id
)
SELECT members.person_id, members.source_person_id, 'household', 'close', members.rule_id,
       members.window_start_at, members.window_end_at,
       list_concat(coalesce(a.evidence, []), coalesce(b.evidence, []))
FROM members
LEFT JOIN register_rows AS a ON a.person_id = members.source_person_id
LEFT JOIN register_rows AS b ON b.person_id = members.person_id
"""

HOTEL_SQL = f"""
SELECT o.person_id, s.person_id, 'hotel', 'close', 'hotel_same_room',
       greatest(cs.checked_in_at, o.checked_in_at, s.window_start_at),
       least(coalesce(cs.checked_out_at, $as_of), coalesce(o.checked_out_at, $as_of), s.window_end_at),
       [{evidence('lodging', 'cs')}, {evidence('lodging', 'o')}]
FROM sources AS s
JOIN {current_records('lodging', 'l1')} AS cs ON cs.person_id = s.person_id
JOIN {current_records('lodging', 'l2')} AS o ON o.hotel_code = cs.hotel_code AND o.room = cs.room
"""

# Row of a seat: the leading digits of '12C' or '08A'.
_ROW = "TRY_CAST(regexp_extract({seat}, '^([0-9]+)', 1) AS INTEGER)"

TRANSPORT_SQL = f"""
SELECT o.person_id, s.person_id,
       CASE t.mode WHEN '火车' THEN 'train' WHEN '飞机' THEN 'flight' ELSE 'bus' END,
       CASE WHEN t.mode = '飞机' THEN
                 CASE WHEN {_ROW.format(seat='t.seat')} IS NULL OR {_ROW.format(seat='o.seat')} IS NULL THEN 'general'
                      WHEN abs({_ROW.format(seat='t.seat')} - {_ROW.format(seat='o.seat')}) <= $aircraft_rows
                      THEN 'close' END
            WHEN t.mode = '火车' THEN
                 CASE WHEN t.car IS NULL OR o.car IS NULL THEN 'general'
                      WHEN t.car <> o.car THEN NULL
                      WHEN $train_scope = 'car' THEN 'close'
                      WHEN abs({_ROW.format(seat='t.seat')} - {_ROW.format(seat='o.seat')}) <= $train_rows
                      THEN 'close' END
            ELSE CASE WHEN $bus_scope = 'vehicle' THEN 'close'
                      WHEN abs({_ROW.format(seat='t.seat')} - {_ROW.format(seat='o.seat')}) <= $aircraft_rows
                      THEN 'close' END END AS contact_level,
       CASE t.mode WHEN '飞机' THEN 'aircraft_rows' WHEN '火车' THEN 'train_' || $train_scope
            ELSE 'bus_' || $bus_scope END,
       coalesce(t.departed_at, CAST(t.departure_date AS TIMESTAMP)),
       coalesce(t.arrived_at, t.departed_at, CAST(t.departure_date AS TIMESTAMP) + INTERVAL 1 DAY),
       [{evidence('transport', 't')}, {evidence('transport', 'o')}]
FROM sources AS s
JOIN {current_records('transport', 't1')} AS t ON t.person_id = s.person_id
JOIN {current_records('transport', 't2')} AS o
  ON o.mode = t.mode AND o.trip_number = t.trip_number AND o.departure_date = t.departure_date
WHERE coalesce(t.departed_at, CAST(t.departure_date AS TIMESTAMP)) >= s.window_start_at
  AND coalesce(t.departed_at, CAST(t.departure_date AS TIMESTAMP)) < s.window_end_at
"""

WARD_SQL = f"""
WITH general_ward AS (
    SELECT * FROM {current_records('inpatients', 'i')}
    WHERE NOT list_contains($isolating_hospitals, hospital_code)
      AND len(list_filter($isolation_ward_markers, lambda marker: contains(ward, marker))) = 0
)
SELECT o.person_id, s.person_id, 'ward', 'close', 'ward_overlap',
       greatest(a.admitted_at, o.admitted_at, s.window_start_at),
       least(coalesce(a.discharged_at, $as_of), coalesce(o.discharged_at, $as_of), s.window_end_at),
       [{evidence('inpatients', 'a')}, {evidence('inpatients', 'o')}]
FROM sources AS s
JOIN general_ward AS a ON a.person_id = s.person_id
JOIN general_ward AS o ON o.hospital_code = a.hospital_code AND o.ward = a.ward
"""

INVESTIGATION_SQL = f"""
WITH interviews AS (
    SELECT * FROM {current_records('investigations', 'i')}
),
cards AS (
    SELECT card_id, any_value(person_id ORDER BY reported_at DESC) AS person_id
    FROM {current_records('case_reports', 'c')} GROUP BY card_id
),
-- The case of an interview: by its case card, else by its ID number.
interview_cases AS (
    SELECT i.*, coalesce(c.person_id, p.person_id) AS case_person_id
    FROM interviews AS i
    LEFT JOIN cards AS c ON c.card_id = i.case_card_id
    LEFT JOIN active_persons AS p ON p.id_number = i.case_id_number AND i.case_id_number_status = 'valid'
)
SELECT i.person_id, s.person_id,
       coalesce($investigation_settings[list_position($investigation_keys, i.setting)], 'other'),
       'close', 'investigation_listed',
       coalesce(i.first_contact_at, s.window_start_at),
       coalesce(i.last_contact_at, i.first_contact_at, s.window_end_at),
       [{evidence('investigations', 'i')}]
FROM sources AS s
JOIN interview_cases AS i ON i.case_person_id = s.person_id
-- A contact the investigator marks as protected is, by the protocol, no close contact.
WHERE coalesce(i.was_protected, '否') <> '是'
"""

# The venue rule in two statements: the scans near a case's scans first, into the temp table
# ``venue_nearby`` (``VENUE_NEARBY_SQL``, CTEs that follow a ``sources`` CTE), then who made them
# (``VENUE_SQL``). In one statement the
# optimiser misjudged the first part's size and built a hash table of every place scan's
# person_records (30 M rows at a million residents, 8 s) even for a single case with no contacts.
VENUE_NEARBY_SQL = """
-- Materialised steps: left to itself the optimiser joins the scans' person_records to the sources
-- first (a nested loop on exposed <> source), minutes instead of seconds at a million residents.
-- The sources' own records before their scans: with the window test in a three-way join the
-- optimiser may join every scan to every source's window first (a range join, billions of rows).
source_records AS MATERIALIZED (
    SELECT s.person_id, s.window_start_at, s.window_end_at, pr.load_id, pr.source_row_number
    FROM sources AS s
    JOIN person_records AS pr ON pr.person_id = s.person_id AND pr.feed = 'place_scans'
),
source_scans AS MATERIALIZED (
    SELECT s.person_id, s.window_start_at, s.window_end_at, v.venue_code, v.venue_type, v.scanned_at,
           v.load_id, v.source_row_number
    FROM source_records AS s
    JOIN staged_place_scans AS v ON v.load_id = s.load_id AND v.source_row_number = s.source_row_number
    WHERE v.scanned_at >= s.window_start_at AND v.scanned_at < s.window_end_at AND v.is_current
),
-- One pass over the scans: equality on the venue, then the time band.
nearby AS MATERIALIZED (
    SELECT cs.person_id AS source_person_id, cs.venue_type, cs.scanned_at AS source_scanned_at,
           cs.load_id AS source_load_id, cs.source_row_number AS source_row,
           o.scanned_at, o.load_id, o.source_row_number
    FROM source_scans AS cs
    JOIN staged_place_scans AS o
      ON o.venue_code = cs.venue_code
     AND o.scanned_at BETWEEN cs.scanned_at - to_minutes(CAST($co_location_minutes AS BIGINT))
                          AND cs.scanned_at + to_minutes(CAST($co_location_minutes AS BIGINT))
    WHERE o.is_current
)
SELECT * FROM nearby
"""

VENUE_SQL = f"""
SELECT pr.person_id, n.source_person_id,
       CASE WHEN list_contains($close_venue_types, n.venue_type) THEN 'venue_close' ELSE 'venue_general' END,
       CASE WHEN list_contains($close_venue_types, n.venue_type) THEN 'close' ELSE 'general' END,
       'venue_co_location',
       least(n.scanned_at, n.source_scanned_at), greatest(n.scanned_at, n.source_scanned_at),
       [{{'feed': 'place_scans', 'load_id': n.source_load_id, 'source_row_number': n.source_row}},
        {evidence('place_scans', 'n')}]
FROM venue_nearby AS n
JOIN person_records AS pr
  ON pr.feed = 'place_scans' AND pr.load_id = n.load_id AND pr.source_row_number = n.source_row_number
"""

RULES = {"household": HOUSEHOLD_SQL, "hotel": HOTEL_SQL, "transport": TRANSPORT_SQL, "ward": WARD_SQL,
         "investigation": INVESTIGATION_SQL, "venue": VENUE_SQL}
# Rules that apply to close contacts for secondary contacts (the profile picks among their settings).
SECONDARY_RULES = {"household": HOUSEHOLD_SQL, "venue": VENUE_SQL}

EXPOSURE_COLUMNS = ("exposed_person_id, source_person_id, setting, contact_level, rule_id, "
                    "first_exposure_at, last_exposure_at, evidence")

EXPOSURES_DDL = """
CREATE TABLE IF NOT EXISTS core_exposures (
    exposed_person_id BIGINT NOT NULL,
    source_person_id BIGINT NOT NULL,
    setting VARCHAR NOT NULL,
    contact_level VARCHAR NOT NULL,      -- close, general, secondary
    rule_id VARCHAR NOT NULL,
    first_exposure_at TIMESTAMP NOT NULL,
    last_exposure_at TIMESTAMP NOT NULL,
    evidence STRUCT(feed VARCHAR, load_id INTEGER, source_row_number BIGINT)[] NOT NULL,
    profile VARCHAR NOT NULL
)"""

RUNS_DDL = """
CREATE TABLE IF NOT EXISTS exposure_runs (
    run_number INTEGER NOT NULL,
    profile VARCHAR NOT NULL,
    profile_sha256 VARCHAR NOT NULL,
    as_of TIMESTAMP NOT NULL,
    cases INTEGER NOT NULL,
    exposures BIGINT NOT NULL,
    finished_at TIMESTAMP NOT NULL
)"""


def rule_parameters(profile: RuleProfile, facilities: Facilities, as_of: dt.datetime) -> dict:
    return {
        "as_of": as_of,
        "isolating_hospitals": list(facilities.isolating_hospitals),
        "isolation_ward_markers": list(facilities.isolation_ward_markers),
        "isolating_dispositions": list(facilities.isolating_dispositions),
        "confirmed_classes": CONFIRMED_CLASSES,
        "days_before_onset": profile.days_before_onset,
        "days_before_sample": profile.days_before_sample,
        "days_before_sample_onset_unknown": profile.days_before_sample_onset_unknown,
        "aircraft_rows": profile.aircraft_rows_each_side,
        "train_scope": profile.train_scope,
        "train_rows": profile.train_rows_each_side,
        "bus_scope": profile.bus_scope,
        "co_location_minutes": profile.co_location_minutes,
        "close_venue_types": list(profile.close_venue_types),
        "investigation_keys": list(profile.investigation_settings),
        "investigation_settings": list(profile.investigation_settings.values()),
    }


def contacts_by_level(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """How many exposed persons each contact level holds (close, general, secondary)."""
    return dict(con.execute("SELECT contact_level, count(*) FROM core_contacts GROUP BY 1 ORDER BY 1").fetchall())


def default_as_of(con: duckdb.DuckDBPyConnection) -> dt.datetime:
    """The end of the last delivery day loaded: what the data can know."""
    last = scalar(con, "SELECT max(delivery_date) FROM load_audit WHERE file_status = 'loaded'")
    if last is None:
        raise ValueError("nothing has been ingested yet: run `trace24 ingest` first")
    return dt.datetime.combine(last, dt.time()) + dt.timedelta(days=1)


# Feeds that reach the exposures through the cases' windows and isolation only: a new load of one
# of them (a new positive result) is handled by redoing the cases whose window changed.
CASE_FEEDS = ("lab_results", "fever_clinic")

STAGE = "exposures"  # its rows in stage_state

# The windows that were sources on the last run (kept by build_cases before it replaces them).
SOURCES = "SELECT person_id, window_start_at, window_end_at FROM {cases} WHERE window_start_at < window_end_at"


@dataclass(frozen=True)
class ExposurePlan:
    """Whether this run may redo only the cases whose window changed, and why (or why not)."""

    is_incremental: bool
    reason: str
    basis: str  # fingerprint of everything but the cases that the exposures are computed from


def plan_exposures(con: duckdb.DuckDBPyConnection, profile: RuleProfile, facilities: Facilities,
                   as_of: dt.datetime) -> ExposurePlan:
    """Compare what the exposures would be computed from with what the last run's were. Reads only."""
    loads = con.execute("""SELECT feed, load_id FROM load_audit
                           WHERE file_status = 'loaded' AND NOT list_contains($case_feeds, feed)
                           ORDER BY ALL""", {"case_feeds": list(CASE_FEEDS)}).fetchall()
    # Links without a valid ID can move on any linkage; exact links never do.
    links = con.execute(f"""SELECT count(*), bit_xor(hash(feed, load_id, source_row_number, person_id))
                           FROM person_records WHERE NOT {exact_link()}""").fetchall()
    merges = con.execute("SELECT * FROM person_merges ORDER BY ALL").fetchall()
    basis = fingerprint([profile.sha256, facilities, loads, links, merges])
    stored = get_state(con, STAGE).get("basis")
    if stored is None or not {"core_exposures", "core_contacts", "core_cases"} <= table_names(con):
        return ExposurePlan(False, "first run", basis)
    last_as_of = scalar(con, "SELECT as_of FROM exposure_runs ORDER BY run_number DESC LIMIT 1")
    if profile.secondary_enabled:
        return ExposurePlan(False, "the profile has secondary contacts", basis)
    if stored != basis:
        return ExposurePlan(False, "new records other than results, new links, or a new profile", basis)
    if last_as_of is None or as_of < last_as_of:
        return ExposurePlan(False, "as-of time earlier than the last run's", basis)
    return ExposurePlan(True, "only cases changed", basis)


def build_cases(con: duckdb.DuckDBPyConnection, params: dict) -> int:
    """Replace ``core_isolation_events`` and ``core_cases``; the last run's sources stay in the temp
    table ``previous_sources`` for an incremental ``build_exposures``."""
    con.execute("CREATE OR REPLACE TEMP TABLE previous_sources (person_id BIGINT, window_start_at TIMESTAMP, "
                "window_end_at TIMESTAMP)")
    if "core_cases" in table_names(con):
        con.execute("INSERT INTO previous_sources " + SOURCES.format(cases="core_cases"))
    con.execute(ISOLATION_EVENTS_SQL, bound_parameters(ISOLATION_EVENTS_SQL, params))
    con.execute(CASES_SQL, bound_parameters(CASES_SQL, params))
    return scalar(con, "SELECT count(*) FROM core_cases")


def _exposure_select(rules: dict[str, str], sources: str) -> str:
    """The union of the rules over one sources relation, kept only where the time span is real."""
    union = "\nUNION ALL\n".join(f"SELECT * FROM (\n{sql}\n) AS {name}_rule" for name, sql in rules.items())
    return f"""
    WITH sources AS ({sources}),
    active_persons AS (SELECT * FROM persons WHERE merged_into_person_id IS NULL),
    found ({EXPOSURE_COLUMNS}) AS ({union})
    SELECT {EXPOSURE_COLUMNS} FROM found
    WHERE exposed_person_id <> source_person_id AND contact_level IS NOT NULL
      AND first_exposure_at <= last_exposure_at AND first_exposure_at < $as_of
    """


INSERT_EXPOSURES = """
INSERT INTO core_exposures
SELECT exposed_person_id, source_person_id, setting, contact_level, rule_id,
       min(first_exposure_at), max(last_exposure_at),
       list_sort(list_distinct(flatten(list(evidence)))), $profile
FROM ({select})
GROUP BY ALL
ORDER BY source_person_id, exposed_person_id, setting, rule_id
"""

CHANGED_SOURCES_SQL = f"""
CREATE OR REPLACE TEMP TABLE changed_sources AS
WITH current_sources AS ({SOURCES.format(cases="core_cases")})
SELECT DISTINCT person_id FROM (
    (SELECT * FROM previous_sources EXCEPT SELECT * FROM current_sources)
    UNION ALL
    (SELECT * FROM current_sources EXCEPT SELECT * FROM previous_sources)
)
"""

VENUE_RULE_ID = "venue_co_location"


def build_exposures(con: duckdb.DuckDBPyConnection, profile: RuleProfile, params: dict,
                    plan: ExposurePlan | None = None) -> dict[str, int]:
    """Bring ``core_exposures`` and ``core_contacts`` up to date for the current cases (all of them,
    or as ``plan`` allows, the venue rule only for the cases whose window changed); return counts
    per setting."""
    con.execute(EXPOSURES_DDL)
    if plan is not None and plan.is_incremental:
        _redo_changed_cases(con, profile, params)
        return dict(con.execute("SELECT setting, count(*) FROM core_exposures GROUP BY 1 ORDER BY 1").fetchall())
    con.execute("DELETE FROM core_exposures")
    _insert_exposures(con, RULES, SOURCES.format(cases="core_cases"), params, profile)
    if profile.secondary_enabled:
        # A close contact (not itself a case) is a source from its first exposure until its own
        # isolation: the first isolation event after that exposure, else the assumed one.
        contacts = """
        WITH close AS (
            SELECT e.exposed_person_id AS person_id, min(e.first_exposure_at) AS window_start_at,
                   min(c.clock_started_at) AS case_reported_at
            FROM core_exposures AS e JOIN core_cases AS c ON c.person_id = e.source_person_id
            WHERE e.contact_level = 'close'
              AND e.exposed_person_id NOT IN (SELECT person_id FROM core_cases)
            GROUP BY e.exposed_person_id
        )
        SELECT c.person_id, c.window_start_at,
               least(coalesce(min(i.isolated_at),
                              max(c.case_reported_at) + to_hours(CAST($assumed_isolation_hours AS BIGINT)),
                              $as_of), $as_of) AS window_end_at
        FROM close AS c
        LEFT JOIN core_isolation_events AS i ON i.person_id = c.person_id AND i.isolated_at >= c.window_start_at
        GROUP BY c.person_id, c.window_start_at
        """
        secondary = """
        SELECT exposed_person_id, source_person_id, setting, 'secondary' AS contact_level,
               'secondary_' || rule_id AS rule_id, first_exposure_at, last_exposure_at, evidence
        FROM ({select})
        WHERE list_contains($secondary_settings, setting)
          AND exposed_person_id NOT IN (SELECT person_id FROM core_cases)
          AND exposed_person_id NOT IN (SELECT exposed_person_id FROM core_exposures WHERE contact_level = 'close')
        """
        _insert_exposures(con, SECONDARY_RULES, contacts, {
            **params, "assumed_isolation_hours": profile.assumed_contact_isolation_hours,
            "secondary_settings": list(profile.secondary_settings)}, profile, outer=secondary)
    con.execute("CREATE OR REPLACE TABLE core_contacts AS " + CONTACTS_QUERY.format(scope="true"))
    return dict(con.execute("SELECT setting, count(*) FROM core_exposures GROUP BY 1 ORDER BY 1").fetchall())


def _insert_exposures(con: duckdb.DuckDBPyConnection, rules: dict[str, str], sources: str, params: dict,
                      profile: RuleProfile, outer: str = "{select}") -> None:
    """Insert what ``rules`` find for ``sources`` (through ``outer``, a query around their select)."""
    if "venue" in rules:
        sql = f"CREATE OR REPLACE TEMP TABLE venue_nearby AS WITH sources AS ({sources}), {VENUE_NEARBY_SQL}"
        con.execute(sql, bound_parameters(sql, params))
    sql = INSERT_EXPOSURES.format(select=outer.format(select=_exposure_select(rules, sources)))
    con.execute(sql, bound_parameters(sql, {**params, "profile": profile.name}))


def _redo_changed_cases(con: duckdb.DuckDBPyConnection, profile: RuleProfile, params: dict) -> None:
    """The venue rule for the cases whose window changed; every other rule, cheap, for every case; the
    contacts of every case whose exposures changed."""
    con.execute(CHANGED_SOURCES_SQL)
    con.execute("CREATE OR REPLACE TEMP TABLE previous_other AS SELECT * FROM core_exposures WHERE rule_id <> $venue",
                {"venue": VENUE_RULE_ID})
    con.execute("""DELETE FROM core_exposures
                   WHERE rule_id <> $venue OR source_person_id IN (SELECT person_id FROM changed_sources)""",
                {"venue": VENUE_RULE_ID})
    other_rules = {name: sql for name, sql in RULES.items() if name != "venue"}
    _insert_exposures(con, other_rules, SOURCES.format(cases="core_cases"), params, profile)
    changed = SOURCES.format(cases="core_cases") + " AND person_id IN (SELECT person_id FROM changed_sources)"
    _insert_exposures(con, {"venue": VENUE_SQL}, changed, params, profile)
    con.execute("""
        CREATE OR REPLACE TEMP TABLE contact_sources AS
        SELECT person_id FROM changed_sources
        UNION
        SELECT source_person_id FROM (
            (SELECT * FROM previous_other EXCEPT ALL SELECT * FROM core_exposures WHERE rule_id <> $venue)
            UNION ALL
            (SELECT * FROM core_exposures WHERE rule_id <> $venue EXCEPT ALL SELECT * FROM previous_other))""",
                {"venue": VENUE_RULE_ID})
    scope = "source_person_id IN (SELECT person_id FROM contact_sources)"
    con.execute(f"DELETE FROM core_contacts WHERE {scope}")
    con.execute("INSERT INTO core_contacts " + CONTACTS_QUERY.format(scope=scope))


# One row per exposed person and source: the strongest level, every setting and rule that found it.
CONTACTS_QUERY = """
SELECT exposed_person_id, source_person_id,
       CASE WHEN bool_or(contact_level = 'close') THEN 'close'
            WHEN bool_or(contact_level = 'secondary') THEN 'secondary' ELSE 'general' END AS contact_level,
       list_sort(list_distinct(list(setting))) AS settings,
       list_sort(list_distinct(list(rule_id))) AS rule_ids,
       min(first_exposure_at) AS first_exposure_at,
       max(last_exposure_at) AS last_exposure_at,
       any_value(profile) AS profile
FROM core_exposures
WHERE {scope}
GROUP BY exposed_person_id, source_person_id
ORDER BY source_person_id, exposed_person_id
"""


def record_run(con: duckdb.DuckDBPyConnection, profile: RuleProfile, as_of: dt.datetime,
               plan: ExposurePlan | None = None) -> None:
    """The run in ``exposure_runs``, and what its exposures were computed from (``plan_exposures``;
    without a plan, unknown: the next run rebuilds everything)."""
    set_state(con, STAGE, "basis", None if plan is None else plan.basis)
    con.execute(RUNS_DDL)
    con.execute(
        """INSERT INTO exposure_runs
           SELECT coalesce((SELECT max(run_number) FROM exposure_runs), 0) + 1, $profile, $sha, $as_of,
                  (SELECT count(*) FROM core_cases), (SELECT count(*) FROM core_exposures), now()""",
        {"profile": profile.name, "sha": profile.sha256, "as_of": as_of},
    )
