"""Response stage, closures: the risk areas the cases make (疫点封控), when each opens, is extended and lifts.

What belongs here: linking every confirmed or asymptomatic case (``core_cases``) to the areas the
profile's ``closures:`` rules name (its home building, compound, community and street from
``persons``; the hotels it stayed in during its infectious window from the lodging feed), cutting
each area's cases into closures (a case reported after the closure lifted opens a new one), and
``risk_areas`` / ``risk_area_history``. What does not: the district sheets and the 疫点封控 clock
(``lists/risk_area_sheets.py``, ``lists/closure_clock.py``).

A closure lasts ``lasts_days`` after the report of the last case linked to it (the case's clock
start, ``core_cases.clock_started_at``): a late case extends it, and it lifts by itself when the
period passes with no new case. Both tables are derived from the current cases every run, so a
withdrawn case (a deleted card, a corrected result) takes its closures and their history with it.
"""

from __future__ import annotations

import datetime as dt

import duckdb

from trace24.schemas.response_rules import ClosureRules
from trace24.transforms.database import bound_parameters, current_records

LINKS_SQL = f"""
CREATE OR REPLACE TEMP TABLE case_area_links AS
WITH cases AS (
    SELECT person_id, case_code, clock_started_at AS linked_at, window_start_at, window_end_at
    FROM core_cases WHERE clock_started_at IS NOT NULL AND clock_started_at <= $as_of
),
homes AS (
    SELECT c.case_code, c.linked_at, p.district, m.street, p.community_code, p.community_name,
           nullif(trim(p.compound), '') AS compound, nullif(trim(p.building), '') AS building
    FROM cases AS c
    JOIN persons AS p USING (person_id)
    LEFT JOIN (SELECT community_code, arg_max(street, (delivery_date, load_id)) AS street
               FROM staged_communities WHERE is_current AND NOT is_deleted
               GROUP BY community_code) AS m USING (community_code)
),
lodging AS (
    SELECT * FROM {current_records('lodging', 'l')}
),
hotels AS (
    -- A hotel the case stayed in while infectious: the stay overlaps the window.
    SELECT DISTINCT c.case_code, c.linked_at, l.hotel_code, l.hotel_name, l.hotel_address
    FROM cases AS c JOIN lodging AS l USING (person_id)
    WHERE l.hotel_code IS NOT NULL AND l.checked_in_at <= c.window_end_at
      AND coalesce(l.checked_out_at, CAST($as_of AS TIMESTAMP)) >= c.window_start_at
),
links AS (
    SELECT 'building' AS scope, community_code || '/' || compound || '/' || building AS area_key, case_code,
           linked_at, district, street, community_code, community_name, compound, building,
           NULL AS hotel_code, compound || building AS area_name
    FROM homes WHERE community_code IS NOT NULL AND compound IS NOT NULL AND building IS NOT NULL
    UNION ALL
    SELECT 'compound', community_code || '/' || compound, case_code, linked_at, district, street, community_code,
           community_name, compound, NULL, NULL, compound
    FROM homes WHERE community_code IS NOT NULL AND compound IS NOT NULL
    UNION ALL
    SELECT 'community', community_code, case_code, linked_at, district, street, community_code, community_name,
           NULL, NULL, NULL, community_name
    FROM homes WHERE community_code IS NOT NULL
    UNION ALL
    SELECT 'street', district || '/' || street, case_code, linked_at, district, street, NULL, NULL, NULL, NULL,
           NULL, street
    FROM homes WHERE district IS NOT NULL AND street IS NOT NULL
    UNION ALL
    -- A hotel's district is the first district its address names (the lodging feed gives no other).
    SELECT 'hotel', hotel_code, case_code, linked_at,
           coalesce(list_filter($districts, lambda d: contains(coalesce(hotel_address, ''), d))[1],
                    $unknown_district),
           NULL, NULL, NULL, NULL, NULL, hotel_code, coalesce(hotel_name, hotel_code)
    FROM hotels
)
SELECT * FROM links WHERE list_contains($scopes, scope)
"""

AREAS_SQL = """
CREATE OR REPLACE TEMP TABLE risk_area_episodes AS
WITH links AS (
    SELECT *, map($lasts_keys, $lasts_values)[scope] AS lasts_days FROM case_area_links
),
ordered AS (
    SELECT *,
           max(linked_at) OVER (PARTITION BY scope, area_key ORDER BY linked_at, case_code
                                ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS previous_last_at
    FROM links
),
cut AS (
    -- A case reported once the closure lifted (lasts_days after the last case) opens a new one.
    SELECT *, CASE WHEN previous_last_at IS NULL
                        OR linked_at >= previous_last_at + to_days(CAST(lasts_days AS INTEGER))
                   THEN 1 ELSE 0 END AS opens
    FROM ordered
)
SELECT *, sum(opens) OVER (PARTITION BY scope, area_key ORDER BY linked_at, case_code) AS episode
FROM cut
"""

