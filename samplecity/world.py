"""What happens in the city: trips, hotel stays, admissions, clinic visits, samples, report cards,
investigations, dinners. The outbreak and the background produce these; the feeds print them."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from .base import Schedule
from .geo import HOSPITALS, City
from .people import Population


@dataclass
class Trip:
    mode: str            # 火车 / 飞机 / 客车
    number: str          # 车次航班
    car: str             # 车厢 ('' unless a train)
    seat: str
    person: int
    origin: str
    dest: str
    dep: dt.datetime
    arr: dt.datetime
    row: int = 0         # aircraft seat row, for the rows-in-front-and-behind rule


@dataclass
class Stay:
    hotel: int
    room: str
    person: int
    checkin: dt.datetime
    checkout: dt.datetime


@dataclass
class Admission:
    number: str
    hospital: str
    ward: str
    bed: str
    person: int
    admit: dt.datetime
    discharge: dt.datetime | None
    diagnosis: str
    severity: list[tuple[dt.datetime, str]] = field(default_factory=list)  # 病情分型 over time
    final_diagnosis: str = ""    # the diagnosis printed at discharge, when it changed

    @property
    def isolating(self) -> bool:
        """Admission to a designated/shelter hospital or an isolation ward isolates the patient."""
        return HOSPITALS[self.hospital].isolation or "隔离" in self.ward


@dataclass
class FeverVisit:
    number: str
    hospital: str
    person: int
    time: dt.datetime
    temperature: float
    symptoms: str
    ct: str
    wbc: float
    lymph: float
    diagnosis: str
    disposition: str
    address: str
    phone_fix: tuple[dt.datetime, str] | None = None   # (when corrected, the wrong phone shown first)


@dataclass
class Sample:
    number: str
    person: int
    lab: str
    sampled: dt.datetime
    reported: dt.datetime
    result: str
    ct_orf: float | None
    ct_n: float | None
    reason: str
    first_result: tuple[str, float | None, float | None] | None = None  # an earlier, corrected result
    first_reported: dt.datetime | None = None


@dataclass
class Card:
    number: str
    person: int
    unit: str
    address: str
    address_code: str
    versions: list[tuple[dt.datetime, dict]] = field(default_factory=list)
    # each version: {'status', 'class', 'severity', 'onset', 'diagnosed'}


@dataclass
class Contact:
    person: int
    relation: str
    place_type: str
    place: str
    first: dt.datetime
    last: dt.datetime
    protected: bool = False
    setting: str = ""    # the truth setting of this exposure


@dataclass
class Investigation:
    number: str
    case: int
    card: str
    done: dt.datetime
    contacts: list[Contact] = field(default_factory=list)


@dataclass
class Dinner:
    venue: int
    time: dt.datetime
    people: list[int]


@dataclass
class Case:
    person: int
    code: str
    infector: int
    setting: str
    infected_at: dt.datetime
    onset: dt.datetime           # nominal (biological) onset, also for the asymptomatic
    asymptomatic: bool
    severity: str
    ct: float
    silent: bool = False         # never seeks care (found only through contact tracing)
    sampled_at: dt.datetime | None = None
    reported_at: dt.datetime | None = None
    card: Card | None = None
    detected: bool = False
    investigated: bool = False

    @property
    def window_start(self) -> dt.datetime:
        return self.onset - dt.timedelta(days=2)


@dataclass
class Exposure:
    exposed: int
    source: int
    setting: str
    first: dt.datetime
    last: dt.datetime
    evidence: set[str] = field(default_factory=set)


class World:
    """Everything the generator knows: the city, its people and all events with their truth."""

    def __init__(self, city: City, pop: Population, schedule: Schedule, seed: int, residents: int):
        self.city = city
        self.pop = pop
        self.schedule = schedule
        self.seed = seed
        self.scale = residents / 3000
        # Small feeds grow with the city, but more slowly past ten sample cities (30 000 people):
        # a million residents get ~58 outbreak clusters and ~58x the sample's clinic traffic.
        self.small_scale = self.scale if self.scale <= 10 else 10 * (self.scale / 10) ** 0.5
        self.trips: list[Trip] = []
        self.stays: list[Stay] = []
        self.admissions: list[Admission] = []
        self.visits: list[FeverVisit] = []
        self.samples: list[Sample] = []
        self.cards: list[Card] = []
        self.investigations: list[Investigation] = []
        self.dinners: list[Dinner] = []
        self.cases: dict[int, Case] = {}
        self.exposures: list[Exposure] = []
        self.isolated_at: dict[int, dt.datetime] = {}
        self.general_ward: dict[int, list[Admission]] = defaultdict(list)
        self.admissions_of: dict[int, list[Admission]] = defaultdict(list)
        self.stays_of: dict[int, list[Stay]] = defaultdict(list)
        self.stays_in: dict[tuple[int, str], list[Stay]] = defaultdict(list)
        self.presence: dict[int, tuple[dt.datetime, dt.datetime]] = {}   # visitors in the city
        self.newcomers: list[int] = []
        self.phone_fixes: dict[int, tuple[int, str, dt.datetime]] = {}  # person -> (day, wrong phone, when)
        self.critical: set[int] = set()        # people the truth depends on (keep their rows loadable)
        self.garbage_day: int | None = 3 if schedule.days >= 4 else None
        self._counters: dict[tuple[str, str], int] = defaultdict(int)

    # -- numbering -------------------------------------------------------------------------
    def number(self, kind: str, when: dt.datetime, prefix: str = "") -> str:
        """Sequential record numbers per kind, prefix and day, the way source systems print them."""
        day = when.strftime("%Y%m%d")
        self._counters[(kind + prefix, day)] += 1
        seq = self._counters[(kind + prefix, day)]
        if kind == "visit":
            return f"{prefix}-{day}-{seq:04d}"
        if kind == "admission":
            return f"{prefix}ZY{when:%y%m%d}{seq:04d}"
        if kind == "sample":
            return f"{prefix}{day}{seq:05d}"
        if kind == "card":
            return f"BK{day}{prefix}{seq:04d}"
        if kind == "investigation":
            return f"LD{day}{seq:04d}"
        raise ValueError(kind)

    # -- availability ----------------------------------------------------------------------
    def isolate(self, person: int, when: dt.datetime) -> None:
        if person not in self.isolated_at or when < self.isolated_at[person]:
            self.isolated_at[person] = when

    def isolated(self, person: int, when: dt.datetime) -> bool:
        t = self.isolated_at.get(person)
        return t is not None and t <= when

    def in_general_ward(self, person: int, when: dt.datetime) -> Admission | None:
        for adm in self.general_ward.get(person, ()):
            if adm.admit <= when and (adm.discharge is None or when < adm.discharge):
                return adm
        return None

    def free(self, person: int, when: dt.datetime) -> bool:
        """At large in the community: neither isolated nor lying in a hospital ward."""
        return not self.isolated(person, when) and self.in_general_ward(person, when) is None

    def add_admission(self, adm: Admission) -> Admission:
        self.admissions.append(adm)
        self.admissions_of[adm.person].append(adm)
        if adm.isolating:
            self.isolate(adm.person, adm.admit)
        else:
            self.general_ward[adm.person].append(adm)
        return adm

    def fever_hospital(self, person: int, when: dt.datetime, rng: np.random.Generator) -> str:
        """H01 for 江岸区 people, H02 for 武昌区 (one in five goes to the other one); never H01
        on the day its export is unreadable, so no truth depends on that file."""
        district = int(self.pop.district[person])
        home = "H01" if district == 0 else "H02" if district == 1 else ("H01" if rng.random() < 0.5 else "H02")
        choice = home if rng.random() < 0.8 else ("H02" if home == "H01" else "H01")
        if choice == "H01" and self.garbage_day is not None and \
                self.schedule.index_of(when + dt.timedelta(hours=1)) == self.garbage_day:
            choice = "H02"
        return choice
