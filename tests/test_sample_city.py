"""The whole ingestion on the shipped sample city, checked against what the generator knows
(``data/sample/truth/``): every row accounted for, every injected fault handled as it must be."""

from __future__ import annotations

import csv
import filecmp
import unicodedata
from collections import defaultdict
from pathlib import Path

import pytest

from tests.conftest import PROJECT, ingest_landing, query
from trace24 import idcard
from trace24.schemas.contracts import load_schemas

SAMPLE = PROJECT / "data" / "sample"
TRUTH = SAMPLE / "truth"
ROW_OUTCOMES_QUARANTINED = {"quarantined", "duplicate"}
IDENTITY_COLUMNS = {"id_number": "id_number", "document_number": "id_number", "contact_id_number": "id_number",
                    "phone": "phone", "contact_phone": "phone", "name": "name", "contact_name": "name"}


def read_truth(name: str) -> list[dict]:
    with (TRUTH / name).open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    db_path = tmp_path_factory.mktemp("sample") / "sample.duckdb"
    ingest_landing(SAMPLE / "landing", db_path)
    return db_path


@pytest.fixture(scope="module")
def faults_by_row() -> dict[tuple[str, int], list[dict]]:
    grouped = defaultdict(list)
    for fault in read_truth("faults.csv"):
        if fault["row_number"]:
            grouped[(fault["file"], int(fault["row_number"]))].append(fault)
    return grouped


def staged_row(db_path: Path, feed: str, source_file: str, row: int, columns: str) -> tuple | None:
    found = query(db_path, f"SELECT {columns} FROM staged_{feed} WHERE source_file = ? AND source_row_number = ?",
                  [source_file, row])
    return found[0] if found else None


def test_every_delivered_row_is_read_and_the_audit_balances(store):
    delivered = defaultdict(int)
    for record in read_truth("records.csv"):
        delivered[record["file"]] += 1
    audit = {f: (read, loaded, quarantined) for f, read, loaded, quarantined in query(
        store, "SELECT source_file, rows_read, rows_loaded, rows_quarantined FROM load_audit")}
    assert {f: a[0] for f, a in audit.items() if a[0]} == dict(delivered)
    assert all(read == loaded + quarantined for read, loaded, quarantined in audit.values())
    staged_total = sum(query(store, f"SELECT count(*) FROM staged_{feed}")[0][0] for feed in load_schemas().feeds)
    quarantined_rows = query(store, "SELECT count(*) FROM quarantine WHERE source_row_number IS NOT NULL")[0][0]
    assert staged_total + quarantined_rows == sum(delivered.values())


def test_only_rows_with_an_unrepairable_fault_are_quarantined(store, faults_by_row):
    expected = {key for key, faults in faults_by_row.items()
                if any(f["expected"] in ROW_OUTCOMES_QUARANTINED for f in faults)}
    quarantined = {(f, r) for f, r in query(
        store, "SELECT source_file, source_row_number FROM quarantine WHERE source_row_number IS NOT NULL")}
    assert quarantined == expected


def test_each_quarantined_fault_carries_its_reason(store, faults_by_row):
    reasons = {(f, r): codes for f, r, codes in query(
        store, "SELECT source_file, source_row_number, reason_codes FROM quarantine")}
    expected_code = {"duplicate_row": "duplicate_row", "malformed_line": "malformed_line",
                     "identity_empty": "identity_empty", "record_key_missing": "missing:",
                     "result_empty": "missing:result", "temperature_text": "invalid_temperature:",
                     "checkout_before_checkin": "time_order:checked_out_at", "discharge_before_admission":
                     "time_order:discharged_at", "beds_negative": "out_of_range:", "seats_zero": "out_of_range:seats",
                     "facility_type_unknown": "invalid_enum:facility_type"}
    seen = set()
    for key, faults in faults_by_row.items():
        for fault in faults:
            if fault["expected"] in ROW_OUTCOMES_QUARANTINED:
                code = expected_code[fault["fault"]]
                assert any(c.startswith(code) for c in reasons[key]), (key, fault["fault"], reasons[key])
                seen.add(fault["fault"])
    assert seen == set(expected_code), "every unrepairable fault class is in the sample and quarantined"


