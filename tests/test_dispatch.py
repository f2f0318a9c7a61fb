"""Dispatch: the bed assignment against a brute-force optimum, and the trips' rules.

The solver (``response/dispatch.py``) groups persons and beds and solves a min-cost flow per
priority level; here every named case and many generated ones are solved again by trying every
assignment of every single person, and the two must reach the same objective: as many placed as
possible in priority order, then the least cost (preference rank, then borders crossed).
"""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trace24.schemas.rules import load_district_map, load_rule_profile
from trace24.transforms.response.dispatch import BedClass, DemandGroup, arc_cost, solve
from trace24.transforms.response.trips import Shift, build_trips

RULES = load_rule_profile("nhc-v6").dispatch
HOPS = load_district_map().hops()
ISOLATION = ("asymptomatic", "close_contact", "secondary_contact", "suspected")


def objective(groups, classes, counts_by_group_class) -> tuple:
    """(placed at each priority level, highest first, negated for minimising; then the total cost)."""
    placed = {level: 0 for level in RULES.priority}
    cost = 0
    for (g, c), n in counts_by_group_class.items():
        placed[groups[g].action] += n
        cost += n * arc_cost(RULES, HOPS, groups[g], classes[c])
    return (*(-placed[level] for level in RULES.priority), cost)


def solver_objective(groups, classes) -> tuple:
    allocations = solve(RULES, HOPS, groups, classes)
    counts = {}
    for a in allocations:
        g = next(i for i, grp in enumerate(groups) if (grp.action, grp.district) == (a.action, a.district))
        counts[(g, a.bed_class)] = counts.get((g, a.bed_class), 0) + a.persons
    # Never over capacity, never a bed the person may not take, never more persons than waiting.
    for c, bed_class in enumerate(classes):
        assert sum(n for (_, k), n in counts.items() if k == c) <= bed_class.free
    for g, c in counts:
        assert arc_cost(RULES, HOPS, groups[g], classes[c]) is not None
    for g, group in enumerate(groups):
        assert sum(n for (h, _), n in counts.items() if h == g) <= group.persons
    return objective(groups, classes, counts)


def brute_force_objective(groups, classes) -> tuple:
    persons = [g for g, group in enumerate(groups) for _ in range(group.persons)]
    options = [[None, *(c for c, k in enumerate(classes) if arc_cost(RULES, HOPS, groups[g], k) is not None)]
               for g in persons]
    best = None
    for choice in itertools.product(*options):
        used = {}
        for c in choice:
            if c is not None:
                used[c] = used.get(c, 0) + 1
        if any(n > classes[c].free for c, n in used.items()):
            continue
        counts = {}
        for g, c in zip(persons, choice, strict=True):
            if c is not None:
                counts[(g, c)] = counts.get((g, c), 0) + 1
        value = objective(groups, classes, counts)
        best = value if best is None or value < best else best
    return best


def isolation_point(district: str, free: int) -> BedClass:
    return BedClass("集中隔离点", "single_room", district, ISOLATION, free)


