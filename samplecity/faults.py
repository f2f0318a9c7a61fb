"""How source systems mangle values: one renderer per fault class, and the planner that decides,
deterministically, which record gets which fault (every class at least a few times)."""

from __future__ import annotations

import datetime as dt

import numpy as np

from .base import PERSON_COLUMNS, fmt_ts

FULLWIDTH_DIGITS = str.maketrans("0123456789Xx", "０１２３４５６７８９Ｘｘ")
EXCEL_EPOCH = dt.datetime(1899, 12, 30)


def fullwidth_ascii(text: str) -> str:
    """ASCII letters, digits and spaces to their full-width forms (as a Chinese IME types them)."""
    return "".join("\u3000" if ch == " " else chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" else ch for ch in text)


def excel_serial(value: dt.datetime) -> float:
    return round((value - EXCEL_EPOCH).total_seconds() / 86400, 6)


def render_id(fault: str, value: str, param: int) -> str:
    if fault == "id_lowercase_x":
        return value[:-1] + "x"
    if fault == "id_fullwidth":
        return value.translate(FULLWIDTH_DIGITS)
    if fault == "id_separators":
        v = value
        return [f"{v[:6]} {v[6:14]} {v[14:]}", f"{v[:6]}-{v[6:14]}-{v[14:]}",
                f"{v[:4]} {v[4:8]} {v[8:12]} {v[12:16]} {v[16:]}", f"{v[:6]}-{v[6:]}"][param % 4]
    if fault == "id_15_digit":
        return value[:6] + value[8:17]
    if fault == "id_bad_check":   # one digit mistyped: the check character no longer fits
        pos = param % 17
        digit = (int(value[pos]) + 1 + (param // 17) % 9) % 10
        return value[:pos] + str(digit) + value[pos + 1:]
    if fault == "id_empty":
        return ""
    raise ValueError(fault)


def render_name(fault: str, value: str, param: int) -> str:
    if fault == "name_spaces":
        if value.isascii():
            return f" {value} "
        return [f" {value} ", f"{value[0]} {value[1:]}", f"{value}  ", f"{value[0]}  {value[1:]}"][param % 4]
    if fault == "name_fullwidth":
        if value.isascii():
            return fullwidth_ascii(value)
        return [f"{value[0]}\u3000{value[1:]}", f"{value}\u3000"][param % 2]
    raise ValueError(fault)


def render_phone(fault: str, value: str, param: int) -> str:
    if fault == "phone_plus86_dashes":
        return f"+86 {value[:3]}-{value[3:7]}-{value[7:]}"
    if fault == "phone_86_prefix":
        return [f"86 {value}", f"86{value}"][param % 2]
    if fault == "phone_0086":
        return [f"0086 {value}", f"0086{value}", f"0086-{value}"][param % 3]
    if fault == "phone_landline":
        return f"027-8{param % 10**7:07d}"
    if fault == "phone_empty":
        return ""
    raise ValueError(fault)


def render_time(fault: str, value: dt.datetime, param: int, xlsx: bool = False):
    if fault == "time_slash":
        return f"{value.year}/{value.month}/{value.day} {value:%H:%M}"
    if fault == "time_iso_seconds":
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if fault == "time_chinese":
        return f"{value.year}年{value.month}月{value.day}日 {value:%H}时{value:%M}分"
    if fault == "time_date_only":
        return value.strftime("%Y-%m-%d")
    if fault == "time_excel_serial":
        return excel_serial(value)
    raise ValueError(fault)


def render_temperature(fault: str, value: float, param: int, xlsx: bool = False):
    if fault == "temperature_celsius_sign":
        return f"{value:.1f}℃"
    if fault == "temperature_missing_decimal":
        return round(value * 10) if xlsx else str(round(value * 10))
    if fault == "temperature_text":
        return "发烧"
    raise ValueError(fault)


def render_fault(fault: str, column: str, values: dict, param: int, xlsx: bool = False):
    """The raw cell a source system prints for a faulty value (None when the value is empty)."""
    value = values.get(column)
    if fault.startswith("id_"):
        return render_id(fault, value, param) if value else None
    if fault.startswith("name_"):
        return render_name(fault, value, param) if value else None
    if fault.startswith("phone_"):
        return render_phone(fault, value, param) if value else None
    if fault.startswith("time_"):
        return render_time(fault, value, param, xlsx) if value else None
    if fault.startswith("temperature_"):
        return render_temperature(fault, value, param, xlsx) if value is not None else None
    if fault == "result_empty":
        return ""
    if fault == "checkout_before_checkin":
        return fmt_ts(values["入住时间"] - dt.timedelta(hours=3 + param % 40)) if value else None
    if fault == "discharge_before_admission":
        return fmt_ts(values["入院时间"] - dt.timedelta(days=1 + param % 5)) if value else None
    raise ValueError(fault)


# fault class -> (feeds, column role, minimum count, share of eligible records, quarantining)
ID_FEEDS = ["fever_clinic", "inpatients", "lab_results", "case_reports", "investigations", "lodging", "transport"]
PHONE_FEEDS = ["fever_clinic", "inpatients", "lab_results", "case_reports", "investigations"]
TIME_FEEDS = ["fever_clinic", "inpatients", "lab_results", "case_reports", "investigations", "lodging", "transport"]
PLAN = [
    ("time_excel_serial", ["fever_clinic"], "time", 4, 0.12),
    ("temperature_text", ["fever_clinic"], "temperature", 1, 0.004),
    ("temperature_celsius_sign", ["fever_clinic"], "temperature", 4, 0.05),
    ("temperature_missing_decimal", ["fever_clinic"], "temperature", 3, 0.02),
    ("result_empty", ["lab_results"], "result", 1, 0.002),
    ("identity_empty", ["lab_results"], "row", 1, 0.001),
    ("record_key_missing", ["lab_results"], "key", 1, 0.001),
    ("checkout_before_checkin", ["lodging"], "checkout", 1, 0.004),
    ("discharge_before_admission", ["inpatients"], "discharge", 1, 0.004),
    ("malformed_line", ["lodging"], "row", 1, 0.0),
    ("id_lowercase_x", ID_FEEDS, "id", 4, 0.15),
    ("id_15_digit", ID_FEEDS, "id", 4, 0.008),
    ("id_fullwidth", ID_FEEDS, "id", 4, 0.008),
    ("id_separators", ID_FEEDS, "id", 4, 0.008),
    ("id_bad_check", ID_FEEDS, "id", 3, 0.005),
    ("id_empty", ID_FEEDS, "id", 3, 0.004),
    ("name_spaces", ID_FEEDS, "name", 4, 0.012),
    ("name_fullwidth", ID_FEEDS, "name", 3, 0.005),
    ("phone_plus86_dashes", PHONE_FEEDS, "phone", 3, 0.008),
    ("phone_86_prefix", PHONE_FEEDS, "phone", 3, 0.006),
    ("phone_0086", PHONE_FEEDS, "phone", 3, 0.006),
    ("phone_landline", PHONE_FEEDS, "phone", 2, 0.003),
    ("phone_empty", PHONE_FEEDS, "phone", 3, 0.005),
    ("time_slash", TIME_FEEDS, "time", 4, 0.012),
    ("time_iso_seconds", TIME_FEEDS, "time", 4, 0.01),
    ("time_chinese", TIME_FEEDS, "time", 3, 0.006),
    ("time_date_only", TIME_FEEDS, "time", 2, 0.003),
    ("duplicate_row", ["lab_results", "transport", "inpatients", "lodging", "fever_clinic"], "row", 5, 0.003),
]
QUARANTINING = {"temperature_text", "result_empty", "identity_empty", "record_key_missing", "checkout_before_checkin",
                "discharge_before_admission", "malformed_line"}


def plan_faults(records: dict[str, list], critical: set[int], passports: set[int], rng: np.random.Generator,
                outsiders: set[int] = frozenset()) -> None:
    """Give chosen records one fault each (record.faults[column] = (fault, param), or row_fault).

    Only delivered records are considered. Faults that set a row aside go only to single-version
    records of register people no truth depends on; the foreigner's flight record shows a
    full-width name. Eligibility is worked out once per record, as numpy masks.
    """
    recs = [r for feed in records for r in records[feed] if r.rows]
    for r in recs:
        if r.feed == "transport" and r.person in passports:
            r.faults["姓名"] = ("name_fullwidth", 0)
    n = len(recs)
    feed_of = np.array([r.feed for r in recs]) if n else np.zeros(0, str)
    cols_of = [PERSON_COLUMNS.get(r.feed, {}) for r in recs]
    m = {k: np.zeros(n, bool) for k in ("single", "id", "x", "y19", "name", "phone", "time", "h01", "temp",
                                        "fever", "checkout", "discharge", "protected", "faulted")}
    times: list[list[str]] = []
    for i, (r, cols) in enumerate(zip(recs, cols_of, strict=True)):
        rows = [r.versions[vi][1] for _, vi in r.rows]
        v = rows[-1]

        def constant(col, rows=rows, v=v):
            return bool(col) and bool(v.get(col)) and all(row.get(col) == v[col] for row in rows)
        m["single"][i] = len(rows) == 1
        if constant(cols.get("id")) and r.person not in passports:
            value = v[cols["id"]]
            m["id"][i] = True
            m["x"][i] = value.endswith("X")
            m["y19"][i] = value[6:8] == "19"
        m["name"][i] = constant(cols.get("name"))
        m["phone"][i] = constant(cols.get("phone"))
        t = [c for c in cols.get("times", []) if v.get(c)]
        times.append(t)
        m["time"][i] = bool(t)
        m["h01"][i] = r.source == "H01"
        temp = v.get("体温")
        m["temp"][i] = temp is not None
        m["fever"][i] = temp is not None and temp >= 37.3
        m["checkout"][i] = bool(v.get("退房时间"))
        m["discharge"][i] = bool(v.get("出院时间"))
        m["protected"][i] = r.person in critical or r.person in outsiders or r.person in passports
        m["faulted"][i] = bool(r.faults or r.row_fault)
    for fault, feeds, role, minimum, share in PLAN:
        ok = np.isin(feed_of, feeds) & ~m["faulted"]
        if fault in QUARANTINING:   # a row set aside carries one fault, and no truth depends on it
            ok &= m["single"] & ~m["protected"]
        ok &= {"id": m["id"], "name": m["name"], "phone": m["phone"], "time": m["time"], "temperature": m["temp"],
               "checkout": m["checkout"], "discharge": m["discharge"]}.get(role, np.ones(n, bool))
        if fault == "id_lowercase_x":
            ok &= m["x"]
        elif fault == "id_15_digit":
            ok &= m["y19"]
        elif fault == "time_excel_serial":
            ok &= m["h01"]
        elif fault == "temperature_text":
            ok &= m["fever"]
        elif fault == "duplicate_row":
            ok &= ~m["h01"]
        eligible = np.flatnonzero(ok)
        if not len(eligible):
            continue
        count = min(len(eligible), max(minimum, round(share * len(eligible))))
        for i in np.sort(rng.choice(eligible, size=count, replace=False)).tolist():
            r = recs[i]
            m["faulted"][i] = True
            if role == "row":
                r.row_fault = fault
                continue
            column = {"id": cols_of[i].get("id"), "name": cols_of[i].get("name"), "phone": cols_of[i].get("phone"),
                      "temperature": "体温", "result": "检测结果", "key": "样本编号", "checkout": "退房时间",
                      "discharge": "出院时间"}.get(role)
            if role == "time":
                column = times[i][int(rng.integers(0, len(times[i])))]
            r.faults[column] = (fault, int(rng.integers(0, 10**6)))

