"""Contacts: cases and their infectious windows, exposures by the profile's rules, the contact graph.

``exposures.py`` (cases, windows, exposures, contacts), ``contact_graph.py`` (chains, clusters,
venues: the epidemiologists' tables).
"""
