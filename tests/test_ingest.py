"""Ingestion on small named landing folders: each fault class, encodings, formats, history, audit."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import duckdb
import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import LAB_HEADER, ingest_landing, lab_row, query, write_csv
from trace24 import idcard
from trace24.schemas.contracts import load_schemas
from trace24.transforms import database, normalise
from trace24.transforms.ingest import staged


def staged_labs(db_path):
    return query(db_path, "SELECT sample_id, name, id_number, id_number_status, phone, phone_kind, sampled_at, "
                          "result, is_current FROM staged_lab_results ORDER BY load_id, source_row_number")


def quarantined(db_path):
    return query(db_path, "SELECT source_file, source_row_number, reason_codes, reasons, raw_values "
                          "FROM quarantine ORDER BY load_id, source_row_number")


def audit(db_path):
    return query(db_path, "SELECT source_file, file_status, rows_read, rows_loaded, rows_quarantined, "
                          "rows_superseded, encoding FROM load_audit ORDER BY load_id")


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk"])
def test_every_encoding_loads_the_same_rows(day1, db_path, encoding):
    write_csv(day1 / "cdc" / "lab_results.csv", LAB_HEADER,
              [lab_row(), lab_row("S2", name="王芳", id_number="440524188001010014")], encoding=encoding)
    ingest_landing(day1.parent, db_path)
    rows = staged_labs(db_path)
    assert [(r[0], r[1], r[2]) for r in rows] == [("S1", "张伟", "11010519491231002X"),
                                                  ("S2", "王芳", "440524188001010014")]
    assert audit(db_path)[0][6] == {"utf-8": "utf-8", "utf-8-sig": "utf-8-sig", "gbk": "gb18030"}[encoding]


def test_repairable_faults_are_repaired_not_quarantined(day1, db_path):
    write_csv(day1 / "cdc" / "lab_results.csv", LAB_HEADER, [
        lab_row("S1", name=" 张 伟 ", id_number="11010519491231002x", phone="+86 138-0013-8000",
                sampled="2020/2/3 14:05"),
        lab_row("S2", name="王\u3000芳", id_number="１１０１０５１９４９１２３１００２Ｘ", phone="86 13800138000",
                sampled="2020年2月3日 14时05分"),
        lab_row("S3", id_number="110105-19491231-002X", sampled="2020-02-03", reported="2020-02-03"),
        lab_row("S4", id_number="440524800101001", phone="0086 13800138000"),
    ])
    ingest_landing(day1.parent, db_path)
    assert quarantined(db_path) == []
    rows = {r[0]: r for r in staged_labs(db_path)}
    assert rows["S1"][1:7] == ("张伟", "11010519491231002X", "valid", "13800138000", "mobile",
                               dt.datetime(2020, 2, 3, 14, 5))
    assert rows["S2"][1:4] == ("王芳", "11010519491231002X", "valid")
    assert rows["S2"][6] == dt.datetime(2020, 2, 3, 14, 5)
    assert rows["S3"][2:4] == ("11010519491231002X", "valid")
    assert rows["S4"][2:4] == (idcard.upgrade_15_to_18("440524800101001"), "upgraded_15")


def test_flagged_faults_are_loaded_with_their_status(day1, db_path):
    write_csv(day1 / "cdc" / "lab_results.csv", LAB_HEADER, [
        lab_row("S1", id_number="110105194912310021"),  # wrong check character
        lab_row("S2", id_number="", phone="027-85123456"),
        lab_row("S3", id_number="E12345678", phone=""),
    ])
    ingest_landing(day1.parent, db_path)
    rows = {r[0]: r for r in staged_labs(db_path)}
    assert (rows["S1"][2], rows["S1"][3]) == ("110105194912310021", "invalid_checksum")
    assert (rows["S2"][3], rows["S2"][4], rows["S2"][5]) == ("missing", "02785123456", "landline")
    assert (rows["S3"][2], rows["S3"][3], rows["S3"][5]) == ("E12345678", "passport", "missing")


def test_unrepairable_rows_are_quarantined_with_every_reason(day1, db_path):
    write_csv(day1 / "cdc" / "lab_results.csv", LAB_HEADER, [
        lab_row("S1"),
        lab_row("S2", result=""),
        ["", "", "", "", "昨天下午", "", "", "阳性", "", "", ""],
        lab_row("S4", sampled="2020-02-05 10:00", reported="2020-02-04 09:00"),
        lab_row("S5", result="阳性?", reason="路过"),
    ])
    ingest_landing(day1.parent, db_path)
    found = {row: (codes, reasons) for _, row, codes, reasons, _ in quarantined(db_path)}
    assert found[2][0] == ["missing:result"]
    assert found[2][1] == ["检测结果: required value is empty"]
    assert found[3][0] == ["missing:sample_id", "invalid_timestamp:sampled_at", "identity_empty"]
    assert found[4][0] == ["time_order:reported_at:sampled_at"]
    assert found[4][1] == ["报告时间 is before 采样时间"]
    assert found[5][0] == ["invalid_enum:result", "invalid_enum:test_reason"]
    assert [r[0] for r in staged_labs(db_path)] == ["S1"]
    assert audit(db_path)[0][2:6] == (5, 1, 4, 0)


def test_quarantine_keeps_the_raw_values_under_the_agencys_headers(day1, db_path):
    write_csv(day1 / "cdc" / "lab_results.csv", LAB_HEADER, [lab_row("S9", result="")])
    ingest_landing(day1.parent, db_path)
    raw = json.loads(quarantined(db_path)[0][4])
    assert raw["样本编号"] == "S9" and raw["检测结果"] == "" and raw["身份证号"] == "11010519491231002X"


def test_duplicate_row_and_malformed_line(day1, db_path):
    path = write_csv(day1 / "cdc" / "lab_results.csv", LAB_HEADER, [lab_row("S1"), lab_row("S1"), lab_row("S2")])
    with path.open("a", encoding="utf-8") as handle:
        handle.write("S3,李四,110105194912310021,13800138000,2020-02-03,2020-02-03,疾控,阴性,,,筛查,多余\n")
    ingest_landing(day1.parent, db_path)
    found = {row: codes for _, row, codes, _, _ in quarantined(db_path)}
    assert found == {2: ["duplicate_row"], 4: ["malformed_line"]}
    assert audit(db_path)[0][2:5] == (4, 2, 2)


def test_xlsx_with_excel_serial_times_and_datetime_cells(day1, db_path):
    header = ["就诊流水号", "医院编码", "医院名称", "就诊时间", "姓名", "性别", "年龄", "身份证号", "联系电话", "现住址", "体温",
              "症状", "胸部CT", "白细胞计数", "淋巴细胞计数", "诊断", "去向"]
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(header)
    sheet.append(["V1", "H01", "一医院", 43864.5868055556, "张伟", "男", 45, "11010519491231002X", "13800138000",
                  "江岸区", "38.2℃", "发热;干咳", "双肺磨玻璃影", 4.1, 0.8, "疑似新冠肺炎", "留观"])
    sheet.append(["V2", "H01", "一医院", dt.datetime(2020, 2, 3, 15, 30), "王芳", "女", 30, "", "13800138001",
                  "", 382, "发热", "", "", "", "发热待查", "居家"])
    sheet.append(["V3", "H01", "一医院", "2020/2/3 16:00", "李四", "男", 50, "", "13800138002", "", "发烧", "", "",
                  "", "", "发热待查", "居家"])
    (day1 / "hospital").mkdir()
    book.save(day1 / "hospital" / "fever_clinic_H01.xlsx")
    ingest_landing(day1.parent, db_path)
    rows = query(db_path, "SELECT visit_id, visited_at, temperature_c, age FROM staged_fever_clinic ORDER BY visit_id")
    assert rows == [("V1", dt.datetime(2020, 2, 3, 14, 5), 38.2, 45), ("V2", dt.datetime(2020, 2, 3, 15, 30), 38.2, 30)]
    assert [(r[1], r[2]) for r in quarantined(db_path)] == [(3, ["invalid_temperature:temperature_c"])]


def test_parquet_place_scans(day1, db_path):
    (day1 / "police").mkdir()
    table = pa.table({
        "场所编码": ["V1", "V1", "V2"], "场所名称": ["餐馆", "餐馆", "超市"], "场所类型": ["餐饮", "餐饮", "商超"],
        "场所地址": ["路1号"] * 3, "证件号码": ["11010519491231002x", "11010519491231002x", ""],
        "手机号": ["+86 13800138000", "+86 13800138000", ""],
        "扫码时间": pa.array([dt.datetime(2020, 2, 3, 12, 0)] * 3, pa.timestamp("s")),
    })
    pq.write_table(table, day1 / "police" / "place_scans.parquet")
    ingest_landing(day1.parent, db_path)
    rows = query(db_path, "SELECT source_row_number, id_number, phone, scanned_at FROM staged_place_scans")
    assert rows == [(1, "11010519491231002X", "13800138000", dt.datetime(2020, 2, 3, 12, 0))]
    assert {r[1]: r[2] for r in quarantined(db_path)} == {2: ["duplicate_row"], 3: ["identity_empty"]}


def test_typed_times_and_per_value_columns_stage_as_text_cells_per_row_do():
    """A Parquet TIMESTAMP is used as is and low_cardinality columns are typed once per distinct
    value: both are shortcuts, so the rows and reasons must be those of text cells typed per row."""
    schemas = load_schemas()
    contract = schemas.feeds["place_scans"]
    per_row = dataclasses.replace(
        contract, fields=tuple(dataclasses.replace(f, low_cardinality=False) for f in contract.fields))
    assert per_row != contract
    con = duckdb.connect()
    normalise.register(con)
    rows = [
        (" v1 ", "餐馆  一号", "餐饮", "路1号", "11010519491231002x", "13800138000", "2020-02-03 12:00:00"),
        ("Ｖ１", "\u3000ＡＢＣ 店\u3000", " 商超 ", None, "11010519491231002X", None, "2020-02-03 12:00:00"),
        (None, "", "其它", "路 2 号", None, "+86 13800138000", "2020-02-03 12:00:01"),
        ("V2", "超市", None, "路1号", "", "", None),
        (" v1 ", "餐馆  一号", "餐饮", "路1号", "11010519491231002x", "13800138000", "2020-02-03 12:00:00"),
    ]
    con.execute("CREATE TABLE cells (venue_code VARCHAR, venue_name VARCHAR, venue_type VARCHAR, "
                "venue_address VARCHAR, id_number VARCHAR, phone VARCHAR, scanned_at VARCHAR)")
    con.executemany("INSERT INTO cells VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    lineage = ("SELECT 1 AS load_id, DATE '2020-02-03' AS delivery_date, 'f' AS source_file, "
               "row_number() OVER () AS source_row_number, ")
    params = staged.query_parameters(contract, schemas.column_maps["police_place_scans"])

    def stage(feed_contract, source, typed_columns=frozenset()):
        sql = staged.staging_query(feed_contract, source, typed_columns)
        return con.execute(f"SELECT * FROM ({sql}) ORDER BY source_row_number", database.bound_parameters(sql, params)).fetchall()

    expected = stage(per_row, lineage + "* FROM cells")
    typed = stage(contract, lineage + "* REPLACE (CAST(scanned_at AS TIMESTAMP) AS scanned_at) FROM cells",
                  frozenset({"scanned_at"}))
    assert typed == expected
    assert [r[-1] for r in expected] == [[], [], ["missing:venue_code", "invalid_enum:venue_type"],
                                         ["missing:scanned_at", "identity_empty"], ["duplicate_row"]]


def test_unreadable_and_empty_files_and_missing_feeds(day1, db_path):
    (day1 / "hospital").mkdir()
    (day1 / "hospital" / "fever_clinic_H01.xlsx").write_bytes(b"this is not a workbook")
    write_csv(day1 / "cdc" / "lab_results.csv", LAB_HEADER, [])
    outcomes = ingest_landing(day1.parent, db_path)
    assert sorted(o.status for o in outcomes) == ["empty", "unreadable"]
    bad = quarantined(db_path)
    assert len(bad) == 1 and bad[0][1] is None and bad[0][2] == ["unreadable_file"]
    assert "not a readable .xlsx workbook" in bad[0][3][0]
    warnings = [w for (w,) in query(db_path, "SELECT warning FROM delivery_warnings")]
    assert "no place_scans file delivered on 2020-02-10" in warnings
    assert not any("lab_results" in w for w in warnings)


def test_headers_that_match_no_column_map_quarantine_the_file(day1, db_path):
    write_csv(day1 / "cdc" / "lab_results.csv", ["编号", "结果"], [["S1", "阳性"]])
    ingest_landing(day1.parent, db_path)
    (message,) = quarantined(db_path)[0][3]
    assert "match no column map" in message and "schemas/column_maps" in message


def test_correction_supersedes_and_deletion_marks(tmp_path, db_path):
    landing_dir = tmp_path / "landing"
    header = ["卡片编号", "姓名", "性别", "出生日期", "身份证号", "联系电话", "现住地址", "现住地址编码", "发病日期", "诊断时间",
              "报告时间", "病例分类", "临床严重程度", "报告单位", "卡片状态"]

    def card(card_id, case_class, status, phone="13800138000"):
        return [card_id, "张伟", "男", "1949-12-31", "11010519491231002X", phone, "江岸区", "", "2020-02-01",
                "2020-02-03 10:00", "2020-02-03 11:00", case_class, "普通型", "一医院", status]

    write_csv(landing_dir / "2020-02-10" / "cdc" / "case_reports.csv", header,
              [card("C1", "疑似病例", "新增"), card("C2", "确诊病例", "新增")])
    write_csv(landing_dir / "2020-02-11" / "cdc" / "case_reports.csv", header,
              [card("C1", "确诊病例", "订正", phone="13900139000"), card("C2", "确诊病例", "删除")])
    ingest_landing(landing_dir, db_path)
    rows = query(db_path, "SELECT card_id, delivery_date, case_class, phone, is_current, is_deleted "
                          "FROM staged_case_reports ORDER BY card_id, delivery_date")
    assert rows == [
        ("C1", dt.date(2020, 2, 10), "疑似病例", "13800138000", False, False),
        ("C1", dt.date(2020, 2, 11), "确诊病例", "13900139000", True, False),
        ("C2", dt.date(2020, 2, 10), "确诊病例", "13800138000", False, False),
        ("C2", dt.date(2020, 2, 11), "确诊病例", "13800138000", True, True),
    ]
    assert [a[5] for a in audit(db_path)] == [0, 2]


def test_a_second_ingest_of_the_same_landing_adds_nothing(day1, db_path):
    write_csv(day1 / "cdc" / "lab_results.csv", LAB_HEADER, [lab_row("S1"), lab_row("S2", result="")])
    first = ingest_landing(day1.parent, db_path)
    counts = "SELECT (SELECT count(*) FROM staged_lab_results), (SELECT count(*) FROM quarantine), " \
             "(SELECT count(*) FROM raw_lab_results), (SELECT count(*) FROM load_audit)"
    before = query(db_path, counts)
    second = ingest_landing(day1.parent, db_path)
    assert [o.status for o in first] == ["loaded"] and [o.status for o in second] == ["skipped"]
    assert query(db_path, counts) == before


def test_unchanged_files_are_not_read_again_and_a_rewritten_one_is(day1, db_path, monkeypatch):
    """Hourly runs over months of deliveries: a file with the path, size and modification time of one
    hashed before is not read again; a file rewritten in place (same size, new content) is."""
    import os

    from trace24.transforms.ingest import landing as landing_module

    path = write_csv(day1 / "cdc" / "lab_results.csv", LAB_HEADER, [lab_row("S1")])
    ingest_landing(day1.parent, db_path)
    real_sha256 = landing_module.sha256_of

    def must_not_read(p):
        raise AssertionError(f"{p} was read again")

    monkeypatch.setattr(landing_module, "sha256_of", must_not_read)
    assert [o.status for o in ingest_landing(day1.parent, db_path)] == ["skipped"]
    write_csv(path, LAB_HEADER, [lab_row("S2")])            # same size, other content
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    monkeypatch.setattr(landing_module, "sha256_of", real_sha256)
    assert [o.status for o in ingest_landing(day1.parent, db_path)] == ["loaded"]
    assert query(db_path, "SELECT sample_id FROM staged_lab_results WHERE is_current ORDER BY 1") == [("S1",), ("S2",)]


def test_a_file_that_fails_half_way_leaves_nothing_behind(day1, db_path, monkeypatch):
    write_csv(day1 / "cdc" / "lab_results.csv", LAB_HEADER, [lab_row("S1")])
    ingest_landing(day1.parent, db_path)
    write_csv(day1.parent / "2020-02-11" / "cdc" / "lab_results.csv", LAB_HEADER, [lab_row("S1", result="阴性")])

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(staged, "_supersede", broken)
    with pytest.raises(OSError, match="disk full"):
        ingest_landing(day1.parent, db_path)
    assert query(db_path, "SELECT count(*) FROM raw_lab_results") == [(1,)]
    assert staged_labs(db_path)[0][7:] == ("阳性", True)
    monkeypatch.undo()
    ingest_landing(day1.parent, db_path)
    assert [(r[7], r[8]) for r in staged_labs(db_path)] == [("阳性", False), ("阴性", True)]


def test_reason_messages_name_the_source_header():
    from trace24.schemas.contracts import load_schemas

    column_map = load_schemas().column_maps["hospital_fever_clinic"]
    assert staged.reason_message("invalid_temperature:temperature_c", column_map) == "体温: not a body temperature in °C"


def test_the_fast_csv_reader_numbers_rows_like_the_python_reader(tmp_path, monkeypatch):
    """DuckDB reads UTF-8 CSV in parallel; its row numbers must still be the file's own."""
    from trace24.transforms.ingest import raw

    rows = [lab_row(f"S{i:07d}", name=f"人{i}", sampled=f"2020-02-03 {i % 24:02d}:00:00", reported="2020-02-04")
            for i in range(1, 300_001)]
    rows[1234][2] = "1101-0519491231002x"
    write_csv(tmp_path / "landing" / "2020-02-10" / "cdc" / "lab_results.csv", LAB_HEADER, rows)
    fast_db, slow_db = tmp_path / "fast.duckdb", tmp_path / "slow.duckdb"
    ingest_landing(tmp_path / "landing", fast_db)
    monkeypatch.setattr(raw, "_load_utf8_csv", lambda *args: None)
    ingest_landing(tmp_path / "landing", slow_db)
    sql = "SELECT source_row_number, sample_id, name, id_number FROM raw_lab_results ORDER BY source_row_number"
    fast, slow = query(fast_db, sql), query(slow_db, sql)
    assert fast == slow
    assert all(number == int(sample_id[1:]) for number, sample_id, _, _ in fast)
    assert fast[1234][3] == "1101-0519491231002x"


