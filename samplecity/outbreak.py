"""The outbreak: index cases, transmission in named settings, care seeking, testing, report
cards, investigations and contact isolation, as a small discrete-event simulation.

Each cluster (one per 3 000 residents up to 30 000, fewer beyond) has the same cast, drawn afresh:
- A, a resident, returns by G-train (car 05) while infectious, stays home (居家) after a clinic
  visit, infects his household; his elderly parent F is admitted to a general ward before anyone
  tests her and infects other patients of the ward;
- T1 (infected in car 05, asymptomatic, never seeks care) infects E at home; E, presymptomatic,
  dines with friends on 2020-02-10 (聚餐) and infects two or three, then visits two hospitals
  (two report cards, the second deleted as a duplicate);
- B, a visitor, flies in (an aisle seat) and infects her colleague D, who shares her hotel room, and
  passengers within three rows; L1 (asymptomatic) infects G at home; G goes to the office on
  2020-02-10 and infects colleagues of his team; G's first lab result is 可疑, then 阳性;
- C, a resident, falls ill with no travel record (import) and infects his household.
Contacts named in investigations are isolated and tested, which ends their chains.
"""

from __future__ import annotations

import datetime as dt
import heapq
from collections import defaultdict

import numpy as np

from .base import DAY, FIRST_DELIVERY, HOUR, day_start, np_rng, round_minute
from .geo import HOSPITALS, LABS
from .people import FOREIGN_NAMES, KIND_CONTACT_ONLY, KIND_NEWCOMER, KIND_VISITOR, REFERENCE_DAY
from .visitors import Travel, hours, new_visitor
from .world import Admission, Card, Case, Contact, Dinner, Exposure, FeverVisit, Investigation, Sample, World

WORK_START = dt.date(2020, 2, 3)   # offices count as open on weekdays from here
SYMPTOMS = ["发热", "干咳", "乏力", "咽痛", "肌肉酸痛", "气促", "腹泻", "头痛", "鼻塞"]
COVID_CT = ["双肺多发磨玻璃影", "双肺斑片状磨玻璃影", "右下肺磨玻璃样改变", "双肺外带多发斑片影", "左肺下叶磨玻璃影"]


def workday(d: dt.date) -> bool:
    return d >= WORK_START and d.weekday() < 5