def test_repaired_and_flagged_values_match_the_truth(store, faults_by_row):
    schemas = load_schemas()
    persons = {p["person_key"]: p for p in read_truth("persons.csv")}
    owner = {(r["file"], int(r["row_number"])): r["person_key"] for r in read_truth("records.csv")}
    status_of = {"id_bad_check": "invalid_checksum", "id_empty": "missing", "id_passport": "passport"}
    kind_of = {"phone_landline": "landline", "phone_empty": "missing"}
    checked = defaultdict(int)
    for (source_file, row), faults in faults_by_row.items():
        if any(f["expected"] in ROW_OUTCOMES_QUARANTINED for f in faults):
            continue
        feed = faults[0]["feed"]
        column_map = next(m for m in schemas.maps_for(feed) if faults[0]["column"] in m.columns or
                          not faults[0]["column"])
        for fault in faults:
            if fault["expected"] not in {"repaired", "flagged"} or not fault["column"]:
                continue
            column = column_map.columns[fault["column"]]
            spec = schemas.feeds[feed].field(column)
            extra = {"id_number": f", {column}_status", "phone": f", {column}_kind"}.get(spec.type, "")
            value = staged_row(store, feed, source_file, row, f"{column}{extra}")
            assert value is not None, (source_file, row, fault["fault"])
            truth = persons.get(owner[(source_file, row)], {})   # the census has no person
            if fault["fault"] in status_of:
                assert value[1] == status_of[fault["fault"]], (source_file, row, value)
            elif fault["fault"] in kind_of:
                assert value[1] == kind_of[fault["fault"]], (source_file, row, value)
            elif fault["expected"] == "repaired" and column in IDENTITY_COLUMNS:
                assert value[0] == truth[IDENTITY_COLUMNS[column]], (source_file, row, fault["fault"], value)
            elif fault["expected"] == "repaired":
                assert value[0] is not None, (source_file, row, fault["fault"])
            checked[fault["fault"]] += 1
    for fault_class in ("id_lowercase_x", "id_fullwidth", "id_separators", "id_15_digit", "id_bad_check",
                        "name_spaces", "name_fullwidth", "phone_plus86_dashes", "phone_86_prefix", "phone_0086",
                        "time_excel_serial", "time_chinese", "time_slash", "temperature_missing_decimal",
                        "temperature_celsius_sign"):
        assert checked[fault_class] > 0, fault_class


def test_corrections_supersede_and_deleted_cards_are_marked(store, faults_by_row):
    outcomes = defaultdict(int)
    deleted_cards: set[str] = set()
    for (source_file, row), faults in faults_by_row.items():
        for fault in faults:
            if fault["expected"] == "superseded":
                assert staged_row(store, fault["feed"], source_file, row, "is_current") == (False,), (source_file, row)
            elif fault["expected"] == "deleted":
                # Both the first version and the deleting version name the card; its current state is deleted.
                (card,) = staged_row(store, "case_reports", source_file, row, "card_id")
                outcomes["deleted"] += 1
                deleted_cards.add(card)
                continue
            else:
                continue
            outcomes[fault["expected"]] += 1
    assert outcomes["superseded"] > 0 and deleted_cards
    current = query(store, "SELECT card_id FROM staged_case_reports WHERE is_current AND is_deleted")
    assert {c for (c,) in current} == deleted_cards
    history = query(store, "SELECT count(*) FROM staged_case_reports WHERE card_id IN ? AND NOT is_current",
                    [sorted(deleted_cards)])
    assert history[0][0] >= len(deleted_cards), "the versions before the deletion are kept"


def test_file_level_faults(store):
    file_faults = [f for f in read_truth("faults.csv") if not f["row_number"]]
    audit = dict(query(store, "SELECT source_file, file_status FROM load_audit"))
    warnings = [w for (w,) in query(store, "SELECT warning FROM delivery_warnings")]
    kinds = set()
    for fault in file_faults:
        kinds.add(fault["fault"])
        if fault["fault"] == "unreadable_file":
            assert audit[fault["file"]] == "unreadable"
            assert query(store, "SELECT reason_codes FROM quarantine WHERE source_file = ?", [fault["file"]]) == [
                (["unreadable_file"],)]
        elif fault["fault"] == "empty_file":
            assert audit[fault["file"]] == "empty"
        elif fault["fault"] == "missing_feed":
            assert f"no {fault['feed']} file delivered on {fault['delivery_date']}" in warnings
        elif fault["fault"] == "census_stopped":   # the facility is absent from this census, present before
            codes = {c for (c,) in query(store, "SELECT facility_code FROM staged_facility_beds AS s "
                                         "JOIN load_audit AS a USING (load_id) WHERE a.source_file = ?", [fault["file"]])}
            earlier = query(store, "SELECT max(census_at) FROM staged_facility_beds WHERE facility_code = ?",
                            [fault["raw_value"]])[0][0]
            assert fault["raw_value"] not in codes and earlier is not None
            assert str(earlier.date()) < fault["delivery_date"]
    assert kinds == {"unreadable_file", "empty_file", "missing_feed", "census_stopped"}


