"""Response stage, beds: what each facility holds as of the run, and who is already placed.

What belongs here: the latest bed census of each facility (a facility reported twice: the later
census wins; one that stopped reporting: its last census, flagged stale), carried forward to the
run by the arrivals and departures recorded since (isolation-point check-ins, hospital admissions
and discharges), and the stays that place a person (``placed_persons``). What does not: choosing
beds (``dispatch.py``), trips (``trips.py``).

Tables (temporary, for this run's plan): ``bed_pools`` (facility, bed kind: capacity, occupied,
free as of the run) and ``placed_persons``; ``bed_occupancy`` (published) is written by
``dispatch.py`` once the plan is known.
"""

from __future__ import annotations

import datetime as dt

import duckdb

from trace24.schemas.rules import Facilities, RuleProfile
from trace24.transforms.database import bound_parameters

# Every stay the response reads, from one scan of person_records (31 M rows at a million
# residents, nearly all place scans): isolation-point check-ins, hospital admissions, and the
# fever clinics' observations (留观: the visit is the stay; no leaving time). The transfer clock
# (lists/transfer_clock.py) reads the same temporary table in the same run.
STAYS_SQL = """
CREATE OR REPLACE TEMP TABLE current_stays AS
WITH links AS (
    SELECT feed, load_id, source_row_number, person_id
    FROM person_records
    WHERE feed IN ('isolation_checkins', 'inpatients', 'fever_clinic')
),
checkins AS (
    SELECT 'isolation_checkins' AS feed, load_id, source_row_number, facility_code, 'single_room' AS bed_kind,
           arrived_at, left_at, 'checkin' AS stay_source
    FROM staged_isolation_checkins
    WHERE is_current AND NOT is_deleted AND arrived_at <= $as_of
),
admissions AS (
    SELECT 'inpatients' AS feed, load_id, source_row_number, hospital_code AS facility_code,
           CASE WHEN len(list_filter($icu_ward_markers, lambda m: contains(ward, m))) > 0 THEN 'icu' ELSE 'general'
           END AS bed_kind,
           admitted_at AS arrived_at, discharged_at AS left_at, 'admission' AS stay_source
    FROM staged_inpatients
    WHERE is_current AND NOT is_deleted AND admitted_at <= $as_of
),
observations AS (
    SELECT 'fever_clinic' AS feed, load_id, source_row_number, hospital_code AS facility_code,
           'single_room' AS bed_kind, visited_at AS arrived_at, NULL::TIMESTAMP AS left_at,
           'observation' AS stay_source
    FROM staged_fever_clinic
    WHERE is_current AND NOT is_deleted AND disposition = '留观' AND visited_at <= $as_of
),
stays AS (
    SELECT * FROM checkins
    UNION ALL
    SELECT * FROM admissions
    UNION ALL
    SELECT * FROM observations
)
SELECT l.person_id, s.facility_code, s.bed_kind, s.arrived_at, s.left_at, s.stay_source
FROM stays AS s
JOIN links AS l USING (feed, load_id, source_row_number)
"""

POOLS_SQL = """
CREATE OR REPLACE TEMP TABLE bed_pools AS
WITH reports AS (
    SELECT * FROM staged_facility_beds WHERE is_current AND NOT is_deleted AND census_at <= $as_of
),
latest AS (
    -- A facility reported twice keeps its later census; one that stopped reporting, its last.
    SELECT * FROM reports
    QUALIFY row_number() OVER (PARTITION BY facility_code
                               ORDER BY census_at DESC, delivery_date DESC, load_id DESC, source_row_number DESC) = 1
),
admits AS (
    SELECT facility_code,
           list_sort(list_distinct(flatten(list_transform(regexp_split_to_array(admits, '[;；、,，]'),
               lambda label: coalesce(map($admits_labels_keys, $admits_labels_values)[trim(label)], []))))) AS admits
    FROM latest
),
kinds AS (
    SELECT facility_code, facility_name, facility_type, district, census_at, 'icu' AS bed_kind,
           coalesce(icu_beds, 0) AS capacity, coalesce(icu_occupied, 0) AS census_occupied FROM latest
    UNION ALL
    SELECT facility_code, facility_name, facility_type, district, census_at, 'general',
           coalesce(general_beds, 0), coalesce(general_occupied, 0) FROM latest
    UNION ALL
    SELECT facility_code, facility_name, facility_type, district, census_at, 'single_room',
           coalesce(single_rooms, 0), coalesce(single_rooms_occupied, 0) FROM latest
),
movements AS (
    -- Since the census: who arrived and is still there, who was there and left.
    SELECT k.facility_code, k.bed_kind,
           count(*) FILTER (WHERE s.arrived_at > k.census_at AND (s.left_at IS NULL OR s.left_at > $as_of))
               AS arrived_since_census,
           count(*) FILTER (WHERE s.arrived_at <= k.census_at AND s.left_at > k.census_at AND s.left_at <= $as_of)
               AS left_since_census
    FROM kinds AS k
    -- A clinic's observation has no leaving time: its census counts it, not the movements.
    JOIN current_stays AS s ON s.facility_code = k.facility_code AND s.bed_kind = k.bed_kind
                           AND s.stay_source <> 'observation'
    GROUP BY ALL
)
SELECT k.facility_code, k.facility_name, k.facility_type, k.district, k.bed_kind, a.admits, k.census_at,
       date_diff('minute', k.census_at, CAST($as_of AS TIMESTAMP)) / 60.0 AS census_age_hours,
       date_diff('minute', k.census_at, CAST($as_of AS TIMESTAMP)) > $census_stale_hours * 60 AS is_census_stale,
       k.census_occupied > k.capacity AS is_census_over_capacity,
       k.capacity, k.census_occupied,
       coalesce(m.arrived_since_census, 0) AS arrived_since_census,
       coalesce(m.left_since_census, 0) AS left_since_census,
       greatest(k.census_occupied + coalesce(m.arrived_since_census, 0) - coalesce(m.left_since_census, 0), 0)
           AS occupied,
       -- Never over capacity: an over-full census or arrivals past it leave no bed free, not a negative.
       greatest(k.capacity - greatest(k.census_occupied + coalesce(m.arrived_since_census, 0)
                                      - coalesce(m.left_since_census, 0), 0), 0) AS free_before_plan
FROM kinds AS k
JOIN admits AS a USING (facility_code)
LEFT JOIN movements AS m USING (facility_code, bed_kind)
WHERE k.capacity > 0 OR k.census_occupied > 0
"""

