"""Out layer: the 疫点封控 clock, hours from a case's report to its outbreak point on a district's sheet.

What belongs here: ``closure_clock`` (per case: its outbreak point, the home area of the most
specific residential scope the profile closes, and when a delivered 风险区域清单 first carried it
naming the case) and ``closure_compliance`` (per district and day of the clock start). What does
not: the areas (``response/closures.py``), the sheets (``risk_area_sheets.py``).

The clock starts with the 24-hour clock (``core_cases.clock_started_at``); it stops at the as-of
time of the first run whose sheet lists the area with the case among its cases. A case whose home
has no compound (or whatever the profile closes) cannot be sealed: ``no_address``, a miss, so the
address gap is visible rather than silently excused.
"""

from __future__ import annotations

import datetime as dt

import duckdb

from trace24.schemas.response_rules import ClosureRules
from trace24.transforms.database import bound_parameters

RESIDENTIAL_SCOPES = ("building", "compound", "community", "street")   # most specific first

CLOSURE_CLOCK_SQL = """
CREATE OR REPLACE TABLE closure_clock AS
WITH cases AS (
    SELECT k.person_id AS case_person_id, k.case_code, p.district, k.clock_started_at,
           k.clock_started_at + to_minutes(CAST(60 * $target_hours AS BIGINT)) AS deadline_at
    FROM core_cases AS k LEFT JOIN persons AS p USING (person_id)
    WHERE k.clock_started_at IS NOT NULL AND k.clock_started_at <= $as_of
),
points AS (
    -- The outbreak point: the case's home area of the most specific residential scope closed.
    SELECT case_code, arg_min(scope, list_position($residential_scopes, scope)) AS scope,
           arg_min(area_key, list_position($residential_scopes, scope)) AS area_key
    FROM case_area_links WHERE list_contains($residential_scopes, scope)
    GROUP BY case_code
),
listed AS (
    SELECT p.case_code, min(r.as_of) AS first_listed_at
    FROM points AS p
    JOIN out_risk_area_rows AS r
      ON r.scope = p.scope AND r.area_key = p.area_key AND list_contains(r.case_codes, p.case_code)
    WHERE r.status <> 'lifted' AND r.as_of <= $as_of
    GROUP BY p.case_code
)
SELECT c.case_person_id, c.case_code, c.district, o.scope, o.area_key, c.clock_started_at, c.deadline_at,
       l.first_listed_at,
       round(date_diff('minute', c.clock_started_at, l.first_listed_at) / 60.0, 2) AS hours_to_listed,
       coalesce(l.first_listed_at <= c.deadline_at, false) AS is_within_target,
       CASE WHEN l.first_listed_at <= c.deadline_at THEN 'met'
            WHEN o.case_code IS NULL THEN 'no_address'
            WHEN l.first_listed_at IS NULL AND c.deadline_at > $as_of THEN 'pending'
            ELSE 'missed' END AS clock_status
FROM cases AS c
LEFT JOIN points AS o USING (case_code)
LEFT JOIN listed AS l USING (case_code)
ORDER BY c.clock_started_at, c.case_code
"""

CLOSURE_COMPLIANCE_SQL = """
CREATE OR REPLACE TABLE closure_compliance AS
SELECT coalesce(district, $unknown_district) AS district, CAST(clock_started_at AS DATE) AS clock_date,
       count(*) AS cases,
       count(*) FILTER (WHERE clock_status = 'met') AS met,
       count(*) FILTER (WHERE clock_status IN ('missed', 'no_address')) AS missed,
       count(*) FILTER (WHERE clock_status = 'no_address') AS no_address,
       count(*) FILTER (WHERE clock_status = 'pending') AS pending,
       round(count(*) FILTER (WHERE clock_status = 'met')
             / nullif(count(*) FILTER (WHERE clock_status <> 'pending'), 0), 4) AS compliance
FROM closure_clock
GROUP BY ALL
ORDER BY district, clock_date
"""


def closure_clock_parameters(rules: ClosureRules, unknown_district: str, as_of: dt.datetime) -> dict:
    closed = {a.scope for a in rules.areas}
    return {"as_of": as_of, "target_hours": rules.target_hours, "unknown_district": unknown_district,
            "residential_scopes": [s for s in RESIDENTIAL_SCOPES if s in closed]}


def build_closure_clock(con: duckdb.DuckDBPyConnection, params: dict) -> list[tuple]:
    """``closure_clock`` and ``closure_compliance``; returns the compliance rows."""
    for sql in (CLOSURE_CLOCK_SQL, CLOSURE_COMPLIANCE_SQL):
        con.execute(sql, bound_parameters(sql, params))
    return con.execute("SELECT * FROM closure_compliance").fetchall()
