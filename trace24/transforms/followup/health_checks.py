"""Core layer: the daily health checks (健康监测) of the persons the lists put under observation.

What belongs here: matching each delivered check (``staged_health_checks``, every version) to the
person its 回执编号 names (``out_list_rows``), with the reporter named by the file
(``community/health_checks_<社区编码 or 机构编码>...``): the person's community office, or the
isolation point that houses the person that day (``isolation_checkins``); what no list delivered or
was not the reporter's to report is set aside (``health_check_rejects``). The accepted readings are
``core_health_checks``, one per person and day (the latest delivered). After the categories, a
解除观察 reported before the person's observation ends is refused (reason ``early_release``): the
release has no effect, the reading stays. What does not belong: what a fever or a symptom means
(``categories/classify.py`` reads ``core_health_checks``), who goes unchecked
(``escalations.py``), reading the files (ingest: contract ``feeds/health_checks.yaml``).
"""

from __future__ import annotations

import datetime as dt

import duckdb

from trace24.transforms.database import bound_parameters, current_records
from trace24.transforms.followup.answers import LISTED_ROWS

MATCH_SQL = f"""
CREATE OR REPLACE TEMP TABLE health_checks_matched AS
WITH delivered AS (
    SELECT *, nullif(regexp_extract(regexp_extract(source_file, '[^/]*$'), $reporter_pattern, 1), '') AS reporter_code
    FROM staged_health_checks
    WHERE NOT is_deleted AND delivery_date <= CAST($as_of AS DATE)
),
{LISTED_ROWS},
people AS (
    SELECT person_id, merged_into_person_id FROM persons
),
stays AS (
    -- Who each isolation point housed, by day: it reports the checks of its own guests.
    SELECT coalesce(p.merged_into_person_id, c.person_id) AS person_id, c.facility_code,
           CAST(c.arrived_at AS DATE) AS from_date, CAST(c.left_at AS DATE) AS to_date
    FROM {current_records('isolation_checkins', 'i')} AS c
    LEFT JOIN people AS p USING (person_id)
),
matched AS (
    SELECT d.*, l.community_code, l.district,
           coalesce(p.merged_into_person_id, l.listed_person_id) AS person_id, l.row_key IS NOT NULL AS is_listed
    FROM delivered AS d
    LEFT JOIN listed AS l USING (row_key)
    LEFT JOIN people AS p ON p.person_id = l.listed_person_id
),
housed AS (
    SELECT DISTINCT m.load_id, m.source_row_number
    FROM matched AS m
    JOIN stays AS s ON s.person_id = m.person_id AND s.facility_code = m.reporter_code
                   AND s.from_date <= m.check_date AND (s.to_date IS NULL OR s.to_date >= m.check_date)
)
SELECT m.load_id, m.delivery_date, m.source_file, m.source_row_number, m.is_current, m.row_key, m.check_date,
       m.temperature_c, m.symptoms, m.observation_status, m.reporter_code, m.community_code, m.district,
       m.person_id,
       CASE WHEN h.load_id IS NOT NULL THEN 'facility' ELSE 'community' END AS reporter_kind,
       CASE WHEN m.reporter_code IS NULL THEN 'no_reporter'
            WHEN NOT m.is_listed THEN 'unknown_row_key'
            WHEN h.load_id IS NULL AND m.community_code IS DISTINCT FROM m.reporter_code THEN 'not_reporters_person'
       END AS reject_reason
FROM matched AS m
LEFT JOIN housed AS h USING (load_id, source_row_number)
"""

REJECTS_SQL = """
CREATE OR REPLACE TABLE health_check_rejects AS
SELECT load_id, delivery_date, source_file, source_row_number, row_key, check_date, reporter_code, reject_reason,
       map($reason_keys, $reason_values)[reject_reason] AS reason, false AS is_reading_kept,
       community_code AS listed_community_code
FROM health_checks_matched
WHERE reject_reason IS NOT NULL
ORDER BY load_id, source_row_number
"""

CHECKS_SQL = """
CREATE OR REPLACE TABLE core_health_checks AS
WITH accepted AS (
    -- Every accepted version, not only the current one: a wrong office's row for the same key and
    -- day is a later version by the record key, but set aside, it must not hide the right one.
    SELECT * FROM health_checks_matched WHERE reject_reason IS NULL
)
SELECT person_id, check_date, temperature_c, symptoms, observation_status, row_key, reporter_code, reporter_kind,
       community_code, district, load_id, delivery_date, source_file, source_row_number
FROM accepted
-- Two reporters, or two rows keys of one person (moved between lists), on one day: the latest delivered.
QUALIFY row_number() OVER (PARTITION BY person_id, check_date
                           ORDER BY delivery_date DESC, load_id DESC, source_row_number DESC) = 1
ORDER BY person_id, check_date
"""

COUNTS_SQL = """
SELECT count(*) AS delivered,
       count(*) FILTER (WHERE reject_reason IS NULL) AS accepted,
       count(*) FILTER (WHERE reject_reason IS NOT NULL) AS set_aside
FROM health_checks_matched
"""

# After the categories: a release before the observation ends is refused; the reading stays.
EARLY_RELEASES_SQL = """
INSERT INTO health_check_rejects
SELECT h.load_id, h.delivery_date, h.source_file, h.source_row_number, h.row_key, h.check_date, h.reporter_code,
       'early_release',
       replace($early_release, '{date}', strftime(c.observation_ends_on, '%Y-%m-%d')), true, h.community_code
FROM core_health_checks AS h
JOIN four_categories AS c USING (person_id)
WHERE h.observation_status = $release_status AND c.observation_ends_on > h.check_date
ORDER BY h.load_id, h.source_row_number
"""

REASONS = {
    "no_reporter": "the file's name names no reporter (health_checks_<社区编码 or 机构编码>...)",
    "unknown_row_key": "no list delivered a row with this 回执编号",
    "not_reporters_person": "the person is neither this office's resident nor housed at this isolation point that day",
}
EARLY_RELEASE = "解除观察 before the observation ends on {date}: the release is refused, the reading is kept"
RELEASE_STATUS = "解除观察"
REPORTER_PATTERN = r"^health_checks_([0-9A-Za-z-]+)"


def health_check_parameters(as_of: dt.datetime) -> dict:
    return {"as_of": as_of, "reporter_pattern": REPORTER_PATTERN, "reason_keys": list(REASONS),
            "reason_values": list(REASONS.values()), "early_release": EARLY_RELEASE, "release_status": RELEASE_STATUS}


def build_health_checks(con: duckdb.DuckDBPyConnection, params: dict) -> dict[str, int]:
    """Before the categories: write ``core_health_checks`` and ``health_check_rejects``; return the
    counts (delivered = accepted + set aside)."""
    for sql in (MATCH_SQL, REJECTS_SQL, CHECKS_SQL):
        con.execute(sql, bound_parameters(sql, params))
    cursor = con.execute(COUNTS_SQL)
    names = [d[0] for d in cursor.description]
    return dict(zip(names, cursor.fetchone(), strict=True))


def refuse_early_releases(con: duckdb.DuckDBPyConnection, params: dict) -> int:
    """After the categories: add the early releases to ``health_check_rejects``; return how many."""
    (refused,) = con.execute(EARLY_RELEASES_SQL, bound_parameters(EARLY_RELEASES_SQL, params)).fetchone()
    return refused