def test_loads_validated_together_are_judged_file_by_file(day1, db_path):
    """Great Expectations runs once for a feed's new loads; a load that breaks its contract is still
    reported against its own file, and the others pass with their own row counts."""
    from trace24.transforms.ingest.validate import Validator

    write_csv(day1 / "cdc" / "lab_results.csv", LAB_HEADER, [lab_row("S1"), lab_row("S2")])
    write_csv(day1 / "cdc" / "lab_results_b.csv", LAB_HEADER, [lab_row("S3"), lab_row("S4"), lab_row("S5")])
    ingest_landing(day1.parent, db_path)
    schemas = load_schemas()
    with database.connect(db_path, schemas) as con:
        loads = con.execute("SELECT load_id, source_file FROM load_audit WHERE feed = 'lab_results' "
                            "ORDER BY load_id").fetchall()
        validator = Validator(db_path)
        together = validator.validate_loads(con, schemas.feeds["lab_results"], loads)
        assert together == {loads[0][0]: True, loads[1][0]: True}
        # Staged rows that break the contract (as only a bug in staging could make them).
        con.execute("UPDATE staged_lab_results SET result = '不明' WHERE load_id = ? AND sample_id = 'S4'",
                    [loads[1][0]])
        con.execute("DELETE FROM validation_results")
        verdicts = validator.validate_loads(con, schemas.feeds["lab_results"], loads)
        results = con.execute("""SELECT load_id, column_name, success, element_count, unexpected_count
                                 FROM validation_results WHERE expectation = 'expect_column_values_to_be_in_set'
                                   AND column_name = 'result' ORDER BY load_id""").fetchall()
    assert verdicts == {loads[0][0]: True, loads[1][0]: False}
    assert results == [(loads[0][0], "result", True, 2, 0), (loads[1][0], "result", False, 3, 1)]


