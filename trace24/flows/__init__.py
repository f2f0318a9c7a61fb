"""Prefect flows: only wiring; the steps are in ``trace24/transforms/``.

No ``from __future__ import annotations`` in this package: Prefect builds a pydantic model of each
flow's parameters from its annotations, and with postponed (string) annotations a served run
fails with "model is not fully defined" (tests/test_service.py serves the flow and catches it).
"""
