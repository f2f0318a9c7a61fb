"""Core layer: the four categories (四类人员) of every person, with their history.

What belongs here: the SQL that turns cases, contacts and the hospital, lab and case-report
records into ``core_category_candidates`` (every category a person has entered, with when and
why, and whether and why they left it), ``four_categories`` (the one current category of each
person, by precedence, with the action, its deadline, the observation end and the evidence
records) and ``category_history`` (every change between runs, with its time and cause). What does
not belong: exposures (``exposures.py``), the lists and the clock (``lists/``), beds and
closures (``response/``).

Rules (``../shared/domain-rules.md``; numbers from the rule profile, bound as parameters):
- confirmed: a case of ``core_cases`` (positive result, or card 确诊病例/无症状感染者); leaves only
  by discharge from a designated hospital, never to a lower category;
- suspected: a card 疑似病例, a hospital diagnosis of suspected, or the clinical rule; excluded by
  negative results sampled far enough apart, or by the card's revision to 排除病例;
- fever: a fever-clinic visit at or above the threshold, or a daily health check (健康监测) with
  fever or a respiratory symptom; leaves by a negative result, the clinic's exclusion (诊断 排除),
  or the end of the observation period;
- close and secondary contacts: ``core_contacts`` of the cases; leave at the end of observation.
A deleted or revised record is no longer current, so what it alone caused is withdrawn on the
next run, and ``category_history`` says so (cause ``evidence_withdrawn``).
"""

from __future__ import annotations

import datetime as dt

import duckdb

from trace24.schemas.rules import CATEGORIES, RuleProfile
from trace24.transforms.contacts.exposures import evidence
from trace24.transforms.database import bound_parameters, current_records, ensure_core_health_checks, scalar

# The symptoms the clinical rule and the health checks count: fever and the respiratory ones.
SYMPTOM_PATTERN = "发热|咳|咽痛|气促|呼吸困难|胸闷"

# Import CTEs: the records the rules read (current versions, known by the as-of time) and the persons.
_CANDIDATE_IMPORTS = f"""\
WITH cards AS (
    SELECT * FROM {current_records('case_reports', 'c')} WHERE reported_at <= $as_of
),
visits AS (
    SELECT * FROM {current_records('fever_clinic', 'v')} WHERE visited_at <= $as_of
),
admissions AS (
    SELECT * FROM {current_records('inpatients', 'i')} WHERE admitted_at <= $as_of
),
negatives AS (
    SELECT * FROM {current_records('lab_results', 'l')}
    WHERE result = '阴性' AND coalesce(reported_at, sampled_at) <= $as_of
),
active_persons AS (
    SELECT * FROM persons WHERE merged_into_person_id IS NULL
),
checks AS (
    SELECT * FROM core_health_checks WHERE check_date <= CAST($as_of AS DATE)
),
"""

# Confirmed: every case of core_cases; released only by discharge from a designated hospital.
_CONFIRMED_CTES = f"""\
-- Confirmed ------------------------------------------------------------------------------------
severity AS (
    SELECT person_id, arg_max(severity, happened_at) AS severity
    FROM (SELECT person_id, clinical_severity AS severity, reported_at AS happened_at FROM cards
          WHERE clinical_severity IS NOT NULL
          UNION ALL
          SELECT person_id, severity, admitted_at FROM admissions WHERE severity IS NOT NULL)
    GROUP BY person_id
),
discharges AS (
    -- Discharge from a designated hospital after the diagnosis: recovered (a transfer out of a
    -- local isolation ward is not a discharge: that hospital is not in the list).
    SELECT k.person_id, min(a.discharged_at) AS discharged_at,
           list({evidence('inpatients', 'a')}) AS evidence
    FROM core_cases AS k JOIN admissions AS a USING (person_id)
    WHERE list_contains($isolating_hospitals, a.hospital_code)
      AND a.discharged_at IS NOT NULL AND a.discharged_at <= $as_of
      AND a.discharged_at > k.clock_started_at
    GROUP BY k.person_id
),
confirmed AS (
    SELECT k.person_id, 'confirmed' AS category, k.is_asymptomatic, k.clock_started_at AS entered_at,
           CASE WHEN k.is_asymptomatic THEN 'asymptomatic_case' ELSE 'confirmed_case' END AS reason,
           NULL::VARCHAR AS setting, s.severity, d.discharged_at AS released_at,
           CASE WHEN d.discharged_at IS NOT NULL THEN 'discharged' END AS release_reason,
           k.evidence, []::BIGINT[] AS source_person_ids, NULL::DATE AS observation_ends_on
    FROM core_cases AS k
    LEFT JOIN severity AS s USING (person_id)
    LEFT JOIN discharges AS d USING (person_id)
),
"""