BEDS_HEADER = ["机构编码", "机构名称", "机构类型", "所在区", "地址", "收治对象", "重症床位", "重症已用", "普通床位",
               "普通已用", "单间", "单间已用", "统计时间"]
VEHICLES_HEADER = ["车辆编号", "所属区", "车辆类型", "座位数", "值班开始", "值班结束"]
CHECKINS_HEADER = ["登记编号", "隔离点编码", "房间号", "姓名", "身份证号", "联系电话", "入住时间", "离开时间"]


def test_the_response_feeds_set_their_faults_aside_and_load_the_rest(day1, db_path):
    beds = ["GL01", "一号隔离点", "集中隔离点", "江岸区", "", "密接;次密接", "0", "0", "0", "0", "200", "150"]
    write_csv(day1 / "health" / "facility_beds.csv", BEDS_HEADER, [
        [*beds, "2020-02-10 08:00"],
        [*beds[:10], "２００", "１６０", "2020-02-10 18:00"],                  # full-width: read
        ["LS01", "临时点", "临时安置点", "江岸区", "", "密接", "0", "0", "0", "0", "50", "0", "2020-02-10 08:00"],
        ["FC01", "方舱", "方舱医院", "武昌区", "", "确诊轻症", "0", "0", "800", "-3", "0", "0", "2020-02-10 08:00"],
    ])
    write_csv(day1 / "command" / "vehicles.csv", VEHICLES_HEADER, [
        ["JA-120-1", "江岸区", "负压救护车", "2", "2020-02-10 08:00", "2020-02-10 20:00"],
        ["JA-BUS-9", "江岸区", "转运大巴", "0", "2020-02-10 08:00", "2020-02-10 20:00"],
    ])
    write_csv(day1 / "health" / "isolation_checkins.csv", CHECKINS_HEADER, [
        ["K1", "GL01", "301", "张伟", "11010519491231002X", "13800138000", "2020-02-10 15:00", ""],
        ["K2", "GL01", "302", "", "", "", "2020-02-10 15:30", ""],
        ["K3", "GL01", "303", "Anna Müller", "C12345678", "13900139000", "2020-02-10 16:00", ""],   # a visitor
    ])
    ingest_landing(day1.parent, db_path)
    reasons = {(feed, row): codes for feed, row, codes in query(
        db_path, "SELECT feed, source_row_number, reason_codes FROM quarantine ORDER BY ALL")}
    assert reasons == {("facility_beds", 3): ["invalid_enum:facility_type"],
                       ("facility_beds", 4): ["out_of_range:general_occupied"],
                       ("vehicles", 2): ["out_of_range:seats"],
                       ("isolation_checkins", 2): ["identity_empty"]}
    assert query(db_path, "SELECT single_rooms, single_rooms_occupied FROM staged_facility_beds "
                          "ORDER BY census_at") == [(200, 150), (200, 160)]
    assert query(db_path, "SELECT checkin_id FROM staged_isolation_checkins ORDER BY 1") == [("K1",), ("K3",)]
    counts = query(db_path, "SELECT feed, rows_read, rows_loaded, rows_quarantined FROM load_audit "
                            "WHERE feed IN ('facility_beds', 'vehicles', 'isolation_checkins') ORDER BY feed")
    assert counts == [("facility_beds", 4, 2, 2), ("isolation_checkins", 3, 2, 1), ("vehicles", 2, 1, 1)]


