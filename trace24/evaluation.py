"""The pipeline measured against a generated city's truth (``data/sample/truth/``): identity
resolution, close contacts, the four categories, and the response (dispatch feasibility, risk areas).

Link quality is pairwise, as record-linkage work reports it: for each record of a group, every
other record is a pair; a pair is predicted when both records got the same ``person_id`` and true
when the truth says one person. Precision = true predicted pairs / predicted pairs, recall = true
predicted pairs / true pairs. Groups: records with a valid ID (or passport) number (paired
with each other only); records without one (paired with every record) that carry more than a
name; and records with a name only (a name alone identifies nobody: they go to review by design).
Community accuracy: for each true person, the
community of the person_id holding most of their records, against the truth ('' = unassigned);
people outside the register are split by whether any delivered record gives an address or a hotel
stay (without one, no rule can place them: they belong on the unassigned list).
"""

from __future__ import annotations

from pathlib import Path

import duckdb

TRUTH_RECORDS_SQL = """
WITH truth AS (
    SELECT file, row_number::BIGINT AS source_row_number, person_key AS truth_key
    FROM read_csv($records, all_varchar = true)
    WHERE person_key <> ''
),
linked AS (
    SELECT p.feed, p.load_id, p.source_row_number, p.person_id, p.link_method, t.truth_key,
           r.id_status, r.name, r.phone, r.birth_date, r.id_number
    FROM person_records AS p
    JOIN identity_records AS r USING (feed, load_id, source_row_number)
    JOIN load_audit AS a USING (load_id)
    JOIN truth AS t ON t.file = a.source_file AND t.source_row_number = p.source_row_number
),
classified AS (
    SELECT *,
           link_method IN ('exact_id', 'exact_document') AS is_exact,
           CASE WHEN link_method IN ('exact_id', 'exact_document') THEN 'valid_id'
                WHEN phone IS NULL AND birth_date IS NULL AND id_number IS NULL THEN 'name_only'
                ELSE 'without_valid_id' END AS record_group
    FROM linked
),
grouped AS (
    -- A record with a valid ID is paired with the other valid-ID records only: their links are exact.
    SELECT *,
           CASE WHEN is_exact THEN count(*) FILTER (WHERE is_exact) OVER (PARTITION BY person_id, truth_key)
                ELSE count(*) OVER (PARTITION BY person_id, truth_key) END - 1 AS true_predicted,
           CASE WHEN is_exact THEN count(*) FILTER (WHERE is_exact) OVER (PARTITION BY person_id)
                ELSE count(*) OVER (PARTITION BY person_id) END - 1 AS predicted,
           CASE WHEN is_exact THEN count(*) FILTER (WHERE is_exact) OVER (PARTITION BY truth_key)
                ELSE count(*) OVER (PARTITION BY truth_key) END - 1 AS true_pairs
    FROM classified
)
"""

PAIRWISE_SQL = TRUTH_RECORDS_SQL + """
SELECT record_group, count(*) AS records, sum(true_predicted) AS tp, sum(predicted) AS pp, sum(true_pairs) AS ap,
       count(*) FILTER (WHERE link_method IN ('new_person')) AS unlinked
FROM grouped
GROUP BY record_group
ORDER BY record_group
"""

COMMUNITY_SQL = TRUTH_RECORDS_SQL + """
, person_of_truth AS (
    SELECT truth_key, mode(person_id) AS person_id FROM grouped GROUP BY truth_key
),
truth_persons AS (
    SELECT person_key AS truth_key, community_code AS truth_code, district AS truth_district, in_register
    FROM read_csv($persons, all_varchar = true)
)
SELECT CASE WHEN t.in_register = 'true' THEN 'in_register'
            WHEN p.address_text IS NOT NULL OR list_contains(f.feeds, 'lodging') THEN 'outside_register_with_address'
            ELSE 'outside_register_no_address' END AS person_group,
       count(*) AS persons,
       count(*) FILTER (WHERE coalesce(p.community_code, '') = coalesce(t.truth_code, '')) AS correct,
       count(*) FILTER (WHERE p.assignment_method = 'unassigned') AS unassigned
FROM person_of_truth AS o
JOIN truth_persons AS t USING (truth_key)
JOIN persons AS p USING (person_id)
JOIN (SELECT person_id, list(DISTINCT feed) AS feeds FROM person_records GROUP BY person_id) AS f USING (person_id)
GROUP BY ALL
ORDER BY 1
"""  # noqa: S608 - constant SQL joined to constant SQL