# A person is placed when a current stay (or, for a fever patient, the clinic's observation since
# the visit that made them one) is at a facility of a type the person's action may use: placed
# persons are never dispatched again. A contact in an isolation point who becomes a case is not
# placed for the new action, and is picked up from the isolation point.
PLACED_SQL = """
CREATE OR REPLACE TEMP TABLE placed_persons AS
WITH categories AS (
    SELECT * FROM four_categories WHERE list_contains($transfer_actions, action_key)
),
now_staying AS (
    SELECT s.person_id, s.facility_code, s.arrived_at, f.facility_type, f.district
    FROM current_stays AS s
    LEFT JOIN (SELECT DISTINCT facility_code, facility_type, district FROM bed_pools) AS f USING (facility_code)
    WHERE s.stay_source <> 'observation' AND (s.left_at IS NULL OR s.left_at > $as_of)
),
observing AS (
    SELECT s.person_id, s.facility_code, s.arrived_at, '发热门诊留观' AS facility_type, NULL AS district
    FROM current_stays AS s JOIN categories AS c USING (person_id)
    WHERE s.stay_source = 'observation' AND c.category = 'fever' AND s.arrived_at >= c.category_since_at
),
stays AS (
    SELECT * FROM now_staying UNION ALL SELECT * FROM observing
)
SELECT c.person_id, c.action_key,
       arg_min(s.facility_code, (s.arrived_at, s.facility_code))
           FILTER (WHERE list_contains(map($types_of_action_keys, $types_of_action_values)[c.action_key],
                                       s.facility_type)) AS placed_at_facility,
       min(s.arrived_at) FILTER (WHERE list_contains(map($types_of_action_keys, $types_of_action_values)[c.action_key],
                                                     s.facility_type)) AS placed_since_at,
       -- Staying somewhere that does not fit the action (a contact in isolation, now a case): picked up there.
       arg_max(s.facility_code, (s.arrived_at, s.facility_code)) AS staying_at_facility,
       arg_max(s.district, (s.arrived_at, s.facility_code)) AS staying_in_district
FROM categories AS c JOIN stays AS s USING (person_id)
GROUP BY ALL
"""


def bed_parameters(profile: RuleProfile, facilities: Facilities, as_of: dt.datetime) -> dict:
    rules = profile.dispatch
    types = {action: sorted({p.facility_type for p in places}) for action, places in rules.placements.items()}
    return {
        "as_of": as_of,
        "icu_ward_markers": list(facilities.icu_ward_markers),
        "admits_labels_keys": list(facilities.admits_labels),
        "admits_labels_values": [list(v) for v in facilities.admits_labels.values()],
        "census_stale_hours": rules.census_stale_hours,
        "transfer_actions": sorted(rules.placements),
        "types_of_action_keys": list(types), "types_of_action_values": list(types.values()),
    }



def build_bed_pools(con: duckdb.DuckDBPyConnection, params: dict) -> int:
    """``current_stays``, ``bed_pools`` and ``placed_persons`` for this run; returns the facilities counted."""
    for sql in (STAYS_SQL, POOLS_SQL, PLACED_SQL):
        con.execute(sql, bound_parameters(sql, params))
    return con.execute("SELECT count(DISTINCT facility_code) FROM bed_pools").fetchone()[0]
