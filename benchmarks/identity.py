"""Identity benchmark: persons, links and communities for a generated city; prints time and peak memory.

    .venv/bin/python benchmarks/identity.py                          # 100,000 and 1,000,000 residents
    .venv/bin/python benchmarks/identity.py --residents 100000

Each city is generated and ingested once into --workdir (reused while its parameters do not change);
the identity steps then run in a fresh process on a copy of the ingested store, so the peak memory
(VmHWM, DuckDB's allocations included) is theirs alone. Then the links and communities are
measured against the generated city's truth, as ``trace24 evaluate`` does for the sample: link
quality must hold as the register grows. Figures, not assertions.
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

import duckdb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from trace24.evaluation import evaluate_identity, format_report  # noqa: E402 (needs the project on the path)
from trace24.transforms.publish.run_report import peak_memory_bytes  # noqa: E402


def prepare(workdir: Path, residents: int, days: int, seed: int) -> Path:
    """Generate and ingest the city once; returns the ingested store."""
    stamp, store = workdir / "city.json", workdir / "ingested.duckdb"
    wanted = {"residents": residents, "days": days, "seed": seed}
    if stamp.exists() and store.exists() and json.loads(stamp.read_text()) == wanted:
        return store
    from samplecity import generate_city
    from tests.conftest import ingest_landing

    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    started = time.perf_counter()
    generate_city(workdir, residents=residents, days=days, seed=seed)
    ingest_landing(workdir / "landing", store)
    print(f"generated and ingested {residents:,} residents x {days} days in {time.perf_counter() - started:.0f} s")
    stamp.write_text(json.dumps(wanted))
    return store


def measure(db: str) -> None:
    """Child process: the identity flow's steps, each timed, one JSON line each."""
    from trace24.schemas.contracts import load_schemas
    from trace24.transforms import database
    from trace24.transforms.database import scalar
    from trace24.transforms.persons import community, identity, linkage

    schemas = load_schemas()
    profile = linkage.load_profile()
    con = database.connect(db, schemas)
    identity.ensure_tables(con)
    # A first run: every person's profile, linkage, community and row (what the flow does).
    state = {}

    def plan_linkage() -> int:
        state["plan"] = linkage.plan_linkage(con, profile, [])
        return scalar(con, "SELECT count(*) FROM changed_profiles")

    def keep_state() -> int:
        linkage.store_profiles(con, state["plan"])
        identity.finish_refresh(con, identity.refresh_scope(con, linkage_rescored=True))
        return scalar(con, "SELECT count(*) FROM linkage_profiles")

    steps = [
        ("identity records", lambda: identity.add_identity_records(con, schemas)),
        ("exact links", lambda: identity.link_exact(con)),
        ("linkage profiles", plan_linkage),
        ("Splink: train and score", lambda: linkage.score_pairs(con, profile)),
        ("resolve and review", lambda: linkage.resolve(con, profile, []).records),
        ("communities", lambda: sum(community.assign_communities(con, profile.auto_link).values())),
        ("persons table", lambda: identity.build_persons(con)),
        ("keep profiles and state", keep_state),
    ]
    for name, step in steps:
        started = time.perf_counter()
        rows = step()
        print(json.dumps({"step": name, "seconds": time.perf_counter() - started, "rows": int(rows)}))
    counts = con.execute("""SELECT (SELECT count(*) FROM identity_records),
                                   (SELECT count(*) FROM identity_records WHERE person_key IS NULL),
                                   (SELECT count(*) FROM link_input),
                                   (SELECT count(*) FROM link_scores)""").fetchall()[0]
    print(json.dumps({"records": counts[0], "unidentified": counts[1], "link_input": counts[2], "pairs": counts[3]}))
    con.close()
    print(json.dumps({"peak_rss_bytes": peak_memory_bytes()}))


def run(residents: int, days: int, seed: int, workdir: Path) -> dict:
    store = prepare(workdir, residents, days, seed)
    db = workdir / "identity.duckdb"
    for leftover in (db, db.with_suffix(".duckdb.wal")):
        leftover.unlink(missing_ok=True)
    shutil.copy(store, db)
    child = subprocess.run([sys.executable, __file__, "--child", str(db)], check=True, capture_output=True, text=True,
                           env={**os.environ, "PYTHONWARNINGS": "ignore"})
    records = [json.loads(line) for line in child.stdout.splitlines() if line.startswith("{")]
    steps = [r for r in records if "step" in r]
    sizes = next(r for r in records if "records" in r)
    peak = next(r["peak_rss_bytes"] for r in records if "peak_rss_bytes" in r)
    total = sum(s["seconds"] for s in steps)
    print(f"\nidentity benchmark: {residents:,} residents, {days} day(s), {os.cpu_count()} cores")
    print(f"identity records {sizes['records']:,}; without a valid ID {sizes['unidentified']:,}; "
          f"Splink input rows {sizes['link_input']:,}; scored pairs kept {sizes['pairs']:,}")
    print(f"{'step':<28}{'seconds':>10}{'rows':>14}")
    for s in steps:
        print(f"{s['step']:<28}{s['seconds']:>10.2f}{s['rows']:>14,}")
    print(f"{'total':<28}{total:>10.2f}")
    print(f"peak memory of the linking process: {peak / 2**30:.2f} GiB")
    with duckdb.connect(str(db), read_only=True) as con:
        print(format_report(evaluate_identity(con, workdir / "truth")))
    return {"residents": residents, "seconds": total, "peak": peak, "records": sizes["records"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--residents", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / ".cache")
    parser.add_argument("--child", metavar="DB", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        measure(args.child)
        return
    results = [run(n, args.days, args.seed, args.workdir / f"identity-{n}") for n in args.residents]
    if len(results) > 1:
        first, last = results[0], results[-1]
        print(f"\ngrowth {first['residents']:,} -> {last['residents']:,} residents "
              f"(x{last['residents'] / first['residents']:.0f}): time x{last['seconds'] / first['seconds']:.1f}, "
              f"records x{last['records'] / first['records']:.1f}, peak memory x{last['peak'] / first['peak']:.1f}")


if __name__ == "__main__":
    main()