class Outbreak:
    def __init__(self, world: World, seed: int):
        self.w = world
        self.pop = world.pop
        self.rng = np_rng(seed, "outbreak")
        self.travel = Travel(world, np_rng(seed, "outbreak-travel"))
        self.queue: list = []
        self.seq = 0
        self.roles: dict[int, dict] = defaultdict(dict)
        self.horizon = world.schedule.horizon
        n_hh = len(self.pop.hh_size)
        self.hh_used = np.zeros(n_hh, bool)
        self.orders: dict[str, np.ndarray] = {}
        self.pointers: dict[str, int] = defaultdict(int)
        self.ages = self.pop._ages
        teams = self.pop.team[:self.pop.n_register]
        self.team_size = np.bincount(teams[teams >= 0]) if (teams >= 0).any() else np.zeros(0, int)
        self.case_count = 0
        self.dinner_day = day_start(FIRST_DELIVERY)
        self.named: dict[int, set[int]] = defaultdict(set)   # case -> contacts named
        self.ward_index: dict[tuple[str, str], list[Admission]] = defaultdict(list)
        self.foreigners: list[int] = []

    # -- event queue -----------------------------------------------------------------------
    def push(self, when: dt.datetime, kind: str, *args) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (round_minute(when), self.seq, kind, args))

    def run(self) -> None:
        while self.queue:
            when, _, kind, args = heapq.heappop(self.queue)
            if when >= self.horizon:
                continue
            getattr(self, "on_" + kind)(when, *args)

    # -- picking people ----------------------------------------------------------------------
    def _members(self, h: int) -> range:
        first = int(self.pop.hh_first[h])
        return range(first, first + int(self.pop.hh_size[h]))

    def pick(self, role: str, test) -> tuple:
        """The next unused household (in a per-role random order) for which test(members) gives
        a tuple of people; marks the household used so clusters never share one."""
        if role not in self.orders:
            self.orders[role] = self.rng.permutation(len(self.pop.hh_size))
        order = self.orders[role]
        while self.pointers[role] < len(order):
            h = int(order[self.pointers[role]])
            self.pointers[role] += 1
            if self.hh_used[h]:
                continue
            got = test(list(self._members(h)))
            if got:
                self.hh_used[h] = True
                return got
        raise RuntimeError(f"no household left for role {role}")

    def pick_person(self, role: str, lo: int, hi: int, need_phone: bool = False, name: str = "") -> int:
        def test(members):
            ok = [m for m in members if lo <= self.ages[m] <= hi and (not need_phone or self.pop.phone[m])
                  and (not name or self.pop.name[m] == name)]
            return (ok[int(self.rng.integers(0, len(ok)))],) if ok else None
        return self.pick(role + name, test)[0]

    def team_of(self, p: int) -> list[int]:
        t = int(self.pop.team[p])
        if t < 0:
            return []
        return [int(x) for x in self._team_members[t] if x != p]

    @property
    def _team_members(self) -> dict[int, np.ndarray]:
        if not hasattr(self, "_tm"):
            n = self.pop.n_register
            teams = self.pop.team[:n]
            idx = np.flatnonzero(teams >= 0)
            order = idx[np.argsort(teams[idx], kind="stable")]
            bounds = np.searchsorted(teams[order], np.arange(teams.max() + 2))
            self._tm = {t: order[bounds[t]:bounds[t + 1]] for t in range(len(bounds) - 1)}
        return self._tm

    # -- cluster cast ------------------------------------------------------------------------
    def seed_clusters(self, n: int) -> None:
        for c in range(n):
            self.seed_cluster(c)

    def seed_cluster(self, c: int) -> None:
        rng, w, pop, travel = self.rng, self.w, self.pop, self.travel
        shift = dt.timedelta(days=0 if c == 0 else int(rng.integers(-2, 2)), hours=float(rng.uniform(-6, 6)))
        dinner = self.dinner_day + hours(rng, 18.3, 19.0)
        ages = self.ages

        # A and his household (F, aged 65+, is admitted to a general ward).
        def test_a(members):
            old = [m for m in members if ages[m] >= 65]
            men = [m for m in members if pop.male[m] and 30 <= ages[m] <= 55]
            return (men[0], old[0]) if len(members) >= 3 and old and men else None
        a, f = self.pick("A", test_a)
        train = travel.train(dt.datetime(2020, 1, 28, 7) + shift + hours(rng, 0, 8), "G")
        travel.seat(train, a, car=5)
        a_onset = train["arr"] + hours(rng, 12, 36)
        # A sees a doctor late enough that F is in the ward before A's investigation names her.
        self.roles[a].update(asymptomatic=False, onset=a_onset, disposition="居家", first_hospital=None,
                             visit_not_before=a_onset + hours(rng, 48, 60),
                             forced=[(f, "household", lambda case: case.window_start + hours(self.rng, 2, 8))])
        self.roles[f].update(asymptomatic=False, incubation=hours(rng, 72, 78), ward_index=True, severity="重型")
        self.push(train["dep"] - hours(rng, 48, 96), "infect", a, -1, "import")

        # T1 (silent) and T2 infected in car 05; T1 infects E at home; E dines on 2020-02-10.
        def test_t1(members):
            adults = [m for m in members if 25 <= ages[m] <= 55 and pop.phone[m]]
            for e in adults:
                others = [m for m in members if m != e and 18 <= ages[m] <= 70]
                if others:
                    return others[0], e
            return None
        t1, e = self.pick("T1", test_t1)
        t2 = self.pick_person("passenger", 18, 70)
        for p in (t1, t2):
            travel.seat(train, p, car=5)
        self._fill_vehicle(train, car=5, n=int(rng.integers(40, 61)) - 3, name="张伟" if c == 0 else "")
        for car in (2, 3, 4, 6, 7, 8):
            self._fill_vehicle(train, car=car, n=int(rng.integers(8, 20)))
        e_onset = dinner + hours(rng, -8, 30)

        def when_e(case: Case) -> dt.datetime:
            lo = max(case.window_start, e_onset - 7 * DAY + HOUR)
            hi = max(lo, e_onset - 3 * DAY - HOUR)
            return lo + (hi - lo) * float(self.rng.random())
        self.roles[t1].update(asymptomatic=True, silent=True, no_household=True, forced=[(e, "household", when_e)])
        self.roles[t2].update(asymptomatic=False)
        self.roles[e].update(asymptomatic=False, onset_target=e_onset, visit_not_before=dinner + hours(rng, 14, 20),
                             visit_delay=(6, 20), disposition="居家", first_hospital="H01", double_visit=True)
        car5 = [t.person for t in w.trips if t.number == train["number"] and t.dep == train["dep"] and t.car == "05"
                and t.person not in (a, t1, t2)]
        extra = [int(p) for p in rng.permutation(car5)[:int(rng.integers(1, 4))]]
        for p in [t1, t2, *extra]:
            self.push(train["arr"] - hours(rng, 0.5, 2), "attempt", a, p, "train")
        friends = [self.pick_person("friend", 20, 60, need_phone=True, name="王芳" if c == 0 else "")]
        friends += [self.pick_person("friend", 20, 60, need_phone=True) for _ in range(int(rng.integers(3, 6)))]
        restaurants = [v.index for v in w.city.venues_of_kind("餐饮")
                       if v.community == int(pop.community[e])] or [v.index for v in w.city.venues_of_kind("餐饮")]
        venue = restaurants[int(rng.integers(0, len(restaurants)))]
        w.dinners.append(Dinner(venue, dinner, [e, *friends]))
        for p in rng.permutation(friends)[:int(rng.integers(2, 4))]:
            self.push(dinner + hours(rng, 0.5, 2), "attempt", e, int(p), "restaurant")

        # B flies in, shares a hotel room with D; L1 (silent) and L2 sit within three rows.
        flight = travel.flight(dt.datetime(2020, 1, 30, 9) + shift + hours(rng, 0, 9))
        b = new_visitor(w, travel, rng, flight["arr"], role="none", by_trip=False, male=False,
                        age=int(rng.integers(28, 45)), stay_days=20)
        row = int(rng.integers(18, 27))
        travel.seat(flight, b, row=row)
        hotel = int(rng.integers(0, len(w.city.hotels)))
        b_stay = travel.stay(b, hotel, flight["arr"] + hours(rng, 1, 2), flight["arr"] + 12 * DAY)
        d_arrive = b_stay.checkin + hours(rng, 20, 34)
        d = new_visitor(w, travel, rng, d_arrive, role="none", by_trip=False, male=True,
                        age=int(rng.integers(28, 50)), stay_days=10)
        travel.seat(travel.train(d_arrive - hours(rng, 3, 5), "G"), d)
        d_leave = day_start((d_arrive + DAY * int(rng.integers(5, 8))).date()) + hours(rng, 9, 12.5)
        travel.stay(d, hotel, d_arrive + hours(rng, 0.5, 1.5), d_leave, room=b_stay.room)
        for p in (b, d):
            pop.community[p] = w.city.hotels[hotel].community
            pop.district[p] = 0 if w.city.communities[w.city.hotels[hotel].community].district == "江岸区" else 1
            pop.address_text[p] = f"{w.city.hotels[hotel].name}{b_stay.room}房"
        b_onset = flight["arr"] + hours(rng, 10, 30)
        self.roles[b].update(asymptomatic=False, onset=b_onset, disposition="转定点医院", first_hospital="H01",
                             visit_not_before=d_arrive + hours(rng, 20, 30))
        self.push(flight["dep"] - hours(rng, 48, 72), "infect", b, -1, "import")
        self.push(d_arrive + hours(rng, 3, 12), "attempt", b, d, "hotel")

        def test_l1(members):
            for g in members:
                t = int(pop.team[g])
                if t >= 0 and self.team_size[t] >= 4 and 22 <= ages[g] <= 55:
                    others = [m for m in members if m != g and 18 <= ages[m] <= 70]
                    if others:
                        return others[0], g
            return None
        l1, g = self.pick("L1", test_l1)
        l2 = self.pick_person("passenger", 18, 70)
        seats = [l1, l2]
        if c == 0 or rng.random() < 0.3:   # a foreigner with a passport, sitting close by
            fm = bool(rng.random() < 0.6)
            fo = self.pop.add_person(name=FOREIGN_NAMES[int(rng.integers(0, len(FOREIGN_NAMES)))], male=fm,
                                     birth=REFERENCE_DAY - dt.timedelta(days=int(rng.integers(25, 60) * 365.25)),
                                     county=None, phone=pop.new_mobile() if rng.random() < 0.7 else "",
                                     kind=KIND_VISITOR, passport=f"E{int(rng.integers(10**7, 10**8))}")
            w.presence[fo] = (flight["arr"], flight["arr"] + 14 * DAY)
            fo_leave = day_start((flight["arr"] + DAY * int(rng.integers(9, 13))).date()) + hours(rng, 9, 12.5)
            fs = travel.stay(fo, int(rng.integers(0, len(w.city.hotels))), flight["arr"] + hours(rng, 1, 2), fo_leave)
            pop.community[fo] = w.city.hotels[fs.hotel].community
            pop.district[fo] = 0 if w.city.communities[pop.community[fo]].district == "江岸区" else 1
            seats.append(fo)
            self.foreigners.append(fo)
        for p in seats:
            travel.seat(flight, p, row=row + int(rng.integers(-3, 4)))
        self._fill_vehicle(flight, n=int(rng.integers(90, 140)))
        g_onset = day_start(FIRST_DELIVERY + DAY) + hours(rng, 8, 20)

        def when_g(case: Case) -> dt.datetime:
            lo = max(case.window_start, g_onset - 7 * DAY + HOUR)
            hi = max(lo, g_onset - 3 * DAY - HOUR)
            return lo + (hi - lo) * float(self.rng.random())
        self.roles[l1].update(asymptomatic=True, silent=True, no_household=True, forced=[(g, "household", when_g)])
        self.roles[l2].update(asymptomatic=False)
        self.roles[g].update(asymptomatic=False, onset_target=g_onset, equivocal=True, visit_delay=(0, 2),
                             visit_not_before=day_start(FIRST_DELIVERY + DAY) + hours(rng, 18, 20))
        near = [t.person for t in w.trips if t.number == flight["number"] and t.dep == flight["dep"]
                and abs(t.row - row) <= 3 and t.person not in (b, l1, l2) and pop.id_type[t.person] == 0]
        extra = [int(p) for p in rng.permutation(near)[:int(rng.integers(0, 2))]]
        for p in [l1, l2, *extra]:
            self.push(flight["arr"] - hours(rng, 0.5, 1.5), "attempt", b, p, "flight")
        for p in self.rng.permutation(self.team_of(g))[:int(rng.integers(2, 4))]:
            self.push(self.dinner_day + hours(rng, 9.5, 16.5), "attempt", g, int(p), "workplace")

        # C: no travel record.
        def test_c(members):
            adults = [m for m in members if 25 <= ages[m] <= 65]
            return (adults[0],) if len(members) >= 3 and adults else None
        cc = self.pick("C", test_c)[0]
        self.roles[cc].update(asymptomatic=False)
        self.push(dt.datetime(2020, 2, 1, 8) + shift + hours(rng, 0, 48), "infect", cc, -1, "import")

        # F's ward (in the sample H01 呼吸内科二病区): its patients around her expected admission.
        expected = a_onset + hours(rng, 40, 50)
        hospital = "H01" if c == 0 else str(rng.choice(["H01", "H02"]))
        ward = "呼吸内科二病区" if c == 0 else str(rng.choice(HOSPITALS[hospital].wards))
        self.roles[f]["ward"] = (hospital, ward)
        mates = []
        for _ in range(int(rng.integers(4, 7))):
            p = self.pick_person("ward", 55, 90)
            admit = expected - hours(rng, 8, 24 * 5)
            adm = Admission(w.number("admission", admit, hospital), hospital, ward, "", p, round_minute(admit),
                            round_minute(expected + hours(rng, 24 * 3, 24 * 12)),
                            str(rng.choice(["慢性阻塞性肺疾病急性加重", "社区获得性肺炎", "支气管扩张伴感染", "肺癌"])))
            self.add_admission(adm)
            mates.append(p)
        self.roles[f]["ward_mates"] = mates

    def _fill_vehicle(self, vehicle: dict, n: int, car: int | None = None, name: str = "") -> None:
        """Other passengers arriving in the city: residents coming home and visitors (fewer in a
        small city; visitors only once the city runs out of unused households)."""
        rng = self.rng
        for k in range(max(1, round(n * min(1.0, self.w.scale)))):
            p = -1
            if rng.random() < 0.7:
                try:
                    p = self.pick_person("passenger", 16, 75, name=name if k == 0 else "")
                except RuntimeError:
                    p = -1
            if p < 0:
                p = new_visitor(self.w, self.travel, rng, vehicle["arr"], by_trip=False)
            self.travel.seat(vehicle, p, car=car)

    def add_admission(self, adm: Admission, required: bool = True) -> Admission | None:
        """Put the patient in a free bed of the ward for the whole stay. A full ward turns away an
        ordinary admission (required=False) and adds a bed (加床) for anyone else."""
        if not adm.bed:
            end = adm.discharge or dt.datetime.max
            used = {a.bed for a in self.ward_index[(adm.hospital, adm.ward)]
                    if a.admit < end and (a.discharge or dt.datetime.max) > adm.admit}
            prefix = adm.ward[0] if adm.hospital == "FC01" else ""
            beds = 500 if prefix else 60 if adm.isolating else 40
            free = (f"{prefix}{k:03d}" if prefix else f"{k:02d}" for k in range(1, beds + 1))
            adm.bed = next((b for b in free if b not in used), "")
            if not adm.bed:
                if not required:
                    return None
                k = 1
                while f"加{k}" in used:
                    k += 1
                adm.bed = f"加{k}"
        self.ward_index[(adm.hospital, adm.ward)].append(adm)
        return self.w.add_admission(adm)

    # -- infection ---------------------------------------------------------------------------
    def on_infect(self, when: dt.datetime, target: int, source: int, setting: str) -> None:
        w, rng = self.w, self.rng
        if target in w.cases or w.isolated(target, when):
            return
        role = self.roles.get(target, {})
        if "onset" in role:
            onset = role["onset"]
        elif "onset_target" in role:
            onset = min(max(role["onset_target"], when + 3 * DAY), when + 7 * DAY)
        else:
            onset = when + role.get("incubation", hours(rng, 72, 24 * 7))
        asym = role.get("asymptomatic", bool(rng.random() < 0.2))
        age = self.pop.age(target, when.date())
        if asym:
            severity = ""
        elif "severity" in role:
            severity = role["severity"]
        else:
            p = [0.30, 0.40, 0.25, 0.05] if age >= 65 else [0.42, 0.45, 0.11, 0.02]
            severity = str(rng.choice(["轻型", "普通型", "重型", "危重型"], p=p))
        self.case_count += 1
        case = Case(target, f"C{self.case_count:05d}", source, setting, round_minute(when), round_minute(onset),
                    asym, severity, float(rng.uniform(18, 33)), silent=bool(role.get("silent")))
        w.cases[target] = case
        w.critical.add(target)
        ws = case.window_start
        if not role.get("no_household"):
            for m in self.pop.household_members(target):
                if m != target and rng.random() < 0.6:   # home isolation in early February: households burned
                    self.push(ws + hours(rng, 0, 24 * 4), "attempt", target, m, "household")
        for mate in self.team_of(target):
            for k in range(8):
                day = (ws + k * DAY).date()
                if workday(day) and rng.random() < 0.05:
                    self.push(day_start(day) + hours(rng, 9.5, 17), "attempt", target, mate, "workplace")
        for other, sett, fn in role.get("forced", []):
            self.push(fn(case), "attempt", target, other, sett)
        ward = w.in_general_ward(target, when)
        if role.get("ward_index"):
            self.push(case.onset + hours(rng, 12, 20), "ward_admit", target)
        elif ward is not None:
            self._ward_spread(target, ward, when)
            if not asym:
                self.push(case.onset + hours(rng, 6, 20), "ward_test", target)
        elif not asym and not case.silent:
            visit = case.onset + hours(rng, *role.get("visit_delay", (12, 72)))
            if "visit_not_before" in role:
                visit = max(visit, role["visit_not_before"])
            self.push(visit, "visit", target, role.get("first_hospital"))

    def on_attempt(self, when: dt.datetime, source: int, target: int, setting: str) -> None:
        w = self.w
        case = w.cases.get(source)
        if case is None or when < case.window_start or w.isolated(source, when) or target in w.cases:
            return
        if setting in ("household", "workplace", "restaurant") and not (w.free(source, when) and w.free(target, when)):
            return
        if setting == "ward":
            a, b = w.in_general_ward(source, when), w.in_general_ward(target, when)
            if a is None or b is None or (a.hospital, a.ward) != (b.hospital, b.ward):
                return
        self.on_infect(when, target, source, setting)

    def _ward_spread(self, person: int, adm: Admission, start: dt.datetime, forced: list[int] = ()) -> None:
        """Attempts on the other patients of the ward while the case lies there."""
        rng = self.rng
        for other in self.ward_index[(adm.hospital, adm.ward)]:
            if other.person == person or other.isolating:
                continue
            lo = max(start, other.admit)
            hi = min(start + 3 * DAY, other.discharge or start + 3 * DAY)
            if hi <= lo:
                continue
            if other.person in forced:
                when = lo + (min(hi, lo + 30 * HOUR) - lo) * float(rng.random())
                self.push(when, "attempt", person, other.person, "ward")
            elif rng.random() < 0.15:
                self.push(lo + (hi - lo) * float(rng.random()), "attempt", person, other.person, "ward")

    # -- care seeking --------------------------------------------------------------------------
    def on_visit(self, when: dt.datetime, person: int, hospital: str | None, second: bool = False) -> None:
        w, rng, pop = self.w, self.rng, self.pop
        case = w.cases[person]
        if case.detected or w.isolated(person, when) or w.in_general_ward(person, when):
            return
        role = self.roles.get(person, {})
        hospital = hospital or w.fever_hospital(person, when, rng)
        if hospital == "H01" and w.garbage_day is not None and \
                w.schedule.index_of(when + HOUR) == w.garbage_day:
            hospital = "H02"
        diagnosis = "疑似新冠肺炎" if second or role.get("double_visit") or rng.random() < 0.85 else "发热待查"
        disposition = "留观" if second else role.get("disposition") or str(
            rng.choice(["居家", "留观", "转定点医院", "住院"], p=[0.5, 0.2, 0.2, 0.1]))
        symptoms = ["发热"] + [s for s in rng.permutation(SYMPTOMS[1:])[:int(rng.integers(1, 4))]]
        visit = FeverVisit(w.number("visit", when, hospital), hospital, person, when,
                           round(float(rng.uniform(37.5, 39.6)), 1), ";".join(symptoms),
                           str(rng.choice(COVID_CT)) if rng.random() < 0.85 else "",
                           round(float(rng.uniform(3.0, 6.5)), 1), round(float(rng.uniform(0.4, 1.0)), 2),
                           diagnosis, disposition, pop.address(person, int(rng.integers(0, 3))))
        w.visits.append(visit)
        w.critical.add(person)
        lab = LABS[2] if hospital == "H01" else LABS[3] if rng.random() < 0.5 else LABS[0]
        if not second:
            self.take_sample(person, when + hours(rng, 0.2, 1), lab, "发热门诊")
        unit = HOSPITALS[hospital].name
        if diagnosis == "疑似新冠肺炎":
            card = self.new_card(person, when + hours(rng, 1, 2), unit, hospital, "疑似病例")
            if second:
                self.push(card.versions[0][0] + hours(rng, 20, 30), "delete_card", card)
            elif case.card is None:
                case.card = card
        if disposition == "留观":
            w.isolate(person, when)
        elif disposition == "转定点医院":
            w.isolate(person, when)
            self.admit_covid(person, when + hours(rng, 2, 6), force_hospital="H03")
        elif disposition == "住院":
            self.add_admission(Admission(w.number("admission", when, hospital), hospital, "感染科隔离病区", "",
                                         person, round_minute(when + hours(rng, 1, 3)), None, "疑似新冠肺炎",
                                         [(when, case.severity or "普通型")]))
        if role.get("double_visit") and not second and disposition == "居家":
            other = "H02" if hospital == "H01" else "H01"
            self.push(when + hours(rng, 18, 26), "second_visit", person, other)

    def on_second_visit(self, when: dt.datetime, person: int, hospital: str) -> None:
        if self.w.garbage_day is not None and hospital == "H01" and \
                self.w.schedule.index_of(when + HOUR) == self.w.garbage_day:
            hospital = "H02"
        self.on_visit(when, person, hospital, second=True)

    def on_delete_card(self, when: dt.datetime, card: Card) -> None:
        last = dict(card.versions[-1][1])
        last["status"] = "删除"
        card.versions.append((round_minute(when), last))

    def on_ward_admit(self, when: dt.datetime, person: int) -> None:
        """F: admitted to a general ward as pneumonia, tested only two days later."""
        w, rng = self.w, self.rng
        hospital, ward = self.roles[person].get("ward", ("H01", "呼吸内科二病区"))
        adm = self.add_admission(Admission(w.number("admission", when, hospital), hospital, ward, "", person,
                                           when, None, "社区获得性肺炎", [(when, "")]))
        mates = self.roles[person].get("ward_mates", [])
        forced = [int(p) for p in rng.permutation(mates)[:2]]
        self._ward_spread(person, adm, when, forced)
        self.take_sample(person, when + hours(rng, 36, 48), LABS[2] if hospital == "H01" else LABS[3], "住院")

    def on_ward_test(self, when: dt.datetime, person: int) -> None:
        case = self.w.cases[person]
        adm = self.w.in_general_ward(person, when)
        if not case.detected and adm is not None:
            self.take_sample(person, when, LABS[2] if adm.hospital == "H01" else LABS[3], "住院")

    # -- testing, cards, admissions ---------------------------------------------------------------
    def take_sample(self, person: int, when: dt.datetime, lab: tuple[str, str], reason: str) -> Sample:
        w, rng = self.w, self.rng
        when = round_minute(when)
        case = w.cases.get(person)
        reported = round_minute(when + hours(rng, 18, 40))
        positive = case is not None and when >= case.infected_at + 2 * DAY
        if positive:
            ct = case.ct + float(rng.uniform(-1.5, 1.5))
            s = Sample(w.number("sample", when, lab[1]), person, lab[0], when, reported, "阳性",
                       round(ct, 1), round(ct - float(rng.uniform(0.5, 2.5)), 1), reason)
            if self.roles.get(person, {}).get("equivocal") and not case.detected and case.sampled_at is None:
                s.first_result = ("可疑", round(float(rng.uniform(36.5, 38.5)), 1), None)
                s.first_reported = reported
                s.reported = round_minute(reported + hours(rng, 20, 28))
            if case.sampled_at is None:
                case.sampled_at = when
            self.push(s.reported, "result", s)
        else:
            s = Sample(w.number("sample", when, lab[1]), person, lab[0], when, reported, "阴性", None, None, reason)
            if case is not None:   # infected too recently to test positive: retest later
                self.push(when + 3 * DAY, "retest", person, reason)
        w.samples.append(s)
        return s

    def on_retest(self, when: dt.datetime, person: int, reason: str) -> None:
        if not self.w.cases[person].detected:
            self.take_sample(person, when, LABS[0], reason)

    def new_card(self, person: int, when: dt.datetime, unit: str, unit_code: str, klass: str) -> Card:
        w, rng, pop = self.w, self.rng, self.pop
        when = round_minute(when)
        case = w.cases.get(person)
        code = pop.community_code(person) if rng.random() < 0.5 else ""
        card = Card(w.number("card", when, unit_code), person, unit, pop.address(person, int(rng.integers(0, 3))), code)
        card.versions.append((when, self._card_state("新增", klass, case, when)))
        w.cards.append(card)
        if case is not None and case.reported_at is None:
            case.reported_at = when
        return card

    def _card_state(self, status: str, klass: str, case: Case | None, when: dt.datetime) -> dict:
        onset = None
        if case is not None and not case.asymptomatic and case.onset <= when:
            onset = case.onset.date()
        severity = case.severity if case is not None and klass == "确诊病例" else ""
        return {"status": status, "class": klass, "severity": severity, "onset": onset,
                "diagnosed": round_minute(when - HOUR * 0.5)}

    def on_result(self, when: dt.datetime, sample: Sample) -> None:
        w, rng = self.w, self.rng
        case = w.cases[sample.person]
        if case.detected:
            return
        case.detected = True
        report = round_minute(when + hours(rng, 0.5, 2))
        presymptomatic = case.asymptomatic or case.onset > when
        klass = "无症状感染者" if presymptomatic else "确诊病例"
        if case.card is not None:
            case.card.versions.append((report, self._card_state("订正", klass, case, report)))
        else:
            hospital = "H01" if sample.lab == LABS[2][0] else "H02" if sample.lab == LABS[3][0] else ""
            unit = HOSPITALS[hospital].name if hospital else \
                ("江岸区疾病预防控制中心" if self.pop.district[sample.person] == 0 else "武昌区疾病预防控制中心")
            case.card = self.new_card(sample.person, report, unit, hospital or "CDC", klass)
        if presymptomatic and not case.asymptomatic:
            self.push(case.onset + hours(rng, 6, 18), "card_onset", sample.person)
        ward = w.in_general_ward(sample.person, when)
        if ward is not None:   # transfer out of the general ward
            move = round_minute(when + hours(rng, 2, 6))
            ward.discharge = move
            ward.final_diagnosis = "新冠肺炎"
            self.admit_covid(sample.person, move, force_hospital="H03")
        elif not any(HOSPITALS[a.hospital].isolation for a in w.admissions_of[sample.person]):
            local = [a for a in w.admissions_of[sample.person] if a.isolating and a.discharge is None]
            if case.asymptomatic:
                w.isolate(sample.person, when + hours(rng, 2, 6))
            else:   # from home, observation or a hospital's isolation ward to the designated hospital
                move = round_minute(when + hours(rng, 4, 30))
                for a in local:
                    a.discharge = move
                self.admit_covid(sample.person, move)
        delay = hours(rng, 4, 22) if rng.random() < 0.85 else hours(rng, 25, 34)
        self.push(report + delay, "investigate", sample.person)

    def on_card_onset(self, when: dt.datetime, person: int) -> None:
        case = self.w.cases[person]
        self.w.cases[person].card.versions.append((when, self._card_state("订正", "确诊病例", case, when)))

    def admit_covid(self, person: int, when: dt.datetime, force_hospital: str | None = None) -> None:
        w, rng = self.w, self.rng
        case = w.cases[person]
        if force_hospital:
            hospital = force_hospital
        elif case.severity == "轻型" and when >= dt.datetime(2020, 2, 5, 12):
            hospital = "FC01"
        else:
            hospital = "H03"
        if hospital == "FC01":
            ward = str(rng.choice(HOSPITALS["FC01"].wards))
        elif case.severity in ("重型", "危重型") and rng.random() < 0.6:
            ward = "重症监护病区"
        else:
            ward = str(rng.choice(HOSPITALS["H03"].wards[:3]))
        severity = [(when, "普通型" if case.severity in ("重型", "危重型") else case.severity or "普通型")]
        if case.severity in ("重型", "危重型"):
            severity.append((when + hours(rng, 24, 72), case.severity))
        self.add_admission(Admission(w.number("admission", when, hospital), hospital, ward, "", person,
                                     round_minute(when), None, "新型冠状病毒肺炎", severity))

    # -- investigations ----------------------------------------------------------------------------
    def on_investigate(self, when: dt.datetime, person: int) -> None:
        w, rng, pop = self.w, self.rng, self.pop
        case = w.cases[person]
        if case.investigated:
            return
        case.investigated = True
        ws = case.window_start
        we = min(w.isolated_at.get(person, when), when)
        inv = Investigation(w.number("investigation", when), person, case.card.number if case.card else "", when)
        home = pop.address(person) or pop.address_text.get(person, "")
        for m in pop.household_members(person):
            if m != person:
                inv.contacts.append(Contact(m, "家人", "家庭", home, ws, we, setting="household"))
        for mate in self.team_of(person):
            days = [d for d in ((ws + k * DAY).date() for k in range(10)) if workday(d)
                    and day_start(d) + 9 * HOUR < we]
            if days:
                office = w.city.venues[int(pop.office[person])].name
                inv.contacts.append(Contact(mate, "同事", "工作场所", office, max(ws, day_start(days[0]) + 9 * HOUR),
                                            min(we, day_start(days[-1]) + hours(rng, 17, 18)), setting="workplace"))
        for dinner in w.dinners:
            if person in dinner.people and ws <= dinner.time < we:
                for m in attendees(w, dinner):
                    if m != person:
                        inv.contacts.append(Contact(m, "朋友", "聚餐", w.city.venues[dinner.venue].name, dinner.time,
                                                    dinner.time + hours(rng, 2, 3), setting="restaurant"))
        for s in w.stays_of.get(person, []):
            for o in w.stays_in.get((s.hotel, s.room), []):
                if o is not s and o.checkin < s.checkout and s.checkin < o.checkout:
                    lo, hi = max(o.checkin, s.checkin, ws), min(o.checkout, s.checkout, we)
                    if lo < hi:
                        inv.contacts.append(Contact(o.person, "同事", "其他", f"{w.city.hotels[s.hotel].name}"
                                                    f"{s.room}房", lo, hi, setting="hotel"))
        for adm in w.general_ward.get(person, []):
            for other in self.ward_index[(adm.hospital, adm.ward)]:
                if other.person != person and not other.isolating:
                    lo = max(adm.admit, other.admit, ws)
                    hi = min(adm.discharge or when, other.discharge or when, we if we > adm.admit else when)
                    if lo < hi:
                        place = f"{HOSPITALS[adm.hospital].name}{adm.ward}"
                        inv.contacts.append(Contact(other.person, "其他", "医疗机构", place, lo, hi, setting="ward"))
            nurse = self._contact_only(male=False, age=int(rng.integers(22, 45)))
            inv.contacts.append(Contact(nurse, "医护", "医疗机构", f"{HOSPITALS[adm.hospital].name}{adm.ward}",
                                        adm.admit, min(adm.discharge or when, when), protected=True, setting="ward"))
        if rng.random() < 0.3 and ws < we:
            # Someone only the case can name: a relative who visited, or a colleague from elsewhere.
            if rng.random() < 0.6 or int(pop.team[person]) < 0:
                p = self._contact_only(male=bool(rng.random() < 0.5), age=int(rng.integers(20, 75)))
                t = ws + (we - ws) * float(rng.random())
                inv.contacts.append(Contact(p, "家人", "家庭", home, t, t + hours(rng, 2, 6), setting="household"))
            else:
                p = self._contact_only(male=bool(rng.random() < 0.5), age=int(rng.integers(23, 55)))
                t = ws + (we - ws) * float(rng.random())
                inv.contacts.append(Contact(p, "同事", "工作场所", "外地出差同事", t, t + hours(rng, 1, 4),
                                            setting="workplace"))
        for ct in inv.contacts:
            # A case isolated before its window opened was last seen at isolation: one moment, not a span.
            ct.first, ct.last = round_minute(min(ct.first, ct.last)), round_minute(ct.last)
        w.investigations.append(inv)
        for ct in inv.contacts:
            self.named[person].add(ct.person)
            if not ct.protected:
                self.push(when + hours(rng, 2, 12), "named", ct.person)

    def _contact_only(self, male: bool, age: int) -> int:
        rng, pop = self.rng, self.pop
        county = int(rng.choice([420902, 420984, 421102, 420116, 420117, 110105, 440305]))
        p = pop.add_person(name=pop.random_name(male), male=male,
                           birth=REFERENCE_DAY - dt.timedelta(days=int(age * 365.25 + rng.integers(0, 365))),
                           county=county, phone=pop.new_mobile(), kind=KIND_CONTACT_ONLY)
        return p

    def on_named(self, when: dt.datetime, person: int) -> None:
        w, rng = self.w, self.rng
        case = w.cases.get(person)
        if (case is not None and case.detected) or w.isolated(person, when):
            return
        w.isolate(person, when)
        if self.pop.kind[person] == KIND_CONTACT_ONLY:
            return   # handed to another city: no local records
        self.take_sample(person, when + hours(rng, 4, 20), LABS[0] if rng.random() < 0.6 else LABS[1], "密接")

    # -- truth ---------------------------------------------------------------------------------------
    def finish(self) -> None:
        """After the run: hotel guests leave when isolated; exposures from final isolation times."""
        w, rng = self.w, self.rng
        for s in w.stays:
            t = w.isolated_at.get(s.person)
            if t is not None and s.checkin < t < s.checkout:
                s.checkout = round_minute(t + hours(rng, 1, 3))
        w.exposures = compute_exposures(w, self)
        check_infections(w)