RETURN_HEADER = ["回执编号", "处置结果", "落实时间", "经办人", "备注"]


def _returns_landing(landing_dir, late: bool) -> None:
    """Small returned files as an office's day brings them: corrections within a day and across
    days, a repeated row, bad values, a malformed line, an unreadable and an empty workbook."""
    day, key = landing_dir / "2020-02-12" / "community", "R{:016X}".format
    if not late:
        write_csv(day / "list_returns_420106001001.csv", RETURN_HEADER, [
            [key(1), "已落实居家隔离", "2020-02-12 09:00", "李", ""],
            [key(1), "已落实居家隔离", "2020-02-12 09:00", "李", ""],        # repeated within the file
            [key(2), "联系不上", "2020-02-12 10:00", "李", ""],
            [key(3), "居家", "2020-02-12 10:00", "李", ""],                 # not a drop-down value
        ])
        book = openpyxl.Workbook()
        book.active.append(["姓名", *RETURN_HEADER])
        book.active.append(["张伟", key(2), "已集中隔离", "2020-02-12 15:00", "王", "找到了"])  # corrects 001's
        book.active.append(["李娜", key(4), "已送医", "2020-02-13 08:00", "王", ""])   # after the delivery day
        book.save(day / "list_returns_420106001002.xlsx")
        (day / "list_returns_420106001003.xlsx").write_bytes(b"not a workbook")
        (day / "list_returns_420106001004.csv").write_text(
            ",".join(RETURN_HEADER) + "\n" + f"{key(5)},拒不配合,2020-02-12 11:00,赵,,多余\n"
            + f"{key(6)},已离汉,2020-02-12 11:00,赵,武昌\n"
            + f"{key(2)},联系不上,2020-02-12 10:00,李,\n", encoding="utf-8")   # 001's row again: no repeat
        write_csv(day / "list_returns_420106001005.csv", RETURN_HEADER, [])
        write_csv(day / "health_checks_420106001001.csv", ["回执编号", "监测日期", "体温", "症状", "监测状态"],
                  [[key(1), "2020-02-12", "36.6", "无", "继续观察"], [key(1), "2020-02-12", "38.2", "发热", "继续观察"]])
        return
    # The next run: a late file of the day before and a correction of the day after.
    write_csv(landing_dir / "2020-02-11" / "community" / "list_returns_420106001009.csv", RETURN_HEADER,
              [[key(2), "查无此人", "2020-02-11 20:00", "周", ""], [key(7), "已转运", "2020-02-11 20:00", "周", ""]])
    write_csv(landing_dir / "2020-02-13" / "community" / "list_returns_420106001001.csv", RETURN_HEADER,
              [[key(2), "已落实居家隔离", "2020-02-13 09:00", "李", ""], [key(6), "已离汉", "2020-02-13 09:00", "赵", ""]])


