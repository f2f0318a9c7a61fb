"""Shared constants, clocks and helpers of the sample-city generator.

Everything random goes through :func:`np_rng` / :func:`py_rng`, seeded from the run seed and a
component name, so one component's draws never shift another's and a run is reproducible.
"""

from __future__ import annotations

import datetime as dt
import random
import zlib

import numpy as np

FIRST_DELIVERY = dt.date(2020, 2, 10)
"""The first delivery day; delivery day i is FIRST_DELIVERY + i days."""

BACKLOG_START = dt.datetime(2020, 1, 20)
"""Day 1 also delivers every record created since this time (the agencies' backlog)."""

REFERENCE_DAY = dt.date(2020, 2, 10)
"""Ages are computed against this day."""

TS_FORMAT = "%Y-%m-%d %H:%M"
DATE_FORMAT = "%Y-%m-%d"

DAY = dt.timedelta(days=1)
HOUR = dt.timedelta(hours=1)
MINUTE = dt.timedelta(minutes=1)

# Feed headers, exactly as the agencies print them (agency-extracts.md), in order.
HEADERS: dict[str, list[str]] = {
    "fever_clinic": ["就诊流水号", "医院编码", "医院名称", "就诊时间", "姓名", "性别", "年龄", "身份证号",
                     "联系电话", "现住址", "体温", "症状", "胸部CT", "白细胞计数", "淋巴细胞计数", "诊断", "去向"],
    "inpatients": ["住院号", "医院编码", "病区", "床号", "姓名", "身份证号", "联系电话", "入院时间", "出院时间",
                   "诊断", "病情分型"],
    "lab_results": ["样本编号", "姓名", "身份证号", "联系电话", "采样时间", "报告时间", "检测机构", "检测结果",
                    "Ct值ORF1ab", "Ct值N", "送检原因"],
    "case_reports": ["卡片编号", "姓名", "性别", "出生日期", "身份证号", "联系电话", "现住地址", "现住地址编码",
                     "发病日期", "诊断时间", "报告时间", "病例分类", "临床严重程度", "报告单位", "卡片状态"],
    "investigations": ["流调编号", "病例卡片编号", "病例身份证号", "接触者姓名", "接触者身份证号", "接触者电话",
                       "关系", "接触场所", "接触地点", "首次接触时间", "末次接触时间", "有效防护"],
    "lodging": ["旅馆编码", "旅馆名称", "旅馆地址", "房间号", "姓名", "证件类型", "证件号码", "入住时间", "退房时间"],
    "transport": ["交通方式", "车次航班", "出发日期", "车厢", "座位", "姓名", "证件号码", "出发站", "到达站",
                  "出发时间", "到达时间"],
    "place_scans": ["场所编码", "场所名称", "场所类型", "场所地址", "证件号码", "手机号", "扫码时间"],
    "residents": ["身份证号", "姓名", "性别", "出生日期", "联系电话", "户号", "与户主关系", "区", "街道", "社区",
                  "社区编码", "网格", "小区", "楼栋", "单元", "房号", "人口类型", "特殊人群", "更新时间"],
    "communities": ["社区编码", "社区名称", "街道", "区", "社区办电话", "网格数"],
    # The response feeds (samplecity/response.py), written after all of the above.
    "facility_beds": ["机构编码", "机构名称", "机构类型", "所在区", "地址", "收治对象", "重症床位", "重症已用",
                      "普通床位", "普通已用", "单间", "单间已用", "统计时间"],
    "vehicles": ["车辆编号", "所属区", "车辆类型", "座位数", "值班开始", "值班结束"],
    "isolation_checkins": ["登记编号", "隔离点编码", "房间号", "姓名", "身份证号", "联系电话", "入住时间", "离开时间"],
}

AGENCY_OF_FEED = {
    "fever_clinic": "hospital", "inpatients": "hospital",
    "lab_results": "cdc", "case_reports": "cdc", "investigations": "cdc",
    "lodging": "police", "transport": "police", "place_scans": "police",
    "residents": "civil", "communities": "civil",
    "facility_beds": "health", "isolation_checkins": "health", "vehicles": "command",
}

# The record-number column of each feed (empty where the source has none).
KEY_COLUMN = {
    "fever_clinic": "就诊流水号", "inpatients": "住院号", "lab_results": "样本编号", "case_reports": "卡片编号",
    "investigations": "流调编号", "residents": "身份证号", "communities": "社区编码",
}

