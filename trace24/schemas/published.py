"""Read and check the contracts of the published tables: ``schemas/published/*.yaml``.

Only reading and checking belongs here. The contracts say which tables and columns the read-only
snapshot holds (``trace24/transforms/publish/snapshot.py`` copies exactly these), what each means (the data
dictionary is generated from them, ``trace24/data_dictionary.py``), and the example queries
that the tests run on the sample city. One file per stage of the flow; ``examples.yaml`` holds
the queries.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trace24.schemas.contracts import _IDENTIFIER, SCHEMAS_DIR, SchemaError, read_mapping

PUBLISHED_DIR = SCHEMAS_DIR / "published"
EXAMPLES_FILE = "examples.yaml"
# The order the dictionary presents the stages in: the order data flows through them.
STAGES = ("ingest", "identity", "exposures", "categories", "dispatch", "areas", "followup", "lists", "clock",
          "area_lists", "transfers", "snapshot")


@dataclass(frozen=True)
class PublishedColumn:
    name: str
    type: str
    description: str


@dataclass(frozen=True)
class PublishedTable:
    name: str
    stage: str
    description: str
    key: tuple[str, ...]  # unique together (checked on the sample); the snapshot's row order
    columns: tuple[PublishedColumn, ...]
    withheld: dict[str, str]  # columns of the store that the snapshot leaves out, and why
    # A history column (as_of): each run writes its own rows, so the snapshot carries the rows of
    # values it holds already (checked) and copies the rest, instead of every row every run.
    carried_by: str | None = None
    owner: str = ""                     # the one stage that writes it: its file's `owner`
    readers: tuple[str, ...] = ()       # the other stages and tools that read it

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


@dataclass(frozen=True)
class ExampleQuery:
    title: str
    question: str
    sql: str


@dataclass(frozen=True)
class StageContract:
    stage: str
    description: str
    tables: tuple[PublishedTable, ...]


@dataclass(frozen=True)
class Published:
    stages: tuple[StageContract, ...]
    examples: tuple[ExampleQuery, ...]

    @property
    def tables(self) -> tuple[PublishedTable, ...]:
        return tuple(t for s in self.stages for t in s.tables)

    def table(self, name: str) -> PublishedTable:
        return next(t for t in self.tables if t.name == name)


def _table(path: Path, stage: str, owner: str, name: str, spec) -> PublishedTable:
    where = f"{path}: table {name}"
    if not _IDENTIFIER.match(name) or not isinstance(spec, dict):
        raise SchemaError(f"{where}: a table needs a lower-case name and a mapping")
    if not spec.get("description"):
        raise SchemaError(f"{where}: say what the table holds under 'description'")
    columns = []
    for column, column_spec in (spec.get("columns") or {}).items():
        if not _IDENTIFIER.match(str(column)) or not isinstance(column_spec, dict):
            raise SchemaError(f"{where}: column {column!r} needs a lower-case name and a mapping")
        if not column_spec.get("type") or not column_spec.get("description"):
            raise SchemaError(f"{where}: column {column} needs a 'type' and a 'description'")
        columns.append(PublishedColumn(str(column), str(column_spec["type"]), str(column_spec["description"]).strip()))
    if not columns:
        raise SchemaError(f"{where}: no columns")
    key = tuple(spec.get("key") or ())
    unknown = [k for k in key if k not in {c.name for c in columns}]
    if not key or unknown:
        raise SchemaError(f"{where}: 'key' must name published columns (unknown: {unknown})")
    withheld = {str(k): str(v) for k, v in (spec.get("withheld") or {}).items()}
    carried_by = spec.get("carried_by")
    if carried_by is not None and carried_by not in key:
        raise SchemaError(f"{where}: 'carried_by' must name a column of the key")
    readers = spec.get("readers") or []
    if not isinstance(readers, list):
        raise SchemaError(f"{where}: 'readers' must be a list of stages")
    return PublishedTable(name, stage, str(spec["description"]).strip(), key, tuple(columns), withheld,
                          carried_by, owner, tuple(str(r) for r in readers))


def load_published(directory: Path | None = None) -> Published:
    """Every stage's published tables and the example queries; a broken file raises ``SchemaError``."""
    directory = Path(directory or PUBLISHED_DIR)
    stages = []
    for stage in STAGES:
        path = directory / f"{stage}.yaml"
        data = read_mapping(path)
        if data.get("stage") != stage or not data.get("description") or not data.get("owner"):
            raise SchemaError(f"{path}: needs 'stage: {stage}', the stage that writes its tables under "
                              f"'owner' and a 'description'")
        tables = tuple(_table(path, stage, str(data["owner"]), name, spec)
                       for name, spec in (data.get("tables") or {}).items())
        stages.append(StageContract(stage, str(data["description"]).strip(), tables))
    names = [t.name for s in stages for t in s.tables]
    if len(names) != len(set(names)):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise SchemaError(f"{directory}: a table is published twice: {twice}")
    examples = []
    path = directory / EXAMPLES_FILE
    for item in read_mapping(path).get("examples") or ():
        if not isinstance(item, dict) or not all(item.get(k) for k in ("title", "question", "sql")):
            raise SchemaError(f"{path}: every example needs a 'title', a 'question' and its 'sql'")
        examples.append(ExampleQuery(str(item["title"]), str(item["question"]).strip(), str(item["sql"]).strip()))
    return Published(tuple(stages), tuple(examples))