def _store_contents(db_path) -> dict[str, list[tuple]]:
    with duckdb.connect(str(db_path), read_only=True) as con:
        tables = [t for (t,) in con.execute("SELECT table_name FROM information_schema.tables "
                                            "WHERE table_name <> 'ingest_runs' ORDER BY 1").fetchall()]
        return {t: con.execute(f'SELECT * FROM "{t}" ORDER BY ALL').fetchall() for t in tables}


def test_a_feeds_small_files_loaded_together_give_what_loading_them_one_by_one_gives(tmp_path, monkeypatch):
    """Batched loading is a shortcut: every table (raw, staged, quarantine, audit with its counts of
    superseded rows) must be what one file per transaction, each inserted by its own statement,
    gives, over the sample city's deliveries and a day of offices' returns, across two runs."""
    import shutil
    from pathlib import Path

    from trace24.transforms.ingest import load, raw

    landing_dir = tmp_path / "landing"
    shutil.copytree(Path(__file__).resolve().parents[1] / "data" / "sample" / "landing", landing_dir)
    _returns_landing(landing_dir, late=False)
    batched, one_by_one = tmp_path / "batched.duckdb", tmp_path / "one_by_one.duckdb"
    for late in (False, True):
        if late:
            _returns_landing(landing_dir, late=True)
        outcomes = ingest_landing(landing_dir, batched)
        with monkeypatch.context() as patch:
            patch.setattr(load, "ingest_files", lambda con, schemas, files, run_id, archive_dir, on_file=None: [
                load.ingest_file(con, schemas, f, run_id, archive_dir) for f in files])
            # And every file inserted by its own statement (DuckDB's CSV reader, the SQL column map),
            # not read in Python and inserted with its batch.
            patch.setattr(raw, "PYTHON_READ_BYTES", -1)
            alone = ingest_landing(landing_dir, one_by_one)
        assert outcomes == alone
    assert {o.status for o in outcomes} == {"skipped", "loaded"}
    got, expected = _store_contents(batched), _store_contents(one_by_one)
    assert list(got) == list(expected)
    for table in expected:
        assert got[table] == expected[table], table
    audit_rows = {r[5]: r for r in expected["load_audit"]}
    assert audit_rows["2020-02-12/community/list_returns_420106001003.xlsx"][10] == "unreadable"
    assert audit_rows["2020-02-12/community/list_returns_420106001005.csv"][10] == "empty"
    assert audit_rows["2020-02-12/community/list_returns_420106001002.xlsx"][14] == 1   # key 2 of 001
    assert audit_rows["2020-02-12/community/list_returns_420106001004.csv"][14:] == (1, [], None, None)
    assert audit_rows["2020-02-13/community/list_returns_420106001001.csv"][14] == 2   # keys 2 and 6
    assert audit_rows["2020-02-11/community/list_returns_420106001009.csv"][14] == 1   # late: itself
    with duckdb.connect(str(batched), read_only=True) as con:
        current = con.execute("SELECT row_key, answer FROM staged_list_returns WHERE is_current ORDER BY 1").fetchall()
    assert dict(current)["R0000000000000002"] == "已落实居家隔离"
    assert dict(current)["R0000000000000007"] == "已转运"


