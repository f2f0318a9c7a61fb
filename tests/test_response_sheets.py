"""The transfer sheets and the transfer clock, on small named scenarios in an in-memory store.

Each scenario creates only the tables (and columns) the SQL under test reads: the dispatch plan as
``response/`` leaves it, this run's list rows as ``community_lists.py`` records them, and for the
clock the categories, stays and bed census.
"""

from __future__ import annotations

import csv
import datetime as dt
import io

import duckdb
import pytest

from trace24.schemas.rules import load_rule_profile
from trace24.transforms.lists import response_sheets, transfer_clock
from trace24.transforms.lists.community_lists import LIST_COLUMNS, load_layout
from trace24.transforms.response import beds

AS_OF = dt.datetime(2022, 4, 10, 12, 0)
RULES = load_rule_profile("nhc-v8").dispatch        # transfer within: confirmed 8 h, close contact 8 h
LAYOUT = load_layout()
SHEETS = response_sheets.load_sheets_layout()
UNKNOWN = LAYOUT.unknown_district


def _store() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("""CREATE TABLE dispatch_plan (
        person_id BIGINT, action_key VARCHAR, pickup_district VARCHAR, pickup_facility_code VARCHAR,
        facility_code VARCHAR, facility_name VARCHAR, bed_kind VARCHAR, trip_id VARCHAR, pickup_order INTEGER,
        vehicle_id VARCHAR, planned_pickup_at TIMESTAMP, planned_arrival_at TIMESTAMP)""")
    con.execute("CREATE TABLE dispatch_shortfall (person_id BIGINT)")
    con.execute("CREATE TABLE persons (person_id BIGINT, district VARCHAR, community_name VARCHAR, id_number VARCHAR)")
    con.execute("""CREATE TABLE out_list_rows (
        as_of TIMESTAMP, person_id BIGINT, category VARCHAR, status VARCHAR, row_values VARCHAR[])""")
    con.execute("""CREATE TABLE staged_facility_beds (
        facility_code VARCHAR, facility_name VARCHAR, facility_type VARCHAR, census_at TIMESTAMP,
        delivery_date DATE, load_id INTEGER, source_row_number BIGINT, is_current BOOLEAN, is_deleted BOOLEAN)""")
    return con


def _person(con, person_id: int, name: str, id_number: str, *, district="江岸区", community="和平社区",
            category="close_contact", room="101", listed_at=AS_OF) -> None:
    """A person and their row on this run's list, masked as the lists mask (first 6, last 4)."""
    masked = id_number[:6] + "*" * (len(id_number) - 10) + id_number[-4:]
    cells = dict.fromkeys(LIST_COLUMNS, "")
    cells.update(status="新增", category_label=LAYOUT.categories[category], name=name, phone="13800000000",
                 masked_id_number=masked, compound="幸福小区", building="2栋", unit="1单元", room=room)
    con.execute("INSERT INTO persons VALUES ($p, $d, $c, $i)",
                {"p": person_id, "d": district, "c": community, "i": id_number})
    con.execute("INSERT INTO out_list_rows VALUES ($a, $p, $c, 'new', $v)",
                {"a": listed_at, "p": person_id, "c": category, "v": [cells[c] for c in LIST_COLUMNS]})


def _plan(con, person_id: int, trip: str, order: int, *, district="江岸区", facility=("GL01", "一号隔离点"),
          vehicle="V1", action="close_contact", pickup_facility=None) -> None:
    pickup = AS_OF + dt.timedelta(hours=1) if vehicle else None
    con.execute("INSERT INTO dispatch_plan VALUES ($p, $a, $d, $pf, $fc, $fn, 'single_room', $t, $o, $v, $pu, $ar)",
                {"p": person_id, "a": action, "d": district, "pf": pickup_facility, "fc": facility[0],
                 "fn": facility[1], "t": trip, "o": order, "v": vehicle, "pu": pickup,
                 "ar": pickup + dt.timedelta(minutes=45) if pickup else None})


def _write(con, folder):
    folder.mkdir(parents=True, exist_ok=True)
    return response_sheets.write_sheets(con, LAYOUT, SHEETS, RULES, folder, AS_OF)


def _rows(path) -> list[list[str]]:
    text = path.read_bytes().decode("utf-8")
    assert text.startswith("\ufeff")
    return list(csv.reader(io.StringIO(text[1:], newline="")))