def evaluate_identity(con: duckdb.DuckDBPyConnection, truth_dir: Path) -> dict:
    params = {"records": str(truth_dir / "records.csv")}
    rows = con.execute(PAIRWISE_SQL, params).fetchall()
    without = [r for r in rows if r[0] != "valid_id"]
    if without:  # the groups' pair counts add up
        rows.append(("all_without_valid_id", *(sum(r[i] for r in without) for i in range(1, 6))))
    groups = {group: {"records": records, "precision": tp / pp if pp else 1.0, "recall": tp / ap if ap else 1.0,
                      "persons_of_their_own": unlinked}
              for group, records, tp, pp, ap, unlinked in rows}
    community = {}
    for group, persons, correct, unassigned in con.execute(
            COMMUNITY_SQL, {**params, "persons": str(truth_dir / "persons.csv")}).fetchall():
        community[group] = {"persons": persons, "accuracy": correct / persons, "unassigned": unassigned}
    total = sum(c["persons"] for c in community.values())
    community["all"] = {"persons": total,
                        "accuracy": sum(c["accuracy"] * c["persons"] for c in community.values()) / total,
                        "unassigned": sum(c["unassigned"] for c in community.values())}
    return {"links": groups, "communities": community}


def format_report(report: dict) -> str:
    lines = ["link quality (pairwise, against truth)",
             f"{'records':<24}{'count':>12}{'precision':>11}{'recall':>9}{'own person':>12}"]
    for group, g in report["links"].items():
        lines.append(f"{group:<24}{g['records']:>12,}{g['precision']:>11.4f}{g['recall']:>9.4f}"
                     f"{g['persons_of_their_own']:>12,}")
    lines += ["", "community assignment (against truth)",
              f"{'persons':<32}{'count':>12}{'accuracy':>11}{'unassigned':>12}"]
    for group, c in report["communities"].items():
        lines.append(f"{group:<32}{c['persons']:>12,}{c['accuracy']:>11.4f}{c['unassigned']:>12,}")
    return "\n".join(lines)


# Close contacts: a true exposure is a pair (exposed, source) of the truth's exposures.csv; a
# found one is a close (or secondary-free) pair of core_contacts. Both sides in person_ids, the
# truth's keys mapped through the records each truth person has (their most common person_id).
# Truth exposures that end before the last delivery's horizon but whose source no delivered
# record shows as a case cannot be found: they are counted apart as `source_not_a_case`.
CONTACTS_SQL = TRUTH_RECORDS_SQL + """
, person_of_truth AS (
    SELECT truth_key, mode(person_id) AS person_id FROM grouped GROUP BY truth_key
),
truth_exposures AS (
    SELECT DISTINCT e.setting, x.person_id AS exposed_person_id, s.person_id AS source_person_id,
           e.exposed_person_key, e.source_person_key
    FROM read_csv($exposures, all_varchar = true) AS e
    LEFT JOIN person_of_truth AS x ON x.truth_key = e.exposed_person_key
    LEFT JOIN person_of_truth AS s ON s.truth_key = e.source_person_key
),
truth_pairs AS (
    SELECT exposed_person_id, source_person_id, list(DISTINCT setting) AS settings,
           bool_or(exposed_person_id IS NULL) AS exposed_unknown,
           bool_or(source_person_id IN (SELECT person_id FROM core_cases)) AS source_is_case
    FROM truth_exposures GROUP BY ALL
),
found AS (
    SELECT exposed_person_id, source_person_id FROM core_contacts WHERE contact_level = 'close'
)
SELECT
    (SELECT count(*) FROM truth_pairs) AS true_pairs,
    (SELECT count(*) FROM truth_pairs WHERE NOT source_is_case OR source_is_case IS NULL) AS source_not_a_case,
    (SELECT count(*) FROM truth_pairs WHERE exposed_unknown) AS exposed_without_records,
    (SELECT count(*) FROM found) AS found_pairs,
    (SELECT count(*) FROM found JOIN truth_pairs USING (exposed_person_id, source_person_id)) AS found_true
"""  # noqa: S608 - constant SQL joined to constant SQL


