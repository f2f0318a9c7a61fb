"""Out layer: the 24-hour clock of every case, and its compliance per district and day.

What belongs here: ``tracing_clock_contacts`` (per case and close contact: when the contact first
appeared on a delivered community list, and why not in time where not), ``tracing_clock`` (per
case: its clock start, contacts, whether all made it in time) and ``tracing_compliance`` (per
district and day of clock start). What does not: writing the lists (``community_lists.py``).

The clock starts at the earliest of the case's positive lab report and its case report
(``core_cases.clock_started_at``); it stops for a contact when a run delivers the contact on the
list of a community (not the district's unplaced list); a run delivers at its as-of time.
Reasons a contact missed the target, first that applies:
- ``contact_unplaced``: the contact has no community, so no community office has them;
- ``late_delivery``: the records that reveal the exposure were delivered after the deadline;
- ``missing_data``: the contact has neither a phone nor an address to act on;
- ``not_listed_in_time``: everything was there, the lists were late (run cadence, processing).
A case whose deadline has not passed and whose contacts are not all listed is ``pending``.

The clock also says whether the contacts were *controlled* in time, which is what the target asks:
a contact is controlled at the 落实时间 of the first office answer that means control
(``core_followup.first_controlled_at``: home or central isolation, transferred, sent to hospital);
``control_status`` is ``met`` when every close contact was controlled by the deadline, ``pending``
before it, ``missed`` after it.
"""

from __future__ import annotations

import datetime as dt

import duckdb

from trace24.schemas.rules import RuleProfile
from trace24.transforms.database import bound_parameters

CLOCK_CONTACTS_SQL = """
CREATE OR REPLACE TABLE tracing_clock_contacts AS
WITH cases AS (
    SELECT person_id AS case_person_id, case_code, clock_started_at,
           clock_started_at + to_minutes(CAST(60 * $target_hours AS BIGINT)) AS deadline_at
    FROM core_cases WHERE clock_started_at IS NOT NULL
),
contacts AS (
    SELECT source_person_id AS case_person_id, exposed_person_id AS contact_person_id
    FROM core_contacts
    WHERE contact_level = 'close' AND exposed_person_id NOT IN (SELECT person_id FROM core_cases)
),
listed AS (
    SELECT person_id, min(as_of) AS first_listed_at
    FROM out_list_rows
    WHERE community_code IS NOT NULL AND status <> 'released' AND as_of <= $as_of
    GROUP BY person_id
),
exposure_records AS (
    SELECT e.rowid AS exposure_row, e.source_person_id AS case_person_id,
           e.exposed_person_id AS contact_person_id, unnest(e.evidence) AS ev
    FROM core_exposures AS e
    WHERE e.contact_level = 'close'
),
exposure_known AS (
    -- An exposure is known once every record behind it has reached us (the case's scan and the
    -- contact's): the end of the delivery day of the last of them.
    SELECT x.exposure_row, x.case_person_id, x.contact_person_id,
           max(CAST(a.delivery_date AS TIMESTAMP) + INTERVAL 1 DAY) AS known_at
    FROM exposure_records AS x
    JOIN load_audit AS a ON a.load_id = x.ev.load_id
    GROUP BY ALL
),
revealed AS (
    -- The contact is revealed by the first of its exposures to the case that became known.
    SELECT case_person_id, contact_person_id, min(known_at) AS revealed_at
    FROM exposure_known
    GROUP BY ALL
),
controlled AS (
    -- The office's 落实时间 of the first answer that means control (followup/answers.py).
    SELECT person_id, first_controlled_at FROM core_followup
)
SELECT k.case_person_id, k.case_code, c.contact_person_id, k.clock_started_at, k.deadline_at,
       l.first_listed_at, v.revealed_at,
       coalesce(l.first_listed_at <= k.deadline_at, false) AS is_within_target,
       f.first_controlled_at AS controlled_at,
       coalesce(f.first_controlled_at <= k.deadline_at, false) AS is_controlled_within_target,
       CASE WHEN l.first_listed_at <= k.deadline_at THEN NULL
            WHEN l.first_listed_at IS NULL AND k.deadline_at > $as_of THEN 'pending'
            WHEN p.community_code IS NULL THEN 'contact_unplaced'
            WHEN v.revealed_at > k.deadline_at THEN 'late_delivery'
            WHEN p.phone IS NULL AND p.room IS NULL AND p.address_text IS NULL THEN 'missing_data'
            ELSE 'not_listed_in_time' END AS miss_reason
FROM cases AS k
JOIN contacts AS c USING (case_person_id)
LEFT JOIN persons AS p ON p.person_id = c.contact_person_id
LEFT JOIN listed AS l ON l.person_id = c.contact_person_id
LEFT JOIN revealed AS v USING (case_person_id, contact_person_id)
LEFT JOIN controlled AS f ON f.person_id = c.contact_person_id
ORDER BY k.case_person_id, c.contact_person_id
"""

