"""Normalisers: SQL expressions that turn a raw text cell into a typed, canonical value.

What belongs here: one expression builder per field type of ``schemas/`` (code, text, person
name, ID number, phone, time, temperature, number, enum) and the DuckDB macros they use, so that
every feed normalises the same way, inside the database, at scan speed. What does not: which
column gets which type (the contracts), and what happens to a row that fails (``staged.py``).

Every builder takes the SQL expression of a *folded* cell (``fold``: NFKC, trimmed, blank → NULL,
computed once per cell), or of its *prepared* text (``prepare``), and returns SQL text. Only identifiers
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


def _check_digit_sum(number17: str) -> str:
    """Σ digit × weight over a 17-digit BIGINT, by integer arithmetic (cheaper than 17 substrings)."""
    terms = " + ".join(f"{w} * (({number17} // {10 ** (16 - i)}) % 10)" for i, w in enumerate(ID_WEIGHTS))
    return f"({terms})"


def _builtin_formats_sql() -> str:
    return "[" + ", ".join(f"'{f}'" for f in BUILTIN_TIME_FORMATS) + "]"


# Folded by t24_fold: full-width ASCII forms, ideographic and no-break spaces, tabs and line breaks.
FULL_WIDTH = "".join(chr(c) for c in range(0xFF01, 0xFF5F)) + "\u3000\u00a0\t\r\n"
HALF_WIDTH = "".join(chr(c) for c in range(0x21, 0x7F)) + "     "


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


MACROS = (
    # Every raw cell is folded once: full-width forms to ASCII, ideographic and no-break spaces, tabs
    # and line breaks to spaces, trimmed, blank → NULL. translate() is slow per row, so it runs only
    # where such a character is present; pure-ASCII cells without tabs or line breaks skip even the
    # check (strlen counts bytes, length characters). Names get full NFKC on top (person_name).
    rf"""CREATE OR REPLACE TEMP MACRO t24_fold(s) AS
        nullif(trim(CASE WHEN strlen(s) = length(s) AND NOT contains(s, chr(9)) AND NOT contains(s, chr(10))
                              AND NOT contains(s, chr(13)) THEN s
                         WHEN regexp_matches(s, '[\x{{3000}}\x{{00A0}}\x{{FF01}}-\x{{FF5E}}\t\r\n]')
                         THEN translate(s, {_literal(FULL_WIDTH)}, {_literal(HALF_WIDTH)})
                         ELSE s END), '')""",
    # The macros below take folded text. A macro argument is expanded wherever it appears, so the
    # pipeline passes columns, computed once, never expressions (see PREPARE and ID_NUMBER_PARTS).
    # ID numbers: no separators, upper case; a clean 18-character number skips the rewriting.
    r"""CREATE OR REPLACE TEMP MACRO t24_id_clean(s) AS
        CASE WHEN regexp_full_match(s, '[0-9]{17}[0-9X]') THEN s
             ELSE nullif(upper(regexp_replace(s, '[\s\-_.·]', '', 'g')), '') END""",
    # The 17 digits before the check character as a number: of an 18-character number, or of a
    # 15-digit legacy number once '19' is inserted after the county code. NULL for anything else.
    r"""CREATE OR REPLACE TEMP MACRO t24_id_body_number(c) AS
        CASE WHEN regexp_full_match(c, '[0-9]{17}[0-9X]') THEN TRY_CAST(left(c, 17) AS BIGINT)
             WHEN regexp_full_match(c, '[0-9]{15}') THEN TRY_CAST(left(c, 6) || '19' || substr(c, 7) AS BIGINT)
             END""",
    f"""CREATE OR REPLACE TEMP MACRO t24_id_check_number(n17) AS
        substr('10X98765432', CAST({_check_digit_sum('n17')} % 11 AS INTEGER) + 1, 1)""",
    # Birth date digits 7-14 of the body, as a date, or NULL when they are no date.
    """CREATE OR REPLACE TEMP MACRO t24_id_birth_date(n17) AS
        CAST(try_strptime(CAST((n17 // 1000) % 100000000 AS VARCHAR), '%Y%m%d') AS DATE)""",
    # 15-digit legacy numbers become 18 characters; everything else stays as cleaned.
    """CREATE OR REPLACE TEMP MACRO t24_id_canonical(c, n17) AS
        CASE WHEN length(c) = 15 AND n17 IS NOT NULL
             THEN lpad(CAST(n17 AS VARCHAR), 17, '0') || t24_id_check_number(n17) ELSE c END""",
    r"""CREATE OR REPLACE TEMP MACRO t24_id_status(c, n17) AS
        CASE WHEN c IS NULL THEN 'missing'
             WHEN n17 IS NULL THEN CASE WHEN regexp_full_match(c, '[A-Z][A-Z0-9]{5,11}') THEN 'passport'
                                        ELSE 'malformed' END
             WHEN t24_id_birth_date(n17) IS NULL THEN 'invalid_birth_date'
             WHEN length(c) = 15 THEN 'upgraded_15'
             WHEN right(c, 1) <> t24_id_check_number(n17) THEN 'invalid_checksum'
             ELSE 'valid' END""",
    # Phones: strip separators and the country prefix of a mobile; keep landlines as digits.
    r"""CREATE OR REPLACE TEMP MACRO t24_phone_clean(s) AS
        CASE WHEN regexp_full_match(s, '1[3-9][0-9]{9}') THEN s
             ELSE nullif(regexp_replace(s, '[\s\-()（）]', '', 'g'), '') END""",
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
            replace(replace(replace(replace(replace(replace(replace(s, '年', '-'), '月', '-'), '日', ' '),
                    '时', ':'), '分', ':'), '秒', ''), '/', '-'),
            '\s+', ' ', 'g')), ':'), '')""",
    # ISO text, the commonest form, is cast first (the fastest parser); a column map's own formats
    # next, then Excel serials, then the rewriting of everything else. The cast is tested in a CASE,
    # not as the first argument of coalesce: coalesce ran the rewriting for every row (1.9 s against
    # 0.1 s per 2.3 M ISO cells), CASE runs the other branches only for the rows that need them.
    f"""CREATE OR REPLACE TEMP MACRO t24_parse_time(s, formats) AS
        CASE WHEN TRY_CAST(s AS TIMESTAMP) IS NOT NULL THEN TRY_CAST(s AS TIMESTAMP)
             ELSE coalesce(
                 CASE WHEN len(formats) > 0 THEN try_strptime(s, list_concat(formats, ['%Y-%m-%dT%H:%M:%S'])) END,
                 CASE WHEN regexp_full_match(s, '[2-7][0-9]{{4}}(\\.[0-9]+)?')
                      THEN TIMESTAMP '1899-12-30' + to_seconds(CAST(round(CAST(s AS DOUBLE) * 86400) AS BIGINT)) END,
                 try_strptime(t24_time_text(s), {_builtin_formats_sql()})) END""",
    # Temperatures, from the text with units and spaces stripped (t24_temperature_text):
    # '38.2', '38.2℃', '38.2 °C'; '382' is a missed decimal point.
    r"""CREATE OR REPLACE TEMP MACRO t24_temperature_text(s) AS regexp_replace(s, '\s|℃|°C|°|度|C$', '', 'g')""",
    r"""CREATE OR REPLACE TEMP MACRO t24_temperature(t) AS
        CASE WHEN try_cast(t AS DOUBLE) BETWEEN 34 AND 43 THEN try_cast(t AS DOUBLE)
             WHEN regexp_full_match(t, '3[4-9][0-9]|4[0-2][0-9]') THEN CAST(t AS DOUBLE) / 10
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


