"""The 24-hour clock on a hand-made scenario: when a contact counts as listed in time, and why not.

A case reported on 3 February at 10:00 (deadline 4 February 10:00) ate in a restaurant where four
people scanned the same code within 30 minutes: close contacts, each with another story.
"""

from __future__ import annotations

import datetime as dt

import pytest

from tests.test_categories import Classified
from tests.test_exposures import CASE
from trace24.schemas.rules import load_rule_profile
from trace24.transforms.followup import answers
from trace24.transforms.lists import community_lists, list_workbooks, tracing_clock

T = dt.datetime
IN_TIME, LATE_DATA, NOT_LISTED, UNPLACED = 2, 3, 4, 5
ANSWERS = list_workbooks.load_answer_layout()


class Clocked(Classified):
    def clock(self, as_of: dt.datetime) -> dict[int, tuple]:
        self.classify(as_of=as_of)
        community_lists.ensure_out_list_rows(self.con)
        answers.build_followup(self.con, answers.followup_parameters(ANSWERS.values, list(ANSWERS.controlling),
                                                                     as_of, ANSWERS.corrections))
        for column in ("district", "phone", "address_text"):
            self.con.execute(f"ALTER TABLE persons ADD COLUMN IF NOT EXISTS {column} VARCHAR")
        params = tracing_clock.clock_parameters(load_rule_profile("nhc-v6"), "未知区", as_of)
        tracing_clock.build_clock(self.con, params)
        return {contact: (in_time, reason) for contact, in_time, reason in self.con.execute(
            "SELECT contact_person_id, is_within_target, miss_reason FROM tracing_clock_contacts").fetchall()}

    def listed(self, person_id: int, as_of: dt.datetime) -> None:
        """The person on their community's list delivered by the run at ``as_of``."""
        self.con.execute(community_lists.OUT_ROWS_DDL)
        self.con.execute("INSERT INTO out_list_rows VALUES ($as_of, 'x.csv', '区', 'C1', $person_id, "
                         "'close_contact', 'new', [], '', $key, $as_of)",
                         {"as_of": as_of, "person_id": person_id, "key": f"R{person_id:016X}"})

    def answered(self, person_id: int, answer: str, controlled_at: dt.datetime) -> None:
        """Office C1 returns the person's row answered (as the list_returns feed stages it)."""
        self.con.execute("INSERT INTO staged_list_returns BY NAME SELECT 900 AS load_id, "
                         "CAST($at AS DATE) AS delivery_date, 'community/list_returns_C1.csv' AS source_file, "
                         "$person AS source_row_number, $key AS row_key, $answer AS answer, $at AS controlled_at, "
                         "true AS is_current, false AS is_deleted",
                         {"at": controlled_at, "person": person_id, "key": f"R{person_id:016X}", "answer": answer})

    def case_status(self) -> tuple:
        return self.con.execute("SELECT clock_status, miss_reasons FROM tracing_clock WHERE case_person_id = ?",
                                [CASE]).fetchall()[0]


@pytest.fixture
def city(tmp_path):
    c = Clocked(tmp_path / "clock.duckdb")
    c.case(onset=dt.date(2020, 2, 2))                     # reported 3 February 10:00
    for person in (IN_TIME, LATE_DATA, NOT_LISTED):
        c.person(person, community_code="C1", room="101")   # an address to act on
    c.person(UNPLACED)                                    # no community
    c.delivered(dt.date(2020, 2, 2))
    for minute, person in ((0, CASE), (10, IN_TIME), (15, NOT_LISTED), (20, UNPLACED)):
        c.add("place_scans", person, venue_code="V1", venue_type="餐饮", scanned_at=T(2020, 2, 1, 12, minute))
    c.delivered(dt.date(2020, 2, 5))                      # the police's late file
    c.add("place_scans", LATE_DATA, venue_code="V1", venue_type="餐饮", scanned_at=T(2020, 2, 1, 12, 5))
    yield c
    c.con.close()


def test_each_contact_meets_the_target_or_says_why_not(city):
    city.listed(IN_TIME, T(2020, 2, 4))
    city.listed(LATE_DATA, T(2020, 2, 6))
    assert city.clock(as_of=T(2020, 2, 10)) == {
        IN_TIME: (True, None),
        # Its exposure needs both scans; the case's came on time, the contact's two days late.
        LATE_DATA: (False, "late_delivery"),
        NOT_LISTED: (False, "not_listed_in_time"),
        UNPLACED: (False, "contact_unplaced"),
    }
    assert city.case_status() == ("missed", ["contact_unplaced", "late_delivery", "not_listed_in_time"])


def test_before_the_deadline_an_unlisted_contact_is_pending(city):
    city.listed(IN_TIME, T(2020, 2, 4, 8))
    contacts = city.clock(as_of=T(2020, 2, 4, 9))        # an hour before the deadline
    assert contacts[IN_TIME] == (True, None)
    assert {contacts[p] for p in (LATE_DATA, NOT_LISTED, UNPLACED)} == {(False, "pending")}
    assert city.case_status() == ("pending", ["pending"])


def test_a_contact_is_controlled_when_its_office_answers_so_by_the_deadline(city):
    city.listed(IN_TIME, T(2020, 2, 4))
    city.listed(LATE_DATA, T(2020, 2, 6))
    city.answered(IN_TIME, "已落实居家隔离", T(2020, 2, 4, 9))       # deadline 4 February 10:00
    city.answered(LATE_DATA, "已集中隔离", T(2020, 2, 6, 12))
    city.answered(NOT_LISTED, "联系不上", T(2020, 2, 4, 9))          # not listed, so no key: set aside
    city.clock(as_of=T(2020, 2, 10))
    controlled = dict(city.con.execute("SELECT contact_person_id, controlled_at FROM tracing_clock_contacts "
                                       "WHERE is_controlled_within_target").fetchall())
    assert controlled == {IN_TIME: T(2020, 2, 4, 9)}
    assert city.con.execute("SELECT contacts_controlled_in_time, control_status FROM tracing_clock").fetchall() == [
        (1, "missed")]
    row = city.con.execute("SELECT controlled_met, controlled_missed, controlled_compliance "
                           "FROM tracing_compliance").fetchall()
    assert row == [(0, 1, 0.0)]
    # Before the deadline the case is pending, not missed.
    city.clock(as_of=T(2020, 2, 4, 9, 30))
    assert city.con.execute("SELECT control_status FROM tracing_clock").fetchone() == ("pending",)