# Suspected: a card, a hospital's diagnosis or the clinical rule; released by negatives or the card's exclusion.
_SUSPECTED_CTES = f"""\
-- Suspected ------------------------------------------------------------------------------------
clinical AS (
    SELECT v.*,
           (v.temperature_c >= $fever_threshold
            OR regexp_matches(coalesce(v.symptoms, ''), $symptom_pattern))::INTEGER
         + (len(list_filter($ct_markers, lambda marker: contains(coalesce(v.chest_ct, ''), marker))) > 0)::INTEGER
         + coalesce(v.white_cell_count <= $white_cell_at_most OR v.lymphocyte_count < $lymphocyte_below,
                    false)::INTEGER AS clinical_items
    FROM visits AS v
),
case_areas AS MATERIALIZED (
    -- One row per case, made before it meets the visits: left to itself the planner joined the
    -- visits to core_cases on time alone and found the cases' areas after (every visit × every
    -- case: 14 M rows and 2 s at 1M residents, growing as visits × cases).
    SELECT p.community_code, CASE WHEN $epi_area = 'compound' THEN p.compound END AS compound,
           k.clock_started_at
    FROM core_cases AS k JOIN active_persons AS p USING (person_id)
    WHERE p.community_code IS NOT NULL AND ($epi_area <> 'compound' OR p.compound IS NOT NULL)
),
epidemiological AS (
    SELECT DISTINCT c.visit_id, c.load_id, c.source_row_number
    FROM clinical AS c
    JOIN active_persons AS p USING (person_id)
    JOIN case_areas AS a
      ON a.community_code = p.community_code
     AND a.compound IS NOT DISTINCT FROM (CASE WHEN $epi_area = 'compound' THEN p.compound END)
    WHERE a.clock_started_at <= c.visited_at
      AND a.clock_started_at >= c.visited_at - to_days(CAST($epi_days AS INTEGER))
    UNION
    SELECT c.visit_id, c.load_id, c.source_row_number
    FROM clinical AS c JOIN core_contacts AS t ON t.exposed_person_id = c.person_id
    WHERE t.first_exposure_at <= c.visited_at
      AND t.last_exposure_at >= c.visited_at - to_days(CAST($epi_days AS INTEGER))
    UNION
    -- A cluster: another fever patient of the same household within the period.
    SELECT c.visit_id, c.load_id, c.source_row_number
    FROM clinical AS c
    JOIN active_persons AS p USING (person_id)
    JOIN active_persons AS q ON q.household_id = p.household_id AND q.person_id <> p.person_id
    JOIN visits AS o ON o.person_id = q.person_id
    WHERE o.temperature_c >= $fever_threshold
      AND o.visited_at BETWEEN c.visited_at - to_days(CAST($epi_days AS INTEGER)) AND c.visited_at
),
suspicions AS (
    SELECT person_id, reported_at AS happened_at, 'suspected_case_report' AS reason,
           {evidence('case_reports', 'cards')} AS evidence
    FROM cards WHERE case_class = '疑似病例'
    UNION ALL
    SELECT person_id, visited_at, 'hospital_diagnosis', {evidence('fever_clinic', 'visits')}
    FROM visits WHERE contains(coalesce(diagnosis, ''), '疑似')
    UNION ALL
    SELECT person_id, admitted_at, 'hospital_diagnosis', {evidence('inpatients', 'admissions')}
    FROM admissions WHERE contains(coalesce(diagnosis, ''), '疑似')
    UNION ALL
    SELECT c.person_id, c.visited_at, 'clinical_rule', {evidence('fever_clinic', 'c')}
    FROM clinical AS c
    LEFT JOIN epidemiological AS e USING (visit_id, load_id, source_row_number)
    WHERE c.clinical_items = 3 OR (c.clinical_items >= 2 AND e.visit_id IS NOT NULL)
),
suspected_entry AS (
    SELECT person_id, min(happened_at) AS entered_at,
           arg_min(reason, (happened_at, reason)) AS reason,
           list(evidence ORDER BY happened_at, evidence.feed, evidence.load_id, evidence.source_row_number) AS evidence
    FROM suspicions GROUP BY person_id
),
suspect_negatives AS (
    SELECT n.person_id, n.sampled_at, coalesce(n.reported_at, n.sampled_at) AS known_at
    FROM suspected_entry AS s
    JOIN negatives AS n ON n.person_id = s.person_id AND n.sampled_at >= s.entered_at - INTERVAL 2 HOUR
),
negative_exclusions AS (
    -- Excluded by a negative that follows at least (tests - 1) others sampled the profile's hours
    -- before it, once it and the earliest-reported of those others are reported.
    SELECT person_id, min(greatest(known_at, earlier[$exclusion_negative_tests - 1])) AS excluded_at
    FROM (
        SELECT b.person_id, b.known_at, list_sort(list(a.known_at)) AS earlier
        FROM suspect_negatives AS b
        JOIN suspect_negatives AS a
          ON a.person_id = b.person_id
         AND a.sampled_at <= b.sampled_at - to_hours(CAST($exclusion_hours_apart AS BIGINT))
        GROUP BY b.person_id, b.sampled_at, b.known_at
    )
    WHERE len(earlier) >= $exclusion_negative_tests - 1
    GROUP BY person_id
),
card_exclusions AS (
    SELECT person_id, min(coalesce(diagnosed_at, reported_at)) AS excluded_at
    FROM cards WHERE case_class = '排除病例'
    GROUP BY person_id
),
suspected AS (
    SELECT s.person_id, 'suspected' AS category, false AS is_asymptomatic, s.entered_at, s.reason,
           NULL::VARCHAR AS setting, NULL::VARCHAR AS severity,
           CASE WHEN ce.excluded_at >= s.entered_at OR np.excluded_at IS NOT NULL
                THEN least(CASE WHEN ce.excluded_at >= s.entered_at THEN ce.excluded_at END, np.excluded_at) END
               AS released_at,
           CASE WHEN ce.excluded_at >= s.entered_at
                     AND (np.excluded_at IS NULL OR ce.excluded_at <= np.excluded_at) THEN 'excluded_by_case_report'
                WHEN np.excluded_at IS NOT NULL THEN 'excluded_by_negative_tests' END AS release_reason,
           s.evidence, []::BIGINT[] AS source_person_ids, NULL::DATE AS observation_ends_on
    FROM suspected_entry AS s
    LEFT JOIN negative_exclusions AS np USING (person_id)
    LEFT JOIN card_exclusions AS ce USING (person_id)
),
"""

