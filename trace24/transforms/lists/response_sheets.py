"""Out layer: the transfer sheets, the run's dispatch plan as the crews and the facilities read it.

What belongs here: each district's 转运车次单 (``<区>/转运车次单.csv``: one row per person planned for
a transfer picked up in the district, by trip and pickup order) and each receiving facility's
arrival sheet (``接收机构/<机构编码>_<机构名称>.csv``: who arrives, on which trip, when), written into
the run's staging folder with their manifest entries. What does not: the plan itself (beds, trips,
vehicles: ``response/``), the lists (``community_lists.py``), the transfer clock
(``transfer_clock.py``), cell escaping and file naming (``csv_out.py``). Chinese text comes from
``schemas/community_lists.yaml`` (``transfer_sheets``, and the lists' category and bed labels).

A sheet is written only when there is something to do: a district with no pickups gets no trip
sheet, a facility with no arrivals no arrival sheet (an empty file reads as "nothing to do" from a
run that may not have looked; the manifest says which sheets the run wrote). A trip no vehicle can
take is still on the sheet, its vehicle cell saying so and its times empty.

The person's cells (category, name, masked ID number, phone, address) are the cells of the
person's row on this run's community list (``out_list_rows``), so a sheet masks and words exactly
as the lists do. Privacy: a sheet carries what the crew or the facility needs to find and receive
the person, nothing else (no basis, no case codes, no age or sex).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import duckdb
import yaml

from trace24.schemas.contracts import SchemaError
from trace24.schemas.response_rules import DispatchRules
from trace24.transforms.csv_out import FORMULA_START, csv_line_sql, write_csv_text
from trace24.transforms.database import bound_parameters
from trace24.transforms.lists import list_paths
from trace24.transforms.lists.community_lists import (
    LAYOUT_FILE,
    LIST_COLUMNS,
    ListLayout,
    folder_path,
)

TRIP_COLUMNS = ("trip", "vehicle", "vehicle_kind", "category", "facility", "bed_kind", "pickup_at", "arrival_at",
                "pickup_order", "community", "compound", "building", "unit", "room", "address_text", "pickup_from",
                "name", "masked_id_number", "phone")
ARRIVAL_COLUMNS = ("trip", "vehicle", "arrival_at", "category", "bed_kind", "name", "masked_id_number", "phone",
                   "pickup_district", "community")
# The list cells a sheet repeats (a list row's values are the status, then LIST_COLUMNS[1:]).
LIST_CELLS = ("category_label", "name", "phone", "masked_id_number", "compound", "building", "unit", "room",
              "address_text")


@dataclass(frozen=True)
class SheetsLayout:
    trip_file: str
    trip_headers: tuple[str, ...]
    arrival_folder: str
    arrival_headers: tuple[str, ...]
    no_vehicle: str


def load_sheets_layout(path: Path | None = None) -> SheetsLayout:
    """The ``transfer_sheets`` section of the list layout; a broken one raises ``SchemaError``."""
    path = Path(path or LAYOUT_FILE)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))["transfer_sheets"]
        layout = SheetsLayout(str(data["trip_file"]), tuple(data["trip_headers"]), str(data["arrival_folder"]),
                              tuple(data["arrival_headers"]), str(data["no_vehicle"]))
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise SchemaError(f"{path}: broken transfer_sheets: {exc!r}") from exc
    if len(layout.trip_headers) != len(TRIP_COLUMNS) or len(layout.arrival_headers) != len(ARRIVAL_COLUMNS):
        raise SchemaError(f"{path}: transfer_sheets needs {len(TRIP_COLUMNS)} trip_headers and "
                          f"{len(ARRIVAL_COLUMNS)} arrival_headers")
    if (list_paths.path_part(layout.arrival_folder) != layout.arrival_folder
            or not list_paths.is_plain_file_name(layout.trip_file)):
        raise SchemaError(f"{path}: transfer_sheets: arrival_folder must be a plain folder name and "
                          "trip_file a .csv name")
    return layout


SHEET_ROWS_SQL = """
CREATE OR REPLACE TEMP TABLE transfer_sheet_rows AS
WITH plan AS (
    SELECT * FROM dispatch_plan
),
people AS (
    SELECT person_id, community_name FROM persons
),
listed AS (
    -- The person's row on this run's list (a person moved has a 解除 row on the old list too).
    SELECT person_id, row_values FROM out_list_rows WHERE as_of = $as_of AND status <> 'released'
),
facility_names AS (
    SELECT facility_code, arg_max(facility_name, (census_at, delivery_date, load_id, source_row_number))
               AS facility_name
    FROM staged_facility_beds WHERE is_current AND NOT is_deleted
    GROUP BY facility_code
),
rows AS (
    SELECT p.trip_id, p.pickup_order, p.person_id, p.pickup_district, p.facility_code,
           coalesce(p.facility_name, '') AS facility_name,
           coalesce(p.vehicle_id, $no_vehicle) AS vehicle,
           coalesce(map($vehicle_keys, $vehicle_values)[p.action_key], '') AS vehicle_kind,
           coalesce(l.row_values[$cell_category_label], '') AS category,
           coalesce(map($bed_kind_keys, $bed_kind_values)[p.bed_kind], p.bed_kind, '') AS bed_kind,
           coalesce(strftime(p.planned_pickup_at, '%Y-%m-%d %H:%M'), '') AS pickup_at,
           coalesce(strftime(p.planned_arrival_at, '%Y-%m-%d %H:%M'), '') AS arrival_at,
           coalesce(CAST(p.pickup_order AS VARCHAR), '') AS pickup_order_text,
           coalesce(m.community_name, '') AS community,
           CASE WHEN p.pickup_facility_code IS NULL THEN ''
                ELSE coalesce(f.facility_name, p.pickup_facility_code) END AS pickup_from,
           coalesce(l.row_values[$cell_name], '') AS name,
           coalesce(l.row_values[$cell_masked_id_number], '') AS masked_id_number,
           coalesce(l.row_values[$cell_phone], '') AS phone,
           coalesce(l.row_values[$cell_compound], '') AS compound,
           coalesce(l.row_values[$cell_building], '') AS building,
           coalesce(l.row_values[$cell_unit], '') AS unit,
           coalesce(l.row_values[$cell_room], '') AS room,
           coalesce(l.row_values[$cell_address_text], '') AS address_text,
           -- Trip numbers are MMDD-NNNN, longer past 9999 trips: by length first, then as text.
           lpad(CAST(length(p.trip_id) AS VARCHAR), 3, '0') || p.trip_id AS trip_key
    FROM plan AS p
    LEFT JOIN listed AS l USING (person_id)
    LEFT JOIN people AS m USING (person_id)
    LEFT JOIN facility_names AS f ON f.facility_code = p.pickup_facility_code
)
SELECT *,
       [trip_id, vehicle, vehicle_kind, category, facility_name, bed_kind, pickup_at, arrival_at, pickup_order_text,
        community, compound, building, unit, room, address_text, pickup_from, name, masked_id_number, phone]
           AS trip_cells,
       [trip_id, vehicle, arrival_at, category, bed_kind, name, masked_id_number, phone, pickup_district, community]
           AS arrival_cells