def test_a_suite_is_made_again_only_when_its_contract_changed(tmp_path):
    """Rewriting every suite each run cost seconds; a stale suite would check a contract no
    longer in force. Same contract: the stored suite is used as it is; changed: it is remade."""
    from trace24.transforms.ingest.validate import Validator

    contract = load_schemas().feeds["lab_results"]
    db_path = tmp_path / "store.duckdb"
    Validator(db_path)._checkpoint(contract)
    suite_file = next((tmp_path / "store_gx").rglob("expectations/lab_results.json"))
    written = suite_file.stat().st_mtime_ns
    Validator(db_path)._checkpoint(contract)
    assert suite_file.stat().st_mtime_ns == written
    loosened = dataclasses.replace(contract, fields=tuple(
        dataclasses.replace(f, required=False) if f.name == "sample_id" else f for f in contract.fields))
    validator = Validator(db_path)
    validator._checkpoint(loosened)
    stored = validator.context.suites.get("lab_results")
    assert not any(e.expectation_type == "expect_column_values_to_not_be_null" and e.column == "sample_id"
                   for e in stored.expectations)
    Validator(db_path)._checkpoint(contract)
    assert any(e.expectation_type == "expect_column_values_to_not_be_null" and e.column == "sample_id"
               for e in Validator(db_path).context.suites.get("lab_results").expectations)
