"""Core layer: the persons an office could not bring under control, escalated to who can.

What belongs here: ``followup_escalations``, one row per person whose latest answer escalates
(查无此人, 联系不上, 信息有误 → the district's police, 公安协查; 拒不配合 → the street; 已离汉 → the
other provinces and cities, 外省市协查), with where the records last saw them and, for one who left,
where the records show them going. A person stays escalated until a later answer, or a record of
them delivered after the answer (they were seen again), resolves it; so does leaving the four
categories (released). A person under observation whose daily health checks stopped for the
profile's days goes to the street too (健康监测缺报), until a check comes. What does not: the answers
(``answers.py``), the sheets the escalations go out on (``lists/escalation_sheets.py``).
"""

from __future__ import annotations

import datetime as dt

import duckdb

from trace24.transforms.database import bound_parameters

ESCALATIONS_SQL = """
CREATE OR REPLACE TABLE followup_escalations AS
WITH escalating AS (
    -- Only while the person is still one of the four categories: a released person needs no search.
    SELECT f.*, c.category, c.source_case_codes
    FROM core_followup AS f
    JOIN four_categories AS c USING (person_id)
    WHERE list_contains($escalating_keys, f.answer_key)
),
delivered AS (
    -- The escalated persons' records, with when each was delivered.
    SELECT r.person_id, r.feed, r.load_id, r.source_row_number, a.delivery_date
    FROM person_records AS r
    JOIN escalating AS e USING (person_id)
    JOIN load_audit AS a ON a.load_id = r.load_id
),
-- What the records of each kind say of a place, joined feed by feed: a join on the records of one
-- feed reads the tens of millions of scans three times faster than one LEFT JOIN per feed over all.
places AS (
    SELECT d.person_id, s.scanned_at AS seen_at, coalesce(s.venue_name, s.venue_code) AS place,
           CAST(NULL AS VARCHAR) AS to_station
    FROM (SELECT * FROM delivered WHERE feed = 'place_scans') AS d
    JOIN staged_place_scans AS s USING (load_id, source_row_number)
    UNION ALL
    SELECT d.person_id, h.checked_in_at, coalesce(h.hotel_name, h.hotel_code), NULL
    FROM (SELECT * FROM delivered WHERE feed = 'lodging') AS d
    JOIN staged_lodging AS h USING (load_id, source_row_number)
    UNION ALL
    SELECT d.person_id, coalesce(t.departed_at, CAST(t.departure_date AS TIMESTAMP)),
           t.trip_number || CASE WHEN t.to_station IS NULL THEN '' ELSE ' → ' || t.to_station END, t.to_station
    FROM (SELECT * FROM delivered WHERE feed = 'transport') AS d
    JOIN staged_transport AS t USING (load_id, source_row_number)
),
seen AS (
    SELECT d.person_id, d.last_record_on, coalesce(p.last_places, []) AS last_places, p.destination
    FROM (SELECT person_id, max(delivery_date) AS last_record_on FROM delivered GROUP BY person_id) AS d
    LEFT JOIN (
        SELECT person_id,
               list(strftime(seen_at, '%Y-%m-%d %H:%M') || ' ' || place ORDER BY seen_at DESC, place)
                   FILTER (WHERE is_last) AS last_places,
               arg_max(to_station, seen_at) FILTER (WHERE to_station IS NOT NULL) AS destination
        FROM (
            -- The last few places picked before they are written out: the text of every record
            -- cost more than finding them.
            SELECT *, place IS NOT NULL AND seen_at IS NOT NULL
                      AND row_number() OVER (PARTITION BY person_id, place IS NOT NULL AND seen_at IS NOT NULL
                                             ORDER BY seen_at DESC, place) <= $places AS is_last
            FROM places
        )
        GROUP BY person_id
    ) AS p USING (person_id)
),
offices AS (
    SELECT community_code, arg_max(street, (delivery_date, load_id)) AS street,
           arg_max(district, (delivery_date, load_id)) AS district,
           arg_max(community_name, (delivery_date, load_id)) AS community_name
    FROM staged_communities WHERE is_current AND NOT is_deleted
    GROUP BY community_code
),
answered AS (
    SELECT e.person_id, map($escalating_keys, $escalating_to)[e.answer_key] AS escalated_to,
           e.answer_key, e.answer, e.answered_on, e.office_code, e.category, e.source_case_codes,
           coalesce(s.last_places, []) AS last_places, s.destination
    FROM escalating AS e
    LEFT JOIN seen AS s USING (person_id)
    WHERE s.last_record_on IS NULL OR s.last_record_on <= e.answered_on
),
observed AS (
    -- Contacts under observation on a community's list delivered before this run: their office (or
    -- isolation point) reports a check every day from the day after the listing. (A fever patient
    -- is the fever clinic's to follow, a case the hospital's.)
    SELECT c.person_id, c.category, c.source_case_codes, arg_max(r.community_code, r.as_of) AS office_code,
           CAST(min(r.as_of) AS DATE) AS first_listed_on
    FROM four_categories AS c
    JOIN out_list_rows AS r USING (person_id)
    WHERE list_contains($checked_categories, c.category) AND r.community_code IS NOT NULL AND r.row_key IS NOT NULL
      AND r.as_of < $as_of
    GROUP BY ALL
),
unchecked AS (
    -- Only where the city's offices report checks at all (the feed is in use), and not for one
    -- already escalated by an answer.
    SELECT b.*, coalesce(h.last_checked_on, b.first_listed_on) AS last_checked_on
    FROM observed AS b
    LEFT JOIN (SELECT person_id, max(check_date) AS last_checked_on FROM core_health_checks GROUP BY person_id)
        AS h USING (person_id)
    WHERE EXISTS (SELECT 1 FROM core_health_checks) AND b.person_id NOT IN (SELECT person_id FROM answered)
      AND CAST($as_of AS DATE) - 1 - coalesce(h.last_checked_on, b.first_listed_on) >= $missing_check_days
),
escalated AS (
    SELECT * FROM answered
    UNION ALL
    SELECT person_id, $missing_checks_to, 'missing_checks', $missing_checks_text, last_checked_on, office_code,
           category, source_case_codes, []::VARCHAR[], NULL::VARCHAR
    FROM unchecked
)
SELECT e.person_id, e.escalated_to, e.answer_key, e.answer, e.answered_on, e.office_code, e.category,
       e.source_case_codes, coalesce(o.district, $unknown_district) AS district, o.street, o.community_name,
       e.last_places, e.destination
FROM escalated AS e
LEFT JOIN offices AS o ON o.community_code = e.office_code
ORDER BY escalated_to, district, person_id
"""

