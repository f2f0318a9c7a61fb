"""Ingestion benchmark: a generated city, loaded feed by feed; prints rows per second and peak memory.

    .venv/bin/python benchmarks/ingest.py                     # a city of 1,000,000 residents, 1 day
    .venv/bin/python benchmarks/ingest.py --residents 100000 --days 2

The city is generated once into --workdir (reused while its parameters do not change). Each
measurement runs in a fresh process so that its peak memory (VmHWM, which includes DuckDB's
own allocations) belongs to it alone. Figures, not assertions: nothing here fails on a number.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import generate  # noqa: E402 (needs the project on the path)
from trace24.transforms.publish.run_report import peak_memory_bytes  # noqa: E402 (needs the project on the path)


def measure(landing: str, db: str) -> None:
    """Child process: ingest every file, time each, print one JSON line per file and a summary."""
    from trace24.schemas.contracts import load_schemas
    from trace24.transforms import database
    from trace24.transforms.ingest import landing as landing_mod
    from trace24.transforms.ingest import load

    schemas = load_schemas()
    grouped: dict[str, list[str]] = {}
    for contract in schemas.feeds.values():
        grouped.setdefault(contract.agency, []).append(contract.feed)
    files, _ = landing_mod.discover(Path(landing), grouped)
    con = database.connect(db, schemas)
    run_id = load.start_run(con, Path(landing))
    for landed in files:
        started = time.perf_counter()
        outcome = load.ingest_file(con, schemas, landed, run_id, load.archive_dir_for(Path(db)))
        seconds = time.perf_counter() - started
        print(json.dumps({"file": outcome.source_file, "feed": outcome.feed, "rows": outcome.rows_read,
                          "seconds": seconds, "bytes": landed.path.stat().st_size}))
    # The floor: one plain scan of every place-scan file, all columns materialised.
    scans = [str(f.path) for f in files if f.feed == "place_scans" and f.format == "parquet"]
    if scans:
        started = time.perf_counter()
        con.execute("CREATE TEMP TABLE floor AS SELECT * FROM read_parquet($files)", {"files": scans})
        print(json.dumps({"floor_seconds": time.perf_counter() - started}))
        # The store's own floor: the delivered cells copied unchanged into a table of the database
        # file (compressed on write), without a single check or normalisation.
        started = time.perf_counter()
        con.execute("CREATE TABLE write_floor AS SELECT * FROM read_parquet($files)", {"files": scans})
        print(json.dumps({"write_floor_seconds": time.perf_counter() - started}))
        con.execute("DROP TABLE write_floor")
    con.close()
    print(json.dumps({"peak_rss_bytes": peak_memory_bytes()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--residents", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / ".cache" / "ingest")
    parser.add_argument("--child", nargs=2, metavar=("LANDING", "DB"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        measure(*args.child)
        return
    landing = generate(args.workdir, args.residents, args.days, args.seed)
    db = args.workdir / "bench.duckdb"
    for leftover in (db, db.with_suffix(".duckdb.wal")):
        leftover.unlink(missing_ok=True)
    shutil.rmtree(args.workdir / "bench_raw", ignore_errors=True)
    child = subprocess.run([sys.executable, __file__, "--child", str(landing), str(db)], check=True,
                           capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    records = [json.loads(line) for line in child.stdout.splitlines() if line.startswith("{")]
    per_feed: dict[str, list[float]] = {}
    for record in records:
        if "feed" in record:
            rows, seconds, size = per_feed.get(record["feed"], [0, 0.0, 0])
            per_feed[record["feed"]] = [rows + record["rows"], seconds + record["seconds"], size + record["bytes"]]
    peak = next(r["peak_rss_bytes"] for r in records if "peak_rss_bytes" in r)
    floor = next((r["floor_seconds"] for r in records if "floor_seconds" in r), None)
    write_floor = next((r["write_floor_seconds"] for r in records if "write_floor_seconds" in r), None)
    print(f"\ningest benchmark: {args.residents:,} residents, {args.days} day(s), {os.cpu_count()} cores")
    print(f"{'feed':<16}{'rows':>12}{'MB':>9}{'seconds':>10}{'rows/s':>14}")
    total_rows = total_seconds = 0.0
    for feed, (rows, seconds, size) in sorted(per_feed.items(), key=lambda kv: -kv[1][0]):
        total_rows += rows
        total_seconds += seconds
        print(f"{feed:<16}{rows:>12,}{size / 1e6:>9.1f}{seconds:>10.2f}{rows / seconds if seconds else 0:>14,.0f}")
    print(f"{'all feeds':<16}{int(total_rows):>12,}{'':>9}{total_seconds:>10.2f}{total_rows / total_seconds:>14,.0f}")
    if floor is not None:
        scans = per_feed["place_scans"][0]
        print(f"floor: one plain scan of the place-scan Parquet files takes {floor:.2f} s "
              f"({scans / floor:,.0f} rows/s)")
        print(f"write floor: the same cells copied unchanged into a table of the store take {write_floor:.2f} s "
              f"({scans / write_floor:,.0f} rows/s): the cost of storing them, before any check")
    print(f"peak memory of the ingesting process: {peak / 2**30:.2f} GiB "
          "(DuckDB memory_limit TRACE24_DUCKDB_MEMORY_LIMIT, default 3GB; text files stream in 100k-row batches)")
    print("what bounds place scans: storing them (the write floor above; ID and phone strings are most of it), "
          "the exact-duplicate check over every row, per-row ID and phone normalisation, and the rows written "
          "twice (the all-rows staging table, then the staged table).")


if __name__ == "__main__":
    main()
