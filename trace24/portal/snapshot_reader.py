"""The portal's reads of the published snapshot (``<store>_read.duckdb``) and of the lists' files.

What belongs here: every query a page makes, values bound as parameters, and finding a list's file
under the run's folder. What does not: who may ask (``scopes.py``) or how it is shown (templates).

A run swaps a new snapshot in by renaming it over the old path; the reader notices the new file
(inode and modification time) and opens it read-only, while requests already running finish on
the old one. Every page therefore shows the run (as-of time) it was read from.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import duckdb

from trace24.portal.scopes import Community
from trace24.transforms.lists.community_lists import folder_path

NAME, GRID, ROW_KEY = 2, 7, 21   # positions among the list's cells (out_list_rows.row_values), from 0
STATUS_ORDER = ("new", "changed", "reminder", "unchanged", "released")


@dataclass(frozen=True)
class RunInfo:
    as_of: dt.datetime
    profile: str
    published_at: dt.datetime


@dataclass(frozen=True)
class ListRow:
    status: str
    category: str | None
    cells: tuple[str, ...]


class Snapshot:
    """A read-only connection to the current snapshot file, reopened when a run swaps a new one in."""

    MADE_LIMIT = 4096   # things made per snapshot; past it the store starts again (filters make many keys)

    def __init__(self, path: Path, warm=None):
        """``warm(cursor, run)``, when given, returns things to keep ({key: value}) made ahead for
        each new file, in a thread of its own, so that the first requests after a run find them."""
        self.path, self._warm = Path(path), warm
        self._lock = threading.Lock()
        self._opened: tuple[int, int] | None = None
        # The connection with what was read from it once (connection, run, directory, districts),
        # and what pages made of it (a list's rendered table): a snapshot never changes, so a thing
        # is made once per file and the next file starts with none.
        self._current: tuple | None = None
        self._made: dict = {}

    def _identity(self) -> tuple[int, int] | None:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return None
        return stat.st_ino, stat.st_mtime_ns

    def state(self) -> tuple[duckdb.DuckDBPyConnection, RunInfo, dict[str, Community], set[str]]:
        """A cursor on the newest snapshot (one per request: cursors are not shared across threads),
        with its run, its community directory and its districts, all of the same file."""
        identity = self._identity()
        with self._lock:
            if identity is None and self._current is None:
                raise FileNotFoundError(f"no snapshot at {self.path}: run trace24 first")
            if identity is not None and identity != self._opened:
                # The old connection closes when the last request holding it is done.
                self._current, self._opened = _read_directory(_open(self.path)), identity
                self._made = {}
                if self._warm is not None:
                    threading.Thread(target=self._warm_up, args=(self._current,), daemon=True).start()
            con, info, directory, districts = self._current
            return _cursor(con), info, directory, districts

    def _warm_up(self, current: tuple) -> None:
        made = self._warm(_cursor(current[0]), current[1])
        with self._lock:
            if self._current is current:
                for key, value in made.items():
                    self._made.setdefault(key, value)

    def made(self, info: RunInfo, key: tuple, make):
        """``make()``, kept for the snapshot of ``info`` while it is the current one (a request still
        on a swapped-out snapshot makes its thing without keeping it)."""
        with self._lock:
            current = self._current is not None and self._current[1] is info
            made = self._made
        if not current:
            return make()
        if key not in made:
            value = make()
            with self._lock:
                if self._made is made:
                    if len(made) >= self.MADE_LIMIT:
                        made.clear()
                    made[key] = value
            return value
        return made[key]


def _open(path: Path) -> duckdb.DuckDBPyConnection:
    """The file attached read-only to a database of its own. ``duckdb.connect(path)`` would hand back
    the database already open for that path, in this process: the old snapshot, renamed over."""
    con = duckdb.connect(":memory:")
    con.execute("ATTACH ? AS snapshot (READ_ONLY)", [str(path)])
    return con


def _cursor(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    cursor = con.cursor()
    cursor.execute("USE snapshot")
    return cursor


def _read_directory(con: duckdb.DuckDBPyConnection) -> tuple:
    cur = _cursor(con)
    as_of, profile, published_at = cur.execute("SELECT as_of, profile, published_at FROM snapshot_info").fetchone()
    directory = {row[0]: Community(*row) for row in cur.execute(
        "SELECT community_code, community_name, street, district FROM out_communities ORDER BY community_code"
    ).fetchall()}
    districts = {d for (d,) in cur.execute(
        "SELECT DISTINCT district FROM out_list_rows WHERE as_of = $as_of AND district IS NOT NULL",
        {"as_of": as_of}).fetchall()} | {c.district for c in directory.values()}
    return con, RunInfo(as_of, profile, published_at), directory, districts


# One list of a run: a community's, or (community NULL) a district's unplaced persons.
ONE_LIST = """
FROM out_list_rows
WHERE as_of = $as_of
  AND (community_code = $community OR ($community IS NULL AND community_code IS NULL AND district = $district))
