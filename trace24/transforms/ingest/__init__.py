"""Ingest: landing folder → raw (as delivered, with lineage) → staged (typed, checked) or quarantine.

``landing.py`` finds and reads files, ``raw.py`` keeps them as delivered, ``staged.py`` types and
checks them, ``load.py`` loads one file in one transaction, ``validate.py`` runs the Great
Expectations suites. Nothing here knows about persons.
"""
