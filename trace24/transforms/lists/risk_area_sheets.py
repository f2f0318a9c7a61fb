"""Out layer: each district's 风险区域清单, the risk areas it enforces, and their history per run.

What belongs here: the sheet rows (every area in force; an area lifted since the previous sheet,
once, as 解除), ``out_risk_area_rows`` (every row of every sheet delivered, per run, as the
community lists keep ``out_list_rows``), and writing ``<区>/风险区域清单.csv`` into the run's
staging folder with its manifest entries. What does not: which areas exist (``response/closures.py``),
the 疫点封控 clock (``closure_clock.py``). A district with no area in force and none lifted gets
no sheet: an empty file would read as "nothing to enforce" from a run that did not look.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import yaml

from trace24.schemas.contracts import SchemaError
from trace24.transforms.csv_out import FORMULA_START, csv_line_sql, write_csv_text
from trace24.transforms.database import bound_parameters, temp_table
from trace24.transforms.lists import list_paths
from trace24.transforms.lists.community_lists import LAYOUT_FILE, folder_path


@dataclass(frozen=True)
class SheetLayout:
    file: str
    headers: tuple[str, ...]
    statuses: dict[str, str]
    scopes: dict[str, str]


def load_sheet_layout(path: Path | None = None) -> SheetLayout:
    path = Path(path or LAYOUT_FILE)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))["risk_area_sheet"]
        layout = SheetLayout(str(data["file"]), tuple(data["headers"]), dict(data["statuses"]), dict(data["scopes"]))
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise SchemaError(f"{path}: broken risk_area_sheet: {exc!r}") from exc
    if not list_paths.is_plain_file_name(layout.file):
        raise SchemaError(f"{path}: risk_area_sheet file must be one plain .csv file name, not {layout.file!r}")
    if len(layout.headers) != 12 or set(layout.statuses) != {"new", "extended", "unchanged", "lifted"}:
        raise SchemaError(f"{path}: risk_area_sheet needs 12 headers and the statuses new, extended, "
                          "unchanged, lifted")
    return layout


OUT_ROWS_DDL = """
CREATE TABLE IF NOT EXISTS out_risk_area_rows (
    as_of TIMESTAMP, list_file VARCHAR, district VARCHAR, area_id VARCHAR, scope VARCHAR, area_key VARCHAR,
    status VARCHAR, planned_lift_at TIMESTAMP, case_codes VARCHAR[], row_values VARCHAR[], sort_key VARCHAR
)
"""

ROWS_SQL = """
CREATE OR REPLACE TEMP TABLE area_rows AS
WITH areas AS (
    SELECT * FROM risk_areas
),
previous AS (
    -- The latest sheets delivered before this run, areas in force on them.
    SELECT * FROM out_risk_area_rows
    WHERE as_of = (SELECT max(as_of) FROM out_risk_area_rows WHERE as_of < $as_of) AND status <> 'lifted'
),
in_force AS (
    SELECT a.*, CASE WHEN p.area_id IS NULL THEN 'new'
                     WHEN p.planned_lift_at <> a.planned_lift_at THEN 'extended' ELSE 'unchanged' END AS status
    FROM areas AS a LEFT JOIN previous AS p USING (area_id)
    WHERE a.is_active
),
lifted AS (
    -- On the previous sheet, not in force now: lifted.
    SELECT a.*, 'lifted' AS status
    FROM previous AS p JOIN areas AS a USING (area_id)
    WHERE NOT a.is_active
),
withdrawn AS (
    SELECT p.* FROM previous AS p WHERE p.area_id NOT IN (SELECT area_id FROM areas)
),
rows AS (
    SELECT area_id, scope, area_key, status, planned_lift_at, case_codes,
           coalesce(district, $unknown_district) AS district,
           [map($status_keys, $status_values)[status], level_label, map($scope_keys, $scope_values)[scope],
            area_name, street, community_code, community_name, requires, strftime(since_at, '%Y-%m-%d %H:%M'),
            strftime(planned_lift_at, '%Y-%m-%d %H:%M'), coalesce(strftime(lifted_at, '%Y-%m-%d %H:%M'), ''),
            array_to_string(case_codes, '、')] AS row_values,
           concat_ws('|', lpad(CAST(list_position($scopes, scope) AS VARCHAR), 2, '0'), coalesce(street, ''),
                     coalesce(community_code, ''), coalesce(area_name, ''), area_id) AS sort_key
    FROM (SELECT * FROM in_force UNION ALL BY NAME SELECT * FROM lifted)
    UNION ALL
    -- A withdrawn area leaves the sheet as it was on the last one, marked lifted, no lift time.
    SELECT area_id, scope, area_key, 'lifted', planned_lift_at, case_codes, district,
           list_concat([map($status_keys, $status_values)['lifted']], row_values[2:10], [''], row_values[12:12]),
           sort_key
    FROM withdrawn
)
SELECT * FROM rows
"""


def sheet_parameters(layout: SheetLayout, scopes: list[str], unknown_district: str, as_of: dt.datetime) -> dict:
    return {"as_of": as_of, "unknown_district": unknown_district, "sheet_file": layout.file, "scopes": scopes,
            "status_keys": list(layout.statuses), "status_values": list(layout.statuses.values()),
            "scope_keys": list(layout.scopes), "scope_values": list(layout.scopes.values())}


def build_sheet_rows(con: duckdb.DuckDBPyConnection, params: dict) -> int:
    """This run's sheet rows, recorded in ``out_risk_area_rows``; returns their number."""
    con.execute(OUT_ROWS_DDL)
    con.execute(ROWS_SQL, bound_parameters(ROWS_SQL, params))
    districts = [d for (d,) in con.execute("SELECT DISTINCT district FROM area_rows").fetchall()]
    files = list_paths.district_files(districts, params["sheet_file"])
    temp_table(con, "area_sheet_files", pa.table({"district": pa.array(list(files), pa.string()),
                                                  "list_file": pa.array(list(files.values()), pa.string())}))
    con.execute("CREATE OR REPLACE TEMP TABLE delivered_area_rows AS "
                "SELECT f.list_file, r.* FROM area_rows AS r JOIN area_sheet_files AS f USING (district)")
    con.execute("DELETE FROM out_risk_area_rows WHERE as_of = $as_of", {"as_of": params["as_of"]})
    con.execute("""INSERT INTO out_risk_area_rows
                   SELECT $as_of, list_file, district, area_id, scope, area_key, status, planned_lift_at,
                          case_codes, row_values, sort_key
                   FROM delivered_area_rows""", {"as_of": params["as_of"]})
    return con.execute("SELECT count(*) FROM delivered_area_rows").fetchone()[0]


def write_sheets(con: duckdb.DuckDBPyConnection, layout: SheetLayout, staging: Path) -> list[dict]:
    """Write each district's sheet under ``staging``; return their manifest entries."""
    files = con.execute(f"""
        SELECT list_file, count(*) AS row_count,
               string_agg({csv_line_sql('row_values')} || chr(13) || chr(10), '' ORDER BY sort_key) AS body,
               list_sort(list_distinct(list(status))) AS statuses
        FROM delivered_area_rows GROUP BY list_file ORDER BY list_file""",
                        {"formula_start": FORMULA_START}).fetchall()
    entries = []
    for list_file, row_count, body, _ in files:
        path = folder_path(staging, list_file)
        sha256 = write_csv_text(path, layout.headers, body)
        entries.append({"file": path.relative_to(staging).as_posix(), "rows": row_count, "sha256": sha256})
    return entries

