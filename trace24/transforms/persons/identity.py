"""Core stage, identity: which person every staged record is about, with ids that never change.

What belongs here: the identity view of each staged row (``identity_records``, generated from the
``person`` roles of the contracts), the exact links (a valid or upgraded ID number, or a passport
number, is the person), the ledger of person keys that keeps every ``person_id`` stable from run to
run, and the ``persons`` table. What does not: the probabilistic model for records without a valid
ID (``linkage.py``) and where a person lives (``community.py``).

Cost: identity records and exact links are incremental (only loads not seen before), and so is
``person_values``, the exact-linked records counted per person and identity values: a person's
thousand scans under one phone are one row, so ``persons`` and the linkage profiles read a few rows
per person instead of every record. The probabilistic pass re-reads only records without a valid
ID, a small share of the whole.

Refresh: ``identity_changes`` lists the persons given new exact links since ``persons`` was last
written. When nothing else a person's row depends on changed (no new linkage, no new load of a
feed that places people: see ``PLACE_FEEDS``), only their rows of ``persons`` and
``person_communities`` are recomputed; a row depends on nothing but the person's own records and
the places, so the result is the one a rebuild gives (a test holds it to that).
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from trace24.schemas.contracts import FeedContract, Schemas
from trace24.transforms.database import (
    ensure_core_office_corrections,
    fingerprint,
    get_state,
    quote,
    scalar,
    set_state,
    staged_table,
    table_names,
)

# Link methods, strongest first; the first two never change once written.
EXACT_METHODS = ("exact_id", "exact_document")
LINK_METHODS = (*EXACT_METHODS, "reviewed", "named_contact", "probabilistic", "new_person")


def exact_link(column: str = "link_method") -> str:
    """SQL condition: the link method in ``column`` is exact (such a link never changes once written)."""
    methods = ", ".join(f"'{method}'" for method in EXACT_METHODS)
    return f"{column} IN ({methods})"

# Columns shared by the record tables: which staged row, and the values identity compares.
_RECORD = """feed VARCHAR NOT NULL, load_id INTEGER NOT NULL, source_row_number BIGINT NOT NULL,
        delivery_date DATE NOT NULL"""
_VALUES = "name VARCHAR, phone VARCHAR, birth_date DATE, sex VARCHAR, address VARCHAR"
# identity_records, a view (``identity_records_view``): its columns and their types, in order.
IDENTITY_RECORD_COLUMNS = (("feed", "VARCHAR"), ("load_id", "INTEGER"), ("source_row_number", "BIGINT"),
                           ("delivery_date", "DATE"), ("id_number", "VARCHAR"), ("id_status", "VARCHAR"),
                           ("person_key", "VARCHAR"), ("name", "VARCHAR"), ("phone", "VARCHAR"),
                           ("birth_date", "DATE"), ("sex", "VARCHAR"), ("address", "VARCHAR"))

IDENTITY_DDL = (
    """CREATE TABLE IF NOT EXISTS identity_loads (
        load_id INTEGER NOT NULL,
        feed VARCHAR NOT NULL,
        is_exact_linked BOOLEAN NOT NULL
    )""",
    # The records without a valid ID or passport number (a small share), kept apart as they arrive
    # so linkage and persons never scan every record to find them. A signature is the hash of
    # the values linkage compares: records that look the same are scored once.
    f"""CREATE TABLE IF NOT EXISTS unidentified_records (
        {_RECORD},
        signature_id VARCHAR NOT NULL, id_number VARCHAR,
        {_VALUES}
    )""",
    """CREATE TABLE IF NOT EXISTS person_keys (
        person_key VARCHAR NOT NULL,
        person_id BIGINT NOT NULL,
        first_delivery_date DATE NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS person_records (
        feed VARCHAR NOT NULL,
        load_id INTEGER NOT NULL,
        source_row_number BIGINT NOT NULL,
        person_id BIGINT NOT NULL,
        link_method VARCHAR NOT NULL,
        match_probability DOUBLE NOT NULL
    )""",
    # Exact links never change once written, so their counts only ever grow: merged in per run.
    """CREATE TABLE IF NOT EXISTS person_values (
        person_id BIGINT NOT NULL,
        name VARCHAR,
        phone VARCHAR,
        sex VARCHAR,
        birth_date DATE,
        address VARCHAR,
        id_number VARCHAR NOT NULL,
        link_methods VARCHAR[] NOT NULL,
        record_count BIGINT NOT NULL,
        first_delivery_date DATE NOT NULL,
        last_delivery_date DATE NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS person_merges (
        person_id BIGINT NOT NULL,
        merged_into_person_id BIGINT NOT NULL
    )""",
    # Persons given new exact links whose rows of persons (and linkage profile) are not yet redone.
    """CREATE TABLE IF NOT EXISTS identity_changes (
        person_id BIGINT NOT NULL
    )""",
    # Persons whose linkage profile may have changed since the profiles were last stored: a new
    # combination of values, or new records of a person seen with two values of a column (whose
    # most frequent value may flip). Anyone else's profile depends on values that did not move.
    """CREATE TABLE IF NOT EXISTS profile_changes (
        person_id BIGINT NOT NULL
    )""",
    # The persons known by ID with two or more values of a column (a few percent). It changes only
    # when a person gets a new combination of values.
    """CREATE TABLE IF NOT EXISTS contested_persons (
        person_id BIGINT NOT NULL
    )""",
    # The persons known by ID as the linkage model sees them (``linkage.PROFILES_QUERY``), kept
    # per person: only the persons in profile_changes are recomputed.
    """CREATE TABLE IF NOT EXISTS linkage_profiles (
        unique_id VARCHAR NOT NULL, label BIGINT NOT NULL, is_profile BOOLEAN NOT NULL,
        id_number VARCHAR, name VARCHAR, phone VARCHAR, birth_date DATE, sex VARCHAR, address VARCHAR
    )""",
)

# Feeds whose new loads can move anyone's community or register entry (the gazetteer, hotel
# addresses, case-report address codes, corrections that supersede a row of another person): a
# new load of one of them redoes every person's row.
PLACE_FEEDS = ("communities", "residents", "lodging", "case_reports")

STAGE = "identity"  # its rows in stage_state


# A record's signature: a hash of the identity values linkage compares, so forty scans by one phone
# are one comparison and an analyst's decision holds on every run. A record with a name and nothing
# else that tells people apart (no ID number, phone, birth date or address) is a signature of its
# own: a name identifies nobody, and two contacts called 张伟 named by two cases must not become one
# person (and join two unrelated cases' chains in the contact graph).
NAME_ONLY = "(id_number IS NULL AND phone IS NULL AND birth_date IS NULL AND address IS NULL)"
SIGNATURE_SQL = f"""'s' || left(md5(concat_ws('|', coalesce(id_number, ''), coalesce(name, ''), coalesce(phone, ''),
                    coalesce(birth_date::VARCHAR, ''), coalesce(sex, ''), coalesce(address, ''),
                    CASE WHEN {NAME_ONLY} THEN feed || ':' || load_id || ':' || source_row_number END)), 20)"""

UNIDENTIFIED_SQL = f"""
INSERT INTO unidentified_records
SELECT feed, load_id, source_row_number, delivery_date, {SIGNATURE_SQL} AS signature_id,
       id_number, name, phone, birth_date, sex, address
FROM identity_records
WHERE person_key IS NULL AND load_id IN (SELECT load_id FROM {{loads}})
"""

# Stores from before name-only records were signatures of their own (2026-11-24): each such record
# is signed anew; the first record of an old signature keeps its person id (through the ledger),
# the others become persons of their own, and linkage runs again.
STALE_SIGNATURES = f"FROM unidentified_records WHERE {NAME_ONLY} AND signature_id <> {SIGNATURE_SQL}"
RESIGN_SQL = (
    f"""CREATE OR REPLACE TEMP TABLE resigned AS
        SELECT feed, load_id, source_row_number, delivery_date, signature_id AS old_signature,
               {SIGNATURE_SQL} AS new_signature
        {STALE_SIGNATURES}""",
    """INSERT INTO person_keys
       SELECT 'sig:' || r.new_signature, k.person_id, r.delivery_date
       FROM resigned AS r
       JOIN person_keys AS k ON k.person_key = 'sig:' || r.old_signature
       WHERE 'sig:' || r.new_signature NOT IN (SELECT person_key FROM person_keys)
       QUALIFY row_number() OVER (PARTITION BY r.old_signature
                                  ORDER BY r.delivery_date, r.load_id, r.source_row_number, r.feed) = 1""",
    """UPDATE unidentified_records AS u SET signature_id = r.new_signature
       FROM resigned AS r
       WHERE u.feed = r.feed AND u.load_id = r.load_id AND u.source_row_number = r.source_row_number""",
    "DROP TABLE resigned",
)


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create the identity tables; fill the ones a store from an earlier version lacks from what it
    holds. Run it in a transaction: a table created but not yet filled must not be committed."""
    tables = table_names(con)
    for ddl in IDENTITY_DDL:
        con.execute(ddl)
    ensure_core_office_corrections(con)  # read by persons before the follow-up first writes it
    if "identity_loads" not in tables:
        return  # a new store: the tables fill as records arrive
    if "unidentified_records" not in tables:
        con.execute(UNIDENTIFIED_SQL.format(loads="identity_loads"))
    elif scalar(con, f"SELECT count(*) {STALE_SIGNATURES}"):
        for sql in RESIGN_SQL:
            con.execute(sql)
        set_state(con, STAGE, "linkage_inputs", None)  # the signatures changed: link again
    if "person_values" not in tables:
        con.execute(f"""
            CREATE OR REPLACE TEMP VIEW exact_links AS
            SELECT r.*, p.link_method
            FROM person_records AS p
            JOIN identity_records AS r USING (feed, load_id, source_row_number)
            WHERE {exact_link('p.link_method')}""")
        _merge_person_values(con, "exact_links")
        con.execute("DROP VIEW exact_links")
    elif "contested_persons" not in tables:
        con.execute(f"INSERT INTO contested_persons {CONTESTED_QUERY.format(scope='true')}")
        # Profiles not yet redone for the persons with new links: the list that named them before.
        con.execute("INSERT INTO profile_changes SELECT DISTINCT person_id FROM identity_changes")


def identity_query(contract: FeedContract) -> str:
    """One staged feed as identity records: the person's ID, name, mobile, birth date, sex, address
    (the columns of ``IDENTITY_RECORD_COLUMNS``).

    Birth date and sex come from the feed's own columns when it has them, else from the ID number;
    an ID whose check character fails still carries a birth date worth comparing (a typo usually
    sits elsewhere), so it is read when it parses as a date.
    """
    roles = contract.person
    ident = quote(roles["id_number"][0])

    def role(name: str) -> str:
        return quote(roles[name][0]) if name in roles else "NULL"

    phone = roles.get("phone", (None,))[0]
    phone_sql = f"CASE WHEN {quote(phone + '_kind')} = 'mobile' THEN {quote(phone)} END" if phone else "NULL"
    body_date = (f"CASE WHEN {quote(roles['id_number'][0] + '_status')} = 'invalid_checksum' "
                 f"THEN try_strptime(substr({ident}, 7, 8), '%Y%m%d')::DATE END")
    body_sex = (f"CASE WHEN {quote(roles['id_number'][0] + '_status')} = 'invalid_checksum' AND "
                f"regexp_full_match(substr({ident}, 17, 1), '[0-9]') "
                f"THEN CASE WHEN substr({ident}, 17, 1)::INTEGER % 2 = 1 THEN '男' ELSE '女' END END")
    address = ("nullif(concat_ws('', " + ", ".join(quote(c) for c in roles["address"]) + "), '')"
               if "address" in roles else "NULL")
    status = quote(roles["id_number"][0] + "_status")
    return f"""
        SELECT
            '{contract.feed}' AS feed, load_id, source_row_number, delivery_date,
            {ident} AS id_number,
            {status} AS id_status,
            CASE WHEN {status} IN ('valid', 'upgraded_15') THEN 'id:' || {ident}
                 WHEN {status} = 'passport' THEN 'passport:' || {ident} END AS person_key,
            {role('name')} AS name,
            {phone_sql} AS phone,
            coalesce({role('birth_date')}, {quote(roles['id_number'][0] + '_birth_date')}, {body_date}) AS birth_date,
            coalesce({role('sex')}, {quote(roles['id_number'][0] + '_sex')}, {body_sex}) AS sex,
            {address} AS address
        FROM {staged_table(contract.feed)}"""


def identity_records_view(schemas: Schemas) -> str:
    """``identity_records``: every staged row of a feed with a ``person`` role, as identity sees it.

    A view, computed where read: a filter on ``load_id`` reaches the staged tables, so the day's
    loads cost 0.2 s to read at a million residents, where storing every record again cost 2 s a
    day (and 30 M rows) for tables that already hold them."""
    columns = ", ".join(f"{name}::{kind} AS {name}" for name, kind in IDENTITY_RECORD_COLUMNS)
    return "CREATE OR REPLACE VIEW identity_records AS\n" + "\nUNION ALL\n".join(
        f"SELECT {columns} FROM ({identity_query(contract)})"
        for contract in schemas.feeds.values() if contract.person)


def add_identity_records(con: duckdb.DuckDBPyConnection, schemas: Schemas) -> int:
    """Take in the identity records of every staged load not seen before; returns how many."""
    ensure_tables(con)
    if "identity_records" in table_names(con):
        con.execute("DROP TABLE identity_records")  # stored by an earlier version: a view now
    con.execute(identity_records_view(schemas))
    con.execute("""CREATE OR REPLACE TEMP TABLE new_identity_loads AS
                   SELECT load_id, feed FROM load_audit WHERE list_contains($feeds, feed) AND file_status = 'loaded'
                   EXCEPT SELECT load_id, feed FROM identity_loads""",
                {"feeds": [contract.feed for contract in schemas.feeds.values() if contract.person]})
    con.execute(UNIDENTIFIED_SQL.format(loads="new_identity_loads"))
    con.execute("INSERT INTO identity_loads SELECT load_id, feed, false FROM new_identity_loads")
    added = scalar(con, "SELECT count(*) FROM identity_records "
                        "WHERE load_id IN (SELECT load_id FROM new_identity_loads)")
    con.execute("DROP TABLE new_identity_loads")
    return added


def link_exact(con: duckdb.DuckDBPyConnection) -> int:
    """Give every new ID or passport number a person_id, and link its records to it.

    New keys are numbered after the highest id so far, in order of first delivery, then key: ids are
    never reused or renumbered, and the same deliveries always give the same numbers.
    """
    # A view, not a table: on a first run the new records are every record of the store.
    con.execute("""
        CREATE OR REPLACE TEMP VIEW unlinked_records AS
        SELECT r.feed, r.load_id, r.source_row_number, r.delivery_date, r.person_key, r.id_number,
               r.name, r.phone, r.sex, r.birth_date, r.address,
               CASE WHEN r.id_status = 'passport' THEN 'exact_document' ELSE 'exact_id' END AS link_method
        FROM identity_records AS r
        WHERE r.person_key IS NOT NULL
          AND r.load_id IN (SELECT load_id FROM identity_loads WHERE NOT is_exact_linked)""")
    con.execute("""
        INSERT INTO person_keys
        WITH new_keys AS (
            SELECT person_key, min(delivery_date) AS first_delivery_date
            FROM unlinked_records
            WHERE person_key NOT IN (SELECT person_key FROM person_keys)
            GROUP BY person_key
        ),
        start AS (SELECT coalesce(max(person_id), 0) AS last_id FROM person_keys)
        SELECT person_key, last_id + row_number() OVER (ORDER BY first_delivery_date, person_key), first_delivery_date
        FROM new_keys, start""")
    before = scalar(con, "SELECT count(*) FROM person_records")
    con.execute("""INSERT INTO person_records
                   SELECT u.feed, u.load_id, u.source_row_number, k.person_id, u.link_method, 1.0
                   FROM unlinked_records AS u
                   JOIN person_keys AS k USING (person_key)""")
    _merge_person_values(con, "unlinked_records", note_changes=True)
    con.execute("DROP VIEW unlinked_records")
    linked = scalar(con, "SELECT count(*) FROM person_records") - before
    con.execute("UPDATE identity_loads SET is_exact_linked = true WHERE NOT is_exact_linked")
    return linked


CONTESTED_QUERY = """
SELECT person_id FROM person_values
WHERE {scope}
GROUP BY person_id
HAVING count(DISTINCT name) > 1 OR count(DISTINCT phone) > 1 OR count(DISTINCT sex) > 1
    OR count(DISTINCT birth_date) > 1 OR count(DISTINCT address) > 1
"""

_SAME_VALUES = ("v.person_id = n.person_id AND v.name IS NOT DISTINCT FROM n.name "
                "AND v.phone IS NOT DISTINCT FROM n.phone AND v.sex IS NOT DISTINCT FROM n.sex "
                "AND v.birth_date IS NOT DISTINCT FROM n.birth_date AND v.address IS NOT DISTINCT FROM n.address")


def _merge_person_values(con: duckdb.DuckDBPyConnection, records: str, note_changes: bool = False) -> None:
    """Add ``records`` (exact-linked identity records with person_key and link_method) to
    ``person_values``: counts add, dates widen. Grouped by person key before the person ids are
    joined: a first run's thirty million records become a few million groups first. Notes in
    ``profile_changes`` whose profile may have moved, keeps ``contested_persons``, and with
    ``note_changes`` notes every person of ``records`` in ``identity_changes`` (from the groups:
    reading the records again cost 0.5 s a day at a million residents)."""
    source = f"""
        WITH grouped AS (
            -- The key determines the number (id:<number>, passport:<number>); flags, not a
            -- list of methods, per group: list(DISTINCT) cost 6 s per 30 M records.
            SELECT person_key, name, phone, sex, birth_date, address, any_value(id_number) AS id_number,
                   bool_or(link_method = 'exact_document') AS is_document,
                   bool_or(link_method = 'exact_id') AS is_id, count(*) AS record_count,
                   min(delivery_date) AS first_delivery_date, max(delivery_date) AS last_delivery_date
            FROM {records}
            GROUP BY person_key, name, phone, sex, birth_date, address
        )
        SELECT k.person_id, g.name, g.phone, g.sex, g.birth_date, g.address, g.id_number,
               list_filter([CASE WHEN g.is_document THEN 'exact_document' END,
                            CASE WHEN g.is_id THEN 'exact_id' END], lambda method: method IS NOT NULL)
                   AS link_methods,
               g.record_count, g.first_delivery_date, g.last_delivery_date
        FROM grouped AS g
        JOIN person_keys AS k USING (person_key)
    """
    if not scalar(con, "SELECT count(*) FROM person_values"):
        # A first run: nothing to merge with, and MERGE cost 8 s more than INSERT at 2 M groups.
        con.execute(f"INSERT INTO person_values BY NAME {source}")
        con.execute("DELETE FROM contested_persons")
        con.execute(f"INSERT INTO contested_persons {CONTESTED_QUERY.format(scope='true')}")
        con.execute("INSERT INTO profile_changes SELECT DISTINCT person_id FROM person_values")
        if note_changes:  # person_values was empty: its persons are those of the records
            con.execute("INSERT INTO identity_changes SELECT DISTINCT person_id FROM person_values")
        return
    con.execute(f"CREATE OR REPLACE TEMP TABLE new_values AS {source}")
    con.execute(f"""CREATE OR REPLACE TEMP TABLE new_combinations AS
                    SELECT DISTINCT n.person_id FROM new_values AS n
                    WHERE NOT EXISTS (SELECT 1 FROM person_values AS v WHERE {_SAME_VALUES})""")
    con.execute("""INSERT INTO profile_changes
                   SELECT person_id FROM new_combinations
                   UNION
                   SELECT DISTINCT person_id FROM new_values
                   WHERE person_id IN (SELECT person_id FROM contested_persons)""")
    con.execute(f"""
        MERGE INTO person_values AS v
        USING new_values AS n
        ON {_SAME_VALUES}
        WHEN MATCHED THEN UPDATE SET
            id_number = least(v.id_number, n.id_number),
            link_methods = list_sort(list_distinct(list_concat(v.link_methods, n.link_methods))),
            record_count = v.record_count + n.record_count,
            first_delivery_date = least(v.first_delivery_date, n.first_delivery_date),
            last_delivery_date = greatest(v.last_delivery_date, n.last_delivery_date)
        WHEN NOT MATCHED THEN INSERT BY NAME""")
    # Only a new combination can make a person contested (or, never, uncontested).
    con.execute("DELETE FROM contested_persons WHERE person_id IN (SELECT person_id FROM new_combinations)")
    con.execute(f"""INSERT INTO contested_persons
                    {CONTESTED_QUERY.format(scope='person_id IN (SELECT person_id FROM new_combinations)')}""")
    if note_changes:
        con.execute("INSERT INTO identity_changes SELECT DISTINCT person_id FROM new_values")
    con.execute("DROP TABLE new_values")
    con.execute("DROP TABLE new_combinations")


# The value a person is most often recorded with; ties go to the greatest value, so reruns agree.
MOST_FREQUENT_COLUMNS = ("name", "phone", "sex", "birth_date", "address")


def value_spread_aggregates() -> str:
    """Per person, the least and greatest value of each column (equal: one value only)."""
    return ", ".join(f"min({c}) AS min_{c}, max({c}) AS max_{c}" for c in MOST_FREQUENT_COLUMNS)


def most_frequent_ctes(source: str, spread: str | None = None) -> str:
    """CTEs ending in ``top_values``: per person, the most frequent non-null value of each column
    of ``source`` (person_id, the columns and a row count ``n``).

    Most persons are recorded with one value per column (or none), which is then their most
    frequent: one grouping by person finds them (min = max). Only the persons with two or more
    values of a column count them, per (person, value): 5 s of grouping less per run at a million.
    ``spread`` names a CTE already grouped by person with ``value_spread_aggregates()``.
    """
    contested = ",\n".join(f"""top_{c} AS (
        SELECT person_id, arg_max({c}, (n, {c})) AS {c}
        FROM (SELECT person_id, {c}, sum(n) AS n FROM {source}
              WHERE {c} IS NOT NULL
                AND person_id IN (SELECT person_id FROM {spread or 'value_spread'} WHERE min_{c} <> max_{c})
              GROUP BY ALL)
        GROUP BY person_id
    )""" for c in MOST_FREQUENT_COLUMNS)
    usual = ",\n           ".join(f"CASE WHEN v.min_{c} = v.max_{c} THEN v.min_{c} ELSE top_{c}.{c} END AS {c}"
                                   for c in MOST_FREQUENT_COLUMNS)
    joins = "\n    ".join(f"LEFT JOIN top_{c} USING (person_id)" for c in MOST_FREQUENT_COLUMNS)
    own_spread = f"""value_spread AS MATERIALIZED (
        SELECT person_id, {value_spread_aggregates()} FROM {source} GROUP BY person_id
    ),
""" if spread is None else ""
    return f"""{own_spread}{contested},
top_values AS (
    SELECT person_id,
           {usual}
    FROM {spread or 'value_spread'} AS v
    {joins}
)"""


def most_frequent_joins() -> str:
    return "LEFT JOIN top_values USING (person_id)\n"


_METHOD_FLAGS = ", ".join(f"CASE WHEN bool_or(list_contains(link_methods, '{m}')) THEN '{m}' END"
                          for m in sorted(LINK_METHODS))

def changed_persons(column: str) -> str:
    """SQL condition: ``column`` is a person in identity_changes (no value is formatted in)."""
    return f"{column} IN (SELECT person_id FROM identity_changes)"


PERSONS_QUERY = f"""
WITH counted AS MATERIALIZED (
    -- One row per person and identity values: a person's thousand scans by one phone become one.
    -- Exact links were counted as they arrived (person_values); the few others are counted here.
    SELECT person_id, name, phone, sex, birth_date, address, record_count AS n, id_number,
           list_contains(link_methods, 'exact_document') AS has_passport,
           first_delivery_date, last_delivery_date, link_methods
    FROM person_values
    WHERE {{scope}}
    UNION ALL
    SELECT p.person_id, r.name, r.phone, r.sex, r.birth_date, r.address, count(*), NULL, false,
           min(r.delivery_date), max(r.delivery_date), list(DISTINCT p.link_method)
    FROM person_records AS p
    JOIN unidentified_records AS r USING (feed, load_id, source_row_number)
    WHERE NOT {exact_link('p.link_method')} AND {{scope_p}}
    GROUP BY p.person_id, r.name, r.phone, r.sex, r.birth_date, r.address
),
seen AS MATERIALIZED (
    SELECT person_id, min(id_number) AS id_number, bool_or(has_passport) AS has_passport, sum(n) AS record_count,
           min(first_delivery_date) AS first_delivery_date, max(last_delivery_date) AS last_delivery_date,
           -- Sorted and distinct; one flag per method is far cheaper than merging lists.
           list_filter([{_METHOD_FLAGS}], lambda method: method IS NOT NULL) AS link_methods,
           {value_spread_aggregates()}
    FROM counted
    GROUP BY person_id
),
{most_frequent_ctes("counted", spread="seen")},
corrected AS (
    -- An office's latest correction of each value (信息有误, ``core_office_corrections``): it saw the
    -- person, so its phone wins over the records', the register's too (which stays as delivered).
    SELECT person_id,
           arg_max(phone, (delivery_date, load_id, source_row_number)) FILTER (WHERE phone IS NOT NULL) AS phone,
           arg_max(address, (delivery_date, load_id, source_row_number)) FILTER (WHERE address IS NOT NULL) AS address
    FROM core_office_corrections
    WHERE {{scope}}
    GROUP BY person_id
),
register AS (
    -- The register's own values win: it is the civil-affairs record of the person (the latest
    -- entry where a person has two; a window, as arg_max over a struct cost 3 s per million).
    SELECT p.person_id,
           struct_pack(name := s.name, sex := s.sex, birth_date := s.birth_date, phone := s.phone,
                       grid := s.grid, compound := s.compound, building := s.building, unit := s.unit,
                       room := s.room, household_id := s.household_id) AS entry
    FROM person_records AS p
    JOIN staged_residents AS s USING (load_id, source_row_number)
    WHERE p.feed = 'residents' AND s.is_current AND NOT s.is_deleted AND {{scope_p}}
    QUALIFY row_number() OVER (PARTITION BY p.person_id
                               ORDER BY s.delivery_date DESC, s.load_id DESC, s.source_row_number DESC) = 1
)
SELECT person_id,
       s.id_number,
       CASE WHEN s.has_passport THEN 'passport' WHEN s.id_number IS NOT NULL THEN 'id_card' END AS id_type,
       coalesce(r.entry.name, top_values.name) AS name,
       coalesce(r.entry.sex, top_values.sex) AS sex,
       coalesce(r.entry.birth_date, top_values.birth_date) AS birth_date,
       coalesce(k.phone, r.entry.phone, top_values.phone) AS phone,
       r.person_id IS NOT NULL AS is_in_register,
       c.community_code, c.community_name, c.district,
       r.entry.grid AS grid, r.entry.compound AS compound, r.entry.building AS building, r.entry.unit AS unit,
       r.entry.room AS room, r.entry.household_id AS household_id,
       coalesce(k.address, top_values.address) AS address_text,
       c.assignment_method, c.assignment_reason,
       s.record_count, s.link_methods, s.first_delivery_date, s.last_delivery_date,
       NULL::BIGINT AS merged_into_person_id
FROM seen AS s
{most_frequent_joins()}LEFT JOIN register AS r USING (person_id)
LEFT JOIN corrected AS k USING (person_id)
LEFT JOIN person_communities AS c USING (person_id)
"""

PERSONS_SQL = f"""
CREATE OR REPLACE TABLE persons AS
{PERSONS_QUERY.format(scope="true", scope_p="true")}
UNION ALL
-- Ids that were merged into another person stay, pointing at it: no id a list ever showed disappears.
SELECT m.person_id, NULL, NULL, NULL, NULL, NULL, NULL, false, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       NULL, NULL, NULL, NULL, 0, [], NULL, NULL, m.merged_into_person_id
FROM person_merges AS m
WHERE m.person_id NOT IN (SELECT person_id FROM seen)
"""


# Only the persons given new exact links; merges are untouched, as no linkage ran.
CHANGED_PERSONS_SQL = (
    f"DELETE FROM persons WHERE {changed_persons('person_id')}",
    "INSERT INTO persons " + PERSONS_QUERY.format(scope=changed_persons("person_id"),
                                                  scope_p=changed_persons("p.person_id")),
)


def build_persons(con: duckdb.DuckDBPyConnection, changed_only: bool = False) -> int:
    """Write ``persons``: one row per person (community from ``person_communities``), or only the rows
    of the persons in identity_changes (see ``refresh_scope``); returns the count of persons."""
    for sql in CHANGED_PERSONS_SQL if changed_only else (PERSONS_SQL,):
        con.execute(sql)
    return scalar(con, "SELECT count(*) FROM persons WHERE merged_into_person_id IS NULL")


@dataclass(frozen=True)
class RefreshScope:
    """Which persons' rows this run recomputes, and why (for the run's log and result)."""

    changed_only: bool
    reason: str
    place_loads: str  # the fingerprint of the place feeds' loads this refresh is computed from


def refresh_scope(con: duckdb.DuckDBPyConnection, linkage_rescored: bool) -> RefreshScope:
    """Every person's row, or only those in identity_changes when nothing else they depend on moved."""
    place_loads = fingerprint(con.execute(
        "SELECT feed, load_id FROM load_audit WHERE list_contains($feeds, feed) AND file_status = 'loaded' "
        "ORDER BY ALL",
        {"feeds": list(PLACE_FEEDS)}).fetchall())
    stored = get_state(con, STAGE)
    if "place_loads" not in stored or not scalar(con, "SELECT count(*) FROM persons"):
        reason = "first refresh"
    elif linkage_rescored:
        reason = "linkage rescored"
    elif stored["place_loads"] != place_loads:
        reason = "new loads of a place feed"
    else:
        return RefreshScope(True, "new exact links only", place_loads)
    return RefreshScope(False, reason, place_loads)


# Each person's latest corrected values, as PERSONS_QUERY takes them (its ``corrected`` CTE), against
# what persons holds: only the persons a correction has not reached yet need any work.
STALE_CORRECTIONS_SQL = """
CREATE OR REPLACE TEMP TABLE stale_corrections AS
WITH corrected AS (
    SELECT person_id,
           arg_max(phone, (delivery_date, load_id, source_row_number)) FILTER (WHERE phone IS NOT NULL) AS phone,
           arg_max(address, (delivery_date, load_id, source_row_number)) FILTER (WHERE address IS NOT NULL) AS address
    FROM core_office_corrections
    GROUP BY person_id
)
SELECT k.person_id, k.phone, k.address IS NOT NULL AND k.address IS DISTINCT FROM p.address_text AS is_address_stale
FROM corrected AS k
JOIN persons AS p USING (person_id)
WHERE p.merged_into_person_id IS NULL
  AND (k.phone IS NOT NULL AND k.phone IS DISTINCT FROM p.phone
       OR k.address IS NOT NULL AND k.address IS DISTINCT FROM p.address_text)
"""


def note_corrected_persons(con: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    """Find the persons whose latest office correction (``core_office_corrections``) persons does
    not show yet; note those with a new address in identity_changes, for their communities and rows
    to be redone. Returns (new addresses, new phones alone). Read from the state, not from what
    this run delivered: a run stopped before its commit leaves them to the next."""
    con.execute(STALE_CORRECTIONS_SQL)
    con.execute("""INSERT INTO identity_changes
                   SELECT person_id FROM stale_corrections WHERE is_address_stale
                   EXCEPT SELECT person_id FROM identity_changes""")
    return con.execute("SELECT count(*) FILTER (WHERE is_address_stale), count(*) FILTER (WHERE NOT is_address_stale) "
                       "FROM stale_corrections").fetchone()


def apply_corrected_phones(con: duckdb.DuckDBPyConnection) -> None:
    """A new phone alone changes one column of the person's row, and moves nobody (communities are
    placed by register and addresses): set it, as a rebuild of the row would (the office's phone
    wins over every other, PERSONS_QUERY)."""
    con.execute("""UPDATE persons SET phone = s.phone FROM stale_corrections AS s
                   WHERE persons.person_id = s.person_id AND NOT s.is_address_stale""")


def forget_changes(con: duckdb.DuckDBPyConnection) -> None:
    """Every change noted is now in persons (a refresh outside the identity stage)."""
    con.execute("DELETE FROM identity_changes")


def finish_refresh(con: duckdb.DuckDBPyConnection, scope: RefreshScope) -> None:
    """Every change is now in persons: clear the list and keep what the refresh was computed from."""
    con.execute("DELETE FROM identity_changes")
    set_state(con, STAGE, "place_loads", scope.place_loads)