NAMED_CASES = {
    # A full isolation point at home sends its contacts to the neighbouring district's.
    "full_home_district_sends_to_neighbour": (
        [DemandGroup("close_contact", "江岸区", 3)],
        [isolation_point("江岸区", 1), isolation_point("武昌区", 5)]),
    # Severe cases take ICU beds first, mild ones the shelter hospital, not the designated hospital.
    "severe_to_icu_mild_to_fangcang": (
        [DemandGroup("confirmed_severe", "武昌区", 2), DemandGroup("confirmed_mild", "武昌区", 2)],
        [BedClass("定点医院", "icu", "武昌区", ("confirmed_severe",), 2),
         BedClass("定点医院", "general", "武昌区", ("confirmed_mild", "confirmed_severe"), 2),
         BedClass("方舱医院", "general", "江岸区", ("confirmed_mild",), 2)]),
    # Beds short: the suspected case is placed before the close contacts.
    "shortage_serves_suspected_before_contacts": (
        [DemandGroup("close_contact", "江岸区", 2), DemandGroup("suspected", "江岸区", 1)],
        [isolation_point("江岸区", 2)]),
    # A facility that does not admit contacts is not used for them, however empty.
    "admits_respected": (
        [DemandGroup("close_contact", "江岸区", 2)],
        [BedClass("集中隔离点", "single_room", "江岸区", ("suspected",), 5), isolation_point("武昌区", 1)]),
    # Severe cases could go to ICU or general; mild only to general: severe must leave general to mild.
    "higher_level_leaves_room_for_lower": (
        [DemandGroup("confirmed_severe", "江岸区", 1), DemandGroup("confirmed_mild", "江岸区", 1)],
        [BedClass("定点医院", "icu", "武昌区", ("confirmed_severe",), 1),
         BedClass("定点医院", "general", "江岸区", ("confirmed_mild", "confirmed_severe"), 1)]),
    # The suspected case's cheapest room is the contacts' only one: it takes the hospital's single
    # room, so that both are placed (a level solved alone would have blocked the contact).
    "suspected_leaves_the_isolation_room_to_the_contact": (
        [DemandGroup("suspected", "江岸区", 1), DemandGroup("close_contact", "江岸区", 1)],
        [isolation_point("江岸区", 1), BedClass("定点医院", "single_room", "江岸区", ("suspected",), 1)]),
    # An unknown district is placed anywhere, after everyone whose district is known and near.
    "unknown_district": (
        [DemandGroup("close_contact", "未知区", 1), DemandGroup("close_contact", "武昌区", 1)],
        [isolation_point("武昌区", 1), isolation_point("汉南区", 1)]),
}


@pytest.mark.parametrize("name", sorted(NAMED_CASES))
def test_the_solver_reaches_the_brute_force_optimum_on_named_cases(name):
    groups, classes = NAMED_CASES[name]
    assert solver_objective(groups, classes) == brute_force_objective(groups, classes)


def test_a_full_facility_sends_people_to_the_next_by_the_stated_preference():
    groups, classes = NAMED_CASES["full_home_district_sends_to_neighbour"]
    allocations = {(a.bed_class, a.persons) for a in solve(RULES, HOPS, groups, classes)}
    assert allocations == {(0, 1), (1, 2)}
    groups, classes = NAMED_CASES["severe_to_icu_mild_to_fangcang"]
    allocations = {(a.action, classes[a.bed_class].facility_type, classes[a.bed_class].bed_kind, a.persons)
                   for a in solve(RULES, HOPS, groups, classes)}
    assert allocations == {("confirmed_severe", "定点医院", "icu", 2), ("confirmed_mild", "方舱医院", "general", 2)}


def test_beds_short_serve_priority_first():
    groups, classes = NAMED_CASES["shortage_serves_suspected_before_contacts"]
    placed = {a.action: a.persons for a in solve(RULES, HOPS, groups, classes)}
    assert placed == {"suspected": 1, "close_contact": 1}


DISTRICTS = ("江岸区", "武昌区", "汉南区")
ACTIONS = ("confirmed_severe", "confirmed_mild", "suspected", "close_contact")
KINDS = (("定点医院", "icu", ("confirmed_severe",)), ("定点医院", "general", ("confirmed_mild", "confirmed_severe")),
         ("方舱医院", "general", ("confirmed_mild",)), ("集中隔离点", "single_room", ISOLATION),
         ("定点医院", "single_room", ("suspected",)))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(ACTIONS), st.sampled_from(DISTRICTS), st.integers(1, 2)),
                min_size=1, max_size=3, unique_by=lambda t: t[:2]),
       st.lists(st.tuples(st.sampled_from(KINDS), st.sampled_from(DISTRICTS), st.integers(0, 2)),
                min_size=1, max_size=3, unique_by=lambda t: t[:2]))
