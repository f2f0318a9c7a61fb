"""Staged layer: raw text → typed, normalised rows, or quarantine with every reason.

What belongs here: the staging query of a feed, generated from its contract (import CTE, logic
CTEs, final select), the split between ``staged_<feed>`` and ``quarantine``, and record history:
a later version of a record supersedes the earlier one, which stays with ``is_current = false``;
a deleted record is kept and marked ``is_deleted``. What does not: reading files (``raw.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import duckdb

from trace24.schemas.contracts import ColumnMap, FeedContract
from trace24.transforms import normalise
from trace24.transforms.database import LINEAGE_COLUMNS, bound_parameters, quote, staged_columns, staged_table
from trace24.transforms.ingest.landing import LandedFile, MalformedRow

# Reason code → message; '{header}' is the source column as the agency names it.
REASON_MESSAGES = {
    "missing": "{header}: required value is empty",
    "invalid_timestamp": "{header}: not a recognised time",
    "invalid_date": "{header}: not a recognised date",
    "invalid_temperature": "{header}: not a body temperature in °C",
    "invalid_decimal": "{header}: not a number",
    "invalid_integer": "{header}: not a whole number",
    "invalid_enum": "{header}: not one of the allowed values",
    "invalid_pattern": "{header}: does not have the required form",
    "out_of_range": "{header}: outside the plausible range",
    "identity_empty": "no name, ID number or phone: the record identifies nobody",
    "time_order": "{header} is before {header2}",
    "after_delivery": "{header}: later than the day the file was delivered",
    "duplicate_row": "exact duplicate of an earlier row in the same file",
    "malformed_line": "the line has {found} fields where the header has {expected}",
    "unreadable_file": "the file cannot be read: {detail}",
}

_TYPED_PARSE = {"timestamp", "date", "temperature", "decimal", "integer"}


@dataclass
class StageResult:
    rows_loaded: int
    rows_quarantined: int
    rows_superseded: int


def _typed_expression(spec, folded: str, prepared: str) -> str:
    if spec.type in ("timestamp", "date"):
        return getattr(normalise, spec.type)(folded, "$time_formats")
    if spec.type == "id_number":
        return normalise.id_number(prepared, _body(spec.name))
    if spec.type in ("phone", "temperature"):
        return getattr(normalise, spec.type)(prepared)
    builders = {
        "code": normalise.code, "text": normalise.text, "person_name": normalise.person_name,
        "enum": normalise.enum, "decimal": normalise.decimal, "integer": normalise.integer,
    }
    return builders[spec.type](folded)


def _folded(name: str) -> str:
    return quote(f"{name}__folded")


def _prepared(name: str) -> str:
    return quote(f"{name}__prepared")


def _body(name: str) -> str:
    return quote(f"{name}__body")


def _typed(name: str) -> str:
    return quote(f"{name}__typed")


def _reason_checks(contract: FeedContract) -> list[str]:
    """One SQL expression per check, each yielding a reason code or NULL."""
    checks = []
    for spec in contract.fields:
        folded, typed = _folded(spec.name), _typed(spec.name)
        if spec.required:
            checks.append(f"CASE WHEN {folded} IS NULL THEN 'missing:{spec.name}' END")
        if spec.type in _TYPED_PARSE:
            checks.append(
                f"CASE WHEN {folded} IS NOT NULL AND {typed} IS NULL THEN 'invalid_{spec.type}:{spec.name}' END")
        if spec.type == "enum":
            checks.append(
                f"CASE WHEN {typed} IS NOT NULL AND NOT list_contains($enum_{spec.name}, {typed}) "
                f"THEN 'invalid_enum:{spec.name}' END"
            )
        if spec.pattern:
            checks.append(
                f"CASE WHEN {typed} IS NOT NULL AND NOT regexp_full_match({typed}, $pattern_{spec.name}) "
                f"THEN 'invalid_pattern:{spec.name}' END"
            )
        if spec.min is not None or spec.max is not None:
            low = "-1e308" if spec.min is None else f"$min_{spec.name}"
            high = "1e308" if spec.max is None else f"$max_{spec.name}"
            checks.append(
                f"CASE WHEN {typed} IS NOT NULL AND NOT ({typed} BETWEEN {low} AND {high}) "
                f"THEN 'out_of_range:{spec.name}' END"
            )
    if contract.identity:
        anyone = " OR ".join(f"{_typed(c)} IS NOT NULL" for c in contract.identity)
        checks.append(f"CASE WHEN NOT ({anyone}) THEN 'identity_empty' END")
    for earlier, later in contract.time_order:
        # A date delivered without a time reads as midnight; on the same day that is no contradiction.
        lo, hi = _typed(earlier), _typed(later)
        checks.append(
            f"CASE WHEN {hi} < {lo} "
            f"AND NOT ({hi} = date_trunc('day', {hi}) AND CAST({hi} AS DATE) = CAST({lo} AS DATE)) "
            f"THEN 'time_order:{later}:{earlier}' END"
        )
    for column in contract.not_after_delivery:
        # Delivered on a day: anything up to the end of that day, no later.
        checks.append(f"CASE WHEN {_typed(column)} >= CAST(delivery_date AS TIMESTAMP) + INTERVAL 1 DAY "
                      f"THEN 'after_delivery:{column}' END")
    checks.append("CASE WHEN copy_number > 1 THEN 'duplicate_row' END")
    return checks


def _value_table(spec) -> str:
    return quote(f"{spec.name}__values")


def staging_query(contract: FeedContract, source: str, typed_columns: frozenset[str] = frozenset()) -> str:
    """The staging query of a feed: every row of ``source`` (raw cells with lineage) with its
    typed values and the codes of every check it fails.

    A pipeline of projections: fold each cell once, prepare what a type's expressions share, type,
    derive, check. Raw columns travel along so quarantine can keep them. A ``low_cardinality``
    column is folded and typed once per distinct value, joined back by value. ``typed_columns``
    are source columns that already have their staged type (a Parquet TIMESTAMP): used as they are.
    """
    by_value = [f for f in contract.fields if f.low_cardinality and f.name not in typed_columns]
    value_tables = [
        f"""{_value_table(f)} AS (
        SELECT {quote(f.name)}, {_folded(f.name)},
               {_typed_expression(f, _folded(f.name), _prepared(f.name))} AS {_typed(f.name)}
        FROM (SELECT {quote(f.name)}, {normalise.fold(quote(f.name))} AS {_folded(f.name)}
              FROM (SELECT DISTINCT {quote(f.name)} FROM raw WHERE {quote(f.name)} IS NOT NULL))
    ),"""
        for f in by_value
    ]
    # A NULL cell finds no value row, and so gets NULL folded and typed cells, as folding it would.
    value_joins = "".join(f" LEFT JOIN {_value_table(f)} USING ({quote(f.name)})" for f in by_value)
    per_row = [f for f in contract.fields if f not in by_value]
    folded = [f"{quote(f.name) if f.name in typed_columns else normalise.fold(quote(f.name))} AS {_folded(f.name)}"
              for f in per_row]
    prepared = [f"{normalise.prepare(f.type, _folded(f.name))} AS {_prepared(f.name)}"
                for f in contract.fields if normalise.prepare(f.type, "x")]
    parts = [f"{normalise.id_body(_prepared(f.name))} AS {_body(f.name)}"
             for f in contract.fields if f.type == "id_number"]
    typed = []
    for spec in per_row:
        cell, ready = _folded(spec.name), _prepared(spec.name)
        expression = cell if spec.name in typed_columns else _typed_expression(spec, cell, ready)
        typed.append(f"{expression} AS {_typed(spec.name)}")
        if spec.type == "id_number":
            typed.append(f"{normalise.id_status(ready, _body(spec.name))} AS {_typed(spec.name + '_status')}")
        elif spec.type == "phone":
            typed.append(f"{normalise.phone_kind(ready)} AS {_typed(spec.name + '_kind')}")
    derived = []
    for spec in contract.fields:
        if spec.type == "id_number":
            body, status = _body(spec.name), _typed(spec.name + "_status")
            derived += [f"{normalise.id_birth_date(body, status)} AS {_typed(spec.name + '_birth_date')}",
                        f"{normalise.id_sex(body, status)} AS {_typed(spec.name + '_sex')}"]
    if contract.deleted_when:
        is_deleted = f"coalesce({_typed(contract.deleted_when[0])} = $deleted_value, false)"
    else:
        is_deleted = "false"
    check_list = _reason_checks(contract)
    checks = ",\n                ".join(check_list)
    any_failure = " OR ".join(f"({check}) IS NOT NULL" for check in check_list)
    outputs = ", ".join(f"{_typed(name)} AS {quote(name)}" for name, _ in staged_columns(contract))
    lineage = ", ".join(name for name, _ in LINEAGE_COLUMNS)
    raw_all = ", ".join(quote(f.name) for f in contract.fields)
    return f"""
    WITH raw AS (
        {source}
    ),
    -- Exact repeats of a row within the file. A window over every row sorts them all (4.8 s of
    -- CPU per 2.3 M rows); rows are first grouped by a hash of their cells, and only those whose
    -- hash repeats are numbered exactly, so a hash collision can never make a duplicate.
    -- A copy is a repeat within one file (load): several small files are staged together.
    repeated_hashes AS (
        SELECT hash(load_id, {raw_all}) AS row_hash FROM raw GROUP BY row_hash HAVING count(*) > 1
    ),
    copies AS (
        SELECT load_id, source_row_number,
               row_number() OVER (PARTITION BY load_id, {raw_all} ORDER BY source_row_number) AS copy_number
        FROM raw WHERE hash(load_id, {raw_all}) IN (SELECT row_hash FROM repeated_hashes)
    ),
    numbered AS (
        SELECT raw.*, coalesce(copies.copy_number, 1) AS copy_number
        FROM raw LEFT JOIN copies USING (load_id, source_row_number)
    ),
    {"".join(value_tables)}
    folded AS (
        SELECT *{', ' + ', '.join(folded) if folded else ''} FROM numbered{value_joins}
    ),
    prepared AS (
        SELECT *{', ' + ', '.join(prepared) if prepared else ''} FROM folded
    ),
    parts AS (
        SELECT *{', ' + ', '.join(parts) if parts else ''} FROM prepared
    ),
    typed_base AS (
        SELECT *{', ' + ', '.join(typed) if typed else ''} FROM parts
    ),
    typed AS (
        SELECT *{', ' + ', '.join(derived) if derived else ''} FROM typed_base
    ),
    checked AS (
        SELECT *,
               {is_deleted} AS is_deleted,
               -- Most rows fail nothing: build the list only for those that fail something.
               CASE WHEN coalesce({any_failure}, false)
                    THEN list_filter([
                {checks}
                    ], lambda code: code IS NOT NULL)
                    ELSE CAST([] AS VARCHAR[]) END AS reason_codes
        FROM typed
    )
    SELECT {lineage}, {outputs}, is_deleted, reason_codes
    FROM checked
    """


def query_parameters(contract: FeedContract, column_map: ColumnMap) -> dict:
    params: dict = {"time_formats": list(column_map.time_formats)}
    for spec in contract.fields:
        if spec.type == "enum":
            params[f"enum_{spec.name}"] = list(spec.values)
        if spec.pattern:
            params[f"pattern_{spec.name}"] = spec.pattern.removeprefix("^").removesuffix("$")
        if spec.min is not None:
            params[f"min_{spec.name}"] = spec.min
        if spec.max is not None:
            params[f"max_{spec.name}"] = spec.max
    if contract.deleted_when:
        params["deleted_value"] = contract.deleted_when[1]
    return params


def reason_message(code: str, column_map: ColumnMap, **details) -> str:
    kind, _, rest = code.partition(":")
    columns = rest.split(":") if rest else []
    headers = [column_map.header_of(c) for c in columns]
    template = REASON_MESSAGES.get(kind, kind)
    return template.format(
        header=headers[0] if headers else "", header2=headers[1] if len(headers) > 1 else "", **details
    )


def stage_loads(con: duckdb.DuckDBPyConnection, contract: FeedContract, column_map: ColumnMap,
                load_ids: list[int], source: str, source_params: dict,
                typed_columns: frozenset[str] = frozenset()) -> dict[int, StageResult]:
    """Stage the rows of loads read through one column map; quarantine the failures. Superseding
    older versions is a step of its own (``supersede``), once for every load staged together.

    ``source`` is a query yielding the loads' raw cells under canonical names plus lineage, with
    its own bound parameters (the raw table for text files, the archived file for Parquet);
    ``typed_columns`` are those of its cells that already have their staged type. Staging a
    hundred small files in one query costs what staging one does: the query's planning, not its
    rows, is most of a small file's cost.
    """
    query = staging_query(contract, source, typed_columns)
    params = {**query_parameters(contract, column_map), **source_params}
    con.execute(f"CREATE OR REPLACE TEMP TABLE staging AS {query}", bound_parameters(query, params))
    columns = [name for name, _ in LINEAGE_COLUMNS] + [name for name, _ in staged_columns(contract)]
    column_list = ", ".join(quote(c) for c in columns)
    con.execute(
        f"INSERT INTO {staged_table(contract.feed)} ({column_list}, is_current, is_deleted) "
        f"SELECT {column_list}, true, is_deleted FROM staging WHERE len(reason_codes) = 0"
    )
    _quarantine_failures(con, contract, column_map, source, source_params)
    counts = {load_id: (loaded, quarantined) for load_id, loaded, quarantined in con.execute(
        "SELECT load_id, count(*) FILTER (WHERE len(reason_codes) = 0), count(*) FILTER (WHERE len(reason_codes) > 0) "
        "FROM staging GROUP BY load_id").fetchall()}
    con.execute("DROP TABLE staging")
    return {load_id: StageResult(*counts.get(load_id, (0, 0)), 0) for load_id in load_ids}


def _quarantine_failures(con, contract: FeedContract, column_map: ColumnMap, source: str,
                         source_params: dict) -> None:
    """Quarantine the failed rows with their reasons and their raw cells, read again from the
    source for those rows only (staging does not carry every raw cell of every row)."""
    codes = {c for (c,) in con.execute(
        "SELECT DISTINCT unnest(reason_codes) FROM staging WHERE len(reason_codes) > 0").fetchall()}
    if not codes:
        return
    con.execute("CREATE OR REPLACE TEMP TABLE reason_text (code VARCHAR, message VARCHAR)")
    con.executemany("INSERT INTO reason_text VALUES (?, ?)",
                    [(code, reason_message(code, column_map)) for code in sorted(codes)])
    headers = [(f.name, column_map.header_of(f.name)) for f in contract.fields]
    # As text, whatever the source type: a typed Parquet cell is kept as its text would be.
    raw_json = "json_object(" + ", ".join(
        f"$h_{i}, CAST(raw.{quote(name)} AS VARCHAR)" for i, (name, _) in enumerate(headers)) + ")"
    params = {f"h_{i}": header for i, (_, header) in enumerate(headers)}
    params.update(agency=contract.agency, feed=contract.feed)
    params.update(bound_parameters(source, source_params))
    con.execute(
        f"""
        INSERT INTO quarantine
        WITH failed AS (
            SELECT * FROM staging WHERE len(reason_codes) > 0
        ),
        codes AS (
            SELECT load_id, source_row_number, unnest(reason_codes) AS code,
                   generate_subscripts(reason_codes, 1) AS code_position
            FROM failed
        ),
        messages AS (
            SELECT codes.load_id, codes.source_row_number,
                   list(reason_text.message ORDER BY code_position) AS reasons
            FROM codes JOIN reason_text USING (code)
            GROUP BY codes.load_id, codes.source_row_number
        )
        SELECT failed.load_id, failed.delivery_date, $agency, $feed, failed.source_file,
               failed.source_row_number, failed.reason_codes, messages.reasons, {raw_json}
        FROM failed
        JOIN messages USING (load_id, source_row_number)
        JOIN ({source}) AS raw USING (load_id, source_row_number)
        ORDER BY failed.load_id, failed.source_row_number
        """,
        params,
    )
    con.execute("DROP TABLE reason_text")


def quarantine_malformed(con, contract: FeedContract, landed: LandedFile, load_id: int,
                         malformed: list[MalformedRow]) -> int:
    """Lines that cannot be split into the header's columns, kept whole with their reason."""
    rows = [
        (load_id, landed.delivery_date, contract.agency, contract.feed, landed.relative_path, m.row_number,
         ["malformed_line"], [REASON_MESSAGES["malformed_line"].format(found=len(m.fields), expected=m.expected)],
         json.dumps({"fields": m.fields}, ensure_ascii=False))
        for m in malformed
    ]
    if rows:
        con.executemany("INSERT INTO quarantine VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    return len(rows)


def quarantine_file(con, contract: FeedContract, landed: LandedFile, load_id: int, detail: str) -> None:
    con.execute(
        "INSERT INTO quarantine VALUES (?, ?, ?, ?, ?, NULL, ['unreadable_file'], ?, NULL)",
        [load_id, landed.delivery_date, contract.agency, contract.feed, landed.relative_path,
         [REASON_MESSAGES["unreadable_file"].format(detail=detail)]],
    )


def supersede(con, contract: FeedContract, load_ids: list[int]) -> dict[int, int]:
    """Mark every version of the keys in these loads but the latest as not current; return, per
    load, the versions it made not current, as if the loads had been staged one after another."""
    if not contract.versioned:
        return {load_id: 0 for load_id in load_ids}
    flipped = _supersede(con, contract, load_ids)
    return {load_id: flipped.get(load_id, 0) for load_id in load_ids}


def _supersede(con, contract: FeedContract, load_ids: list[int]) -> dict[int, int]:
    """Versions are ordered by delivery day, then file, then row, so a late delivery of an older day
    never overrides a newer correction.

    Several loads staged together flip what staging them in load order would have: a version is
    made not current by the first of the loads touching its key that comes no earlier than the
    version itself and than the first version that outranks it.
    """
    table = staged_table(contract.feed)
    key_columns = [quote(c) for c in contract.record_key]
    key = ", ".join(key_columns)
    s_key = ", ".join(f"s.{c}" for c in key_columns)

    def match(a: str, b: str) -> str:
        return " AND ".join(f"{a}.{c} IS NOT DISTINCT FROM {b}.{c}" for c in key_columns)

    if len(load_ids) == 1:
        flipped_by = "$first_load"  # one load: every flip is its own, no attribution to compute
    else:
        flipped_by = (f"(SELECT min(b.load_id) FROM load_rows AS b "
                      f"WHERE {match('b', 'flips')} AND b.load_id >= flips.threshold)")
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE superseded AS
        WITH load_rows AS (
            SELECT load_id, {key} FROM {table}
            WHERE load_id BETWEEN $first_load AND $last_load AND list_contains($load_ids, load_id)
        ),
        -- Only keys with more than one version need ranking: those seen in an earlier load, and
        -- those repeated within these. A first delivery of a million records ranks nothing.
        seen_before AS (
            SELECT DISTINCT {key} FROM load_rows AS k
            WHERE EXISTS (SELECT 1 FROM {table} AS s
                          WHERE NOT list_contains($load_ids, s.load_id) AND {match('s', 'k')})
        ),
        repeated_here AS (
            SELECT {key} FROM load_rows GROUP BY {key} HAVING count(*) > 1
        ),
        load_keys AS (
            SELECT * FROM seen_before UNION SELECT * FROM repeated_here
        ),
        versions AS (
            SELECT s.rowid AS row_id, s.is_current, s.load_id, {s_key},
                   row_number() OVER (PARTITION BY {s_key} ORDER BY s.delivery_date DESC, s.source_file DESC,
                                                             s.source_row_number DESC) AS version_rank
            FROM {table} AS s SEMI JOIN load_keys AS k ON {match('s', 'k')}
        ),
        ranked AS (
            SELECT *, greatest(load_id, min(load_id) OVER (
                       PARTITION BY {key} ORDER BY version_rank
                       ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)) AS threshold
            FROM versions
        ),
        flips AS (
            SELECT * FROM ranked WHERE version_rank > 1 AND is_current
        )
        SELECT row_id, {flipped_by} AS flipped_by FROM flips
        """,
        {"load_ids": load_ids, "first_load": min(load_ids), "last_load": max(load_ids)},
    )
    con.execute(f"UPDATE {table} SET is_current = false FROM superseded WHERE {table}.rowid = superseded.row_id")
    counts = dict(con.execute("SELECT flipped_by, count(*) FROM superseded GROUP BY flipped_by").fetchall())
    con.execute("DROP TABLE superseded")
    return counts
