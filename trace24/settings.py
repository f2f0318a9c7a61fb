"""What one run works with, read once and handed to every stage: ``RunSettings``.

What belongs here: turning a run's arguments (store, landing and output folders, as-of time, rule
profile, contracts folder) into the settings every stage reads, with every contract file read and
checked up front, so that a broken configuration stops a run before it touches any data. What does
not: what the stages do with them (``transforms/``), the order they run in (``flows/``).

A contracts folder (``--schemas``) is whole: feeds, column maps, the published tables, the list
layout, the linkage profile, the rule profiles, the facilities and the districts are all read from
it, as they are from the shipped one (``trace24/schemas/``) by default.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import duckdb

from trace24.schemas.contracts import SCHEMAS_DIR, Schemas, load_schemas
from trace24.schemas.published import Published, load_published
from trace24.schemas.rules import (
    DEFAULT_PROFILE,
    DistrictMap,
    Facilities,
    RuleProfile,
    load_district_map,
    load_facilities,
    load_rule_profile,
)
from trace24.transforms.contacts.exposures import default_as_of
from trace24.transforms.lists.community_lists import ListLayout, load_layout
from trace24.transforms.lists.risk_area_sheets import SheetLayout, load_sheet_layout
from trace24.transforms.persons.linkage import LinkageProfile, load_profile
from trace24.transforms.publish.snapshot import snapshot_path_for

__all__ = ["DEFAULT_PROFILE", "RunSettings"]


@dataclass(frozen=True)
class RunSettings:
    db_path: Path
    schemas: Schemas             # feed contracts and column maps
    published: Published         # the published tables' contracts
    rules: RuleProfile
    facilities: Facilities
    districts: DistrictMap       # district borders, for transfers
    layout: ListLayout           # list headers and wording
    area_sheet: SheetLayout      # the districts' 风险区域清单
    linkage: LinkageProfile
    review_csv: Path             # where the review queue is written for analysts
    reviewed_pairs: Path         # the analysts' decisions (read by the identity stage; may not exist)
    snapshot_path: Path
    landing_dir: Path | None = None
    out_dir: Path | None = None
    as_of: dt.datetime | None = None   # None: the end of the last delivery day, once ingested
    run_validation: bool = True

    @classmethod
    def build(cls, db_path: Path, *, landing_dir: Path | None = None, out_dir: Path | None = None,
              as_of: dt.datetime | None = None, profile: str | Path = DEFAULT_PROFILE,
              schemas_dir: Path | None = None, facilities_path: Path | None = None,
              linkage_path: Path | None = None, snapshot_path: Path | None = None,
              review_csv: Path | None = None, reviewed_pairs: Path | None = None,
              run_validation: bool = True) -> RunSettings:
        """Read every contract file the run needs; a broken one raises ``SchemaError`` naming it."""
        db_path = Path(db_path)
        root = Path(schemas_dir) if schemas_dir is not None else SCHEMAS_DIR
        return cls(
            db_path=db_path,
            schemas=load_schemas(root),
            published=load_published(root / "published"),
            rules=load_rule_profile(profile, root / "rules"),
            facilities=load_facilities(Path(facilities_path) if facilities_path else root / "facilities.yaml"),
            districts=load_district_map(root / "districts.yaml"),
            layout=load_layout(root / "community_lists.yaml"),
            area_sheet=load_sheet_layout(root / "community_lists.yaml"),
            linkage=load_profile(Path(linkage_path) if linkage_path else root / "linkage.yaml"),
            review_csv=Path(review_csv) if review_csv else db_path.with_name("link_review.csv"),
            reviewed_pairs=Path(reviewed_pairs) if reviewed_pairs else db_path.with_name("reviewed_pairs.csv"),
            snapshot_path=Path(snapshot_path) if snapshot_path else snapshot_path_for(db_path),
            landing_dir=Path(landing_dir) if landing_dir is not None else None,
            out_dir=Path(out_dir) if out_dir is not None else None,
            as_of=as_of,
            run_validation=run_validation,
        )

    @property
    def through(self) -> dt.date | None:
        """The last delivery day the run may see: deliveries of days before ``as_of``."""
        return (self.as_of - dt.timedelta(microseconds=1)).date() if self.as_of else None

    def with_as_of_from(self, con: duckdb.DuckDBPyConnection) -> RunSettings:
        """These settings with ``as_of`` fixed: as given, else the end of the last delivery day in the store."""
        return self if self.as_of is not None else dataclasses.replace(self, as_of=default_as_of(con))
