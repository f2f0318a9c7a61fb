"""Shared-phone ties: could any signal in the data say which family member an ID-less record is?

    .venv/bin/python benchmarks/shared_phones.py --db out/trace24.duckdb                  # the sample city
    .venv/bin/python benchmarks/shared_phones.py --db CITY/linked.duckdb --truth CITY/truth

A record carrying a phone and nothing else, on a phone that a parent and a child (or an old person
without a phone) both scan with, scores the same with each of them: ``linkage.resolve`` sends it to
review. This script takes a linked store and the city's truth, and prints, for each tie-breaker one
could write, how many ties it would decide and how many of those it would decide right:

- holder: the one candidate whose own records outside the place scans (register, hospital, lab,
  case report) give the phone;
- adult: the one candidate aged 16 or more on the day (a mobile subscription is in an adult's name);
- habit: the candidate with the most scans of their own at the same venue;
- nearest: the candidate with an own scan nearest in time to the record (where they were).

Figures, not assertions: they are what the decision in the README (Identity) stands on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from trace24.evaluation import TRUTH_RECORDS_SQL  # noqa: E402 (needs the project on the path)

# The truth's records and their persons (as ``trace24 evaluate`` reads them), then the ties.
TIES_SQL = TRUTH_RECORDS_SQL + """,
person_of_truth AS (
    -- The true person as the store knows them: where their records with a valid ID went.
    SELECT truth_key, mode(person_id) AS person_id FROM grouped WHERE is_exact GROUP BY truth_key
),
tied_signatures AS (
    -- Two or more candidates sharing the record's probability, none with enough to link.
    SELECT signature_id FROM link_review GROUP BY signature_id HAVING count(*) >= 2
),
tie_records AS (
    SELECT u.signature_id, u.feed, u.load_id, u.source_row_number, u.phone, u.delivery_date,
           s.venue_code, s.scanned_at, o.person_id AS true_person_id
    FROM unidentified_records AS u
    JOIN tied_signatures USING (signature_id)
    JOIN load_audit AS a USING (load_id)
    LEFT JOIN truth AS t ON t.file = a.source_file AND t.source_row_number = u.source_row_number
    LEFT JOIN person_of_truth AS o USING (truth_key)
    LEFT JOIN staged_place_scans AS s
           ON u.feed = 'place_scans' AND s.load_id = u.load_id AND s.source_row_number = u.source_row_number
),
candidates AS (
    SELECT r.*, v.person_id AS candidate_id
    FROM tie_records AS r
    JOIN link_review AS v USING (signature_id)
),
candidate_scans AS (
    SELECT p.person_id, s.venue_code, s.scanned_at
    FROM person_records AS p
    JOIN staged_place_scans AS s USING (load_id, source_row_number)
    WHERE p.feed = 'place_scans' AND p.person_id IN (SELECT candidate_id FROM candidates)
),
holders AS (
    SELECT DISTINCT p.person_id, i.phone
    FROM person_records AS p
    JOIN identity_records AS i USING (feed, load_id, source_row_number)
    WHERE p.feed <> 'place_scans' AND p.person_id IN (SELECT candidate_id FROM candidates)
),
features AS (
    SELECT c.signature_id, c.feed, c.load_id, c.source_row_number, c.true_person_id, c.candidate_id,
           h.person_id IS NOT NULL AS is_holder,
           date_diff('year', pe.birth_date, c.delivery_date) >= 16 AS is_adult,
           (SELECT count(*) FROM candidate_scans AS x
            WHERE x.person_id = c.candidate_id AND x.venue_code = c.venue_code) AS venue_scans,
           (SELECT min(abs(epoch(x.scanned_at) - epoch(c.scanned_at))) FROM candidate_scans AS x
            WHERE x.person_id = c.candidate_id) AS nearest_seconds
    FROM candidates AS c
    LEFT JOIN holders AS h ON h.person_id = c.candidate_id AND h.phone = c.phone
    LEFT JOIN persons AS pe ON pe.person_id = c.candidate_id
)
SELECT * FROM features ORDER BY feed, load_id, source_row_number, candidate_id
"""  # noqa: S608 - constant SQL joined to constant SQL


def decide(candidates: list[dict], rule: str) -> int | None:
    """The candidate a rule picks for one record, or None where it cannot tell them apart."""
    if rule in ("holder", "adult"):
        flag = "is_holder" if rule == "holder" else "is_adult"
        picked = [c["candidate_id"] for c in candidates if c[flag]]
        return picked[0] if len(picked) == 1 else None
    key = {"habit": lambda c: c["venue_scans"],
           "nearest": lambda c: -(c["nearest_seconds"] if c["nearest_seconds"] is not None else float("inf"))}[rule]
    ranked = sorted(candidates, key=key, reverse=True)
    if len(ranked) > 1 and key(ranked[0]) == key(ranked[1]):
        return None
    return ranked[0]["candidate_id"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True, help="a store after `trace24 link` or `trace24 run`")
    parser.add_argument("--truth", type=Path, default=ROOT / "data" / "sample" / "truth")
    args = parser.parse_args()
    con = duckdb.connect(str(args.db), read_only=True)
    cursor = con.execute(TIES_SQL, {"records": str(args.truth / "records.csv")})
    columns = [d[0] for d in cursor.description]
    by_record: dict[tuple, list[dict]] = {}
    for row in cursor.fetchall():
        record = dict(zip(columns, row, strict=True))
        by_record.setdefault((record["feed"], record["load_id"], record["source_row_number"]), []).append(record)
    scans = sum(1 for key in by_record if key[0] == "place_scans")
    known = [c for c in by_record.values() if c[0]["true_person_id"] is not None]
    among = [c for c in known if any(x["candidate_id"] == x["true_person_id"] for x in c)]
    print(f"records tied between two or more persons: {len(by_record):,} ({scans:,} place scans), "
          f"signatures {len({c[0]['signature_id'] for c in by_record.values()}):,}")
    print(f"with a true person in the truth: {len(known):,}; the true person among the candidates: {len(among):,}")
    print(f"{'tie-breaker':<12}{'decides':>9}{'right':>8}{'wrong':>8}{'right of decided':>18}")
    for rule in ("holder", "adult", "habit", "nearest"):
        picks = [(decide(c, rule), c[0]["true_person_id"]) for c in among]
        decided = [(p, t) for p, t in picks if p is not None]
        right = sum(p == t for p, t in decided)
        share = f"{right / len(decided):.3f}" if decided else "-"
        print(f"{rule:<12}{len(decided):>9,}{right:>8,}{len(decided) - right:>8,}{share:>18}")
    con.close()


if __name__ == "__main__":
    main()
