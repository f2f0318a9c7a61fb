"""What the offices' answers cost a day's run: the same day's deliveries run twice on one store,
without and with every office's returned lists (回执) and health checks (健康监测) for the day before.

    .venv/bin/python benchmarks/returns.py --residents 1000000 --days 14

The city is the city benchmark's (benchmarks/city.py, the same cache). The first run loads every
delivery day but the last; then the sample offices (samplecity/offices.py) answer every row of its
workbooks (the seeded faults included: some answers late, typed over, moved into a CSV) and report
a health check for every listed contact, into the community/ folder of the lists' day. The store,
snapshot and lists are then copied twice; on one copy the last day is delivered alone, on the
other the last day and the returns. The difference is what a day's returns add; the follow-up
steps' own seconds (answers and checks before the categories, the escalations after) are printed
from inside the lists stage. Issue 23's target: at most 10% of a day's run. Figures, not
assertions; on two cores the runs' own noise is a few seconds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.city import run_child  # noqa: E402 (needs the project on the path)
from benchmarks.common import generate  # noqa: E402 (needs the project on the path)
from trace24.transforms.database import memory_limit  # noqa: E402 (needs the project on the path)


def link_day(landing: Path, generated_day: Path) -> Path:
    """A delivery day as a real folder whose agency folders link to the generated ones, so that a
    community/ folder can be added without writing into the generator's cache."""
    day = landing / generated_day.name
    if day.is_symlink():
        day.unlink()
    day.mkdir(exist_ok=True)
    for agency in sorted(generated_day.iterdir()):
        if not (day / agency.name).exists():
            (day / agency.name).symlink_to(agency, target_is_directory=agency.is_dir())
    return day


def answer(lists: Path, landing: Path, truth_dir: Path) -> dict:
    """The sample offices answer one run's lists and report the day's checks: truth rows and time."""
    from samplecity.offices import answer_lists, check_health

    started = time.perf_counter()
    answers = answer_lists(lists, landing, truth_dir / "answers.csv")
    checks = check_health(lists, landing, truth_dir / "health_checks.csv")
    files = sum(1 for _ in (landing / lists.name / "community").iterdir())
    return {"answers": answers, "checks": checks, "files": files, "seconds": time.perf_counter() - started}


