"""Everything that is not the outbreak: visitors and their trips and hotel stays, residents coming
home, fever-clinic patients who do not have the disease (some suspected, then excluded), screening
and ward tests that come back negative, ordinary inpatients, and changes to the register."""

from __future__ import annotations

import datetime as dt

import numpy as np

from .base import BACKLOG_START, DAY, HOUR, day_start, np_rng, round_minute
from .geo import HOSPITALS, LABS
from .outbreak import Outbreak
from .people import HUBEI_COUNTIES, KIND_NEWCOMER, OTHER, REFERENCE_DAY
from .visitors import Travel, hours, new_visitor, random_time
from .world import Admission, Card, FeverVisit, Sample, World

ORDINARY_DIAGNOSES = ["高血压病", "2型糖尿病", "冠心病", "慢性阻塞性肺疾病", "社区获得性肺炎", "急性阑尾炎",
                      "股骨颈骨折", "脑梗死", "慢性肾脏病", "胆囊结石", "上消化道出血", "心力衰竭"]
PLAIN_CT = ["未见异常", "未见异常", "未见异常", "双肺纹理增粗", "右下肺少许炎症"]
SYMPTOMS = ["发热", "咳嗽", "咽痛", "乏力", "头痛", "流涕", "肌肉酸痛", "腹泻"]


