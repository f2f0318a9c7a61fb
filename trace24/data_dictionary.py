"""The data dictionary of the published tables, rendered as Markdown from ``trace24/schemas/published/``.

Nothing here knows a table: every word comes from the contracts, so the dictionary cannot drift
from what the snapshot holds (a test compares both with the sample city's snapshot, and the
committed ``docs/data-dictionary.md`` with this rendering).
"""

from __future__ import annotations

from trace24.schemas.published import Published

HOW_TO_OPEN = """\
Every run of `trace24 run` (or a scheduled run of `trace24 serve`) ends by publishing a read-only
snapshot, `<store>_read.duckdb` beside the working store (`out/trace24_read.duckdb` after
`make demo`). The pipeline never writes into it: it writes a new file and swaps it in with one
rename, so the snapshot can be opened at any hour, also while a run is going, and always holds one
whole run. A connection keeps the snapshot it opened; open again to see a newer run.

```python
import duckdb
con = duckdb.connect("out/trace24_read.duckdb", read_only=True)
con.sql("SELECT * FROM snapshot_info").show()
```

or, with the DuckDB command line, `duckdb -readonly out/trace24_read.duckdb`. The descriptions
below are also in the file: `SELECT table_name, column_name, comment FROM duckdb_columns()`.
Times are local times without a zone, as the agencies deliver them. Rows are stored in the store's order,
not sorted (sorting 30 million person records took 10 s a run): a query that needs an order says
`ORDER BY`."""


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def render(published: Published) -> str:
    """The whole dictionary: how to open the snapshot, every table and column, the example queries."""
    lines = ["# trace24 data dictionary", "",
             "Generated from `trace24/schemas/published/` by `trace24 dictionary`: edit the contracts there, "
             "not this file.",
             "", "## Opening the snapshot", "", HOW_TO_OPEN, "", "## Tables", ""]
    for stage in published.stages:
        for table in stage.tables:
            summary = _cell(table.description).split(". ")[0].rstrip(".")
            lines.append(f"- [`{table.name}`](#{table.name}) ({stage.stage}): {summary}.")
    lines.append("")
    for stage in published.stages:
        lines += [f"## Stage: {stage.stage}", "", " ".join(stage.description.split()), ""]
        for table in stage.tables:
            lines += [f"### {table.name}", "", " ".join(table.description.split()), "",
                      f"Key: {', '.join(f'`{k}`' for k in table.key)}", "",
                      "| column | type | meaning |", "|---|---|---|"]
            lines += [f"| `{c.name}` | `{_cell(c.type)}` | {_cell(c.description)} |" for c in table.columns]
            if table.withheld:
                lines += ["", "Not in the snapshot (working store only):"]
                lines += [f"- `{name}`: {_cell(reason)}" for name, reason in table.withheld.items()]
            lines.append("")
    lines += ["## Example queries", "",
              "Each runs on the snapshot as it is (the tests run them on the sample city).", ""]
    for example in published.examples:
        lines += [f"### {example.title}", "", " ".join(example.question.split()), "", "```sql", example.sql, "```", ""]
    return "\n".join(lines).rstrip("\n") + "\n"
