"""The four categories on small hand-made scenarios: one test per rule of the domain rules' table.

Scenarios are the exposure tests' stores (``test_exposures.Scenario``): staged rows written by
hand, each tied to a person. Here they go on through classification, once or twice (a second run
sees what changed and writes ``category_history``).
"""

from __future__ import annotations

import datetime as dt

import pytest

from tests.test_exposures import AS_OF, CASE, Scenario
from trace24.schemas.rules import RULES_DIR, load_facilities, load_rule_profile
from trace24.transforms.categories import classify as categories

T = dt.datetime


class Classified(Scenario):
    def classify(self, profile: str = "nhc-v6", as_of=AS_OF) -> dict[int, str]:
        self.run(profile, as_of)
        rules = load_rule_profile(profile)
        params = categories.category_parameters(rules, list(load_facilities().isolating_hospitals), as_of)
        categories.build_categories(self.con, params)
        return dict(self.con.execute("SELECT person_id, category FROM four_categories").fetchall())

    def current(self, person_id: int) -> dict:
        cursor = self.con.execute("SELECT * FROM four_categories WHERE person_id = ?", [person_id])
        names = [d[0] for d in cursor.description]
        return dict(zip(names, cursor.fetchall()[0], strict=True))

    def history(self, person_id: int) -> list[tuple]:
        return self.con.execute("SELECT from_category, to_category, cause FROM category_history "
                                "WHERE person_id = ? ORDER BY as_of", [person_id]).fetchall()

    def visit(self, person_id: int, at: dt.datetime, temperature: float, diagnosis: str = "发热待查", **extra):
        values = {"visit_id": f"V{self.row + 1}", "visited_at": at, "temperature_c": temperature,
                  "diagnosis": diagnosis, "symptoms": "发热", "white_cell_count": 11.0, **extra}
        self.add("fever_clinic", person_id, **values)

    def test(self, person_id: int, sampled: dt.datetime, result: str = "阴性", reported=None):
        self.add("lab_results", person_id, sample_id=f"S{self.row + 1}", sampled_at=sampled,
                 reported_at=reported or sampled + dt.timedelta(hours=12), result=result)


@pytest.fixture
def city(tmp_path):
    c = Classified(tmp_path / "categories.duckdb")
    yield c
    c.con.close()


def test_positive_result_is_confirmed_and_never_drops(city):
    city.case()
    city.visit(CASE, T(2020, 2, 5, 9), 38.5, diagnosis="疑似新冠肺炎")     # later evidence of lower categories
    city.test(CASE, T(2020, 2, 6, 9))
    city.test(CASE, T(2020, 2, 7, 12))
    assert city.classify()[CASE] == "confirmed"
    assert city.current(CASE)["action_key"] == "confirmed_mild"


def test_asymptomatic_card_is_flagged_and_severe_goes_to_a_designated_hospital(city):
    city.case(CASE, cls="无症状感染者")
    city.case(2, onset=dt.date(2020, 1, 30))
    city.add("inpatients", 2, admission_id="A2", hospital_code="H09", ward="呼吸科", admitted_at=T(2020, 2, 4),
             severity="重型")
    assert city.classify() == {CASE: "confirmed", 2: "confirmed"}
    assert city.current(CASE)["is_asymptomatic"] and city.current(CASE)["action_key"] == "asymptomatic"
    assert city.current(2)["action_key"] == "confirmed_severe"


def test_discharge_from_a_designated_hospital_releases_a_confirmed_case(city):
    city.case()
    city.add("inpatients", CASE, admission_id="A1", hospital_code="H03", ward="感染一病区",
             admitted_at=T(2020, 2, 3, 12), discharged_at=T(2020, 2, 9))
    assert city.classify(as_of=T(2020, 2, 8))[CASE] == "confirmed"
    assert CASE not in city.classify(as_of=T(2020, 2, 10))
    assert city.history(CASE)[-1] == ("confirmed", None, "discharged")


def test_suspected_card_and_exclusion_by_two_negatives_24_hours_apart(city):
    city.add("case_reports", 2, card_id="K2", case_class="疑似病例", reported_at=T(2020, 2, 5, 10), card_status="新增")
    city.test(2, T(2020, 2, 5, 11))
    city.test(2, T(2020, 2, 6, 1))                # 14 h later: not far enough apart
    assert city.classify()[2] == "suspected"
    city.test(2, T(2020, 2, 6, 12))               # 25 h after the first: excluded once reported
    assert 2 not in city.classify(as_of=T(2020, 2, 10, 1))
    assert city.history(2)[-1] == ("suspected", None, "excluded_by_negative_tests")


def test_profile_can_ask_for_three_negatives(city, tmp_path):
    three = tmp_path / "three.yaml"
    three.write_text((RULES_DIR / "nhc-v6.yaml").read_text(encoding="utf-8")
                     .replace("exclusion_negative_tests: 2", "exclusion_negative_tests: 3"), encoding="utf-8")
    city.add("case_reports", 2, card_id="K2", case_class="疑似病例", reported_at=T(2020, 2, 5, 10), card_status="新增")
    city.test(2, T(2020, 2, 5, 11))
    city.test(2, T(2020, 2, 6, 12))
    assert city.classify(str(three))[2] == "suspected"       # two are not enough here
    city.test(2, T(2020, 2, 7, 13))
    assert 2 not in city.classify(str(three))


