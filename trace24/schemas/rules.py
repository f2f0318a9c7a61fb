"""Rule profiles (``schemas/rules/<name>.yaml``) and the city's facilities (``schemas/facilities.yaml``).

What belongs here: reading and checking those files into typed objects; a broken file raises
``SchemaError`` that names the file and the key to fix. What does not: using the rules (the
exposure and category stages do, with the values bound as SQL parameters).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import yaml

from trace24.schemas.contracts import SCHEMAS_DIR, SchemaError
from trace24.schemas.response_rules import ClosureRules, DispatchRules, closure_rules, dispatch_rules

RULES_DIR = SCHEMAS_DIR / "rules"
DEFAULT_PROFILE = "nhc-v6"
"""The rule profile a run uses unless told otherwise: the protocol Wuhan worked under in March 2020."""
EXPOSURE_SETTINGS = ("household", "workplace", "meal", "transport", "healthcare", "other", "hotel", "train",
                     "flight", "bus", "ward", "venue_close", "venue_general")
SCOPES = {"train_scope": ("car", "seat_row"), "bus_scope": ("vehicle", "seat_row")}


@dataclass(frozen=True)
class RuleProfile:
    name: str
    description: str
    sha256: str                      # of the file as read: a run records exactly which rules it used
    days_before_onset: float
    days_before_sample: float
    days_before_sample_onset_unknown: float
    aircraft_rows_each_side: int
    train_scope: str
    train_rows_each_side: int
    bus_scope: str
    co_location_minutes: float
    close_venue_types: tuple[str, ...]
    investigation_settings: dict[str, str]
    secondary_enabled: bool
    secondary_settings: tuple[str, ...]
    close_contact_days: int
    close_contact_home_days: int
    secondary_contact_days: int
    assumed_contact_isolation_hours: float
    categories: CategoryRules
    dispatch: DispatchRules
    closures: ClosureRules


CATEGORIES = ("confirmed", "suspected", "fever", "close_contact", "secondary_contact")
ACTIONS = ("confirmed_severe", "confirmed_mild", "asymptomatic", "suspected", "fever", "close_contact",
           "secondary_contact", "released")
EPI_AREAS = ("compound", "community")


@dataclass(frozen=True)
class CategoryRules:
    """The four categories' entry, release and action rules of a profile."""
    fever_threshold_c: float
    fever_observation_days: int
    exclusion_negative_tests: int
    exclusion_hours_apart: float
    ct_markers: tuple[str, ...]
    white_cell_at_most: float
    lymphocyte_below: float
    epi_days: int
    epi_area: str
    actions: dict[str, str]            # ACTIONS → the text printed on the lists
    severe_levels: tuple[str, ...]
    action_within_hours: dict[str, float]   # CATEGORIES → hours
    clock_target_hours: float               # the tracing clock's target
    answer_within_hours: float              # an office answers a list row within this, else 催办
    missing_check_days: int                 # no health check for this many days: escalated


def _category_rules(path: Path, data: dict) -> CategoryRules:
    clinical = (data.get("categories") or {}).get("clinical_rule")
    if not isinstance(clinical, dict):
        raise SchemaError(f"{path}: missing categories.clinical_rule")
    actions = data.get("actions") or {}
    missing = [key for key in ACTIONS if not str(actions.get(key) or "").strip()]
    if missing:
        raise SchemaError(f"{path}: actions: missing {', '.join(missing)}")
    within = data.get("action_within_hours") or {}
    hours = {key: _number(path, data, "action_within_hours", key) for key in CATEGORIES if key in within}
    if set(hours) != set(CATEGORIES):
        raise SchemaError(f"{path}: action_within_hours must give hours for {', '.join(CATEGORIES)}")
    wrapped = {"clinical_rule": clinical}
    if clinical.get("epi_area") not in EPI_AREAS:
        raise SchemaError(f"{path}: categories.clinical_rule.epi_area must be one of {', '.join(EPI_AREAS)}")
    return CategoryRules(
        fever_threshold_c=_number(path, data, "categories", "fever_threshold_c", minimum=35),
        fever_observation_days=int(_number(path, data, "categories", "fever_observation_days")),
        exclusion_negative_tests=int(_number(path, data, "categories", "exclusion_negative_tests", minimum=2)),
        exclusion_hours_apart=_number(path, data, "categories", "exclusion_hours_apart"),
        ct_markers=tuple(str(v) for v in clinical.get("ct_markers") or ()),
        white_cell_at_most=_number(path, wrapped, "clinical_rule", "white_cell_at_most"),
        lymphocyte_below=_number(path, wrapped, "clinical_rule", "lymphocyte_below"),
        epi_days=int(_number(path, wrapped, "clinical_rule", "epi_days")),
        epi_area=clinical["epi_area"],
        actions={key: str(actions[key]).strip() for key in ACTIONS},
        severe_levels=tuple(str(v) for v in data.get("severe_levels") or ()),
        action_within_hours=hours,
        clock_target_hours=_number(path, data, "clock", "target_hours"),
        answer_within_hours=_number(path, data, "clock", "answer_within_hours"),
        missing_check_days=int(_number(path, data, "clock", "missing_check_days", minimum=1)),
    )


@dataclass(frozen=True)
class Facilities:
    isolating_hospitals: tuple[str, ...]
    isolation_ward_markers: tuple[str, ...]
    isolating_dispositions: tuple[str, ...]
    icu_ward_markers: tuple[str, ...]
    admits_labels: dict[str, tuple[str, ...]]    # 收治对象 label → the actions it admits


