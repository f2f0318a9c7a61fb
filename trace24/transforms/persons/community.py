"""Core stage, community assignment: the community office responsible for every person.

What belongs here: the rules that place a person, strongest first, and the reason written for
each; the gazetteer they read (the register's compounds, the communities feed). What does not:
who a person is (``identity.py``, ``linkage.py``) or the lists sent to offices (a later stage).

Rules, in order (``assignment_method``):
1. ``register``: the person's current row in the residents register.
2. ``office_correction``: the address an office gave for the person answering 信息有误 (the latest;
   ``core_office_corrections``), placed as rules 4-5 place a text.
3. ``address_code``: a case report's 12-digit address code naming a known community.
4. ``address_compound``: an address text naming a compound of the register (in its district,
   when the text names one); several communities with that compound name is no match.
5. ``address_community``: an address text naming a street and one of that street's communities
   (by its name, its stem, or the road it is named after: 吉庆里社区 on 吉庆路).
6. ``lodging``: the community of the hotel of the person's latest stay, found by rules 4-5.
7. ``review_candidates``: a person of their own (records waiting for review) whose candidates are
   together certain (their shares of each record add up to auto_link) and all registered in one
   community: a phone a father gives and his daughter scans with is their household's, whichever
   of them scanned.
8. ``unassigned``: the district's unassigned list when a district can be read from the person's
   addresses or hotel, else the city's; ``assignment_reason`` says why. Nobody is dropped.

Address matching joins on the first two characters of each gazetteer name against every
two-character window of the text, so it costs text length × matching names, not texts × names.
"""

from __future__ import annotations

import duckdb

from trace24.transforms.database import current_records
from trace24.transforms.persons.identity import changed_persons, exact_link

GAZETTEER_SQL = """
CREATE OR REPLACE TEMP TABLE gazetteer AS
WITH compounds AS (
    SELECT compound AS place_name, 'compound' AS place_kind, district, street,
           min(community_code) AS community_code, count(DISTINCT community_code) AS communities
    FROM staged_residents
    WHERE is_current AND NOT is_deleted AND compound IS NOT NULL AND community_code IS NOT NULL
    GROUP BY compound, district, street
),
community_names AS (
    -- A community is named in full (三阳社区), by its stem, as roads and venues are (三阳路), or by
    -- the road it is named after (吉庆里社区, 台北园社区, 首义新村社区: 吉庆路, 台北路, 首义路).
    SELECT DISTINCT name AS place_name, 'community' AS place_kind, district, street, community_code, 1 AS communities
    FROM staged_communities,
         unnest([community_name, regexp_replace(community_name, '(社区|村)$', ''),
                 regexp_replace(community_name, '(里|路|街|新村|园)?(社区|村)$', '') || '路']) AS t(name)
    WHERE is_current AND NOT is_deleted AND length(name) >= 2
)
SELECT *, substr(place_name, 1, 2) AS gram FROM compounds
UNION ALL
SELECT *, substr(place_name, 1, 2) AS gram FROM community_names
"""

# Every address text to place, with the person (or hotel) it belongs to.
MATCH_SQL = """
CREATE OR REPLACE TEMP TABLE address_matches AS
WITH texts AS (
    SELECT DISTINCT subject_id, address FROM address_texts WHERE length(address) >= 2
),
grams AS (
    SELECT subject_id, address, substr(address, i, 2) AS gram
    FROM texts, range(1, length(address)) AS r(i)
),
hits AS (
    SELECT DISTINCT g.subject_id, g.address, z.place_name, z.place_kind, z.district, z.street,
           z.community_code, z.communities
    FROM grams AS g
    JOIN gazetteer AS z USING (gram)
    WHERE contains(g.address, z.place_name)
),
consistent AS (
    -- A district or street the text names must be the place's own.
    SELECT h.*
    FROM hits AS h
    WHERE NOT EXISTS (SELECT 1 FROM districts AS d WHERE contains(h.address, d.district) AND d.district <> h.district)
      AND (h.place_kind = 'compound' OR contains(h.address, h.street))
),
per_kind AS (
    SELECT subject_id, place_kind, count(DISTINCT community_code) AS communities_found,
           min(community_code) AS community_code, max(communities) AS same_name_elsewhere
    FROM consistent
    GROUP BY subject_id, place_kind
)
SELECT subject_id,
       CASE WHEN place_kind = 'compound' THEN 'address_compound' ELSE 'address_community' END AS method,
       community_code
FROM per_kind
WHERE communities_found = 1 AND same_name_elsewhere = 1
"""

