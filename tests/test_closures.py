"""Closures: hand-made outbreaks in a tiny store, the areas they seal and when they lift.

Each scenario is a few cases (``core_cases``) living in named compounds (``persons``) and staying
in hotels (``staged_lodging``), run through ``response/closures.py`` and the district sheets
(``lists/risk_area_sheets.py``) and clock (``lists/closure_clock.py``) at chosen as-of times.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest

from trace24.schemas.rules import load_district_map, load_rule_profile
from trace24.transforms.lists import closure_clock, risk_area_sheets
from trace24.transforms.response import closures

T0 = dt.datetime(2020, 2, 1, 9, 0)
DISTRICTS = list(load_district_map().borders)
SHEET = risk_area_sheets.load_sheet_layout()

# person id → (community code, community name, compound, building)
HOMES = {
    1: ("420103001001", "花楼水塔社区", "水塔小区", "1栋"),
    2: ("420103001001", "花楼水塔社区", "水塔小区", "2栋"),
    3: ("420103001002", "民意社区", "民意花园", "1栋"),
    4: ("420103001001", "花楼水塔社区", None, None),          # no compound known
}


def store(cases: list[tuple[int, dt.datetime]], stays=()) -> duckdb.DuckDBPyConnection:
    """A store with ``cases`` (person, clock start) and hotel ``stays`` (person, hotel, in, out)."""
    con = duckdb.connect()
    con.execute("""CREATE TABLE core_cases (person_id BIGINT, case_code VARCHAR, clock_started_at TIMESTAMP,
                                            window_start_at TIMESTAMP, window_end_at TIMESTAMP)""")
    for person, at in cases:
        con.execute("INSERT INTO core_cases VALUES (?, ?, ?, ?, ?)",
                    [person, f"C{person:07d}", at, at - dt.timedelta(days=4), at])
    con.execute("""CREATE TABLE persons (person_id BIGINT, district VARCHAR, community_code VARCHAR,
                                         community_name VARCHAR, compound VARCHAR, building VARCHAR)""")
    for person, (code, name, compound, building) in HOMES.items():
        con.execute("INSERT INTO persons VALUES (?, '江汉区', ?, ?, ?, ?)", [person, code, name, compound, building])
    con.execute("""CREATE TABLE staged_communities AS
                   SELECT * FROM (VALUES ('420103001001', '民族街道', DATE '2020-02-01', 1, true, false),
                                         ('420103001002', '民意街道', DATE '2020-02-01', 1, true, false))
                   AS t(community_code, street, delivery_date, load_id, is_current, is_deleted)""")
    con.execute("""CREATE TABLE staged_lodging (load_id INTEGER, source_row_number BIGINT, hotel_code VARCHAR,
                   hotel_name VARCHAR, hotel_address VARCHAR, checked_in_at TIMESTAMP, checked_out_at TIMESTAMP,
                   is_current BOOLEAN, is_deleted BOOLEAN)""")
    con.execute("CREATE TABLE person_records (feed VARCHAR, load_id INTEGER, source_row_number BIGINT, "
                "person_id BIGINT)")
    for row, (person, hotel, arrived, left) in enumerate(stays):
        con.execute("INSERT INTO staged_lodging VALUES (1, ?, ?, ?, '武汉市硚口区解放大道1号', ?, ?, true, false)",
                    [row, hotel, f"{hotel}酒店", arrived, left])
        con.execute("INSERT INTO person_records VALUES ('lodging', 1, ?, ?)", [row, person])
    return con


def run(con, profile: str, as_of: dt.datetime) -> list[dict]:
    rules = load_rule_profile(profile).closures
    closures.build_risk_areas(con, closures.closure_parameters(rules, DISTRICTS, "未知区", as_of))
    return [dict(zip([d[0] for d in con.description], row, strict=True))
            for row in con.execute("SELECT * FROM risk_areas ORDER BY scope, area_key, since_at").fetchall()]


def deliver(con, profile: str, as_of: dt.datetime) -> list[tuple]:
    """One run: areas, the district sheets' rows, the clock; returns the closure clock."""
    rules = load_rule_profile(profile).closures
    run(con, profile, as_of)
    params = risk_area_sheets.sheet_parameters(SHEET, [a.scope for a in rules.areas], "未知区", as_of)
    risk_area_sheets.build_sheet_rows(con, params)
    closure_clock.build_closure_clock(con, closure_clock.closure_clock_parameters(rules, "未知区", as_of))
    return con.execute("SELECT case_code, clock_status, first_listed_at FROM closure_clock "
                       "ORDER BY case_code").fetchall()


