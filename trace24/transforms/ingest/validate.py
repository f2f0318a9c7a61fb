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

import hashlib
import json
import logging
import os
from pathlib import Path

import duckdb

from trace24.schemas.contracts import FeedContract
from trace24.transforms.database import staged_table

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
        try:   # made once; writing it again each run rewrites the context's configuration
            self.source = self.context.data_sources.get("staged")
        except (KeyError, ValueError):
            self.source = self.context.data_sources.add_or_update_pandas("staged")
        self._checkpoints: dict[str, object] = {}
        self._results: list = []  # this run's validation results: the docs are built for these only

    def _checkpoint(self, contract: FeedContract):
        """The feed's checkpoint: the stored one when its suite was made from the same contract,
        else (re)made. Writing suite, definition and checkpoint rewrites the context's YAML files:
        ~0.25 s a feed, 3 s of every run at fifteen feeds, for nothing when no contract changed."""
        if contract.feed in self._checkpoints:
            return self._checkpoints[contract.feed]
        from great_expectations.exceptions import DataContextError

        gx = self._gx
        expectations = expectations_for(contract)
        fingerprint = hashlib.sha256(json.dumps([e.configuration.to_json_dict() for e in expectations],
                                                sort_keys=True, default=str).encode()).hexdigest()
        try:
            stored = self.context.suites.get(contract.feed)
            checkpoint = self.context.checkpoints.get(contract.feed)
        except (DataContextError, KeyError, ValueError):
            stored = checkpoint = None
        if stored is not None and (stored.meta or {}).get("trace24_contract") == fingerprint:
            self._checkpoints[contract.feed] = checkpoint
            return checkpoint
        names = [a.name for a in self.source.assets]
        asset = (self.source.get_asset(contract.feed) if contract.feed in names
                 else self.source.add_dataframe_asset(contract.feed))
        batch = next((b for b in asset.batch_definitions if b.name == "load"), None) or \
            asset.add_batch_definition_whole_dataframe("load")
        suite = gx.ExpectationSuite(name=contract.feed, expectations=expectations,
                                    meta={"trace24_contract": fingerprint})
        suite = self.context.suites.add_or_update(suite)
        definition = self.context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=contract.feed, data=batch, suite=suite))
        checkpoint = self.context.checkpoints.add_or_update(gx.Checkpoint(
            name=contract.feed, validation_definitions=[definition], actions=[],
            result_format={"result_format": "SUMMARY"}))
        self._checkpoints[contract.feed] = checkpoint
        return checkpoint

    def _sample(self, con: duckdb.DuckDBPyConnection, contract: FeedContract, load_ids: list[int]):
        """The rows of these loads, each load sampled on its own (every n-th row up to SAMPLE_ROWS)."""
        table = staged_table(contract.feed)
        return con.execute(f"""
            WITH sizes AS (
                SELECT load_id, greatest(1, ceil(count(*) / $sample_rows))::BIGINT AS step
                FROM {table}
                WHERE load_id BETWEEN $first_load AND $last_load AND list_contains($load_ids, load_id)
                GROUP BY load_id
            )
            SELECT t.* FROM {table} AS t JOIN sizes USING (load_id)
            WHERE t.source_row_number % sizes.step = 0 OR sizes.step = 1
            ORDER BY t.load_id, t.source_row_number""",
            {"load_ids": load_ids, "first_load": min(load_ids), "last_load": max(load_ids),
             "sample_rows": SAMPLE_ROWS}).df()

    def _run(self, contract: FeedContract, frame, run_name: str):
        run_id = self._gx.core.run_identifier.RunIdentifier(run_name=run_name)
        result = self._checkpoint(contract).run(batch_parameters={"dataframe": frame}, run_id=run_id)
        self._results.extend(result.run_results.keys())
        outcomes = [outcome for validation in result.run_results.values() for outcome in validation.results]
        return bool(result.success), outcomes

    def validate_loads(self, con: duckdb.DuckDBPyConnection, contract: FeedContract,
                       loads: list[tuple[int, str]]) -> dict[int, bool]:
        """Validate loads of one feed (load_id, source_file); write ``validation_results`` per load;
        return load_id -> passed.

        Great Expectations costs ~0.5 s per validation whatever the rows (it builds its metric graph
        in Python), so the loads are validated together first. Expectations that hold for all rows
        hold for each load's: each load gets the outcome with its own row count. When any fails,
        each load's rows (from the same sample) are validated alone, so the failure is reported
        against its own file."""
        frame = self._sample(con, contract, [load_id for load_id, _ in loads])
        counts = frame.groupby("load_id").size().to_dict()
        verdicts = {load_id: True for load_id, _ in loads if load_id not in counts}  # no rows staged
        present = [(load_id, source_file) for load_id, source_file in loads if load_id in counts]
        if len(present) > 1:
            passed, outcomes = self._run(contract, frame, f"loads-{present[0][0]}-{present[-1][0]}")
            if passed and not any(outcome.result.get("unexpected_count") for outcome in outcomes):
                self._record(con, contract, [(load_id, source_file, outcomes, counts[load_id], 0)
                                             for load_id, source_file in present])
                return verdicts | {load_id: True for load_id, _ in present}
        for load_id, source_file in present:
            passed, outcomes = self._run(contract, frame[frame["load_id"] == load_id], f"load-{load_id}")
            self._record(con, contract, [(load_id, source_file, outcomes, None, None)])
            verdicts[load_id] = passed
        return verdicts

    def _record(self, con, contract: FeedContract, per_load: list[tuple]) -> None:
        """``validation_results`` rows: per load, each outcome with its counts (GE's own when the
        load was validated alone, else the load's rows and no unexpected value)."""
        rows = []
        for load_id, source_file, outcomes, element_count, unexpected_count in per_load:
            load_rows = [(load_id, contract.feed, source_file, o.expectation_config.type,
                          o.expectation_config.kwargs.get("column"), bool(o.success),
                          o.result.get("element_count") if element_count is None else element_count,
                          o.result.get("unexpected_count") if unexpected_count is None else unexpected_count)
                         for o in outcomes]
            failed = [f"{r[3]}({r[4]})" for r in load_rows if not r[5]]
            if failed:
                log.warning("%s: staged rows break the %s contract: %s", source_file, contract.feed, failed)
            rows += load_rows
        if rows:   # one statement: a city's offices return hundreds of files, five expectations each
            columns = [list(values) for values in zip(*rows, strict=True)]
            con.execute("INSERT INTO validation_results SELECT CAST(unnest($1) AS INTEGER), unnest($2), unnest($3), "
                        "unnest($4), CAST(unnest($5) AS VARCHAR), unnest($6), CAST(unnest($7) AS BIGINT), "
                        "CAST(unnest($8) AS BIGINT)", columns)

    def build_docs(self) -> str | None:
        """Add this run's validations to the HTML data docs; return the path of their index page.
        Pages of earlier runs stay as they were built: rebuilding every stored result would make each
        run slower than the last."""
        self.context.build_data_docs(resource_identifiers=self._results or None)
        sites = self.context.get_docs_sites_urls()
        url = sites[0]["site_url"] if sites else None
        return url.removeprefix("file://") if url else None

