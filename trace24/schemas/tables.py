"""Which stage writes and which stages read each table of the store: the map a change starts from.

Only reading and checking belongs here. Each published table's owner and readers sit in its
contract (``published/<stage>.yaml``: ``owner`` for the file, ``readers`` per table), the other
tables' in ``internal.yaml``; ``tests/test_table_map.py`` holds both to the SQL of every module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trace24.schemas.contracts import SCHEMAS_DIR, SchemaError, read_mapping
from trace24.schemas.published import load_published

# The stages in the order data flows through them: a module may read the tables of its own stage
# and of earlier ones, and imports nothing of a later stage. ``ground`` is
# trace24/transforms/database.py, normalise.py and csv_out.py.
STAGES = ("ground", "ingest", "persons", "contacts", "categories", "followup", "response", "lists", "publish")
# Readers outside the stages: ``trace24 evaluate`` compares the store with a generated city's truth;
# ``trace24 portal`` (trace24/portal/) shows the snapshot to offices and commands.
TOOLS = ("evaluation", "portal")
FEED_PATTERN = "<feed>"


@dataclass(frozen=True)
class TableRole:
    name: str               # a table, or a pattern with <feed> (raw_<feed>, staged_<feed>)
    owner: str
    readers: tuple[str, ...]
    is_published: bool


def _read_internal(path: Path) -> dict:
    tables = read_mapping(path).get("tables")
    if not isinstance(tables, dict):
        raise SchemaError(f"{path}: expected 'tables:' mapping each table to its owner, readers and description")
    return tables


def load_table_map(root: Path | None = None) -> dict[str, TableRole]:
    """Every table of the store by name, published or internal; a broken entry raises ``SchemaError``."""
    root = Path(root) if root is not None else SCHEMAS_DIR
    roles = {t.name: TableRole(t.name, t.owner, t.readers, True) for t in load_published(root / "published").tables}
    path = root / "internal.yaml"
    for name, spec in _read_internal(path).items():
        if name in roles:
            raise SchemaError(f"{path}: {name} is published; its owner and readers belong in its contract")
        if not isinstance(spec, dict) or not spec.get("description"):
            raise SchemaError(f"{path}: table {name} needs a 'description'")
        roles[name] = TableRole(name, str(spec.get("owner") or ""), tuple(spec.get("readers") or ()), False)
    for role in roles.values():
        where = f"table {role.name}"
        if role.owner not in STAGES:
            raise SchemaError(f"{root}: {where}: 'owner' must be one of {', '.join(STAGES)}, not {role.owner!r}")
        unknown = [r for r in role.readers if r not in (*STAGES, *TOOLS)]
        if unknown or role.owner in role.readers:
            raise SchemaError(f"{root}: {where}: readers {list(role.readers)} must be other stages or tools")
    return roles


def role_of(roles: dict[str, TableRole], table: str, feeds: set[str]) -> TableRole | None:
    """The role of a table name as SQL names it (``staged_place_scans`` is ``staged_<feed>``)."""
    if table in roles:
        return roles[table]
    for pattern, role in roles.items():
        prefix, marker, suffix = pattern.partition(FEED_PATTERN)
        if (marker and table.startswith(prefix) and table.endswith(suffix)
                and table[len(prefix):len(table) - len(suffix)] in feeds):
            return role
    return None
