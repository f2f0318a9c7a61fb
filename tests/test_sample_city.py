"""The whole ingestion on the shipped sample city, checked against what the generator knows
(``data/sample/truth/``): every row accounted for, every injected fault handled as it must be."""

from __future__ import annotations

import csv
import filecmp
from collections import defaultdict
from pathlib import Path

import pytest

from tests.conftest import PROJECT, ingest_landing, query
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
                     "time_order:discharged_at"}
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
            truth = persons[owner[(source_file, row)]]
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
    assert kinds == {"unreadable_file", "empty_file", "missing_feed"}


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


def test_the_shipped_sample_is_what_the_generator_makes(tmp_path):
    from samplecity import generate_city

    generate_city(tmp_path, residents=3000, days=5, seed=2020)
    for made in sorted((tmp_path / "landing").rglob("*.*")) + sorted((tmp_path / "truth").rglob("*.*")):
        shipped = SAMPLE / made.relative_to(tmp_path)
        assert shipped.read_bytes() == made.read_bytes(), shipped