# Fever: the latest fever-clinic visit at or above the threshold; released by a negative, the clinic or time.
_FEVER_CTES = f"""\
-- Fever ----------------------------------------------------------------------------------------
fever_visits AS (
    SELECT v.*,
           (SELECT min(coalesce(n.reported_at, n.sampled_at)) FROM negatives AS n
            WHERE n.person_id = v.person_id AND n.sampled_at >= v.visited_at - INTERVAL 2 HOUR) AS negative_at
    FROM visits AS v
    WHERE v.temperature_c >= $fever_threshold
),
fever_checks AS (
    -- A daily health check (健康监测) with fever or a respiratory symptom: a fever patient from that
    -- day, to be seen at a fever clinic (the person is under observation: the check names a list row).
    SELECT h.*, CAST(h.check_date AS TIMESTAMP) AS checked_at,
           (SELECT min(coalesce(n.reported_at, n.sampled_at)) FROM negatives AS n
            WHERE n.person_id = h.person_id AND n.sampled_at >= CAST(h.check_date AS TIMESTAMP)) AS negative_at
    FROM checks AS h
    WHERE h.temperature_c >= $fever_threshold OR regexp_matches(coalesce(h.symptoms, ''), $symptom_pattern)
),
fever_events AS (
    SELECT person_id, visited_at AS happened_at, diagnosis, negative_at, 'fever_clinic_visit' AS reason,
           {evidence('fever_clinic', 'fever_visits')} AS evidence, load_id, source_row_number
    FROM fever_visits
    UNION ALL
    SELECT person_id, checked_at, NULL, negative_at, 'health_check', {evidence('health_checks', 'fever_checks')},
           load_id, source_row_number
    FROM fever_checks
),
fever AS (
    -- The latest fever (a visit or a check) decides: an earlier one is superseded by a later one.
    SELECT person_id, 'fever' AS category, false AS is_asymptomatic, happened_at AS entered_at,
           reason, NULL::VARCHAR AS setting, NULL::VARCHAR AS severity,
           CASE WHEN diagnosis = '排除' THEN happened_at
                ELSE least(negative_at, happened_at + to_days(CAST($fever_observation_days AS INTEGER))) END
               AS released_at,
           CASE WHEN diagnosis = '排除' THEN 'excluded_by_clinic'
                WHEN negative_at IS NOT NULL
                     AND negative_at <= happened_at + to_days(CAST($fever_observation_days AS INTEGER))
                     THEN 'negative_test'
                ELSE 'observation_ended' END AS release_reason,
           [evidence] AS evidence, []::BIGINT[] AS source_person_ids,
           CAST(happened_at + to_days(CAST($fever_observation_days AS INTEGER)) AS DATE) AS observation_ends_on
    FROM fever_events
    QUALIFY row_number() OVER (PARTITION BY person_id ORDER BY happened_at DESC, reason, load_id DESC,
                                                               source_row_number DESC) = 1
),
"""