def total(record: dict, stages: tuple[str, ...] | None = None) -> float:
    return sum(s["seconds"] for s in record["stages"] if stages is None or s["stage"] in stages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--residents", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--residents-per-venue", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=1, help="pairs of runs (without, with) on fresh copies")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--reuse", action="store_true",
                        help="keep the last first run and answers (if the store's tables are unchanged)")
    args = parser.parse_args()
    workdir = args.workdir or (ROOT / "benchmarks" / ".cache"
                               / f"city-{args.residents}-{args.days}-v{args.residents_per_venue}")
    generated = generate(workdir, args.residents, args.days, args.seed, args.residents_per_venue, truth=False)
    days = sorted(p for p in generated.iterdir() if p.is_dir() and p.name[:4].isdigit())
    bench = workdir / "returns"
    base, held = bench / "base", bench / "offices"
    if args.reuse and (held / days[-1].name / "community").is_dir():
        lists = base / "lists" / days[-1].name
        print(f"reusing the first run and the offices' answers in {bench}", flush=True)
    else:
        shutil.rmtree(bench, ignore_errors=True)
        (base / "landing").mkdir(parents=True)
        for day in days[:-1]:
            (base / "landing" / day.name).symlink_to(day, target_is_directory=True)
        first = run_child(base / "landing", base / "t.duckdb", base / "lists")
        print(f"first run ({len(days) - 1} delivery days): {total(first):.1f} s", flush=True)

        # The offices answer into the folder of the lists' day (the day after the last delivered: the
        # last generated day), held apart so that the generator's cache is never written into.
        lists = Path(first["lists_dir"])
        offices = answer(lists, held, bench / "truth")
        print(f"the offices answered {lists.name}'s lists in {offices['seconds']:.1f} s: {offices['answers']:,} "
              f"answer rows, {offices['checks']:,} check rows (truth), {offices['files']:,} files", flush=True)

    pairs = []
    for turn in range(args.repeat):
        pair = {}
        # The pair's second run is faster (the first pays for the copies still being written back),
        # so the order alternates from pair to pair, and the copy is on disk before a run starts.
        for variant in ("without", "with") if turn % 2 == 0 else ("with", "without"):
            store = bench / f"{variant}-{turn}"
            shutil.copytree(base, store, symlinks=True)
            os.sync()
            (store / "landing" / days[-1].name).symlink_to(days[-1], target_is_directory=True)
            if variant == "with":
                day = store / "landing" / lists.name
                if day.is_symlink():
                    day = link_day(store / "landing", days[-1])
                shutil.copytree(held / lists.name / "community", day / "community")
            pair[variant] = run_child(store / "landing", store / "t.duckdb", store / "lists")
            shutil.rmtree(store)
        pairs.append(pair)

    print(f"\nreturns benchmark: {args.residents:,} residents, {args.days} delivery days, {os.cpu_count()} cores, "
          f"DuckDB memory_limit {memory_limit()}")
    sizes = pairs[0]["with"]["sizes"]
    print(f"persons {sizes['persons']:,}; cases {sizes['cases']:,}; list rows {sizes['list_rows']:,}")
    stage_names = [s["stage"] for s in pairs[0]["without"]["stages"]]
    to_lists = ("ingest", "identity", "exposures", "lists")
    for turn, pair in enumerate(pairs):
        without, with_returns = pair["without"], pair["with"]
        order = "without first" if turn % 2 == 0 else "with first"
        print(f"\npair {turn + 1} ({order}): day {len(days)}'s deliveries without / with the returns "
              f"of day {len(days) - 1}")
        print(f"{'stage':<12}{'without':>10}{'with':>10}{'added':>10}")
        for name in stage_names:
            a = next(s["seconds"] for s in without["stages"] if s["stage"] == name)
            b = next(s["seconds"] for s in with_returns["stages"] if s["stage"] == name)
            print(f"{name:<12}{a:>10.1f}{b:>10.1f}{b - a:>+10.1f}")
        run_a, run_b = total(without), total(with_returns)
        lists_a, lists_b = total(without, to_lists), total(with_returns, to_lists)
        print(f"{'run':<12}{run_a:>10.1f}{run_b:>10.1f}{run_b - run_a:>+10.1f}   "
              f"added {(run_b - run_a) / run_a:+.1%} of the day's run (target at most 10%), "
              f"{(lists_b - lists_a) / lists_a:+.1%} of its way to the lists")
        peak_a = max(s["peak_memory_gib"] for s in without["stages"])
        peak_b = max(s["peak_memory_gib"] for s in with_returns["stages"])
        print(f"peak memory {peak_a:.2f} / {peak_b:.2f} GiB")
        followup = with_returns["followup"]
        steps = ", ".join(f"{k} {v:.2f} s" for k, v in followup["seconds"].items())
        spent = sum(followup["seconds"].values())
        base_steps = sum(without["followup"]["seconds"].values())
        print(f"follow-up steps in the lists stage: {steps} = {spent:.2f} s ({spent / run_b:.1%} of the run; "
              f"{base_steps:.2f} s without returns)")
        a = followup["answers"]
        h = followup["health_checks"]
        print(f"  answers: {a.get('delivered', 0):,} delivered, {a.get('accepted', 0):,} accepted, "
              f"{a.get('set_aside', 0):,} set aside, {a.get('corrections', 0):,} corrections, "
              f"{a.get('escalated', 0):,} escalated; checks: {h.get('delivered', 0):,} delivered, "
              f"{h.get('accepted', 0):,} accepted, {a.get('releases_refused', 0):,} early releases refused")
    summary(pairs)


def summary(pairs: list[dict]) -> None:
    """Medians over the pairs: a run's own noise on two cores is seconds, one pair decides nothing."""
    import statistics

    def added(stages=None, relative=True):
        values = []
        for pair in pairs:
            a, b = total(pair["without"], stages), total(pair["with"], stages)
            values.append((b - a) / total(pair["without"]) if relative else b - a)
        return statistics.median(values)

    def followup(pair):
        return sum(pair["with"]["followup"]["seconds"].values()) - sum(pair["without"]["followup"]["seconds"].values())

    own = statistics.median(
        total(p["with"], ("ingest", "validation")) - total(p["without"], ("ingest", "validation")) + followup(p)
        for p in pairs)
    base = statistics.median(total(p["without"]) for p in pairs)
    print(f"\nmedian of {len(pairs)} pairs: day's run without returns {base:.1f} s; the returns added "
          f"{added(relative=False):+.1f} s = {added():+.1%} of the run (target at most 10%); "
          f"their own work (ingest, validation, follow-up steps) {own:.1f} s = {own / base:.1%}")


if __name__ == "__main__":
    main()