"""


def list_rows(cur, as_of: dt.datetime, community_code: str | None, district: str | None = None) -> list[ListRow]:
    """A community's list of the run (or, with ``community_code`` None, a district's unplaced list)."""
    rows = cur.execute(f"SELECT status, category, row_values {ONE_LIST} ORDER BY sort_key",
                       {"as_of": as_of, "community": community_code, "district": district}).fetchall()
    return [ListRow(status, category, tuple(cells)) for status, category, cells in rows]


def html_escaped(expression: str) -> str:
    """SQL for the text of ``expression`` escaped as Jinja escapes it (&, <, >, ", ')."""
    return (f"replace(replace(replace(replace(replace(coalesce({expression}, ''), '&', '&amp;'), '<', '&lt;'), "
            f"'>', '&gt;'), '\"', '&#34;'), chr(39), '&#39;')")


SHOWN_CELLS = 22   # 状态 … 回执编号: the answer cells are the office's to fill in, not to read here
# One list's table rows as HTML, made in the database (a page of 400 rows took 15 ms in Jinja):
# every cell escaped, the name linked to the person's page by the row's 回执编号.
_CELL = (f"CASE WHEN i = {NAME + 1} AND coalesce(row_values[{ROW_KEY + 1}], '') <> '' "
         f"THEN '<td><a href=\"/c/' || {html_escaped('community_code')} || '/p/' || "
         f"{html_escaped(f'row_values[{ROW_KEY + 1}]')} || '\">' || {html_escaped('cell')} || '</a></td>' "
         f"ELSE '<td>' || {html_escaped('cell')} || '</td>' END")
LIST_TABLE_SQL = f"""
WITH listed AS (
    SELECT community_code, sort_key, status, category, row_values[{GRID + 1}] AS grid,
           '<tr class="status-' || {html_escaped('status')} || '">'
           || array_to_string(list_transform(row_values[1:{SHOWN_CELLS}], lambda cell, i: {_CELL}), '')
           || '</tr>' AS row_html
    FROM out_list_rows
    WHERE as_of = $as_of AND (community_code = $community OR ($community IS NULL AND community_code IS NOT NULL))
)
SELECT community_code, coalesce(string_agg(row_html, chr(10) ORDER BY sort_key)
                    FILTER (WHERE ($grid = '' OR grid = $grid) AND ($category = '' OR category = $category)), ''),
       count(*), list_sort(list_distinct(list(grid) FILTER (WHERE coalesce(grid, '') <> ''))), histogram(status)
FROM listed
GROUP BY community_code
"""


@dataclass(frozen=True)
class ListTable:
    body: str                   # the rows shown, as HTML (escaped)
    total: int                  # rows on the list, whatever the filters
    grids: list[str]
    by_status: dict[str, int]


def _tables(cur, as_of: dt.datetime, community_code: str | None, grid: str, category: str) -> dict[str, ListTable]:
    found = cur.execute(LIST_TABLE_SQL, {"as_of": as_of, "community": community_code, "grid": grid,
                                         "category": category}).fetchall()
    return {code: ListTable(body, total, grids or [], {s: (statuses or {}).get(s, 0) for s in STATUS_ORDER})
            for code, body, total, grids, statuses in found}


def list_table(cur, as_of: dt.datetime, community_code: str, grid: str, category: str) -> ListTable:
    """A community's list of the run as the office page shows it, filtered by grid and category."""
    return _tables(cur, as_of, community_code, grid, category).get(
        community_code, ListTable("", 0, [], dict.fromkeys(STATUS_ORDER, 0)))


def every_list_table(cur, as_of: dt.datetime) -> dict[str, ListTable]:
    """Every community's unfiltered table, in one pass (~0.7 s at a million residents)."""
    return _tables(cur, as_of, None, "", "")


def list_row(cur, as_of: dt.datetime, community_code: str, row_key: str) -> ListRow | None:
    """One row of a community's list of the run, by its 回执编号; None when the list has no such row."""
    found = cur.execute("""SELECT status, category, row_values FROM out_list_rows
                           WHERE as_of = $as_of AND community_code = $community AND row_key = $row_key""",
                        {"as_of": as_of, "community": community_code, "row_key": row_key}).fetchone()
    return ListRow(found[0], found[1], tuple(found[2])) if found else None


def row_history(cur, community_code: str, row_key: str) -> tuple[list[tuple], list[tuple]]:
    """What the community's office answered about the row (each delivery, newest first), and the
    days it was checked with the status reported (no temperature or symptom: the office's page
    carries no medical detail beyond the category)."""
    answers = cur.execute("""
        SELECT delivery_date, answer, controlled_at, is_current FROM core_followup_history
        WHERE row_key = $row_key AND community_code = $community
        ORDER BY delivery_date DESC, load_id DESC, source_row_number DESC""",
                          {"row_key": row_key, "community": community_code}).fetchall()
    checks = cur.execute("""
        SELECT check_date, observation_status, reporter_kind FROM core_health_checks
        WHERE row_key = $row_key AND community_code = $community ORDER BY check_date DESC""",
                         {"row_key": row_key, "community": community_code}).fetchall()
    return answers, checks


def list_file(cur, as_of: dt.datetime, community_code: str | None, district: str | None = None) -> str | None:
    """The list's file, relative to the run's folder (None when nobody is on it)."""
    return cur.execute(f"SELECT any_value(list_file) {ONE_LIST}",
                       {"as_of": as_of, "community": community_code, "district": district}).fetchone()[0]


def delivered_file(lists_dir: Path, as_of: dt.datetime, list_file_path: str, workbook: bool) -> Path | None:
    """The delivered CSV (or its workbook) of a list, checked to lie inside the run's folder."""
    name = list_file_path.removesuffix(".csv") + ".xlsx" if workbook else list_file_path
    path = folder_path(lists_dir / f"{as_of:%Y-%m-%d}", name)
    return path if path.is_file() else None


def category_counts(cur, as_of: dt.datetime, codes: list[str]) -> dict[str, dict[str, int]]:
    """Persons on each community's list by category (released rows left out)."""
    counts: dict[str, dict[str, int]] = {}
    for code, category, n in cur.execute("""
            SELECT community_code, category, count(*) FROM out_list_rows
            WHERE as_of = $as_of AND community_code IN (SELECT unnest($codes)) AND category IS NOT NULL
            GROUP BY ALL""", {"as_of": as_of, "codes": codes}).fetchall():
        counts.setdefault(code, {})[category] = n
    return counts


def compliance(cur, district: str | None) -> list[tuple]:
    """The 24-hour clock per day of clock start: cases, listed in time, controlled in time (a district, or the city)."""
    return cur.execute("""
        SELECT clock_date, sum(cases), sum(met), sum(missed), sum(pending),
               sum(controlled_met), sum(controlled_missed), sum(controlled_pending)
        FROM tracing_compliance WHERE $district IS NULL OR district = $district
        GROUP BY clock_date ORDER BY clock_date""", {"district": district}).fetchall()


def district_totals(cur, as_of: dt.datetime) -> list[tuple]:
    """Per district: persons listed by category, unplaced persons, and the clock's totals."""
    return cur.execute("""
        WITH listed AS (
            SELECT district, count(*) FILTER (WHERE category = 'confirmed') AS confirmed,
                   count(*) FILTER (WHERE category = 'suspected') AS suspected,
                   count(*) FILTER (WHERE category = 'fever') AS fever,
                   count(*) FILTER (WHERE category IN ('close_contact', 'secondary_contact')) AS contacts,
                   count(*) FILTER (WHERE community_code IS NULL AND category IS NOT NULL) AS unplaced
            FROM out_list_rows WHERE as_of = $as_of GROUP BY district
        ),
        clock AS (
            SELECT district, sum(met) AS met, sum(missed) AS missed, sum(controlled_met) AS controlled_met
            FROM tracing_compliance GROUP BY district
        )
        SELECT district, coalesce(confirmed, 0), coalesce(suspected, 0), coalesce(fever, 0), coalesce(contacts, 0),
               coalesce(unplaced, 0), coalesce(met, 0), coalesce(missed, 0), coalesce(controlled_met, 0)
        FROM listed FULL JOIN clock USING (district)
        ORDER BY district""", {"as_of": as_of}).fetchall()


def beds(cur, district: str) -> list[tuple]:
    """Beds of the district's facilities by type and kind: capacity, occupied, planned, free."""
    return cur.execute("""
        SELECT facility_type, bed_kind, sum(capacity), sum(occupied), sum(planned), sum(free),
               count(*) FILTER (WHERE is_census_stale)
        FROM bed_occupancy WHERE district = $district GROUP BY ALL ORDER BY ALL""", {"district": district}).fetchall()


def waiting(cur, district: str) -> list[tuple]:
    """Persons of the district waiting for a bed, by category: how many and the longest wait."""
    return cur.execute("""
        SELECT category, count(*), round(max(waited_hours), 1) FROM dispatch_shortfall
        WHERE district = $district GROUP BY ALL ORDER BY ALL""", {"district": district}).fetchall()


def transfers(cur, district: str) -> list[tuple]:
    """The run's transfer trips from the district, by category: trips, persons, trips with a
    vehicle, the first planned pickup."""
    return cur.execute("""
        SELECT category, count(*), sum(persons), count(vehicle_id), min(planned_pickup_at) FROM dispatch_trips
        WHERE pickup_district = $district GROUP BY ALL ORDER BY ALL""", {"district": district}).fetchall()


def district_cases_per_day(cur, district: str) -> list[tuple]:
    """The district's epidemic curve: its cases by day of the clock's start, asymptomatic apart."""
    return cur.execute("""
        SELECT CAST(clock_started_at AS DATE) AS day,
               count(*) FILTER (WHERE NOT coalesce(is_asymptomatic, false)),
               count(*) FILTER (WHERE coalesce(is_asymptomatic, false))
        FROM tracing_clock WHERE district = $district GROUP BY day ORDER BY day""", {"district": district}).fetchall()


def active_areas(cur, district: str) -> list[tuple]:
    return cur.execute("""
        SELECT level_label, area_name, since_at, planned_lift_at, case_count FROM risk_areas
        WHERE is_active AND district = $district ORDER BY level, area_name""", {"district": district}).fetchall()


def cases_per_day(cur) -> list[tuple]:
    """The epidemic curve: cases by day of onset (or, without one, of the clock's start), asymptomatic apart."""
    return cur.execute("""
        SELECT coalesce(onset_date, CAST(clock_started_at AS DATE)) AS day,
               count(*) FILTER (WHERE NOT coalesce(is_asymptomatic, false)),
               count(*) FILTER (WHERE coalesce(is_asymptomatic, false))
        FROM core_cases GROUP BY day ORDER BY day""").fetchall()


def case_clocks(cur) -> list[tuple]:
    """Each case's clock, pseudonymous: code, district, start, contacts, listed and controlled in time."""
    return cur.execute("""
        SELECT case_code, district, clock_started_at, contacts, contacts_in_time, clock_status,
               contacts_controlled_in_time, control_status
        FROM tracing_clock ORDER BY clock_started_at, case_code""").fetchall()
