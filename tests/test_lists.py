"""The community lists: contents, privacy, Excel safety, paths, status against the previous list,
and all-or-nothing writing. Built on the category scenarios, read back as a spreadsheet would
(``csv`` with the UTF-8 byte-order mark Excel needs)."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import pytest

from tests.test_categories import Classified
from tests.test_exposures import AS_OF, CASE
from trace24.schemas.rules import load_district_map, load_facilities, load_rule_profile
from trace24.transforms.followup import answers as followup_answers
from trace24.transforms.followup import health_checks as followup_checks
from trace24.transforms.lists import community_lists, list_paths, list_workbooks
from trace24.transforms.response import beds, closures, dispatch, history, trips

T = dt.datetime
FLAT = {"compound": "大东花园", "building": "1栋", "unit": "1单元", "room": "101"}


class Listed(Classified):
    def __init__(self, db_path: Path, out_dir: Path):
        super().__init__(db_path)
        self.out = out_dir
        for column, sql_type in (("name", "VARCHAR"), ("sex", "VARCHAR"), ("birth_date", "DATE"),
                                 ("phone", "VARCHAR"), ("is_in_register", "BOOLEAN"), ("community_name", "VARCHAR"),
                                 ("district", "VARCHAR"), ("grid", "VARCHAR"), ("address_text", "VARCHAR")):
            self.con.execute(f"ALTER TABLE persons ADD COLUMN {column} {sql_type}")

    def resident(self, person_id: int, community: tuple[str, str, str, str], name: str, **extra) -> None:
        code, community_name, street, district = community
        self.person(person_id, household_id=extra.pop("household_id", f"H{person_id}"), community_code=code,
                    **{**FLAT, **extra})
        self.con.execute("UPDATE persons SET name = ?, sex = '男', birth_date = DATE '1980-05-01', "
                         "phone = '13800138000', is_in_register = true, community_name = ?, district = ?, "
                         "grid = '网格1', id_number = '420102198005010011' WHERE person_id = ?",
                         [name, community_name, district, person_id])
        if not self.con.execute("SELECT count(*) FROM staged_communities WHERE community_code = ?",
                                [code]).fetchall()[0][0]:
            self.con.execute("INSERT INTO staged_communities BY NAME SELECT 1 AS load_id, DATE '2020-02-05' "
                             "AS delivery_date, 'c.csv' AS source_file, 1 AS source_row_number, ? AS community_code, "
                             "? AS community_name, ? AS street, ? AS district, true AS is_current, "
                             "false AS is_deleted", [code, community_name, street, district])

    def respond(self, as_of=AS_OF) -> None:
        """The response stage as the flow runs it (without a bed census nobody gets a bed)."""
        rules, districts = load_rule_profile("nhc-v6"), load_district_map()
        beds.build_bed_pools(self.con, beds.bed_parameters(rules, load_facilities(), as_of))
        dispatch.assign_beds(self.con, rules.dispatch, districts.hops(),
                             dispatch.dispatch_parameters(rules.dispatch, "未知区", as_of))
        trips.plan_trips(self.con, rules.dispatch, districts.hops(), as_of)
        history.record_history(self.con, as_of)
        closures.build_risk_areas(self.con, closures.closure_parameters(rules.closures, list(districts.borders),
                                                                        "未知区", as_of))

    def deliver(self, as_of=AS_OF) -> Path:
        """The lists stage in the flow's order: answers and health checks, categories, response, lists."""
        layout, answers = community_lists.load_layout(), list_workbooks.load_answer_layout()
        community_lists.ensure_out_list_rows(self.con)
        followup_answers.build_followup(self.con, followup_answers.followup_parameters(
            answers.values, list(answers.controlling), as_of, answers.corrections))
        followup_checks.build_health_checks(self.con, followup_checks.health_check_parameters(as_of))
        self.classify(as_of=as_of)
        self.respond(as_of)
        community_lists.build_list_rows(self.con, community_lists.list_parameters(
            layout, load_rule_profile("nhc-v6"), as_of))
        staging = community_lists.staging_folder(self.out, as_of)
        sheet = list_workbooks.sheet_spec(layout.headers, list_workbooks.load_answer_layout(), as_of)
        manifest = community_lists.write_lists(self.con, layout, staging, as_of, "nhc-v6", sheet)
        community_lists.write_manifest(staging, manifest)
        return community_lists.publish(staging, self.out, as_of)


