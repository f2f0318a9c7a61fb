"""The response feeds: the health commission's bed census (床位日报), the command's transfer vehicles
(转运车辆排班) and the isolation points' registrations (隔离点入住登记), their faults, and the truth the
response is measured against (facilities, placements, risk areas).

Everything here is read off the finished world and drawn from its own random stream
(``np_rng(seed, "response")``), and the files are written after every other feed: adding them
changes no other landing file, and only appends to records.csv, faults.csv and summary.json.

The city's facilities: the designated hospital H03 (ICU and general beds; its occupancy is the
inpatients feed's admissions to it), the shelter hospital FC01 (general beds, its admissions), the
fever clinics of H01 and H02 as 发热门诊留观 (single rooms: their 留观 patients), and the isolation
points (集中隔离点, single rooms) of each district: for close contacts (密接;次密接), and for suspected
and asymptomatic persons (疑似;无症状感染者). Who stays in an isolation point is what the world says:
a named contact isolated when named (until the morning after the 14 days from the last exposure
named, or a transfer to hospital), an asymptomatic case isolated when detected, and a 留观 patient
moved from the clinic a few hours after the visit (until the card is revised to 排除病例, or a
transfer). The first close-contact point of the first district is sized below its demand (it fills
up and its district's contacts go across the river, or wait); the others hold their peak and the
district's true waiting persons.
"""

from __future__ import annotations

import csv
import datetime as dt
import heapq
import io
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .base import BACKLOG_START, DAY, HEADERS, HOUR, day_start, fmt_ts, np_rng, round_minute
from .deliver import Books, OutFile
from .faults import fullwidth_ascii
from .geo import DISTRICTS, HOSPITALS, PLACE_WORDS
from .people import KIND_CONTACT_ONLY, KIND_VISITOR
from .truth import open_csv, ts
from .visitors import hours
from .world import World

CENSUS_AT = dt.timedelta(hours=8)          # 统计时间: 08:00 of the delivery day
SECOND_CENSUS_AT = dt.timedelta(hours=11)  # the facility reported twice: its later, true census
OBSERVATION = dt.timedelta(days=14)        # close contacts: from the last exposure (nhc-v6 close_contact_days)
ICU_MARKERS = ("重症", "ICU")               # trace24/schemas/facilities.yaml icu_ward_markers
UNKNOWN_TYPE = "临时安置点"
FACILITY_HEADER = ["facility_code", "facility_name", "facility_type", "district", "admits", "icu_beds",
                   "general_beds", "single_rooms", "last_census_at"]
PLACEMENT_HEADER = ["person_key", "facility_code", "facility_type", "bed_kind", "arrived_at", "left_at"]
AREA_HEADER = ["scope", "district", "community_code", "compound", "hotel_code", "case_person_keys",
               "first_reported_at", "last_reported_at"]
POINT_SUFFIXES = ["酒店", "宾馆", "培训中心", "公寓", "假日酒店", "商务酒店"]
SEVERE = ("重型", "危重型")


@dataclass(eq=False)
class Facility:
    code: str
    name: str
    type: str
    district: int        # index into DISTRICTS
    address: str
    admits: str          # 收治对象 as printed
    role: str            # designated / shelter / fever / contact / suspect / unknown
    icu: int = 0         # true capacity (constant over the days)
    general: int = 0
    single: int = 0
    rooms: list = field(default_factory=list)   # isolation points: per room, when it is free again


@dataclass(eq=False)
class Stay:
    """A stay at an isolation point (one single room)."""
    person: int
    role: str                        # contact / suspect: which points take it
    arrived: dt.datetime
    left: dt.datetime | None         # None: still there at the horizon (or later than it)
    district: int                    # the person's district (-1: unknown)
    community: int                   # the person's community (-1: unknown)
    order: list = field(default_factory=list)   # the points that may take it, preferred first
    facility: Facility | None = None
    room: int = -1
    checkin_id: str = ""


