"""The contracts, as data: YAML files in this folder (installed with the package), read by
``contracts.py`` (feeds and column maps), ``rules.py`` (rule profiles, facilities),
``published.py`` (the published tables) and ``tables.py`` (which stage owns and reads each table).
Nothing is loaded on import. See README.md here.
"""