class Background:
    def __init__(self, world: World, outbreak: Outbreak, seed: int):
        self.w = world
        self.ob = outbreak
        self.rng = np_rng(seed, "background")
        self.travel = Travel(world, np_rng(seed, "background-travel"))
        self.travel.rooms = outbreak.travel.rooms        # one booking ledger for all hotel stays
        self.travel.train_no = 50
        self.pop = world.pop
        self.start = BACKLOG_START
        self.end = world.schedule.horizon
        self.days = [self.start.date() + dt.timedelta(days=k) for k in range((self.end - self.start).days)]
        # Background people stay clear of the clusters, so no truth depends on them.
        n = self.pop.n_register
        blocked = outbreak.hh_used[self.pop.household[:n]]
        self.pool = np.flatnonzero(~blocked)
        self.old_pool = self.pool[self.pop._ages[self.pool] >= 40]

    def lam(self, per_3000: float) -> float:
        return per_3000 * self.w.small_scale

    def times(self, day: dt.date, lam: float, lo: float, hi: float) -> list[dt.datetime]:
        """A day's event times in order, so that record numbers run with the clock."""
        n = int(self.rng.poisson(lam))
        minutes = np.sort(self.rng.integers(int(lo * 60), int(hi * 60), n))
        return [day_start(day) + dt.timedelta(minutes=int(m)) for m in minutes]

    def someone(self, when: dt.datetime, old: bool = False) -> int | None:
        """A resident (or, one time in six, a visitor present) who is free and not a case."""
        w, rng = self.w, self.rng
        for _ in range(20):
            if not old and self.visitors and rng.random() < 0.15:
                p = self.visitors[int(rng.integers(0, len(self.visitors)))]
                a, b = w.presence[p]
                if not (a <= when < b):
                    continue
            else:
                pool = self.old_pool if old else self.pool
                p = int(pool[int(rng.integers(0, len(pool)))])
            if p not in w.cases and p not in w.isolated_at and w.in_general_ward(p, when) is None:
                return p
        return None

    def run(self) -> None:
        self.visitors_and_trips()
        self.fever_clinics()
        self.screening()
        self.inpatients()
        self.register_changes()

    # -- people coming and going ---------------------------------------------------------------
    def visitors_and_trips(self) -> None:
        w, rng, pop = self.w, self.rng, self.pop
        n = round(self.lam(75))
        self.visitors = []
        for _ in range(n):
            arrive = random_time(rng, self.start - 5 * DAY, self.end - 12 * HOUR)
            v = new_visitor(w, self.travel, rng, arrive)
            self.visitors.append(v)
            stay = w.stays[-1] if w.stays and w.stays[-1].person == v else None
            if stay is not None and rng.random() < 0.2:   # a couple or two colleagues sharing the room
                mate = new_visitor(w, self.travel, rng, arrive, role="none", by_trip=False)
                self.travel.stay(mate, stay.hotel, stay.checkin, stay.checkout, room=stay.room)
                pop.community[mate] = pop.community[v]
                pop.district[mate] = pop.district[v]
                self.visitors.append(mate)
        for day in self.days:
            for _ in range(rng.poisson(self.lam(6))):      # residents coming home
                when = day_start(day) + hours(rng, 7, 23)
                p = self.someone(when)
                if p is not None and p < pop.n_register:
                    self.travel.background_trip(p, when)
            for _ in range(rng.poisson(self.lam(0.4))):    # residents in a hotel for a night or two
                when = day_start(day) + hours(rng, 14, 23)
                p = self.someone(when)
                if p is not None and p < pop.n_register:
                    self.travel.stay(p, int(rng.integers(0, len(w.city.hotels))), when,
                                     day_start(day) + DAY * int(rng.integers(1, 3)) + hours(rng, 9, 12))

    # -- fever clinics -----------------------------------------------------------------------------
    def fever_clinics(self) -> None:
        w, rng = self.w, self.rng
        fix_days = set(range(w.schedule.days - 1))
        for day in self.days:
            for when in self.times(day, self.lam(9), 0, 24):
                p = self.someone(when)
                if p is not None:
                    self.visit(p, when)
            idx = w.schedule.index_of(day_start(day))
            if idx in fix_days:   # one patient's phone typed wrong, corrected the next day (H02 only)
                when = day_start(day) + hours(rng, 9, 17)
                p = self.someone(when)
                if p is not None and self.pop.phone[p]:
                    v = self.visit(p, when, hospital="H02")
                    v.phone_fix = (round_minute(when + hours(rng, 20, 30)), self.pop.new_mobile())
                    fix_days.discard(idx)
        for fo in self.ob.foreigners:   # the foreigner worries, and shows a passport at the clinic
            a, b = w.presence[fo]
            when = max(a + DAY, day_start(w.schedule.dates[min(1, w.schedule.days - 1)]) + 10 * HOUR)
            if when < min(b, self.end) and fo not in w.cases and fo not in w.isolated_at:
                self.visit(fo, when, temperature=37.0)

    def visit(self, p: int, when: dt.datetime, hospital: str | None = None,
              temperature: float | None = None) -> FeverVisit:
        w, rng, pop = self.w, self.rng, self.pop
        when = round_minute(when)
        hospital = hospital or w.fever_hospital(p, when, rng)
        fever = rng.random() < 0.75
        t = temperature if temperature is not None else \
            round(float(rng.uniform(37.3, 39.0) if fever else rng.uniform(36.5, 37.2)), 1)
        fever = t >= 37.3
        if fever:
            diagnosis = str(rng.choice(["发热待查", "疑似新冠肺炎", "排除"], p=[0.55, 0.12, 0.33]))
        else:
            diagnosis = "排除" if rng.random() < 0.8 else "发热待查"
        disposition = "留观" if diagnosis == "疑似新冠肺炎" and rng.random() < 0.7 else "居家"
        symptoms = [s for s in rng.permutation(SYMPTOMS)[:int(rng.integers(1, 4))]]
        if fever and "发热" not in symptoms:
            symptoms.insert(0, "发热")
        ct = "" if rng.random() < 0.2 else str(rng.choice(PLAIN_CT))
        v = FeverVisit(w.number("visit", when, hospital), hospital, p, when, t, ";".join(symptoms), ct,
                       round(float(rng.uniform(4.0, 12.5)), 1), round(float(rng.uniform(1.0, 3.2)), 2),
                       diagnosis, disposition, pop.address(p, int(rng.integers(0, 3))))
        w.visits.append(v)
        lab = LABS[2] if hospital == "H01" else LABS[3]
        if diagnosis == "疑似新冠肺炎":
            # Suspected: two negative tests at least 24 h apart, then the card is revised to 排除病例.
            s1 = self.negative(p, when + hours(rng, 0.2, 1), lab, "发热门诊")
            s2 = self.negative(p, s1.sampled + hours(rng, 24, 40), LABS[0], "发热门诊")
            card_time = round_minute(when + hours(rng, 1, 2))
            card = Card(w.number("card", card_time, hospital), p, HOSPITALS[hospital].name,
                        pop.address(p, int(rng.integers(0, 3))), pop.community_code(p) if rng.random() < 0.5 else "")
            state = {"status": "新增", "class": "疑似病例", "severity": "", "onset": when.date(),
                     "diagnosed": round_minute(when + HOUR * 0.5)}
            card.versions.append((card_time, state))
            card.versions.append((round_minute(s2.reported + hours(rng, 1, 4)),
                                  dict(state, status="订正", **{"class": "排除病例"},
                                       diagnosed=round_minute(s2.reported + HOUR))))
            w.cards.append(card)
            if disposition == "留观":
                w.isolate(p, when)
        elif (diagnosis == "发热待查" and rng.random() < 0.6) or (diagnosis == "排除" and rng.random() < 0.2):
            self.negative(p, when + hours(rng, 0.2, 1), lab, "发热门诊")
        return v

    def negative(self, p: int, when: dt.datetime, lab: tuple[str, str], reason: str) -> Sample:
        w, rng = self.w, self.rng
        when = round_minute(when)
        s = Sample(w.number("sample", when, lab[1]), p, lab[0], when, round_minute(when + hours(rng, 16, 40)),
                   "阴性", None, None, reason)
        w.samples.append(s)
        return s

    def screening(self) -> None:
        rng = self.rng
        for day in self.days:
            for when in self.times(day, self.lam(7), 8, 17):
                p = self.someone(when)
                if p is not None:
                    self.negative(p, when, LABS[0] if rng.random() < 0.5 else LABS[1], "筛查")

    # -- ordinary inpatients ---------------------------------------------------------------------------
    def inpatients(self) -> None:
        w, rng, ob = self.w, self.rng, self.ob
        for day in self.days:
            for when in self.times(day, self.lam(2.5), 8, 22):
                p = self.someone(when, old=True)
                if p is None or p >= self.pop.n_register:
                    continue
                hospital = "H01" if rng.random() < 0.5 else "H02"
                ward = str(rng.choice(HOSPITALS[hospital].wards))
                discharge = round_minute(when + DAY * int(rng.integers(3, 21)) + hours(rng, 0, 6))
                diagnosis = str(rng.choice(ORDINARY_DIAGNOSES))
                adm = ob.add_admission(Admission(w.number("admission", when, hospital), hospital, ward, "", p,
                                                 round_minute(when), discharge, diagnosis, [(when, "")]),
                                       required=False)
                if adm is not None and rng.random() < 0.3:
                    self.negative(p, when + hours(rng, 2, 10), LABS[2] if hospital == "H01" else LABS[3], "住院")

    # -- register changes ------------------------------------------------------------------------------
    def register_changes(self) -> None:
        """Later deliveries of the register: newcomers, and phones corrected."""
        w, rng, pop = self.w, self.rng, self.pop
        for k in range(1, w.schedule.days):
            base = day_start(w.schedule.dates[k])
            for _ in range(max(1, round(self.lam(1)))):
                h = int(rng.integers(0, len(pop.hh_size)))
                male = bool(rng.random() < 0.5)
                age = int(rng.integers(18, 60))
                birth = REFERENCE_DAY - dt.timedelta(days=int(age * 365.25 + rng.integers(0, 365)))
                member = int(pop.hh_first[h])
                p = pop.add_person(name=pop.random_name(male), male=male, birth=birth,
                                   county=int(rng.choice(HUBEI_COUNTIES)), phone=pop.new_mobile(), kind=KIND_NEWCOMER,
                                   community=int(pop.community[member]), district=int(pop.district[member]))
                pop.household[p] = h
                pop.relation[p] = OTHER
                pop.hukou[p] = 1
                pop.register_day[p] = k
                pop.updated[p] = np.datetime64(base + hours(rng, 9, 17), "m")
                pop.phone_owner[p] = p
                pop.extra_members.setdefault(h, []).append(p)
                w.newcomers.append(p)
            for _ in range(max(1, round(self.lam(1)))):
                p = int(self.pool[int(rng.integers(0, len(self.pool)))])
                if pop.phone[p] and p not in w.phone_fixes:
                    w.phone_fixes[p] = (k, pop.new_mobile(), round_minute(base + hours(rng, 9, 17)))
