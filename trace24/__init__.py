"""trace24: agency extracts to four-categories lists within 24 hours."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
"""The checkout this package runs from (schemas/ and data/ live beside it)."""
