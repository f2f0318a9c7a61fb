"""Contracts and column maps: a new source system is a new mapping file; a broken one is named."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.conftest import ingest_landing, query, write_csv
from trace24.schemas.contracts import SchemaError, load_schemas
from trace24.transforms.ingest import landing
from trace24.transforms.ingest.validate import expectations_for

CITY_B_HEADER = ["门诊号", "机构代码", "机构名称", "就诊日期", "患者姓名", "性别", "年龄", "证件号码", "手机", "住址",
                 "腋温", "主诉症状", "CT结果", "WBC", "LYM", "初步诊断", "处理"]
CITY_B_MAP = """
feed: fever_clinic
source: City B hospital system (day-first dates, its own headers, GBK)
time_formats: ['%d/%m/%Y %H:%M', '%d/%m/%Y']
columns:
  门诊号: visit_id
  机构代码: hospital_code
  机构名称: hospital_name
  就诊日期: visited_at
  患者姓名: name
  性别: sex
  年龄: age
  证件号码: id_number
  手机: phone
  住址: address
  腋温: temperature_c
  主诉症状: symptoms
  CT结果: chest_ct
  WBC: white_cell_count
  LYM: lymphocyte_count
  初步诊断: diagnosis
  处理: disposition
"""


def city_b_file(day1):
    return write_csv(day1 / "hospital" / "fever_clinic_B7.csv", CITY_B_HEADER, [
        ["M1", "B7", "乙市医院", "03/02/2020 14:05", "张伟", "男", "45", "11010519491231002X", "13800138000", "某路",
         "38.5", "发热", "", "", "", "发热待查", "留观"],
    ], encoding="gbk")


def test_another_hospital_system_needs_only_a_mapping_file(day1, db_path, schemas_copy):
    city_b_file(day1)
    (schemas_copy / "column_maps" / "cityb_fever_clinic.yaml").write_text(CITY_B_MAP, encoding="utf-8")
    ingest_landing(day1.parent, db_path, schemas_copy)
    rows = query(db_path, "SELECT visit_id, hospital_code, visited_at, name, temperature_c FROM staged_fever_clinic")
    assert rows == [("M1", "B7", dt.datetime(2020, 2, 3, 14, 5), "张伟", 38.5)]
    assert query(db_path, "SELECT column_map, encoding FROM load_audit") == [("cityb_fever_clinic", "gb18030")]


def test_without_its_mapping_file_the_variant_is_set_aside_with_advice(day1, db_path, schemas_copy):
    city_b_file(day1)
    ingest_landing(day1.parent, db_path, schemas_copy)
    ((reasons,),) = query(db_path, "SELECT reasons FROM quarantine")
    assert "add a map under schemas/column_maps/" in reasons[0]


def test_the_reference_maps_are_still_chosen_for_reference_files(day1, db_path, schemas_copy):
    (schemas_copy / "column_maps" / "cityb_fever_clinic.yaml").write_text(CITY_B_MAP, encoding="utf-8")
    schemas = load_schemas(schemas_copy)
    header = list(schemas.column_maps["hospital_fever_clinic"].columns)
    from trace24.transforms.ingest.raw import choose_column_map

    assert choose_column_map(schemas, "fever_clinic", header).name == "hospital_fever_clinic"
    assert choose_column_map(schemas, "fever_clinic", CITY_B_HEADER).name == "cityb_fever_clinic"


@pytest.mark.parametrize(("file", "text", "complaint"), [
    ("column_maps/bad.yaml", "feed: lab_result\ncolumns: {样本编号: sample_id}\n", "must name a contract"),
    ("column_maps/bad.yaml", "feed: lab_results\ncolumns: {样本编号: sample_no}\n", "does not have: ['sample_no']"),
    ("column_maps/bad.yaml", "feed: lab_results\ncolumns: {姓名: name}\n", "required columns of lab_results"),
    ("feeds/lab_results.yaml", "feed: lab_results\nagency: cdc\nrecord_key: [sample_id]\n"
                               "fields: {sample_id: {type: textt}}\n", "has type 'textt'"),
    ("feeds/lab_results.yaml", "feed: [unclosed", "cannot read YAML"),
    ("feeds/lab_results.yaml", "feed: lab_results\nagency: cdc\nrecord_key: [sample_id]\n"
                               "fields: {sample_id: {type: id_number, low_cardinality: true}}\n",
     "low_cardinality applies only to types"),
])
def test_a_broken_configuration_names_the_file_and_the_fix(schemas_copy, file, text, complaint):
    (schemas_copy / file).write_text(text, encoding="utf-8")
    with pytest.raises(SchemaError) as error:
        load_schemas(schemas_copy)
    assert complaint in str(error.value) and file.split("/")[-1] in str(error.value)


def test_every_feed_has_a_map_and_every_agency_file_name_resolves():
    schemas = load_schemas()
    assert sorted(schemas.feeds) == sorted(
        ["fever_clinic", "inpatients", "lab_results", "case_reports", "investigations", "lodging", "transport",
         "place_scans", "residents", "communities", "facility_beds", "vehicles", "isolation_checkins",
         "list_returns", "health_checks"])
    assert all(schemas.maps_for(feed) for feed in schemas.feeds)


def test_expectation_suites_are_generated_from_the_contract():
    contract = load_schemas().feeds["lab_results"]
    made = {(e.expectation_type, getattr(e, "column", None)) for e in expectations_for(contract)}
    assert ("expect_column_values_to_not_be_null", "sample_id") in made
    assert ("expect_column_values_to_be_in_set", "result") in made
    assert ("expect_column_values_to_be_in_set", "id_number_status") in made
    required = {f.name for f in contract.fields if f.required}
    assert {c for t, c in made if t == "expect_column_values_to_not_be_null"} == required


def test_landing_ignores_what_is_no_feed(day1):
    (day1 / "cdc").mkdir()
    (day1 / "cdc" / "notes.txt").write_text("x")
    (day1 / "cdc" / "lab_results.csv").write_text("样本编号\n")
    files, unknown = landing.discover(day1.parent, {"cdc": ["lab_results"]})
    assert [f.relative_path for f in files] == ["2020-02-10/cdc/lab_results.csv"]
    assert unknown == ["2020-02-10/cdc/notes.txt"]
