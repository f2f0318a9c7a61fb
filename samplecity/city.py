"""generate_city: the whole sample city, from people to landing files and truth."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from .background import Background
from .base import AGENCY_OF_FEED, Schedule, np_rng
from .deliver import Books, OutFile, plan_register_faults, write_register
from .faults import plan_faults
from .feeds import assign_deliveries, build_records
from .geo import SAMPLE_RESIDENTS_PER_VENUE, City
from .outbreak import Outbreak
from .people import Population
from .response import Response
from .scans import ScanMaker, write_scan_table
from .truth import write_truth
from .world import World

ENCODING = {"inpatients": "utf-8-sig", "case_reports": "utf-8-sig"}


def generate_city(out_dir: Path, residents: int = 3000, days: int = 5, seed: int = 2020,
                  scans_per_resident_per_day: float = 2.0, outbreak: bool = True,
                  residents_per_venue: int = SAMPLE_RESIDENTS_PER_VENUE, truth: bool = True) -> dict:
    """Generate the sample city into out_dir/landing and out_dir/truth (both recreated; no truth
    when ``truth`` is false: a benchmark that only runs the flow needs none, and at ten million
    residents it is ~27 GB of CSV).

    Same arguments, same bytes. Returns a small summary (rows per feed, cases, faults).
    ``residents_per_venue`` sets how many venues (place codes) there are: with few, every
    restaurant and office serves thousands and a case's scan makes hundreds of venue contacts.
    """
    out_dir = Path(out_dir)
    for sub in ("landing", "truth"):
        shutil.rmtree(out_dir / sub, ignore_errors=True)
    schedule = Schedule(days)
    city = City(residents, np_rng(seed, "city"))
    pop = Population(city, residents, np_rng(seed, "people"))
    city.make_venues(np.bincount(pop.community[:pop.n_register], minlength=len(city.communities)),
                     residents_per_venue)
    city.make_hotels(residents)
    pop.assign_offices()
    world = World(city, pop, schedule, seed, residents)
    ob = Outbreak(world, seed)
    if outbreak:
        ob.seed_clusters(max(1, round(world.small_scale)))
        ob.run()
    Background(world, ob, seed).run()
    ob.finish()

    records = build_records(world, seed)
    late: dict[tuple[str, int], int] = {}
    missing: set[tuple[str, int]] = set()
    emptied: set[tuple[str, int]] = set()
    if days >= 4:    # no transport export on day 3: day 4 delivers it late
        late[("transport", 2)] = 3
        missing.add(("transport", 2))
    if days >= 3:    # an empty lodging export on day 2: day 3 catches up
        late[("lodging", 1)] = 2
        emptied.add(("lodging", 1))
    assign_deliveries(records, schedule, late)
    critical = set(world.cases)
    for e in world.exposures:
        critical.update((e.exposed, e.source))
    for d in world.dinners:
        critical.update(d.people)
    passports = {p for p in range(pop.n) if pop.id_type[p] == 1}
    outsiders = {p for p in range(pop.n) if not pop.in_register(p)}
    plan_faults(records, critical, passports, np_rng(seed, "faults"), outsiders)

    books = Books(out_dir, schedule, pop, seed)
    scans = ScanMaker(world, scans_per_resident_per_day, seed)
    scan_people: dict[int, np.ndarray] = {}
    for day in range(days):
        for f in day_files(day, world, records, missing):
            if f.feed == "residents" and day == 0:   # the full register (changes come later)
                if f.rows:
                    raise AssertionError("register changes delivered on day 1")
                f.kind = "register"
                write_register(books, f, plan_register_faults(pop, world.phone_fixes, np_rng(seed, "register")),
                               world.phone_fixes)
            elif f.kind == "parquet":
                table, people, faults = scans.day(day)
                write_scan_table(books.path(f), table)
                f.n_rows = table.num_rows
                books.files.append(f)
                scan_people[day] = people
                for row, column, fault, raw in faults:
                    books.fault(f, row, column, fault, raw)
                if f.n_rows == 0:
                    books.fault(f, None, "", "empty_file", "")
            else:
                books.write(f)
    books.log_versions(records)
    # The response feeds (bed census, vehicles, isolation check-ins) come last, from their own random
    # stream: every file above is the same with them or without them.
    known = {row[6] for row in books.records} | set(world.cases) | set(world.newcomers)
    for e in world.exposures:
        known.update((e.exposed, e.source))
    books.appended_from = len(books.faults)
    response = Response(world, seed, known)
    response.write(books)
    summary = {"residents": residents, "days": days, "seed": seed,
               "delivery_dates": [schedule.label(i) for i in range(days)]}
    if not truth:
        return summary
    return write_truth(out_dir / "truth", world, books, scan_people, summary, response)


def day_files(day: int, world: World, records: dict, missing: set) -> list[OutFile]:
    """The files of one delivery, in path order, each with its rows in time order."""
    files = []
    for feed, recs in records.items():
        if feed == "communities" and day > 0:
            continue
        groups: dict[str, list] = {}
        for r in recs:
            for d, vi in r.rows:
                if d == day:
                    groups.setdefault(r.source if feed == "fever_clinic" else "", []).append((r, vi))
        if feed == "fever_clinic":
            for hospital, kind, name in (("H01", "xlsx", "fever_clinic_H01.xlsx"),
                                         ("H02", "csv", "fever_clinic_H02.csv")):
                rows = groups.get(hospital, [])
                if hospital == "H01" and day == world.garbage_day:
                    if rows:
                        raise AssertionError("records delivered in the unreadable file")
                    kind = "garbage"
                f = OutFile(day, feed, name, kind, "gbk" if hospital == "H02" else "utf-8", sort_rows(rows))
                files.append(f)
            continue
        kind = "missing" if (feed, day) in missing else "csv"
        rows = sort_rows(groups.get("", []))
        files.append(OutFile(day, feed, f"{feed}.csv", kind, ENCODING.get(feed, "utf-8"), rows))
    files.append(OutFile(day, "place_scans", "place_scans.parquet", "parquet"))
    return sorted(files, key=lambda f: (AGENCY_OF_FEED[f.feed], f.name))


def sort_rows(rows: list) -> list:
    return sorted(rows, key=lambda rv: (rv[0].versions[rv[1]][0], rv[0].key, rv[0].person))
