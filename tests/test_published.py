"""What epidemiologists read: the snapshot against its contracts, the data dictionary, the example
queries and the notebooks, all on the sample city's snapshot (``sample_day_1`` in conftest)."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pytest

from tests.conftest import PROJECT
from trace24.data_dictionary import render
from trace24.schemas.contracts import SCHEMAS_DIR, SchemaError
from trace24.schemas.published import load_published
from trace24.transforms.database import quote

PUBLISHED = load_published()
NOTEBOOKS = sorted((PROJECT / "notebooks").glob("*.ipynb"))


def _columns(con, table: str) -> list[tuple[str, str]]:
    return con.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? "
                       "ORDER BY ordinal_position", [table]).fetchall()


def test_the_snapshot_holds_the_published_tables_exactly_as_their_contracts_say(sample_day_1):
    folder, _ = sample_day_1
    with duckdb.connect(str(folder / "t_read.duckdb"), read_only=True) as con:
        tables = {row[0] for row in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        assert tables == {t.name for t in PUBLISHED.tables}   # no raw or staged table, nothing undocumented
        for table in PUBLISHED.tables:
            assert _columns(con, table.name) == [(c.name, c.type) for c in table.columns], table.name
            key = ", ".join(quote(k) for k in table.key)
            duplicated = con.execute(f"SELECT count(*) FROM (SELECT {key} FROM {quote(table.name)} "
                                     f"GROUP BY ALL HAVING count(*) > 1)").fetchall()[0][0]
            assert duplicated == 0, f"{table.name}: key {table.key} is not unique"
        comments = con.execute("SELECT count(*) FROM duckdb_columns() WHERE NOT internal "
                               "AND (comment IS NULL OR comment = '')").fetchall()[0][0]
        assert comments == 0   # every column carries its description


def test_every_column_of_the_store_is_published_or_withheld_with_a_reason(sample_day_1):
    """A column added to a published table in code must be documented (or withheld) before it ships."""
    folder, _ = sample_day_1
    with duckdb.connect(str(folder / "t.duckdb"), read_only=True) as con:
        for table in PUBLISHED.tables:
            if table.stage == "snapshot":
                continue
            stored = {name for name, _ in _columns(con, table.name)}
            assert stored == set(table.column_names) | set(table.withheld), table.name
    assert "raw_values" in PUBLISHED.table("quarantine").withheld


def test_every_example_query_runs_on_the_snapshot_and_answers(sample_day_1):
    folder, _ = sample_day_1
    assert len(PUBLISHED.examples) >= 5
    with duckdb.connect(str(folder / "t_read.duckdb"), read_only=True) as con:
        for example in PUBLISHED.examples:
            assert con.execute(example.sql).fetchall(), example.title


def test_the_committed_data_dictionary_is_the_one_the_contracts_generate():
    committed = (PROJECT / "docs" / "data-dictionary.md").read_text(encoding="utf-8")
    assert committed == render(PUBLISHED), "run `trace24 dictionary` and commit docs/data-dictionary.md"
    for table in PUBLISHED.tables:
        assert f"### {table.name}\n" in committed


def test_a_contract_without_descriptions_is_refused(tmp_path):
    for path in (SCHEMAS_DIR / "published").glob("*.yaml"):
        (tmp_path / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    lists = tmp_path / "lists.yaml"
    lists.write_text(lists.read_text(encoding="utf-8").replace("description:", "note:"), encoding="utf-8")
    with pytest.raises(SchemaError, match=r"lists\.yaml"):
        load_published(tmp_path)


def test_a_history_carried_by_a_column_outside_its_key_is_refused(tmp_path):
    """The snapshot carries a history table's rows per value of ``carried_by``: it must be a key column."""
    for path in (SCHEMAS_DIR / "published").glob("*.yaml"):
        (tmp_path / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    lists = tmp_path / "lists.yaml"
    lists.write_text(lists.read_text(encoding="utf-8").replace("carried_by: as_of", "carried_by: status"),
                     encoding="utf-8")
    with pytest.raises(SchemaError, match=r"lists\.yaml: table out_list_rows: 'carried_by'"):
        load_published(tmp_path)
    assert PUBLISHED.table("out_list_rows").carried_by == "as_of"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_the_notebook_runs_on_the_sample_snapshot(notebook: Path, sample_day_1):
    import nbclient
    import nbformat

    folder, _ = sample_day_1
    book = nbformat.read(notebook, as_version=4)
    os.environ["TRACE24_SNAPSHOT"] = str(folder / "t_read.duckdb")   # the kernel inherits it
    try:
        nbclient.NotebookClient(book, timeout=300, kernel_name="python3",
                                resources={"metadata": {"path": str(notebook.parent)}}).execute()
    finally:
        del os.environ["TRACE24_SNAPSHOT"]
    outputs = [o for cell in book.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any(o.output_type in ("display_data", "execute_result") for o in outputs)


def test_the_notebooks_are_there():
    assert {p.stem for p in NOTEBOOKS} >= {"epidemic_curve", "transmission_chains", "clock_compliance",
                                           "data_quality", "response"}