def test_a_second_ingest_adds_nothing(store):
    tables = ["quarantine", "load_audit", *(f"staged_{feed}" for feed in load_schemas().feeds),
              *(f"raw_{feed}" for feed in load_schemas().feeds)]
    count = " UNION ALL ".join(f"SELECT '{t}', count(*) FROM {t}" for t in tables)
    before = query(store, count)
    outcomes = ingest_landing(SAMPLE / "landing", store)
    assert {o.status for o in outcomes} == {"skipped"}
    assert query(store, count) == before


def test_the_generator_is_deterministic(tmp_path):
    from samplecity import generate_city

    for name in ("a", "b"):
        generate_city(tmp_path / name, residents=400, days=4, seed=7)
    comparison = filecmp.dircmp(tmp_path / "a", tmp_path / "b")

    def differences(cmp) -> list[str]:
        found = cmp.diff_files + cmp.left_only + cmp.right_only + cmp.funny_files
        return found + [d for sub in cmp.subdirs.values() for d in differences(sub)]

    assert differences(comparison) == []
    assert sum(1 for _ in (tmp_path / "a" / "landing").rglob("*.*")) > 30
    for name in RESPONSE_FILES.values():
        assert len(list((tmp_path / "a" / "landing").glob(f"*/{name}"))) == 4, name
    for name in ("facilities.csv", "placements.csv", "areas.csv"):
        assert (tmp_path / "a" / "truth" / name).stat().st_size > 0


def test_the_shipped_sample_is_what_the_generator_makes(tmp_path):
    from samplecity import generate_city

    generate_city(tmp_path, residents=3000, days=5, seed=2020)
    for made in sorted((tmp_path / "landing").rglob("*.*")) + sorted((tmp_path / "truth").rglob("*.*")):
        shipped = SAMPLE / made.relative_to(tmp_path)
        assert shipped.read_bytes() == made.read_bytes(), shipped


# -- the response feeds: bed census, vehicles, isolation check-ins ------------------------------------------
RESPONSE_FILES = {"facility_beds": "health/facility_beds.csv", "vehicles": "command/vehicles.csv",
                  "isolation_checkins": "health/isolation_checkins.csv"}
RESPONSE_FAULTS = {"census_twice": "outdated", "beds_negative": "quarantined", "beds_fullwidth": "repaired",
                   "census_stopped": "stale", "beds_over_capacity": "flagged", "facility_type_unknown": "quarantined",
                   "seats_zero": "quarantined", "identity_empty": "quarantined", "not_in_register": "flagged",
                   "corrected_row": "superseded"}


def landed_rows(relative: str) -> list[dict]:
    with (SAMPLE / "landing" / relative).open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def delivery_dates() -> list[str]:
    return sorted(p.name for p in (SAMPLE / "landing").iterdir() if p.is_dir())


def test_the_response_feeds_are_written_every_day_with_the_contracts_headers():
    schemas = load_schemas()
    for feed, name in RESPONSE_FILES.items():
        (column_map,) = schemas.maps_for(feed)
        for day in delivery_dates():
            with (SAMPLE / "landing" / day / name).open(encoding="utf-8", newline="") as handle:
                header = next(csv.reader(handle))
            assert header == list(column_map.columns), (day, name)
            assert list(column_map.columns.values()) == [f.name for f in schemas.feeds[feed].fields]


