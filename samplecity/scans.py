"""Place scans (场所码扫码): the big feed, generated a day at a time with numpy, never a Python
loop per row. Only the few faulty rows are touched one by one."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .base import HEADERS, day_start
from .faults import render_id, render_phone
from .people import KIND_VISITOR

ROW_GROUP = 1_000_000
EPOCH = dt.datetime(1970, 1, 1)
SCAN_FAULTS = [("证件号码", "id_lowercase_x"), ("证件号码", "id_fullwidth"), ("证件号码", "id_separators"),
               ("证件号码", "id_15_digit"), ("证件号码", "id_bad_check"), ("证件号码", "id_empty"),
               ("手机号", "phone_plus86_dashes"), ("手机号", "phone_86_prefix"), ("手机号", "phone_0086"),
               ("手机号", "phone_empty")]


def scan_schema() -> pa.Schema:
    h = HEADERS["place_scans"]
    return pa.schema([(c, pa.string()) for c in h[:-1]] + [(h[-1], pa.timestamp("s"))])


def write_scan_table(path: Path, table: pa.Table) -> None:
    """Parquet as the big-data platform delivers it: ~1M-row groups, zstd."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=ROW_GROUP, compression="zstd")


def build_table(venues: dict[str, np.ndarray], venue_idx: np.ndarray, ids: np.ndarray, phones: np.ndarray,
                seconds: np.ndarray) -> pa.Table:
    """Columns from venue attributes (taken by index), ID/phone strings and epoch seconds."""
    take = pa.array(venue_idx)
    h = HEADERS["place_scans"]
    cols = [pa.array(venues[k]).take(take) for k in ("code", "name", "kind", "address")]
    cols += [pa.array(ids, type=pa.string()), pa.array(phones, type=pa.string()),
             pa.array(seconds, type=pa.int64()).cast(pa.timestamp("s"))]
    return pa.Table.from_arrays(cols, schema=scan_schema()).rename_columns(h)