PLACES = 3
CHECKED_CATEGORIES = ["close_contact", "secondary_contact"]   # followed up by daily health checks


def escalation_parameters(escalations: dict[str, str], missing_checks: tuple[str, str], missing_check_days: int,
                          unknown_district: str, as_of: dt.datetime) -> dict:
    """``escalations``: answer key → `police`, `street` or `other_city`; ``missing_checks``: where a
    person whose health checks stopped goes, and the text (``community_lists.yaml``, answers);
    ``missing_check_days``: the profile's days without a check."""
    return {"as_of": as_of, "escalating_keys": list(escalations), "escalating_to": list(escalations.values()),
            "missing_checks_to": missing_checks[0], "missing_checks_text": missing_checks[1],
            "missing_check_days": missing_check_days, "checked_categories": CHECKED_CATEGORIES,
            "unknown_district": unknown_district, "places": PLACES}


def build_escalations(con: duckdb.DuckDBPyConnection, params: dict) -> dict[str, int]:
    """Write ``followup_escalations`` (after ``answers.build_followup``); return persons per escalation."""
    con.execute(ESCALATIONS_SQL, bound_parameters(ESCALATIONS_SQL, params))
    return dict(con.execute("SELECT escalated_to, count(*) FROM followup_escalations GROUP BY ALL ORDER BY ALL")
                .fetchall())
