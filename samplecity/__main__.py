"""Command line: python -m samplecity --out data/sample --residents 3000 --days 5 --seed 2020"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from .city import generate_city


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m samplecity", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("data/sample"), help="writes OUT/landing and OUT/truth")
    parser.add_argument("--residents", type=int, default=3000)
    parser.add_argument("--days", type=int, default=5, help="delivery days from 2020-02-10")
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--scans-per-resident-per-day", type=float, default=2.0)
    parser.add_argument("--no-outbreak", action="store_true", help="background only")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    summary = generate_city(args.out, residents=args.residents, days=args.days, seed=args.seed,
                            scans_per_resident_per_day=args.scans_per_resident_per_day,
                            outbreak=not args.no_outbreak)
    brief = {k: summary[k] for k in ("rows_by_feed", "cases", "exposures", "faults")}
    print(json.dumps(brief, ensure_ascii=False, indent=1))
    print(f"done in {time.perf_counter() - start:.1f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