# Close and secondary contacts: core_contacts, observed until the profile's days after the last exposure.
_CONTACT_CTES = """\
-- Contacts -------------------------------------------------------------------------------------
contact_rows AS (
    SELECT t.exposed_person_id AS person_id,
           CASE WHEN t.contact_level = 'close' THEN 'close_contact' ELSE 'secondary_contact' END AS category,
           t.source_person_id, t.first_exposure_at, t.last_exposure_at, t.settings,
           coalesce(k.clock_started_at, t.first_exposure_at) AS known_at
    FROM core_contacts AS t
    LEFT JOIN core_cases AS k ON k.person_id = t.source_person_id
    WHERE t.contact_level IN ('close', 'secondary')
),
contact_evidence AS (
    SELECT e.exposed_person_id AS person_id,
           CASE WHEN e.contact_level = 'close' THEN 'close_contact' ELSE 'secondary_contact' END AS category,
           list_sort(list_distinct(flatten(list(e.evidence)))) AS evidence,
           -- The setting a grid worker acts on: the first exposure's, a household before others.
           arg_min(e.setting, (e.first_exposure_at, e.setting <> 'household', e.setting)) AS setting
    FROM core_exposures AS e
    WHERE e.contact_level IN ('close', 'secondary')
    GROUP BY ALL
),
contact_spans AS (
    SELECT person_id, category, min(known_at) AS entered_at,
           CAST(max(last_exposure_at) AS DATE)
               + CAST(CASE WHEN category = 'close_contact' THEN $close_contact_days + $close_contact_home_days
                           ELSE $secondary_contact_days END AS INTEGER) AS observation_ends_on,
           list_sort(list_distinct(list(source_person_id))) AS source_person_ids
    FROM contact_rows
    GROUP BY person_id, category
),
contacts AS (
    -- Grouped first, the evidence joined after: carrying the evidence lists through the grouping
    -- cost 4 s at a million residents.
    SELECT s.person_id, s.category, false AS is_asymptomatic, s.entered_at,
           s.category || ':' || ce.setting AS reason, ce.setting, NULL::VARCHAR AS severity,
           s.observation_ends_on, s.source_person_ids, ce.evidence
    FROM contact_spans AS s
    JOIN contact_evidence AS ce USING (person_id, category)
)"""

