"""Exposure rules on small hand-made scenarios, per rule and per profile.

Each scenario is a store with a few staged rows and their persons written directly (identity
resolution is tested elsewhere): a case with a known window, and people who did or did not
share a setting with it inside that window.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import duckdb
import pytest

from tests.conftest import LAB_HEADER, SAMPLE, ingest_landing, lab_row, link_store, query, trace_store, write_csv
from trace24.schemas.contracts import SchemaError, load_schemas
from trace24.schemas.rules import load_facilities, load_rule_profile
from trace24.transforms import database
from trace24.transforms.contacts import contact_graph, exposures

T = dt.datetime
CASE = 1  # person_id of the case in every scenario
SAMPLED, REPORTED, AS_OF, DEPARTED = T(2020, 2, 1, 10), T(2020, 2, 3, 10), T(2020, 2, 10), T(2020, 2, 1, 9)


class Scenario:
    """A store with staged rows written by hand, each tied to a person."""

    def __init__(self, db_path: Path):
        self.con = database.connect(db_path, load_schemas())
        self.con.execute("""CREATE TABLE person_records (feed VARCHAR, load_id INTEGER, source_row_number BIGINT,
                            person_id BIGINT, link_method VARCHAR, match_probability DOUBLE)""")
        self.con.execute("""CREATE TABLE persons (person_id BIGINT, id_number VARCHAR, household_id VARCHAR,
                            community_code VARCHAR, compound VARCHAR, building VARCHAR, unit VARCHAR,
                            room VARCHAR, merged_into_person_id BIGINT)""")
        self.con.execute("INSERT INTO load_audit (load_id, run_id, delivery_date, agency, feed, source_file, "
                         "file_status, rows_read, rows_loaded, rows_quarantined, rows_superseded) "
                         "VALUES (1, 1, DATE '2020-02-05', 'cdc', 'lab_results', 'x', 'loaded', 0, 0, 0, 0)")
        self.row = 0
        self.load_id = 1  # the load that add() writes into; delivered() starts another
        self.persons: set[int] = set()

    def delivered(self, day: dt.date) -> None:
        """The rows added from now on arrive in a new load, delivered on ``day``."""
        self.load_id += 1
        self.con.execute("INSERT INTO load_audit (load_id, run_id, delivery_date, agency, feed, source_file, "
                         "file_status, rows_read, rows_loaded, rows_quarantined, rows_superseded) "
                         "VALUES ($load_id, 1, $day, 'police', 'place_scans', 'x', 'loaded', 0, 0, 0, 0)",
                         {"load_id": self.load_id, "day": day})

    def person(self, person_id: int, household_id: str | None = None, **home) -> None:
        self.persons.add(person_id)
        self.con.execute("INSERT INTO persons BY NAME SELECT $person_id AS person_id, $household_id AS household_id, "
                         "$flat[1] AS community_code, $flat[2] AS compound, $flat[3] AS building, "
                         "$flat[4] AS unit, $flat[5] AS room",
                         {"person_id": person_id, "household_id": household_id,
                          "flat": [home.get(k) for k in ("community_code", "compound", "building", "unit", "room")]})

    def add(self, feed: str, person_id: int, **values) -> None:
        if person_id not in self.persons:
            self.person(person_id)
        self.row += 1
        columns = ", ".join(f"${k} AS {k}" for k in values)
        self.con.execute(
            f"INSERT INTO staged_{feed} BY NAME SELECT $load_id AS load_id, DATE '2020-02-05' AS delivery_date, "
            f"'test.csv' AS source_file, $row AS source_row_number, true AS is_current, false AS is_deleted, {columns}",
            {"row": self.row, "load_id": self.load_id, **values})
        self.con.execute("INSERT INTO person_records VALUES ($feed, $load_id, $row, $person_id, 'exact_id', 1.0)",
                         {"feed": feed, "load_id": self.load_id, "row": self.row, "person_id": person_id})

    def case(self, person_id: int = CASE, sampled_at=SAMPLED, onset=None, cls="确诊病例",
             reported_at=REPORTED) -> None:
        """A confirmed case: a positive sample, and a case card reported (and so isolated) at ``reported_at``."""
        self.add("lab_results", person_id, sample_id=f"S{person_id}", sampled_at=sampled_at, reported_at=reported_at,
                 result="阳性")
        self.add("case_reports", person_id, card_id=f"K{person_id}", case_class=cls, onset_date=onset,
                 reported_at=reported_at, card_status="新增")

    def run(self, profile: str | Path = "nhc-v6", as_of=AS_OF) -> dict[tuple[int, int], str]:
        rules = load_rule_profile(profile)
        params = exposures.rule_parameters(rules, load_facilities(), as_of)
        exposures.build_cases(self.con, params)
        exposures.build_exposures(self.con, rules, params)
        return {(e, s): level for e, s, level in self.con.execute(
            "SELECT exposed_person_id, source_person_id, contact_level FROM core_contacts").fetchall()}


@pytest.fixture
def scenario(tmp_path):
    s = Scenario(tmp_path / "scenario.duckdb")
    yield s
    s.con.close()


def test_windows_from_onset_sample_and_fallback(scenario):
    scenario.case(1, onset=dt.date(2020, 2, 1))                                  # onset known
    scenario.case(2, sampled_at=T(2020, 2, 2, 8), cls="无症状感染者")              # asymptomatic
    scenario.add("lab_results", 3, sample_id="S3", sampled_at=T(2020, 2, 2, 8), result="阳性")  # no card yet
    scenario.run()
    windows = {p: (basis, start) for p, basis, start in scenario.con.execute(
        "SELECT person_id, window_basis, window_start_at FROM core_cases").fetchall()}
    assert windows[1] == ("onset", T(2020, 1, 30))
    assert windows[2] == ("asymptomatic_sample", T(2020, 1, 31, 8))
    assert windows[3] == ("sample_onset_unknown", T(2020, 1, 28, 8))  # the profile's stated fallback: 5 days


def test_deleted_or_excluded_card_makes_no_case(scenario):
    scenario.add("case_reports", 5, card_id="K5", case_class="确诊病例", reported_at=T(2020, 2, 3), card_status="新增")
    scenario.con.execute("UPDATE staged_case_reports SET is_deleted = true")
    scenario.add("case_reports", 6, card_id="K6", case_class="排除病例", reported_at=T(2020, 2, 3), card_status="订正")
    scenario.run()
    assert scenario.con.execute("SELECT count(*) FROM core_cases").fetchall() == [(0,)]


def test_household_same_hukou_and_same_flat(scenario):
    flat = {"community_code": "420102002001", "compound": "花园小区", "building": "3栋", "unit": "1单元", "room": "502"}
    scenario.person(CASE, household_id="H1", **flat)
    scenario.person(2, household_id="H1")                       # same 户号, lives elsewhere
    scenario.person(3, household_id="H9", **flat)               # same flat, another 户号
    scenario.person(4, household_id="H2", **{**flat, "room": "503"})
    scenario.case(onset=dt.date(2020, 2, 1))
    found = scenario.run()
    assert found == {(2, CASE): "close", (3, CASE): "close"}


def _trip(scenario, person, seat, car=None, mode="飞机", trip="CA1234", departed=DEPARTED):
    scenario.add("transport", person, mode=mode, trip_number=trip, departure_date=departed.date(), car=car, seat=seat,
                 departed_at=departed, arrived_at=departed + dt.timedelta(hours=2))


def test_aircraft_rows_three_each_side(scenario):
    scenario.case(onset=dt.date(2020, 2, 2))
    _trip(scenario, CASE, "10C")
    for person, seat in ((2, "7A"), (3, "13F"), (4, "14A"), (5, "6K"), (6, None)):
        _trip(scenario, person, seat)
    _trip(scenario, 7, "10D", trip="CA9999")                    # another flight
    assert scenario.run() == {(2, CASE): "close", (3, CASE): "close", (6, CASE): "general"}


def test_train_whole_car_or_rows_by_profile(scenario, tmp_path):
    scenario.case(onset=dt.date(2020, 2, 2))
    _trip(scenario, CASE, "01A", car="05", mode="火车", trip="G301")
    _trip(scenario, 2, "16F", car="05", mode="火车", trip="G301")
    _trip(scenario, 3, "02B", car="06", mode="火车", trip="G301")
    assert scenario.run() == {(2, CASE): "close"}
    rows = tmp_path / "rows.yaml"
    rows.write_text(Path(load_rule_profile.__code__.co_filename).parent.joinpath("rules", "nhc-v6.yaml")
                    .read_text(encoding="utf-8").replace("train_scope: car", "train_scope: seat_row"), encoding="utf-8")
    assert scenario.run(rows) == {}                             # 16 rows apart: not close by rows


def test_trip_outside_the_window_exposes_nobody(scenario):
    scenario.case(onset=dt.date(2020, 2, 5))                    # window from 2020-02-03
    _trip(scenario, CASE, "10C")                                # flew on 2020-02-01
    _trip(scenario, 2, "10D")
    assert scenario.run() == {}


def test_hotel_room_overlap(scenario):
    scenario.case(onset=dt.date(2020, 2, 2))
    stay = {"hotel_code": "HT01", "checked_in_at": T(2020, 1, 31, 20), "checked_out_at": T(2020, 2, 2, 12)}
    scenario.add("lodging", CASE, room="0801", **stay)
    scenario.add("lodging", 2, room="0801", **{**stay, "checked_in_at": T(2020, 2, 1, 22)})
    scenario.add("lodging", 3, room="0802", **stay)                                   # next door
    scenario.add("lodging", 4, room="0801", hotel_code="HT01", checked_in_at=T(2020, 2, 2, 14),
                 checked_out_at=T(2020, 2, 4, 12))                                   # after the case left
    assert scenario.run() == {(2, CASE): "close"}


def test_general_ward_overlap_but_not_isolation_ward(scenario):
    scenario.case(onset=dt.date(2020, 2, 2))
    ward = {"admission_id": "A", "hospital_code": "H01", "ward": "呼吸内科二病区"}
    scenario.add("inpatients", CASE, **ward, admitted_at=T(2020, 1, 31, 10), discharged_at=T(2020, 2, 2, 10))
    scenario.add("inpatients", 2, **{**ward, "admission_id": "B"}, admitted_at=T(2020, 2, 1, 10))
    scenario.add("inpatients", 3, **{**ward, "admission_id": "C"}, admitted_at=T(2020, 1, 20),
                 discharged_at=T(2020, 1, 29))                                       # gone before the window
    scenario.add("inpatients", 4, admission_id="D", hospital_code="H01", ward="感染科隔离病区",
                 admitted_at=T(2020, 2, 2, 11))
    assert scenario.run() == {(2, CASE): "close"}


def test_investigation_listed_contacts_unless_protected(scenario):
    scenario.case(onset=dt.date(2020, 2, 2))
    base = {"case_card_id": "K1", "first_contact_at": T(2020, 2, 1, 12), "last_contact_at": T(2020, 2, 1, 14)}
    scenario.add("investigations", 2, investigation_id="I1", setting="聚餐", was_protected="否", **base)
    scenario.add("investigations", 3, investigation_id="I1", setting="医疗机构", was_protected="是", **base)
    assert scenario.run() == {(2, CASE): "close"}
    assert scenario.con.execute("SELECT setting, rule_id FROM core_exposures").fetchall() == [
        ("meal", "investigation_listed")]


def _scan(scenario, person, at, venue="V1", venue_type="餐饮"):
    scenario.add("place_scans", person, venue_code=venue, venue_type=venue_type, scanned_at=at)


def test_venue_co_location_close_or_general_by_venue_type(scenario):
    scenario.case(onset=dt.date(2020, 2, 2))
    _scan(scenario, CASE, T(2020, 2, 1, 12))
    _scan(scenario, 2, T(2020, 2, 1, 12, 25))                   # within 30 minutes: close (restaurant)
    _scan(scenario, 3, T(2020, 2, 1, 12, 45))                   # 45 minutes later: nothing
    _scan(scenario, CASE, T(2020, 2, 1, 16), venue="V2", venue_type="商超")
    _scan(scenario, 4, T(2020, 2, 1, 16, 10), venue="V2", venue_type="商超")   # supermarket: general
    assert scenario.run() == {(2, CASE): "close", (4, CASE): "general"}


def test_secondary_contacts_only_where_the_profile_has_them(scenario):
    scenario.person(CASE, household_id="H1")
    scenario.person(2, household_id="H1")                       # close contact of the case
    scenario.person(3, household_id="H1")
    scenario.person(4, household_id="H2")                       # lives with the close contact's colleague
    scenario.case(onset=dt.date(2020, 2, 2))
    _scan(scenario, 2, T(2020, 2, 4, 9), venue="OFFICE", venue_type="办公")
    _scan(scenario, 4, T(2020, 2, 4, 9, 10), venue="OFFICE", venue_type="办公")
    assert scenario.run("nhc-v6") == {(2, CASE): "close", (3, CASE): "close"}
    found = scenario.run("nhc-v8")
    assert found == {(2, CASE): "close", (3, CASE): "close", (4, 2): "secondary"}
    assert scenario.con.execute("SELECT profile FROM core_exposures WHERE contact_level = 'secondary'"
                                ).fetchall() == [("nhc-v8",)]


def test_exposure_after_isolation_does_not_count(scenario):
    scenario.case(onset=dt.date(2020, 2, 2), reported_at=T(2020, 2, 2, 10))   # isolated on report
    _scan(scenario, CASE, T(2020, 2, 3, 12))                    # a scan after isolation (a data error)
    _scan(scenario, 2, T(2020, 2, 3, 12, 5))
    assert scenario.run() == {}


def test_run_records_profile_and_graph_tables(scenario):
    scenario.person(CASE, household_id="H1")
    scenario.person(2, household_id="H1")
    scenario.case(onset=dt.date(2020, 2, 1))
    scenario.case(2, onset=dt.date(2020, 2, 5), sampled_at=T(2020, 2, 6), reported_at=T(2020, 2, 7))
    rules = load_rule_profile("nhc-v8")
    scenario.run("nhc-v8")
    exposures.record_run(scenario.con, rules, T(2020, 2, 10))
    contact_graph.build_graph_tables(scenario.con)
    assert scenario.con.execute("SELECT profile, profile_sha256 FROM exposure_runs").fetchall() == [
        ("nhc-v8", rules.sha256)]
    # Both directions are candidates; only the one forward in time is the primary link.
    assert scenario.con.execute("SELECT infector_person_id, infectee_person_id FROM out_transmission_links "
                                "WHERE is_primary").fetchall() == [(1, 2)]
    assert scenario.con.execute("SELECT person_id, generation FROM chain_of('C0000001')").fetchall() == [
        (1, 0), (2, 1)]


def test_broken_profile_names_the_key(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("profile: x\nvehicles: {train_scope: plane}\n", encoding="utf-8")
    with pytest.raises(SchemaError, match="train_scope"):
        load_rule_profile(broken)
    with pytest.raises(SchemaError, match="nhc-v6, nhc-v8"):
        load_rule_profile("nhc-v99")


def test_a_new_positive_redoes_only_the_changed_cases_as_a_rebuild_would(tmp_path):
    """The sample city's first four days traced; then one positive result of a venue contact: only the
    cases whose window moved get the venue rule again, and the result is the rebuild's."""
    landing, db_path = tmp_path / "landing", tmp_path / "store.duckdb"
    for day in ("2020-02-10", "2020-02-11", "2020-02-12", "2020-02-13"):
        shutil.copytree(SAMPLE / "landing" / day, landing / day)
    ingest_landing(landing, db_path)
    link_store(db_path)
    assert trace_store(db_path).reason == "first run"
    # Someone known by ID who met a case at a venue: as a case, they expose at least that one.
    person_id, name, id_number, phone, met_at = query(db_path, """
        SELECT p.person_id, p.name, p.id_number, p.phone, max(e.last_exposure_at)
        FROM core_exposures AS e
        JOIN persons AS p ON p.person_id = e.exposed_person_id
        WHERE e.rule_id = 'venue_co_location' AND p.id_type = 'id_card' AND p.name IS NOT NULL
          AND p.phone IS NOT NULL AND p.person_id NOT IN (SELECT person_id FROM core_cases)
        GROUP BY ALL ORDER BY p.person_id LIMIT 1""")[0]
    # And a case whose window starts at its first positive sample, with a sample a day earlier: its
    # window widens, so its exposures and contacts must be redone, not added to.
    case_id, case_name, case_id_number, case_phone, case_sampled, window_start = query(db_path, """
        SELECT c.person_id, p.name, p.id_number, p.phone, c.first_positive_sampled_at, c.window_start_at
        FROM core_cases AS c JOIN persons AS p USING (person_id)
        WHERE c.window_basis IN ('sample_onset_unknown', 'asymptomatic_sample') AND p.id_type = 'id_card'
          AND p.name IS NOT NULL
          AND p.phone IS NOT NULL AND c.window_start_at < c.window_end_at
        ORDER BY c.person_id LIMIT 1""")[0]
    sampled, earlier = met_at + dt.timedelta(hours=2), case_sampled - dt.timedelta(days=1)
    write_csv(landing / "2020-02-14" / "cdc" / "lab_results.csv", LAB_HEADER, [
        lab_row("N-1", name, id_number, phone, f"{sampled:%Y-%m-%d %H:%M:%S}",
                f"{sampled + dt.timedelta(hours=8):%Y-%m-%d %H:%M:%S}", "阳性", reason="筛查"),
        lab_row("N-2", case_name, case_id_number, case_phone, f"{earlier:%Y-%m-%d %H:%M:%S}",
                f"{earlier + dt.timedelta(hours=8):%Y-%m-%d %H:%M:%S}", "阳性", reason="筛查")])
    ingest_landing(landing, db_path)
    link_store(db_path)
    plan = trace_store(db_path)
    assert plan.is_incremental
    assert query(db_path, "SELECT count(*) FROM core_exposures WHERE source_person_id = ? AND rule_id = ?",
                 [person_id, exposures.VENUE_RULE_ID])[0][0] > 0
    assert query(db_path, "SELECT window_start_at FROM core_cases WHERE person_id = ?", [case_id])[0][0] < window_start

    rebuilt = tmp_path / "rebuilt.duckdb"
    shutil.copyfile(db_path, rebuilt)
    with duckdb.connect(str(rebuilt)) as con:
        con.execute("DELETE FROM stage_state WHERE stage = 'exposures'")
    assert not trace_store(rebuilt).is_incremental
    for table in ("core_cases", "core_exposures", "core_contacts"):
        sql = f"SELECT * EXCLUDE (profile) FROM {table} ORDER BY ALL" if table != "core_cases" else \
            f"SELECT * FROM {table} ORDER BY ALL"
        assert query(db_path, sql) == query(rebuilt, sql), table


def test_a_new_load_of_a_contact_feed_rebuilds_every_exposure(tmp_path):
    landing, db_path = tmp_path / "landing", tmp_path / "store.duckdb"
    for day in ("2020-02-10", "2020-02-11"):
        shutil.copytree(SAMPLE / "landing" / day, landing / day)
    ingest_landing(landing, db_path)
    link_store(db_path)
    trace_store(db_path)
    assert trace_store(db_path).is_incremental  # nothing new: only cases could have moved
    shutil.copytree(SAMPLE / "landing" / "2020-02-12" / "police", landing / "2020-02-12" / "police")
    ingest_landing(landing, db_path)
    link_store(db_path)
    assert not trace_store(db_path).is_incremental
