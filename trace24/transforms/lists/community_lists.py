"""Out layer: the per-community lists, what each office must do and by when.

What belongs here: the SQL that turns ``four_categories`` and ``persons`` into list rows (masked ID
numbers, the action and its deadline, a 判定依据 sentence a grid worker understands, pseudonymous
case codes), their status against the previous delivered list (新增, 变更, 在管, 解除), the table
``out_list_rows`` of every row ever delivered (the clock reads it), and writing the files with a
``manifest.json``, all or nothing. What does not: classification (``categories/classify.py``), cell
escaping (``csv_out.py``), where each file sits (``list_paths.py``). Chinese text comes from
``schemas/community_lists.yaml``.

Privacy: a row carries name, sex, age, phone, masked ID, address, special group, category, action,
deadline, basis and case codes, nothing else; a file holds the residents of one community only.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import duckdb
import yaml

from trace24.schemas.contracts import SCHEMAS_DIR, SchemaError
from trace24.schemas.rules import RuleProfile
from trace24.transforms import xlsx_out
from trace24.transforms.csv_out import FORMULA_START, csv_line_sql, write_csv_text
from trace24.transforms.database import bound_parameters
from trace24.transforms.lists import list_paths

LAYOUT_FILE = SCHEMAS_DIR / "community_lists.yaml"
SETTING_KEYS = ("household", "hotel", "train", "flight", "bus", "ward", "workplace", "meal", "transport",
                "healthcare", "other", "venue_close", "venue_general")
REASON_KEYS = ("confirmed_case", "asymptomatic_case", "suspected_case_report", "hospital_diagnosis",
               "clinical_rule", "fever_clinic_visit", "health_check")


@dataclass(frozen=True)
class ListLayout:
    headers: tuple[str, ...]
    statuses: dict[str, str]
    categories: dict[str, str]
    unplaced_file: str
    unknown_district: str
    unknown_street: str
    observation_until: str
    source_kinds: dict[str, str]
    basis: dict[str, str]
    transfer_to: str
    transfer_waiting: str
    bed_kinds: dict[str, str]
    risk_area: str


def load_layout(path: Path | None = None) -> ListLayout:
    path = Path(path or LAYOUT_FILE)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        layout = ListLayout(tuple(data["headers"]), dict(data["statuses"]), dict(data["categories"]),
                            str(data["unplaced_file"]), str(data["unknown_district"]), str(data["unknown_street"]),
                            str(data["observation_until"]), dict(data["source_kinds"]), dict(data["basis"]),
                            str(data["transfer_to"]), str(data["transfer_waiting"]), dict(data["bed_kinds"]),
                            str(data["risk_area"]))
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise SchemaError(f"{path}: broken list layout: {exc!r}") from exc
    missing = [k for k in (*SETTING_KEYS, *REASON_KEYS) if k not in layout.basis]
    missing += [k for k in ("new", "changed", "unchanged", "reminder", "released") if k not in layout.statuses]
    if not list_paths.is_plain_file_name(layout.unplaced_file):
        raise SchemaError(f"{path}: unplaced_file must be one plain .csv file name, not {layout.unplaced_file!r}")
    if missing or len(layout.headers) != len(LIST_COLUMNS):
        raise SchemaError(f"{path}: missing {', '.join(missing) or f'headers (need {len(LIST_COLUMNS)})'}")
    return layout


# The columns of a list row, in the order of the layout's headers.
# The answer columns are empty on a delivered list; the office fills them in (list_workbooks.py).
ANSWER_COLUMNS = ("answer", "controlled_at", "handled_by", "note")
LIST_COLUMNS = ("status", "category_label", "name", "sex", "age", "phone", "masked_id_number", "grid", "compound",
                "building", "unit", "room", "address_text", "special_group", "action", "action_due", "basis",
                "case_codes", "transfer_to", "risk_area", "trip", "row_key", *ANSWER_COLUMNS)
# A change in any of these makes a row 变更; the trip number (车次) is new every run, so not it.
CONTENT_COLUMNS = LIST_COLUMNS[1:LIST_COLUMNS.index("trip")]

def masked_id_sql(column: str) -> str:
    """SQL for an ID number as every delivered sheet shows it: the first 6 and last 4 characters
    (a short number: the last 2), the rest ``*``; empty when none."""
    return (f"CASE WHEN {column} IS NULL THEN '' "
            f"WHEN length({column}) > 10 "
            f"THEN left({column}, 6) || repeat('*', length({column}) - 10) || right({column}, 4) "
            f"ELSE repeat('*', length({column}) - 2) || right({column}, 2) END")


LIST_ROWS_SQL = """
CREATE OR REPLACE TEMP TABLE current_list_rows AS
WITH categories AS (
    SELECT * FROM four_categories
),
people AS (
    SELECT * FROM persons WHERE merged_into_person_id IS NULL
),
communities AS (
    SELECT community_code, arg_max(street, (delivery_date, load_id)) AS street
    FROM staged_communities WHERE is_current AND NOT is_deleted
    GROUP BY community_code
),
special_groups AS (
    SELECT pr.person_id, arg_max(s.special_group, (s.delivery_date, s.load_id, s.source_row_number)) AS special_group
    FROM staged_residents AS s
    JOIN person_records AS pr ON pr.feed = 'residents' AND pr.load_id = s.load_id
                             AND pr.source_row_number = s.source_row_number
    WHERE s.is_current AND NOT s.is_deleted AND pr.person_id IN (SELECT person_id FROM categories)
    GROUP BY pr.person_id
),
evidence_rows AS (
    SELECT c.person_id, e.ev.feed AS feed, e.ev.load_id AS load_id, e.ev.source_row_number AS source_row_number
    FROM categories AS c, unnest(c.evidence) AS e(ev)
    WHERE c.category IN ('close_contact', 'secondary_contact')
),
plan AS (
    SELECT person_id, facility_name, bed_kind, trip_id FROM dispatch_plan
),
waiting_for_bed AS (
    SELECT person_id FROM dispatch_shortfall
),
active_areas AS (
    SELECT * FROM risk_areas WHERE is_active AND scope IN ('building', 'compound', 'community', 'street')
),
person_areas AS (
    -- The most specific active area around the person's home: building, compound, community, street.
    SELECT p.person_id,
           arg_min(replace(replace($risk_area, '{level}', a.level_label), '{area}',
                           coalesce(CASE a.scope WHEN 'building' THEN a.compound || a.building
                                                 WHEN 'compound' THEN a.compound
                                                 WHEN 'community' THEN a.community_name
                                                 ELSE a.street END, '')),
                   (list_position(['building', 'compound', 'community', 'street'], a.scope), a.area_id)) AS risk_area
    FROM categories AS c
    JOIN people AS p USING (person_id)
    LEFT JOIN communities AS m USING (community_code)
    JOIN active_areas AS a
      ON (a.scope = 'building' AND a.community_code = p.community_code AND a.compound = p.compound
          AND a.building = p.building)
      OR (a.scope = 'compound' AND a.community_code = p.community_code AND a.compound = p.compound)
      OR (a.scope = 'community' AND a.community_code = p.community_code)
      OR (a.scope = 'street' AND a.district = p.district AND a.street = m.street)
    GROUP BY p.person_id
),
details AS (
    -- Where it happened, from the evidence: the trip and car, the hotel, the ward, the venue.
    SELECT r.person_id,
           min(t.trip_number) AS trip, min(t.car) AS car, min(h.hotel_name) AS hotel, min(w.ward) AS ward,
           min(v.venue_name) AS venue
    FROM evidence_rows AS r
    LEFT JOIN staged_transport AS t ON r.feed = 'transport' AND t.load_id = r.load_id
                                   AND t.source_row_number = r.source_row_number
    LEFT JOIN staged_lodging AS h ON r.feed = 'lodging' AND h.load_id = r.load_id
                                 AND h.source_row_number = r.source_row_number
    LEFT JOIN staged_inpatients AS w ON r.feed = 'inpatients' AND w.load_id = r.load_id
                                    AND w.source_row_number = r.source_row_number
    LEFT JOIN staged_place_scans AS v ON r.feed = 'place_scans' AND v.load_id = r.load_id
                                     AND v.source_row_number = r.source_row_number
    GROUP BY r.person_id
),
keyed AS (
    SELECT *,
           CASE WHEN category = 'confirmed' AND is_asymptomatic THEN 'asymptomatic' ELSE category END AS label_key,
           CASE WHEN category IN ('close_contact', 'secondary_contact') THEN setting ELSE reason END AS basis_key,
           CASE WHEN category = 'secondary_contact' THEN 'contact'
                WHEN all_sources_asymptomatic THEN 'asymptomatic' ELSE 'confirmed' END AS kind_key
    FROM categories
),
rows AS (
    SELECT c.person_id, c.category, p.community_code, p.community_name, m.street,
           coalesce(p.district, $unknown_district) AS district,
           map($category_labels_keys, $category_labels_values)[c.label_key] AS category_label,
           coalesce(p.name, '') AS name, coalesce(p.sex, '') AS sex,
           coalesce(CAST(date_sub('year', p.birth_date, CAST($as_of AS DATE)) AS VARCHAR), '') AS age,
           coalesce(p.phone, '') AS phone,
           {masked_id} AS masked_id_number,
           coalesce(p.grid, '') AS grid, coalesce(p.compound, '') AS compound,
           coalesce(p.building, '') AS building, coalesce(p.unit, '') AS unit, coalesce(p.room, '') AS room,
           CASE WHEN p.is_in_register THEN '' ELSE coalesce(p.address_text, '') END AS address_text,
           coalesce(g.special_group, '') AS special_group,
           map($actions_keys, $actions_values)[c.action_key]
             || CASE WHEN c.observation_ends_on IS NOT NULL AND c.category IN ('fever', 'close_contact',
                                                                              'secondary_contact')
                     THEN replace($observation_until, '{date}', strftime(c.observation_ends_on, '%Y-%m-%d'))
                     ELSE '' END AS action,
           strftime(c.action_due_at, '%Y-%m-%d %H:%M') AS action_due,
           replace(replace(replace(replace(replace(replace(
               map($basis_keys, $basis_values)[c.basis_key],
               '{kind}', map($source_kinds_keys, $source_kinds_values)[c.kind_key]),
               '{trip}', coalesce(d.trip, '')), '{car}', coalesce(d.car, '')), '{hotel}', coalesce(d.hotel, '')),
               '{ward}', coalesce(d.ward, '')), '{venue}', coalesce(d.venue, '')) AS basis,
           coalesce(array_to_string(c.source_case_codes, '、'), '') AS case_codes,
           CASE WHEN t.person_id IS NOT NULL
                THEN replace(replace($transfer_to, '{facility}', t.facility_name), '{bed_kind}',
                             map($bed_kinds_keys, $bed_kinds_values)[t.bed_kind])
                WHEN w.person_id IS NOT NULL THEN $transfer_waiting ELSE '' END AS transfer_to,
           coalesce(ra.risk_area, '') AS risk_area,
           coalesce(t.trip_id, '') AS trip,
           -- Sort keys: numbers in building, unit and room sort as numbers (2栋 before 10栋).
           TRY_CAST(regexp_extract(p.building, '[0-9]+') AS INTEGER) AS building_number,
           TRY_CAST(regexp_extract(p.unit, '[0-9]+') AS INTEGER) AS unit_number,
           TRY_CAST(regexp_extract(p.room, '[0-9]+') AS INTEGER) AS room_number
    FROM keyed AS c
    JOIN people AS p USING (person_id)
    LEFT JOIN communities AS m USING (community_code)
    LEFT JOIN special_groups AS g USING (person_id)
    LEFT JOIN details AS d USING (person_id)
    LEFT JOIN plan AS t USING (person_id)
    LEFT JOIN waiting_for_bed AS w USING (person_id)
    LEFT JOIN person_areas AS ra USING (person_id)
)
SELECT * FROM rows
""".replace("{masked_id}", masked_id_sql("p.id_number"))

OUT_ROWS_DDL = """
CREATE TABLE IF NOT EXISTS out_list_rows (
    as_of TIMESTAMP NOT NULL,           -- the run that delivered the list
    list_file VARCHAR NOT NULL,         -- relative to the as-of folder
    district VARCHAR NOT NULL,
    community_code VARCHAR,             -- NULL on a district's unplaced list
    person_id BIGINT NOT NULL,
    category VARCHAR,                   -- NULL on a 解除 row
    status VARCHAR NOT NULL,            -- new, changed, unchanged, released
    row_values VARCHAR[] NOT NULL,      -- the cells as written, in header order
    sort_key VARCHAR NOT NULL,
    row_key VARCHAR,                    -- 回执编号; NULL on rows delivered before lists had one
    first_listed_at TIMESTAMP           -- since when the row has been on this list without a break
)"""

# Rows of this run against the last list delivered before it (a rerun at the same as-of compares
# with the same earlier list, so it writes the same bytes).
DIFF_SQL = """
CREATE OR REPLACE TEMP TABLE delivered_rows AS
WITH previous_as_of AS (
    SELECT max(as_of) AS as_of FROM out_list_rows WHERE as_of < $as_of
),
previous AS (
    SELECT o.* FROM out_list_rows AS o, previous_as_of AS p
    WHERE o.as_of = p.as_of AND o.status <> 'released'
),
current_rows AS (
    SELECT r.*,
           f.list_file AS list_key,
           [category_label, name, sex, age, phone, masked_id_number, grid, compound, building, unit, room,
            address_text, special_group, action, action_due, basis, case_codes, transfer_to, risk_area] AS content,
           concat_ws('|', coalesce(grid, ''), lpad(coalesce(CAST(building_number AS VARCHAR), ''), 9, '0'), building,
                     lpad(coalesce(CAST(unit_number AS VARCHAR), ''), 9, '0'), unit,
                     lpad(coalesce(CAST(room_number AS VARCHAR), ''), 9, '0'), room, name,
                     lpad(CAST(person_id AS VARCHAR), 12, '0')) AS sort_key
    FROM current_list_rows AS r
    -- The file each community's rows go to (list_paths.py: every path part one safe name).
    JOIN list_files AS f
      ON f.district = r.district AND f.street IS NOT DISTINCT FROM r.street
     AND f.community_code IS NOT DISTINCT FROM r.community_code
     AND f.community_name IS NOT DISTINCT FROM r.community_name
),
answered AS (
    -- Persons an office has answered about (followup/answers.py).
    SELECT person_id FROM core_followup
),
now AS (
    SELECT c.list_key AS list_file, c.district, c.community_code, c.person_id, c.category,
           CASE WHEN p.person_id IS NULL THEN 'new'
                WHEN p.row_values[2:20] <> c.content THEN 'changed'
                -- 催办: on the list for the profile's hours and still no answer from its office.
                WHEN c.community_code IS NOT NULL AND a.person_id IS NULL
                     AND coalesce(p.first_listed_at, p.as_of) + to_minutes(CAST(60 * $answer_within_hours AS BIGINT))
                         <= $as_of THEN 'reminder'
                ELSE 'unchanged' END AS status,
           list_append(c.content, c.trip) AS content, c.sort_key,
           -- Rows from before the column existed: the earliest run known, the previous one.
           CASE WHEN p.person_id IS NULL THEN CAST($as_of AS TIMESTAMP)
                ELSE coalesce(p.first_listed_at, p.as_of) END AS first_listed_at
    FROM current_rows AS c
    LEFT JOIN previous AS p ON p.person_id = c.person_id AND p.list_file = c.list_key
    LEFT JOIN answered AS a ON a.person_id = c.person_id
),
released AS (
    -- On the previous list, not on this one: the office lifts the measures (or the person moved).
    SELECT p.list_file, p.district, p.community_code, p.person_id, NULL AS category, 'released' AS status,
           -- Cells 2-14 (category to special group) as they were; the action 解除管控, no deadline,
           -- basis and cases as they were, no transfer, area or trip.
           list_concat(p.row_values[2:14], [map($actions_keys, $actions_values)['released'], '',
                                            p.row_values[17], p.row_values[18], '', '', '']) AS content,
           p.sort_key, coalesce(p.first_listed_at, p.as_of) AS first_listed_at
    FROM previous AS p
    LEFT JOIN now AS n ON n.person_id = p.person_id AND n.list_file = p.list_file
    WHERE n.person_id IS NULL
)
SELECT list_file, district, community_code, person_id, category, status,
       list_concat([map($status_labels_keys, $status_labels_values)[status]], content, [row_key],
                   ['', '', '', '']) AS row_values,
       sort_key, row_key, first_listed_at