# Which columns carry a person's identity in each feed (fault injection targets them).
PERSON_COLUMNS = {
    "fever_clinic": {"id": "身份证号", "name": "姓名", "phone": "联系电话", "times": ["就诊时间"]},
    "inpatients": {"id": "身份证号", "name": "姓名", "phone": "联系电话", "times": ["入院时间", "出院时间"]},
    "lab_results": {"id": "身份证号", "name": "姓名", "phone": "联系电话", "times": ["采样时间", "报告时间"]},
    "case_reports": {"id": "身份证号", "name": "姓名", "phone": "联系电话", "times": ["诊断时间", "报告时间"]},
    "investigations": {"id": "接触者身份证号", "name": "接触者姓名", "phone": "接触者电话",
                       "times": ["首次接触时间", "末次接触时间"]},
    "lodging": {"id": "证件号码", "name": "姓名", "phone": None, "times": ["入住时间", "退房时间"]},
    "transport": {"id": "证件号码", "name": "姓名", "phone": None, "times": ["出发时间", "到达时间"]},
    "residents": {"id": "身份证号", "name": "姓名", "phone": "联系电话", "times": []},
    "place_scans": {"id": "证件号码", "name": None, "phone": "手机号", "times": []},
    "isolation_checkins": {"id": "身份证号", "name": "姓名", "phone": "联系电话", "times": ["入住时间", "离开时间"]},
}

EXPECTED = {
    "id_lowercase_x": "repaired", "id_fullwidth": "repaired", "id_separators": "repaired",
    "id_15_digit": "repaired", "id_bad_check": "flagged", "id_empty": "flagged", "id_passport": "flagged",
    "name_spaces": "repaired", "name_fullwidth": "repaired",
    "phone_plus86_dashes": "repaired", "phone_86_prefix": "repaired", "phone_0086": "repaired",
    "phone_landline": "flagged", "phone_empty": "flagged",
    "time_slash": "repaired", "time_iso_seconds": "repaired", "time_chinese": "repaired",
    "time_date_only": "repaired", "time_excel_serial": "repaired",
    "checkout_before_checkin": "quarantined", "discharge_before_admission": "quarantined",
    "temperature_celsius_sign": "repaired", "temperature_missing_decimal": "repaired",
    "temperature_text": "quarantined", "result_empty": "quarantined",
    "duplicate_row": "duplicate", "corrected_row": "superseded", "deleted_card": "deleted",
    "malformed_line": "quarantined", "unreadable_file": "file_quarantined",
    "missing_feed": "warning", "empty_file": "warning",
    "identity_empty": "quarantined", "record_key_missing": "quarantined", "not_in_register": "flagged",
    # The response feeds' (samplecity/response.py).
    "beds_negative": "quarantined", "beds_fullwidth": "repaired", "beds_over_capacity": "flagged",
    "facility_type_unknown": "quarantined", "seats_zero": "quarantined",
    "census_twice": "outdated", "census_stopped": "stale",
}


def np_rng(seed: int, name: str) -> np.random.Generator:
    """A numpy generator for one component, independent of the other components' draws."""
    return np.random.Generator(np.random.PCG64([seed, zlib.crc32(name.encode())]))


def py_rng(seed: int, name: str) -> random.Random:
    """A stdlib generator for one component (string seeds hash with SHA-512: stable across runs)."""
    return random.Random(f"samplecity:{seed}:{name}")


def fmt_ts(value: dt.datetime) -> str:
    return value.strftime(TS_FORMAT)


def fmt_date(value: dt.date) -> str:
    return value.strftime(DATE_FORMAT)


def day_start(value: dt.date) -> dt.datetime:
    return dt.datetime(value.year, value.month, value.day)


def round_minute(value: dt.datetime) -> dt.datetime:
    """Truncate to the minute: source systems print minutes, and truth must match them."""
    return value.replace(second=0, microsecond=0)


def age_on(birth: dt.date, on: dt.date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


class Schedule:
    """The delivery calendar: which delivery (0-based day index) carries a record changed at ts."""

    def __init__(self, days: int):
        if days < 1:
            raise ValueError("days must be >= 1")
        self.days = days
        self.dates = [FIRST_DELIVERY + dt.timedelta(days=i) for i in range(days)]
        # A delivery holds what changed up to the end of its day (exported just before midnight).
        self.cutoffs = [day_start(d) + DAY for d in self.dates]
        self.horizon = self.cutoffs[-1]
        self.labels = [fmt_date(d) for d in self.dates]

    def index_of(self, ts: dt.datetime) -> int | None:
        """The delivery carrying a change at ts; None when it happens after the last one."""
        if ts >= self.horizon:
            return None
        for i, cutoff in enumerate(self.cutoffs):
            if ts < cutoff:
                return i
        return None

    def label(self, index: int) -> str:
        return self.labels[index]
