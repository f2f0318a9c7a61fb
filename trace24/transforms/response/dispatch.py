"""Response stage, dispatch: every person whose action is a transfer and who is not yet placed gets a
bed of the kind the profile names, never over capacity, or waits on the shortfall.

What belongs here: who is to be transferred (``dispatch_demand``), the assignment solved as a
min-cost flow (``solve``: networkx's network simplex), turning its counts back into persons and
facilities in SQL, and the tables ``bed_occupancy`` and ``dispatch_shortfall``. What does not: the
bed census and placements (``beds.py``), vehicles and trips (``trips.py``), files (``lists/``).

The assignment (decision 0038). Persons are grouped by action and pickup district, beds by facility
type, bed kind, district and what the facility admits: a city's plan is a flow between a few
hundred nodes, whatever its size. The objective is lexicographic: first as many persons placed as
possible in priority order (confirmed severe before confirmed mild before suspected ...: each level
is solved with the levels above it held to their counts), then the least cost, a cost being the
placement's rank in the profile's preference (a 方舱 bed before a designated hospital's for a mild
case) and then the borders crossed (own district first). Within an action and district the longest
waiting are placed first (ties by person id), and a class of beds is filled facility by facility in
code order (四集中: fewer facilities, fewer trips). The same inputs give the same plan.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import networkx as nx
import pyarrow as pa

from trace24.schemas.response_rules import DispatchRules
from trace24.transforms.database import bound_parameters, temp_table

PREFERENCE_STEP = 100      # one step down the profile's preference costs more than any route
UNREACHABLE_HOPS = 50      # districts with no known border path (or an unknown district)


@dataclass(frozen=True)
class DemandGroup:
    action: str
    district: str
    persons: int


@dataclass(frozen=True)
class BedClass:
    facility_type: str
    bed_kind: str
    district: str
    admits: tuple[str, ...]
    free: int


@dataclass(frozen=True)
class Allocation:
    action: str
    district: str
    bed_class: int          # index into the classes given to ``solve``
    persons: int
    cost: int


def arc_cost(rules: DispatchRules, hops: dict[tuple[str, str], int], group: DemandGroup,
             bed_class: BedClass) -> int | None:
    """The cost of one person of ``group`` in a bed of ``bed_class``, or None when it may not go there."""
    if group.action not in bed_class.admits:
        return None
    for rank, place in enumerate(rules.placements.get(group.action, ())):
        if (place.facility_type, place.bed_kind) == (bed_class.facility_type, bed_class.bed_kind):
            return rank * PREFERENCE_STEP + hops.get((group.district, bed_class.district), UNREACHABLE_HOPS)
    return None


def solve(rules: DispatchRules, hops: dict[tuple[str, str], int], groups: Sequence[DemandGroup],
          classes: Sequence[BedClass]) -> list[Allocation]:
    """How many persons of each group go to each bed class: placed first by priority, then cheapest."""
    arcs = {}
    for g, group in enumerate(groups):
        for c, bed_class in enumerate(classes):
            cost = arc_cost(rules, hops, group, bed_class)
            if cost is not None and bed_class.free > 0:
                arcs[(g, c)] = cost
    # Placing one more person must outweigh any rerouting of everyone else.
    unplaced_cost = (max(arcs.values(), default=0) + 1) * (sum(g.persons for g in groups) + 1)
    placed: dict[int, int] = {}      # group → persons placed, fixed once its level is solved
    flows: dict[tuple[int, int], int] = {}
    for level in rules.priority:
        current = [g for g, group in enumerate(groups) if group.action == level and group.persons > 0]
        if not current:
            continue
        graph = nx.DiGraph()
        total = 0
        for g in sorted([*placed, *current]):
            need = placed.get(g, groups[g].persons)
            graph.add_node(("group", g), demand=-need)
            total += need
        graph.add_node("sink", demand=total)
        for c, bed_class in enumerate(classes):
            if bed_class.free > 0:
                graph.add_edge(("class", c), "sink", capacity=bed_class.free, weight=0)
        for (g, c), cost in sorted(arcs.items()):
            if ("group", g) in graph:
                graph.add_edge(("group", g), ("class", c), weight=cost)
        for g in current:
            graph.add_edge(("group", g), "sink", weight=unplaced_cost)
        flow = nx.min_cost_flow(graph)
        flows = {(g, c): flow[("group", g)][("class", c)] for (g, c) in arcs
                 if ("group", g) in graph and flow[("group", g)].get(("class", c), 0) > 0}
        for g in current:
            placed[g] = sum(n for (h, _), n in flows.items() if h == g)
    return [Allocation(groups[g].action, groups[g].district, c, n, arcs[(g, c)]) for (g, c), n in sorted(flows.items())]


def plan_cost(allocations: Sequence[Allocation]) -> int:
    return sum(a.persons * a.cost for a in allocations)


DEMAND_SQL = """
CREATE OR REPLACE TEMP TABLE dispatch_demand AS
WITH categories AS (
    SELECT * FROM four_categories WHERE list_contains($transfer_actions, action_key)
),
people AS (
    SELECT * FROM persons WHERE merged_into_person_id IS NULL
),
placed AS (
    SELECT * FROM placed_persons
),
waiting AS (
    SELECT c.person_id, c.action_key, c.category, list_position($priority, c.action_key) AS priority_rank,
           c.category_since_at AS waiting_since_at,
           coalesce(pl.staying_in_district, p.district, $unknown_district) AS pickup_district,
           pl.staying_at_facility AS pickup_facility_code,
           p.community_code, p.compound, p.building, p.unit, p.room
    FROM categories AS c
    JOIN people AS p USING (person_id)
    LEFT JOIN placed AS pl USING (person_id)
    WHERE pl.placed_at_facility IS NULL
)
SELECT *,
       row_number() OVER (PARTITION BY action_key, pickup_district ORDER BY waiting_since_at, person_id) AS queue_rank