def test_each_response_fault_is_in_faults_csv_and_in_its_file():
    faults = [f for f in read_truth("faults.csv") if f["feed"] in RESPONSE_FILES]
    by_class = defaultdict(list)
    for fault in faults:
        by_class[fault["fault"]].append(fault)
        assert fault["expected"] == RESPONSE_FAULTS[fault["fault"]], fault
    assert set(by_class) == set(RESPONSE_FAULTS)
    for fault_class, found in by_class.items():
        for fault in found:
            rows = landed_rows(fault["file"])
            if not fault["row_number"]:
                assert fault_class == "census_stopped"
                assert fault["raw_value"] not in {r["机构编码"] for r in rows}
                continue
            row = rows[int(fault["row_number"]) - 1]
            if fault["column"] and fault_class != "corrected_row":
                assert row[fault["column"]] == fault["raw_value"], fault
            if fault_class == "census_twice":      # the same facility later in the same file: that census is true
                later = [r for r in rows if r["机构编码"] == row["机构编码"] and r["统计时间"] > row["统计时间"]]
                assert len(later) == 1
            elif fault_class == "beds_negative":
                assert int(row[fault["column"]]) < 0
            elif fault_class == "beds_fullwidth":
                assert not row[fault["column"]].isascii() and unicodedata.normalize("NFKC", row[fault["column"]]).isdigit()
            elif fault_class == "beds_over_capacity":
                assert int(row["单间已用"]) > int(row["单间"])
            elif fault_class == "facility_type_unknown":
                assert row["机构类型"] == "临时安置点"
            elif fault_class == "seats_zero":
                assert row["座位数"] == "0"
            elif fault_class == "identity_empty":
                assert row["姓名"] == row["身份证号"] == row["联系电话"] == "" and row["登记编号"]
            elif fault_class == "not_in_register":
                assert idcard.is_valid(row["身份证号"]) and row["姓名"] and len(row["联系电话"]) == 11
            elif fault_class == "corrected_row":   # delivered again later with its leaving time
                assert row["离开时间"] == ""
                again = [r for day in delivery_dates() if day > fault["delivery_date"]
                         for r in landed_rows(f"{day}/{RESPONSE_FILES['isolation_checkins']}")
                         if r["登记编号"] == row["登记编号"]]
                assert len(again) == 1 and again[0]["离开时间"] > again[0]["入住时间"]
    persons = {p["person_key"]: p for p in read_truth("persons.csv")}
    owner = {(r["file"], int(r["row_number"])): r["person_key"] for r in read_truth("records.csv")}
    for fault in by_class["not_in_register"]:
        assert persons[owner[(fault["file"], int(fault["row_number"]))]]["in_register"] == "false"


def test_the_response_faults_are_handled_as_the_contract_says(store):
    (raw, file, row), = [(f["raw_value"], f["file"], int(f["row_number"])) for f in read_truth("faults.csv")
                         if f["fault"] == "beds_fullwidth"]
    assert staged_row(store, "facility_beds", file, row, "general_beds") == (int(unicodedata.normalize("NFKC", raw)),)
    (file, row), = [(f["file"], int(f["row_number"])) for f in read_truth("faults.csv")
                    if f["fault"] == "beds_over_capacity"]
    assert staged_row(store, "facility_beds", file, row, "single_rooms_occupied > single_rooms") == (True,)
    reasons = {c for (codes,) in query(store, "SELECT reason_codes FROM quarantine WHERE feed IN "
                                       "('facility_beds', 'vehicles', 'isolation_checkins')") for c in codes}
    assert reasons == {"invalid_enum:facility_type", "out_of_range:single_rooms_occupied", "out_of_range:seats",
                       "identity_empty"}


def test_truth_placements_are_the_checkin_rows_and_the_isolating_admissions():
    owner = {(r["file"], int(r["row_number"])): r["person_key"] for r in read_truth("records.csv")}
    latest = {}
    for day in delivery_dates():
        name = f"{day}/{RESPONSE_FILES['isolation_checkins']}"
        for n, row in enumerate(landed_rows(name), start=1):
            latest[(row["隔离点编码"], row["登记编号"])] = (owner[(name, n)], row["隔离点编码"], row["入住时间"],
                                                     row["离开时间"])
    placements = read_truth("placements.csv")
    assert [(p["person_key"], p["arrived_at"]) for p in placements] == sorted(
        (p["person_key"], p["arrived_at"]) for p in placements)
    stays = [(p["person_key"], p["facility_code"], p["arrived_at"], p["left_at"]) for p in placements
             if p["facility_type"] == "集中隔离点"]
    assert sorted(stays) == sorted(latest.values())
    assert all(p["bed_kind"] == "single_room" for p in placements if p["facility_type"] == "集中隔离点")
    # The person was a contact (named in an investigation) or under suspicion (a clinic visit, or a case) first.
    facilities = {f["facility_code"]: f for f in read_truth("facilities.csv")}
    feeds_of = defaultdict(set)
    for r in read_truth("records.csv"):
        if r["person_key"]:
            feeds_of[r["person_key"]].add(r["feed"])
    cases = {c["person_key"] for c in read_truth("cases.csv")}
    for person, code, _, _ in stays:
        if "密接" in facilities[code]["admits"]:
            assert "investigations" in feeds_of[person], person
        else:
            assert "fever_clinic" in feeds_of[person] or person in cases, person
    # Admissions to H03 and FC01: the inpatients rows, in their latest state.
    admissions = {}
    for day in delivery_dates():
        name = f"{day}/hospital/inpatients.csv"
        with (SAMPLE / "landing" / name).open(encoding="utf-8-sig", newline="") as handle:
            for n, row in enumerate(csv.DictReader(handle), start=1):
                if row["医院编码"] in ("H03", "FC01"):
                    admissions[row["住院号"]] = (owner[(name, n)], row["医院编码"],
                                                "icu" if "重症" in row["病区"] else "general")
    held = sorted((p["person_key"], p["facility_code"], p["bed_kind"]) for p in placements
                  if p["facility_type"] in ("定点医院", "方舱医院"))
    assert held == sorted(admissions.values())