def test_two_cases_in_one_compound_make_one_area():
    con = store([(1, T0), (2, T0 + dt.timedelta(days=2))])
    areas = [a for a in run(con, "nhc-v6", T0 + dt.timedelta(days=3)) if a["scope"] == "compound"]
    assert len(areas) == 1
    (area,) = areas
    assert area["area_key"] == "420103001001/水塔小区" and area["level_label"] == "封闭管理"
    assert area["case_codes"] == ["C0000001", "C0000002"] and area["case_count"] == 2
    assert area["since_at"] == T0 and area["is_active"] and area["lifted_at"] is None


def test_a_late_case_extends_the_closure():
    late = T0 + dt.timedelta(days=10)
    con = store([(1, T0), (2, late)])
    (area,) = [a for a in run(con, "nhc-v6", late + dt.timedelta(hours=1)) if a["scope"] == "compound"]
    assert area["planned_lift_at"] == late + dt.timedelta(days=14)
    history = con.execute("SELECT event, event_at, case_code, planned_lift_at FROM risk_area_history "
                          "ORDER BY event_at").fetchall()
    assert history == [("opened", T0, "C0000001", T0 + dt.timedelta(days=14)),
                       ("extended", late, "C0000002", late + dt.timedelta(days=14))]


def test_a_closure_lifts_on_day_15_and_a_later_case_opens_a_new_one():
    con = store([(1, T0)])
    day_14 = T0 + dt.timedelta(days=14) - dt.timedelta(minutes=1)
    assert [a["is_active"] for a in run(con, "nhc-v6", day_14) if a["scope"] == "compound"] == [True]
    (lifted,) = [a for a in run(con, "nhc-v6", T0 + dt.timedelta(days=14)) if a["scope"] == "compound"]
    assert not lifted["is_active"] and lifted["lifted_at"] == T0 + dt.timedelta(days=14)
    assert con.execute("SELECT event FROM risk_area_history ORDER BY event_at").fetchall() == [("opened",),
                                                                                             ("lifted",)]
    # A case after the lift: the same compound closes again, a new area with its own id.
    con = store([(1, T0), (2, T0 + dt.timedelta(days=20))])
    compound = [a for a in run(con, "nhc-v6", T0 + dt.timedelta(days=21)) if a["scope"] == "compound"]
    assert [(a["is_active"], a["case_codes"]) for a in compound] == [(False, ["C0000001"]), (True, ["C0000002"])]
    assert compound[0]["area_id"] != compound[1]["area_id"]


def test_hotel_stays_inside_the_infectious_window_only():
    stays = [(1, "H001", T0 - dt.timedelta(days=2), T0 - dt.timedelta(days=1)),      # in the window
             (1, "H002", T0 - dt.timedelta(days=9), T0 - dt.timedelta(days=8)),      # before it
             (1, "H004", T0 + dt.timedelta(days=1), T0 + dt.timedelta(days=2)),      # isolated by then
             (3, "H003", T0 - dt.timedelta(days=1), None)]                            # still there
    con = store([(1, T0), (3, T0)], stays)
    hotels = [a for a in run(con, "nhc-v6", T0 + dt.timedelta(days=3)) if a["scope"] == "hotel"]
    assert [(a["area_key"], a["district"], a["area_name"]) for a in hotels] == [
        ("H001", "硚口区", "H001酒店"), ("H003", "硚口区", "H003酒店")]