def test_the_solver_matches_brute_force_on_generated_cases(demand, beds):
    groups = [DemandGroup(a, d, n) for a, d, n in demand]
    classes = [BedClass(t, k, d, admits, free) for (t, k, admits), d, free in beds]
    assert solver_objective(groups, classes) == brute_force_objective(groups, classes)
    assert solve(RULES, HOPS, groups, classes) == solve(RULES, HOPS, groups, classes)


AS_OF = dt.datetime(2020, 2, 12)


def shifts() -> list[Shift]:
    day = dt.datetime(2020, 2, 11, 20, 0)
    return [Shift("JA-120-1", "江岸区", "负压救护车", 2, day, day + dt.timedelta(hours=12)),
            Shift("JA-BUS-1", "江岸区", "转运大巴", 3, day, day + dt.timedelta(hours=12)),
            Shift("WC-BUS-1", "武昌区", "转运大巴", 30, day, day + dt.timedelta(hours=12))]


def planned_persons() -> list[tuple]:
    rows = [(i, "close_contact", "close_contact", "江岸区", "GL01") for i in range(1, 8)]
    rows += [(20 + i, "suspected", "suspected", "江岸区", "GL01") for i in range(3)]
    rows += [(30 + i, "confirmed_mild", "confirmed", "江岸区", "FC01") for i in range(3)]
    rows += [(40 + i, "close_contact", "close_contact", "汉南区", "GL09") for i in range(2)]
    return rows


def test_trips_keep_one_category_one_district_and_the_seats():
    planned = planned_persons()
    trips = build_trips(planned, shifts(), RULES, HOPS, AS_OF)
    by_person = {p[0]: p for p in planned}
    assert sorted(p for t in trips for p in t.person_ids) == sorted(by_person)   # everyone once
    for trip in trips:
        members = [by_person[p] for p in trip.person_ids]
        assert {m[2] for m in members} == {trip.category}
        assert {m[3] for m in members} == {trip.district}
        assert {m[4] for m in members} == {trip.facility_code}
        assert trip.seats is None or len(members) <= trip.seats
        if trip.category == "suspected":
            assert len(members) == 1        # alone in the vehicle (profile: max_per_trip)
        expected_kind = "转运大巴" if trip.category == "close_contact" else "负压救护车"
        assert trip.vehicle_kind == expected_kind


def test_a_vehicle_is_disinfected_between_trips_and_stays_within_its_shift():
    trips = build_trips(planned_persons(), shifts(), RULES, HOPS, AS_OF)
    cycle = dt.timedelta(minutes=RULES.trip_minutes + RULES.turnaround_minutes)
    by_vehicle = {}
    for trip in trips:
        if trip.vehicle_id:
            by_vehicle.setdefault(trip.vehicle_id, []).append(trip.pickup_at)
    shift_end = {s.vehicle_id: s.on_duty_until for s in shifts()}
    for vehicle, starts in by_vehicle.items():
        starts.sort()
        assert all(b - a >= cycle for a, b in itertools.pairwise(starts))
        assert starts[-1] + dt.timedelta(minutes=RULES.trip_minutes) <= shift_end[vehicle]
    # 汉南区 has no bus: its contacts ride one from the nearest districts (江岸区 and 武昌区, three
    # borders each), the one free first (江岸区's is busy with its own contacts).
    hannan = [t for t in trips if t.district == "汉南区"]
    assert hannan and all(t.vehicle_id == "WC-BUS-1" for t in hannan)
    jiangan = [t for t in trips if t.district == "江岸区" and t.category == "close_contact"]
    assert {t.vehicle_id for t in jiangan} == {"JA-BUS-1"}


def test_trips_without_a_vehicle_are_kept_not_lost():
    trips = build_trips(planned_persons(), [], RULES, HOPS, AS_OF)
    assert sum(len(t.person_ids) for t in trips) == len(planned_persons())
    assert all(t.vehicle_id is None and t.pickup_at is None for t in trips)
    assert build_trips(planned_persons(), shifts(), RULES, HOPS, AS_OF) == \
        build_trips(planned_persons(), shifts(), RULES, HOPS, AS_OF)