# Expression builders, one per field type: folded SQL expression in, typed SQL expression out.

def fold(raw: str) -> str:
    return f"t24_fold({raw})"


def text(folded: str) -> str:
    # Folding left only spaces as white space; a run of them becomes one.
    return f"CASE WHEN contains({folded}, '  ') THEN regexp_replace({folded}, ' +', ' ', 'g') ELSE {folded} END"


def code(folded: str) -> str:
    return f"nullif(upper(replace({folded}, ' ', '')), '')"


def person_name(folded: str) -> str:
    cleaned = text(f"CASE WHEN regexp_matches({folded}, '[^\\x00-\\x7F\\x{{4E00}}-\\x{{9FFF}}]') "
                   f"THEN t24_nfkc({folded}) ELSE {folded} END")
    return rf"CASE WHEN regexp_matches({folded}, '\p{{Han}}') THEN replace({cleaned}, ' ', '') ELSE {cleaned} END"


def timestamp(folded: str, formats_param: str) -> str:
    return f"t24_parse_time({folded}, {formats_param})"


def date(folded: str, formats_param: str) -> str:
    return f"CAST(t24_parse_time({folded}, {formats_param}) AS DATE)"


def temperature(prepared: str) -> str:
    return f"t24_temperature({prepared})"


def decimal(folded: str) -> str:
    return f"try_cast({folded} AS DOUBLE)"


def integer(folded: str) -> str:
    number = f"try_cast(regexp_replace({folded}, '岁$', '') AS DOUBLE)"
    return f"CASE WHEN {number} = floor({number}) THEN CAST({number} AS INTEGER) END"


def enum(folded: str) -> str:
    return text(folded)


def id_number(prepared: str, body: str) -> str:
    return f"t24_id_canonical({prepared}, {body})"


def id_status(prepared: str, body: str) -> str:
    return f"t24_id_status({prepared}, {body})"


def id_body(prepared: str) -> str:
    """The number-parts column an ID field needs before it can be typed (see t24_id_body_number)."""
    return f"t24_id_body_number({prepared})"


def id_birth_date(body: str, status_sql: str) -> str:
    return f"CASE WHEN {status_sql} IN ('valid', 'upgraded_15') THEN t24_id_birth_date({body}) END"


def id_sex(body: str, status_sql: str) -> str:
    # The 17th digit, the last of the body, is odd for men.
    sex = f"CASE WHEN {body} % 2 = 1 THEN '男' ELSE '女' END"
    return f"CASE WHEN {status_sql} IN ('valid', 'upgraded_15') THEN {sex} END"


def phone(prepared: str) -> str:
    return f"t24_phone_canonical({prepared})"


def phone_kind(prepared: str) -> str:
    return f"t24_phone_kind({prepared})"


# Intermediate text a type's builders share, computed once per cell: a macro argument used
# several times inside a macro is expanded, and so computed, every time it appears.
PREPARE = {
    "id_number": "t24_id_clean({folded})",
    "phone": "t24_phone_clean({folded})",
    "temperature": "t24_temperature_text({folded})",
}


def prepare(field_type: str, folded: str) -> str | None:
    template = PREPARE.get(field_type)
    return template.format(folded=folded) if template else None


SQL_TYPES = {
    "code": "VARCHAR", "text": "VARCHAR", "person_name": "VARCHAR", "id_number": "VARCHAR",
    "phone": "VARCHAR", "timestamp": "TIMESTAMP", "date": "DATE", "temperature": "DOUBLE",
    "decimal": "DOUBLE", "integer": "INTEGER", "enum": "VARCHAR",
}