def test_v8_levels_sealed_controlled_precaution():
    con = store([(1, T0), (3, T0)])
    areas = run(con, "nhc-v8", T0 + dt.timedelta(hours=1))
    levels = sorted((a["scope"], a["level_label"], a["area_name"]) for a in areas)
    assert levels == sorted([("community", "管控区", "民意社区"), ("community", "管控区", "花楼水塔社区"),
                             ("compound", "封控区", "水塔小区"), ("compound", "封控区", "民意花园"),
                             ("street", "防范区", "民意街道"), ("street", "防范区", "民族街道")])
    # nhc-v6 closes compounds (and hotels) only.
    assert {a["scope"] for a in run(con, "nhc-v6", T0 + dt.timedelta(hours=1))} == {"compound"}


def test_a_withdrawn_case_takes_its_area_with_it():
    con = store([(1, T0)])
    assert run(con, "nhc-v6", T0 + dt.timedelta(hours=1))
    con.execute("DELETE FROM core_cases")
    assert run(con, "nhc-v6", T0 + dt.timedelta(hours=2)) == []


def test_the_closure_clock_stops_when_a_sheet_names_the_case():
    con = store([(1, T0), (4, T0)])
    before = deliver(con, "nhc-v6", T0 - dt.timedelta(hours=1))
    assert before == []                                                      # nothing reported yet
    on_time = deliver(con, "nhc-v6", T0 + dt.timedelta(hours=20))
    assert on_time == [("C0000001", "met", T0 + dt.timedelta(hours=20)), ("C0000004", "no_address", None)]
    # A second case in the sealed compound, reported later: its own clock, stopped when a sheet
    # first names it, which is the run after its report, not the first sheet of the area.
    con.execute("INSERT INTO core_cases VALUES (2, 'C0000002', ?, ?, ?)",
                [T0 + dt.timedelta(hours=22), T0 - dt.timedelta(days=3), T0 + dt.timedelta(hours=22)])
    late = deliver(con, "nhc-v6", T0 + dt.timedelta(hours=50))
    assert late[1] == ("C0000002", "missed", T0 + dt.timedelta(hours=50))
    rows = con.execute("SELECT as_of, status FROM out_risk_area_rows WHERE scope = 'compound' "
                       "ORDER BY as_of").fetchall()
    assert [s for _, s in rows] == ["new", "extended"]


def test_sheet_lifts_once_then_the_area_leaves_it(tmp_path):
    con = store([(1, T0)])
    for days in (1, 15, 16):
        deliver(con, "nhc-v6", T0 + dt.timedelta(days=days))
        entries = risk_area_sheets.write_sheets(con, SHEET, tmp_path / str(days))
        statuses = [s for (s,) in con.execute("SELECT status FROM delivered_area_rows").fetchall()]
        assert statuses == {1: ["new"], 15: ["lifted"], 16: []}[days]
        assert len(entries) == (0 if days == 16 else 1)
    sheet = (tmp_path / "15" / "江汉区" / SHEET.file).read_text(encoding="utf-8-sig").splitlines()
    assert sheet[0].split(",") == list(SHEET.headers)
    assert sheet[1].split(",")[:4] == ["解除", "封闭管理", "小区", "水塔小区"]


@pytest.mark.parametrize("profile", ["nhc-v6", "nhc-v8"])
def test_same_inputs_same_areas_and_sheets(tmp_path, profile):
    stays = [(1, "H001", T0 - dt.timedelta(days=2), T0 - dt.timedelta(days=1))]
    written = []
    for attempt in ("a", "b"):
        con = store([(1, T0), (2, T0 + dt.timedelta(days=1)), (3, T0)], stays)
        deliver(con, profile, T0 + dt.timedelta(days=2))
        risk_area_sheets.write_sheets(con, SHEET, tmp_path / attempt)
        written.append({p.relative_to(tmp_path / attempt): p.read_bytes()
                        for p in sorted((tmp_path / attempt).rglob("*.csv"))})
        written.append(con.execute("SELECT * FROM risk_areas ORDER BY area_id").fetchall())
    assert written[0] == written[2] and written[1] == written[3] and written[0]