def test_hospital_diagnosis_of_suspected_in_a_clinic_or_a_ward(city):
    city.visit(2, T(2020, 2, 8, 9), 37.0, diagnosis="疑似新冠肺炎")
    city.add("inpatients", 3, admission_id="A3", hospital_code="H01", ward="呼吸科", admitted_at=T(2020, 2, 8),
             diagnosis="疑似新冠肺炎")
    found = city.classify()
    assert found[2] == found[3] == "suspected"
    assert city.current(3)["reason"] == "hospital_diagnosis" and city.current(3)["action_key"] == "suspected"


def test_card_revised_to_excluded_leaves_suspected(city):
    city.add("case_reports", 2, card_id="K2", case_class="排除病例", reported_at=T(2020, 2, 5, 10),
             diagnosed_at=T(2020, 2, 7), card_status="订正")
    city.visit(2, T(2020, 2, 5, 9), 37.0, diagnosis="疑似新冠肺炎")
    assert 2 not in city.classify()


def test_clinical_rule_three_items_or_two_with_epidemiology(city):
    ground_glass = {"chest_ct": "双肺磨玻璃影", "lymphocyte_count": 0.8}
    city.visit(2, T(2020, 2, 6, 9), 38.2, **ground_glass)                    # three clinical items
    city.visit(3, T(2020, 2, 6, 9), 38.2, chest_ct="双肺磨玻璃影")           # two, no epidemiology
    city.person(CASE, household_id="H1")
    city.person(4, household_id="H1")
    city.case(onset=dt.date(2020, 1, 31))
    city.visit(4, T(2020, 2, 6, 9), 38.2, chest_ct="双肺磨玻璃影")           # two, and lives with a case
    found = city.classify()
    assert found[2] == "suspected" and city.current(2)["reason"] == "clinical_rule"
    assert found[3] == "fever"
    assert found[4] == "suspected"


def test_fever_threshold_negative_test_and_observation_period(city):
    city.visit(2, T(2020, 2, 8, 9), 37.3)
    city.visit(3, T(2020, 2, 8, 9), 37.2)
    city.visit(4, T(2020, 2, 8, 9), 38.0)
    city.test(4, T(2020, 2, 8, 10))
    city.visit(5, T(2020, 1, 20, 9), 38.0)        # 14 days of observation ended before the as-of time
    city.visit(6, T(2020, 2, 8, 9), 38.0, diagnosis="排除")
    assert city.classify() == {2: "fever"}


def test_close_contact_observation_ends_14_days_after_the_last_exposure(city):
    city.person(CASE, household_id="H1")
    city.person(2, household_id="H1")
    city.case(onset=dt.date(2020, 1, 31))
    found = city.classify()
    assert found[2] == "close_contact"
    row = city.current(2)
    assert row["observation_ends_on"] == dt.date(2020, 2, 3) + dt.timedelta(days=14)
    assert row["source_case_codes"] == ["C0000001"] and row["setting"] == "household"
    assert 2 not in city.classify(as_of=T(2020, 2, 17, 1))
    assert city.history(2)[-1] == ("close_contact", None, "observation_ended")


def test_precedence_fever_over_close_contact(city):
    city.person(CASE, household_id="H1")
    city.person(2, household_id="H1")
    city.case(onset=dt.date(2020, 1, 31))
    city.visit(2, T(2020, 2, 8, 9), 38.0, white_cell_count=11.0)
    assert city.classify()[2] == "fever"


def test_deleted_card_withdraws_what_it_alone_caused(city):
    city.add("case_reports", 2, card_id="K2", case_class="疑似病例", reported_at=T(2020, 2, 5, 10), card_status="新增")
    assert city.classify()[2] == "suspected"
    city.con.execute("UPDATE staged_case_reports SET is_deleted = true WHERE card_id = 'K2'")
    assert 2 not in city.classify()
    assert city.history(2) == [(None, "suspected", "suspected_case_report"),
                               ("suspected", None, "evidence_withdrawn")]


def test_rerun_with_nothing_new_changes_no_history(city):
    city.case()
    city.classify()
    before = city.con.execute("SELECT count(*) FROM category_history").fetchall()
    city.classify()
    assert city.con.execute("SELECT count(*) FROM category_history").fetchall() == before


def test_v8_lists_secondary_contacts_for_seven_days(city):
    # The close contact (2), named by the investigator, lives with 3: a secondary contact in v8.
    city.person(2, household_id="H2")
    city.person(3, household_id="H2")
    city.case(onset=dt.date(2020, 1, 31))
    city.add("investigations", 2, investigation_id="I1", case_card_id=f"K{CASE}", setting="家庭",
             was_protected="否")
    found = city.classify("nhc-v8")
    assert found[2] == "close_contact" and found.get(3) == "secondary_contact"
    assert city.current(3)["action_key"] == "secondary_contact"
    # The list names the case behind the close contact (关联病例), not the contact.
    case_code = city.con.execute("SELECT case_code FROM core_cases").fetchall()[0][0]
    assert city.current(3)["source_case_codes"] == [case_code] == city.current(2)["source_case_codes"]
