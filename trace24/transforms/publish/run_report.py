"""Out layer: a run's summary for the people who schedule it: counts, never a person.

What belongs here: the SQL that sums up one daily run (rows read, loaded and quarantined per feed
by this run's ingest; people per category and district; the 24-hour compliance per district; beds,
transfers and shortfall per district and kind; risk areas per district and level) and
the markdown that shows it. What does not: creating the Prefect artifacts (the flow does that) or
the logic behind the numbers (their stages). Districts are the finest place in it, so the summary
can go anywhere the run's logs go.
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

LOADS_SQL = """
WITH audit AS (
    SELECT * FROM load_audit WHERE run_id = $ingest_run_id
)
SELECT agency, feed, count(*) AS files, sum(rows_read) AS rows_read, sum(rows_loaded) AS rows_loaded,
       sum(rows_quarantined) AS rows_quarantined, sum(rows_superseded) AS rows_superseded,
       count(*) FILTER (WHERE file_status = 'unreadable') AS files_unreadable,
       count(*) FILTER (WHERE validation_passed = false) AS files_failing_validation
FROM audit
GROUP BY agency, feed
ORDER BY agency, feed
"""

CATEGORIES_SQL = """
WITH categories AS (
    SELECT * FROM four_categories
),
people AS (
    SELECT person_id, district FROM persons
),
by_district AS (
    SELECT coalesce(p.district, $unknown_district) AS district, c.category
    FROM categories AS c
    LEFT JOIN people AS p USING (person_id)
)
SELECT district,
       count(*) FILTER (WHERE category = 'confirmed') AS confirmed,
       count(*) FILTER (WHERE category = 'suspected') AS suspected,
       count(*) FILTER (WHERE category = 'fever') AS fever,
       count(*) FILTER (WHERE category = 'close_contact') AS close_contact,
       count(*) AS people
FROM by_district
GROUP BY district
ORDER BY district
"""

COMPLIANCE_SQL = """
WITH compliance AS (
    SELECT * FROM tracing_compliance
)
SELECT district, sum(cases) AS cases, sum(met) AS met, sum(missed) AS missed, sum(pending) AS pending,
       round(sum(met) / nullif(sum(met) + sum(missed), 0), 4) AS compliance,
       sum(controlled_met) AS controlled_met,
       round(sum(controlled_met) / nullif(sum(controlled_met) + sum(controlled_missed), 0), 4)
           AS controlled_compliance
FROM compliance
GROUP BY district
ORDER BY district
"""

BEDS_SQL = """
WITH occupancy AS (
    SELECT * FROM bed_occupancy
)
SELECT district, bed_kind, count(DISTINCT facility_code) AS facilities, sum(capacity) AS capacity,
       sum(occupied) AS occupied, sum(planned) AS planned, sum(free) AS free,
       count(DISTINCT facility_code) FILTER (WHERE is_census_stale) AS stale_censuses
FROM occupancy
GROUP BY district, bed_kind
ORDER BY district, bed_kind
"""

TRANSFERS_SQL = """
WITH plan AS (
    SELECT pickup_district AS district, category, count(*) AS planned, count(DISTINCT trip_id) AS trips,
           count(*) FILTER (WHERE vehicle_id IS NULL) AS without_vehicle
    FROM dispatch_plan GROUP BY ALL
),
shortfall AS (
    SELECT district, category, count(*) AS without_bed, max(waited_hours) AS longest_wait_hours
    FROM dispatch_shortfall GROUP BY ALL
)
SELECT district, category, coalesce(p.planned, 0) AS planned, coalesce(p.trips, 0) AS trips,
       coalesce(p.without_vehicle, 0) AS without_vehicle, coalesce(s.without_bed, 0) AS without_bed,
       s.longest_wait_hours
FROM plan AS p FULL JOIN shortfall AS s USING (district, category)
ORDER BY district, category
"""

AREAS_SQL = """
WITH areas AS (
    SELECT * FROM risk_areas
)
SELECT district, level_label AS level,
       count(*) FILTER (WHERE is_active) AS active,
       count(*) FILTER (WHERE is_active AND since_at > $as_of - INTERVAL 1 DAY) AS new_today,
       count(*) FILTER (WHERE is_active AND planned_lift_at <= $as_of + INTERVAL 1 DAY) AS lift_within_a_day,
       count(*) FILTER (WHERE NOT is_active) AS lifted
