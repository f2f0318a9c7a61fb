"""The house's map: which stage writes and reads each table, and which way imports run.

The SQL of every module under ``trace24/`` is read (string constants, f-strings with their holes
kept, docstrings left out) for the tables it writes (CREATE, INSERT, UPDATE, DELETE, ALTER, DROP)
and reads (FROM, JOIN), and held to the map in ``trace24/schemas/published/*.yaml`` and
``internal.yaml``: a stage writes only the tables it owns, every table named is declared, and the
declared readers are exactly the modules that read it. Then the store of a real run is held to the
same map. Imports run one way: no module imports a later stage.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import duckdb
import pytest

from trace24.schemas.contracts import load_schemas
from trace24.schemas.tables import STAGES, TOOLS, load_table_map, role_of

PACKAGE = Path(__file__).resolve().parent.parent / "trace24"
ROLES = load_table_map()
FEEDS = set(load_schemas().feeds)

WRITE = re.compile(
    r"\b(?:CREATE\s+(?:OR\s+REPLACE\s+)?(?P<temp>TEMP(?:ORARY)?\s+)?(?:TABLE|VIEW)\s+(?P<creates>IF\s+NOT\s+EXISTS\s+)?"
    r"|INSERT\s+(?:OR\s+REPLACE\s+)?INTO\s+|MERGE\s+INTO\s+|DELETE\s+FROM\s+|UPDATE\s+(?!SET\b)|ALTER\s+TABLE\s+"
    r"|DROP\s+(?:TABLE|VIEW)\s+(?P<drops>IF\s+EXISTS\s+)?)(?P<name>\{[^}]*\}[\w.]*|[A-Za-z_][\w.]*(?:\{[^}]*\})?)")
READ = re.compile(r"\b(?:FROM|JOIN)\s+(?P<name>[a-z_]\w*)\b(?!\s*\()")
# Rows appended through linkage._insert(con, "<table>", rows).
INSERT_HELPER = re.compile(r"\b_insert\(con, \"(?P<name>\w+)\"")
# Table names built at run time, and what they stand for.
DYNAMIC = {"{raw_table(contract.feed)}": "raw_<feed>", "{staged_table(contract.feed)}": "staged_<feed>",
           ("ingest/raw.py", "{table}"): "raw_<feed>", ("ingest/staged.py", "{table}"): "staged_<feed>",
           ("persons/linkage.py", "{table}"): None}  # None: its callers name the table (INSERT_HELPER)
# The ground's helper that reads a feed's current records with their persons.
CURRENT_RECORDS = re.compile(r"\bcurrent_records\([\"'](?P<feed>\w+)[\"']")


# Modules whose SQL is not on the store: the data dictionary's is text for people (how to open the
# snapshot); the portal's accounts module keeps its own SQLite file (portal.sqlite).
NOT_SCANNED = ("data_dictionary.py", "accounts.py")


def stage_of(path: Path) -> str:
    """``ingest``, ``persons``, ...; ``ground`` for the shared modules; a tool; else ``wiring``."""
    parts = path.relative_to(PACKAGE).parts
    if parts[0] == "transforms":
        return parts[1] if len(parts) > 2 else "ground"
    if parts[0] in TOOLS:
        return parts[0]   # a tool with a folder of its own (trace24/portal/)
    return path.stem if path.stem in TOOLS else "wiring"


def sql_texts(tree: ast.AST) -> list[str]:
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    inside_fstrings = {id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for v in node.values}
    texts = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            texts.append("".join(v.value if isinstance(v, ast.Constant) else "{" + ast.unparse(v.value) + "}"
                                 for v in node.values))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings | inside_fstrings:
            texts.append(node.value)
    return texts


def scan() -> tuple[dict, dict, set[str]]:
    """(writes, reads, temporary names): writes and reads as {(module, stage): {table or pattern}}."""
    modules = {path: sql_texts(ast.parse(path.read_text(encoding="utf-8"))) for path in sorted(PACKAGE.rglob("*.py"))
               if path.name not in NOT_SCANNED}
    temporary = {m["name"] for texts in modules.values() for text in texts for m in WRITE.finditer(text) if m["temp"]}
    writes, reads = {}, {}
    for path, texts in modules.items():
        where = (str(path.relative_to(PACKAGE)), stage_of(path))
        local = str(path.relative_to(PACKAGE / "transforms")) if where[1] not in ("wiring", *TOOLS) else ""
        for text in texts:
            for m in WRITE.finditer(text):
                name = m["name"]
                if name in temporary or (m["creates"] and where[1] == "ground"):
                    continue  # temporary tables; the ground creates the store's tables when a connection opens
                if name.startswith("snapshot."):
                    name = "<snapshot file>"  # the attached snapshot, not the store
                elif "{" in name:
                    name = DYNAMIC.get(name, DYNAMIC.get((local, name), f"unknown dynamic name {name}"))
                    if name is None:
                        continue
                elif m["drops"] and role_of(ROLES, name, FEEDS) is None:
                    continue  # an old store's table that no longer exists
                writes.setdefault(where, set()).add(name)
            for m in INSERT_HELPER.finditer(text):
                writes.setdefault(where, set()).add(m["name"])
            for m in READ.finditer(text) if where[1] != "ground" else ():  # the ground's helpers: see below
                role = role_of(ROLES, m["name"], FEEDS)
                if role is not None and m["name"] not in temporary:
                    reads.setdefault(where, set()).add(role.name)
        # current_records("<feed>", ...) reads that feed's staged table and person_records for its caller.
        source = path.read_text(encoding="utf-8") if path.name not in NOT_SCANNED else ""
        if CURRENT_RECORDS.search(source):
            reads.setdefault(where, set()).update({"person_records", "staged_<feed>"})
    return writes, reads, temporary


WRITES, READS, TEMPORARY = scan()


def test_no_stage_writes_a_table_it_does_not_own():
    wrong = []
    for (module, stage), tables in sorted(WRITES.items()):
        for table in sorted(tables):
            if table == "<snapshot file>":
                owner = "publish"
            else:
                role = ROLES.get(table) or role_of(ROLES, table, FEEDS)
                owner = role.owner if role else "nobody: declare it in trace24/schemas/internal.yaml"
            if owner != stage:
                wrong.append(f"{module} ({stage}) writes {table}, owned by {owner}")
    assert not wrong, "\n".join(wrong)


def test_every_declared_table_is_written_by_its_owner():
    written = {(table, stage) for (_, stage), tables in WRITES.items() for table in tables}
    created_by_ground = {"stage_state", "raw_<feed>", "staged_<feed>"}  # rows written by their owners
    missing = [f"{role.name} (owner {role.owner})" for role in ROLES.values()
               if role.owner != "publish" and (role.name, role.owner) not in written
               and not (role.owner == "ground" and role.name in created_by_ground)]
    assert not missing, f"declared but never written by their owner: {missing}"


def test_the_declared_readers_are_the_modules_that_read_each_table():
    found: dict[str, set[str]] = {}
    for (_, stage), tables in READS.items():
        for table in tables:
            if stage != ROLES[table].owner:
                found.setdefault(table, set()).add(stage)
    differ = [f"{name}: declared {sorted(role.readers)}, read by {sorted(found.get(name, set()))}"
              for name, role in sorted(ROLES.items()) if set(role.readers) != found.get(name, set())]
    assert not differ, "update `readers` in the table's contract:\n" + "\n".join(differ)


def test_wiring_holds_no_sql_on_the_store():
    """Flows, settings and the command line call the stages; they read and write no table themselves."""
    wiring = {module: tables for (module, stage), tables in {**WRITES, **READS}.items() if stage == "wiring"}
    assert wiring == {}


def test_temporary_tables_never_shadow_a_store_table():
    assert not {name for name in TEMPORARY if role_of(ROLES, name, FEEDS)}


def test_a_real_store_holds_only_declared_tables(sample_day_1):
    folder, _ = sample_day_1
    with duckdb.connect(str(folder / "t.duckdb"), read_only=True) as con:
        tables = {name for (name,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    undeclared = sorted(t for t in tables if role_of(ROLES, t, FEEDS) is None)
    assert undeclared == []
    published_here = {r.name for r in ROLES.values() if r.owner != "publish" and "<feed>" not in r.name}
    assert published_here <= tables   # and every declared table of the store exists after a run


def _stage_rank(module: str) -> int | None:
    """The position of a module in the flow: schemas 0, the stages in order, then everything above them."""
    parts = module.split(".")
    if parts[:2] == ["trace24", "schemas"]:
        return 0
    if parts[:2] == ["trace24", "transforms"]:
        stage = parts[2] if len(parts) > 2 and parts[2] in STAGES else "ground"
        return 1 + STAGES.index(stage)
    return None


def test_imports_run_one_way_no_module_imports_a_later_stage():
    backwards = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(("trace24", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
        rank = _stage_rank(module)
        if rank is None:
            continue  # flows, settings, the command line: above every stage
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([node.module] if isinstance(node, ast.ImportFrom) and node.module else
                     [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            for name in names:
                if name.startswith("trace24") and (_stage_rank(name) is None or _stage_rank(name) > rank):
                    backwards.append(f"{module} imports {name}")
    assert not backwards, "\n".join(backwards)


def test_a_table_without_an_owning_stage_is_refused(schemas_copy):
    from trace24.schemas.contracts import SchemaError

    contracts = schemas_copy
    internal = contracts / "internal.yaml"
    internal.write_text(internal.read_text(encoding="utf-8").replace(
        "  landed_files:\n    owner: ingest", "  landed_files:\n    owner: everyone"), encoding="utf-8")
    with pytest.raises(SchemaError, match="table landed_files: 'owner' must be one of ground, ingest"):
        load_table_map(contracts)
    published = contracts / "published" / "clock.yaml"
    published.write_text(published.read_text(encoding="utf-8").replace("owner: lists", "# no owner"),
                         encoding="utf-8")
    with pytest.raises(SchemaError, match=r"clock\.yaml: needs 'stage: clock', the stage that writes"):
        load_table_map(contracts)