def write_place_scans_parquet(path: str | Path, id_numbers, phones, n_rows: int, day: dt.date, seed: int,
                              venues: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Benchmark entry: n_rows scans on one day by people drawn uniformly from id_numbers/phones
    (sequences or numpy arrays of the same length) at venues (40 made-up ones by default).
    Returns the person index of each row. Vectorised: fine for tens of millions of rows."""
    rng = np.random.Generator(np.random.PCG64([seed, day.toordinal()]))
    if venues is None:
        kinds = np.array(["餐饮", "商超", "办公", "医疗", "交通", "其他"])
        venues = {"code": np.array([f"CSM420102{k:06d}" for k in range(40)]),
                  "name": np.array([f"样例场所{k}" for k in range(40)]),
                  "kind": kinds[np.arange(40) % 6],
                  "address": np.array([f"江岸区样例路{k}号" for k in range(40)])}
    ids = np.asarray(id_numbers, dtype=object)
    ph = np.asarray(phones, dtype=object)
    person = rng.integers(0, len(ids), n_rows)
    venue = rng.integers(0, len(venues["code"]), n_rows)
    base = int((day_start(day) - EPOCH).total_seconds())
    seconds = base + rng.integers(7 * 3600, 22 * 3600, n_rows)
    order = np.argsort(seconds, kind="stable")
    person, venue, seconds = person[order], venue[order], seconds[order]
    write_scan_table(Path(path), build_table(venues, venue, ids[person], ph[person], seconds))
    return person


class ScanMaker:
    """Scans of the sample city: everyone at large scans about `rate` times a day, mostly near
    home; workers scan into their office on weekdays; dinner guests scan into the restaurant."""

    def __init__(self, world, rate: float, seed: int):
        self.w = world
        self.pop = world.pop
        self.rate = rate
        self.seed = seed
        city = world.city
        self.venues = {"code": np.array([v.code for v in city.venues]), "name": np.array([v.name for v in city.venues]),
                       "kind": np.array([v.kind for v in city.venues]),
                       "address": np.array([v.address for v in city.venues])}
        # Venues people wander into (not offices), grouped by community.
        open_v = np.array([v.index for v in city.venues if v.kind != "办公"])
        comm = np.array([city.venues[i].community for i in open_v])
        order = np.argsort(comm, kind="stable")
        self.open_venues = open_v[order]
        self.open_start = np.searchsorted(comm[order], np.arange(len(city.communities)))
        self.open_count = np.bincount(comm, minlength=len(city.communities))
        self.kind = self.venues["kind"]
        n = self.pop.n
        self.ids = np.array(self.pop.id_number[:n], dtype=object)
        phones = np.array([*self.pop.phone[:n], ""], dtype=object)
        owner = self.pop.phone_owner[:n].copy()
        owner[owner < 0] = n           # no phone anywhere in the household: empty
        self.phones = phones[owner]

    def away(self, people: np.ndarray, when: dt.datetime) -> np.ndarray:
        """True for people isolated or lying in a hospital ward at the given time."""
        w = self.w
        out = np.zeros(len(people), bool)
        gone = [p for p, t in w.isolated_at.items() if t <= when]
        gone += [p for p in w.general_ward if w.in_general_ward(p, when) is not None]
        if gone:
            out |= np.isin(people, np.array(sorted(gone)))
        return out

    def day(self, k: int) -> tuple[pa.Table, np.ndarray, list[tuple[int, str, str, str]]]:
        """Scans of delivery day k: the table, the person of each row, faults (row, column, fault, raw)."""
        w, pop = self.w, self.pop
        date = w.schedule.dates[k]
        rng = np.random.Generator(np.random.PCG64([self.seed, 5150, k]))
        noon = day_start(date) + dt.timedelta(hours=12)
        n = pop.n
        people = np.arange(n)
        kind = pop.kind[:n]
        in_reg = (kind <= 1) & (pop.register_day[:n] >= 0) & (pop.register_day[:n] <= k)
        visitors = np.array(sorted(p for p, (a, b) in w.presence.items() if a <= noon < b and pop.id_type[p] == 0
                                   and kind[p] == KIND_VISITOR), dtype=np.int64)
        counts = np.where(in_reg, rng.poisson(self.rate, n), 0)
        if len(visitors):
            counts[visitors] = (rng.random(len(visitors)) < 0.3).astype(counts.dtype)
        counts[self.phones == ""] = 0
        present = np.flatnonzero(counts)
        counts[present[self.away(present, noon)]] = 0
        person = np.repeat(people, counts)
        comm = pop.community[:n][person]
        comm = np.where(comm < 0, rng.integers(0, len(w.city.communities), len(person)), comm)
        local = rng.random(len(person)) < 0.7
        nearby = self.open_start[comm] + (rng.random(len(person)) * self.open_count[comm]).astype(np.int64)
        pick = np.where(local, nearby,
                        rng.integers(0, len(self.open_venues), len(person)))
        venue = self.open_venues[pick]
        base = int((day_start(date) - EPOCH).total_seconds())
        meal = np.where(rng.random(len(person)) < 0.5, rng.integers(11 * 3600, 13 * 3600 + 1800, len(person)),
                        rng.integers(17 * 3600, 20 * 3600 + 1800, len(person)))
        other = rng.integers(7 * 3600 + 1800, 21 * 3600 + 1800, len(person))
        seconds = base + np.where(self.kind[venue] == "餐饮", meal, other)
        # Office scans on weekdays, for every worker at large.
        if date.weekday() < 5:
            workers = np.flatnonzero((pop.office[:n] >= 0) & in_reg & (self.phones != ""))
            workers = workers[~self.away(workers, noon)]
            person = np.concatenate([person, workers])
            venue = np.concatenate([venue, pop.office[workers].astype(venue.dtype)])
            seconds = np.concatenate([seconds, base + rng.integers(8 * 3600, 9 * 3600 + 2400, len(workers))])
        # Dinners: everyone at the table scans within a few minutes of sitting down.
        for dinner in w.dinners:
            if dinner.time.date() == date:
                guests = np.array([p for p in dinner.people if self.phones[p]], dtype=np.int64)
                guests = guests[~self.away(guests, dinner.time)]
                t0 = int((dinner.time - EPOCH).total_seconds())
                person = np.concatenate([person, guests])
                venue = np.concatenate([venue, np.full(len(guests), dinner.venue, venue.dtype)])
                seconds = np.concatenate([seconds, t0 + rng.integers(-600, 600, len(guests))])
        order = np.argsort(seconds, kind="stable")
        person, venue, seconds = person[order], venue[order], seconds[order]
        ids = self.ids[person]
        phones = self.phones[person]
        faults = self.inject(rng, person, ids, phones)
        return build_table(self.venues, venue, ids, phones, seconds), person.astype(np.int64), faults

    def inject(self, rng, person, ids, phones) -> list[tuple[int, str, str, str]]:
        """A few rows per day with ID or phone faults (rows of visitors are flagged as such)."""
        pop = self.pop
        faults = []
        taken: set[int] = set()
        n = len(person)
        for column, fault in SCAN_FAULTS:
            count = max(1, int(n * 2e-5))
            cand = rng.integers(0, n, size=count * 20) if n else np.zeros(0, np.int64)
            got = 0
            for i in cand.tolist():
                if got >= count:
                    break
                p = int(person[i])
                if i in taken or pop.kind[p] == KIND_VISITOR:
                    continue
                if column == "手机号" and pop.phone_owner[p] != p:
                    continue    # a child scanning with a parent's phone: leave that row alone
                value = ids[i] if column == "证件号码" else phones[i]
                if not value or (fault == "id_lowercase_x" and not value.endswith("X")) or \
                        (fault == "id_15_digit" and value[6:8] != "19"):
                    continue
                param = int(rng.integers(0, 10**6))
                raw = render_id(fault, value, param) if column == "证件号码" else render_phone(fault, value, param)
                if column == "证件号码":
                    ids[i] = raw
                else:
                    phones[i] = raw
                taken.add(i)
                faults.append((i + 1, column, fault, raw))
                got += 1
        for i in np.flatnonzero(pop.kind[person] == KIND_VISITOR).tolist():
            faults.append((i + 1, "证件号码", "not_in_register", ids[i]))
        return sorted(faults)
