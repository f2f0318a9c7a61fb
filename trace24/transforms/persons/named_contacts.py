"""Core stage, named contacts: a contact a case named with nothing but a name, found where they met.

What belongs here: the rule that links an investigation's contact given by name alone (no ID
number, no phone) to the one person of that name who was at the named place, a hospital ward or a
hotel room, during the contact. A name identifies nobody in a city, but the patients of one ward
or the guests of one room in those days are few: the patient in the next bed, 陈福, is the 陈福
admitted to that ward. What does not: scoring (``linkage.py``), which never links a name alone.

A record with a name alone is a signature of its own (``identity.SIGNATURE_SQL``), so the link,
made per signature (``linkage.resolve``), is the record's own.
"""

from __future__ import annotations

import duckdb

from trace24.transforms.database import current_records, scalar
from trace24.transforms.persons.identity import NAME_ONLY

NAMED_CONTACTS_SQL = f"""
CREATE OR REPLACE TEMP TABLE named_contact_links AS
WITH named AS (
    -- Contacts a case named by name alone, with where and when they met.
    SELECT u.signature_id, i.contact_name, i.place,
           i.first_contact_at, coalesce(i.last_contact_at, i.first_contact_at) AS last_contact_at
    FROM unidentified_records AS u
    JOIN staged_investigations AS i USING (load_id, source_row_number)
    WHERE u.feed = 'investigations' AND {NAME_ONLY}  -- u's columns: the feed has no such names
      AND i.contact_name IS NOT NULL AND i.place IS NOT NULL AND i.first_contact_at IS NOT NULL
),
hospitals AS (
    -- A hospital's name as its fever clinic prints it (inpatient records carry only the code).
    SELECT hospital_code, min(hospital_name) AS hospital_name
    FROM staged_fever_clinic
    WHERE is_current AND hospital_name IS NOT NULL
    GROUP BY hospital_code
),
stays AS (
    -- Who was where, and when: a ward of a hospital, a room of a hotel.
    SELECT s.person_id, s.name, h.hospital_name AS place_name, s.ward AS spot,
           s.admitted_at AS from_at, coalesce(s.discharged_at, 'infinity'::TIMESTAMP) AS to_at
    FROM {current_records('inpatients', 's')} AS s
    JOIN hospitals AS h USING (hospital_code)
    WHERE s.name IN (SELECT contact_name FROM named) AND s.ward IS NOT NULL AND s.admitted_at IS NOT NULL
    UNION ALL
    SELECT l.person_id, l.name, l.hotel_name, l.room || '房',
           l.checked_in_at, coalesce(l.checked_out_at, 'infinity'::TIMESTAMP)
    FROM {current_records('lodging', 'l')} AS l
    WHERE l.name IN (SELECT contact_name FROM named) AND l.hotel_name IS NOT NULL AND l.room IS NOT NULL
      AND l.checked_in_at IS NOT NULL
),
matches AS (
    -- The persons of that name at that place during the contact.
    SELECT n.signature_id, count(DISTINCT s.person_id) AS persons, min(s.person_id) AS person_id
    FROM named AS n
    JOIN stays AS s
      ON s.name = n.contact_name AND contains(n.place, s.place_name) AND contains(n.place, s.spot)
     AND s.from_at <= n.last_contact_at AND s.to_at >= n.first_contact_at
    GROUP BY n.signature_id
)
SELECT signature_id, person_id FROM matches WHERE persons = 1
"""


def find_named_contacts(con: duckdb.DuckDBPyConnection) -> int:
    """Write the temp table ``named_contact_links`` (signature_id, person_id); returns its rows. Reads only."""
    con.execute(NAMED_CONTACTS_SQL)
    return scalar(con, "SELECT count(*) FROM named_contact_links")
