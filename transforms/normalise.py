"""Normalisers: SQL expressions that turn a raw text cell into a typed, canonical value.

What belongs here: one expression builder per field type of ``schemas/`` (code, text, person
name, ID number, phone, time, temperature, number, enum) and the DuckDB macros they use, so that
every feed normalises the same way, inside the database, at scan speed. What does not: which
column gets which type (the contracts), and what happens to a row that fails (``staged.py``).

Every builder takes the SQL expression of the raw column and returns SQL text. Only identifiers
and fixed patterns are written into SQL; values from the data and the configuration (time
formats, enum values) travel as bound parameters.
"""

from __future__ import annotations

import contextlib

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)

# Tried after a column map's own formats, in this order; 年月日/时分 and '/' are rewritten first.
BUILTIN_TIME_FORMATS = (
    "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H",
    "%Y%m%d%H%M%S", "%Y%m%d",
)


def _nfkc(values: pa.Array) -> pa.Array:
    return pc.utf8_normalize(values, form="NFKC")


def _check_digit_sum(digits17: str) -> str:
    terms = " + ".join(f"{w} * (ascii(substr({digits17}, {i + 1}, 1)) - 48)" for i, w in enumerate(ID_WEIGHTS))
    return f"({terms})"


def _builtin_formats_sql() -> str:
    return "[" + ", ".join(f"'{f}'" for f in BUILTIN_TIME_FORMATS) + "]"


MACROS = (
    # ID numbers: half-width, no separators, upper case; empty becomes NULL.
    r"""CREATE OR REPLACE TEMP MACRO t24_id_clean(s) AS
        nullif(upper(regexp_replace(t24_nfkc(s), '[\s\-_.·]', '', 'g')), '')""",
    f"""CREATE OR REPLACE TEMP MACRO t24_id_check_char(d17) AS
        substr('10X98765432', CAST({_check_digit_sum('d17')} % 11 AS INTEGER) + 1, 1)""",
    # 15-digit legacy numbers gain '19' and a check character; everything else stays as cleaned.
    r"""CREATE OR REPLACE TEMP MACRO t24_id_canonical(c) AS
        CASE WHEN regexp_full_match(c, '[0-9]{15}')
             THEN substr(c, 1, 6) || '19' || substr(c, 7) || t24_id_check_char(substr(c, 1, 6) || '19' || substr(c, 7))
             ELSE c END""",
    r"""CREATE OR REPLACE TEMP MACRO t24_id_status(c) AS
        CASE WHEN c IS NULL THEN 'missing'
             WHEN regexp_full_match(c, '[A-Z][A-Z0-9]{5,11}') THEN 'passport'
             WHEN regexp_full_match(c, '[0-9]{15}')
                  THEN CASE WHEN try_strptime('19' || substr(c, 7, 6), '%Y%m%d') IS NULL
                            THEN 'invalid_birth_date' ELSE 'upgraded_15' END
             WHEN regexp_full_match(c, '[0-9]{17}[0-9X]')
                  THEN CASE WHEN substr(c, 18, 1) <> t24_id_check_char(substr(c, 1, 17)) THEN 'invalid_checksum'
                            WHEN try_strptime(substr(c, 7, 8), '%Y%m%d') IS NULL THEN 'invalid_birth_date'
                            ELSE 'valid' END
             ELSE 'malformed' END""",
    # Phones: strip separators and the country prefix of a mobile; keep landlines as digits.
    r"""CREATE OR REPLACE TEMP MACRO t24_phone_clean(s) AS
        nullif(regexp_replace(t24_nfkc(s), '[\s\-()（）]', '', 'g'), '')""",
    r"""CREATE OR REPLACE TEMP MACRO t24_phone_kind(p) AS
        CASE WHEN p IS NULL THEN 'missing'
             WHEN regexp_full_match(p, '(\+86|0086|86)?1[3-9][0-9]{9}') THEN 'mobile'
             WHEN regexp_full_match(p, '(\+86|0086|86)?0[1-9][0-9]{8,10}') THEN 'landline'
             ELSE 'malformed' END""",
    r"""CREATE OR REPLACE TEMP MACRO t24_phone_canonical(p) AS
        CASE t24_phone_kind(p)
             WHEN 'mobile' THEN right(p, 11)
             WHEN 'landline' THEN regexp_replace(p, '^(\+86|0086|86)', '')
             ELSE p END""",
    # Times: a column map's own formats see the text as delivered; the built-in ones see 2020年2月3日 14时05分
    # rewritten as 2020-2-3 14:05 and '/' as '-'. Excel serials are days since 1899-12-30.
    r"""CREATE OR REPLACE TEMP MACRO t24_time_text(s) AS
        nullif(rtrim(trim(regexp_replace(
            replace(replace(replace(replace(replace(replace(replace(t24_nfkc(s), '年', '-'), '月', '-'), '日', ' '),
                    '时', ':'), '分', ':'), '秒', ''), '/', '-'),
            '\s+', ' ', 'g')), ':'), '')""",
    f"""CREATE OR REPLACE TEMP MACRO t24_parse_time(s, formats) AS
        CASE WHEN regexp_full_match(t24_time_text(s), '[2-7][0-9]{{4}}(\\.[0-9]+)?')
             THEN TIMESTAMP '1899-12-30' + to_seconds(CAST(round(CAST(t24_time_text(s) AS DOUBLE) * 86400) AS BIGINT))
             ELSE coalesce(try_strptime(trim(t24_nfkc(s)), list_concat(formats, ['%Y-%m-%d %H:%M:%S'])),
                           try_strptime(t24_time_text(s), {_builtin_formats_sql()})) END""",
    # Temperatures: '38.2', '38.2℃', '38.2 °C'; '382' is a missed decimal point.
    r"""CREATE OR REPLACE TEMP MACRO t24_temperature(s) AS
        CASE WHEN try_cast(regexp_replace(t24_nfkc(s), '\s|℃|°C|°|度|C$', '', 'g') AS DOUBLE) BETWEEN 34 AND 43
             THEN try_cast(regexp_replace(t24_nfkc(s), '\s|℃|°C|°|度|C$', '', 'g') AS DOUBLE)
             WHEN regexp_full_match(regexp_replace(t24_nfkc(s), '\s|℃|°C|°|度|C$', '', 'g'), '3[4-9][0-9]|4[0-2][0-9]')
             THEN CAST(regexp_replace(t24_nfkc(s), '\s|℃|°C|°|度|C$', '', 'g') AS DOUBLE) / 10
             END""",
)