# Every category entered by the as-of time, one row per person and category.
_CANDIDATES_FINAL = """\
SELECT person_id, category, is_asymptomatic, entered_at, reason, setting, severity, released_at,
       release_reason, evidence, source_person_ids, observation_ends_on
FROM (
    SELECT * FROM confirmed
    UNION ALL BY NAME SELECT * FROM suspected
    UNION ALL BY NAME SELECT * FROM fever
    UNION ALL BY NAME
    SELECT person_id, category, is_asymptomatic, entered_at, reason, setting, severity,
           CASE WHEN CAST(observation_ends_on AS TIMESTAMP) <= $as_of THEN CAST(observation_ends_on AS TIMESTAMP)
               END AS released_at,
           CASE WHEN CAST(observation_ends_on AS TIMESTAMP) <= $as_of THEN 'observation_ended' END AS release_reason,
           evidence, source_person_ids, observation_ends_on
    FROM contacts
)
WHERE entered_at <= $as_of
ORDER BY person_id, category
"""

CANDIDATES_SQL = ("\nCREATE OR REPLACE TABLE core_category_candidates AS\n" + _CANDIDATE_IMPORTS + _CONFIRMED_CTES
                  + _SUSPECTED_CTES + _FEVER_CTES + _CONTACT_CTES + "\n" + _CANDIDATES_FINAL)

# One current category per person: the highest active one; a case is confirmed or nothing.
FOUR_CATEGORIES_SQL = """
CREATE OR REPLACE TABLE four_categories AS
WITH active AS (
    SELECT c.*
    FROM core_category_candidates AS c
    WHERE (c.released_at IS NULL OR c.released_at > $as_of)
      AND (c.category = 'confirmed' OR c.person_id NOT IN (SELECT person_id FROM core_cases))
),
chosen AS (
    SELECT * FROM active
    QUALIFY row_number() OVER (PARTITION BY person_id
                               ORDER BY list_position($precedence, category), entered_at) = 1
),
source_people AS (
    SELECT c.person_id, c.category, s.source_person_id
    FROM chosen AS c, unnest(c.source_person_ids) AS s(source_person_id)
),
source_cases AS (
    SELECT person_id, source_person_id AS case_person_id, true AS is_direct
    FROM source_people
    WHERE source_person_id IN (SELECT person_id FROM core_cases)
    UNION
    -- A secondary contact's source is a close contact: the list names the cases behind that
    -- contact, but the 24-hour clock of those cases does not set the secondary contact's deadline.
    SELECT p.person_id, t.source_person_id, false
    FROM source_people AS p
    JOIN core_contacts AS t ON t.exposed_person_id = p.source_person_id AND t.contact_level = 'close'
    WHERE p.category = 'secondary_contact'
),
sources AS (
    SELECT sc.person_id,
           list(DISTINCT k.case_code ORDER BY k.case_code) AS source_case_codes,
           bool_or(k.is_asymptomatic) AND NOT bool_or(NOT k.is_asymptomatic) AS all_sources_asymptomatic,
           min(k.clock_started_at) FILTER (WHERE sc.is_direct) AS first_case_clock_started_at
    FROM source_cases AS sc
    JOIN core_cases AS k ON k.person_id = sc.case_person_id
    GROUP BY sc.person_id
)
SELECT c.person_id, c.category, c.is_asymptomatic, c.entered_at AS category_since_at, c.reason, c.setting,
       CASE WHEN c.category = 'confirmed' AND c.is_asymptomatic THEN 'asymptomatic'
            WHEN c.category = 'confirmed' AND list_contains($severe_levels, c.severity) THEN 'confirmed_severe'
            WHEN c.category = 'confirmed' THEN 'confirmed_mild'
            ELSE c.category END AS action_key,
       CASE WHEN c.category IN ('close_contact', 'secondary_contact')
            THEN coalesce(s.first_case_clock_started_at, c.entered_at)
            ELSE c.entered_at END
         + to_minutes(CAST(60 * $within_hours[list_position($precedence, c.category)] AS BIGINT)) AS action_due_at,
       c.observation_ends_on, s.source_case_codes, coalesce(s.all_sources_asymptomatic, false)
           AS all_sources_asymptomatic,
       c.evidence, $profile AS profile, $as_of AS as_of
FROM chosen AS c
LEFT JOIN sources AS s USING (person_id)
ORDER BY c.person_id
"""

