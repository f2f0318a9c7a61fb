"""Resident ID numbers (GB 11643-1999) in plain Python.

This is the reference implementation: the sample-city generator uses it to make valid and
deliberately broken numbers, and the tests use it as the oracle for the SQL normalisers in
``trace24/transforms/normalise.py``, which are what the pipeline runs. Nothing here touches a database.
"""

from __future__ import annotations

import datetime as dt

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARACTERS = "10X98765432"


def check_character(first17: str) -> str:
    """The check character for the first 17 digits of an 18-character ID number."""
    if len(first17) != 17 or not first17.isascii() or not first17.isdigit():
        raise ValueError("need exactly 17 ASCII digits")
    total = sum(int(digit) * weight for digit, weight in zip(first17, WEIGHTS, strict=True))
    return CHECK_CHARACTERS[total % 11]


def make_id_number(county_code: str, birth_date: dt.date, sequence: int) -> str:
    """A valid 18-character ID number; an odd sequence is male, an even one female."""
    first17 = f"{county_code}{birth_date:%Y%m%d}{sequence:03d}"
    return first17 + check_character(first17)


def upgrade_15_to_18(legacy: str) -> str:
    """GB 11643-1989 15-digit number to the 18-character form (insert '19', add the check)."""
    if len(legacy) != 15 or not legacy.isascii() or not legacy.isdigit():
        raise ValueError("need exactly 15 ASCII digits")
    first17 = legacy[:6] + "19" + legacy[6:]
    return first17 + check_character(first17)


def is_valid(id_number: str) -> bool:
    """True for an 18-character number whose check character and birth date are right."""
    if len(id_number) != 18 or not id_number[:17].isascii() or not id_number[:17].isdigit():
        return False
    if id_number[17] != check_character(id_number[:17]):
        return False
    try:
        dt.date(int(id_number[6:10]), int(id_number[10:12]), int(id_number[12:14]))
    except ValueError:
        return False
    return True


def sex_of(id_number: str) -> str:
    """'男' or '女' from the sequence digit (odd = male)."""
    return "男" if int(id_number[16]) % 2 == 1 else "女"


def birth_date_of(id_number: str) -> dt.date:
    return dt.date(int(id_number[6:10]), int(id_number[10:12]), int(id_number[12:14]))