@pytest.fixture
def two_trips():
    """Three contacts in 江岸区 on two trips (second trip listed first in the plan), one in 武昌区."""
    con = _store()
    _person(con, 1, "张三", "110101199001011234", room="301")
    _person(con, 2, "=1+1", "110101199202025678", room="102")
    _person(con, 3, "王五", "110101198503039012", room="201")
    _person(con, 4, "赵六", "420101199404041111", district="武昌区", community="珞珈社区")
    _plan(con, 3, "0410-0002", 1)
    _plan(con, 2, "0410-0001", 2)
    _plan(con, 1, "0410-0001", 1)
    _plan(con, 4, "0410-0003", 1, district="武昌区", vehicle=None)
    return con


def test_the_trip_sheet_lists_each_district_by_trip_then_pickup_order(two_trips, tmp_path):
    entries = _write(two_trips, tmp_path)
    assert [e["file"] for e in entries["trip_sheets"]] == ["武昌区/转运车次单.csv", "江岸区/转运车次单.csv"]
    header, *rows = _rows(tmp_path / "江岸区" / "转运车次单.csv")
    assert header == list(SHEETS.trip_headers)
    column = {name: i for i, name in enumerate(response_sheets.TRIP_COLUMNS)}
    assert [(r[column["trip"]], r[column["pickup_order"]], r[column["room"]]) for r in rows] == [
        ("0410-0001", "1", "301"), ("0410-0001", "2", "102"), ("0410-0002", "1", "201")]
    first = rows[0]
    assert first[column["vehicle_kind"]] == "转运大巴"
    assert first[column["category"]] == "密切接触者"
    assert first[column["bed_kind"]] == "单间"
    assert first[column["pickup_at"]] == "2022-04-10 13:00"
    assert first[column["community"]] == "和平社区"
    entry = next(e for e in entries["trip_sheets"] if e["file"].startswith("江岸区"))
    assert (entry["rows"], entry["trips"]) == (3, 2)


def test_a_trip_without_a_vehicle_says_so_and_has_no_times(two_trips, tmp_path):
    _write(two_trips, tmp_path)
    _, row = _rows(tmp_path / "武昌区" / "转运车次单.csv")
    column = {name: i for i, name in enumerate(response_sheets.TRIP_COLUMNS)}
    assert row[column["vehicle"]] == SHEETS.no_vehicle
    assert row[column["pickup_at"]] == row[column["arrival_at"]] == ""


def test_id_numbers_are_masked_as_on_the_lists_and_never_whole(two_trips, tmp_path):
    _write(two_trips, tmp_path)
    column = response_sheets.TRIP_COLUMNS.index("masked_id_number")
    _, *rows = _rows(tmp_path / "江岸区" / "转运车次单.csv")
    assert rows[0][column] == "110101********1234"
    written = b"".join(p.read_bytes() for p in tmp_path.rglob("*.csv")).decode("utf-8")
    for (id_number,) in two_trips.execute("SELECT id_number FROM persons").fetchall():
        assert id_number not in written


def test_a_formula_like_name_is_made_safe(two_trips, tmp_path):
    _write(two_trips, tmp_path)
    name = response_sheets.TRIP_COLUMNS.index("name")
    _, *rows = _rows(tmp_path / "江岸区" / "转运车次单.csv")
    assert rows[1][name] == "'=1+1"
    arrivals = _rows(tmp_path / SHEETS.arrival_folder / "GL01_一号隔离点.csv")
    assert "'=1+1" in {row[response_sheets.ARRIVAL_COLUMNS.index("name")] for row in arrivals}


def test_each_facility_gets_its_arrivals_in_arrival_order(two_trips, tmp_path):
    entries = _write(two_trips, tmp_path)
    assert [e["file"] for e in entries["arrival_sheets"]] == [f"{SHEETS.arrival_folder}/GL01_一号隔离点.csv"]
    header, *rows = _rows(tmp_path / SHEETS.arrival_folder / "GL01_一号隔离点.csv")
    assert header == list(SHEETS.arrival_headers)
    column = {name: i for i, name in enumerate(response_sheets.ARRIVAL_COLUMNS)}
    # Planned arrivals by time (all trips here start together), then trip and pickup order; no vehicle last.
    assert [(r[column["trip"]], r[column["name"]]) for r in rows] == [
        ("0410-0001", "张三"), ("0410-0001", "'=1+1"), ("0410-0002", "王五"), ("0410-0003", "赵六")]
    assert rows[0][column["arrival_at"]] == "2022-04-10 13:45"
    assert rows[3][column["pickup_district"]] == "武昌区"