def register(con: duckdb.DuckDBPyConnection) -> None:
    """Install the NFKC function and the normaliser macros on a connection."""
    with contextlib.suppress(duckdb.CatalogException):  # already installed on this connection
        con.create_function(
            "t24_nfkc", _nfkc, [duckdb.sqltype("VARCHAR")], duckdb.sqltype("VARCHAR"),
            type="arrow", side_effects=False,
        )
    for macro in MACROS:
        con.execute(macro)


# Expression builders, one per field type: raw SQL expression in, typed SQL expression out.

def text(raw: str) -> str:
    return rf"nullif(regexp_replace(trim(t24_nfkc({raw})), '\s+', ' ', 'g'), '')"


def code(raw: str) -> str:
    return rf"nullif(upper(regexp_replace(t24_nfkc({raw}), '\s+', '', 'g')), '')"


def person_name(raw: str) -> str:
    cleaned = text(raw)
    return rf"CASE WHEN regexp_matches({cleaned}, '\p{{Han}}') THEN replace({cleaned}, ' ', '') ELSE {cleaned} END"


def timestamp(raw: str, formats_param: str) -> str:
    return f"t24_parse_time({raw}, {formats_param})"


def date(raw: str, formats_param: str) -> str:
    return f"CAST(t24_parse_time({raw}, {formats_param}) AS DATE)"


def temperature(raw: str) -> str:
    return f"t24_temperature({raw})"


def decimal(raw: str) -> str:
    return f"try_cast(trim(t24_nfkc({raw})) AS DOUBLE)"


def integer(raw: str) -> str:
    number = rf"try_cast(regexp_replace(trim(t24_nfkc({raw})), '岁$', '') AS DOUBLE)"
    return f"CASE WHEN {number} = floor({number}) THEN CAST({number} AS INTEGER) END"


def enum(raw: str) -> str:
    return text(raw)


def id_number(raw: str) -> str:
    return f"t24_id_canonical(t24_id_clean({raw}))"


def id_status(raw: str) -> str:
    return f"t24_id_status(t24_id_clean({raw}))"


def id_birth_date(id_sql: str, status_sql: str) -> str:
    return (f"CASE WHEN {status_sql} IN ('valid', 'upgraded_15') "
            f"THEN CAST(strptime(substr({id_sql}, 7, 8), '%Y%m%d') AS DATE) END")


def id_sex(id_sql: str, status_sql: str) -> str:
    return (f"CASE WHEN {status_sql} IN ('valid', 'upgraded_15') "
            f"THEN CASE WHEN (ascii(substr({id_sql}, 17, 1)) - 48) % 2 = 1 THEN '男' ELSE '女' END END")


def phone(raw: str) -> str:
    return f"t24_phone_canonical(t24_phone_clean({raw}))"


def phone_kind(raw: str) -> str:
    return f"t24_phone_kind(t24_phone_clean({raw}))"


SQL_TYPES = {
    "code": "VARCHAR", "text": "VARCHAR", "person_name": "VARCHAR", "id_number": "VARCHAR",
    "phone": "VARCHAR", "timestamp": "TIMESTAMP", "date": "DATE", "temperature": "DOUBLE",
    "decimal": "DOUBLE", "integer": "INTEGER", "enum": "VARCHAR",
}