# On a store: the bed census, the placed persons and the plan as the lists stage runs them.
def _census(city, code: str, ftype: str, district: str, admits: str, census_at: dt.datetime, *,
            general=(0, 0), single=(0, 0), row: int) -> None:
    city.con.execute(
        "INSERT INTO staged_facility_beds BY NAME SELECT 1 AS load_id, DATE '2020-02-09' AS delivery_date, "
        "'beds.csv' AS source_file, $row AS source_row_number, true AS is_current, false AS is_deleted, "
        "$code AS facility_code, $code || '号' AS facility_name, $ftype AS facility_type, $district AS district, "
        "$admits AS admits, 0 AS icu_beds, 0 AS icu_occupied, $general[1] AS general_beds, "
        "$general[2] AS general_occupied, $single[1] AS single_rooms, $single[2] AS single_rooms_occupied, "
        "$census_at AS census_at",
        {"row": row, "code": code, "ftype": ftype, "district": district, "admits": admits, "census_at": census_at,
         "general": list(general), "single": list(single)})


def _vehicle(city, vehicle_id: str, district: str, kind: str, seats: int, row: int) -> None:
    city.con.execute(
        "INSERT INTO staged_vehicles BY NAME SELECT 1 AS load_id, DATE '2020-02-09' AS delivery_date, "
        "'v.csv' AS source_file, $row AS source_row_number, true AS is_current, false AS is_deleted, "
        "$vehicle_id AS vehicle_id, $district AS district, $kind AS vehicle_kind, $seats AS seats, "
        "TIMESTAMP '2020-02-09 20:00' AS on_duty_from, TIMESTAMP '2020-02-10 20:00' AS on_duty_until",
        {"row": row, "vehicle_id": vehicle_id, "district": district, "kind": kind, "seats": seats})


@pytest.fixture
def responded(tmp_path):
    """A case (mild) and four household contacts in 武昌区, one of them already at an isolation point;
    a fever patient; 武昌区's shelter hospital over full, its isolation point reported twice."""
    from tests.test_lists import PARK, Listed, household_outbreak

    city = Listed(tmp_path / "dispatch.duckdb", tmp_path / "out")
    household_outbreak(city)
    city.resident(5, PARK, "刘洋", household_id="H1", room="1102")
    city.resident(6, PARK, "陈静", household_id="H1", room="1103")
    morning, before = dt.datetime(2020, 2, 9, 8), dt.datetime(2020, 2, 8, 8)
    _census(city, "FC-W", "方舱医院", "武昌区", "确诊轻症", morning, general=(10, 12), row=1)    # over full
    _census(city, "FC-J", "方舱医院", "江岸区", "确诊轻症", morning, general=(10, 5), row=2)
    _census(city, "GL-W", "集中隔离点", "武昌区", "密接;次密接", before, single=(10, 5), row=3)
    _census(city, "GL-W", "集中隔离点", "武昌区", "密接;次密接", morning, single=(10, 9), row=4)  # later wins
    _census(city, "GL-J", "集中隔离点", "江岸区", "密接、次密接", before, single=(20, 0), row=5)   # stale
    city.add("isolation_checkins", 3, checkin_id="K1", facility_code="GL-J", room="301",
             arrived_at=dt.datetime(2020, 2, 9, 15), left_at=None)                         # placed already
    _vehicle(city, "WC-120-1", "武昌区", "负压救护车", 2, row=1)
    _vehicle(city, "WC-BUS-1", "武昌区", "转运大巴", 30, row=2)
    city.classify()
    city.respond()
    yield city
    city.con.close()


def _plan(con) -> dict[int, str]:
    return dict(con.execute("SELECT person_id, facility_code FROM dispatch_plan").fetchall())


