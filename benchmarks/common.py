"""What the benchmarks share: a generated city, cached while its parameters do not change."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path


def generate(workdir: Path, residents: int, days: int, seed: int, residents_per_venue: int | None = None,
             truth: bool = True) -> Path:
    """The landing folder of a city generated into ``workdir`` (again only when the parameters change);
    ``residents_per_venue`` defaults to the sample city's. Without ``truth``, no truth is written
    (a cache with truth serves too: the landing files are the same)."""
    from samplecity import generate_city
    from samplecity.geo import SAMPLE_RESIDENTS_PER_VENUE

    stamp = workdir / "city.json"
    wanted = {"residents": residents, "days": days, "seed": seed}
    residents_per_venue = residents_per_venue or SAMPLE_RESIDENTS_PER_VENUE
    if residents_per_venue != SAMPLE_RESIDENTS_PER_VENUE:  # caches made before the parameter stay valid
        wanted["residents_per_venue"] = residents_per_venue
    if stamp.exists() and json.loads(stamp.read_text()) in (wanted, {**wanted, "truth": truth}):
        return workdir / "landing"
    if not truth:
        wanted["truth"] = False
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    started = time.perf_counter()
    generate_city(workdir, residents=residents, days=days, seed=seed, residents_per_venue=residents_per_venue,
                  truth=truth)
    print(f"generated {residents:,} residents x {days} days in {time.perf_counter() - started:.1f} s", flush=True)
    stamp.write_text(json.dumps(wanted))
    return workdir / "landing"