FROM areas
GROUP BY district, level_label
ORDER BY district, level_label
"""


@dataclass(frozen=True)
class RunReport:
    markdown: str
    tables: dict[str, list[dict]]  # artifact key -> rows


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: dict) -> list[dict]:
    cursor = con.execute(sql, params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _markdown_table(rows: list[dict]) -> str:
    if not rows:
        return "_none_"
    names = list(rows[0])
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    for row in rows:
        lines.append("| " + " | ".join("" if row[n] is None else str(row[n]) for n in names) + " |")
    return "\n".join(lines)


def _share(met: int, missed: int) -> str:
    return f"{met / (met + missed):.0%}" if met + missed else "no clock closed yet"


def summarise(con: duckdb.DuckDBPyConnection, ingest_run_id: int, as_of, profile: str,
              unknown_district: str, stages: list[dict] = ()) -> RunReport:
    """The run's loads, categories and clock as markdown and as tables (JSON-safe values); with the
    stages' times and memory when given."""
    loads = _rows(con, LOADS_SQL, {"ingest_run_id": ingest_run_id})
    categories = _rows(con, CATEGORIES_SQL, {"unknown_district": unknown_district})
    compliance = _rows(con, COMPLIANCE_SQL, {})
    for row in compliance:
        for share in ("compliance", "controlled_compliance"):
            row[share] = None if row[share] is None else float(row[share])
    met, missed = sum(r["met"] for r in compliance), sum(r["missed"] for r in compliance)
    controlled = sum(r["controlled_met"] for r in compliance)
    pending = sum(r["pending"] for r in compliance)
    read = sum(r["rows_read"] for r in loads)
    quarantined = sum(r["rows_quarantined"] for r in loads)
    beds = _rows(con, BEDS_SQL, {})
    transfers = _rows(con, TRANSFERS_SQL, {})
    for row in transfers:
        row["longest_wait_hours"] = None if row["longest_wait_hours"] is None else float(row["longest_wait_hours"])
    areas = _rows(con, AREAS_SQL, {"as_of": as_of})
    planned, short = sum(r["planned"] for r in transfers), sum(r["without_bed"] for r in transfers)
    markdown = "\n\n".join([
        f"# trace24 daily run as of {as_of:%Y-%m-%d %H:%M} ({profile})",
        f"## Loads of this run\n{len(loads) and sum(r['files'] for r in loads)} new files, {read:,} rows read, "
        f"{read - quarantined:,} loaded, {quarantined:,} set aside in `quarantine`.\n\n{_markdown_table(loads)}",
        f"## People per category and district\n{_markdown_table(categories)}",
        f"## 24-hour clock\nInvestigation done and contacts listed within 24 hours: {_share(met, missed)} "
        f"({met} met, {missed} missed, {pending} pending); every contact under control within 24 hours, "
        f"as the community offices answered: {controlled} cases.\n\n{_markdown_table(compliance)}",
        f"## Beds and transfers\nBeds free now {sum(r['free'] for r in beds):,} of "
        f"{sum(r['capacity'] for r in beds):,}; {planned:,} transfers planned, {short:,} persons without a bed "
        f"(shortfall).\n\n{_markdown_table(beds)}\n\n{_markdown_table(transfers)}",
        f"## Risk areas\n{sum(r['active'] for r in areas):,} active, {sum(r['lifted'] for r in areas):,} lifted."
        f"\n\n{_markdown_table(areas)}",
        f"## Stages\nWall time and the process's peak memory at the end of each stage.\n\n"
        f"{_markdown_table(list(stages))}",
    ]) + "\n"
    return RunReport(markdown, {"loads": loads, "categories-by-district": categories,
                                "clock-by-district": compliance, "beds-by-district": beds,
                                "transfers-by-district": transfers, "risk-areas-by-district": areas})


def peak_memory_bytes() -> int:
    """The most memory this process has held resident, DuckDB's own allocations included.

    Read from ``VmHWM`` in ``/proc/self/status`` where there is one (Linux), not from ``ru_maxrss``:
    Linux keeps ``ru_maxrss`` across ``exec``, so a process started from a bigger one (a benchmark
    that generated its city first, a worker) reported its parent's peak as its own.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


class StageClock:
    """Wall time of each stage and the process's peak memory when it ended (DuckDB's included):
    for the run report, and for the benchmarks, which read them from the result."""

    def __init__(self):
        self.stages: list[dict] = []
        self._started = time.perf_counter()

    def done(self, stage: str) -> None:
        now = time.perf_counter()
        peak = peak_memory_bytes() / 2**30
        self.stages.append({"stage": stage, "seconds": round(now - self._started, 2),
                            "peak_memory_gib": round(peak, 2)})
        self._started = now