def test_on_a_store_the_plan_respects_census_capacity_and_placements(responded):
    con = responded.con
    occupancy = {(f, k): (cap, occ, planned, free, stale, over) for f, k, cap, occ, planned, free, stale, over in
                 con.execute("SELECT facility_code, bed_kind, capacity, occupied, planned, free, is_census_stale, "
                             "is_census_over_capacity FROM bed_occupancy").fetchall()}
    for cap, occ, planned, free, _, _ in occupancy.values():
        assert planned <= max(cap - occ, 0) and free == max(cap - occ, 0) - planned   # never over capacity
    assert occupancy[("GL-W", "single_room")][:3] == (10, 9, 1)       # the later census: one room left
    assert occupancy[("FC-W", "general")][2] == 0 and occupancy[("FC-W", "general")][5]   # over full: no bed
    assert occupancy[("GL-J", "single_room")][1] == 1                  # the check-in since the census
    assert occupancy[("GL-J", "single_room")][4]                       # its census is two days old
    plan = _plan(con)
    assert 3 not in plan                                               # placed: never planned again
    assert plan[1] == "FC-J"                                           # own district full: the neighbour's
    assert sorted(plan[p] for p in (2, 5, 6)) == ["GL-J", "GL-J", "GL-W"]
    shortfall = con.execute("SELECT person_id, needs_facility_type FROM dispatch_shortfall").fetchall()
    assert shortfall == [(4, "发热门诊留观")]                            # no observation bed in the city
    for seats, persons, members in con.execute(
            "SELECT t.seats, t.persons, count(*) FROM dispatch_trips AS t "
            "JOIN dispatch_plan AS p USING (trip_id) GROUP BY ALL").fetchall():
        assert persons == members and (seats is None or persons <= seats)
    assert con.execute("SELECT count(*) FROM (SELECT trip_id FROM dispatch_plan GROUP BY trip_id "
                       "HAVING count(DISTINCT category) > 1)").fetchone() == (0,)


def test_on_a_store_the_same_inputs_give_the_same_plan_and_one_history(responded):
    con = responded.con
    first = con.execute("SELECT * FROM dispatch_plan ORDER BY person_id").fetchall()
    trips_first = con.execute("SELECT * FROM dispatch_trips ORDER BY trip_id").fetchall()
    responded.respond()
    assert con.execute("SELECT * FROM dispatch_plan ORDER BY person_id").fetchall() == first
    assert con.execute("SELECT * FROM dispatch_trips ORDER BY trip_id").fetchall() == trips_first
    # A run of the same as-of time replaces its history rows; the figures are the plan's.
    assert con.execute("SELECT count(DISTINCT as_of), sum(planned), sum(waiting_for_bed) "
                       "FROM dispatch_history").fetchone() == (1, len(first), 1)
    assert con.execute("SELECT sum(planned) FROM bed_occupancy_history").fetchone() == (len(first),)


def test_a_district_planned_first_does_not_take_the_next_districts_vehicles():
    """武昌区 is planned first and has more suspected patients than its one ambulance can take;
    江岸区's ambulance serves 江岸区's own patient first, and lends itself only for what is left."""
    night = dt.datetime(2020, 2, 12, 0, 0)
    shifts = [Shift("WC-120-1", "武昌区", "负压救护车", 1, night, night + dt.timedelta(hours=5)),
              Shift("JA-120-1", "江岸区", "负压救护车", 1, night, night + dt.timedelta(hours=5))]
    planned = [(i, "suspected", "suspected", "武昌区", "GL01") for i in range(1, 5)]
    planned.append((9, "suspected", "suspected", "江岸区", "GL01"))
    trips = build_trips(planned, shifts, RULES, HOPS, AS_OF)
    by_person = {p: t for t in trips for p in t.person_ids}
    assert by_person[9].vehicle_id == "JA-120-1" and by_person[9].pickup_at == night
    # Each ambulance does two trips in five hours (90 minutes out and back, 60 to disinfect):
    # 武昌区's two, then 江岸区's second one lent to 武昌区; the fourth patient waits for a vehicle.
    assert [by_person[p].vehicle_id for p in range(1, 5)] == ["WC-120-1", "WC-120-1", "JA-120-1", None]
