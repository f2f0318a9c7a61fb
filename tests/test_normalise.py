"""The SQL normalisers against the Python reference (``trace24.idcard``) and the listed formats."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trace24 import idcard

# The pipeline's three steps for an ID cell: fold, clean, body number; then canonical and status.
_ID_PARTS = "FROM (SELECT c, t24_id_body_number(c) AS n FROM (SELECT t24_id_clean(t24_fold(?)) AS c))"
ID = f"t24_id_canonical(c, n) {_ID_PARTS}"
STATUS = f"t24_id_status(c, n) {_ID_PARTS}"

digits17 = st.text(alphabet="0123456789", min_size=17, max_size=17)
birth_dates = st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2019, 12, 31))
counties = st.sampled_from(["420102", "420106", "110105", "440524", "310101"])


@st.composite
def id_numbers(draw):
    return idcard.make_id_number(draw(counties), draw(birth_dates), draw(st.integers(0, 999)))


def test_published_examples_are_valid(sql):
    for number in ("11010519491231002X", "440524188001010014"):
        assert idcard.is_valid(number)
        assert sql(STATUS, number) == "valid"


@settings(max_examples=300, deadline=None)
@given(digits17)
def test_sql_check_character_matches_reference(sql, first17):
    assert sql("t24_id_check_number(CAST(? AS BIGINT))", first17) == idcard.check_character(first17)


@settings(max_examples=200, deadline=None)
@given(id_numbers(), st.integers(0, 16), st.integers(1, 9))
def test_any_single_digit_typo_is_caught(sql, number, position, shift):
    wrong_digit = str((int(number[position]) + shift) % 10)
    typo = number[:position] + wrong_digit + number[position + 1:]
    assert sql(STATUS, typo) in {"invalid_checksum", "invalid_birth_date"}
    assert not idcard.is_valid(typo)


def _full_width(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


@settings(max_examples=200, deadline=None)
@given(id_numbers(), st.sampled_from(["lower", "full", "spaces", "dashes", "padded"]))
def test_delivered_forms_normalise_to_the_canonical_number(sql, number, form):
    delivered = {
        "lower": number.lower(),
        "full": _full_width(number),
        "spaces": f"{number[:6]} {number[6:14]} {number[14:]}",
        "dashes": f"{number[:6]}-{number[6:14]}-{number[14:]}",
        "padded": f"  {number}\u3000",
    }[form]
    assert sql(ID, delivered) == number
    assert sql(STATUS, delivered) == "valid"


@settings(max_examples=200, deadline=None)
@given(counties, st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(1999, 12, 31)), st.integers(0, 999))
def test_fifteen_digit_numbers_upgrade_like_the_reference(sql, county, born, sequence):
    legacy = f"{county}{born:%y%m%d}{sequence:03d}"
    assert sql(ID, legacy) == idcard.upgrade_15_to_18(legacy)
    assert sql(STATUS, legacy) == "upgraded_15"
    assert idcard.is_valid(sql(ID, legacy))


@settings(max_examples=100, deadline=None)
@given(id_numbers())
def test_birth_date_and_sex_are_derived_from_the_number(sql, number):
    birth, sex = sql(f"t24_id_birth_date(n), CASE WHEN n % 2 = 1 THEN '男' ELSE '女' END {_ID_PARTS}", number)
    assert (birth, sex) == (idcard.birth_date_of(number), idcard.sex_of(number))


@pytest.mark.parametrize(("delivered", "status"), [
    ("", "missing"), (None, "missing"), ("E12345678", "passport"), ("g1234567", "passport"),
    ("1101051949", "malformed"), ("110105194912310021", "invalid_checksum"),
    ("11010519491331002X", "invalid_birth_date"),
])
def test_other_id_statuses(sql, delivered, status):
    assert sql(STATUS, delivered) == status


mobiles = st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True)


@settings(max_examples=200, deadline=None)
@given(mobiles, st.sampled_from(["{m}", "+86 {a}-{b}-{c}", "86 {m}", "0086{m}", "+86{m}", " {a} {b} {c} "]))
def test_mobile_numbers_in_every_delivered_form(sql, mobile, form):
    delivered = form.format(m=mobile, a=mobile[:3], b=mobile[3:7], c=mobile[7:])
    assert sql("t24_phone_canonical(t24_phone_clean(t24_fold(?)))", delivered) == mobile
    assert sql("t24_phone_kind(t24_phone_clean(t24_fold(?)))", delivered) == "mobile"


@pytest.mark.parametrize(("delivered", "value", "kind"), [
    ("027-85123456", "02785123456", "landline"), ("", None, "missing"), ("12345", "12345", "malformed"),
])
def test_landline_empty_and_malformed_phones(sql, delivered, value, kind):
    assert sql("t24_phone_canonical(t24_phone_clean(t24_fold(?)))", delivered) == value
    assert sql("t24_phone_kind(t24_phone_clean(t24_fold(?)))", delivered) == kind


@pytest.mark.parametrize(("delivered", "expected"), [
    ("2020/2/3 14:05", dt.datetime(2020, 2, 3, 14, 5)),
    ("2020-02-03 14:05:00", dt.datetime(2020, 2, 3, 14, 5)),
    ("2020年2月3日 14时05分", dt.datetime(2020, 2, 3, 14, 5)),
    ("2020年2月3日14时05分30秒", dt.datetime(2020, 2, 3, 14, 5, 30)),
    ("2020-02-03", dt.datetime(2020, 2, 3)),
    ("2020/2/3", dt.datetime(2020, 2, 3)),
    ("２０２０－０２－０３ １４：０５", dt.datetime(2020, 2, 3, 14, 5)),
    ("43864.5868055556", dt.datetime(2020, 2, 3, 14, 5)),
    ("43864", dt.datetime(2020, 2, 3)),
    ("2020-02-03T14:05:00", dt.datetime(2020, 2, 3, 14, 5)),
])
def test_every_listed_time_format(sql, delivered, expected):
    assert sql("t24_parse_time(t24_fold(?), CAST([] AS VARCHAR[]))", delivered) == expected


@pytest.mark.parametrize("delivered", ["昨天", "2020-13-45", "发烧", "14:05"])
def test_text_that_is_no_time_stays_null(sql, delivered):
    assert sql("t24_parse_time(t24_fold(?), CAST([] AS VARCHAR[]))", delivered) is None


def test_a_column_maps_own_format_comes_first(sql):
    assert sql("t24_parse_time(t24_fold(?), ?)", "03/02/2020 14:05", ["%d/%m/%Y %H:%M"]) == dt.datetime(2020, 2, 3, 14, 5)


@pytest.mark.parametrize(("delivered", "expected"), [
    ("38.2", 38.2), ("38.2℃", 38.2), ("38.2 °C", 38.2), ("382", 38.2), ("３８．２", 38.2), ("36", 36.0),
    ("发烧", None), ("", None), ("99", None), ("3820", None),
])
def test_temperatures(sql, delivered, expected):
    assert sql("t24_temperature(t24_temperature_text(t24_fold(?)))", delivered) == expected


@settings(max_examples=200, deadline=None)
@given(st.decimals(min_value=35, max_value=42, places=1))
def test_a_missed_decimal_point_is_repaired(sql, value):
    assert sql("t24_temperature(t24_temperature_text(t24_fold(?)))", str(value).replace(".", "")) == pytest.approx(float(value))


@pytest.mark.parametrize(("delivered", "expected"), [
    (" 张 伟 ", "张伟"), ("王\u3000芳", "王芳"), ("ＪＯＨＮ  SMITH", "JOHN SMITH"), ("", None), ("阿卜杜·克里木", "阿卜杜·克里木"),
])
def test_names(delivered, expected):
    import duckdb

    from trace24.transforms import normalise

    con = duckdb.connect()
    normalise.register(con)
    assert con.execute(f"SELECT {normalise.person_name(normalise.fold('$1'))}", [delivered]).fetchone()[0] == expected
    con.close()