CLOCK_SQL = """
CREATE OR REPLACE TABLE tracing_clock AS
WITH per_case AS (
    SELECT case_person_id, count(*) AS contacts,
           count(*) FILTER (WHERE is_within_target) AS contacts_in_time,
           count(*) FILTER (WHERE miss_reason = 'pending') AS contacts_pending,
           count(*) FILTER (WHERE is_controlled_within_target) AS contacts_controlled_in_time,
           max(controlled_at) AS last_contact_controlled_at,
           max(first_listed_at) AS last_contact_listed_at,
           list_sort(list_distinct(list(miss_reason) FILTER (WHERE miss_reason IS NOT NULL))) AS miss_reasons
    FROM tracing_clock_contacts GROUP BY case_person_id
)
SELECT k.person_id AS case_person_id, k.case_code, k.is_asymptomatic, p.district,
       k.clock_started_at,
       k.clock_started_at + to_minutes(CAST(60 * $target_hours AS BIGINT)) AS deadline_at,
       coalesce(c.contacts, 0) AS contacts, coalesce(c.contacts_in_time, 0) AS contacts_in_time,
       c.last_contact_listed_at,
       CASE WHEN c.contacts IS NULL OR c.contacts = c.contacts_in_time THEN 'met'
            WHEN c.contacts_pending > 0 AND c.contacts - c.contacts_in_time = c.contacts_pending THEN 'pending'
            ELSE 'missed' END AS clock_status,
       coalesce(c.miss_reasons, []) AS miss_reasons,
       coalesce(c.contacts_controlled_in_time, 0) AS contacts_controlled_in_time,
       c.last_contact_controlled_at,
       -- Controlled within 24 h: every close contact's office answered control by the deadline.
       CASE WHEN c.contacts IS NULL OR c.contacts = c.contacts_controlled_in_time THEN 'met'
            WHEN k.clock_started_at + to_minutes(CAST(60 * $target_hours AS BIGINT)) > $as_of THEN 'pending'
            ELSE 'missed' END AS control_status
FROM core_cases AS k
LEFT JOIN per_case AS c ON c.case_person_id = k.person_id
LEFT JOIN persons AS p ON p.person_id = k.person_id
WHERE k.clock_started_at IS NOT NULL
ORDER BY k.clock_started_at, k.case_code
"""

COMPLIANCE_SQL = """
CREATE OR REPLACE TABLE tracing_compliance AS
SELECT coalesce(district, $unknown_district) AS district, CAST(clock_started_at AS DATE) AS clock_date,
       count(*) AS cases,
       count(*) FILTER (WHERE clock_status = 'met') AS met,
       count(*) FILTER (WHERE clock_status = 'missed') AS missed,
       count(*) FILTER (WHERE clock_status = 'pending') AS pending,
       round(count(*) FILTER (WHERE clock_status = 'met')
             / nullif(count(*) FILTER (WHERE clock_status <> 'pending'), 0), 4) AS compliance,
       count(*) FILTER (WHERE control_status = 'met') AS controlled_met,
       count(*) FILTER (WHERE control_status = 'missed') AS controlled_missed,
       count(*) FILTER (WHERE control_status = 'pending') AS controlled_pending,
       round(count(*) FILTER (WHERE control_status = 'met')
             / nullif(count(*) FILTER (WHERE control_status <> 'pending'), 0), 4) AS controlled_compliance
FROM tracing_clock
GROUP BY ALL
ORDER BY district, clock_date
"""


def clock_parameters(profile: RuleProfile, unknown_district: str, as_of: dt.datetime) -> dict:
    return {"as_of": as_of, "target_hours": profile.categories.clock_target_hours,
            "unknown_district": unknown_district}


def build_clock(con: duckdb.DuckDBPyConnection, params: dict) -> list[tuple]:
    """Write the three clock tables; return the compliance rows (district, day, cases, met, missed,
    pending, compliance, then the same four for controlled within the target)."""
    for sql in (CLOCK_CONTACTS_SQL, CLOCK_SQL, COMPLIANCE_SQL):
        con.execute(sql, bound_parameters(sql, params))
    return con.execute("SELECT * FROM tracing_compliance").fetchall()
