"""Response stage, history: what each run's plan looked like, kept run by run.

What belongs here: ``bed_occupancy_history`` (every run's ``bed_occupancy`` rows) and
``dispatch_history`` (per run, pickup district and category: planned, trips, without a vehicle,
waiting for a bed), so the command and the epidemiologists can follow beds and transfers over
time; the current tables are rebuilt each run and keep no past. What does not: the plan itself
(``dispatch.py``, ``trips.py``). A run of the same as-of time replaces its own rows.
"""

from __future__ import annotations

import datetime as dt

import duckdb

HISTORY_DDL = """
CREATE TABLE IF NOT EXISTS bed_occupancy_history (
    as_of TIMESTAMP, facility_code VARCHAR, facility_type VARCHAR, district VARCHAR, bed_kind VARCHAR,
    capacity BIGINT, occupied BIGINT, planned BIGINT, free BIGINT, is_census_stale BOOLEAN
);
CREATE TABLE IF NOT EXISTS dispatch_history (
    as_of TIMESTAMP, district VARCHAR, category VARCHAR, planned BIGINT, trips BIGINT,
    without_vehicle BIGINT, waiting_for_bed BIGINT, longest_wait_hours DOUBLE
);
"""

OCCUPANCY_SQL = """
INSERT INTO bed_occupancy_history
WITH occupancy AS (
    SELECT * FROM bed_occupancy
)
SELECT CAST($as_of AS TIMESTAMP) AS as_of, facility_code, facility_type, district, bed_kind, capacity, occupied,
       planned, free, is_census_stale
FROM occupancy
ORDER BY facility_code, bed_kind
"""

DISPATCH_SQL = """
INSERT INTO dispatch_history
WITH plan AS (
    SELECT pickup_district AS district, category, count(*) AS planned, count(DISTINCT trip_id) AS trips,
           count(*) FILTER (WHERE vehicle_id IS NULL) AS without_vehicle
    FROM dispatch_plan
    GROUP BY ALL
),
waiting AS (
    SELECT district, category, count(*) AS waiting_for_bed, max(waited_hours) AS longest_wait_hours
    FROM dispatch_shortfall
    GROUP BY ALL
)
SELECT CAST($as_of AS TIMESTAMP) AS as_of, district, category, coalesce(p.planned, 0) AS planned,
       coalesce(p.trips, 0) AS trips, coalesce(p.without_vehicle, 0) AS without_vehicle,
       coalesce(w.waiting_for_bed, 0) AS waiting_for_bed, w.longest_wait_hours
FROM plan AS p
FULL JOIN waiting AS w USING (district, category)
ORDER BY district, category
"""


def record_history(con: duckdb.DuckDBPyConnection, as_of: dt.datetime) -> None:
    """Append this run's occupancy and plan figures, replacing rows of a run with the same as-of time."""
    con.execute(HISTORY_DDL)
    con.execute("DELETE FROM bed_occupancy_history WHERE as_of = $as_of", {"as_of": as_of})
    con.execute(OCCUPANCY_SQL, {"as_of": as_of})
    con.execute("DELETE FROM dispatch_history WHERE as_of = $as_of", {"as_of": as_of})
    con.execute(DISPATCH_SQL, {"as_of": as_of})