def evaluate_contacts(con: duckdb.DuckDBPyConnection, truth_dir: Path) -> dict:
    """Close-contact precision and recall against the truth's exposures."""
    params = {"records": str(truth_dir / "records.csv"), "exposures": str(truth_dir / "exposures.csv")}
    true_pairs, not_case, no_records, found, found_true = con.execute(CONTACTS_SQL, params).fetchone()
    findable = true_pairs - not_case
    return {"true_pairs": true_pairs, "source_not_a_case": not_case, "exposed_without_records": no_records,
            "found_pairs": found, "found_true": found_true,
            "precision": found_true / found if found else 1.0,
            "recall": found_true / true_pairs if true_pairs else 1.0,
            "recall_of_findable": found_true / findable if findable else 1.0}


def format_contacts(report: dict) -> str:
    return "\n".join([
        "close contacts (pairs exposed → case, against truth)",
        f"  true pairs {report['true_pairs']:,} (source never shown as a case by the data: "
        f"{report['source_not_a_case']:,}; exposed person in no delivered record: "
        f"{report['exposed_without_records']:,})",
        f"  found {report['found_pairs']:,}, of them true {report['found_true']:,}",
        f"  precision {report['precision']:.4f}  recall {report['recall']:.4f}  "
        f"recall where the source is a known case {report['recall_of_findable']:.4f}",
    ])


CATEGORIES_SQL = TRUTH_RECORDS_SQL + """
, truth_of_person AS (
    -- The truth's person behind a person_id: the one most of its records are about.
    SELECT person_id, mode(truth_key) AS person_key FROM grouped GROUP BY person_id
),
truth_categories AS (
    SELECT person_key, category FROM read_csv($categories, all_varchar = true)
),
found AS (
    SELECT DISTINCT t.person_key, f.category
    FROM four_categories AS f JOIN truth_of_person AS t USING (person_id)
),
compared AS (
    SELECT coalesce(f.category, t.category) AS category,
           f.person_key IS NOT NULL AS is_found, t.person_key IS NOT NULL AS is_true
    FROM found AS f FULL JOIN truth_categories AS t USING (person_key, category)
)
SELECT category, count(*) FILTER (WHERE is_found), count(*) FILTER (WHERE is_true),
       count(*) FILTER (WHERE is_found AND is_true)
FROM compared GROUP BY category
ORDER BY list_position(['confirmed', 'suspected', 'fever', 'close_contact', 'secondary_contact'], category)
"""  # noqa: S608 - constant SQL joined to constant SQL


def evaluate_categories(con: duckdb.DuckDBPyConnection, truth_dir: Path) -> list[tuple]:
    """Per category: (category, found, true, correct, precision, recall) of ``four_categories``
    against ``truth/categories.csv`` (a person counts once, as the truth's person)."""
    params = {"records": str(truth_dir / "records.csv"), "categories": str(truth_dir / "categories.csv")}
    rows = con.execute(CATEGORIES_SQL, params).fetchall()
    return [(c, f, t, ok, ok / f if f else 1.0, ok / t if t else 1.0) for c, f, t, ok in rows]


