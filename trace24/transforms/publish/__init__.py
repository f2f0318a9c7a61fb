"""Publish: what a finished run hands to its readers.

``snapshot.py`` (the read-only snapshot of the published tables), ``run_report.py`` (the run's
summary in counts, stage times and peak memory).
"""
