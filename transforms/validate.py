"""Great Expectations validation of staged loads, with suites generated from the contracts.

What belongs here: turning a feed contract into an expectation suite, validating the rows a load
put into ``staged_<feed>`` against it, recording the outcome in ``validation_results``, and
building the HTML data docs. The row-level gate is the staging query (every row, in SQL); this is
the independent check that what was loaded honours the contract, reported per file. What does
not: deciding the fate of rows (``staged.py``).

Large loads are validated on a deterministic sample (every n-th row), so validation costs the
same for a file of ten thousand rows and one of ten million.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import duckdb

from schemas import FeedContract
from transforms.database import staged_table

SAMPLE_ROWS = 50_000
ID_SHAPE = r"^[0-9A-Z]+$"
PHONE_SHAPE = r"^[0-9+]+$"
ID_STATUSES = ["valid", "upgraded_15", "invalid_checksum", "invalid_birth_date", "passport", "missing", "malformed"]
PHONE_KINDS = ["mobile", "landline", "missing", "malformed"]

log = logging.getLogger(__name__)


def expectations_for(contract: FeedContract) -> list:
    """The expectations a staged row of this feed must meet, derived field by field."""
    import great_expectations.expectations as gxe

    found = []
    for spec in contract.fields:
        column = spec.name
        if spec.required:
            found.append(gxe.ExpectColumnValuesToNotBeNull(column=column))
        if spec.type == "enum":
            found.append(gxe.ExpectColumnValuesToBeInSet(column=column, value_set=list(spec.values)))
        if spec.pattern:
            found.append(gxe.ExpectColumnValuesToMatchRegex(column=column, regex=spec.pattern))
        if spec.min is not None or spec.max is not None:
            found.append(gxe.ExpectColumnValuesToBeBetween(column=column, min_value=spec.min, max_value=spec.max))
        if spec.type == "temperature":
            found.append(gxe.ExpectColumnValuesToBeBetween(column=column, min_value=34, max_value=43))
        if spec.type == "id_number":
            found.append(gxe.ExpectColumnValuesToMatchRegex(column=column, regex=ID_SHAPE))
            found.append(gxe.ExpectColumnValuesToBeInSet(column=f"{column}_status", value_set=ID_STATUSES))
        if spec.type == "phone":
            found.append(gxe.ExpectColumnValuesToMatchRegex(column=column, regex=PHONE_SHAPE))
            found.append(gxe.ExpectColumnValuesToBeInSet(column=f"{column}_kind", value_set=PHONE_KINDS))
    return found


class Validator:
    """One Great Expectations file context per database, beside it (``<db stem>_gx/``)."""

    def __init__(self, db_path: Path):
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
        logging.getLogger("great_expectations").setLevel(logging.WARNING)
        import great_expectations as gx

        self._gx = gx
        root = Path(db_path).resolve().parent / f"{Path(db_path).stem}_gx"
        self.context = gx.get_context(mode="file", project_root_dir=str(root))
        self.context.variables.progress_bars = {"globally": False}
        self.source = self.context.data_sources.add_or_update_pandas("staged")
        self._checkpoints: dict[str, object] = {}
        self._results: list = []  # this run's validation results: the docs are built for these only

    def _checkpoint(self, contract: FeedContract):
        if contract.feed in self._checkpoints:
            return self._checkpoints[contract.feed]
        gx = self._gx
        names = [a.name for a in self.source.assets]
        asset = (self.source.get_asset(contract.feed) if contract.feed in names
                 else self.source.add_dataframe_asset(contract.feed))
        batch = next((b for b in asset.batch_definitions if b.name == "load"), None) or \
            asset.add_batch_definition_whole_dataframe("load")
        suite = gx.ExpectationSuite(name=contract.feed, expectations=expectations_for(contract))
        suite = self.context.suites.add_or_update(suite)
        definition = self.context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=contract.feed, data=batch, suite=suite))
        checkpoint = self.context.checkpoints.add_or_update(gx.Checkpoint(
            name=contract.feed, validation_definitions=[definition], actions=[],
            result_format={"result_format": "SUMMARY"}))
        self._checkpoints[contract.feed] = checkpoint
        return checkpoint

    def validate_load(self, con: duckdb.DuckDBPyConnection, contract: FeedContract, load_id: int,
                      source_file: str) -> bool:
        """Validate one load's staged rows; write ``validation_results``; True when all pass."""
        table = staged_table(contract.feed)
        total = con.execute(f"SELECT count(*) FROM {table} WHERE load_id = $1", [load_id]).fetchone()[0]
        if total == 0:
            return True
        step = max(1, -(-total // SAMPLE_ROWS))
        frame = con.execute(
            f"SELECT * FROM {table} WHERE load_id = $load_id AND source_row_number % $step = 0 "
            f"ORDER BY source_row_number" if step > 1 else
            f"SELECT * FROM {table} WHERE load_id = $load_id ORDER BY source_row_number",
            {"load_id": load_id, "step": step} if step > 1 else {"load_id": load_id},
        ).df()
        run_id = self._gx.core.run_identifier.RunIdentifier(run_name=f"load-{load_id}")
        result = self._checkpoint(contract).run(batch_parameters={"dataframe": frame}, run_id=run_id)
        rows = []
        self._results.extend(result.run_results.keys())
        for validation in result.run_results.values():
            for outcome in validation.results:
                config = outcome.expectation_config
                rows.append((load_id, contract.feed, source_file, config.type, config.kwargs.get("column"),
                             bool(outcome.success), outcome.result.get("element_count"),
                             outcome.result.get("unexpected_count")))
        con.executemany("INSERT INTO validation_results VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        if not result.success:
            failed = [f"{r[3]}({r[4]})" for r in rows if not r[5]]
            log.warning("%s: staged rows break the %s contract: %s", source_file, contract.feed, failed)
        return bool(result.success)

    def build_docs(self) -> str | None:
        """Add this run's validations to the HTML data docs; return the path of their index page.
        Pages of earlier runs stay as they were built: rebuilding every stored result would make each
        run slower than the last."""
        self.context.build_data_docs(resource_identifiers=self._results or None)
        sites = self.context.get_docs_sites_urls()
        url = sites[0]["site_url"] if sites else None
        return url.removeprefix("file://") if url else None

