"""The answer key: who everyone really is, where every row went, every fault put in, who infected
whom, and every true exposure."""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .base import fmt_date, fmt_ts
from .categories import CATEGORY_HEADER, true_categories
from .deliver import Books, vocab, write_plain
from .geo import DISTRICTS
from .people import KIND_NEWCOMER, KIND_REGISTER
from .world import World

RECORD_HEADER = ["delivery_date", "agency", "feed", "file", "row_number", "record_key", "person_key"]
FAULT_HEADER = ["delivery_date", "feed", "file", "row_number", "column", "fault", "raw_value", "expected"]


def open_csv(path: Path):
    f = open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115 (closed by the caller)
    return f, csv.writer(f, lineterminator="\n")


def ts(value, horizon=None) -> str:
    """A time as truth prints it; empty when it has not happened by the last delivery."""
    if value is None or (horizon is not None and value >= horizon):
        return ""
    return fmt_ts(value)


def write_truth(truth: Path, w: World, books: Books, scan_people: dict[int, np.ndarray], summary: dict,
                response=None) -> dict:
    """Every truth file; ``response`` (samplecity.response.Response) adds facilities.csv,
    placements.csv and areas.csv."""
    pop = w.pop
    truth.mkdir(parents=True, exist_ok=True)
    width = pop.key_width
    keys_arrow = pc.binary_join_element_wise(
        "P", pc.utf8_lpad(pa.array(np.arange(1, pop.n + 1)).cast(pa.string()), width, "0"), "")
    keys = keys_arrow.to_numpy(zero_copy_only=False)   # object array, for the few per-row lookups

    # records.csv, in file order; the register and the scans are printed column-wise.
    f, out = open_csv(truth / "records.csv")
    out.writerow(RECORD_HEADER)
    by_file = defaultdict(list)
    for row in books.records:
        by_file[row[3]].append(row)
    referenced: set[int] = set()
    feed_rows: Counter = Counter()
    for of in books.files:
        rel = books.relpath(of)
        if of.kind == "parquet":
            people = scan_people[of.day]
            n = len(people)
            write_plain(f, [[books.schedule.label(of.day)], ["police"], ["place_scans"], [rel],
                            np.arange(1, n + 1), [""], keys_arrow.take(pa.array(people))], n)
            referenced.update(np.unique(people).tolist())
            feed_rows["place_scans"] += n
        elif of.kind == "register":
            n = pop.n_register
            write_plain(f, [[books.schedule.label(of.day)], ["civil"], ["residents"], [rel], np.arange(1, n + 1),
                            pop.id_number[:n], keys_arrow.slice(0, n)], n)
            feed_rows["residents"] += n
        else:
            for row in by_file.get(rel, []):
                person = row[6]
                out.writerow((*row[:6], str(keys[person]) if person >= 0 else ""))
                if person >= 0:
                    referenced.add(person)
                feed_rows[row[2]] += 1
    f.close()

    # faults.csv
    f, out = open_csv(truth / "faults.csv")
    out.writerow(FAULT_HEADER)
    def order(r):
        return r[0], r[2], -1 if r[3] is None else r[3], r[4], r[5]
    split = len(books.faults) if books.appended_from is None else books.appended_from
    faults = sorted(books.faults[:split], key=order) + sorted(books.faults[split:], key=order)
    for row in faults:
        out.writerow((*row[:3], "" if row[3] is None else row[3], *row[4:]))
    f.close()

    # cases.csv
    horizon = w.schedule.horizon
    f, out = open_csv(truth / "cases.csv")
    out.writerow(["person_key", "case_code", "infector_person_key", "setting", "infected_at", "onset_date",
                  "is_asymptomatic", "severity", "sampled_at", "reported_at", "isolated_at"])
    cases = sorted(w.cases.values(), key=lambda c: (c.infected_at, c.code))
    for c in cases:
        iso = w.isolated_at.get(c.person)
        onset = fmt_date(c.onset.date()) if not c.asymptomatic and c.onset < horizon else ""
        out.writerow([pop.key(c.person), c.code, pop.key(c.infector) if c.infector >= 0 else "", c.setting,
                      ts(c.infected_at), onset, str(c.asymptomatic).lower(), c.severity, ts(c.sampled_at, horizon),
                      ts(c.reported_at, horizon), ts(iso, horizon)])
        referenced.add(c.person)
    f.close()

    # exposures.csv
    f, out = open_csv(truth / "exposures.csv")
    out.writerow(["exposed_person_key", "source_person_key", "setting", "first_exposure_at", "last_exposure_at",
                  "evidence"])
    for e in w.exposures:
        out.writerow([pop.key(e.exposed), pop.key(e.source), e.setting, ts(e.first), ts(e.last),
                      ";".join(sorted(e.evidence))])
        referenced.update((e.exposed, e.source))
    f.close()

    # categories.csv: who is in which of the four categories at the horizon (nhc-v6 rules).
    categories = true_categories(w)
    f, out = open_csv(truth / "categories.csv")
    out.writerow(CATEGORY_HEADER)
    for person in sorted(categories):
        category, asymptomatic, reason = categories[person]
        out.writerow([pop.key(person), category, str(asymptomatic).lower(), reason])
        referenced.add(person)
    f.close()

    # persons.csv: the register (column-wise), then everyone else who shows up anywhere.
    f, out = open_csv(truth / "persons.csv")
    out.writerow(["person_key", "id_number", "id_type", "name", "sex", "birth_date", "phone", "in_register",
                  "community_code", "district", "household_id"])
    codes = np.array([c.code for c in w.city.communities] + [""])
    districts = np.array([d[0] for d in DISTRICTS] + [""])
    n = pop.n
    comm = pop.community[:n].copy()
    comm[comm < 0] = len(codes) - 1
    dist = pop.district[:n].astype(np.int64)
    dist[dist < 0] = len(districts) - 1
    hh = pop.household[:n]
    hh_col = pc.if_else(pa.array(hh >= 0), pa.array(pop.hh_number[np.maximum(hh, 0)]).cast(pa.string()), "")
    keep = np.zeros(n, bool)
    keep[: pop.n_register] = True
    keep[np.array(sorted(referenced), dtype=np.int64)] = True
    keep |= pop.kind[:n] == KIND_NEWCOMER
    idx = np.flatnonzero(keep)
    write_plain(f, [keys_arrow.take(pa.array(idx)), [pop.id_number[i] for i in idx],
                    vocab(["居民身份证", "护照"], pop.id_type[idx]), [pop.name[i] for i in idx],
                    vocab(["女", "男"], pop.male[idx]), pa.array(pop.birth[idx]).cast(pa.string()),
                    [pop.phone[i] for i in idx],
                    vocab(["false", "true"], np.isin(pop.kind[idx], [KIND_REGISTER, KIND_NEWCOMER])),
                    vocab(list(codes), comm[idx]), vocab(list(districts), dist[idx]),
                    hh_col.take(pa.array(idx))],
                len(idx))
    f.close()

    response_counts = response.write_truth(truth) if response is not None else {}

    fault_counts = Counter(r[5] for r in books.faults)
    summary.update({
        "persons": len(idx),
        "persons_in_register": int(np.isin(pop.kind[idx], [KIND_REGISTER, KIND_NEWCOMER]).sum()),
        "cases": len(cases),
        "cases_asymptomatic": sum(1 for c in cases if c.asymptomatic),
        "cases_by_setting": dict(sorted(Counter(c.setting for c in cases).items())),
        "cases_reported": sum(1 for c in cases if c.reported_at is not None),
        "exposures": len(w.exposures),
        "categories": dict(sorted(Counter(c[0] for c in categories.values()).items())),
        "exposures_by_setting": dict(sorted(Counter(e.setting for e in w.exposures).items())),
        "rows_by_feed": dict(sorted(feed_rows.items())),
        "faults": len(books.faults),
        "faults_by_class": dict(sorted(fault_counts.items())),
        "files": sorted(books.relpath(of) for of in books.files if of.kind != "missing"),
        **response_counts,
    })
    (truth / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2, sort_keys=True) + "\n",
                                        encoding="utf-8")
    return summary