def stays_of_world(w: World, rng: np.random.Generator) -> tuple[list[Stay], dict[str, list[tuple]]]:
    """Every isolation-point stay the world implies, and the fever clinics' observation spans
    (hospital -> [(from, until or None)])."""
    pop, horizon = w.pop, w.schedule.horizon
    named_last: dict[int, dt.datetime] = {}
    for inv in w.investigations:
        for ct in inv.contacts:
            if not ct.protected:
                named_last[ct.person] = max(named_last.get(ct.person, ct.last), ct.last)
    hospital_admits: dict[int, list[dt.datetime]] = {}
    for p, adms in w.admissions_of.items():
        hospital_admits[p] = sorted(a.admit for a in adms if HOSPITALS[a.hospital].isolation)

    def transfer_after(p: int, t: dt.datetime) -> dt.datetime | None:
        return next((a for a in hospital_admits.get(p, []) if a > t), None)

    excluded_at: dict[int, dt.datetime] = {}
    for card in w.cards:
        when, state = card.versions[-1]
        if state["class"] == "排除病例":
            excluded_at[card.person] = min(excluded_at.get(card.person, when), when)
    observed = {(v.person, v.time) for v in w.visits if v.disposition in ("留观", "转定点医院")}
    isolating_admission = {(a.person, a.admit) for a in w.admissions if a.isolating}

    stays: list[Stay] = []
    observation: dict[str, list[tuple]] = defaultdict(list)
    for p, t in sorted(w.isolated_at.items()):
        if t >= horizon or (p, t) in isolating_admission or (p, t) in observed:
            continue    # in hospital, or under a clinic's observation (below)
        if pop.kind[p] == KIND_CONTACT_ONLY:
            continue    # handed to another city: no local records
        case = w.cases.get(p)
        if p in named_last:
            arrived = t
            ward = w.in_general_ward(p, t)
            if ward is not None:    # a ward mate leaves the ward for the isolation point
                if ward.discharge is None or ward.discharge >= horizon:
                    continue
                arrived = ward.discharge
            left = transfer_after(p, arrived)
            if left is None and case is None:   # released the morning after the observation ends
                release = day_start((named_last[p] + OBSERVATION).date() + DAY) + hours(rng, 9, 11)
                left = max(release, round_minute(arrived + hours(rng, 20, 30)))
            stays.append(Stay(p, "contact", arrived, left, int(pop.district[p]), int(pop.community[p])))
        elif case is not None and case.asymptomatic:
            stays.append(Stay(p, "suspect", t, transfer_after(p, t), int(pop.district[p]), int(pop.community[p])))
    for v in sorted(w.visits, key=lambda v: (v.time, v.number)):
        if v.disposition != "留观" or w.isolated_at.get(v.person) != v.time:
            continue
        arrived = round_minute(v.time + hours(rng, 3, 10))
        transfer = transfer_after(v.person, v.time)
        if transfer is not None and transfer <= arrived:   # straight to hospital from the clinic
            observation[v.hospital].append((v.time, transfer))
            continue
        observation[v.hospital].append((v.time, arrived))
        ends = [t for t in (transfer, excluded_at.get(v.person)) if t is not None and t > arrived]
        left = min(ends) if ends else None
        if left is not None and left != transfer:          # leaves once the card says 排除病例
            left = round_minute(left + hours(rng, 1, 3))
        if arrived < horizon:
            stays.append(Stay(v.person, "suspect", arrived, left, int(pop.district[v.person]),
                              int(pop.community[v.person])))
    for s in stays:
        if s.left is not None and s.left >= horizon:
            s.left = None
    stays.sort(key=lambda s: (s.arrived, s.person))
    return stays, observation


def occupied(spans, at: dt.datetime) -> int:
    """How many of the spans (from, until or None) cover the time ``at`` (a census counts a
    person arrived by then and not yet left)."""
    return sum(1 for a, b in spans if a <= at and (b is None or b > at))


def peak(spans, until: dt.datetime) -> int:
    """The most spans covering one moment before ``until``."""
    events = []
    for a, b in spans:
        if a < until:
            events.append((a, 1))
            if b is not None and b < until:
                events.append((b, -1))
    now = best = 0
    for _, step in sorted(events):
        now += step
        best = max(best, now)
    return best