ASSIGN_QUERY = f"""
WITH current_persons AS (
    -- Every person with a record: those linked exactly are in person_values (grouped), the
    -- others have few records; a DISTINCT over all 30 M records cost 2 s at a million residents.
    SELECT person_id FROM person_values WHERE {{scope}}
    UNION
    SELECT person_id FROM person_records WHERE NOT {exact_link()} AND {{scope}}
),
-- Each place source read for the persons in scope only (pushed into the grouping, not after it).
register AS (
    SELECT person_id, arg_max(community_code, (delivery_date, load_id, source_row_number)) AS community_code
    FROM {current_records('residents', 's')}
    WHERE {{scope}}
    GROUP BY person_id
),
-- A deleted case card is withdrawn: its address places nobody.
address_code AS (
    SELECT person_id, arg_max(address_code, (delivery_date, load_id)) AS community_code
    FROM {current_records('case_reports', 'c')}
    WHERE address_code IN (SELECT community_code FROM communities) AND {{scope}}
    GROUP BY person_id
),
by_address AS (
    SELECT subject_id AS person_id, method, community_code,
           row_number() OVER (PARTITION BY subject_id ORDER BY method = 'address_compound' DESC) AS rank
    FROM address_matches
    WHERE subject_id NOT LIKE 'hotel:%' AND subject_id NOT LIKE 'corrected:%'
),
office_address AS (
    -- Rule 2: the address an office corrected (信息有误 with the address in 备注).
    SELECT CAST(substr(subject_id, length('corrected:') + 1) AS BIGINT) AS person_id, community_code
    FROM address_matches
    WHERE subject_id LIKE 'corrected:%'
    QUALIFY row_number() OVER (PARTITION BY subject_id ORDER BY method = 'address_compound' DESC) = 1
),
latest_stay AS (
    SELECT person_id, arg_max(hotel_code, (checked_in_at, load_id, source_row_number)) AS hotel_code
    FROM {current_records('lodging', 'l')}
    WHERE {{scope}}
    GROUP BY person_id
),
review_household AS (
    -- Rule 7: per record signature of a person of their own, its candidates' shares together and
    -- their communities (read for the candidates alone, whatever the scope).
    -- A candidate outside the register leaves the household uncertain: every one must be placed.
    SELECT own.person_id, bool_and(v.together >= $certain_at AND c.community_code IS NOT NULL) AS is_certain,
           count(DISTINCT c.community_code) AS communities, min(c.community_code) AS community_code
    FROM (SELECT DISTINCT p.person_id, u.signature_id
          FROM person_records AS p JOIN unidentified_records AS u USING (feed, load_id, source_row_number)
          WHERE p.link_method = 'new_person' AND {{scope_p}}) AS own
    JOIN (SELECT signature_id, sum(match_probability) OVER (PARTITION BY signature_id) AS together, person_id
          FROM link_review) AS v USING (signature_id)
    LEFT JOIN (SELECT person_id, arg_max(community_code, (delivery_date, load_id, source_row_number)) AS community_code
               FROM {current_records('residents', 'rc')}
               WHERE person_id IN (SELECT person_id FROM link_review)
               GROUP BY person_id) AS c ON c.person_id = v.person_id
    GROUP BY own.person_id
),
hotel_community AS (
    SELECT substr(subject_id, 7) AS hotel_code, community_code
    FROM address_matches
    WHERE subject_id LIKE 'hotel:%'
    QUALIFY row_number() OVER (PARTITION BY subject_id ORDER BY method = 'address_compound' DESC) = 1
),
named_district AS (
    SELECT a.subject_id AS person_id, min(d.district) AS district
    FROM address_texts AS a JOIN districts AS d ON contains(a.address, d.district)
    GROUP BY a.subject_id
),
placed AS (
    SELECT c.person_id,
           coalesce(r.community_code, oa.community_code, ac.community_code, ba.community_code, hc.community_code,
                    rh.community_code) AS community_code,
           CASE WHEN r.community_code IS NOT NULL THEN 'register'
                WHEN oa.community_code IS NOT NULL THEN 'office_correction'
                WHEN ac.community_code IS NOT NULL THEN 'address_code'
                WHEN ba.community_code IS NOT NULL THEN ba.method
                WHEN hc.community_code IS NOT NULL THEN 'lodging'
                WHEN rh.community_code IS NOT NULL THEN 'review_candidates'
                ELSE 'unassigned' END AS assignment_method,
           s.hotel_code, nd.district AS named_district,
           (SELECT min(d.district) FROM districts AS d JOIN address_texts AS h
                ON h.subject_id = 'hotel:' || s.hotel_code AND contains(h.address, d.district)) AS hotel_district
    FROM current_persons AS c
    LEFT JOIN register AS r USING (person_id)
    LEFT JOIN office_address AS oa USING (person_id)
    LEFT JOIN address_code AS ac USING (person_id)
    LEFT JOIN by_address AS ba ON ba.person_id = c.person_id::VARCHAR AND ba.rank = 1
    LEFT JOIN latest_stay AS s USING (person_id)
    LEFT JOIN hotel_community AS hc USING (hotel_code)
    LEFT JOIN review_household AS rh
           ON rh.person_id = c.person_id AND rh.is_certain AND rh.communities = 1
    LEFT JOIN named_district AS nd ON nd.person_id = c.person_id::VARCHAR
)
SELECT p.person_id, p.community_code, cm.community_name,
       coalesce(cm.district, p.named_district, p.hotel_district) AS district,
       p.assignment_method,
       CASE WHEN p.assignment_method <> 'unassigned' THEN NULL
            WHEN p.hotel_code IS NOT NULL THEN 'hotel address matches no community'
            WHEN p.named_district IS NOT NULL THEN 'address names a district but no compound or community'
            WHEN EXISTS (SELECT 1 FROM address_texts AS a WHERE a.subject_id = p.person_id::VARCHAR)
                THEN 'address matches no place in the register'
            ELSE 'no address, register entry or hotel stay' END AS assignment_reason
FROM placed AS p
LEFT JOIN communities AS cm USING (community_code)
ORDER BY p.person_id
"""
ASSIGN_SQL = "CREATE OR REPLACE TABLE person_communities AS " + ASSIGN_QUERY.format(scope="true", scope_p="true")
# Only the persons given new exact links (``identity.refresh_scope`` says when that suffices).
CHANGED_DELETE_SQL = f"DELETE FROM person_communities WHERE {changed_persons('person_id')}"
CHANGED_INSERT_SQL = "INSERT INTO person_communities " + ASSIGN_QUERY.format(
    scope=changed_persons("person_id"), scope_p=changed_persons("p.person_id"))


