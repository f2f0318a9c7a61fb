"""Out layer: the escalation sheets, persons an office could not bring under control.

What belongs here: each district's 公安协查 (police help find: 查无此人, 联系不上, 信息有误) and 外省市协查
(已离汉: with where the records show the person going), each street's 街道督办人员 (拒不配合, 健康监测缺报), from
``followup_escalations``; masked as the lists are, written into the run's staging folder with
their manifest entries. What does not: who is escalated (``followup/escalations.py``).

Privacy: a sheet carries what its reader needs to find the person (name, phone, masked ID, home
address within the community, where the records last saw them, the source case's pseudonymous
code), nothing medical beyond the category.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import yaml

from trace24.schemas.contracts import SchemaError
from trace24.transforms.csv_out import FORMULA_START, csv_line_sql, write_csv_text
from trace24.transforms.database import bound_parameters
from trace24.transforms.lists import list_paths
from trace24.transforms.lists.community_lists import LAYOUT_FILE, ListLayout, folder_path, masked_id_sql

KINDS = ("police", "street", "other_city")


@dataclass(frozen=True)
class EscalationLayout:
    files: dict[str, str]
    headers: tuple[str, ...]


def load_escalation_layout(path: Path | None = None) -> EscalationLayout:
    """The ``escalation_sheets`` section of the list layout; a broken one raises ``SchemaError``."""
    path = Path(path or LAYOUT_FILE)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))["escalation_sheets"]
        layout = EscalationLayout({str(k): str(v) for k, v in data["files"].items()}, tuple(data["headers"]))
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
        raise SchemaError(f"{path}: broken escalation_sheets: {exc!r}") from exc
    if set(layout.files) != set(KINDS) or not all(map(list_paths.is_plain_file_name, layout.files.values())) \
            or len(layout.headers) != 15:
        raise SchemaError(f"{path}: escalation_sheets needs plain .csv files for {', '.join(KINDS)} and 15 headers")
    return layout


ROWS_SQL = """
CREATE OR REPLACE TEMP TABLE escalation_rows AS
WITH escalated AS (
    SELECT * FROM followup_escalations
),
people AS (
    SELECT * FROM persons
)
SELECT e.escalated_to, e.district, e.street, e.person_id,
       [coalesce(map($category_keys, $category_values)[e.category], ''), coalesce(p.name, ''), coalesce(p.phone, ''),
        {masked_id}, coalesce(e.community_name, ''), coalesce(p.compound, ''), coalesce(p.building, ''),
        coalesce(p.unit, ''), coalesce(p.room, ''), e.answer, strftime(e.answered_on, '%Y-%m-%d'), e.office_code,
        coalesce(e.destination, ''), array_to_string(e.last_places, '；'),
        coalesce(array_to_string(e.source_case_codes, '、'), '')] AS row_values,
       concat_ws('|', coalesce(p.compound, ''), coalesce(p.building, ''), coalesce(p.room, ''),
                 lpad(CAST(e.person_id AS VARCHAR), 12, '0')) AS sort_key
FROM escalated AS e
LEFT JOIN people AS p USING (person_id)
""".replace("{masked_id}", masked_id_sql("p.id_number"))


def write_sheets(con: duckdb.DuckDBPyConnection, layout: ListLayout, sheets: EscalationLayout,
                 staging: Path) -> list[dict]:
    """Write every escalation sheet of this run under ``staging``; return their manifest entries."""
    params = {"category_keys": list(layout.categories), "category_values": list(layout.categories.values())}
    con.execute(ROWS_SQL, bound_parameters(ROWS_SQL, params))
    groups = con.execute(f"""
        SELECT escalated_to, district, street, count(*),
               string_agg({csv_line_sql('row_values')} || chr(13) || chr(10), '' ORDER BY sort_key, person_id)
        FROM escalation_rows GROUP BY ALL ORDER BY ALL""", {"formula_start": FORMULA_START}).fetchall()
    by_district = {kind: list_paths.district_files([d for k, d, *_ in groups if k == kind], sheets.files[kind])
                   for kind in ("police", "other_city")}
    by_street = list_paths.street_files([(d, s) for k, d, s, *_ in groups if k == "street"], sheets.files["street"],
                                        layout.unknown_street)
    bodies: dict[tuple[str, str], list] = {}
    for kind, district, street, rows, body in groups:
        path = by_street[(district, street)] if kind == "street" else by_district[kind][district]
        # A district's police sheet gathers every street's persons (the groups are by street).
        entry = bodies.setdefault((kind, path), [0, ""])
        entry[0] += rows
        entry[1] += body
    entries = []
    for (kind, path), (rows, body) in sorted(bodies.items(), key=lambda item: item[0][1]):
        target = folder_path(staging, path)
        entries.append({"file": path, "kind": kind, "rows": rows,
                        "sha256": write_csv_text(target, sheets.headers, body)})
    return entries