def format_categories(rows) -> str:
    lines = ["four categories (against truth/categories.csv)",
             f"{'category':<20}{'found':>7}{'true':>7}{'correct':>9}{'precision':>11}{'recall':>9}"]
    for category, found, true, correct, precision, recall in rows:
        lines.append(f"{category:<20}{found:>7,}{true:>7,}{correct:>9,}{precision:>11.4f}{recall:>9.4f}")
    return "\n".join(lines)


def evaluation_report(con: duckdb.DuckDBPyConnection, truth_dir: Path) -> str:
    """Every evaluation the store's stages allow: links and communities, then close contacts and
    categories once those stages have run."""
    tables = {name for (name,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    parts = [format_report(evaluate_identity(con, truth_dir))]
    if "core_contacts" in tables:
        parts.append(format_contacts(evaluate_contacts(con, truth_dir)))
    if "four_categories" in tables:
        parts.append(format_categories(evaluate_categories(con, truth_dir)))
    response_truth = [truth_dir / name for name in ("facilities.csv", "placements.csv", "areas.csv")]
    if "dispatch_plan" in tables and all(path.exists() for path in response_truth):
        parts.append(format_response(evaluate_dispatch(con, truth_dir), evaluate_areas(con, truth_dir)))
    return "\n\n".join(parts)


# The response against the truth: is the plan feasible (never more persons onto a facility's beds
# of a kind than are truly free as of the run, one category and no more than the seats per trip,
# one pickup district per trip, nobody truly placed planned again), and are the risk areas the
# true ones (a case's home compound, a hotel it stayed in)? The truth's free beds: its capacity
# (truth/facilities.csv) less its true stays on that kind at the run's as-of time
# (truth/placements.csv); a person is truly placed when a true stay covers the as-of time.
DISPATCH_SQL = TRUTH_RECORDS_SQL + """
, truth_of_person AS (
    SELECT person_id, mode(truth_key) AS person_key FROM grouped GROUP BY person_id
),
run AS (
    SELECT max(as_of) AS as_of FROM bed_occupancy
),
facilities AS (
    SELECT facility_code, kind.bed_kind, CAST(kind.capacity AS BIGINT) AS capacity
    FROM (SELECT facility_code,
                 unnest([{'bed_kind': 'icu', 'capacity': icu_beds}, {'bed_kind': 'general', 'capacity': general_beds},
                         {'bed_kind': 'single_room', 'capacity': single_rooms}]) AS kind
          FROM read_csv($facilities, all_varchar = true))
),
stays AS (
    SELECT s.person_key, s.facility_code, s.bed_kind
    FROM read_csv($placements, all_varchar = true) AS s, run
    WHERE CAST(s.arrived_at AS TIMESTAMP) <= run.as_of
      AND (coalesce(s.left_at, '') = '' OR CAST(s.left_at AS TIMESTAMP) > run.as_of)
),
truly_free AS (
    SELECT f.facility_code, f.bed_kind, f.capacity - count(s.person_key) AS free
    FROM facilities AS f LEFT JOIN stays AS s USING (facility_code, bed_kind)
    GROUP BY f.facility_code, f.bed_kind, f.capacity
),
planned AS (
    SELECT facility_code, bed_kind, count(*) AS planned FROM dispatch_plan GROUP BY ALL
),
trips AS (
    SELECT p.trip_id, count(DISTINCT p.category) AS categories, count(DISTINCT p.pickup_district) AS districts,
           count(*) AS persons, any_value(t.seats) AS seats
    FROM dispatch_plan AS p LEFT JOIN dispatch_trips AS t USING (trip_id)
    WHERE p.trip_id IS NOT NULL
    GROUP BY p.trip_id
)
SELECT
    (SELECT count(*) FROM dispatch_plan) AS planned_persons,
    (SELECT count(*) FROM dispatch_shortfall) AS shortfall_persons,
    (SELECT count(*) FROM bed_occupancy WHERE planned > greatest(capacity - occupied, 0)) AS over_census_capacity,
    (SELECT count(*) FROM planned AS p JOIN truly_free AS f USING (facility_code, bed_kind)
     WHERE p.planned > greatest(f.free, 0)) AS over_true_capacity,
    (SELECT count(*) FROM planned AS p ANTI JOIN truly_free AS f USING (facility_code, bed_kind))
        AS planned_to_unknown_facility,
    (SELECT count(*) FROM trips) AS trips,
    (SELECT count(*) FROM trips WHERE categories > 1) AS trips_mixing_categories,
    (SELECT count(*) FROM trips WHERE persons > seats) AS trips_over_seats,
    (SELECT count(*) FROM trips WHERE districts > 1) AS trips_over_districts,
    (SELECT count(DISTINCT p.person_id) FROM dispatch_plan AS p JOIN truth_of_person AS t USING (person_id)
     JOIN stays AS s ON s.person_key = t.person_key) AS placed_planned_again,
    (SELECT count(DISTINCT person_key) FROM stays) AS truly_placed
"""  # noqa: S608 - constant SQL joined to constant SQL

# A found area matches a true one by the compound (community code + compound name: a building
# area of the later profiles matches its compound) or by the hotel code. Only true areas whose
# first case was reported by the run's as-of time can have been found.
AREAS_SQL = """
WITH run AS (
    SELECT max(as_of) AS as_of FROM bed_occupancy
),
truth AS (
    SELECT scope, CASE WHEN scope = 'hotel' THEN hotel_code ELSE community_code || '/' || compound END AS place,
           CAST(first_reported_at AS TIMESTAMP) AS first_reported_at
    FROM read_csv($areas, all_varchar = true), run
    WHERE CAST(first_reported_at AS TIMESTAMP) <= run.as_of
),
found AS (
    SELECT CASE WHEN scope = 'hotel' THEN 'hotel' ELSE 'compound' END AS scope,
           CASE WHEN scope = 'hotel' THEN hotel_code ELSE community_code || '/' || compound END AS place,
           min(since_at) AS since_at
    FROM risk_areas
    WHERE scope = 'hotel' OR compound IS NOT NULL
    GROUP BY ALL
),
compared AS (
    SELECT coalesce(f.scope, t.scope) AS scope, f.place IS NOT NULL AS is_found, t.place IS NOT NULL AS is_true,
           date_diff('minute', t.first_reported_at, f.since_at) / 60.0 AS hours_after_report
    FROM found AS f FULL JOIN truth AS t USING (scope, place)
)
SELECT scope, count(*) FILTER (WHERE is_found), count(*) FILTER (WHERE is_true),
       count(*) FILTER (WHERE is_found AND is_true),
       median(hours_after_report) FILTER (WHERE is_found AND is_true)
FROM compared GROUP BY scope ORDER BY scope
"""


def evaluate_dispatch(con: duckdb.DuckDBPyConnection, truth_dir: Path) -> dict:
    """Feasibility of this run's plan against the truth's facilities and placements: every count
    but ``planned_persons``, ``shortfall_persons``, ``trips`` and ``truly_placed`` must be 0."""
    params = {"records": str(truth_dir / "records.csv"), "facilities": str(truth_dir / "facilities.csv"),
              "placements": str(truth_dir / "placements.csv")}
    cursor = con.execute(DISPATCH_SQL, params)
    names = [d[0] for d in cursor.description]
    return dict(zip(names, cursor.fetchone(), strict=True))


def evaluate_areas(con: duckdb.DuckDBPyConnection, truth_dir: Path) -> list[tuple]:
    """Per scope (compound, hotel): (scope, found, true, correct, precision, recall, median hours
    from the first case's report to the area's since_at) of ``risk_areas`` against ``truth/areas.csv``."""
    rows = con.execute(AREAS_SQL, {"areas": str(truth_dir / "areas.csv")}).fetchall()
    return [(s, f, t, ok, ok / f if f else 1.0, ok / t if t else 1.0, lag) for s, f, t, ok, lag in rows]


FEASIBILITY_CHECKS = ("over_census_capacity", "over_true_capacity", "planned_to_unknown_facility",
                      "trips_mixing_categories", "trips_over_seats", "trips_over_districts", "placed_planned_again")


def format_response(dispatch_report: dict, area_rows) -> str:
    d = dispatch_report
    failed = [name for name in FEASIBILITY_CHECKS if d[name]]
    lines = ["dispatch (against truth/facilities.csv and truth/placements.csv)",
             f"  planned {d['planned_persons']:,} persons on {d['trips']:,} trips; shortfall "
             f"{d['shortfall_persons']:,}; truly placed at the run {d['truly_placed']:,}",
             "  feasible: " + ("yes" if not failed else "NO: " + ", ".join(f"{n} {d[n]:,}" for n in failed)),
             "  checks: " + ", ".join(f"{n} {d[n]:,}" for n in FEASIBILITY_CHECKS),
             "", "risk areas (against truth/areas.csv, areas whose first case was reported by the run)",
             f"{'scope':<12}{'found':>7}{'true':>7}{'correct':>9}{'precision':>11}{'recall':>9}{'median h':>10}"]
    for scope, found, true, correct, precision, recall, lag in area_rows:
        lag_text = f"{lag:>10.1f}" if lag is not None else f"{'-':>10}"
        lines.append(f"{scope:<12}{found:>7,}{true:>7,}{correct:>9,}{precision:>11.4f}{recall:>9.4f}{lag_text}")
    return "\n".join(lines)


# The offices' answers against what the sample offices did (samplecity/offices.py, answers.csv):
# each fault handled as the contract says (typed over and future times quarantined, a neighbour's
# row set aside, the rest accepted), and the contacts under control within 24 hours as measured
# against the truth's own 落实 times (an answer lost to a fault is a control trace24 cannot see).
# The person each 回执编号 was issued for (the latest list that carried it).
LIST_KEYS_CTE = """
keys AS (
    SELECT row_key, arg_max(person_id, as_of) AS person_id
    FROM out_list_rows WHERE row_key IS NOT NULL GROUP BY row_key
)"""

ANSWERS_TRUTH_SQL = """
WITH truth AS (
    -- What the offices answered before the store's last run read its landing (a list of the last
    -- run is answered after it: no run has read those yet).
    SELECT * REPLACE (coalesce(fault, '') AS fault)
    FROM read_csv($answers, header = true, all_varchar = true)
    WHERE CAST(list_date AS DATE) < (SELECT CAST(max(as_of) AS DATE) FROM out_list_rows)
)
"""

FOLLOWUP_SQL = ANSWERS_TRUTH_SQL + """
, delivered AS (
    SELECT * FROM truth WHERE fault <> 'late'
),
quarantined AS (
    SELECT unnest(q.reason_codes) AS code
    FROM quarantine AS q WHERE q.feed = 'list_returns'
),
outcomes AS (
    SELECT 'accepted' AS outcome, count(*) AS rows FROM core_followup_history
    UNION ALL SELECT 'quarantined: ' || code, count(*) FROM quarantined GROUP BY code
    UNION ALL SELECT 'set aside: ' || reject_reason, count(*) FROM followup_rejects GROUP BY reject_reason
),
expected AS (
    SELECT CASE fault WHEN '' THEN 'accepted' WHEN 'typed_over' THEN 'quarantined: invalid_enum:answer'
                      WHEN 'future_time' THEN 'quarantined: after_delivery:controlled_at'
                      WHEN 'other_community' THEN 'set aside: other_community' END AS outcome, count(*) AS rows
    FROM delivered GROUP BY ALL
)
SELECT coalesce(e.outcome, o.outcome) AS outcome, coalesce(e.rows, 0) AS truth_rows,
       coalesce(o.rows, 0) AS found_rows
FROM expected AS e FULL JOIN outcomes AS o USING (outcome)
ORDER BY outcome
"""  # noqa: S608 - constant SQL joined to constant SQL

CONTROL_SQL = ANSWERS_TRUTH_SQL + "," + LIST_KEYS_CTE + """,
true_control AS (
    SELECT k.person_id, min(CAST(t.controlled_at AS TIMESTAMP)) AS controlled_at
    FROM truth AS t JOIN keys AS k USING (row_key)
    WHERE t.fault NOT IN ('late', 'other_community') AND list_contains($controlling, t.answer)
    GROUP BY k.person_id
),
contacts AS (
    SELECT c.*, t.controlled_at AS true_controlled_at
    FROM tracing_clock_contacts AS c LEFT JOIN true_control AS t ON t.person_id = c.contact_person_id
)
SELECT count(*) AS contacts,
       count(*) FILTER (WHERE true_controlled_at <= deadline_at) AS truly_controlled_in_time,
       count(*) FILTER (WHERE is_controlled_within_target) AS measured_in_time,
       count(*) FILTER (WHERE is_controlled_within_target AND true_controlled_at <= deadline_at) AS both
FROM contacts
"""  # noqa: S608 - constant SQL joined to constant SQL


# A 信息有误 answer that wrote the right phone in 备注 and was accepted: is it the person's phone now?
CORRECTED_PHONES_SQL = ANSWERS_TRUTH_SQL + "," + LIST_KEYS_CTE + """,
corrected AS (
    SELECT k.person_id, arg_max(t.corrected_phone, CAST(t.controlled_at AS TIMESTAMP)) AS phone
    FROM truth AS t JOIN keys AS k USING (row_key)
    WHERE t.fault = '' AND coalesce(t.corrected_phone, '') <> ''
    GROUP BY k.person_id
)
SELECT count(*) AS corrected, count(*) FILTER (WHERE p.phone = c.phone) AS in_persons
FROM corrected AS c LEFT JOIN persons AS p USING (person_id)
"""  # noqa: S608 - constant SQL joined to constant SQL


def evaluate_followup(con: duckdb.DuckDBPyConnection, answers: Path, controlling_texts: list[str]) -> dict:
    outcomes = con.execute(FOLLOWUP_SQL, {"answers": str(answers)}).fetchall()
    control = con.execute(CONTROL_SQL, {"answers": str(answers), "controlling": controlling_texts}).fetchone()
    corrected = con.execute(CORRECTED_PHONES_SQL, {"answers": str(answers)}).fetchone()
    return {"outcomes": outcomes, "control": dict(zip(("contacts", "truly_controlled_in_time", "measured_in_time",
                                                       "both"), control, strict=True)),
            "corrected": dict(zip(("corrected", "in_persons"), corrected, strict=True))}


def format_followup(report: dict) -> str:
    lines = ["offices' answers (名单回执) against what the sample offices did",
             f"{'outcome':44s} {'truth':>7s} {'found':>7s}"]
    lines += [f"{outcome:44s} {truth:7d} {found:7d}" for outcome, truth, found in report["outcomes"]]
    c = report["control"]
    recall = c["both"] / c["truly_controlled_in_time"] if c["truly_controlled_in_time"] else float("nan")
    lines.append(f"close contacts {c['contacts']}: truly under control within 24 h {c['truly_controlled_in_time']}, "
                 f"measured {c['measured_in_time']}, both {c['both']} (recall {recall:.2f}; an answer lost to a "
                 "fault is a control the pipeline cannot see)")
    k = report["corrected"]
    lines.append(f"phones corrected in 备注 (信息有误) {k['corrected']}: now the person's phone {k['in_persons']}")
    return "\n".join(lines)


# The daily health checks against what the sample offices reported (health_checks.csv beside
# answers.csv): each fault handled as the contract says, and every contact whose check showed a
# fever or a cough raised to a fever patient by it.
CHECKS_TRUTH_SQL = """
WITH truth AS (
    SELECT * REPLACE (coalesce(fault, '') AS fault)
    FROM read_csv($checks, header = true, all_varchar = true)
    WHERE CAST(check_date AS DATE) < (SELECT CAST(max(as_of) AS DATE) FROM out_list_rows)
),""" + LIST_KEYS_CTE  # noqa: S608 - constant SQL joined to constant SQL

CHECK_OUTCOMES_SQL = CHECKS_TRUTH_SQL + """
, outcomes AS (
    SELECT 'accepted' AS outcome, count(*) AS rows FROM core_health_checks
    UNION ALL SELECT 'quarantined: ' || code, count(*)
    FROM (SELECT unnest(reason_codes) AS code FROM quarantine WHERE feed = 'health_checks') GROUP BY code
    UNION ALL SELECT CASE WHEN is_reading_kept THEN 'release refused: ' ELSE 'set aside: ' END || reject_reason,
                     count(*)
    FROM health_check_rejects GROUP BY ALL
),
expected AS (
    SELECT 'accepted' AS outcome, count(*) AS rows FROM truth WHERE fault IN ('', 'fever', 'early_release')
    UNION ALL SELECT 'release refused: early_release', count(*) FROM truth WHERE fault = 'early_release'
    UNION ALL SELECT 'set aside: not_reporters_person', count(*) FROM truth WHERE fault = 'other_community'
)
SELECT coalesce(e.outcome, o.outcome) AS outcome, coalesce(e.rows, 0) AS truth_rows,
       coalesce(o.rows, 0) AS found_rows
FROM expected AS e FULL JOIN outcomes AS o USING (outcome)
WHERE coalesce(e.rows, 0) + coalesce(o.rows, 0) > 0
ORDER BY outcome
"""  # noqa: S608 - constant SQL joined to constant SQL

CHECK_FEVER_SQL = CHECKS_TRUTH_SQL + """
, feverish AS (
    SELECT DISTINCT k.person_id FROM truth AS t JOIN keys AS k USING (row_key) WHERE t.fault = 'fever'
),
raised AS (
    SELECT DISTINCT person_id FROM core_category_candidates WHERE reason = 'health_check'
)
SELECT (SELECT count(*) FROM feverish) AS feverish,
       (SELECT count(*) FROM feverish JOIN raised USING (person_id)) AS raised,
       (SELECT count(*) FROM raised WHERE person_id NOT IN (SELECT person_id FROM feverish)) AS raised_without_truth,
       (SELECT count(*) FROM truth WHERE fault = 'missed') AS missed,
       (SELECT count(*) FROM followup_escalations WHERE answer_key = 'missing_checks') AS escalated_unchecked
"""  # noqa: S608 - constant SQL joined to constant SQL


def evaluate_health_checks(con: duckdb.DuckDBPyConnection, checks: Path) -> dict:
    outcomes = con.execute(CHECK_OUTCOMES_SQL, {"checks": str(checks)}).fetchall()
    cursor = con.execute(CHECK_FEVER_SQL, {"checks": str(checks)})
    names = [d[0] for d in cursor.description]
    return {"outcomes": outcomes, "fever": dict(zip(names, cursor.fetchone(), strict=True))}


def format_health_checks(report: dict) -> str:
    lines = ["health checks (健康监测) against what the sample offices reported",
             f"{'outcome':44s} {'truth':>7s} {'found':>7s}"]
    lines += [f"{outcome:44s} {truth:7d} {found:7d}" for outcome, truth, found in report["outcomes"]]
    f = report["fever"]
    lines.append(f"contacts with a feverish check {f['feverish']}: raised to fever patients by it {f['raised']} "
                 f"(raised with no such check in the truth: {f['raised_without_truth']}); days missed "
                 f"{f['missed']}, persons escalated for missing checks now {f['escalated_unchecked']}")
    return "\n".join(lines)