FROM (
    -- 回执编号: the same for a person on the same community's list every run, opaque (a hash of
    -- the file and the internal person id: no name, ID number or phone in it).
    SELECT *, 'R' || upper(left(sha256('trace24-list-row|' || list_file || '|' || person_id), 16)) AS row_key
    FROM (SELECT * FROM now UNION ALL SELECT * FROM released)
)
ORDER BY list_file, sort_key
"""


def list_parameters(layout: ListLayout, profile: RuleProfile, as_of: dt.datetime) -> dict:
    # Lookups travel as key and value lists, used as map(keys, values)[key]: a bound struct
    # cannot be indexed by a column.
    lookups = {"category_labels": layout.categories, "actions": profile.categories.actions, "basis": layout.basis,
               "source_kinds": layout.source_kinds, "status_labels": layout.statuses, "bed_kinds": layout.bed_kinds}
    params = {"as_of": as_of, "unknown_district": layout.unknown_district,
              "observation_until": layout.observation_until, "unplaced_file": layout.unplaced_file,
              "unknown_street": layout.unknown_street,
              "answer_within_hours": profile.categories.answer_within_hours,
              "transfer_to": layout.transfer_to, "transfer_waiting": layout.transfer_waiting,
              "risk_area": layout.risk_area}
    for name, mapping in lookups.items():
        params[f"{name}_keys"], params[f"{name}_values"] = list(mapping), list(mapping.values())
    return params


def ensure_out_list_rows(con: duckdb.DuckDBPyConnection) -> None:
    """``out_list_rows``, empty in a new store; a store from before 回执编号 gains the column."""
    con.execute(OUT_ROWS_DDL)
    con.execute("ALTER TABLE out_list_rows ADD COLUMN IF NOT EXISTS row_key VARCHAR")
    con.execute("ALTER TABLE out_list_rows ADD COLUMN IF NOT EXISTS first_listed_at TIMESTAMP")


# The communities the lists serve, as the civil-affairs register names them now: the directory the
# portal scopes its accounts by (an office with nobody on today's list still has a page).
COMMUNITIES_SQL = """
CREATE OR REPLACE TABLE out_communities AS
WITH registered AS (
    SELECT * FROM staged_communities WHERE is_current AND NOT is_deleted
),
latest AS (
    SELECT community_code,
           arg_max(community_name, (delivery_date, load_id)) AS community_name,
           arg_max(street, (delivery_date, load_id)) AS street,
           arg_max(district, (delivery_date, load_id)) AS district
    FROM registered GROUP BY community_code
)
SELECT CAST($as_of AS TIMESTAMP) AS as_of, community_code, community_name, street, district
FROM latest
ORDER BY community_code
"""


def build_list_rows(con: duckdb.DuckDBPyConnection, params: dict) -> int:
    """Compute this run's rows and their status, and record them in ``out_list_rows``; the
    community directory in ``out_communities``."""
    ensure_out_list_rows(con)
    con.execute(COMMUNITIES_SQL, {"as_of": params["as_of"]})
    con.execute(LIST_ROWS_SQL, bound_parameters(LIST_ROWS_SQL, params))
    list_paths.build_list_files(con, params["unplaced_file"], params["unknown_street"])
    con.execute(DIFF_SQL, bound_parameters(DIFF_SQL, params))
    con.execute("DELETE FROM out_list_rows WHERE as_of = $as_of", {"as_of": params["as_of"]})
    con.execute("INSERT INTO out_list_rows BY NAME SELECT $as_of AS as_of, * FROM delivered_rows",
                {"as_of": params["as_of"]})
    return con.execute("SELECT count(*) FROM delivered_rows").fetchall()[0][0]


def folder_path(root: Path, list_file: str) -> Path:
    """The file at a path made by ``list_paths``: a part that is not one safe name (a path that did
    not come from there) raises, so data can never point outside ``root``."""
    *folders, name = list_file.split("/")
    if any(list_paths.path_part(f) != f for f in folders) or not list_paths.is_plain_file_name(
            name, (".csv", ".xlsx")):
        raise ValueError(f"list path {list_file!r} is not made of safe names")
    path = root.joinpath(*folders, name)
    if not path.resolve().is_relative_to(root.resolve()):
        raise ValueError(f"list path {list_file!r} leaves the output folder")
    return path


def write_lists(con: duckdb.DuckDBPyConnection, layout: ListLayout, staging: Path, as_of: dt.datetime,
                profile: str, sheet: xlsx_out.SheetSpec) -> dict:
    """Write every list of this run under ``staging``, as CSV and as an XLSX workbook (``sheet``,
    from ``list_workbooks.sheet_spec``); return the manifest (``write_manifest`` writes it once the
    run's sheets have joined it)."""
    # Each file's lines (CSV and sheet XML) and its column widths are made in the database, in one
    # pass: a city's rows fetched one by one into Python cost more than the writing.
    widths = ", ".join(f"max({xlsx_out.width_sql('row_values', i + 1)})" for i in range(len(LIST_COLUMNS)))
    files = con.execute(f"""
        SELECT list_file, count(*) AS row_count,
               string_agg({csv_line_sql('row_values')} || chr(13) || chr(10), '' ORDER BY sort_key) AS body,
               string_agg({xlsx_out.row_xml_sql('row_values', sheet)}, '' ORDER BY sort_key) AS sheet_body,
               [{widths}] AS widths
        FROM delivered_rows GROUP BY list_file ORDER BY list_file""",
                        {"formula_start": FORMULA_START}).fetchall()
    counts: dict[tuple[str, str], dict[str, int]] = {}
    for list_file, kind, key, count in con.execute("""
            SELECT list_file, 'by_category', category, count(*) FROM delivered_rows
            WHERE category IS NOT NULL GROUP BY ALL
            UNION ALL
            SELECT list_file, 'by_status', status, count(*) FROM delivered_rows GROUP BY ALL""").fetchall():
        counts.setdefault((list_file, kind), {})[key] = count
    entries = []
    created = as_of.strftime("%Y-%m-%dT%H:%M:%SZ")   # the run's as-of, so a rerun writes the same bytes
    for list_file, row_count, body, sheet_body, column_widths in files:
        path = folder_path(staging, list_file)
        sha256 = write_csv_text(path, layout.headers, body)
        workbook = folder_path(staging, list_paths.workbook_file(list_file))
        workbook_sha256 = xlsx_out.write_workbook(workbook, sheet, sheet_body, row_count, column_widths,
                                                  path.stem, created)
        entries.append({"file": path.relative_to(staging).as_posix(), "rows": row_count,
                        "workbook": workbook.relative_to(staging).as_posix(), "workbook_sha256": workbook_sha256,
                        "by_category": dict(sorted(counts.get((list_file, "by_category"), {}).items())),
                        "by_status": dict(sorted(counts.get((list_file, "by_status"), {}).items())),
                        "sha256": sha256})
    manifest = {"as_of": as_of.isoformat(sep=" "), "profile": profile, "files": entries,
                "rows": sum(e["rows"] for e in entries)}
    return manifest


def write_manifest(staging: Path, manifest: dict) -> None:
    """``manifest.json`` of the run's staging folder: the lists' entries and every sheet's."""
    (staging / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n",
                                           encoding="utf-8")


def staging_folder(out_dir: Path, as_of: dt.datetime) -> Path:
    """An empty folder next to the final one, on the same file system (so the swap is a rename)."""
    # A run killed while writing leaves its staging folder; one store has one writer (DuckDB's
    # lock), so any folder left for this day is a dead run's.
    for stale in out_dir.glob(f".partial-{as_of:%Y-%m-%d}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = out_dir / f".partial-{as_of:%Y-%m-%d}-{os.getpid()}"
    staging.mkdir(parents=True)
    return staging


def publish(staging: Path, out_dir: Path, as_of: dt.datetime) -> Path:
    """Replace ``out/<as-of date>`` by the staging folder: readers see the old lists or the new, whole."""
    final = out_dir / f"{as_of:%Y-%m-%d}"
    old = out_dir / f".old-{as_of:%Y-%m-%d}-{os.getpid()}"
    if final.exists():
        os.replace(final, old)
    os.replace(staging, final)
    shutil.rmtree(old, ignore_errors=True)
    return final