HISTORY_DDL = """
CREATE TABLE IF NOT EXISTS category_history (
    as_of TIMESTAMP NOT NULL,           -- the run that saw the change
    person_id BIGINT NOT NULL,
    from_category VARCHAR,              -- NULL: the person was in no category
    to_category VARCHAR,                -- NULL: the person left every category
    cause VARCHAR NOT NULL,             -- the new reason, or why the person left
    changed_at TIMESTAMP,               -- when it happened, as far as the records say
    profile VARCHAR NOT NULL
)"""

# Changes against the state the previous run left (``previous_categories``).
HISTORY_SQL = """
INSERT INTO category_history
SELECT $as_of, coalesce(n.person_id, o.person_id), o.category, n.category,
       CASE WHEN n.person_id IS NOT NULL THEN n.reason
            WHEN r.release_reason IS NOT NULL THEN r.release_reason
            ELSE 'evidence_withdrawn' END,
       CASE WHEN n.person_id IS NOT NULL THEN n.category_since_at
            WHEN r.released_at IS NOT NULL THEN r.released_at ELSE $as_of END,
       $profile
FROM four_categories AS n
FULL JOIN previous_categories AS o USING (person_id)
LEFT JOIN core_category_candidates AS r ON n.person_id IS NULL AND r.person_id = o.person_id
                                       AND r.category = o.category
WHERE n.category IS DISTINCT FROM o.category
ORDER BY coalesce(n.person_id, o.person_id)
"""


def category_parameters(profile: RuleProfile, isolating_hospitals: list[str], as_of: dt.datetime) -> dict:
    rules = profile.categories
    return {
        "as_of": as_of, "profile": profile.name, "precedence": list(CATEGORIES),
        "isolating_hospitals": isolating_hospitals,
        "fever_threshold": rules.fever_threshold_c, "fever_observation_days": rules.fever_observation_days,
        "symptom_pattern": SYMPTOM_PATTERN,
        "exclusion_negative_tests": rules.exclusion_negative_tests,
        "exclusion_hours_apart": rules.exclusion_hours_apart, "ct_markers": list(rules.ct_markers),
        "white_cell_at_most": rules.white_cell_at_most, "lymphocyte_below": rules.lymphocyte_below,
        "epi_days": rules.epi_days, "epi_area": rules.epi_area,
        "close_contact_days": profile.close_contact_days, "close_contact_home_days": profile.close_contact_home_days,
        "secondary_contact_days": profile.secondary_contact_days,
        "severe_levels": list(rules.severe_levels),
        "within_hours": [float(rules.action_within_hours[c]) for c in CATEGORIES],
    }


def build_categories(con: duckdb.DuckDBPyConnection, params: dict) -> dict[str, int]:
    """Replace the candidates and ``four_categories``, append the changes to ``category_history``;
    returns the number of people per current category."""
    con.execute(HISTORY_DDL)
    ensure_core_health_checks(con)
    has_previous = scalar(con, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'four_categories'")
    if has_previous:
        con.execute("CREATE OR REPLACE TEMP TABLE previous_categories AS "
                    "SELECT person_id, category FROM four_categories")
    else:
        con.execute("CREATE OR REPLACE TEMP TABLE previous_categories (person_id BIGINT, category VARCHAR)")
    for sql in (CANDIDATES_SQL, FOUR_CATEGORIES_SQL, HISTORY_SQL):
        con.execute(sql, bound_parameters(sql, params))
    con.execute("DROP TABLE previous_categories")
    return dict(con.execute("SELECT category, count(*) FROM four_categories GROUP BY 1 ORDER BY 1").fetchall())
