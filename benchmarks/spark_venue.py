"""One stage on Spark: the venue co-location rule run by local Spark on a store's data, checked
against what DuckDB found, with both timings. A proof for docs/scale-out.md, not part of the flow.

    make bench-spark                                   # on the demo's store, out/trace24.duckdb
    .venv/bin/python benchmarks/spark_venue.py --db benchmarks/.cache/city-1000000-14/run/t.duckdb

Needs the optional extra ``spark`` (pyspark; a Java runtime on the machine). The store's inputs of
the rule (the cases' windows, the place scans, the person of each scan) are exported to Parquet,
as a city partitioned by day would keep them; Spark reads them, runs the rule in Spark SQL with the
profile's values as bound parameters, and its exposures must equal the store's ``core_exposures``
rows of rule ``venue_co_location`` (same pairs, settings and first and last times).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from trace24.schemas.rules import load_rule_profile  # noqa: E402 (needs the project on the path)

# The rule's inputs, as a distributed store would hold them (Parquet, the scans partitioned by day).
EXPORTS = {
    "sources": "SELECT person_id, window_start_at, window_end_at FROM core_cases WHERE window_start_at < window_end_at",
    "scans": "SELECT load_id, source_row_number, venue_code, venue_type, scanned_at, is_current, "
             "CAST(scanned_at AS DATE) AS scan_day FROM staged_place_scans",
    "person_scans": "SELECT load_id, source_row_number, person_id FROM person_records WHERE feed = 'place_scans'",
}

# trace24/transforms/contacts/exposures.py VENUE_SQL and _exposure_select, in Spark SQL: the same joins (the case's
# scans in its window, then every scan at the venue within the band, then the person of each).
SPARK_VENUE_SQL = """
WITH source_scans AS (
    SELECT s.person_id, v.venue_code, v.venue_type, v.scanned_at
    FROM sources AS s
    JOIN person_scans AS pr ON pr.person_id = s.person_id
    JOIN scans AS v ON v.load_id = pr.load_id AND v.source_row_number = pr.source_row_number
    WHERE v.scanned_at >= s.window_start_at AND v.scanned_at < s.window_end_at AND v.is_current
),
nearby AS (
    SELECT cs.person_id AS source_person_id, cs.venue_type, cs.scanned_at AS source_scanned_at,
           o.scanned_at, o.load_id, o.source_row_number
    FROM source_scans AS cs
    JOIN scans AS o
      ON o.venue_code = cs.venue_code
     AND o.scanned_at BETWEEN cs.scanned_at - make_dt_interval(0, 0, :minutes, 0)
                          AND cs.scanned_at + make_dt_interval(0, 0, :minutes, 0)
    WHERE o.is_current
),
found AS (
    SELECT pr.person_id AS exposed_person_id, n.source_person_id,
           CASE WHEN c.venue_type IS NOT NULL THEN 'venue_close' ELSE 'venue_general' END AS setting,
           least(n.scanned_at, n.source_scanned_at) AS first_exposure_at,
           greatest(n.scanned_at, n.source_scanned_at) AS last_exposure_at
    FROM nearby AS n
    JOIN person_scans AS pr ON pr.load_id = n.load_id AND pr.source_row_number = n.source_row_number
    LEFT JOIN close_venue_types AS c ON c.venue_type = n.venue_type
)
SELECT exposed_person_id, source_person_id, setting,
       min(first_exposure_at) AS first_exposure_at, max(last_exposure_at) AS last_exposure_at
FROM found
WHERE exposed_person_id <> source_person_id AND first_exposure_at < :as_of
GROUP BY exposed_person_id, source_person_id, setting
"""

STORE_SQL = """
SELECT exposed_person_id, source_person_id, setting, first_exposure_at, last_exposure_at
FROM core_exposures WHERE rule_id = 'venue_co_location'
"""


def export(db: Path, folder: Path) -> tuple[str, str, float]:
    """The rule's inputs as Parquet; the as-of and profile of the store's last exposure run."""
    started = time.perf_counter()
    with duckdb.connect(str(db), read_only=True) as con:
        for name, sql in EXPORTS.items():
            partitioned = name == "scans"
            options = "FORMAT parquet, PARTITION_BY (scan_day)" if partitioned else "FORMAT parquet"
            target = folder / (name if partitioned else f"{name}.parquet")
            con.execute(f"COPY ({sql}) TO $path ({options})", {"path": str(target)})
        as_of, profile = con.execute(
            "SELECT as_of, profile FROM exposure_runs ORDER BY run_number DESC LIMIT 1").fetchall()[0]
    return as_of, profile, time.perf_counter() - started


def store_exposures(db: Path) -> tuple[set, float]:
    started = time.perf_counter()
    with duckdb.connect(str(db), read_only=True) as con:
        rows = {tuple(r) for r in con.execute(STORE_SQL).fetchall()}
    return rows, time.perf_counter() - started


def spark_exposures(folder: Path, as_of, minutes: int, close_types: list[str]) -> tuple[set, float, float]:
    from pyspark.sql import SparkSession

    started = time.perf_counter()
    spark = (SparkSession.builder.master("local[*]").appName("trace24-venue")
             .config("spark.sql.session.timeZone", "UTC")
             .config("spark.sql.shuffle.partitions", "8")
             .config("spark.ui.enabled", "false")
             .config("spark.driver.memory", "6g")  # local mode: the driver is the executor
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    start_up = time.perf_counter() - started
    try:
        spark.read.parquet(str(folder / "sources.parquet")).createOrReplaceTempView("sources")
        spark.read.parquet(str(folder / "person_scans.parquet")).createOrReplaceTempView("person_scans")
        spark.read.parquet(str(folder / "scans")).createOrReplaceTempView("scans")
        spark.createDataFrame([(t,) for t in close_types], "venue_type string").createOrReplaceTempView(
            "close_venue_types")
        started = time.perf_counter()
        result = spark.sql(SPARK_VENUE_SQL, args={"minutes": minutes, "as_of": as_of}).collect()
        seconds = time.perf_counter() - started
        rows = {(r.exposed_person_id, r.source_person_id, r.setting, _naive(r.first_exposure_at),
                 _naive(r.last_exposure_at)) for r in result}
    finally:
        spark.stop()
    return rows, seconds, start_up


def _naive(value):
    return value.replace(tzinfo=None) if getattr(value, "tzinfo", None) else value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=ROOT / "out" / "trace24.duckdb")
    args = parser.parse_args()
    if not args.db.exists():
        sys.exit(f"{args.db}: no store; run `make demo` (or the city benchmark) first")
    folder = Path(tempfile.mkdtemp(prefix="trace24-spark-"))
    try:
        as_of, profile_name, export_seconds = export(args.db, folder)
        rules = load_rule_profile(profile_name)
        expected, store_seconds = store_exposures(args.db)
        found, spark_seconds, start_up = spark_exposures(folder, as_of, rules.co_location_minutes,
                                                         list(rules.close_venue_types))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"venue co-location rule, profile {profile_name}, as of {as_of}")
    print(f"export of the rule's inputs to Parquet (DuckDB): {export_seconds:.1f} s")
    print(f"Spark (local, start-up {start_up:.1f} s): {len(found):,} exposures in {spark_seconds:.1f} s")
    print(f"the store (DuckDB, found by the daily flow): {len(expected):,} exposures, read in {store_seconds:.1f} s")
    missing, extra = expected - found, found - expected
    print(f"same exposures: {not missing and not extra} (missing in Spark {len(missing)}, extra {len(extra)})")
    if missing or extra:
        sys.exit(1)


if __name__ == "__main__":
    main()