def attendees(w: World, dinner: Dinner) -> list[int]:
    """Who actually came: guests isolated or in hospital by then stayed away."""
    return [p for p in dinner.people if w.free(p, dinner.time)]


def community_span(w: World, person: int, lo: dt.datetime, hi: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The part of [lo, hi) before the person was isolated or admitted to a ward."""
    t = w.isolated_at.get(person)
    if t is not None:
        hi = min(hi, t)
    for adm in w.general_ward.get(person, []):
        if adm.admit <= lo and (adm.discharge is None or adm.discharge > lo):
            lo = adm.discharge or hi
        elif lo < adm.admit < hi:
            hi = adm.admit
    if person in w.presence:
        a, b = w.presence[person]
        lo, hi = max(lo, a), min(hi, b)
    return lo, hi


def compute_exposures(w: World, ob: Outbreak) -> list[Exposure]:
    """Every true close-contact exposure to an infectious case, with the feeds that show it."""
    pop, horizon = w.pop, w.schedule.horizon
    scan_days = {d for d in w.schedule.dates}
    out: dict[tuple[int, int, str], Exposure] = {}
    named = {inv.case: {c.person: c for c in inv.contacts} for inv in w.investigations}

    def add(exposed, source, setting, first, last, evidence):
        first, last = round_minute(first), round_minute(min(last, horizon))
        if exposed == source or last <= first or first >= horizon:
            return
        contact = named.get(source, {}).get(exposed)
        if contact is not None and not contact.protected:
            evidence = evidence | {"investigations"}
        if contact is not None and contact.protected:
            return
        key = (exposed, source, setting)
        if key in out:
            e = out[key]
            e.first, e.last = min(e.first, first), max(e.last, last)
            e.evidence |= evidence
        else:
            out[key] = Exposure(exposed, source, setting, first, last, set(evidence))

    trips_by_person = defaultdict(list)
    for t in w.trips:
        trips_by_person[t.person].append(t)
    vehicle = defaultdict(list)
    for t in w.trips:
        vehicle[(t.number, t.dep)].append(t)
    stays_by_person = defaultdict(list)
    rooms = defaultdict(list)
    for s in w.stays:
        stays_by_person[s.person].append(s)
        rooms[(s.hotel, s.room)].append(s)

    for case in sorted(w.cases.values(), key=lambda c: c.person):
        p = case.person
        ws = case.window_start
        we = min(w.isolated_at.get(p, horizon), horizon)
        if ws >= we:
            continue
        lo, hi = community_span(w, p, ws, we)
        for m in pop.household_members(p):
            if m == p:
                continue
            a, b = community_span(w, m, lo, hi)
            if pop.kind[m] == KIND_NEWCOMER:
                a = max(a, day_start(w.schedule.dates[int(pop.register_day[m])]))
            add(m, p, "household", a, b, {"residents"})
        for mate in ob.team_of(p):
            days = []
            for k in range(int((we - ws) / DAY) + 2):
                d = (ws + k * DAY).date()
                if not workday(d):
                    continue
                a, b = max(day_start(d) + 9 * HOUR, ws), min(day_start(d) + 17.5 * HOUR, we)
                a1, b1 = community_span(w, p, a, b)
                a2, b2 = community_span(w, mate, a1, b1)
                if a2 < b2:
                    days.append((d, a2, b2))
            if days:   # both scanned into the office that day if both were at large at noon
                ev = {"place_scans"} if any(d in scan_days and w.free(p, day_start(d) + 12 * HOUR)
                                            and w.free(mate, day_start(d) + 12 * HOUR) for d, _, _ in days) else set()
                add(mate, p, "workplace", days[0][1], days[-1][2], ev)
        for dinner in w.dinners:
            if p in dinner.people and lo <= dinner.time < hi:
                for m in attendees(w, dinner):
                    ev = {"place_scans"} if dinner.time.date() in scan_days else set()
                    add(m, p, "restaurant", dinner.time, dinner.time + 2 * HOUR, ev)
        for s in stays_by_person[p]:
            for o in rooms[(s.hotel, s.room)]:
                if o is not s:
                    add(o.person, p, "hotel", max(s.checkin, o.checkin, ws), min(s.checkout, o.checkout, we),
                        {"lodging"})
        for t in trips_by_person[p]:
            if not (ws <= t.dep < we):
                continue
            for o in vehicle[(t.number, t.dep)]:
                if t.mode == "火车" and o.car != t.car:
                    continue
                if t.mode == "飞机" and abs(o.row - t.row) > 3:
                    continue
                add(o.person, p, "train" if t.mode == "火车" else "flight" if t.mode == "飞机" else "bus",
                    t.dep, t.arr, {"transport"})
        for adm in w.general_ward.get(p, []):
            for other in ob.ward_index[(adm.hospital, adm.ward)]:
                if other.person == p or other.isolating:
                    continue
                a = max(adm.admit, other.admit, ws)
                b = min(adm.discharge or horizon, other.discharge or horizon, we)
                t = w.isolated_at.get(other.person)
                if t is not None:
                    b = min(b, t)
                add(other.person, p, "ward", a, b, {"inpatients"})
        for ct in named.get(p, {}).values():
            if pop.kind[ct.person] == KIND_CONTACT_ONLY and not ct.protected:
                add(ct.person, p, ct.setting, ct.first, ct.last, set())
    return sorted(out.values(), key=lambda e: (e.first, e.source, e.exposed, e.setting))


def check_infections(w: World) -> None:
    """Every infection other than an import must come with an exposure in its setting."""
    seen = {(e.exposed, e.source, e.setting) for e in w.exposures}
    for case in w.cases.values():
        if case.setting != "import" and (case.person, case.infector, case.setting) not in seen:
            raise AssertionError(f"infection without exposure: {case}")
