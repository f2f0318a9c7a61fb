"""Core layer: what the community offices answered about the persons on their lists.

What belongs here: matching each delivered answer (``staged_list_returns``, every version) to the
list row it answers (``out_list_rows`` by 回执编号), setting aside what no list delivered or was not
the answering office's to answer (``followup_rejects``, with the reason and the office), the
accepted answers (``core_followup_history``) and each person's latest (``core_followup``). What
does not: reading the files (ingest: contract ``feeds/list_returns.yaml``), what an answer changes
on the clock and the lists (``lists/``).

The office is named by the file: ``community/list_returns_<社区编码>...``. A row left unanswered (no
处置结果) is neither accepted nor set aside: it is counted as blank.
"""

from __future__ import annotations

import datetime as dt

import duckdb

from trace24.transforms.database import bound_parameters, ensure_core_office_corrections

# Each row key's list row, as the lists delivered it up to this run (a key names one person on one
# community's list: the same every run). Health checks name their person the same way.
LISTED_ROWS = """listed AS (
    SELECT row_key, arg_max(person_id, as_of) AS listed_person_id, arg_max(community_code, as_of) AS community_code,
           arg_max(district, as_of) AS district, min(as_of) AS first_listed_at
    FROM out_list_rows
    WHERE row_key IS NOT NULL AND as_of <= $as_of
    GROUP BY row_key
)"""

MATCH_SQL = f"""
CREATE OR REPLACE TEMP TABLE followup_matched AS
WITH delivered AS (
    SELECT * FROM staged_list_returns WHERE NOT is_deleted AND delivery_date <= CAST($as_of AS DATE)
),
answers AS (
    SELECT *, nullif(regexp_extract(regexp_extract(source_file, '[^/]*$'), $office_pattern, 1), '') AS office_code
    FROM delivered
),
{LISTED_ROWS},
people AS (
    SELECT person_id, merged_into_person_id FROM persons
)
SELECT a.load_id, a.delivery_date, a.source_file, a.source_row_number, a.is_current,
       a.row_key, a.office_code, a.answer, map($answer_texts, $answer_keys)[a.answer] AS answer_key,
       a.controlled_at, a.handled_by, a.note,
       l.community_code, l.district, l.first_listed_at,
       -- A person merged into another since the list: the answer is about the one they became.
       coalesce(p.merged_into_person_id, l.listed_person_id) AS person_id,
       CASE WHEN a.office_code IS NULL THEN 'no_office'
            WHEN l.row_key IS NULL THEN 'unknown_row_key'
            WHEN l.community_code IS NULL THEN 'unplaced_row'
            WHEN l.community_code <> a.office_code THEN 'other_community'
       END AS reject_reason
FROM answers AS a
LEFT JOIN listed AS l USING (row_key)
LEFT JOIN people AS p ON p.person_id = l.listed_person_id
"""

REJECTS_SQL = """
CREATE OR REPLACE TABLE followup_rejects AS
SELECT load_id, delivery_date, source_file, source_row_number, row_key, office_code, reject_reason,
       map($reason_keys, $reason_values)[reject_reason] AS reason,
       -- Only the list's own facts: whose resident it is, never the person.
       community_code AS listed_community_code
FROM followup_matched
WHERE reject_reason IS NOT NULL
ORDER BY load_id, source_row_number
"""

HISTORY_SQL = """
CREATE OR REPLACE TABLE core_followup_history AS
SELECT person_id, row_key, answer_key, answer, controlled_at, handled_by, note, office_code, community_code,
       district, first_listed_at, load_id, delivery_date, source_file, source_row_number, is_current
FROM followup_matched
WHERE reject_reason IS NULL AND answer IS NOT NULL
ORDER BY person_id, delivery_date, load_id, source_row_number
"""