def test_a_hostile_facility_name_stays_inside_its_folder(tmp_path):
    con = _store()
    _person(con, 1, "张三", "110101199001011234")
    _plan(con, 1, "0410-0001", 1, facility=("../../GL9", "../隔离点/../../etc/passwd"))
    staging = tmp_path / "staging"
    entries = _write(con, staging)
    [entry] = entries["arrival_sheets"]
    path = staging / entry["file"]
    assert path.parent == staging / SHEETS.arrival_folder and path.is_file()
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == sorted([
        "staging", "staging/江岸区", "staging/江岸区/转运车次单.csv", f"staging/{SHEETS.arrival_folder}",
        f"staging/{SHEETS.arrival_folder}/{path.name}"])
    assert "/" not in path.name and not path.name.startswith(".")


def test_a_hostile_district_name_makes_one_folder_for_its_trip_sheet(tmp_path):
    con = _store()
    for person_id, district in ((1, "../../江岸区"), (2, "江/岸区"), (3, "江_岸区")):
        _person(con, person_id, "张三", "110101199001011234", district=district)
        _plan(con, person_id, f"0410-000{person_id}", 1, district=district)
    entries = _write(con, tmp_path)
    # Three delivered districts, three sheets one folder deep; the two that read alike once made
    # safe keep apart: the one that needed no change keeps the plain name, the other a short hash.
    files = [e["file"] for e in entries["trip_sheets"]]
    assert len(files) == 3 and all(f.count("/") == 1 and f.startswith(("江岸区/转运车次单", "江_岸区/转运车次单"))
                                   for f in files)
    assert "江岸区/转运车次单.csv" in files and "江_岸区/转运车次单.csv" in files
    assert {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("转运车次单*.csv")} == set(files)


def test_two_writes_are_byte_identical(two_trips, tmp_path):
    first, second = _write(two_trips, tmp_path / "a"), _write(two_trips, tmp_path / "b")
    assert first == second
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.csv"))
    assert len(files) == 3
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_no_plan_no_sheets(tmp_path):
    con = _store()
    assert _write(con, tmp_path) == {"trip_sheets": [], "arrival_sheets": []}
    assert list(tmp_path.iterdir()) == []


# The transfer clock.

def _clock_store() -> duckdb.DuckDBPyConnection:
    con = _store()
    con.execute("""CREATE TABLE four_categories (
        person_id BIGINT, category VARCHAR, action_key VARCHAR, category_since_at TIMESTAMP)""")
    con.execute("CREATE TABLE person_records (feed VARCHAR, load_id INTEGER, source_row_number BIGINT, person_id BIGINT)")
    con.execute("""CREATE TABLE staged_isolation_checkins (load_id INTEGER, source_row_number BIGINT,
        facility_code VARCHAR, arrived_at TIMESTAMP, left_at TIMESTAMP, is_current BOOLEAN, is_deleted BOOLEAN)""")
    con.execute("""CREATE TABLE staged_inpatients (load_id INTEGER, source_row_number BIGINT,
        hospital_code VARCHAR, ward VARCHAR, admitted_at TIMESTAMP, discharged_at TIMESTAMP, is_current BOOLEAN,
        is_deleted BOOLEAN)""")
    con.execute("""CREATE TABLE staged_fever_clinic (load_id INTEGER, source_row_number BIGINT,
        hospital_code VARCHAR, visited_at TIMESTAMP, disposition VARCHAR, is_current BOOLEAN, is_deleted BOOLEAN)""")
    for code, kind in (("GL01", "集中隔离点"), ("DD01", "定点医院")):
        con.execute("INSERT INTO staged_facility_beds VALUES ($c, $c, $k, $t, DATE '2022-04-01', 1, 1, true, false)",
                    {"c": code, "k": kind, "t": AS_OF - dt.timedelta(days=5)})
    return con


def _in_category(con, person_id, category, action, since, listed_at, district="江岸区"):
    con.execute("INSERT INTO four_categories VALUES ($p, $c, $a, $s)",
                {"p": person_id, "c": category, "a": action, "s": since})
    _person(con, person_id, f"P{person_id}", "110101199001011234", district=district, category=category,
            listed_at=listed_at)


