"""The response rules of a profile: where each action sends a person (``dispatch:``) and which areas a
case closes (``closures:``).

Only reading and checking belongs here; a broken section raises ``SchemaError`` naming the key.
Using the rules is the response stage's (``trace24/transforms/response/``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trace24.schemas.contracts import SchemaError

FACILITY_TYPES = ("定点医院", "方舱医院", "集中隔离点", "发热门诊留观")   # as the bed census delivers them
BED_KINDS = ("icu", "general", "single_room")
TRANSFER_ACTIONS = ("confirmed_severe", "confirmed_mild", "asymptomatic", "suspected", "fever", "close_contact",
                    "secondary_contact")
CATEGORY_OF_ACTION = {"confirmed_severe": "confirmed", "confirmed_mild": "confirmed", "asymptomatic": "confirmed",
                      "suspected": "suspected", "fever": "fever", "close_contact": "close_contact",
                      "secondary_contact": "secondary_contact"}
CLOSURE_SCOPES = ("compound", "building", "community", "street", "hotel")


@dataclass(frozen=True)
class Placement:
    facility_type: str
    bed_kind: str


@dataclass(frozen=True)
class DispatchRules:
    placements: dict[str, tuple[Placement, ...]]   # action → where, preferred first
    shared_bed_kinds: tuple[str, ...]
    priority: tuple[str, ...]                      # actions, served first to last
    vehicle_of_action: dict[str, str]              # action → vehicle kind (负压救护车, 转运大巴)
    max_per_trip: dict[str, int]                   # action → persons per trip, when less than the seats
    trip_minutes: float
    turnaround_minutes: float
    census_stale_hours: float
    transfer_within_hours: dict[str, float]        # category → hours from first listing to admission


@dataclass(frozen=True)
class AreaRule:
    scope: str
    level: str
    lasts_days: int


@dataclass(frozen=True)
class ClosureRules:
    levels: dict[str, tuple[str, str]]             # level → (label, what it requires of the community)
    areas: tuple[AreaRule, ...]
    target_hours: float


def _section(path: Path, data: dict, key: str) -> dict:
    section = data.get(key)
    if not isinstance(section, dict):
        raise SchemaError(f"{path}: missing the '{key}:' section")
    return section


def _positive(path: Path, where: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise SchemaError(f"{path}: {where} must be a number >= 0, not {value!r}")
    return value


def dispatch_rules(path: Path, data: dict) -> DispatchRules:
    section = _section(path, data, "dispatch")
    placements: dict[str, tuple[Placement, ...]] = {}
    for action, targets in (section.get("placements") or {}).items():
        if action not in TRANSFER_ACTIONS:
            raise SchemaError(f"{path}: dispatch.placements: unknown action {action!r}; "
                              f"use {', '.join(TRANSFER_ACTIONS)}")
        try:
            places = tuple(Placement(str(t["facility_type"]), str(t["bed_kind"])) for t in targets)
        except (KeyError, TypeError) as exc:
            raise SchemaError(f"{path}: dispatch.placements.{action}: "
                              "each place needs facility_type and bed_kind") from exc
        for place in places:
            if place.facility_type not in FACILITY_TYPES or place.bed_kind not in BED_KINDS:
                raise SchemaError(f"{path}: dispatch.placements.{action}: {place.facility_type}/{place.bed_kind}: "
                                  f"facility types {', '.join(FACILITY_TYPES)}; bed kinds {', '.join(BED_KINDS)}")
        placements[action] = places
    shared = tuple(str(k) for k in section.get("shared_bed_kinds") or ())
    # The four groups are never housed together: a shared bed kind of a facility type holds one category.
    holders: dict[tuple[str, str], set[str]] = {}
    for action, places in placements.items():
        for place in places:
            if place.bed_kind in shared:
                holders.setdefault((place.facility_type, place.bed_kind), set()).add(CATEGORY_OF_ACTION[action])
    mixed = [f"{t}/{k}: {', '.join(sorted(c))}" for (t, k), c in sorted(holders.items()) if len(c) > 1]
    if mixed:
        raise SchemaError(f"{path}: dispatch: shared beds would house two categories together: {'; '.join(mixed)}")
    priority = tuple(str(a) for a in section.get("priority") or ())
    if sorted(priority) != sorted(placements):
        raise SchemaError(f"{path}: dispatch.priority must order exactly the actions of dispatch.placements")
    vehicle_of_action = {}
    for kind, actions in (section.get("vehicles") or {}).items():
        for action in actions or ():
            vehicle_of_action[str(action)] = str(kind)
    if set(vehicle_of_action) != set(placements):
        raise SchemaError(f"{path}: dispatch.vehicles must name one vehicle kind for every action placed")
    max_per_trip = {str(a): int(_positive(path, f"dispatch.max_per_trip.{a}", n))
                    for a, n in (section.get("max_per_trip") or {}).items()}
    within = section.get("transfer_within_hours") or {}
    categories = sorted({CATEGORY_OF_ACTION[a] for a in placements})
    if not set(categories) <= set(within):
        raise SchemaError(f"{path}: dispatch.transfer_within_hours must give hours for {', '.join(categories)}")
    return DispatchRules(
        placements=placements, shared_bed_kinds=shared, priority=priority, vehicle_of_action=vehicle_of_action,
        max_per_trip=max_per_trip,
        trip_minutes=_positive(path, "dispatch.trip_minutes", section.get("trip_minutes")),
        turnaround_minutes=_positive(path, "dispatch.turnaround_minutes", section.get("turnaround_minutes")),
        census_stale_hours=_positive(path, "dispatch.census_stale_hours", section.get("census_stale_hours")),
        transfer_within_hours={str(k): _positive(path, f"dispatch.transfer_within_hours.{k}", v)
                               for k, v in within.items()},
    )


def closure_rules(path: Path, data: dict) -> ClosureRules:
    section = _section(path, data, "closures")
    levels = {}
    for level, spec in (section.get("levels") or {}).items():
        if not isinstance(spec, dict) or not spec.get("label"):
            raise SchemaError(f"{path}: closures.levels.{level} needs a label")
        levels[str(level)] = (str(spec["label"]), str(spec.get("requires") or ""))
    areas = []
    for rule in section.get("areas") or ():
        try:
            area = AreaRule(str(rule["scope"]), str(rule["level"]), int(rule["lasts_days"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise SchemaError(f"{path}: closures.areas: each area needs scope, level and lasts_days") from exc
        if area.scope not in CLOSURE_SCOPES or area.level not in levels or area.lasts_days < 1:
            raise SchemaError(f"{path}: closures.areas: {rule!r}: scope one of {', '.join(CLOSURE_SCOPES)}, "
                              f"level one of {', '.join(levels)}, lasts_days >= 1")
        areas.append(area)
    if len({a.scope for a in areas}) != len(areas):
        raise SchemaError(f"{path}: closures.areas: one rule per scope")
    return ClosureRules(levels=levels, areas=tuple(areas),
                        target_hours=_positive(path, "closures.target_hours", section.get("target_hours")))
