"""Response stage, trips: the planned transfers grouped into vehicle trips, and the published plan.

What belongs here: the vehicles on duty (``staged_vehicles``), trips of one category, one pickup
district and one destination, seats respected (and the profile's ``max_per_trip``: a suspected
patient rides alone), pickups ordered by community, compound, building, unit and room; each trip
given the vehicle of its kind that can take it first (own district first, then the fewest borders
away), a vehicle being disinfected between trips; then ``dispatch_trips`` and ``dispatch_plan``.
What does not: choosing beds (``dispatch.py``), the sheets (``lists/response_sheets.py``).

A trip no vehicle can take before its shift ends stays in the plan without a vehicle (``vehicle_id``
NULL): the command sees it as vehicles short. Trip numbers (车次) are ``MMDD-NNNN`` of the run.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa

from trace24.schemas.response_rules import DispatchRules
from trace24.transforms.database import bound_parameters, temp_table
from trace24.transforms.response.dispatch import UNREACHABLE_HOPS

PLANNED_SQL = """
SELECT person_id, action_key, category, pickup_district, facility_code
FROM planned_beds
ORDER BY priority_rank, pickup_district, category, facility_code, community_code NULLS LAST, compound NULLS LAST,
         TRY_CAST(regexp_extract(building, '[0-9]+') AS INTEGER) NULLS LAST, building NULLS LAST,
         TRY_CAST(regexp_extract(unit, '[0-9]+') AS INTEGER) NULLS LAST, unit NULLS LAST,
         TRY_CAST(regexp_extract(room, '[0-9]+') AS INTEGER) NULLS LAST, room NULLS LAST, person_id
"""

SHIFTS_SQL = """
SELECT vehicle_id, district, vehicle_kind, seats, on_duty_from, on_duty_until
FROM staged_vehicles
WHERE is_current AND NOT is_deleted AND on_duty_until > $as_of AND on_duty_from < $horizon
ORDER BY district, vehicle_kind, on_duty_from, vehicle_id
"""


@dataclass
class Shift:
    vehicle_id: str
    district: str
    kind: str
    seats: int
    on_duty_from: dt.datetime
    on_duty_until: dt.datetime
    free_at: dt.datetime = field(default=dt.datetime.min)


@dataclass(frozen=True)
class Trip:
    trip_id: str
    vehicle_id: str | None
    vehicle_kind: str
    district: str           # pickup district
    category: str
    facility_code: str
    seats: int | None
    person_ids: tuple[int, ...]
    pickup_at: dt.datetime | None
    arrival_at: dt.datetime | None


def _take_shift(shifts_by_district: dict[str, list[Shift]], kind: str, district: str,
                hops: dict[tuple[str, str], int], trip_minutes: float, as_of: dt.datetime,
                own_district_only: bool) -> tuple[Shift, dt.datetime] | None:
    """The shift of ``kind`` that can start the trip first: own district first, then by borders crossed."""
    by_distance: dict[int, list[Shift]] = {}
    for other, shifts in shifts_by_district.items():
        distance = 0 if other == district else hops.get((district, other), UNREACHABLE_HOPS)
        if distance == 0 or not own_district_only:
            by_distance.setdefault(distance, []).extend(s for s in shifts if s.kind == kind)
    duration = dt.timedelta(minutes=trip_minutes)
    for distance in sorted(by_distance):
        best = None
        for shift in by_distance[distance]:
            start = max(shift.free_at, shift.on_duty_from, as_of)
            if start + duration <= shift.on_duty_until and (best is None or (start, shift.vehicle_id) < best[1:]):
                best = (shift, start, shift.vehicle_id)
        if best:
            return best[0], best[1]
    return None


def build_trips(planned: list[tuple], shifts: list[Shift], rules: DispatchRules, hops: dict[tuple[str, str], int],
                as_of: dt.datetime) -> list[Trip]:
    """Trips over the planned transfers (in pickup order), each given the vehicle that can take it first.

    Two passes: every district's trips first take its own vehicles (in priority order), and only
    then are the trips left given the nearest other districts' free vehicles, so that a district
    planned first never takes the vehicles of a district planned after it."""
    shifts_by_district: dict[str, list[Shift]] = {}
    for shift in shifts:
        shifts_by_district.setdefault(shift.district, []).append(shift)
    groups: dict[tuple, list[int]] = {}
    for person_id, action, category, district, facility in planned:
        kind = rules.vehicle_of_action[action]
        # One category per trip; a suspected or fever patient alone when the profile says so.
        limit = rules.max_per_trip.get(action)
        groups.setdefault((district, kind, category, facility, limit), []).append(person_id)
    trips: list[Trip] = []
    cycle = dt.timedelta(minutes=rules.trip_minutes + rules.turnaround_minutes)

    def fill(group: tuple, persons: list[int], own_district_only: bool) -> list[int]:
        """Trips for ``persons`` while a vehicle can take them; the persons left."""
        district, kind, category, facility, limit = group
        while persons:
            taken = _take_shift(shifts_by_district, kind, district, hops, rules.trip_minutes, as_of,
                                own_district_only)
            if not taken:
                return persons
            shift, start = taken
            size = min(n for n in (shift.seats, limit, len(persons)) if n)
            members, persons = persons[:size], persons[size:]
            shift.free_at = start + cycle
            trips.append(Trip(f"{as_of:%m%d}-{len(trips) + 1:04d}", shift.vehicle_id, kind, district, category,
                              facility, shift.seats, tuple(members), start,
                              start + dt.timedelta(minutes=rules.trip_minutes / 2)))
        return persons

    left = {group: fill(group, persons, own_district_only=True) for group, persons in groups.items()}
    for group, persons in left.items():
        persons = fill(group, persons, own_district_only=False)
        district, kind, category, facility, limit = group
        while persons:   # no vehicle can take them: kept, for the command to see vehicles short
            size = min(n for n in (limit, len(persons)) if n)
            members, persons = persons[:size], persons[size:]
            trips.append(Trip(f"{as_of:%m%d}-{len(trips) + 1:04d}", None, kind, district, category, facility, None,
                              tuple(members), None, None))
    return trips


PLAN_SQL = """
CREATE OR REPLACE TABLE dispatch_plan AS
WITH planned AS (
    SELECT * FROM planned_beds
),
members AS (
    SELECT * FROM dispatch_trip_members
),
trips AS (
    SELECT * FROM dispatch_trips
)
SELECT CAST($as_of AS TIMESTAMP) AS as_of, p.person_id, p.action_key, p.category, p.priority_rank,
       p.waiting_since_at, round(date_diff('minute', p.waiting_since_at, CAST($as_of AS TIMESTAMP)) / 60.0, 1)
           AS waited_hours,
       p.pickup_district, p.pickup_facility_code, p.community_code, p.facility_code, p.facility_name,
       p.facility_type, p.facility_district, p.bed_kind, p.preference_rank, p.borders_crossed,
       m.trip_id, m.pickup_order, t.vehicle_id, t.planned_pickup_at, t.planned_arrival_at