FROM waiting
"""

CLASSES_SQL = """
SELECT facility_type, bed_kind, district, admits, sum(free_before_plan) AS free
FROM bed_pools
WHERE free_before_plan > 0
GROUP BY ALL
ORDER BY facility_type, bed_kind, district, admits
"""

# Counts back to persons and facilities: a group's allocations, cheapest first, take its queue in
# order; a class's persons (by priority, district, queue) fill its facilities in code order.
ASSIGN_SQL = """
CREATE OR REPLACE TEMP TABLE planned_beds AS
WITH demand AS (
    SELECT * FROM dispatch_demand
),
allocations AS (
    SELECT *,
           sum(persons) OVER (PARTITION BY action_key, pickup_district ORDER BY cost, bed_class
                              ROWS UNBOUNDED PRECEDING) AS upto
    FROM dispatch_allocations
),
classes AS (
    SELECT * FROM dispatch_classes
),
assigned AS (
    SELECT d.*, a.bed_class, a.cost,
           row_number() OVER (PARTITION BY a.bed_class ORDER BY d.priority_rank, d.pickup_district, d.queue_rank)
               AS class_rank
    FROM demand AS d
    JOIN allocations AS a ON a.action_key = d.action_key AND a.pickup_district = d.pickup_district
                         AND d.queue_rank > a.upto - a.persons AND d.queue_rank <= a.upto
),
facilities AS (
    SELECT c.bed_class, p.facility_code, p.facility_name, p.facility_type, p.district AS facility_district,
           p.bed_kind,
           sum(p.free_before_plan) OVER (PARTITION BY c.bed_class ORDER BY p.facility_code
                                         ROWS UNBOUNDED PRECEDING) AS upto,
           p.free_before_plan
    FROM bed_pools AS p
    JOIN classes AS c ON c.facility_type = p.facility_type AND c.bed_kind = p.bed_kind
                     AND c.district = p.district AND c.admits = p.admits
    WHERE p.free_before_plan > 0
)
SELECT a.person_id, a.action_key, a.category, a.priority_rank, a.waiting_since_at, a.pickup_district,
       a.pickup_facility_code, a.community_code, a.compound, a.building, a.unit, a.room,
       f.facility_code, f.facility_name, f.facility_type, f.facility_district, f.bed_kind,
       a.cost // $preference_step AS preference_rank, a.cost % $preference_step AS borders_crossed
FROM assigned AS a
JOIN facilities AS f ON f.bed_class = a.bed_class
                    AND a.class_rank > f.upto - f.free_before_plan AND a.class_rank <= f.upto
