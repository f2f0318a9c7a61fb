"""Load and check the feed contracts (``feeds/``) and column maps (``column_maps/``) kept as YAML here.

Only reading and checking belongs here: a broken file raises ``SchemaError`` naming the file and
what to fix, so a bad configuration stops a run before it touches any data. What the contracts
mean is applied in ``trace24/transforms/ingest/`` (SQL checks in ``staged.py``, GE suites in ``validate.py``).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

SCHEMAS_DIR = Path(__file__).resolve().parent
"""The shipped contracts: YAML installed with the package (another folder can be named per run)."""

FIELD_TYPES = frozenset(
    {"code", "text", "person_name", "id_number", "phone", "timestamp", "date", "temperature",
     "decimal", "integer", "enum"}
)
# health: the health commission (卫健委: bed census, isolation points); command: the epidemic command.
AGENCIES = ("hospital", "cdc", "police", "civil", "health", "command", "community")
# Roles a feed's columns can play in describing the person a row is about, and the field type each
# role needs; ``address`` may join several columns (district, street, compound, ...).
PERSON_ROLES = {"id_number": "id_number", "name": "person_name", "phone": "phone", "sex": "enum",
                "birth_date": "date", "address": "text"}
# Types whose staged value depends on the cell alone, so it can be computed once per distinct value.
LOW_CARDINALITY_TYPES = frozenset({"code", "text", "person_name", "enum"})
_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]*$")


class SchemaError(ValueError):
    """A contract or column map is broken; the message says which file and what to fix."""


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: str
    required: bool = False
    values: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    pattern: str | None = None
    description: str = ""
    low_cardinality: bool = False  # few distinct values: normalised once per value, not per row


@dataclass(frozen=True)
class FeedContract:
    feed: str
    agency: str
    description: str
    fields: tuple[FieldSpec, ...]
    record_key: tuple[str, ...]
    identity: tuple[str, ...] = ()
    time_order: tuple[tuple[str, str], ...] = ()
    not_after_delivery: tuple[str, ...] = ()   # times that cannot be later than the day they were delivered
    deleted_when: tuple[str, str] | None = None
    versioned: bool = True  # False: records are never corrected, so there is no history to keep
    expected_daily: bool = True  # False: a day without a file is no warning (answers come when they come)
    person: dict[str, tuple[str, ...]] = field(default_factory=dict)  # role -> column(s), see PERSON_ROLES

    def field(self, name: str) -> FieldSpec:
        return next(f for f in self.fields if f.name == name)

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)


@dataclass(frozen=True)
class ColumnMap:
    name: str
    feed: str
    source: str
    columns: dict[str, str]  # source header -> canonical column
    time_formats: tuple[str, ...] = ()

    def header_of(self, column: str) -> str:
        """The source header of a canonical column (the column itself when unmapped)."""
        return next((h for h, c in self.columns.items() if c == column), column)


@dataclass(frozen=True)
class Schemas:
    feeds: dict[str, FeedContract]
    column_maps: dict[str, ColumnMap]
    root: Path = field(default=SCHEMAS_DIR)

    def maps_for(self, feed: str) -> list[ColumnMap]:
        return sorted((m for m in self.column_maps.values() if m.feed == feed), key=lambda m: m.name)


def read_mapping(path: Path) -> dict:
    """A contract file's YAML, which must be a mapping; else ``SchemaError`` naming the file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SchemaError(f"{path}: cannot read YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise SchemaError(f"{path}: expected a mapping at the top level")
    return data


def _load_contract(path: Path) -> FeedContract:
    data = read_mapping(path)
    where = str(path)
    feed = data.get("feed")
    if feed != path.stem:
        raise SchemaError(f"{where}: 'feed' must equal the file name stem {path.stem!r}, got {feed!r}")
    if data.get("agency") not in AGENCIES:
        raise SchemaError(f"{where}: 'agency' must be one of {AGENCIES}")
    raw_fields = data.get("fields")
    if not isinstance(raw_fields, dict) or not raw_fields:
        raise SchemaError(f"{where}: 'fields' must map column names to field specs")
    fields = []
    for name, spec in raw_fields.items():
        if not _IDENTIFIER.match(str(name)):
            raise SchemaError(f"{where}: column {name!r} must be lower_snake_case ASCII")
        spec = spec or {}
        ftype = spec.get("type")
        if ftype not in FIELD_TYPES:
            raise SchemaError(f"{where}: column {name!r} has type {ftype!r}; use one of {sorted(FIELD_TYPES)}")
        values = tuple(str(v) for v in spec.get("values", ()))
        if ftype == "enum" and not values:
            raise SchemaError(f"{where}: enum column {name!r} needs 'values'")
        pattern = spec.get("pattern")
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise SchemaError(f"{where}: column {name!r} has a bad pattern: {exc}") from exc
        unknown = set(spec) - {"type", "required", "values", "min", "max", "pattern", "description",
                               "low_cardinality"}
        if unknown:
            raise SchemaError(f"{where}: column {name!r} has unknown keys {sorted(unknown)}")
        low_cardinality = bool(spec.get("low_cardinality", False))
        if low_cardinality and ftype not in LOW_CARDINALITY_TYPES:
            raise SchemaError(f"{where}: column {name!r}: low_cardinality applies only to types "
                              f"{sorted(LOW_CARDINALITY_TYPES)}, not {ftype!r}")
        fields.append(FieldSpec(
            name=name, type=ftype, required=bool(spec.get("required", False)), values=values,
            min=spec.get("min"), max=spec.get("max"), pattern=pattern,
            description=str(spec.get("description", "")), low_cardinality=low_cardinality,
        ))
    names = {f.name for f in fields}

    def columns(key: str) -> tuple[str, ...]:
        cols = tuple(data.get(key) or ())
        missing = [c for c in cols if c not in names]
        if missing:
            raise SchemaError(f"{where}: '{key}' names unknown columns {missing}")
        return cols

    record_key = columns("record_key")
    if not record_key:
        raise SchemaError(f"{where}: 'record_key' must name at least one column")
    order = []
    for pair in data.get("time_order") or ():
        earlier, later = pair.get("earlier"), pair.get("later")
        if earlier not in names or later not in names:
            raise SchemaError(f"{where}: time_order {pair} names unknown columns")
        order.append((earlier, later))
    deleted = data.get("deleted_when")
    if deleted is not None:
        if deleted.get("column") not in names:
            raise SchemaError(f"{where}: deleted_when names unknown column {deleted.get('column')!r}")
        deleted = (deleted["column"], str(deleted["value"]))
    return FeedContract(
        feed=feed, agency=data["agency"], description=str(data.get("description", "")),
        fields=tuple(fields), record_key=record_key, identity=columns("identity"),
        time_order=tuple(order), not_after_delivery=columns("not_after_delivery"), deleted_when=deleted,
        versioned=bool(data.get("versioned", True)), expected_daily=bool(data.get("expected_daily", True)),
        person=_person_roles(where, data.get("person"), {f.name: f for f in fields}),
    )


