"""From events to feed records: one Record per source record, with its versions over time (a
record changed later is delivered again with the same record number)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np

from .base import BACKLOG_START, HOUR, Schedule
from .geo import HOSPITALS
from .people import KIND_CONTACT_ONLY, Population
from .world import World


@dataclass(eq=False)
class Record:
    feed: str
    key: str                 # the source record number ('' where the source has none)
    person: int              # whose record it is (-1: nobody's)
    versions: list[tuple[dt.datetime, dict]]   # (changed at, typed values by Chinese column)
    source: str = ""         # fever clinics: the hospital whose export carries it
    faults: dict[str, tuple[str, int]] = field(default_factory=dict)
    row_fault: str = ""      # duplicate_row, malformed_line, identity_empty
    rows: list[tuple[int, int]] = field(default_factory=list)   # (delivery, version) actually delivered


def person_values(pop: Population, p: int) -> tuple[str, str, str]:
    return pop.name[p], pop.id_number[p], pop.phone[p]


def build_records(w: World, seed: int) -> dict[str, list[Record]]:
    pop = w.pop
    rng = np.random.Generator(np.random.PCG64([seed, 77]))
    out: dict[str, list[Record]] = {f: [] for f in ("fever_clinic", "inpatients", "lab_results", "case_reports",
                                                     "investigations", "lodging", "transport", "residents",
                                                     "communities")}
    for v in w.visits:
        name, idn, phone = person_values(pop, v.person)
        vals = {"就诊流水号": v.number, "医院编码": v.hospital, "医院名称": HOSPITALS[v.hospital].name,
                "就诊时间": v.time, "姓名": name, "性别": pop.sex(v.person), "年龄": pop.age(v.person, v.time.date()),
                "身份证号": idn, "联系电话": phone, "现住址": v.address, "体温": v.temperature, "症状": v.symptoms,
                "胸部CT": v.ct, "白细胞计数": v.wbc, "淋巴细胞计数": v.lymph, "诊断": v.diagnosis,
                "去向": v.disposition}
        versions = [(v.time + HOUR, vals)]
        if v.phone_fix:
            fixed_at, wrong = v.phone_fix
            versions = [(v.time + HOUR, dict(vals, 联系电话=wrong)), (fixed_at, vals)]
        out["fever_clinic"].append(Record("fever_clinic", v.number, v.person, versions, source=v.hospital))
    for a in w.admissions:
        name, idn, phone = person_values(pop, a.person)
        vals = {"住院号": a.number, "医院编码": a.hospital, "病区": a.ward, "床号": a.bed, "姓名": name,
                "身份证号": idn, "联系电话": phone, "入院时间": a.admit, "出院时间": None, "诊断": a.diagnosis,
                "病情分型": a.severity[0][1] if a.severity else ""}
        versions = [(a.admit, vals)]
        for t, sev in a.severity[1:]:
            if a.discharge is None or t < a.discharge:
                vals = dict(vals, 病情分型=sev)
                versions.append((t, vals))
        if a.discharge is not None:
            versions.append((a.discharge, dict(vals, 出院时间=a.discharge, 诊断=a.final_diagnosis or a.diagnosis)))
        out["inpatients"].append(Record("inpatients", a.number, a.person, versions))
    for s in w.samples:
        name, idn, phone = person_values(pop, s.person)
        vals = {"样本编号": s.number, "姓名": name, "身份证号": idn, "联系电话": phone, "采样时间": s.sampled,
                "报告时间": s.reported, "检测机构": s.lab, "检测结果": s.result, "Ct值ORF1ab": s.ct_orf,
                "Ct值N": s.ct_n, "送检原因": s.reason}
        versions = [(s.reported, vals)]
        if s.first_result:
            result, orf, n = s.first_result
            versions.insert(0, (s.first_reported, dict(vals, 报告时间=s.first_reported, 检测结果=result,
                                                       Ct值ORF1ab=orf, Ct值N=n)))
        out["lab_results"].append(Record("lab_results", s.number, s.person, versions))
    for c in w.cards:
        name, idn, phone = person_values(pop, c.person)
        first = c.versions[0][0]
        versions = []
        for ts, st in c.versions:
            versions.append((ts, {"卡片编号": c.number, "姓名": name, "性别": pop.sex(c.person),
                                  "出生日期": pop.birth_date(c.person), "身份证号": idn, "联系电话": phone,
                                  "现住地址": c.address, "现住地址编码": c.address_code, "发病日期": st["onset"],
                                  "诊断时间": st["diagnosed"], "报告时间": first, "病例分类": st["class"],
                                  "临床严重程度": st["severity"], "报告单位": c.unit, "卡片状态": st["status"]}))
        out["case_reports"].append(Record("case_reports", c.number, c.person, versions))
    for inv in w.investigations:
        case_id = pop.id_number[inv.case]
        for ct in inv.contacts:
            name, idn, phone = person_values(pop, ct.person)
            vals = {"流调编号": inv.number, "病例卡片编号": inv.card, "病例身份证号": case_id, "接触者姓名": name,
                    "接触者身份证号": idn, "接触者电话": phone, "关系": ct.relation, "接触场所": ct.place_type,
                    "接触地点": ct.place, "首次接触时间": ct.first, "末次接触时间": ct.last,
                    "有效防护": "是" if ct.protected else "否"}
            r = Record("investigations", inv.number, ct.person, [(inv.done, vals)])
            # Cases know their family's ID numbers; of others they often know only name and phone.
            knows_id = (ct.relation == "家人" and pop.kind[ct.person] != KIND_CONTACT_ONLY) or rng.random() < 0.5
            if not knows_id:
                r.faults["接触者身份证号"] = ("id_empty", 0)
            out["investigations"].append(r)
    for s in w.stays:
        name, idn, _ = person_values(pop, s.person)
        hotel = w.city.hotels[s.hotel]
        vals = {"旅馆编码": hotel.code, "旅馆名称": hotel.name, "旅馆地址": hotel.address, "房间号": s.room,
                "姓名": name, "证件类型": "护照" if pop.id_type[s.person] == 1 else "居民身份证", "证件号码": idn,
                "入住时间": s.checkin, "退房时间": None}
        out["lodging"].append(Record("lodging", "", s.person,
                                     [(s.checkin, vals), (s.checkout, dict(vals, 退房时间=s.checkout))]))
    for t in w.trips:
        name, idn, _ = person_values(pop, t.person)
        vals = {"交通方式": t.mode, "车次航班": t.number, "出发日期": t.dep.date(), "车厢": t.car, "座位": t.seat,
                "姓名": name, "证件号码": idn, "出发站": t.origin, "到达站": t.dest, "出发时间": t.dep,
                "到达时间": t.arr}
        out["transport"].append(Record("transport", "", t.person, [(t.dep, vals)]))
    for p in w.newcomers:
        when = pop.updated[p].astype(dt.datetime)
        r = Record("residents", pop.id_number[p], p, [(when, resident_values(pop, p))])
        out["residents"].append(r)
    for p, (_day, _wrong, when) in sorted(w.phone_fixes.items()):
        vals = resident_values(pop, p)
        vals["更新时间"] = when
        out["residents"].append(Record("residents", pop.id_number[p], p, [(when, vals)]))
    for c in w.city.communities:
        vals = {"社区编码": c.code, "社区名称": c.name, "街道": c.street, "区": c.district, "社区办电话": c.phone,
                "网格数": c.grids}
        out["communities"].append(Record("communities", c.code, -1, [(BACKLOG_START, vals)]))
    return out


def resident_values(pop: Population, p: int) -> dict:
    """One register row (typed values)."""
    h = int(pop.household[p])
    city = pop.city
    community = city.communities[int(pop.hh_community[h])]
    compound = city.compounds[int(pop.hh_compound[h])]
    from .people import HUKOU, RELATIONS, SPECIAL
    return {"身份证号": pop.id_number[p], "姓名": pop.name[p], "性别": pop.sex(p), "出生日期": pop.birth_date(p),
            "联系电话": pop.phone[p], "户号": pop.household_number(h), "与户主关系": RELATIONS[int(pop.relation[p])],
            "区": community.district, "街道": community.street, "社区": community.name, "社区编码": community.code,
            "网格": f"第{int(pop.hh_grid[h])}网格", "小区": compound.name, "楼栋": f"{int(pop.hh_building[h])}栋",
            "单元": f"{int(pop.hh_unit[h])}单元", "房号": f"{int(pop.hh_floor[h])}{int(pop.hh_room[h]):02d}",
            "人口类型": HUKOU[int(pop.hukou[p])], "特殊人群": SPECIAL[int(pop.special[p])],
            "更新时间": pop.updated[p].astype(dt.datetime)}


def assign_deliveries(records: dict[str, list[Record]], schedule: Schedule, late: dict[tuple[str, int], int]) -> None:
    """Which versions each delivery carries: the latest version changed within its window.
    late maps (feed, day) to the day that delivers it instead (a missing or emptied file)."""
    for feed, recs in records.items():
        for r in recs:
            by_day: dict[int, int] = {}
            for vi, (ts, _) in enumerate(r.versions):
                if ts < BACKLOG_START and feed not in ("residents", "communities"):
                    continue    # older than the backlog the agencies deliver on day 1
                day = 0 if ts < BACKLOG_START else schedule.index_of(ts)
                if day is None:
                    continue
                while (feed, day) in late:
                    day = late[(feed, day)]
                by_day[day] = vi
            r.rows = sorted(by_day.items())