LATEST_SQL = """
CREATE OR REPLACE TABLE core_followup AS
WITH history AS (
    SELECT * FROM core_followup_history
)
SELECT person_id,
       arg_max(answer_key, (delivery_date, load_id, source_row_number)) AS answer_key,
       arg_max(answer, (delivery_date, load_id, source_row_number)) AS answer,
       arg_max(controlled_at, (delivery_date, load_id, source_row_number)) AS controlled_at,
       arg_max(handled_by, (delivery_date, load_id, source_row_number)) AS handled_by,
       arg_max(note, (delivery_date, load_id, source_row_number)) AS note,
       arg_max(office_code, (delivery_date, load_id, source_row_number)) AS office_code,
       max(delivery_date) AS answered_on,
       list_contains($controlling, arg_max(answer_key, (delivery_date, load_id, source_row_number))) AS is_controlled,
       min(controlled_at) FILTER (WHERE list_contains($controlling, answer_key)) AS first_controlled_at,
       count(*) AS answers
FROM history
GROUP BY person_id
ORDER BY person_id
"""

# 信息有误 with a phone or an address in 备注: every accepted version (the person's latest per value
# is what identity takes). Registered under the office that answered.
CORRECTIONS_SQL = """
INSERT INTO core_office_corrections BY NAME
WITH corrected AS (
    SELECT *, nullif(regexp_extract(note, $phone_pattern, 1), '') AS phone,
           nullif(trim(regexp_extract(note, $address_pattern, 1)), '') AS address
    FROM core_followup_history
    WHERE answer_key = $correcting_answer AND note IS NOT NULL
)
SELECT person_id, phone, address, office_code, row_key, load_id, delivery_date, source_file, source_row_number
FROM corrected
WHERE phone IS NOT NULL OR address IS NOT NULL
ORDER BY person_id, delivery_date, load_id, source_row_number
"""

COUNTS_SQL = """
SELECT count(*) AS delivered,
       count(*) FILTER (WHERE reject_reason IS NULL AND answer IS NOT NULL) AS accepted,
       count(*) FILTER (WHERE reject_reason IS NOT NULL) AS set_aside,
       count(*) FILTER (WHERE reject_reason IS NULL AND answer IS NULL) AS blank
FROM followup_matched
"""

REASONS = {
    "no_office": "the file's name names no community office (list_returns_<社区编码>...)",
    "unknown_row_key": "no list delivered a row with this 回执编号",
    "unplaced_row": "the row is on a district's unplaced list: the district places the person, no office answers it",
    "other_community": "the row is another community's resident: this office cannot answer it",
}
OFFICE_PATTERN = r"^list_returns_([0-9A-Za-z]+)"


def followup_parameters(answer_values: dict[str, str], controlling: list[str], as_of: dt.datetime,
                        corrections: dict[str, str]) -> dict:
    """``answer_values``: answer key → the text a list offers (``community_lists.yaml``, answers);
    ``controlling``: the keys that mean the person is under control; ``corrections``: the answer
    whose 备注 corrects the person, and the patterns of its phone and address."""
    return {"as_of": as_of, "office_pattern": OFFICE_PATTERN,
            "answer_texts": list(answer_values.values()), "answer_keys": list(answer_values),
            "reason_keys": list(REASONS), "reason_values": list(REASONS.values()), "controlling": controlling,
            "correcting_answer": corrections["answer"], "phone_pattern": corrections["phone_pattern"],
            "address_pattern": corrections["address_pattern"]}


def build_followup(con: duckdb.DuckDBPyConnection, params: dict) -> dict[str, int]:
    """Match every delivered answer, write ``followup_rejects``, ``core_followup_history``,
    ``core_followup`` and ``core_office_corrections``; return the counts (delivered = accepted + set
    aside + blank; corrections: the accepted answers that correct a phone or an address)."""
    for sql in (MATCH_SQL, REJECTS_SQL, HISTORY_SQL, LATEST_SQL):
        con.execute(sql, bound_parameters(sql, params))
    ensure_core_office_corrections(con)
    con.execute("DELETE FROM core_office_corrections")   # derived whole from the history, as the rest
    (corrections,) = con.execute(CORRECTIONS_SQL, bound_parameters(CORRECTIONS_SQL, params)).fetchone()
    cursor = con.execute(COUNTS_SQL)
    names = [d[0] for d in cursor.description]
    return {**dict(zip(names, cursor.fetchone(), strict=True)), "corrections": corrections}