def _person_roles(where: str, raw: object, fields: dict[str, FieldSpec]) -> dict[str, tuple[str, ...]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SchemaError(f"{where}: 'person' must map roles {sorted(PERSON_ROLES)} to columns")
    roles: dict[str, tuple[str, ...]] = {}
    for role, cols in raw.items():
        if role not in PERSON_ROLES:
            raise SchemaError(f"{where}: 'person' has unknown role {role!r}; use {sorted(PERSON_ROLES)}")
        cols = tuple(cols) if isinstance(cols, list) else (cols,)
        if len(cols) > 1 and role != "address":
            raise SchemaError(f"{where}: person role {role!r} takes one column, got {list(cols)}")
        for col in cols:
            wanted = PERSON_ROLES[role]
            if col not in fields:
                raise SchemaError(f"{where}: person role {role!r} names unknown column {col!r}")
            if fields[col].type != wanted:
                raise SchemaError(
                    f"{where}: person role {role!r} needs a {wanted} column, {col!r} is {fields[col].type}")
        roles[role] = cols
    if roles and "id_number" not in roles:
        raise SchemaError(f"{where}: 'person' needs an id_number role")
    return roles


def _load_column_map(path: Path, feeds: dict[str, FeedContract]) -> ColumnMap:
    data = read_mapping(path)
    where = str(path)
    feed = data.get("feed")
    if feed not in feeds:
        raise SchemaError(f"{where}: 'feed' is {feed!r}; it must name a contract in feeds/: {sorted(feeds)}")
    contract = feeds[feed]
    columns = data.get("columns")
    if not isinstance(columns, dict) or not columns:
        raise SchemaError(f"{where}: 'columns' must map source headers to canonical columns")
    columns = {str(h).strip(): str(c) for h, c in columns.items()}
    unknown = sorted(set(columns.values()) - set(contract.field_names))
    if unknown:
        raise SchemaError(f"{where}: maps onto columns that the {feed} contract does not have: {unknown}")
    targets = list(columns.values())
    twice = sorted({c for c in targets if targets.count(c) > 1})
    if twice:
        raise SchemaError(f"{where}: several headers map onto the same column: {twice}")
    unmapped_required = [f.name for f in contract.fields if f.required and f.name not in targets]
    if unmapped_required:
        raise SchemaError(f"{where}: required columns of {feed} have no source header: {unmapped_required}")
    formats = tuple(str(f) for f in data.get("time_formats") or ())
    return ColumnMap(
        name=path.stem, feed=feed, source=str(data.get("source", "")), columns=columns,
        time_formats=formats,
    )


def load_schemas(root: Path | None = None) -> Schemas:
    """Read every contract in ``root/feeds`` and every column map in ``root/column_maps``.

    Read once per process while the files stay as they are (same names, sizes and modification
    times): each stage of a daily run loads them, and parsing the YAML cost ~0.2 s each time."""
    root = Path(root) if root is not None else SCHEMAS_DIR
    feed_files = tuple(sorted((root / "feeds").glob("*.yaml")))
    map_files = tuple(sorted((root / "column_maps").glob("*.yaml")))
    stamp = tuple((p.stat().st_size, p.stat().st_mtime_ns) for p in (*feed_files, *map_files))
    return _parse_schemas(root, feed_files, map_files, stamp)


@functools.lru_cache(maxsize=8)
def _parse_schemas(root: Path, feed_files: tuple[Path, ...], map_files: tuple[Path, ...], stamp: tuple) -> Schemas:
    """``stamp`` (sizes and modification times) is part of the cache key only."""
    if not feed_files:
        raise SchemaError(f"{root / 'feeds'}: no feed contracts found (*.yaml)")
    feeds = {c.feed: c for c in map(_load_contract, feed_files)}
    maps = {m.name: m for m in (_load_column_map(p, feeds) for p in map_files)}
    without_map = sorted(set(feeds) - {m.feed for m in maps.values()})
    if without_map:
        raise SchemaError(f"{root / 'column_maps'}: no column map for feeds {without_map}")
    return Schemas(feeds=feeds, column_maps=maps, root=root)