def allocate(stays: list[Stay], points: list[Facility], caps: dict[str, int | None]) -> None:
    """Each stay (in arrival order) in the first point of ``stay.order`` with a room free (its
    lowest free room); ``caps``: rooms per point (None: as many as it takes)."""
    busy: dict[str, list] = {f.code: [] for f in points}    # heap of (free again at, room)
    free: dict[str, list] = {f.code: [] for f in points}    # heap of rooms free now
    for f in points:
        f.rooms = []
    for s in stays:
        for f in s.order:
            b, fr = busy[f.code], free[f.code]
            while b and b[0][0] <= s.arrived:
                heapq.heappush(fr, heapq.heappop(b)[1])
            if fr:
                room = heapq.heappop(fr)
            elif caps[f.code] is None or len(f.rooms) < caps[f.code]:
                room = len(f.rooms)
                f.rooms.append(None)
            else:
                continue
            f.rooms[room] = s.left or dt.datetime.max
            heapq.heappush(b, (f.rooms[room], room))
            s.facility, s.room = f, room
            break
        else:
            raise AssertionError(f"no isolation point takes {s}")


def room_label(index: int) -> str:
    return f"{index // 20 + 2}{index % 20 + 1:02d}"


class Response:
    """The facilities, vehicles and stays of the city; writes the three feeds and their truth."""

    def __init__(self, w: World, seed: int, known: set[int] | None = None):
        """``known``: the people truth/persons.csv lists anyway (a check-in of anyone else would add
        a person to it); None: everyone."""
        self.w = w
        self.rng = np_rng(seed, "response")
        self.horizon = w.schedule.horizon
        self.days = w.schedule.days
        self.facilities = self._facilities()
        self.stays, self.observation = stays_of_world(w, self.rng)
        if known is not None:
            self.stays = [s for s in self.stays if s.person < w.pop.n_register or s.person in known]
        self.admissions = [a for a in w.admissions if HOSPITALS[a.hospital].isolation and a.admit < self.horizon
                           and (a.admit >= BACKLOG_START or (a.discharge or self.horizon) >= BACKLOG_START)]
        self.census_times = [day_start(d) + CENSUS_AT for d in w.schedule.dates]
        self._size()
        self.vehicles = self._vehicles()
        # Where the faults go (fixed facilities, days clipped to the run): see README.
        last = self.days - 1
        self.twice = (self.by_code("FC01"), min(1, last))
        self.negative = (self.points("contact", 1)[0], min(1, last))
        self.fullwidth = (self.by_code("H03"), min(2, last))
        self.over_full = (self.points("contact", 0)[0], last)
        self.stopped = self.by_code("H02") if self.days >= 4 else None   # reports on days 1-3 only
        self.last_census: dict[str, dt.datetime] = {}

    # -- the city's facilities -----------------------------------------------------------------------
    def by_code(self, code: str) -> Facility:
        return next(f for f in self.facilities if f.code == code)

    def points(self, role: str, district: int | None = None) -> list[Facility]:
        return [f for f in self.facilities if f.role == role and (district is None or f.district == district)]

    def _facilities(self) -> list[Facility]:
        rng, city = self.rng, self.w.city
        per_district = [[c for c in city.communities if c.district == name] for name, _, _ in DISTRICTS]
        self.communities_per_district = [len(cs) for cs in per_district]
        self.district_communities = [{c.index: i for i, c in enumerate(cs)} for cs in per_district]

        def address(d: int) -> str:
            cs = per_district[d]
            return city.road_address(cs[int(rng.integers(0, len(cs)))], int(rng.integers(1, 400)))

        venue_address = {v.name: v.address for v in city.venues}
        index = {name: i for i, (name, _, _) in enumerate(DISTRICTS)}
        out = [Facility("H03", HOSPITALS["H03"].name, "定点医院", 0, address(0), "确诊重症、确诊轻症", "designated"),
               Facility("FC01", HOSPITALS["FC01"].name, "方舱医院", index[HOSPITALS["FC01"].district], address(1),
                        "确诊轻症", "shelter")]
        for code in ("H01", "H02"):
            h = HOSPITALS[code]
            out.append(Facility(code, f"{h.name}发热门诊留观区", "发热门诊留观", index[h.district],
                                venue_address.get(h.name) or address(index[h.district]), "发热", "fever"))
        # Isolation points: a close-contact point per 8 communities of a district (at least one),
        # and a point for suspected and asymptomatic persons per 16 communities (武昌区 first).
        words = [PLACE_WORDS[int(i)] for i in rng.permutation(len(PLACE_WORDS))]
        n_suspect = max(1, round(sum(self.communities_per_district) / 16))
        suspect_in = [(k + 1) % len(DISTRICTS) for k in range(n_suspect)]
        k = 0
        for d, (district, county, _) in enumerate(DISTRICTS):
            roles = ["contact"] * max(1, round(self.communities_per_district[d] / 8))
            roles += ["suspect"] * suspect_in.count(d)
            for j, role in enumerate(roles):
                word = words[k % len(words)] + (str(k // len(words)) if k >= len(words) else "")
                suffix = POINT_SUFFIXES[int(rng.integers(0, len(POINT_SUFFIXES)))]
                admits = "密接;次密接" if role == "contact" else "疑似;无症状感染者"
                out.append(Facility(f"GL{county}{j + 1:03d}", f"{district}{word}{suffix}集中隔离点", "集中隔离点", d,
                                    address(d), admits, role))
                k += 1
        county = DISTRICTS[1][1]
        self.unknown = Facility(f"LS{county}001", f"{DISTRICTS[1][0]}{words[k % len(words)]}体育馆{UNKNOWN_TYPE}",
                                UNKNOWN_TYPE, 1, address(1), "密接", "unknown", single=int(rng.integers(40, 81)))
        return out

    # -- capacities ------------------------------------------------------------------------------------
    def _size(self) -> None:
        """Allocate the stays and size every facility: its peak occupancy and the true waiting
        persons of its district, except the first close-contact point, kept below its demand."""
        horizon = self.horizon
        contact = self.points("contact")
        short = contact[0]
        caps: dict[str, int | None] = {f.code: None for f in self.facilities}
        for s in self.stays:
            s.order = self.preference(s)
        allocate(self.stays, self.points("contact") + self.points("suspect"), caps)
        # Short: as many rooms as it held at the census three days before the end (at least one
        # fewer than it would need): full from about then on, its district's later contacts elsewhere.
        need = len(short.rooms)
        spans = [(s.arrived, s.left) for s in self.stays if s.facility is short]
        at = self.census_times[max(0, self.days - 3)]
        caps[short.code] = max(1, min(need - 1, occupied(spans, at)))
        allocate(self.stays, self.points("contact") + self.points("suspect"), caps)
        waiting = self._true_waiting()
        # Contact points of the other districts: their peak, their district's waiting contacts and
        # one room; the short point's district's other points: their peak (full, like it). Points for
        # suspected and asymptomatic persons: their peak, a share of all waiting, and one room.
        groups = [(self.points("contact", d), waiting["contact"][d], 1) for d in range(len(DISTRICTS))
                  if d != short.district]
        groups += [([f for f in self.points("contact", short.district) if f is not short], 0, 0),
                   (self.points("suspect"), sum(waiting["suspect"]), 1)]
        for here, extra, slack in groups:
            for i, f in enumerate(here):
                share = extra // len(here) + (1 if i < extra % len(here) else 0)
                f.single = len(f.rooms) + share + slack
        short.single = caps[short.code]
        for f in self.points("contact") + self.points("suspect"):
            f.single = max(f.single, len(f.rooms), 1)
        icu, general = self.admission_spans("H03")
        _, shelter = self.admission_spans("FC01")
        h03, fc01 = self.by_code("H03"), self.by_code("FC01")
        h03.icu = peak(icu, horizon) + waiting["severe"] + 1
        h03.general = peak(general, horizon) + max(2, math.ceil(0.2 * peak(general, horizon)))
        fc01.general = peak(shelter, horizon) + waiting["mild"] + 2
        for f in self.points("fever"):
            f.single = peak(self.observation.get(f.code, []), horizon) + waiting["fever"][f.district] + 1
        self.point_spans = {f.code: [] for f in self.points("contact") + self.points("suspect")}
        for s in self.stays:
            self.point_spans[s.facility.code].append((s.arrived, s.left))
        # Check-in numbers, per point and arrival day, in arrival order.
        seq: dict[tuple[str, dt.date], int] = defaultdict(int)
        for s in self.stays:
            key = (s.facility.code, s.arrived.date())
            seq[key] += 1
            s.checkin_id = f"{s.facility.code}-{s.arrived:%Y%m%d}-{seq[key]:03d}"

    def preference(self, s: Stay) -> list[Facility]:
        """The points that may take a stay, preferred first: the point of its kind serving the
        person's community (a district's points split its communities in order), the district's
        other points in code order, then those of the other districts."""
        kind = self.points(s.role)
        own = [f for f in kind if f.district == s.district]
        if own:
            communities = self.district_communities[s.district]
            rank = communities.get(s.community, 0)
            home = own[rank * len(own) // len(communities)]
            own = [home, *(f for f in own if f is not home)]
        return own + [f for f in kind if f.district != s.district]

    def admission_spans(self, hospital: str) -> tuple[list[tuple], list[tuple]]:
        """(ICU spans, general spans) of the delivered admissions to an isolating hospital."""
        icu, general = [], []
        for a in self.admissions:
            if a.hospital == hospital:
                span = (a.admit, a.discharge)
                (icu if any(m in a.ward for m in ICU_MARKERS) else general).append(span)
        return icu, general

    def _true_waiting(self) -> dict:
        """Who, in truth, waits for a bed at the horizon: in a category whose action is a transfer
        and not in an isolation point or isolating hospital (per district; unknown counts as the first)."""
        from .categories import true_categories

        w, horizon = self.w, self.horizon
        placed = {s.person for s in self.stays if s.left is None}
        placed |= {a.person for a in self.admissions if a.discharge is None or a.discharge >= horizon}
        waiting = {"contact": [0] * len(DISTRICTS), "suspect": [0] * len(DISTRICTS),
                   "fever": [0] * len(DISTRICTS), "severe": 0, "mild": 0}
        for person, (category, asymptomatic, _) in true_categories(w).items():
            if person in placed:
                continue
            d = max(0, int(w.pop.district[person]))
            if category == "close_contact":
                waiting["contact"][d] += 1
            elif category == "suspected" or (category == "confirmed" and asymptomatic):
                waiting["suspect"][d] += 1
            elif category == "fever":
                waiting["fever"][d] += 1
            elif category == "confirmed":
                case = w.cases.get(person)
                waiting["severe" if case is not None and case.severity in SEVERE else "mild"] += 1
        return waiting

    def _vehicles(self) -> list[tuple[str, int, str, int]]:
        """(vehicle_id, district, kind, seats): per district an ambulance per two communities (at
        least three, 1-4 seats) and a bus per four (at least one, 20-40 seats)."""
        rng = self.rng
        out = []
        for d, (_, county, _) in enumerate(DISTRICTS):
            n = self.communities_per_district[d]
            for k in range(max(3, math.ceil(n / 2))):
                out.append((f"FY-{county}-{k + 1:02d}", d, "负压救护车", int(rng.integers(1, 5))))
            for k in range(max(1, math.ceil(n / 4))):
                out.append((f"DB-{county}-{k + 1:02d}", d, "转运大巴", int(rng.integers(20, 41))))
        return out

    # -- what a census shows --------------------------------------------------------------------------
    def census(self, f: Facility, at: dt.datetime) -> dict[str, int]:
        """The true counts of a facility at a census time."""
        values = {"重症床位": f.icu, "重症已用": 0, "普通床位": f.general, "普通已用": 0, "单间": f.single,
                  "单间已用": 0}
        if f.role in ("designated", "shelter"):
            icu, general = self.admission_spans(f.code)
            values["重症已用"], values["普通已用"] = occupied(icu, at), occupied(general, at)
        elif f.role == "fever":
            values["单间已用"] = occupied(self.observation.get(f.code, []), at)
        elif f.role in ("contact", "suspect"):
            values["单间已用"] = occupied(self.point_spans[f.code], at)
        return values

    # -- the feeds ----------------------------------------------------------------------------------------
    def write(self, books: Books) -> None:
        """The three feeds of every delivery day, after the other feeds; faults and corrections logged."""
        for day in range(self.days):
            self.write_beds(books, day)
        for day in range(self.days):
            self.write_vehicles(books, day)
        checkin_rows = self.checkin_rows()
        for day in range(self.days):
            self.write_checkins(books, day, checkin_rows[day])

    def write_file(self, books: Books, feed: str, day: int, rows: list[tuple]) -> OutFile:
        """rows: (cells by column, record_key, person, [(column, fault, raw)]) in file order."""
        f = OutFile(day, feed, f"{feed}.csv", "csv", "utf-8")
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(HEADERS[feed])
        for n, (cells, key, person, faults) in enumerate(rows, start=1):
            writer.writerow([cells.get(c, "") for c in HEADERS[feed]])
            books.book_row(f, n, _Booked(key, person))
            for column, fault, raw in faults:
                books.fault(f, n, column, fault, raw)
        f.n_rows = len(rows)
        path = books.path(f)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(buf.getvalue().encode(f.encoding))
        books.files.append(f)
        if not rows:
            books.fault(f, None, "", "empty_file", "")
        return f

    def beds_row(self, f: Facility, at: dt.datetime, values: dict[str, int]) -> dict[str, str]:
        row = {"机构编码": f.code, "机构名称": f.name, "机构类型": f.type, "所在区": DISTRICTS[f.district][0],
               "地址": f.address, "收治对象": f.admits, "统计时间": fmt_ts(at)}
        row.update({k: str(v) for k, v in values.items()})
        return row

    def write_beds(self, books: Books, day: int) -> None:
        at = self.census_times[day]
        rows = []
        for f in self.facilities:
            if f is self.stopped and day >= 3:
                continue
            values = self.census(f, at)
            cells = self.beds_row(f, at, values)
            faults = []
            if (f, day) == self.twice:
                # A preliminary census at 08:00, then the true one at 11:00 of the same day.
                early = dict(values, 普通已用=max(0, values["普通已用"] - 1 - int(self.rng.integers(0, 3))))
                if early == values:
                    early["普通已用"] += 1
                rows.append((self.beds_row(f, at, early), "", -1, [("统计时间", "census_twice", fmt_ts(at))]))
                later = at - CENSUS_AT + SECOND_CENSUS_AT
                cells = self.beds_row(f, later, self.census(f, later))
                self.last_census[f.code] = later
            else:
                self.last_census[f.code] = at
            if (f, day) == self.negative:
                raw = f"-{max(1, values['单间已用'])}"
                cells["单间已用"] = raw
                faults.append(("单间已用", "beds_negative", raw))
            if (f, day) == self.fullwidth:
                raw = fullwidth_ascii(cells["普通床位"])
                cells["普通床位"] = raw
                faults.append(("普通床位", "beds_fullwidth", raw))
            if (f, day) == self.over_full:
                raw = str(max(values["单间"], values["单间已用"]) + 2)
                cells["单间已用"] = raw
                faults.append(("单间已用", "beds_over_capacity", raw))
            rows.append((cells, "", -1, faults))
        if day == 0:   # a temporary shelter the census lists, of a type the command does not dispatch to
            u = self.unknown
            cells = self.beds_row(u, at, {"重症床位": 0, "重症已用": 0, "普通床位": 0, "普通已用": 0, "单间": u.single,
                                          "单间已用": 0})
            rows.append((cells, "", -1, [("机构类型", "facility_type_unknown", UNKNOWN_TYPE)]))
        rows.sort(key=lambda r: (r[0]["统计时间"], r[0]["机构编码"]))
        out = self.write_file(books, "facility_beds", day, rows)
        if self.stopped is not None and day >= 3:
            books.fault(out, None, "机构编码", "census_stopped", self.stopped.code)

    def write_vehicles(self, books: Books, day: int) -> None:
        """Each vehicle's day shift (08:00-20:00) and night shift (20:00-08:00); the first delivery
        also carries the night before, so that its whole day is covered."""
        start = day_start(self.w.schedule.dates[day])
        shifts = [(start + 8 * HOUR, start + 20 * HOUR), (start + 20 * HOUR, start + DAY + 8 * HOUR)]
        if day == 0:
            shifts.insert(0, (start - 4 * HOUR, start + 8 * HOUR))
        rows = []
        for frm, until in shifts:
            for vehicle_id, d, kind, seats in self.vehicles:
                rows.append(({"车辆编号": vehicle_id, "所属区": DISTRICTS[d][0], "车辆类型": kind, "座位数": str(seats),
                              "值班开始": fmt_ts(frm), "值班结束": fmt_ts(until)}, "", -1, []))
        if day == 0:   # an ambulance in the workshop, listed with no seats
            county = DISTRICTS[1][1]
            n = sum(1 for v in self.vehicles if v[1] == 1 and v[2] == "负压救护车")
            rows.append(({"车辆编号": f"FY-{county}-{n + 1:02d}", "所属区": DISTRICTS[1][0], "车辆类型": "负压救护车",
                          "座位数": "0", "值班开始": fmt_ts(start + 8 * HOUR), "值班结束": fmt_ts(start + 20 * HOUR)},
                         "", -1, [("座位数", "seats_zero", "0")]))
        rows.sort(key=lambda r: (r[0]["值班开始"], r[0]["所属区"], r[0]["车辆编号"]))
        self.write_file(books, "vehicles", day, rows)

    def deliveries(self, s: Stay) -> list[tuple[int, bool]]:
        """(delivery day, with the leaving time) of each row a stay is delivered in: at arrival, and
        again when the person leaves on a later day (one row, the latest state, within a day)."""
        schedule = self.w.schedule

        def day_of(t: dt.datetime) -> int | None:
            return 0 if t < schedule.cutoffs[0] else schedule.index_of(t)

        out: dict[int, bool] = {}
        if s.arrived >= BACKLOG_START or (s.left is not None and s.left >= BACKLOG_START):
            if s.arrived >= BACKLOG_START:
                out[day_of(s.arrived)] = False
            if s.left is not None:
                out[day_of(s.left)] = True
        return sorted(out.items())

    def checkin_rows(self) -> list[list[tuple]]:
        """The check-in rows of every delivery day. One ended stay of a register person loses its
        name, ID number and phone in its first row (set aside: its later row, if any, is whole);
        rows of people absent from the register are flagged as in the other feeds."""
        pop = self.w.pop
        plans = [(s, self.deliveries(s)) for s in self.stays]
        ended = [(i, s) for i, (s, rows) in enumerate(plans) if s.left is not None and rows
                 and pop.kind[s.person] not in (KIND_VISITOR, KIND_CONTACT_ONLY) and pop.id_type[s.person] == 0]
        single = [i for i, s in ended if len(plans[i][1]) == 1]
        pool = single or [i for i, _ in ended]
        blank = int(pool[int(self.rng.integers(0, len(pool)))]) if pool else -1
        by_day: list[list[tuple]] = [[] for _ in range(self.days)]
        for i, (s, rows) in enumerate(plans):
            for k, (day, with_left) in enumerate(rows):
                cells = {"登记编号": s.checkin_id, "隔离点编码": s.facility.code, "房间号": room_label(s.room),
                         "姓名": pop.name[s.person], "身份证号": pop.id_number[s.person],
                         "联系电话": pop.phone[s.person], "入住时间": fmt_ts(s.arrived),
                         "离开时间": fmt_ts(s.left) if with_left else ""}
                faults = []
                if i == blank and k == 0:
                    cells.update(姓名="", 身份证号="", 联系电话="")
                    faults.append(("", "identity_empty", ""))
                else:
                    if pop.id_type[s.person] == 1:
                        faults.append(("身份证号", "id_passport", cells["身份证号"]))
                    if pop.kind[s.person] in (KIND_VISITOR, KIND_CONTACT_ONLY):
                        faults.append(("身份证号", "not_in_register", cells["身份证号"]))
                    if k < len(rows) - 1:   # delivered again when the person leaves
                        faults.append(("离开时间", "corrected_row", ""))
                changed = s.left if with_left else s.arrived
                by_day[day].append((changed, s.checkin_id, (cells, s.checkin_id, s.person, faults)))
        return [[row for *_, row in sorted(rows, key=lambda r: r[:2])] for rows in by_day]

    def write_checkins(self, books: Books, day: int, rows: list[tuple]) -> None:
        self.write_file(books, "isolation_checkins", day, rows)

    # -- truth --------------------------------------------------------------------------------------------
    def write_truth(self, truth: Path) -> dict:
        """facilities.csv, placements.csv and areas.csv; returns their row counts."""
        pop, horizon = self.w.pop, self.horizon
        f, out = open_csv(truth / "facilities.csv")
        out.writerow(FACILITY_HEADER)
        facilities = sorted(self.facilities, key=lambda x: x.code)
        for x in facilities:
            out.writerow([x.code, x.name, x.type, DISTRICTS[x.district][0], x.admits, x.icu, x.general, x.single,
                          fmt_ts(self.last_census[x.code])])
        f.close()

        rows = []
        for s in self.stays:
            if self.deliveries(s):
                rows.append((pop.key(s.person), s.facility.code, s.facility.type, "single_room", ts(s.arrived),
                             ts(s.left, horizon)))
        for a in self.admissions:
            kind = "icu" if any(m in a.ward for m in ICU_MARKERS) else "general"
            rows.append((pop.key(a.person), a.hospital, self.by_code(a.hospital).type, kind, ts(a.admit),
                         ts(a.discharge, horizon)))
        rows.sort(key=lambda r: (r[0], r[4], r[1]))
        f, out = open_csv(truth / "placements.csv")
        out.writerow(PLACEMENT_HEADER)
        out.writerows(rows)
        f.close()

        areas = self.true_areas()
        f, out = open_csv(truth / "areas.csv")
        out.writerow(AREA_HEADER)
        for key, cases in sorted(areas.items()):
            reported = sorted(c.reported_at for c in cases if c.reported_at is not None and c.reported_at < horizon)
            out.writerow([*key, ";".join(sorted(pop.key(c.person) for c in cases)),
                          fmt_ts(reported[0]) if reported else "", fmt_ts(reported[-1]) if reported else ""])
        f.close()
        return {"facilities": len(facilities), "placements": len(rows), "areas": len(areas)}

    def true_areas(self) -> dict[tuple, list]:
        """(scope, district, community_code, compound, hotel_code) -> cases: the compound each case
        lives in per the register, and each hotel a case stayed in from 2 days before its onset (its
        first positive sample when asymptomatic) until its isolation."""
        w, pop, city, horizon = self.w, self.w.pop, self.w.city, self.horizon
        areas: dict[tuple, list] = defaultdict(list)
        for case in sorted(w.cases.values(), key=lambda c: c.person):
            h = int(pop.household[case.person])
            if h >= 0:
                community = city.communities[int(pop.hh_community[h])]
                compound = city.compounds[int(pop.hh_compound[h])]
                areas[("compound", community.district, community.code, compound.name, "")].append(case)
            if case.asymptomatic:
                if case.sampled_at is None:
                    continue
                start = case.sampled_at - 2 * DAY
            else:
                start = case.onset - 2 * DAY
            end = min(w.isolated_at.get(case.person, horizon), horizon)
            for stay in w.stays_of.get(case.person, []):
                delivered = stay.checkin < horizon and max(stay.checkin, stay.checkout) >= BACKLOG_START
                if delivered and stay.checkin < end and stay.checkout > start:
                    hotel = city.hotels[stay.hotel]
                    community = city.communities[hotel.community]
                    key = ("hotel", community.district, community.code, "", hotel.code)
                    if case not in areas[key]:
                        areas[key].append(case)
        return areas


@dataclass
class _Booked:
    """What Books.book_row reads of a record: its number and whose it is."""
    key: str
    person: int
    faults: dict = field(default_factory=dict)
