"""Out layer: the transfer clock, hours from a person's first listing to their admission, and its compliance.

What belongs here: ``transfer_clock`` (per person whose action is a transfer: planned this run,
waiting for a bed, or already placed; when first listed in their category, the deadline the
profile gives the category, when admitted, met / late / pending) and ``transfer_compliance`` (per
district and day of first listing). What does not: the plan (``response/``), the sheets
(``response_sheets.py``), the 24-hour tracing clock (``tracing_clock.py``).

The clock starts at the as-of time of the first run that delivered the person on a list in their
current category since they entered it (``out_list_rows``, not released; the district's unplaced
list counts: a transfer does not wait for a community office, the dispatch picks up by district).
The deadline is that + the profile's ``dispatch.transfer_within_hours`` for the category. It stops
at the admission: the first stay of the person at a facility of a type their action may use
(``dispatch.placements``), an isolation check-in or a hospital admission, or for a fever patient
the clinic's observation (留观) since the visit, that had not ended before the person entered the
category (one admitted before being listed has met it, 0 hours); the stays are the run's
``current_stays`` (``response/beds.py``, read once for the response and this clock). Status: ``met`` (admitted by the
deadline), ``late`` (admitted after it, or not admitted and the deadline passed), ``pending`` (not
admitted, deadline not passed, or not listed yet). Current persons only, rebuilt every run: a
person who left their category (released) leaves the table.
"""

from __future__ import annotations

import datetime as dt

import duckdb

from trace24.schemas.response_rules import CATEGORY_OF_ACTION, DispatchRules
from trace24.transforms.database import bound_parameters

TRANSFER_CLOCK_SQL = """
CREATE OR REPLACE TABLE transfer_clock AS
WITH categories AS (
    SELECT * FROM four_categories WHERE list_contains($transfer_actions, action_key)
),
listed AS (
    SELECT c.person_id, min(o.as_of) AS first_listed_at
    FROM categories AS c
    JOIN out_list_rows AS o ON o.person_id = c.person_id AND o.category = c.category
    WHERE o.status <> 'released' AND o.as_of <= $as_of AND o.as_of >= coalesce(c.category_since_at, o.as_of)
    GROUP BY c.person_id
),
facility_types AS (
    SELECT facility_code, arg_max(facility_type, (census_at, delivery_date, load_id, source_row_number))
               AS facility_type
    FROM staged_facility_beds WHERE is_current AND NOT is_deleted AND census_at <= $as_of
    GROUP BY facility_code
),
run_stays AS (
    -- This run's stays (response/beds.py, same connection): check-ins, admissions, observations.
    SELECT * FROM current_stays
),
stays AS (
    SELECT s.person_id, s.facility_code, f.facility_type, s.arrived_at, s.left_at
    FROM run_stays AS s
    LEFT JOIN facility_types AS f USING (facility_code)
    WHERE s.stay_source <> 'observation'
    UNION ALL
    -- A fever patient kept under the clinic's observation since the visit that made them one.
    SELECT s.person_id, s.facility_code, '发热门诊留观', s.arrived_at, NULL
    FROM run_stays AS s JOIN categories AS c USING (person_id)
    WHERE s.stay_source = 'observation' AND c.category = 'fever' AND s.arrived_at >= c.category_since_at
),
admitted AS (
    SELECT c.person_id, min(s.arrived_at) AS admitted_at,
           arg_min(s.facility_code, (s.arrived_at, s.facility_code)) AS admitted_facility_code
    FROM categories AS c JOIN stays AS s USING (person_id)
    WHERE list_contains(map($types_of_action_keys, $types_of_action_values)[c.action_key], s.facility_type)
      AND (s.left_at IS NULL OR c.category_since_at IS NULL OR s.left_at > c.category_since_at)
    GROUP BY c.person_id
),
timed AS (
    SELECT c.person_id, c.category, c.action_key, coalesce(p.district, $unknown_district) AS district,
           l.first_listed_at,
           l.first_listed_at + to_minutes(CAST(60 * map($within_keys, $within_values)[c.category] AS BIGINT))
               AS deadline_at,
           a.admitted_at, a.admitted_facility_code,
           d.trip_id AS planned_trip_id, d.planned_arrival_at,
           w.person_id IS NOT NULL AS is_waiting_for_bed
    FROM categories AS c
    LEFT JOIN persons AS p USING (person_id)
    LEFT JOIN listed AS l USING (person_id)
    LEFT JOIN admitted AS a USING (person_id)
    LEFT JOIN dispatch_plan AS d USING (person_id)
    LEFT JOIN dispatch_shortfall AS w USING (person_id)
)
SELECT person_id, category, action_key, district, first_listed_at, deadline_at, admitted_at, admitted_facility_code,
       -- greatest() skips a NULL: no admission (or no listing) must stay NULL, not 0.
       CASE WHEN admitted_at IS NOT NULL AND first_listed_at IS NOT NULL
            THEN round(greatest(date_diff('minute', first_listed_at, admitted_at), 0) / 60.0, 2)
       END AS hours_to_admission,
       planned_trip_id, planned_arrival_at, is_waiting_for_bed,
       coalesce(admitted_at <= deadline_at, false) AS is_within_target,
       CASE WHEN admitted_at <= deadline_at THEN 'met'
            WHEN admitted_at IS NOT NULL OR deadline_at <= $as_of THEN 'late'
            ELSE 'pending' END AS status
FROM timed
ORDER BY person_id
"""

TRANSFER_COMPLIANCE_SQL = """
CREATE OR REPLACE TABLE transfer_compliance AS
SELECT district, CAST(first_listed_at AS DATE) AS listed_date,
       count(*) AS persons,
       count(*) FILTER (WHERE status = 'met') AS admitted_in_time,
       count(*) FILTER (WHERE status = 'late') AS late,
       count(*) FILTER (WHERE status = 'pending') AS pending,
       round(count(*) FILTER (WHERE status = 'met') / nullif(count(*) FILTER (WHERE status <> 'pending'), 0), 4)
           AS share
FROM transfer_clock
WHERE first_listed_at IS NOT NULL
GROUP BY ALL
ORDER BY district, listed_date
"""


def transfer_clock_parameters(rules: DispatchRules, unknown_district: str, as_of: dt.datetime) -> dict:
    types = {action: sorted({p.facility_type for p in places}) for action, places in rules.placements.items()}
    within = {category: rules.transfer_within_hours[category]
              for category in sorted({CATEGORY_OF_ACTION[a] for a in rules.placements})}
    return {"as_of": as_of, "unknown_district": unknown_district, "transfer_actions": sorted(rules.placements),
            "types_of_action_keys": list(types), "types_of_action_values": list(types.values()),
            "within_keys": list(within), "within_values": [float(h) for h in within.values()]}


def build_transfer_clock(con: duckdb.DuckDBPyConnection, params: dict) -> list[tuple]:
    """Write ``transfer_clock`` and ``transfer_compliance``; return the compliance rows (district, day,
    persons, admitted in time, late, pending, share)."""
    for sql in (TRANSFER_CLOCK_SQL, TRANSFER_COMPLIANCE_SQL):
        con.execute(sql, bound_parameters(sql, params))
    return con.execute("SELECT * FROM transfer_compliance").fetchall()