@dataclass(frozen=True)
class DistrictMap:
    """The city's districts and their borders: how many borders a transfer crosses."""
    borders: dict[str, tuple[str, ...]]

    def hops(self) -> dict[tuple[str, str], int]:
        """Borders crossed between every pair of districts that are connected (0 within one)."""
        distances: dict[tuple[str, str], int] = {}
        for start in sorted(self.borders):
            seen, frontier, step = {start}, [start], 0
            while frontier:
                for district in frontier:
                    distances[(start, district)] = step
                frontier = sorted({n for d in frontier for n in self.borders.get(d, ()) if n not in seen})
                seen.update(frontier)
                step += 1
        return distances


def available_profiles(rules_dir: Path | None = None) -> list[str]:
    return sorted(p.stem for p in Path(rules_dir or RULES_DIR).glob("*.yaml"))


def _number(path: Path, data: dict, section: str, key: str, *, minimum: float = 0) -> float:
    try:
        value = data[section][key]
    except (KeyError, TypeError) as exc:
        raise SchemaError(f"{path}: missing {section}.{key}") from exc
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise SchemaError(f"{path}: {section}.{key} must be a number >= {minimum}, not {value!r}")
    return value


def load_rule_profile(name_or_path: str | Path, rules_dir: Path | None = None) -> RuleProfile:
    """A profile by name (``nhc-v6``) from ``rules_dir``, or by path to its YAML file."""
    path = Path(name_or_path)
    if path.suffix != ".yaml":
        path = Path(rules_dir or RULES_DIR) / f"{name_or_path}.yaml"
        if not path.exists():
            raise SchemaError(f"no rule profile {name_or_path!r}; available: "
                              f"{', '.join(available_profiles(rules_dir))}")
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SchemaError(f"{path}: cannot read YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise SchemaError(f"{path}: expected a mapping at the top level")
    vehicles = data.get("vehicles") or {}
    for key, allowed in SCOPES.items():
        if vehicles.get(key) not in allowed:
            raise SchemaError(f"{path}: vehicles.{key} must be one of {', '.join(allowed)}")
    settings = data.get("investigation_settings") or {}
    secondary = data.get("secondary_contacts") or {}
    for where, values in (("investigation_settings", settings.values()),
                          ("secondary_contacts.settings", secondary.get("settings") or [])):
        unknown = sorted(set(values) - set(EXPOSURE_SETTINGS))
        if unknown:
            raise SchemaError(f"{path}: {where}: unknown setting(s) {', '.join(unknown)}; "
                              f"known: {', '.join(EXPOSURE_SETTINGS)}")
    if not isinstance(secondary.get("enabled"), bool):
        raise SchemaError(f"{path}: secondary_contacts.enabled must be true or false")
    if secondary["enabled"] and not secondary.get("settings"):
        raise SchemaError(f"{path}: secondary_contacts.settings must list settings when enabled")
    return RuleProfile(
        name=str(data.get("profile") or path.stem),
        description=str(data.get("description", "")),
        sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        days_before_onset=_number(path, data, "infectious_window", "days_before_onset"),
        days_before_sample=_number(path, data, "infectious_window", "days_before_sample"),
        days_before_sample_onset_unknown=_number(path, data, "infectious_window", "days_before_sample_onset_unknown"),
        aircraft_rows_each_side=int(_number(path, data, "vehicles", "aircraft_rows_each_side")),
        train_scope=vehicles["train_scope"],
        train_rows_each_side=int(_number(path, data, "vehicles", "train_rows_each_side")),
        bus_scope=vehicles["bus_scope"],
        co_location_minutes=_number(path, data, "venues", "co_location_minutes"),
        close_venue_types=tuple(str(v) for v in (data["venues"].get("close_venue_types") or [])),
        investigation_settings={str(k): str(v) for k, v in settings.items()},
        secondary_enabled=secondary["enabled"],
        secondary_settings=tuple(secondary.get("settings") or ()),
        close_contact_days=int(_number(path, data, "observation", "close_contact_days")),
        close_contact_home_days=int(_number(path, data, "observation", "close_contact_home_days")),
        secondary_contact_days=int(_number(path, data, "observation", "secondary_contact_days")),
        assumed_contact_isolation_hours=_number(path, data, "observation", "assumed_contact_isolation_hours"),
        categories=_category_rules(path, data),
        dispatch=dispatch_rules(path, data),
        closures=closure_rules(path, data),
    )


def load_facilities(path: Path | None = None) -> Facilities:
    path = Path(path or SCHEMAS_DIR / "facilities.yaml")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        lists = (tuple(str(v) for v in data[key]) for key in
                 ("isolating_hospitals", "isolation_ward_markers", "isolating_dispositions", "icu_ward_markers"))
        labels = {str(label): tuple(str(a) for a in actions) for label, actions in data["admits_labels"].items()}
        return Facilities(*lists, admits_labels=labels)
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
        raise SchemaError(f"{path}: broken facilities file: {exc!r}") from exc


def load_district_map(path: Path | None = None) -> DistrictMap:
    path = Path(path or SCHEMAS_DIR / "districts.yaml")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        borders = {str(d): tuple(str(n) for n in neighbours or ()) for d, neighbours in data["borders"].items()}
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
        raise SchemaError(f"{path}: broken districts file: {exc!r}") from exc
    one_way = sorted(f"{d}-{n}" for d, ns in borders.items() for n in ns if d not in borders.get(n, ()))
    if one_way:
        raise SchemaError(f"{path}: a border is listed on one side only: {', '.join(one_way)}")
    return DistrictMap(borders)
