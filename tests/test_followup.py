"""The offices' answers: a delivered list filled in and dropped into the landing folder, read back
through the list_returns feed (its faults set aside with reasons) and matched to the persons the
lists asked about (core_followup), with another community's resident and unknown keys set aside."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import openpyxl
import pytest

from tests.conftest import feeds_by_agency, ingest_landing, query, write_csv
from tests.test_lists import PARK, RIVER, Listed, T, household_outbreak, read_list
from trace24.schemas.contracts import load_schemas
from trace24.schemas.rules import load_rule_profile
from trace24.transforms import database
from trace24.transforms.followup import answers, escalations, health_checks
from trace24.transforms.ingest import landing, load
from trace24.transforms.lists import community_lists, escalation_sheets, list_workbooks

ANSWERS = list_workbooks.load_answer_layout()
MISSING_CHECK_DAYS = load_rule_profile("nhc-v6").categories.missing_check_days
PARK_LIST = Path("武昌区") / "积玉桥街道" / "420106002001_和平社区"


def follow_up(con, as_of: dt.datetime) -> dict[str, int]:
    return answers.build_followup(con, answers.followup_parameters(ANSWERS.values, list(ANSWERS.controlling), as_of,
                                                                  ANSWERS.corrections))


def ingest_with(con, landing_dir: Path, db_path: Path) -> None:
    """The ingest steps on an open store (the scenario's connection)."""
    schemas = load_schemas()
    files, _ = landing.discover(landing_dir, feeds_by_agency(schemas))
    run_id = load.start_run(con, landing_dir)
    outcomes = [load.ingest_file(con, schemas, f, run_id, load.archive_dir_for(db_path)) for f in files]
    load.finish_run(con, run_id, outcomes)


@pytest.fixture
def city(tmp_path):
    c = Listed(tmp_path / "lists.duckdb", tmp_path / "out")
    c.con.execute("SELECT nextval('load_id_sequence') FROM range(100)")   # past the scenario's own loads
    yield c
    c.con.close()


def answer_workbook(source: Path, target: Path, filled: dict[str, tuple]) -> None:
    """What an office does: open its list, choose 处置结果, type 落实时间 and 经办人, save it."""
    book = openpyxl.load_workbook(source)
    sheet = book.active
    header = [c.value for c in sheet[1]]
    for row in sheet.iter_rows(min_row=2):
        name = row[header.index("姓名")].value
        if name in filled:
            for column, value in zip(("处置结果", "落实时间", "经办人"), filled[name], strict=False):
                row[header.index(column)].value = value
    target.parent.mkdir(parents=True, exist_ok=True)
    book.save(target)


def test_an_answered_workbook_comes_back_as_each_persons_follow_up(city, tmp_path):
    household_outbreak(city)
    lists = city.deliver(as_of=T(2020, 2, 9))
    day = tmp_path / "landing" / "2020-02-09" / "community"
    answer_workbook(lists / PARK_LIST.with_suffix(".xlsx"), day / "list_returns_420106002001.xlsx",
                    {"李娜": ("已集中隔离", dt.datetime(2020, 2, 9, 15, 30), "王社工"), "王芳": ("联系不上",)})
    # 临江社区's office answers a 和平社区 resident: not its own, set aside with the office named.
    park_rows = read_list(lists / PARK_LIST.with_suffix(".csv"))
    stranger = next(r["回执编号"] for r in park_rows if r["姓名"] == "张伟")
    write_csv(day / "list_returns_420106002002.csv", ["回执编号", "处置结果", "落实时间", "经办人", "备注"],
              [[stranger, "已落实居家隔离", "2020-02-09 10:00", "赵社工", ""]])
    ingest_with(city.con, tmp_path / "landing", tmp_path / "lists.duckdb")
    counts = follow_up(city.con, T(2020, 2, 10))
    assert counts == {"delivered": 4, "accepted": 2, "set_aside": 1, "blank": 1,
                      "corrections": 0}    # 张伟's own row: blank
    latest = city.con.execute("SELECT person_id, answer_key, is_controlled, controlled_at, office_code, "
                              "first_controlled_at FROM core_followup ORDER BY person_id").fetchall()
    assert latest == [(2, "central_isolation", True, dt.datetime(2020, 2, 9, 15, 30), "420106002001",
                       dt.datetime(2020, 2, 9, 15, 30)),
                      (3, "unreachable", False, None, "420106002001", None)]
    rejects = city.con.execute("SELECT office_code, reject_reason, listed_community_code, row_key "
                               "FROM followup_rejects").fetchall()
    assert rejects == [("420106002002", "other_community", "420106002001", stranger)]
    audit = city.con.execute("SELECT source_file, rows_read, rows_loaded, rows_quarantined FROM load_audit "
                             "WHERE feed = 'list_returns' ORDER BY source_file").fetchall()
    assert [(read, loaded + quarantined) for _, read, loaded, quarantined in audit] == [(3, 3), (1, 1)]


RETURN_HEADER = ["备注", "处置结果", "姓名", "回执编号", "落实时间", "经办人"]   # columns moved, one extra


def test_a_returned_list_sets_its_faults_aside_with_reasons_and_loads_the_rest(day1, db_path):
    key = "R0123456789ABCDEF"
    write_csv(day1 / "community" / "list_returns_420106002001.csv", RETURN_HEADER, [
        ["", "已落实居家隔离", "李娜", key, "2020-02-10 09:00", "王社工"],
        ["", "已隔离", "王芳", "R0123456789ABCDE0", "2020-02-10 09:00", "王社工"],     # typed over the drop-down
        ["", "已集中隔离", "张伟", "R0123456789ABCDE1", "2020-02-11 08:00", "王社工"],  # tomorrow
        ["", "已转运", "赵敏", "R12", "2020-02-10 09:00", ""],                          # not a key
        ["", "已送医", "孙丽", "", "2020-02-10 09:00", ""],                             # no key
        ["", "", "钱七", "r0123456789abcde2", "", ""],                                  # not answered yet
    ])
    ingest_landing(day1.parent, db_path)
    reasons = dict(query(db_path, "SELECT source_row_number, reason_codes FROM quarantine ORDER BY 1"))
    assert reasons == {2: ["invalid_enum:answer"], 3: ["after_delivery:controlled_at"],
                       4: ["invalid_pattern:row_key"], 5: ["missing:row_key"]}
    messages = dict(query(db_path, "SELECT source_row_number, reasons FROM quarantine ORDER BY 1"))
    assert messages[3] == ["落实时间: later than the day the file was delivered"]
    assert query(db_path, "SELECT row_key, answer, controlled_at FROM staged_list_returns ORDER BY 1") == [
        ("R0123456789ABCDE2", None, None), (key, "已落实居家隔离", dt.datetime(2020, 2, 10, 9))]
    assert query(db_path, "SELECT rows_read, rows_loaded, rows_quarantined FROM load_audit") == [(6, 2, 4)]
    # A day without returns is no fault: offices answer when they have acted.
    assert not query(db_path, "SELECT * FROM delivery_warnings WHERE feed = 'list_returns'")


def _listed(con, person_id: int, community: str | None, district: str, as_of: dt.datetime) -> str:
    """A row on a delivered list; returns its 回执编号."""
    key = f"R{person_id:016X}"
    con.execute("INSERT INTO out_list_rows BY NAME SELECT $as_of AS as_of, $file AS list_file, $district AS district, "
                "$community AS community_code, $person AS person_id, 'close_contact' AS category, 'new' AS status, "
                "[] AS row_values, '' AS sort_key, $key AS row_key",
                {"as_of": as_of, "file": f"{district}/{community or '未落地人员'}.csv", "district": district,
                 "community": community, "person": person_id, "key": key})
    return key


def test_every_answer_and_every_reason_to_set_one_aside(tmp_path):
    db_path = tmp_path / "store.duckdb"
    con = database.connect(db_path, load_schemas())
    community_lists.ensure_out_list_rows(con)
    con.execute("CREATE TABLE persons (person_id BIGINT, merged_into_person_id BIGINT)")
    con.execute("INSERT INTO persons SELECT range, NULL FROM range(1, 20)")
    con.execute("UPDATE persons SET merged_into_person_id = 1 WHERE person_id = 9")   # 9 turned out to be 1
    listed_at = T(2020, 2, 9)
    keys = [_listed(con, p, PARK[0], PARK[3], listed_at) for p in range(1, 10)]
    unplaced = _listed(con, 10, None, PARK[3], listed_at)
    river = _listed(con, 11, RIVER[0], RIVER[3], listed_at)
    header = ["回执编号", "处置结果", "落实时间"]
    texts = list(ANSWERS.values.values())
    day1 = tmp_path / "landing" / "2020-02-10" / "community"
    write_csv(day1 / "list_returns_420106002001.csv", header,
              [[k, t, "2020-02-10 08:00"] for k, t in zip(keys, texts, strict=True)]
              + [[unplaced, "已转运", ""], [river, "已转运", ""], ["RFFFFFFFFFFFFFFFF", "已转运", ""]])
    write_csv(day1 / "list_returns.csv", header, [[keys[0], "已转运", ""]])                # names no office
    # The next day the office answers person 2 again: the later answer is the one that counts.
    write_csv(tmp_path / "landing" / "2020-02-11" / "community" / "list_returns_420106002001_补报.csv", header,
              [[keys[1], "已转运", "2020-02-11 09:00"]])
    ingest_with(con, tmp_path / "landing", db_path)
    counts = follow_up(con, T(2020, 2, 12))
    assert counts == {"delivered": 14, "accepted": 10, "set_aside": 4, "blank": 0, "corrections": 0}
    rejects = dict(con.execute("SELECT row_key, reject_reason FROM followup_rejects "
                               "WHERE source_file NOT LIKE '%list_returns.csv'").fetchall())
    assert rejects == {unplaced: "unplaced_row", river: "other_community", "RFFFFFFFFFFFFFFFF": "unknown_row_key"}
    assert con.execute("SELECT reject_reason, office_code FROM followup_rejects "
                       "WHERE source_file LIKE '%list_returns.csv'").fetchall() == [("no_office", None)]
    latest = dict(con.execute("SELECT person_id, answer_key FROM core_followup").fetchall())
    # Every value of the drop-down is read as its answer; person 9's answer is about person 1, whose
    # own answer came earlier in the file (the later row is the latest).
    assert latest == {1: "left_city", 2: "transferred", 3: "transferred", 4: "hospitalised",
                      5: "not_found", 6: "unreachable", 7: "refused", 8: "wrong_information"}
    two = con.execute("SELECT answer_key, is_current, delivery_date FROM core_followup_history "
                      "WHERE person_id = 2 ORDER BY delivery_date").fetchall()
    assert two == [("central_isolation", False, dt.date(2020, 2, 10)), ("transferred", True, dt.date(2020, 2, 11))]
    first = con.execute("SELECT first_controlled_at, answers FROM core_followup WHERE person_id = 2").fetchone()
    assert first == (dt.datetime(2020, 2, 10, 8), 2)
    # Run as of the first day only: the second day's answer is not seen yet.
    follow_up(con, T(2020, 2, 10, 23))
    assert con.execute("SELECT answers FROM core_followup WHERE person_id = 2").fetchone() == (1,)
    con.close()


def test_the_drop_down_offers_exactly_what_the_returns_feed_accepts():
    contract = load_schemas().feeds["list_returns"]
    assert list(contract.field("answer").values) == list(ANSWERS.values.values())
    assert set(ANSWERS.controlling) == {"home_isolation", "central_isolation", "transferred", "hospitalised"}
    assert community_lists.LIST_COLUMNS[-5:] == ("row_key", "answer", "controlled_at", "handled_by", "note")


def escalate(con, as_of: dt.datetime) -> dict[str, int]:
    follow_up(con, as_of)
    return escalations.build_escalations(con, escalations.escalation_parameters(
        ANSWERS.escalations, ANSWERS.missing_checks, MISSING_CHECK_DAYS, "未知区", as_of))


def test_whom_an_office_cannot_bring_under_control_goes_to_police_street_or_other_cities(city, tmp_path):
    household_outbreak(city)
    city.add("transport", 3, mode="火车", trip_number="G80", departure_date=dt.date(2020, 2, 8),
             to_station="北京西", departed_at=T(2020, 2, 8, 10))            # 王芳 took a train out
    for venue, name, at in (("V1", "早点铺", T(2020, 2, 5, 9)), ("V2", None, T(2020, 2, 7, 11)),
                            ("V3", "乙药店", T(2020, 2, 7, 9)), ("V4", "甲超市", T(2020, 2, 7, 9)),
                            ("V5", "丁餐馆", T(2020, 2, 7, 10))):
        city.add("place_scans", 2, venue_code=venue, venue_name=name, venue_type="商超", scanned_at=at)
    lists = city.deliver(as_of=T(2020, 2, 9))
    answer_workbook(lists / PARK_LIST.with_suffix(".xlsx"),
                    tmp_path / "landing" / "2020-02-09" / "community" / "list_returns_420106002001.xlsx",
                    {"李娜": ("联系不上",), "王芳": ("已离汉",), "张伟": ("拒不配合",)})
    ingest_with(city.con, tmp_path / "landing", tmp_path / "lists.duckdb")
    assert escalate(city.con, T(2020, 2, 10)) == {"other_city": 1, "police": 1, "street": 1}
    staging = tmp_path / "sheets"
    entries = escalation_sheets.write_sheets(city.con, community_lists.load_layout(),
                                             escalation_sheets.load_escalation_layout(), staging)
    assert [(e["file"], e["kind"], e["rows"]) for e in entries] == [
        ("武昌区/公安协查.csv", "police", 1), ("武昌区/外省市协查.csv", "other_city", 1),
        ("武昌区/积玉桥街道/街道督办人员.csv", "street", 1)]
    police = read_list(staging / "武昌区" / "公安协查.csv")
    assert [(r["姓名"], r["证件号码"], r["处置结果"], r["答复社区"]) for r in police] == [
        ("李娜", "420102********0011", "联系不上", "420106002001")]
    assert police[0]["关联病例"] == "C0000001" and police[0]["类别"] == "密切接触者"
    # Where the records last saw her: the latest three, a tie in time by the place's name.
    assert police[0]["最近出现"] == "2020-02-07 11:00 V2；2020-02-07 10:00 丁餐馆；2020-02-07 09:00 乙药店"
    away = read_list(staging / "武昌区" / "外省市协查.csv")
    assert [(r["姓名"], r["去向"]) for r in away] == [("王芳", "北京西")]
    assert away[0]["最近出现"] == "2020-02-08 10:00 G80 → 北京西"
    # 李娜 scans a venue code, delivered after the answer: the records have her again, so the
    # police no longer need to look; the others stay escalated.
    city.delivered(dt.date(2020, 2, 10))
    city.add("place_scans", 2, venue_code="V9", venue_type="商超", scanned_at=T(2020, 2, 10, 9))
    assert escalate(city.con, T(2020, 2, 11)) == {"other_city": 1, "street": 1}


def test_a_row_no_office_answered_within_the_hours_is_listed_again_marked_reminder(city, tmp_path):
    household_outbreak(city)
    lists = city.deliver(as_of=T(2020, 2, 9))
    answer_workbook(lists / PARK_LIST.with_suffix(".xlsx"),
                    tmp_path / "landing" / "2020-02-09" / "community" / "list_returns_420106002001.xlsx",
                    {"李娜": ("已落实居家隔离", dt.datetime(2020, 2, 9, 11)), "王芳": ("联系不上",)})
    ingest_with(city.con, tmp_path / "landing", tmp_path / "lists.duckdb")
    half_a_day = read_list(city.deliver(as_of=T(2020, 2, 9, 12)) / PARK_LIST.with_suffix(".csv"))
    assert {r["姓名"]: r["状态"] for r in half_a_day} == {"张伟": "在管", "李娜": "在管", "王芳": "在管"}
    next_day = read_list(city.deliver(as_of=T(2020, 2, 10)) / PARK_LIST.with_suffix(".csv"))
    # 24 hours on the list: the one row nobody answered comes back 催办; an answer of any kind
    # (联系不上 goes to the police instead) counts as answered.
    assert {r["姓名"]: r["状态"] for r in next_day} == {"张伟": "催办", "李娜": "在管", "王芳": "在管"}
    since = city.con.execute("SELECT DISTINCT first_listed_at FROM out_list_rows WHERE as_of = $a",
                             {"a": T(2020, 2, 10)}).fetchall()
    assert since == [(T(2020, 2, 9),)]


def test_the_sample_offices_answers_reconcile_with_what_the_pipeline_found(city, tmp_path):
    """samplecity/offices.py answers the delivered workbooks as the demo's offices do; every row it
    says it delivered is accepted, quarantined or set aside as its fault says, and it is repeatable."""
    import csv as csv_module

    from samplecity.offices import answer_lists

    household_outbreak(city)
    lists = city.deliver(as_of=T(2020, 2, 9))
    truth = tmp_path / "truth" / "answers.csv"
    written = answer_lists(lists, tmp_path / "landing", truth)
    again = answer_lists(lists, tmp_path / "again", tmp_path / "again.csv")
    assert written == again == 4 and truth.read_bytes() == (tmp_path / "again.csv").read_bytes()
    ingest_with(city.con, tmp_path / "landing", tmp_path / "lists.duckdb")
    counts = follow_up(city.con, T(2020, 2, 10))
    with truth.open(encoding="utf-8", newline="") as handle:
        faults = [row["fault"] for row in csv_module.DictReader(handle)]
    quarantined = city.con.execute("SELECT count(*) FROM quarantine WHERE feed = 'list_returns'").fetchone()[0]
    assert counts["accepted"] == faults.count("")
    assert quarantined == faults.count("typed_over") + faults.count("future_time")
    assert counts["set_aside"] == faults.count("other_community")


CHECK_HEADER = ["回执编号", "监测日期", "体温", "症状", "监测状态"]


def after_categories(con, as_of: dt.datetime) -> dict[str, int]:
    """The follow-up steps the flow runs once the categories are known."""
    health_checks.refuse_early_releases(con, health_checks.health_check_parameters(as_of))
    return escalations.build_escalations(con, escalations.escalation_parameters(
        ANSWERS.escalations, ANSWERS.missing_checks, MISSING_CHECK_DAYS, "未知区", as_of))


def test_daily_health_checks_raise_a_fever_refuse_an_early_release_and_escalate_who_goes_unchecked(city, tmp_path):
    household_outbreak(city)
    city.add("isolation_checkins", 3, checkin_id="K1", facility_code="GL-J", room="301",
             arrived_at=T(2020, 2, 9, 15), left_at=None)                       # 王芳 goes to an isolation point
    rows = {r["姓名"]: r["回执编号"] for r in read_list(city.deliver(as_of=T(2020, 2, 9)) / PARK_LIST.with_suffix(".csv"))}
    li, wang = rows["李娜"], rows["王芳"]
    landing_dir = tmp_path / "landing"
    day9, day10 = landing_dir / "2020-02-09" / "community", landing_dir / "2020-02-10" / "community"
    write_csv(day9 / "health_checks_420106002001.csv", CHECK_HEADER, [
        [li, "2020-02-09", "36.6", "无", "继续观察"],
        [wang, "2020-02-09", "36.8", "无", "解除观察"],                 # released before 2020-02-17: refused
        ["RFFFFFFFFFFFFFFFF", "2020-02-09", "36.5", "", "继续观察"],    # no list has this key
        [wang, "2020-02-10", "36.8", "", "继续观察"],                   # tomorrow: quarantined
    ])
    write_csv(day9 / "health_checks_420106002002.csv", CHECK_HEADER,
              [[li, "2020-02-09", "36.5", "无", "继续观察"]])             # 临江社区 reports 和平社区's contact
    write_csv(day10 / "health_checks_GL-J.csv", CHECK_HEADER, [
        [wang, "2020-02-10", "38.3", "咳嗽", "继续观察"],               # the isolation point houses her: a fever
        [li, "2020-02-10", "36.4", "无", "继续观察"],                   # not its guest
    ])
    ingest_with(city.con, landing_dir, tmp_path / "lists.duckdb")
    assert city.con.execute("SELECT reason_codes FROM quarantine WHERE feed = 'health_checks'").fetchall() == [
        (["after_delivery:check_date"],)]
    next_day = {r["姓名"]: r for r in read_list(city.deliver(as_of=T(2020, 2, 11)) / PARK_LIST.with_suffix(".csv"))}
    assert next_day["王芳"]["类别"] == "发热患者" and next_day["王芳"]["判定依据"] == "健康监测发现发热或呼吸道症状"
    assert next_day["李娜"]["类别"] == "密切接触者"
    evidence = city.con.execute("SELECT reason, evidence[1].feed FROM four_categories WHERE person_id = 3").fetchone()
    assert evidence == ("health_check", "health_checks")
    assert after_categories(city.con, T(2020, 2, 11)) == {}
    accepted = city.con.execute("SELECT person_id, check_date, reporter_kind FROM core_health_checks").fetchall()
    assert accepted == [(2, dt.date(2020, 2, 9), "community"), (3, dt.date(2020, 2, 9), "community"),
                        (3, dt.date(2020, 2, 10), "facility")]
    rejects = city.con.execute("SELECT reporter_code, reject_reason, is_reading_kept FROM health_check_rejects "
                               "ORDER BY reject_reason, reporter_code").fetchall()
    assert rejects == [("420106002001", "early_release", True), ("420106002002", "not_reporters_person", False),
                       ("GL-J", "not_reporters_person", False), ("420106002001", "unknown_row_key", False)]
    # 李娜's last check was on the 9th: as of the 12th the 10th and 11th went unchecked, and her
    # street follows the office up; a check for the 11th, delivered late, resolves it.
    city.deliver(as_of=T(2020, 2, 12))
    assert after_categories(city.con, T(2020, 2, 12)) == {"street": 1}
    unchecked = city.con.execute("SELECT person_id, answer_key, answer, answered_on, street "
                                 "FROM followup_escalations").fetchall()
    assert unchecked == [(2, "missing_checks", "健康监测缺报", dt.date(2020, 2, 9), "积玉桥街道")]
    write_csv(landing_dir / "2020-02-11" / "community" / "health_checks_420106002001.csv", CHECK_HEADER,
              [[li, "2020-02-11", "36.5", "无", "继续观察"]])
    ingest_with(city.con, landing_dir, tmp_path / "lists.duckdb")
    city.deliver(as_of=T(2020, 2, 12))
    assert after_categories(city.con, T(2020, 2, 12)) == {}


def test_the_sample_offices_health_checks_reconcile_with_what_the_pipeline_found(city, tmp_path):
    """samplecity/offices.py reports the listed contacts' checks as the demo's offices do: each row
    it says it delivered is accepted or set aside as its fault says, and it is repeatable."""
    import csv as csv_module

    from samplecity.offices import check_health

    household_outbreak(city)
    lists = city.deliver(as_of=T(2020, 2, 9))
    truth = tmp_path / "truth" / "health_checks.csv"
    written = check_health(lists, tmp_path / "landing", truth, seed=7)
    again = check_health(lists, tmp_path / "again", tmp_path / "again.csv", seed=7)
    assert written == again >= 2 and truth.read_bytes() == (tmp_path / "again.csv").read_bytes()
    ingest_with(city.con, tmp_path / "landing", tmp_path / "lists.duckdb")
    counts = health_checks.build_health_checks(city.con, health_checks.health_check_parameters(T(2020, 2, 10)))
    with truth.open(encoding="utf-8", newline="") as handle:
        faults = [row["fault"] for row in csv_module.DictReader(handle)]
    assert counts["delivered"] == len(faults) - faults.count("missed")
    assert counts["set_aside"] == faults.count("other_community")
    assert counts["accepted"] == len(faults) - faults.count("missed") - faults.count("other_community")


CORRECTION_HEADER = ["回执编号", "处置结果", "落实时间", "经办人", "备注"]
PERSON_ROWS = ("person_id, phone, address_text, community_code, assignment_method",
               "FROM persons WHERE person_id IN (SELECT person_id FROM core_office_corrections) ORDER BY person_id")


def test_a_corrected_phone_or_address_becomes_the_persons_record_in_the_same_run(sample_day_1, tmp_path):
    """信息有误 with the right phone in 备注 for a registered resident, and with the right address for a
    person outside the register: the next lists of the same run show the office's phone, and the
    person placed by their records moves to the community of the compound the office named (as a rebuild
    of persons and communities from scratch gives too). A 信息有误 without either is only an answer."""
    import shutil

    from trace24.flows.lists import follow_up as follow_up_task
    from trace24.settings import RunSettings
    from trace24.transforms.persons import community, identity

    folder, _ = sample_day_1
    db_path = tmp_path / "t.duckdb"
    shutil.copy(folder / "t.duckdb", db_path)
    con = database.connect(db_path, load_schemas())
    listed = """SELECT r.row_key, r.community_code, r.person_id FROM out_list_rows AS r
                JOIN persons AS p USING (person_id)
                WHERE r.row_key IS NOT NULL AND r.community_code IS NOT NULL AND p.is_in_register = ?
                  AND p.merged_into_person_id IS NULL AND r.as_of = (SELECT max(as_of) FROM out_list_rows)
                ORDER BY r.community_code, r.person_id LIMIT 2"""
    registered = con.execute(listed, [True]).fetchall()
    # Outside the register, placed by a hotel stay or a case card's address code.
    (by_address,) = con.execute(listed.replace("LIMIT 2", "LIMIT 1"), [False]).fetchall()
    # A compound of another community, its name unique in the city, in its own district.
    district, compound, target = con.execute("""
        SELECT any_value(district), compound, min(community_code) FROM staged_residents
        WHERE is_current AND NOT is_deleted AND compound IS NOT NULL
        GROUP BY compound HAVING count(DISTINCT community_code) = 1 AND min(community_code) <> ?
        ORDER BY compound LIMIT 1""", [by_address[1]]).fetchone()
    phone = "13912345678"
    day = tmp_path / "landing" / "2020-02-15" / "community"
    write_csv(day / f"list_returns_{registered[0][1]}.csv", CORRECTION_HEADER,
              [[registered[0][0], "信息有误", "", "王社工", f"电话错了，正确电话{phone}"]]
              + ([[registered[1][0], "信息有误", "", "王社工", "查无此号"]] if registered[1][1] == registered[0][1]
                 else []))
    write_csv(day / f"list_returns_{by_address[1]}.csv", CORRECTION_HEADER,
              [[by_address[0], "信息有误", "", "李社工", f"现住址：{district}{compound}3栋2单元"]])
    ingest_with(con, tmp_path / "landing", db_path)
    settings = RunSettings.build(db_path, as_of=T(2020, 2, 16))
    answer_layout = list_workbooks.load_answer_layout()
    counts = database.in_transaction(con, follow_up_task.fn, con, settings, answer_layout)["answers"]
    assert counts["corrections"] == 2
    rows = con.execute(f"SELECT {PERSON_ROWS[0]} {PERSON_ROWS[1]}").fetchall()
    by_person = {row[0]: row[1:] for row in rows}
    assert by_person[registered[0][2]][0] == phone                         # the office's phone, not the register's
    assert by_person[registered[0][2]][3] == "register"                    # the register still places them
    assert by_person[by_address[2]][1] == f"{district}{compound}3栋2单元"
    assert by_person[by_address[2]][2:] == (target, "office_correction")
    assert con.execute("SELECT count(*) FROM identity_changes").fetchone() == (0,)
    # The same persons as a rebuild from everything stored gives.
    community.assign_communities(con, settings.linkage.auto_link)
    identity.build_persons(con)
    assert con.execute(f"SELECT {PERSON_ROWS[0]} {PERSON_ROWS[1]}").fetchall() == rows
    # The next day a second phone for the same person: only that column changes (nobody is moved by a
    # phone), as a rebuild gives it; a run with nothing new does nothing.
    write_csv(tmp_path / "landing" / "2020-02-16" / "community" / f"list_returns_{registered[0][1]}.csv",
              CORRECTION_HEADER, [[registered[0][0], "信息有误", "", "王社工", "正确电话13700000001"]])
    ingest_with(con, tmp_path / "landing", db_path)
    settings = RunSettings.build(db_path, as_of=T(2020, 2, 17))
    database.in_transaction(con, follow_up_task.fn, con, settings, answer_layout)
    assert identity.note_corrected_persons(con) == (0, 0)
    rows = con.execute(f"SELECT {PERSON_ROWS[0]} {PERSON_ROWS[1]}").fetchall()
    assert {row[0]: row[1] for row in rows}[registered[0][2]] == "13700000001"
    community.assign_communities(con, settings.linkage.auto_link)
    identity.build_persons(con)
    assert con.execute(f"SELECT {PERSON_ROWS[0]} {PERSON_ROWS[1]}").fetchall() == rows
    con.close()
