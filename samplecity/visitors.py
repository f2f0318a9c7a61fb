"""People outside the register (visitors, floating population), their trips and hotel stays."""

from __future__ import annotations

import datetime as dt

import numpy as np

from .base import DAY, HOUR, MINUTE, round_minute
from .geo import DISTRICTS
from .people import HOME_TOWNS, HUBEI_COUNTIES, KIND_VISITOR, OTHER_COUNTIES, REFERENCE_DAY
from .world import Stay, Trip, World

TRAIN_ORIGINS = ["广州南", "北京西", "深圳北", "长沙南", "郑州东", "上海虹桥", "信阳东", "南昌西", "西安北"]
TRAIN_DESTS = ["汉口", "武昌", "武汉"]
FLIGHT_ORIGINS = ["北京首都", "上海虹桥", "广州白云", "成都双流", "深圳宝安", "昆明长水", "厦门高崎"]
BUS_ORIGINS = [("孝感汽车站", "XG"), ("黄冈客运站", "HG"), ("咸宁汽车站", "XN"), ("鄂州汽车站", "EZ"),
               ("仙桃客运站", "XT")]
BUS_DESTS = ["武汉傅家坡客运站", "汉口新华路客运站"]
AIRLINES = ["CA", "MU", "CZ", "HU", "3U", "ZH", "MF"]
SEAT_LETTERS_G = "ABCDF"
SEAT_LETTERS_AIR = "ABCDEF"


