"""Exposure benchmark: a synthetic city's staged store, then cases, exposures and the graph.

    .venv/bin/python benchmarks/exposures.py                       # 1,000,000 residents, 14 days
    .venv/bin/python benchmarks/exposures.py --residents 100000

The store is written straight into the staged tables by SQL (no files, no ingestion: that is
``benchmarks/ingest.py``): residents in households of three, about two place scans per resident
per day over 14 days at 20,000 venues per million residents, one case per 500 residents, and
trips, hotel stays, admissions and interviews in proportion. It is cached in ``benchmarks/.cache``.
Then, in a fresh process, it times each step, one plain scan of the place-scan table as the
floor, and peak memory. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from trace24.transforms.publish.run_report import peak_memory_bytes  # noqa: E402 (needs the project on the path)

DAY0 = dt.datetime(2020, 2, 1)

# $n residents; $days days; every value a parameter, the statements constant.
GENERATE = (
    """INSERT INTO persons SELECT i AS person_id, NULL, CAST(i // 3 AS VARCHAR) AS household_id,
       NULL, NULL, NULL, NULL, NULL, NULL FROM range(1, $n + 1) AS t(i)""",
    # Place scans: person i scans twice a day at venues picked by a hash, between 07:00 and 21:00.
    """INSERT INTO staged_place_scans BY NAME
       SELECT d + 1 AS load_id, CAST($day0 AS DATE) + CAST(d AS INTEGER) AS delivery_date,
              'scans.parquet' AS source_file, i * 2 + k AS source_row_number,
              'V' || CAST(hash(i, d, k) % $venues AS BIGINT) AS venue_code,
              ['餐饮', '商超', '办公', '医疗', '交通', '其他'][CAST(1 + (hash(i, d, k) % $venues) % 6 AS BIGINT)]
                  AS venue_type,
              $day0 + to_days(CAST(d AS INTEGER)) + to_minutes(CAST(420 + hash(i, k, d, 1) % 840 AS BIGINT))
                  AS scanned_at,
              true AS is_current, false AS is_deleted
       FROM range(0, $days) AS a(d), range(1, $n + 1) AS b(i), range(0, 2) AS c(k)""",
    """INSERT INTO person_records
       SELECT 'place_scans', load_id, source_row_number, source_row_number // 2, 'exact_id', 1.0
       FROM staged_place_scans""",
    # Cases: one resident in 500, ill on days 4-12, sampled 2 days after onset, reported 6 h later.
    """INSERT INTO staged_lab_results BY NAME
       SELECT 1 AS load_id, CAST($day0 AS DATE) AS delivery_date, 'lab.csv' AS source_file, i AS source_row_number,
              'S' || i AS sample_id, '阳性' AS result,
              $day0 + to_days(CAST(6 + i % 9 AS INTEGER)) + to_hours(CAST(i % 24 AS BIGINT)) AS sampled_at,
              $day0 + to_days(CAST(6 + i % 9 AS INTEGER)) + to_hours(CAST(i % 24 + 6 AS BIGINT)) AS reported_at,
              true AS is_current, false AS is_deleted
       FROM range(7, $n + 1, 500) AS t(i)""",
    """INSERT INTO staged_case_reports BY NAME
       SELECT 1 AS load_id, CAST($day0 AS DATE) AS delivery_date, 'cards.csv' AS source_file, i AS source_row_number,
              'K' || i AS card_id, '确诊病例' AS case_class, '新增' AS card_status,
              CAST($day0 AS DATE) + CAST(4 + i % 9 AS INTEGER) AS onset_date,
              $day0 + to_days(CAST(6 + i % 9 AS INTEGER)) + to_hours(CAST(i % 24 + 6 AS BIGINT)) AS reported_at,
              true AS is_current, false AS is_deleted
       FROM range(7, $n + 1, 500) AS t(i)""",
    """INSERT INTO person_records SELECT 'lab_results', 1, i, i, 'exact_id', 1.0 FROM range(7, $n + 1, 500) AS t(i)""",
    """INSERT INTO person_records SELECT 'case_reports', 1, i, i, 'exact_id', 1.0 FROM range(7, $n + 1, 500) AS t(i)""",
    # Trips: one resident in 20 (cases among them) travels once; travellers k = i // 20 fill trips of 60
    # seats (16 train cars, 20 aircraft rows); trip slot s = k // 60 departs on day s % 14.
    """INSERT INTO staged_transport BY NAME
       SELECT 1 AS load_id, CAST($day0 AS DATE) AS delivery_date, 'trips.csv' AS source_file, i AS source_row_number,
              ['火车', '飞机', '客车'][CAST(1 + (i // 20 // 60) % 3 AS BIGINT)] AS mode,
              'T' || (i // 20 // 60 // 14) AS trip_number,
              CAST($day0 AS DATE) + CAST((i // 20 // 60) % 14 AS INTEGER) AS departure_date,
              lpad(CAST((i // 20) % 4 AS VARCHAR), 2, '0') AS car,
              CAST(1 + ((i // 20) % 60) // 3 AS VARCHAR) || ['A', 'B', 'C'][CAST(1 + (i // 20) % 3 AS BIGINT)] AS seat,
              $day0 + to_days(CAST((i // 20 // 60) % 14 AS INTEGER)) + INTERVAL 8 HOUR AS departed_at,
              $day0 + to_days(CAST((i // 20 // 60) % 14 AS INTEGER)) + INTERVAL 12 HOUR AS arrived_at,
              true AS is_current, false AS is_deleted
       FROM range(7, $n + 1, 20) AS t(i)""",
    """INSERT INTO person_records SELECT 'transport', 1, i, i, 'exact_id', 1.0 FROM range(7, $n + 1, 20) AS t(i)""",
    # Interviews: ten listed contacts per case.
    """INSERT INTO staged_investigations BY NAME
       SELECT 1 AS load_id, CAST($day0 AS DATE) AS delivery_date, 'inv.csv' AS source_file,
              i * 10 + k AS source_row_number, 'I' || i AS investigation_id, 'K' || i AS case_card_id,
              ['家庭', '工作场所', '聚餐', '其他'][1 + k % 4] AS setting, '否' AS was_protected,
              true AS is_current, false AS is_deleted
       FROM range(7, $n + 1, 500) AS t(i), range(0, 10) AS c(k)""",
    """INSERT INTO person_records SELECT 'investigations', 1, i * 10 + k, (i + 1000 * (k + 1)) % $n + 1,
       'exact_id', 1.0 FROM range(7, $n + 1, 500) AS t(i), range(0, 10) AS c(k)""",
)


def generate(db_path: Path, residents: int, days: int) -> None:
    from trace24.schemas.contracts import load_schemas
    from trace24.transforms import database

    con = database.connect(db_path, load_schemas())
    con.execute("""CREATE TABLE person_records (feed VARCHAR, load_id INTEGER, source_row_number BIGINT,
                   person_id BIGINT, link_method VARCHAR, match_probability DOUBLE)""")
    con.execute("""CREATE TABLE persons (person_id BIGINT, id_number VARCHAR, household_id VARCHAR,
                   community_code VARCHAR, compound VARCHAR, building VARCHAR, unit VARCHAR, room VARCHAR,
                   merged_into_person_id BIGINT)""")
    params = {"n": residents, "days": days, "day0": DAY0, "venues": max(residents // 50, 100)}
    for sql in GENERATE:
        con.execute(sql, database.bound_parameters(sql, params))
    con.execute("CHECKPOINT")
    con.close()


def measure(db_path: Path) -> None:
    from trace24.schemas.contracts import load_schemas
    from trace24.schemas.rules import DEFAULT_PROFILE, load_facilities, load_rule_profile
    from trace24.transforms import database
    from trace24.transforms.contacts import contact_graph, exposures

    con = database.connect(db_path, load_schemas())
    rules = load_rule_profile(DEFAULT_PROFILE)
    params = exposures.rule_parameters(rules, load_facilities(), DAY0 + dt.timedelta(days=15))
    scans = con.execute("SELECT count(*) FROM staged_place_scans").fetchall()[0][0]
    steps = []
    started = time.perf_counter()
    con.execute("SELECT count(*), max(scanned_at), sum(hash(venue_code)) FROM staged_place_scans").fetchall()
    floor = time.perf_counter() - started
    for name, step in (("cases and windows", lambda: exposures.build_cases(con, params)),
                       ("exposures and contacts", lambda: exposures.build_exposures(con, rules, params)),
                       ("contact graph tables", lambda: contact_graph.build_graph_tables(con))):
        started = time.perf_counter()
        step()
        steps.append((name, time.perf_counter() - started))
    counts = con.execute("SELECT (SELECT count(*) FROM core_cases), (SELECT count(*) FROM core_exposures), "
                         "(SELECT count(*) FROM core_contacts)").fetchall()[0]
    by_rule = dict(con.execute("SELECT rule_id, count(*) FROM core_exposures GROUP BY ALL ORDER BY 1").fetchall())
    print(json.dumps({"by_rule": by_rule, "scans": scans, "floor": floor, "steps": steps, "cases": counts[0],
                      "exposures": counts[1], "contacts": counts[2],
                      "peak_gib": peak_memory_bytes() / 2**30}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--residents", type=int, nargs="*", default=[1_000_000])
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.measure)
        return
    import os

    for residents in args.residents:
        cache = ROOT / "benchmarks" / ".cache" / f"exposures-{residents}-{args.days}"
        store = cache / "store.duckdb"
        if not store.exists():
            shutil.rmtree(cache, ignore_errors=True)
            cache.mkdir(parents=True)
            started = time.perf_counter()
            generate(cache / "partial.duckdb", residents, args.days)
            (cache / "partial.duckdb").rename(store)
            print(f"generated {residents:,} residents x {args.days} days in {time.perf_counter() - started:.1f} s")
        work = cache / "run.duckdb"
        shutil.copyfile(store, work)
        out = subprocess.run([sys.executable, __file__, "--measure", str(work)], check=True, capture_output=True,
                             text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
        result = json.loads(out.strip().splitlines()[-1])
        print(f"\nexposure benchmark: {residents:,} residents, {args.days} days, {os.cpu_count()} cores")
        print(f"place scans {result['scans']:,}; cases {result['cases']:,}; exposure rows {result['exposures']:,}; "
              f"contacts {result['contacts']:,}")
        print("exposure rows by rule: " + ", ".join(f"{rule} {n:,}" for rule, n in result["by_rule"].items()))
        print(f"{'step':<28}{'seconds':>9}")
        print(f"{'plain scan of place scans':<28}{result['floor']:>9.2f}   (the floor)")
        for name, seconds in result["steps"]:
            print(f"{name:<28}{seconds:>9.2f}")
        print(f"{'total':<28}{sum(s for _, s in result['steps']):>9.2f}")
        print(f"peak memory of the measuring process: {result['peak_gib']:.2f} GiB")
        work.unlink()


if __name__ == "__main__":
    main()