FROM planned AS p
JOIN members AS m USING (person_id)
JOIN trips AS t USING (trip_id)
ORDER BY m.trip_id, m.pickup_order
"""


def plan_trips(con: duckdb.DuckDBPyConnection, rules: DispatchRules, hops: dict[tuple[str, str], int],
               as_of: dt.datetime) -> dict[str, int]:
    """``dispatch_trips`` and ``dispatch_plan`` from ``planned_beds`` and the vehicles on duty."""
    horizon = as_of + dt.timedelta(days=1)
    shifts = [Shift(*row) for row in con.execute(SHIFTS_SQL, {"as_of": as_of, "horizon": horizon}).fetchall()]
    trips = build_trips(con.execute(PLANNED_SQL).fetchall(), shifts, rules, hops, as_of)
    # Handed over as Arrow columns: a city's trips row by row through executemany cost seconds.
    trip_rows = pa.table({
        "trip_id": pa.array([t.trip_id for t in trips], pa.string()),
        "vehicle_id": pa.array([t.vehicle_id for t in trips], pa.string()),
        "vehicle_kind": pa.array([t.vehicle_kind for t in trips], pa.string()),
        "pickup_district": pa.array([t.district for t in trips], pa.string()),
        "category": pa.array([t.category for t in trips], pa.string()),
        "facility_code": pa.array([t.facility_code for t in trips], pa.string()),
        "seats": pa.array([t.seats for t in trips], pa.int32()),
        "persons": pa.array([len(t.person_ids) for t in trips], pa.int32()),
        "planned_pickup_at": pa.array([t.pickup_at for t in trips], pa.timestamp("us")),
        "planned_arrival_at": pa.array([t.arrival_at for t in trips], pa.timestamp("us")),
    })
    member_rows = pa.table({
        "trip_id": pa.array([t.trip_id for t in trips for _ in t.person_ids], pa.string()),
        "person_id": pa.array([p for t in trips for p in t.person_ids], pa.int64()),
        "pickup_order": pa.array([i + 1 for t in trips for i in range(len(t.person_ids))], pa.int32()),
    })
    temp_table(con, "trip_rows", trip_rows)
    temp_table(con, "dispatch_trip_members", member_rows)
    con.execute("CREATE OR REPLACE TABLE dispatch_trips AS "
                "SELECT CAST($as_of AS TIMESTAMP) AS as_of, * FROM trip_rows ORDER BY trip_id", {"as_of": as_of})
    con.execute(PLAN_SQL, bound_parameters(PLAN_SQL, {"as_of": as_of}))
    return {"trips": len(trips), "trips_without_vehicle": sum(t.vehicle_id is None for t in trips)}