def test_the_census_of_the_designated_hospital_is_its_admissions():
    placements = [p for p in read_truth("placements.csv") if p["facility_code"] in ("H03", "FC01")]
    checked = 0
    for day in delivery_dates():
        for row in landed_rows(f"{day}/{RESPONSE_FILES['facility_beds']}"):
            if row["机构编码"] not in ("H03", "FC01"):
                continue
            at = row["统计时间"]
            here = [p for p in placements if p["facility_code"] == row["机构编码"] and p["arrived_at"] <= at
                    and (not p["left_at"] or p["left_at"] > at)]
            later = [r for r in landed_rows(f"{day}/{RESPONSE_FILES['facility_beds']}")
                     if r["机构编码"] == row["机构编码"] and r["统计时间"] > at]
            if later:
                continue     # the preliminary census of a facility reported twice
            assert int(row["重症已用"]) == sum(p["bed_kind"] == "icu" for p in here), row
            assert int(row["普通已用"]) == sum(p["bed_kind"] == "general" for p in here), row
            checked += 1
    assert checked >= 2 * len(delivery_dates())


def test_truth_facilities_are_the_latest_true_census():
    facilities = {f["facility_code"]: f for f in read_truth("facilities.csv")}
    census = defaultdict(list)
    for day in delivery_dates():
        for row in landed_rows(f"{day}/{RESPONSE_FILES['facility_beds']}"):
            census[row["机构编码"]].append(row)
    assert set(facilities) == set(census) - {code for code, rows in census.items() if rows[0]["机构类型"] == "临时安置点"}
    short = []
    for code, f in facilities.items():
        last = max(census[code], key=lambda r: r["统计时间"])
        assert f["last_census_at"] == last["统计时间"]
        assert (f["facility_type"], f["district"], f["admits"]) == (last["机构类型"], last["所在区"], last["收治对象"])
        for column, kind in (("重症床位", "icu_beds"), ("普通床位", "general_beds"), ("单间", "single_rooms")):
            assert unicodedata.normalize("NFKC", last[column]) == f[kind], (code, column)
        short += [(code, r["统计时间"]) for r in census[code] if r["单间"] != "0" and r["单间已用"] == r["单间"]]
    assert short, "an isolation point runs full on some day"
    assert {f["district"] for f in facilities.values()} == {"江岸区", "武昌区"}


def test_truth_areas_are_the_case_compounds_and_hotels():
    cases = {c["person_key"]: c for c in read_truth("cases.csv")}
    owner = {(r["file"], int(r["row_number"])): r["person_key"] for r in read_truth("records.csv")}
    compound_of = {}
    for day in delivery_dates():
        name = f"{day}/civil/residents.csv"
        for n, row in enumerate(landed_rows(name), start=1):
            compound_of[owner[(name, n)]] = (row["区"], row["社区编码"], row["小区"])
    expected = defaultdict(set)
    for person in cases:
        if person in compound_of:
            expected[compound_of[person]].add(person)
    areas = read_truth("areas.csv")
    keys = [(a["scope"], a["district"], a["community_code"], a["compound"], a["hotel_code"]) for a in areas]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    compounds = {(a["district"], a["community_code"], a["compound"]): set(a["case_person_keys"].split(";"))
                 for a in areas if a["scope"] == "compound"}
    assert compounds == expected
    for a in areas:
        members = a["case_person_keys"].split(";")
        assert members == sorted(members) and all(m in cases for m in members)
        reported = sorted(cases[m]["reported_at"] for m in members if cases[m]["reported_at"])
        assert (a["first_reported_at"], a["last_reported_at"]) == ((reported[0], reported[-1]) if reported else ("", ""))
        assert bool(a["hotel_code"]) == (a["scope"] == "hotel") and bool(a["compound"]) == (a["scope"] == "compound")
    hotels = [a for a in areas if a["scope"] == "hotel"]
    assert hotels and all(a["hotel_code"] in {r["旅馆编码"] for day in delivery_dates()
                                              for r in landed_rows(f"{day}/police/lodging.csv")} for a in hotels)
