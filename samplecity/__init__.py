"""A deterministic sample city with an outbreak and known truth (Wuhan-like, February 2020).

Writes the four agencies' deliveries into ``OUT/landing/<date>/<agency>/`` with the faults real
extracts have, and the answer key into ``OUT/truth/``. See data/sample/README.md.

    python -m samplecity --out data/sample --residents 3000 --days 5 --seed 2020
"""

from .city import generate_city
from .scans import write_place_scans_parquet

__all__ = ["generate_city", "write_place_scans_parquet"]