def assign_communities(con: duckdb.DuckDBPyConnection, certain_at: float, changed_only: bool = False
                       ) -> dict[str, int]:
    """Write ``person_communities``: one row per current person, or only the rows of the persons in
    identity_changes; returns persons per method. ``certain_at``: the linkage profile's auto_link,
    at which review candidates together are certain (rule 7)."""
    con.execute("""CREATE OR REPLACE TEMP TABLE communities AS
                   SELECT community_code, any_value(community_name) AS community_name, any_value(district) AS district
                   FROM staged_communities WHERE is_current AND NOT is_deleted GROUP BY community_code""")
    con.execute("""CREATE OR REPLACE TEMP TABLE districts AS
                   SELECT DISTINCT district FROM staged_communities WHERE is_current AND district IS NOT NULL""")
    con.execute(GAZETTEER_SQL)
    # People outside the register, by the address texts of their records; and every hotel.
    # Read from person_values (exact links, grouped) and the few other links, not from every record:
    # 0.3 s instead of 2.2 s at a million residents.
    con.execute("""CREATE OR REPLACE TEMP TABLE address_texts AS
                   WITH registered AS (
                       SELECT DISTINCT person_id FROM person_records WHERE feed = 'residents' AND {scope}
                   ),
                   addresses AS (
                       SELECT person_id, address FROM person_values WHERE address IS NOT NULL AND {scope}
                       UNION ALL
                       SELECT p.person_id, u.address
                       FROM person_records AS p
                       JOIN unidentified_records AS u USING (feed, load_id, source_row_number)
                       WHERE NOT {exact} AND u.address IS NOT NULL AND {scope_p}
                   )
                   SELECT DISTINCT person_id::VARCHAR AS subject_id, address
                   FROM addresses
                   WHERE person_id NOT IN (SELECT person_id FROM registered)
                   UNION ALL
                   -- An office's latest corrected address (信息有误), placed apart: it outranks the records'.
                   SELECT 'corrected:' || person_id,
                          arg_max(address, (delivery_date, load_id, source_row_number))
                   FROM core_office_corrections
                   WHERE address IS NOT NULL AND person_id NOT IN (SELECT person_id FROM registered) AND {scope}
                   GROUP BY person_id
                   UNION ALL
                   SELECT DISTINCT 'hotel:' || hotel_code, hotel_address
                   FROM staged_lodging WHERE is_current AND hotel_address IS NOT NULL""".format(
        scope=changed_persons("person_id") if changed_only else "true",
        scope_p=changed_persons("p.person_id") if changed_only else "true", exact=exact_link("p.link_method")))
    con.execute(MATCH_SQL)
    if changed_only:
        con.execute(CHANGED_DELETE_SQL)
    con.execute(CHANGED_INSERT_SQL if changed_only else ASSIGN_SQL, {"certain_at": certain_at})
    return dict(con.execute("SELECT assignment_method, count(*) FROM person_communities GROUP BY 1 ORDER BY 1")
                .fetchall())