FROM rows
"""


def sheet_parameters(layout: ListLayout, sheets: SheetsLayout, rules: DispatchRules, as_of: dt.datetime) -> dict:
    params = {"as_of": as_of, "no_vehicle": sheets.no_vehicle,
              "vehicle_keys": list(rules.vehicle_of_action), "vehicle_values": list(rules.vehicle_of_action.values()),
              "bed_kind_keys": list(layout.bed_kinds), "bed_kind_values": list(layout.bed_kinds.values())}
    # A list row's values: the status cell, then LIST_COLUMNS[1:]; 1-based.
    params.update({f"cell_{name}": LIST_COLUMNS.index(name) + 1 for name in LIST_CELLS})
    return params


def arrival_file(staging: Path, sheets: SheetsLayout, facility_code: str, facility_name: str) -> Path:
    """``接收机构/<code>_<name>.csv``: code and name from data, made one safe file name (a ``/`` or
    ``..`` in them makes no folder and leaves nothing)."""
    name = f"{list_paths.path_part(facility_code)}_{list_paths.path_part(facility_name)}.csv"
    path = staging / sheets.arrival_folder / name
    if path.resolve().parent != (staging / sheets.arrival_folder).resolve():
        raise ValueError(f"arrival sheet for {facility_code!r} leaves its folder")
    return path


def _write(path: Path, staging: Path, headers: tuple[str, ...], rows: int, body: str, trips: int) -> dict:
    sha256 = write_csv_text(path, headers, body)
    return {"file": path.relative_to(staging).as_posix(), "rows": rows, "trips": trips, "sha256": sha256}


def write_sheets(con: duckdb.DuckDBPyConnection, layout: ListLayout, sheets: SheetsLayout, rules: DispatchRules,
                 staging: Path, as_of: dt.datetime) -> dict[str, list[dict]]:
    """Write the trip and arrival sheets of this run's plan under ``staging``; return their manifest
    entries as ``{"trip_sheets": [...], "arrival_sheets": [...]}``."""
    params = sheet_parameters(layout, sheets, rules, as_of)
    con.execute(SHEET_ROWS_SQL, bound_parameters(SHEET_ROWS_SQL, params))
    line = csv_line_sql
    trip_files = con.execute(f"""
        SELECT pickup_district, count(*), count(DISTINCT trip_id),
               string_agg({line('trip_cells')} || chr(13) || chr(10), ''
                          ORDER BY trip_key, pickup_order, person_id) AS body
        FROM transfer_sheet_rows GROUP BY pickup_district ORDER BY pickup_district""",
                             {"formula_start": FORMULA_START}).fetchall()
    arrival_files = con.execute(f"""
        SELECT facility_code, min(facility_name), count(*), count(DISTINCT trip_id),
               string_agg({line('arrival_cells')} || chr(13) || chr(10), ''
                          ORDER BY arrival_at = '', arrival_at, trip_key, pickup_order, person_id) AS body
        FROM transfer_sheet_rows GROUP BY facility_code ORDER BY facility_code""",
                                {"formula_start": FORMULA_START}).fetchall()
    trip_paths = list_paths.district_files([district for district, *_ in trip_files], sheets.trip_file)
    trip_entries = [_write(folder_path(staging, trip_paths[district]), staging, sheets.trip_headers,
                           rows, body, trips)
                    for district, rows, trips, body in trip_files]
    arrival_entries, seen = [], {}
    for code, name, rows, trips, body in arrival_files:
        path = arrival_file(staging, sheets, code, name)
        if path in seen:   # two codes that differ only in characters a file name cannot hold
            raise ValueError(f"facilities {seen[path]!r} and {code!r} would share the arrival sheet {path.name}")
        seen[path] = code
        arrival_entries.append(_write(path, staging, sheets.arrival_headers, rows, body, trips))
    return {"trip_sheets": sorted(trip_entries, key=lambda e: e["file"]),
            "arrival_sheets": sorted(arrival_entries, key=lambda e: e["file"])}