CLOSURES_SQL = """
CREATE OR REPLACE TEMP TABLE risk_area_closures AS
WITH episodes AS (
    SELECT * FROM risk_area_episodes
),
areas AS (
    SELECT scope, area_key, episode,
           -- Descriptive columns from the latest case: a person's address may be corrected.
           arg_max(district, (linked_at, case_code)) AS district,
           arg_max(street, (linked_at, case_code)) AS street,
           arg_max(community_code, (linked_at, case_code)) AS community_code,
           arg_max(community_name, (linked_at, case_code)) AS community_name,
           arg_max(compound, (linked_at, case_code)) AS compound,
           arg_max(building, (linked_at, case_code)) AS building,
           arg_max(hotel_code, (linked_at, case_code)) AS hotel_code,
           arg_max(area_name, (linked_at, case_code)) AS area_name,
           min(linked_at) AS since_at, max(linked_at) AS last_case_at, any_value(lasts_days) AS lasts_days,
           list(case_code ORDER BY linked_at, case_code) AS case_codes
    FROM episodes GROUP BY scope, area_key, episode
)
-- The id: the day it opened and the area; a later closure of the same area opens on another day.
SELECT 'RA' || strftime(since_at, '%Y%m%d') || '-' || left(md5(scope || '|' || area_key), 8) AS area_id,
       *, last_case_at + to_days(CAST(lasts_days AS INTEGER)) AS planned_lift_at
FROM areas
"""

RISK_AREAS_SQL = """
CREATE OR REPLACE TABLE risk_areas AS
WITH closures AS (
    SELECT * FROM risk_area_closures
)
SELECT area_id, scope, area_key, map($level_keys, $level_values)[scope] AS level,
       map($label_keys, $label_values)[scope] AS level_label,
       map($requires_keys, $requires_values)[scope] AS requires,
       district, street, community_code, community_name, compound, building, hotel_code, area_name,
       since_at, last_case_at, planned_lift_at,
       CASE WHEN planned_lift_at <= $as_of THEN planned_lift_at END AS lifted_at,
       planned_lift_at > $as_of AS is_active,
       case_codes, CAST(len(case_codes) AS INTEGER) AS case_count
FROM closures
ORDER BY area_id
"""

HISTORY_SQL = """
CREATE OR REPLACE TABLE risk_area_history AS
WITH episodes AS (
    SELECT * FROM risk_area_episodes
),
closures AS (
    SELECT c.area_id, c.scope, c.area_key, c.episode, a.level, a.lifted_at, a.planned_lift_at
    FROM risk_area_closures AS c JOIN risk_areas AS a USING (area_id)
),
cases AS (
    -- Each case opens or extends its closure: the planned lift after it is its report plus the period.
    SELECT c.area_id, c.scope, c.area_key, c.level,
           CASE WHEN e.opens = 1 THEN 'opened' ELSE 'extended' END AS event,
           e.linked_at AS event_at, e.case_code,
           e.linked_at + to_days(CAST(e.lasts_days AS INTEGER)) AS planned_lift_at
    FROM episodes AS e JOIN closures AS c USING (scope, area_key, episode)
),
lifts AS (
    SELECT area_id, scope, area_key, level, 'lifted' AS event, lifted_at AS event_at, NULL AS case_code,
           planned_lift_at
    FROM closures WHERE lifted_at IS NOT NULL
)
SELECT * FROM cases UNION ALL SELECT * FROM lifts
ORDER BY area_id, event_at, event = 'lifted', case_code
"""


def closure_parameters(rules: ClosureRules, districts: list[str], unknown_district: str, as_of: dt.datetime) -> dict:
    scopes = [a.scope for a in rules.areas]
    levels = [a.level for a in rules.areas]
    return {
        "as_of": as_of, "scopes": scopes, "districts": sorted(districts), "unknown_district": unknown_district,
        "lasts_keys": scopes, "lasts_values": [a.lasts_days for a in rules.areas],
        "level_keys": scopes, "level_values": levels,
        "label_keys": scopes, "label_values": [rules.levels[level][0] for level in levels],
        "requires_keys": scopes, "requires_values": [rules.levels[level][1] for level in levels],
    }


def build_risk_areas(con: duckdb.DuckDBPyConnection, params: dict) -> dict:
    """``risk_areas`` and ``risk_area_history`` as of the run; returns the areas active and lifted."""
    for sql in (LINKS_SQL, AREAS_SQL, CLOSURES_SQL, RISK_AREAS_SQL, HISTORY_SQL):
        con.execute(sql, bound_parameters(sql, params))
    active, lifted = con.execute(
        "SELECT count(*) FILTER (WHERE is_active), count(*) FILTER (WHERE NOT is_active) FROM risk_areas").fetchone()
    return {"active": active, "lifted": lifted}