def read_list(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8-sig", newline="") as handle:   # as Excel opens it
        return list(csv.DictReader(handle))


PARK = ("420106002001", "和平社区", "积玉桥街道", "武昌区")
RIVER = ("420106002002", "临江社区", "积玉桥街道", "武昌区")


@pytest.fixture
def city(tmp_path):
    c = Listed(tmp_path / "lists.duckdb", tmp_path / "out")
    yield c
    c.con.close()


def household_outbreak(city: Listed) -> None:
    """A case in 和平社区 with two household members; a fever patient in 临江社区."""
    city.resident(CASE, PARK, "张伟", household_id="H1")
    city.resident(2, PARK, "李娜", household_id="H1", room="1101")
    city.resident(3, PARK, "王芳", household_id="H1", building="10栋")
    city.resident(4, RIVER, "赵敏")
    city.case(onset=dt.date(2020, 1, 31))
    city.visit(4, T(2020, 2, 8, 9), 38.0)


def test_each_community_gets_its_own_residents_with_masked_ids_and_chinese_headers(city):
    household_outbreak(city)
    folder = city.deliver()
    park = folder / "武昌区" / "积玉桥街道" / "420106002001_和平社区.csv"
    river = folder / "武昌区" / "积玉桥街道" / "420106002002_临江社区.csv"
    assert park.read_bytes().startswith(b"\xef\xbb\xbf")
    rows = read_list(park)
    assert list(rows[0]) == list(community_lists.load_layout().headers)
    assert [r["姓名"] for r in rows] == ["张伟", "李娜", "王芳"]         # by building number: 1栋 before 10栋
    assert {r["类别"] for r in rows} == {"确诊患者", "密切接触者"}
    contact = rows[1]
    assert contact["证件号码"] == "420102********0011"
    assert contact["判定依据"] == "与确诊病例同住" and contact["关联病例"] == "C0000001"
    assert contact["处置措施"] == "集中隔离医学观察至2020-02-17" and contact["状态"] == "新增"
    assert "张伟" not in contact.values()                            # the case's name is never on a contact row
    assert [r["姓名"] for r in read_list(river)] == ["赵敏"]
    assert read_list(river)[0]["判定依据"] == "发热门诊就诊"


def test_manifest_counts_and_hashes_every_file(city):
    import hashlib
    import json

    household_outbreak(city)
    folder = city.deliver()
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert sum(f["rows"] for f in manifest["files"]) == manifest["rows"] == 4
    for entry in manifest["files"]:
        assert hashlib.sha256((folder / entry["file"]).read_bytes()).hexdigest() == entry["sha256"]
        assert entry["workbook"] == entry["file"].removesuffix(".csv") + ".xlsx"
        assert hashlib.sha256((folder / entry["workbook"]).read_bytes()).hexdigest() == entry["workbook_sha256"]
    park = next(f for f in manifest["files"] if f["file"].endswith("和平社区.csv"))
    assert park["by_category"] == {"close_contact": 2, "confirmed": 1}


def test_formula_cells_cannot_run_in_excel(city):
    household_outbreak(city)
    city.con.execute("UPDATE persons SET name = '=HYPERLINK(\"http://x\",\"点我\")', phone = '+8613800138000', "
                     "room = '@SUM(A1)' WHERE person_id = 2")
    rows = read_list(city.deliver() / "武昌区" / "积玉桥街道" / "420106002001_和平社区.csv")
    contact = next(r for r in rows if "HYPERLINK" in r["姓名"])
    assert contact["姓名"].startswith("'=") and contact["联系电话"].startswith("'+")
    assert contact["房号"].startswith("'@")
    for row in rows:
        assert not any(v.startswith(("=", "+", "-", "@")) for v in row.values())


@pytest.mark.parametrize(("community", "expected"), [
    (("420106002003", "../../tmp/某社区", "积玉桥街道", "武昌区"), "武昌区/积玉桥街道/420106002003_tmp_某社区.csv"),
    (("420106002003", "东/西湖社区", "积玉/桥..街道", "../../武昌区"), "武昌区/积玉_桥_街道/420106002003_东_西湖社区.csv"),
    (("420106002003", "../../../etc/passwd", "../..", "/tmp/abs"), "tmp_abs/unnamed/420106002003_etc_passwd.csv"),
    (("420106002003", "..", "\\server\\share", "C:\\区"), "C_区/server_share/420106002003.csv"),
    (("420106002003", "和平 社区\n.csv", None, "武昌区"), "武昌区/未知街道/420106002003_和平_社区_csv.csv"),
])
def test_a_hostile_name_in_any_path_part_leaves_the_list_flat_under_its_code(city, community, expected):
    """Whatever a feed delivers as district, street or community name, the list sits at
    <区>/<街道>/<社区编码>_<名称>.csv: one folder per level, the code first, nothing outside the run."""
    city.resident(5, community, "钱七")
    city.visit(5, T(2020, 2, 8, 9), 38.0)
    folder = city.deliver()
    written = sorted(p.relative_to(folder).as_posix() for p in city.out.rglob("*.csv"))
    assert written == [expected]
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert [e["file"] for e in manifest["files"]] == [expected]
    assert [r["姓名"] for r in read_list(folder / expected)] == ["钱七"]


def test_communities_named_alike_once_made_safe_keep_their_own_files():
    rows = list_paths.list_file_rows([("武昌区", "积玉桥街道", "420106002003", "东/西"),
                                      ("武昌区", "积玉桥街道", "420106002003", "东.西"),
                                      ("东/区", None, None, None), ("东_区", None, None, "某社区"),
                                      ("东_区", None, None, None)], "未落地人员.csv", "未知街道")
    files = {row[:4]: row[4] for row in rows}
    assert files[("武昌区", "积玉桥街道", "420106002003", "东.西")] == "武昌区/积玉桥街道/420106002003_东_西.csv"
    assert files[("武昌区", "积玉桥街道", "420106002003", "东/西")].startswith("武昌区/积玉桥街道/420106002003_东_西_")
    # One district's unplaced persons share its file; another district that reads alike does not.
    assert files[("东_区", None, None, None)] == files[("东_区", None, None, "某社区")] == "东_区/未落地人员.csv"
    assert files[("东/区", None, None, None)].startswith("东_区/未落地人员_")
    assert len(set(files.values())) == 4


def test_second_run_marks_new_changed_released(city):
    household_outbreak(city)
    city.deliver(as_of=T(2020, 2, 9))
    # A day later: the fever patient tests negative (released), a household member's phone changes
    # (changed), and a new fever patient appears (new).
    city.test(4, T(2020, 2, 9, 1))
    city.con.execute("UPDATE persons SET phone = '13900139000' WHERE person_id = 2")
    city.resident(6, RIVER, "孙丽")
    city.visit(6, T(2020, 2, 9, 20), 38.4)
    folder = city.deliver(as_of=T(2020, 2, 10))
    park = {r["姓名"]: r["状态"] for r in read_list(folder / "武昌区" / "积玉桥街道" / "420106002001_和平社区.csv")}
    river = {r["姓名"]: r for r in read_list(folder / "武昌区" / "积玉桥街道" / "420106002002_临江社区.csv")}
    # A day on the list and no answer from the office: 催办 (a changed row says 变更 all the same).
    assert park == {"张伟": "催办", "李娜": "变更", "王芳": "催办"}
    assert river["赵敏"]["状态"] == "解除" and river["赵敏"]["处置措施"] == "解除管控"
    assert river["孙丽"]["状态"] == "新增"
    # The same as-of again: the same bytes.
    before = {p: p.read_bytes() for p in folder.rglob("*")if p.is_file()}
    city.deliver(as_of=T(2020, 2, 10))
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before


def test_failed_write_leaves_the_previous_lists_whole(city, monkeypatch):
    household_outbreak(city)
    folder = city.deliver()
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    calls = []

    def failing_write(path, header, body):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_write(path, header, body)

    real_write = community_lists.write_csv_text
    monkeypatch.setattr(community_lists, "write_csv_text", failing_write)
    with pytest.raises(OSError):
        city.deliver()
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before


def test_people_without_a_community_go_to_their_districts_unplaced_list(city):
    household_outbreak(city)
    city.con.execute("UPDATE persons SET community_code = NULL, community_name = NULL, district = '武昌区', "
                     "is_in_register = false, address_text = '武昌区某宾馆' WHERE person_id = 3")
    folder = city.deliver()
    unplaced = read_list(folder / "武昌区" / "未落地人员.csv")
    assert [(r["姓名"], r["现住址"]) for r in unplaced] == [("王芳", "武昌区某宾馆")]
    park = read_list(folder / "武昌区" / "积玉桥街道" / "420106002001_和平社区.csv")
    assert "王芳" not in {r["姓名"] for r in park}


TRICKY_CELLS = ["=1+1", "+86 139", "-3", "@SUM(A1)", "\tTAB", "a,b", 'say "hi"', "two\nlines", "cr\rhere",
                "", None, "张伟", "'quoted", " lead space", "=a,\"b\"\n"]


def test_list_lines_formatted_in_the_database_are_what_csv_writer_writes(tmp_path):
    """The lists' cells are escaped and quoted in SQL (csv_line_sql); the bytes must be those of
    write_csv, which escapes each cell in Python and quotes with csv.writer."""
    import duckdb

    from trace24.transforms.csv_out import FORMULA_START, csv_line_sql, write_csv, write_csv_text

    rows = [TRICKY_CELLS, list(reversed(TRICKY_CELLS)), [None, None]]
    with duckdb.connect() as con:
        lines = [con.execute(f"SELECT {csv_line_sql('$cells')}",
                             {"cells": row, "formula_start": FORMULA_START}).fetchall()[0][0] for row in rows]
    write_csv(tmp_path / "python.csv", ["姓名", "=header"], rows)
    write_csv_text(tmp_path / "sql.csv", ["姓名", "=header"], "".join(line + "\r\n" for line in lines))
    assert (tmp_path / "sql.csv").read_bytes() == (tmp_path / "python.csv").read_bytes()
    with open(tmp_path / "sql.csv", newline="", encoding="utf-8-sig") as handle:
        first = list(csv.reader(handle))[1]
    assert first[0] == "'=1+1" and first[5] == "a,b" and first[7] == "two\nlines"


def read_workbook(path: Path):
    """The workbook as an office's spreadsheet program opens it (openpyxl reads what Excel reads)."""
    import openpyxl

    return openpyxl.load_workbook(path).active


def test_the_workbook_holds_the_list_and_leaves_only_the_answers_editable(city):
    household_outbreak(city)
    folder = city.deliver()
    park = folder / "武昌区" / "积玉桥街道" / "420106002001_和平社区"
    sheet, rows = read_workbook(park.with_suffix(".xlsx")), read_list(park.with_suffix(".csv"))
    headers = list(community_lists.load_layout().headers)
    assert sheet.title == "名单" and [c.value for c in sheet[1]] == headers
    # The same rows as the CSV, in the same order, every cell text (an empty cell reads None).
    body = [[c.value or "" for c in row] for row in sheet.iter_rows(min_row=2)]
    assert body == [[r[h] for h in headers] for r in rows]
    column = {h: i for i, h in enumerate(headers)}
    for row in sheet.iter_rows(min_row=2):
        for name in ("证件号码", "联系电话", "回执编号"):
            assert row[column[name]].data_type == "s" and row[column[name]].number_format == "@"
        editable = {headers[i] for i, cell in enumerate(row) if not cell.protection.locked}
        assert editable == {"处置结果", "落实时间", "经办人", "备注"}
    assert sheet.protection.sheet and sheet.freeze_panes == "A2"
    assert sheet.page_setup.orientation == "landscape" and sheet.page_setup.fitToWidth == 1
    assert sheet.sheet_properties.pageSetUpPr.fitToPage and sheet.print_title_rows == "$1:$1"
    widths = {h: sheet.column_dimensions[openpyxl_letter(i)].width for h, i in column.items()}
    assert widths["判定依据"] > widths["性别"] and widths["证件号码"] >= 20   # 18 characters fit
    # Drop-down for 处置结果 over every answer row; a time and two lengths checked.
    checks = {(v.type, str(v.sqref)): v for v in sheet.data_validations.dataValidation}
    answer = openpyxl_letter(column["处置结果"])
    drop_down = checks[("list", f"{answer}2:{answer}4")]
    assert drop_down.formula1.strip('"').split(",") == ["已落实居家隔离", "已集中隔离", "已转运", "已送医", "查无此人",
                                                          "联系不上", "拒不配合", "信息有误", "已离汉"]
    assert {t for t, _ in checks} == {"list", "date", "textLength"} and len(checks) == 4


def openpyxl_letter(index: int) -> str:
    from openpyxl.utils import get_column_letter

    return get_column_letter(index + 1)


def test_each_row_has_an_opaque_key_that_stays_with_the_person_on_that_list(city):
    import re

    household_outbreak(city)
    first = read_list(city.deliver(as_of=T(2020, 2, 9)) / "武昌区" / "积玉桥街道" / "420106002001_和平社区.csv")
    city.con.execute("UPDATE persons SET phone = '13900139000' WHERE person_id = 2")
    second = read_list(city.deliver(as_of=T(2020, 2, 10)) / "武昌区" / "积玉桥街道" / "420106002001_和平社区.csv")
    keys = {r["姓名"]: r["回执编号"] for r in first}
    assert all(re.fullmatch(r"R[0-9A-F]{16}", k) for k in keys.values()) and len(set(keys.values())) == 3
    assert {r["姓名"]: r["回执编号"] for r in second} == keys          # a changed row keeps its key
    for row in first:                                                 # nothing personal in it
        assert not any(part and part in row["回执编号"] for part in (row["姓名"], row["联系电话"], "420102"))
    stored = city.con.execute("SELECT DISTINCT row_key FROM out_list_rows WHERE community_code = '420106002001'")
    assert {k for (k,) in stored.fetchall()} == set(keys.values())


def test_a_hostile_cell_stays_text_in_the_workbook(city):
    household_outbreak(city)
    city.con.execute("UPDATE persons SET name = '=HYPERLINK(\"http://x\")<b>&' || chr(1) || chr(57344), "
                     "room = ' 1101 ', address_text = 'a' || chr(11) || 'b' WHERE person_id = 2")
    folder = city.deliver()
    sheet = read_workbook(folder / "武昌区" / "积玉桥街道" / "420106002001_和平社区.xlsx")
    names = [row[2] for row in sheet.iter_rows(min_row=2)]
    hostile = next(c for c in names if "HYPERLINK" in str(c.value))
    # Inline text, never a formula; the control character a workbook cannot hold is dropped.
    assert hostile.data_type == "s" and hostile.value == '=HYPERLINK("http://x")<b>&'
    rooms = {row[11].value for row in sheet.iter_rows(min_row=2)}
    assert " 1101 " in rooms
