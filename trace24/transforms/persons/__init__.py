"""Persons: which person each staged record is about, and where each person belongs.

``identity.py`` (exact links, the persons table), ``linkage.py`` (Splink for records without a
valid ID, the review queue), ``named_contacts.py`` (contacts named by name at a ward or room),
``community.py`` (community assignment). Reads the ingest stage's tables only.
"""