def _checkin(con, person_id, facility, arrived, left=None):
    row = person_id * 10 + con.execute("SELECT count(*) FROM staged_isolation_checkins").fetchone()[0]
    con.execute("INSERT INTO staged_isolation_checkins VALUES (1, $r, $f, $a, $l, true, false)",
                {"r": row, "f": facility, "a": arrived, "l": left})
    con.execute("INSERT INTO person_records VALUES ('isolation_checkins', 1, $r, $p)", {"r": row, "p": person_id})


@pytest.fixture
def clock():
    h = dt.timedelta(hours=1)
    con = _clock_store()
    # Met: listed 10 h ago, checked in 4 h later (target 8 h).
    _in_category(con, 1, "close_contact", "close_contact", AS_OF - 12 * h, AS_OF - 10 * h)
    _checkin(con, 1, "GL01", AS_OF - 6 * h)
    # Late: listed 20 h ago, checked in 10 h later.
    _in_category(con, 2, "close_contact", "close_contact", AS_OF - 22 * h, AS_OF - 20 * h)
    _checkin(con, 2, "GL01", AS_OF - 10 * h)
    # Late, not admitted: listed 9 h ago, deadline passed an hour ago, waiting for a bed.
    _in_category(con, 3, "close_contact", "close_contact", AS_OF - 9 * h, AS_OF - 9 * h)
    con.execute("INSERT INTO dispatch_shortfall VALUES (3)")
    # Pending: listed 2 h ago, on a trip.
    _in_category(con, 4, "close_contact", "close_contact", AS_OF - 3 * h, AS_OF - 2 * h, district=None)
    _plan(con, 4, "0410-0001", 1)
    # Confirmed in an isolation point (wrong type for the action) since before: not admitted; pending.
    _in_category(con, 5, "confirmed", "confirmed_mild", AS_OF - 2 * h, AS_OF - 1 * h)
    _checkin(con, 5, "GL01", AS_OF - 48 * h)
    # Already in isolation before being listed: met, 0 hours. An old stay that ended before the
    # category began does not count (person 7: late).
    _in_category(con, 6, "close_contact", "close_contact", AS_OF - 30 * h, AS_OF - 24 * h)
    _checkin(con, 6, "GL01", AS_OF - 26 * h)
    _in_category(con, 7, "close_contact", "close_contact", AS_OF - 30 * h, AS_OF - 24 * h)
    _checkin(con, 7, "GL01", AS_OF - 200 * h, AS_OF - 100 * h)
    # The run's stays, as the response builds them before the clock.
    con.execute(beds.STAYS_SQL, {"as_of": AS_OF, "icu_ward_markers": ["重症"]})
    params = transfer_clock.transfer_clock_parameters(RULES, UNKNOWN, AS_OF)
    compliance = transfer_clock.build_transfer_clock(con, params)
    return con, compliance


def test_the_transfer_clock_is_met_late_or_pending(clock):
    con, _ = clock
    rows = {r[0]: r[1:] for r in con.execute("""
        SELECT person_id, status, is_within_target, hours_to_admission, is_waiting_for_bed, planned_trip_id
        FROM transfer_clock""").fetchall()}
    assert rows == {1: ("met", True, 4.0, False, None), 2: ("late", False, 10.0, False, None),
                    3: ("late", False, None, True, None), 4: ("pending", False, None, False, "0410-0001"),
                    5: ("pending", False, None, False, None), 6: ("met", True, 0.0, False, None),
                    7: ("late", False, None, False, None)}
    deadline, listed = con.execute("SELECT deadline_at, first_listed_at FROM transfer_clock WHERE person_id = 1"
                                   ).fetchone()
    assert deadline - listed == dt.timedelta(hours=RULES.transfer_within_hours["close_contact"])


def test_transfer_compliance_counts_per_district_and_day(clock):
    _, compliance = clock
    assert compliance == [
        ("未知区", dt.date(2022, 4, 10), 1, 0, 0, 1, None),
        ("江岸区", dt.date(2022, 4, 9), 3, 1, 2, 0, 0.3333),
        ("江岸区", dt.date(2022, 4, 10), 3, 1, 1, 1, 0.5),
    ]
