"""The stages, SQL-first and pure: each module reads tables and writes the tables its stage owns.

One folder per stage of the flow, in the order data moves (no module imports a later stage; a
test checks it): ``ingest/`` (landing → raw → staged), ``persons/`` (who each record is about,
their community), ``contacts/`` (cases, exposures, the contact graph), ``lists/`` (the four
categories, the community lists, the 24-hour clock), ``publish/`` (the read-only snapshot, the
run's summary). The ground they all stand on: ``database.py`` (the store, shared helpers),
``normalise.py`` (the SQL normalisers every connection gets) and ``csv_out.py`` (Excel-safe CSV).
Which stage owns and reads each table: ``trace24/schemas/tables.py``.
"""