def random_time(rng: np.random.Generator, start: dt.datetime, end: dt.datetime) -> dt.datetime:
    span = max(1, int((end - start).total_seconds() // 60))
    return start + MINUTE * int(rng.integers(0, span))


def hours(rng: np.random.Generator, lo: float, hi: float) -> dt.timedelta:
    return dt.timedelta(minutes=int(rng.uniform(lo, hi) * 60))


class Travel:
    """Builds trips (real-name transport records) and hotel stays without double-booking rooms."""

    def __init__(self, world: World, rng: np.random.Generator):
        self.w = world
        self.rng = rng
        self.rooms: dict[tuple[int, str], list[tuple[dt.datetime, dt.datetime]]] = {}
        self.train_no = 0

    # -- transport ---------------------------------------------------------------------------
    def train(self, dep: dt.datetime, kind: str = "G") -> dict:
        rng = self.rng
        origin = TRAIN_ORIGINS[int(rng.integers(0, len(TRAIN_ORIGINS)))]
        self.train_no += 1
        number = f"{kind}{int(rng.integers(1, 99)) * 100 + self.train_no % 100:d}" if kind == "G" \
            else f"{kind}{int(rng.integers(100, 1600))}"
        duration = hours(rng, 2.5, 5.5) if kind == "G" else hours(rng, 6, 14)
        return {"mode": "火车", "kind": kind, "number": number, "origin": origin,
                "dest": TRAIN_DESTS[int(rng.integers(0, 3))], "dep": round_minute(dep),
                "arr": round_minute(dep + duration),
                "taken": set()}

    def flight(self, dep: dt.datetime) -> dict:
        rng = self.rng
        number = f"{AIRLINES[int(rng.integers(0, len(AIRLINES)))]}{int(rng.integers(1000, 9999))}"
        return {"mode": "飞机", "number": number, "origin": FLIGHT_ORIGINS[int(rng.integers(0, len(FLIGHT_ORIGINS)))],
                "dest": "武汉天河", "dep": round_minute(dep), "arr": round_minute(dep + hours(rng, 1.5, 3.5)),
                "taken": set()}

    def bus(self, dep: dt.datetime) -> dict:
        rng = self.rng
        origin, abbr = BUS_ORIGINS[int(rng.integers(0, len(BUS_ORIGINS)))]
        dep = round_minute(dep)
        return {"mode": "客车", "number": f"{abbr}{dep:%H%M}", "origin": origin,
                "dest": BUS_DESTS[int(rng.integers(0, 2))], "dep": dep, "arr": dep + hours(self.rng, 1, 2.5),
                "taken": set()}

    def seat(self, vehicle: dict, person: int, car: int | None = None, row: int | None = None) -> Trip:
        """Seat a passenger (a free seat in the given car or aircraft row) and record the trip."""
        rng = self.rng
        for _ in range(500):
            if vehicle["mode"] == "火车" and vehicle.get("kind") == "G":
                c = car if car is not None else int(rng.integers(2, 9))
                r = int(rng.integers(1, 18))
                letter = SEAT_LETTERS_G[int(rng.integers(0, 5))]
                key = (c, r, letter)
                seat, car_s, row_n = f"{r:02d}{letter}", f"{c:02d}", 0
            elif vehicle["mode"] == "火车":
                c = car if car is not None else int(rng.integers(1, 16))
                k = int(rng.integers(1, 119))
                key = (c, k)
                seat, car_s, row_n = f"{c:02d}车{k:03d}号", f"{c:02d}", 0
            elif vehicle["mode"] == "飞机":
                r = row if row is not None else int(rng.integers(1, 33))
                letter = SEAT_LETTERS_AIR[int(rng.integers(0, 6))]
                key = (r, letter)
                seat, car_s, row_n = f"{r}{letter}", "", r
            else:
                k = int(rng.integers(1, 50))
                key = (k,)
                seat, car_s, row_n = f"{k:02d}", "", 0
            if key not in vehicle["taken"]:
                vehicle["taken"].add(key)
                break
        else:
            raise RuntimeError("vehicle full")
        trip = Trip(vehicle["mode"], vehicle["number"], car_s, seat, person, vehicle["origin"], vehicle["dest"],
                    vehicle["dep"], vehicle["arr"], row_n)
        self.w.trips.append(trip)
        return trip

    def background_trip(self, person: int, arrive: dt.datetime) -> Trip:
        """An arrival by train, flight or bus reaching the city at about the given time."""
        rng = self.rng
        u = rng.random()
        if u < 0.45:
            vehicle = self.train(arrive - hours(rng, 3, 5), "G" if rng.random() < 0.6 else "K")
        elif u < 0.7:
            vehicle = self.flight(arrive - hours(rng, 2, 3))
        else:
            vehicle = self.bus(arrive - hours(rng, 1, 2))
        return self.seat(vehicle, person)

    # -- hotels ------------------------------------------------------------------------------
    def book(self, hotel: int, checkin: dt.datetime, checkout: dt.datetime, room: str | None = None) -> str:
        """A room free for the whole stay (or the given one, shared on purpose)."""
        rng = self.rng
        floors = self.w.city.hotels[hotel].floors
        for _ in range(1000):
            r = room or f"{int(rng.integers(2, floors + 1))}{int(rng.integers(1, 21)):02d}"
            busy = self.rooms.setdefault((hotel, r), [])
            if room or all(checkout <= a or b <= checkin for a, b in busy):
                busy.append((checkin, checkout))
                return r
        raise RuntimeError("hotel full")

    def stay(self, person: int, hotel: int, checkin: dt.datetime, checkout: dt.datetime,
             room: str | None = None) -> Stay:
        checkin, checkout = round_minute(checkin), round_minute(checkout)
        room = self.book(hotel, checkin, checkout, room)
        s = Stay(hotel, room, person, checkin, checkout)
        self.w.stays.append(s)
        self.w.stays_of[person].append(s)
        self.w.stays_in[(hotel, room)].append(s)
        return s


def new_visitor(w: World, travel: Travel, rng: np.random.Generator, arrive: dt.datetime, role: str | None = None,
                by_trip: bool | None = None, stay_days: float | None = None, male: bool | None = None,
                age: int | None = None) -> int:
    """A person absent from the register: a hotel guest, someone staying with relatives (their
    address names a compound of the register), someone giving only a district, or nothing usable."""
    pop = w.pop
    role = role or str(rng.choice(["hotel", "relative", "district", "none"], p=[0.5, 0.25, 0.1, 0.15]))
    male = bool(rng.random() < 0.55) if male is None else male
    age = int(rng.integers(18, 70)) if age is None else age
    birth = REFERENCE_DAY - dt.timedelta(days=int(age * 365.25 + rng.integers(0, 365)))
    county = int(rng.choice(HUBEI_COUNTIES)) if rng.random() < 0.6 else int(rng.choice(OTHER_COUNTIES))
    phone = pop.new_mobile() if rng.random() < 0.95 else ""
    arrive = round_minute(arrive)
    leave = arrive + dt.timedelta(days=stay_days if stay_days is not None else float(rng.uniform(2, 20)))
    community, district, address = -1, -1, ""
    home = HOME_TOWNS.get(county, "")
    if role == "relative":
        h = int(rng.integers(0, len(pop.hh_size)))
        c = w.city.communities[int(pop.hh_community[h])]
        compound = w.city.compounds[int(pop.hh_compound[h])]
        community, district = c.index, 0 if c.district == DISTRICTS[0][0] else 1
        address = f"{c.district}{compound.name}{int(pop.hh_building[h])}栋{int(pop.hh_unit[h])}单元" \
                  f"{int(pop.hh_floor[h])}{int(pop.hh_room[h]):02d}" + ("(亲戚家)" if rng.random() < 0.4 else "")
    elif role == "district":
        district = int(rng.integers(0, 2))
        road = ["解放大道", "中山大道", "中南路", "武珞路", "和平大道", "沿江大道"][int(rng.integers(0, 6))]
        address = f"{DISTRICTS[district][0]}{road}附近" if rng.random() < 0.5 else \
            f"武汉市{DISTRICTS[district][0]}{road}{int(rng.integers(1, 999))}号"
    elif role == "none":
        address = f"{home}{int(rng.integers(1, 200))}号" if home and rng.random() < 0.6 else ""
    else:  # hotel
        address = f"{home}{int(rng.integers(1, 200))}号" if home and rng.random() < 0.5 else ""
    person = pop.add_person(name=pop.random_name(male), male=male, birth=birth, county=county, phone=phone,
                            kind=KIND_VISITOR, community=community, district=district, address=address)
    w.presence[person] = (arrive, round_minute(leave))
    if role == "hotel":
        hotel = int(rng.integers(0, len(w.city.hotels)))
        checkout = (leave.replace(hour=0, minute=0) + hours(rng, 9, 12.5))
        if checkout <= arrive + HOUR:
            checkout = arrive + DAY
        s = travel.stay(person, hotel, arrive + hours(rng, 0.5, 2), checkout)
        h = w.city.hotels[hotel]
        c = w.city.communities[h.community]
        pop.community[person] = h.community
        pop.district[person] = 0 if c.district == DISTRICTS[0][0] else 1
        if not address:
            pop.address_text[person] = f"{h.name}{s.room}房" if rng.random() < 0.5 else ""
    if by_trip if by_trip is not None else rng.random() < 0.7:
        travel.background_trip(person, arrive)
    return person
