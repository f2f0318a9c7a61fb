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

from schemas import SchemaError

SCHEMAS_DIR = Path(__file__).resolve().parent
RULES_DIR = SCHEMAS_DIR / "rules"
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


@dataclass(frozen=True)
class Facilities:
    isolating_hospitals: tuple[str, ...]
    isolation_ward_markers: tuple[str, ...]
    isolating_dispositions: tuple[str, ...]


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
    )


def load_facilities(path: Path | None = None) -> Facilities:
    path = Path(path or SCHEMAS_DIR / "facilities.yaml")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return Facilities(*(tuple(str(v) for v in data[key]) for key in
                            ("isolating_hospitals", "isolation_ward_markers", "isolating_dispositions")))
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise SchemaError(f"{path}: broken facilities file: {exc!r}") from exc