"""

OCCUPANCY_SQL = """
CREATE OR REPLACE TABLE bed_occupancy AS
WITH pools AS (
    SELECT * FROM bed_pools
),
planned AS (
    SELECT facility_code, bed_kind, count(*) AS planned FROM planned_beds GROUP BY ALL
)
SELECT CAST($as_of AS TIMESTAMP) AS as_of, p.facility_code, p.facility_name, p.facility_type, p.district,
       p.bed_kind, p.admits, p.census_at, p.census_age_hours, p.is_census_stale, p.is_census_over_capacity,
       p.capacity, p.census_occupied, p.arrived_since_census, p.left_since_census, p.occupied,
       coalesce(n.planned, 0) AS planned, p.free_before_plan - coalesce(n.planned, 0) AS free
FROM pools AS p
LEFT JOIN planned AS n USING (facility_code, bed_kind)
ORDER BY p.district, p.facility_type, p.facility_code, p.bed_kind
"""

SHORTFALL_SQL = """
CREATE OR REPLACE TABLE dispatch_shortfall AS
WITH demand AS (
    SELECT * FROM dispatch_demand
),
planned AS (
    SELECT person_id FROM planned_beds
)
SELECT CAST($as_of AS TIMESTAMP) AS as_of, d.person_id, d.action_key, d.category, d.priority_rank,
       d.pickup_district AS district, d.community_code, d.waiting_since_at,
       round(date_diff('minute', d.waiting_since_at, CAST($as_of AS TIMESTAMP)) / 60.0, 1) AS waited_hours,
       map($first_type_keys, $first_type_values)[d.action_key] AS needs_facility_type,
       map($first_kind_keys, $first_kind_values)[d.action_key] AS needs_bed_kind
FROM demand AS d
ANTI JOIN planned AS p USING (person_id)
ORDER BY d.priority_rank, d.waiting_since_at, d.person_id
"""


def dispatch_parameters(rules: DispatchRules, unknown_district: str, as_of: dt.datetime) -> dict:
    first = {action: places[0] for action, places in rules.placements.items() if places}
    return {
        "as_of": as_of, "unknown_district": unknown_district, "priority": list(rules.priority),
        "transfer_actions": sorted(rules.placements), "preference_step": PREFERENCE_STEP,
        "first_type_keys": list(first), "first_type_values": [p.facility_type for p in first.values()],
        "first_kind_keys": list(first), "first_kind_values": [p.bed_kind for p in first.values()],
    }


def assign_beds(con: duckdb.DuckDBPyConnection, rules: DispatchRules, hops: dict[tuple[str, str], int],
                params: dict) -> dict[str, float]:
    """Solve this run's assignment: ``planned_beds`` (temporary), ``bed_occupancy``, ``dispatch_shortfall``."""
    con.execute(DEMAND_SQL, bound_parameters(DEMAND_SQL, params))
    groups = [DemandGroup(a, d, n) for a, d, n in con.execute(
        "SELECT action_key, pickup_district, count(*) FROM dispatch_demand GROUP BY ALL ORDER BY ALL").fetchall()]
    classes = [BedClass(t, k, d, tuple(a), int(f)) for t, k, d, a, f in con.execute(CLASSES_SQL).fetchall()]
    started = time.perf_counter()
    allocations = solve(rules, hops, groups, classes)
    solver_seconds = time.perf_counter() - started
    temp_table(con, "dispatch_classes", pa.table({
        "bed_class": pa.array(range(len(classes)), pa.int32()),
        "facility_type": pa.array([c.facility_type for c in classes], pa.string()),
        "bed_kind": pa.array([c.bed_kind for c in classes], pa.string()),
        "district": pa.array([c.district for c in classes], pa.string()),
        "admits": pa.array([list(c.admits) for c in classes], pa.list_(pa.string())),
    }))
    temp_table(con, "dispatch_allocations", pa.table({
        "action_key": pa.array([a.action for a in allocations], pa.string()),
        "pickup_district": pa.array([a.district for a in allocations], pa.string()),
        "bed_class": pa.array([a.bed_class for a in allocations], pa.int32()),
        "persons": pa.array([a.persons for a in allocations], pa.int64()),
        "cost": pa.array([a.cost for a in allocations], pa.int64()),
    }))
    for sql in (ASSIGN_SQL, OCCUPANCY_SQL, SHORTFALL_SQL):
        con.execute(sql, bound_parameters(sql, params))
    return {"to_transfer": sum(g.persons for g in groups), "bed_classes": len(classes),
            "planned": sum(a.persons for a in allocations), "solver_seconds": round(solver_seconds, 4)}
