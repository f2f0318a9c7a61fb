"""People: the residents register (households, addresses, ID numbers, phones), newcomers,
visitors absent from the register, a foreigner, and contacts only an investigator knows.

Columns are numpy arrays or lists indexed by person number (person_key = P + number + 1), so a
register of a million people costs a few hundred megabytes, not gigabytes of Python objects.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np

from trace24 import idcard

from .base import REFERENCE_DAY
from .geo import City

SURNAMES = [
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭", "何", "高", "林",
    "罗", "郑", "梁", "谢", "宋", "唐", "许", "韩", "冯", "邓", "曹", "彭", "曾", "肖", "田", "董", "袁", "潘", "于",
    "蒋", "蔡", "余", "杜", "叶", "程", "苏", "魏", "吕", "丁", "任", "沈", "姚", "卢", "姜", "崔", "钟", "谭", "陆",
    "汪", "范", "金", "石", "廖", "贾", "夏", "韦", "付", "方", "邹", "熊", "万", "严", "龚", "喻", "涂", "柯", "詹",
    "雷", "汤"
]
_SURNAME_WEIGHTS = np.array([7.1, 7.0, 6.7, 5.4, 4.5, 3.1, 2.2, 2.0, 1.9, 1.9, 1.5, 1.5, 1.3, 1.3, 1.6, 1.2,
                             1.2, 1.1, 1.1, 1.0] + [0.55] * (len(SURNAMES) - 20))
SURNAME_P = _SURNAME_WEIGHTS / _SURNAME_WEIGHTS.sum()
MALE_CHARS = list("伟强磊军勇杰涛斌超明刚平辉鹏华飞鑫波宁建国峰海龙俊浩宇文志亮林成东晨凯健彬武新春庆德福")
FEMALE_CHARS = list("芳娟敏静丽艳燕玲霞婷雪慧倩琳莉萍红梅兰颖洁欣怡佳楠蕾琴璐月晶秀英华玉凤桂")
FOREIGN_NAMES = ["SMITH JOHN", "MILLER ANNA", "JOHNSON MICHAEL", "BROWN EMMA", "GARCIA LUIS", "MARTIN PAUL"]

RELATIONS = ["户主", "配偶", "子女", "父母", "其他"]
HEAD, SPOUSE, CHILD, PARENT, OTHER = range(5)
# Household compositions by size: (relations, probability).
TEMPLATES = [
    ((HEAD,), 0.18),
    ((HEAD, SPOUSE), 0.18), ((HEAD, CHILD), 0.08), ((HEAD, PARENT), 0.04),
    ((HEAD, SPOUSE, CHILD), 0.20), ((HEAD, SPOUSE, PARENT), 0.04), ((HEAD, SPOUSE, OTHER), 0.02),
    ((HEAD, SPOUSE, CHILD, CHILD), 0.08), ((HEAD, SPOUSE, CHILD, PARENT), 0.09),
    ((HEAD, SPOUSE, CHILD, CHILD, PARENT), 0.04), ((HEAD, SPOUSE, CHILD, PARENT, PARENT), 0.05),
]
# Head's age range per template: families with children or parents have middle-aged heads.
HEAD_AGE = [(20, 92), (24, 85), (40, 80), (25, 55), (27, 60), (26, 55), (30, 70), (33, 55), (30, 50),
            (33, 50), (30, 48)]

SPECIAL = ["", "独居老人", "残疾", "孕产妇", "低保", "慢病"]
HUKOU = ["户籍", "流动"]
KIND_REGISTER, KIND_NEWCOMER, KIND_VISITOR, KIND_CONTACT_ONLY = range(4)

WUHAN_COUNTIES = [420102, 420103, 420104, 420105, 420106, 420111, 420112, 420115, 420116, 420117]
HUBEI_COUNTIES = [420222, 420281, 420902, 420922, 420984, 421002, 421081, 421102, 421122, 421182, 422801,
                  420602, 420502, 420802, 421202, 429004]
OTHER_COUNTIES = [110105, 310115, 440106, 440305, 430102, 410105, 360102, 500103, 510107, 320106, 330106,
                  350203, 610113, 370202]
HOME_TOWNS = {  # county code -> an address text a visitor gives for home
    420902: "湖北省孝感市孝南区书院街", 420984: "湖北省汉川市仙女山街道", 421002: "湖北省荆州市沙市区北京中路",
    421102: "湖北省黄冈市黄州区东门路", 420222: "湖北省黄石市阳新县兴国镇", 422801: "湖北省恩施市舞阳坝街道",
    110105: "北京市朝阳区望京街道", 310115: "上海市浦东新区张江镇", 440106: "广东省广州市天河区石牌街道",
    440305: "广东省深圳市南山区粤海街道", 430102: "湖南省长沙市芙蓉区五里牌街道", 410105: "河南省郑州市金水区",
}

WEIGHTS = np.array(idcard.WEIGHTS, dtype=np.int64)
MOBILE_PREFIXES = np.array([130, 131, 132, 133, 135, 136, 137, 138, 139, 150, 151, 152, 153, 155, 156, 157,
                            158, 159, 170, 176, 177, 178, 180, 181, 182, 183, 185, 186, 187, 188, 189, 191,
                            198, 199], dtype=np.int64)


def id_numbers(counties: np.ndarray, births: np.ndarray, males: np.ndarray, rng: np.random.Generator,
               taken: set[int] | None = None) -> list[str]:
    """Valid, distinct 18-character ID numbers, vectorised (idcard.make_id_number is the oracle:
    the first numbers are checked against it)."""
    taken = taken if taken is not None else set()
    if len(counties) == 1:   # one at a time (visitors, newcomers): no numpy overhead
        birth = births.astype("datetime64[D]").astype(object)[0]
        while True:
            seq = int(rng.integers(0, 500)) * 2 + (1 if males[0] else 0)
            number = idcard.make_id_number(f"{int(counties[0]):06d}", birth, seq)
            if int(number[:17]) not in taken:
                taken.add(int(number[:17]))
                return [number]
    ymd = births.astype("datetime64[D]").astype(object)
    yyyymmdd = np.array([d.year * 10000 + d.month * 100 + d.day for d in ymd], dtype=np.int64)
    base = counties.astype(np.int64) * 10**11 + yyyymmdd * 1000
    parity = np.where(males, 1, 0)
    key = base + rng.integers(0, 500, size=len(base)) * 2 + parity
    taken = taken if taken is not None else set()
    while True:  # redraw sequence numbers that collide with each other or with earlier numbers
        _, first = np.unique(key, return_index=True)
        dup = np.ones(len(key), bool)
        dup[first] = False
        if taken:
            dup |= np.fromiter((k in taken for k in key.tolist()), dtype=bool, count=len(key))
        if not dup.any():
            break
        key[dup] = base[dup] + rng.integers(0, 500, size=int(dup.sum())) * 2 + parity[dup]
    taken.update(key.tolist())
    digits = (key[:, None] // (10 ** np.arange(16, -1, -1, dtype=np.int64))) % 10
    checks = (digits @ WEIGHTS) % 11
    chars = np.array(list(idcard.CHECK_CHARACTERS))[checks]
    out = [f"{k:017d}{c}" for k, c in zip(key.tolist(), chars.tolist(), strict=True)]
    for number in out[:2000]:
        assert idcard.check_character(number[:17]) == number[17]
    return out


def mobiles(n: int, rng: np.random.Generator, taken: set[int]) -> list[str]:
    """n distinct 11-digit mobile numbers not in taken."""
    out: list[int] = []
    while len(out) < n:
        need = n - len(out)
        cand = MOBILE_PREFIXES[rng.integers(0, len(MOBILE_PREFIXES), size=need)] * 10**8 + \
            rng.integers(0, 10**8, size=need)
        for number in cand.tolist():   # keeps draw order; set lookups stay O(1)
            if number not in taken:
                taken.add(number)
                out.append(number)
    return [str(x) for x in out]


def given_names(males: np.ndarray, rng: np.random.Generator) -> list[str]:
    n = len(males)
    m = np.array(MALE_CHARS)
    f = np.array(FEMALE_CHARS)
    first = np.where(males, m[rng.integers(0, len(m), n)], f[rng.integers(0, len(f), n)])
    second = np.where(males, m[rng.integers(0, len(m), n)], f[rng.integers(0, len(f), n)])
    two = rng.random(n) < 0.7
    return [a + b if t else a for a, b, t in zip(first.tolist(), second.tolist(), two.tolist(), strict=True)]


class Population:
    """Every person of the city, in the register or not. Index i is person_key P{i+1}."""

    def __init__(self, city: City, residents: int, rng: np.random.Generator):
        self.city = city
        self.rng = rng
        self.taken_ids: set[int] = set()
        self.taken_phones: set[int] = set()
        cap = residents + residents // 5 + 2000
        self.n = 0
        self.id_number: list[str] = []
        self.name: list[str] = []
        self.phone: list[str] = []
        self.address_text: dict[int, str] = {}   # for people outside the register
        self.id_type = np.zeros(cap, np.int8)      # 0 居民身份证, 1 护照
        self.male = np.zeros(cap, bool)
        self.birth = np.zeros(cap, "datetime64[D]")
        self.kind = np.zeros(cap, np.int8)
        self.household = np.full(cap, -1, np.int32)
        self.relation = np.full(cap, -1, np.int8)
        self.community = np.full(cap, -1, np.int32)   # truth community (-1: none can be known)
        self.district = np.full(cap, -1, np.int8)     # truth district index (-1: unknown)
        self.hukou = np.zeros(cap, np.int8)
        self.special = np.zeros(cap, np.int8)
        self.office = np.full(cap, -1, np.int32)      # venue index of a worker's office
        self.team = np.full(cap, -1, np.int32)        # colleagues sharing a room within the office
        self.register_day = np.full(cap, -1, np.int16)  # delivery index of first appearance in register
        self.updated = np.zeros(cap, "datetime64[m]")
        self.phone_owner = np.full(cap, -1, np.int32)   # whose phone this person's scans carry
        self.extra_members: dict[int, list[int]] = {}   # newcomers who joined a household
        self._make_register(residents)

    # -- the register ----------------------------------------------------------------------
    def _make_register(self, residents: int) -> None:
        rng = self.rng
        city = self.city
        probs = np.array([p for _, p in TEMPLATES])
        probs /= probs.sum()
        sizes_t = np.array([len(t) for t, _ in TEMPLATES])
        n_hh = int(residents / float((sizes_t * probs).sum()) * 1.05) + 10
        tpl = rng.choice(len(TEMPLATES), size=n_hh, p=probs)
        sizes = sizes_t[tpl]
        n_hh = int(np.searchsorted(np.cumsum(sizes), residents)) + 1
        tpl, sizes = tpl[:n_hh], sizes[:n_hh]
        n = int(sizes.sum())
        hh = np.repeat(np.arange(n_hh, dtype=np.int32), sizes)
        starts = np.cumsum(sizes) - sizes
        pos = np.arange(n) - starts[hh]
        rel_table = np.full((len(TEMPLATES), 5), -1, np.int8)
        for i, (t, _) in enumerate(TEMPLATES):
            rel_table[i, :len(t)] = t
        rel = rel_table[tpl[hh], pos]
        # Ages from the head's: spouse near, children a generation younger, parents older.
        lo = np.array([a for a, _ in HEAD_AGE])[tpl]
        hi = np.array([b for _, b in HEAD_AGE])[tpl]
        head_age = rng.integers(lo, hi + 1)
        ha = head_age[hh]
        age = np.select(
            [rel == HEAD, rel == SPOUSE, rel == CHILD, rel == PARENT],
            [ha, ha + rng.integers(-5, 4, n), ha - rng.integers(22, 38, n), ha + rng.integers(22, 34, n)],
            rng.integers(18, 70, n))
        age = np.where(age < 0, rng.integers(0, 6, n), age)
        age = np.clip(age, 0, 99)
        head_male = rng.random(n_hh) < 0.72
        hm = head_male[hh]
        male = np.select([rel == HEAD, rel == SPOUSE], [hm, ~hm], rng.random(n) < 0.5)
        two_parents = (rel == PARENT) & (np.roll(rel, 1) == PARENT)
        male = np.where(two_parents, False, male)
        male = np.where((rel == PARENT) & (np.roll(rel, -1) == PARENT), True, male)
        births = (np.datetime64(REFERENCE_DAY) - (age * 365.25).astype(np.int64)
                  - rng.integers(0, 365, n)).astype("datetime64[D]")
        # Households go to communities (uneven sizes), then compounds, buildings, rooms.
        n_comm = len(city.communities)
        weight = rng.uniform(0.7, 1.3, n_comm)
        hh_comm = rng.choice(n_comm, size=n_hh, p=weight / weight.sum()).astype(np.int32)
        self._place_households(hh_comm)
        # 户籍 or 流动 by household; birthplace county follows.
        floating = rng.random(n_hh) < 0.2
        self.hh_floating = floating
        fl = floating[hh]
        county_of_comm = np.array([int(c.county) for c in city.communities])
        home = county_of_comm[hh_comm[hh]]
        u = rng.random(n)
        wuhan = np.array(WUHAN_COUNTIES)[rng.integers(0, len(WUHAN_COUNTIES), n)]
        hubei = np.array(HUBEI_COUNTIES)[rng.integers(0, len(HUBEI_COUNTIES), n)]
        other = np.array(OTHER_COUNTIES)[rng.integers(0, len(OTHER_COUNTIES), n)]
        county = np.where(fl, np.where(u < 0.1, wuhan, np.where(u < 0.6, hubei, other)),
                          np.where(u < 0.6, home, np.where(u < 0.85, wuhan, np.where(u < 0.97, hubei, other))))
        ids = id_numbers(county, births, male, rng, self.taken_ids)
        # Names: the household shares the head's surname except spouses and mothers.
        hh_surname = rng.choice(len(SURNAMES), size=n_hh, p=SURNAME_P)
        own = rng.choice(len(SURNAMES), size=n, p=SURNAME_P)
        sur_idx = np.where((rel == SPOUSE) | ((rel == PARENT) & ~male) | (rel == OTHER), own, hh_surname[hh])
        surnames = np.array(SURNAMES)[sur_idx].tolist()
        names = [s + g for s, g in zip(surnames, given_names(male, rng), strict=True)]
        self._force_common_names(names, surnames, male, residents)
        # Phones: nearly every adult, teenagers, some of the very old.
        has_phone = (age >= 12) & ((age < 80) | (rng.random(n) < 0.5))
        phones = [""] * n
        idx = np.flatnonzero(has_phone)
        for i, number in zip(idx.tolist(), mobiles(len(idx), rng, self.taken_phones), strict=True):
            phones[i] = number
        # Special groups, one label each, first match wins.
        special = np.zeros(n, np.int8)
        alone = (sizes[hh] == 1) & (age >= 65) & (rng.random(n) < 0.8)
        special[alone] = 1
        special[(special == 0) & (rng.random(n) < 0.015)] = 2
        special[(special == 0) & ~male & (age >= 22) & (age <= 40) & (rel <= SPOUSE) & (rng.random(n) < 0.05)] = 3
        special[(special == 0) & (rng.random(n) < 0.02)] = 4
        special[(special == 0) & (age >= 55) & (rng.random(n) < 0.2)] = 5
        # Fill the columns.
        self.n = n
        self.id_number = ids
        self.name = names
        self.phone = phones
        self.male[:n] = male
        self.birth[:n] = births
        self.kind[:n] = KIND_REGISTER
        self.household[:n] = hh
        self.relation[:n] = rel
        self.community[:n] = hh_comm[hh]
        district_of_comm = np.array([0 if c.district == "江岸区" else 1 for c in city.communities], np.int8)
        self.district[:n] = district_of_comm[hh_comm[hh]]
        self.hukou[:n] = fl
        self.special[:n] = special
        self.register_day[:n] = 0
        start = np.datetime64("2018-06-01T00:00", "m").astype(np.int64)
        end = np.datetime64("2020-02-09T22:00", "m").astype(np.int64)
        self.updated[:n] = rng.integers(start, end, n).astype("datetime64[m]")
        self.n_register = n
        self.hh_first = starts.astype(np.int64)
        self.hh_size = sizes.astype(np.int64)
        self._ages = age
        self._phone_owners()

    def _place_households(self, hh_comm: np.ndarray) -> None:
        """Compound, building, unit, room and grid of every household; 户号 numbers."""
        rng = self.rng
        city = self.city
        n_hh = len(hh_comm)
        self.hh_community = hh_comm
        self.hh_compound = np.zeros(n_hh, np.int32)
        self.hh_building = np.zeros(n_hh, np.int16)
        self.hh_unit = np.zeros(n_hh, np.int16)
        self.hh_floor = np.zeros(n_hh, np.int16)
        self.hh_room = np.zeros(n_hh, np.int16)
        self.hh_grid = np.zeros(n_hh, np.int16)
        order = np.argsort(hh_comm, kind="stable")
        bounds = np.searchsorted(hh_comm[order], np.arange(len(city.communities) + 1))
        for community in city.communities:
            members = order[bounds[community.index]:bounds[community.index + 1]]
            comps = community.compounds
            which = rng.integers(0, len(comps), len(members))
            for k, ci in enumerate(comps):
                hhs = members[which == k]
                compound = city.compounds[ci]
                per_floor = compound.rooms_per_floor
                cap = compound.floors * compound.units * per_floor
                n_b = max(1, math.ceil(len(hhs) / (cap * 0.85)))
                slots = np.sort(rng.choice(n_b * cap, size=len(hhs), replace=False))
                within = slots % cap
                self.hh_compound[hhs] = ci
                self.hh_building[hhs] = slots // cap + 1
                self.hh_unit[hhs] = within // (compound.floors * per_floor) + 1
                self.hh_floor[hhs] = (within % (compound.floors * per_floor)) // per_floor + 1
                self.hh_room[hhs] = within % per_floor + 1
            # Grids: contiguous runs of addresses, 3-5 per community (more in big ones).
            key = (self.hh_compound[members].astype(np.int64) * 10**8 + self.hh_building[members].astype(np.int64)
                   * 10**5 + self.hh_unit[members].astype(np.int64) * 10**3 + self.hh_floor[members])
            ranked = members[np.argsort(key, kind="stable")]
            grids = max(int(rng.integers(3, 6)), math.ceil(len(members) / 300))
            grids = min(grids, max(1, len(members)))
            community.grids = grids
            if len(ranked):
                self.hh_grid[ranked] = (np.arange(len(ranked)) * grids // len(ranked) + 1).astype(np.int16)
        self.hh_number = (100000000 + rng.permutation(n_hh) * 7 + rng.integers(0, 7, n_hh)).astype(np.int64)

    def _force_common_names(self, names: list[str], surnames: list[str], male: np.ndarray,
                            residents: int) -> None:
        """Many different people called 张伟 and 王芳, so that a name alone identifies nobody."""
        rng = self.rng
        want = max(7, round(residents * 0.002))
        for full, sur, is_male in (("张伟", "张", True), ("王芳", "王", False)):
            have = sum(1 for x in names if x == full)
            cands = [i for i, s in enumerate(surnames) if s == sur and bool(male[i]) == is_male and names[i] != full]
            others = [i for i in range(len(names)) if bool(male[i]) == is_male and surnames[i] != sur]
            picks = list(rng.permutation(cands)[:max(0, want - have)])
            if len(picks) < want - have:
                picks += list(rng.permutation(others)[:want - have - len(picks)])
            for i in picks:
                names[int(i)] = full

    def _phone_owners(self) -> None:
        """Children and the phoneless scan with a household member's phone (usually the head's)."""
        n = self.n
        has = np.array([bool(p) for p in self.phone[:n]])
        owner = np.where(has, np.arange(n), -1).astype(np.int32)
        hh = self.household[:n]
        # First member with a phone in each household.
        idx = np.flatnonzero(has)
        first_with = np.full(len(self.hh_size), -1, np.int32)
        # reversed assignment keeps the lowest index
        first_with[hh[idx[::-1]]] = idx[::-1]
        owner = np.where(has, owner, first_with[hh])
        self.phone_owner[:n] = owner

    def assign_offices(self) -> None:
        """Half the working-age residents work in an office venue, in teams of 4-8 that share a room."""
        rng = self.rng
        age = self._ages
        offices = [v.index for v in self.city.venues_of_kind("办公")]
        n = self.n_register
        workers = np.flatnonzero((age[:n] >= 22) & (age[:n] <= 59) & (rng.random(n) < 0.5))
        office = np.array(offices)[rng.integers(0, len(offices), len(workers))]
        self.office[workers] = office
        order = np.lexsort((rng.random(len(workers)), office))
        team = np.zeros(len(workers), np.int32)
        team_id = 0
        start = 0
        while start < len(order):
            size = int(rng.integers(4, 9))
            chunk = order[start:start + size]
            # keep a team within one office
            chunk = chunk[office[chunk] == office[chunk[0]]]
            team[chunk] = team_id
            team_id += 1
            start += len(chunk)
        self.team[workers] = team

    # -- other people ----------------------------------------------------------------------
    def add_person(self, *, name: str, male: bool, birth: dt.date, county: int | None, phone: str,
                   kind: int, passport: str = "", community: int = -1, district: int = -1,
                   address: str = "") -> int:
        """Append a person outside the register (or a newcomer); returns the person number."""
        i = self.n
        if i >= len(self.kind):
            raise RuntimeError("population capacity exceeded")
        if passport:
            self.id_number.append(passport)
            self.id_type[i] = 1
        else:
            number = id_numbers(np.array([county]), np.array([np.datetime64(birth)]), np.array([male]),
                                self.rng, self.taken_ids)[0]
            self.id_number.append(number)
        self.name.append(name)
        self.phone.append(phone)
        if phone:
            self.taken_phones.add(int(phone))
        self.male[i] = male
        self.birth[i] = np.datetime64(birth)
        self.kind[i] = kind
        self.community[i] = community
        self.district[i] = district
        self.phone_owner[i] = i if phone else -1
        if address:
            self.address_text[i] = address
        self.n += 1
        return i

    def random_name(self, male: bool) -> str:
        sur = SURNAMES[int(self.rng.choice(len(SURNAMES), p=SURNAME_P))]
        return sur + given_names(np.array([male]), self.rng)[0]

    def new_mobile(self) -> str:
        return mobiles(1, self.rng, self.taken_phones)[0]

    # -- accessors -------------------------------------------------------------------------
    def key(self, i: int) -> str:
        return f"P{i + 1:0{self.key_width}d}"

    @property
    def key_width(self) -> int:
        return max(6, len(str(self.n)))

    def birth_date(self, i: int) -> dt.date:
        return self.birth[i].astype(object)

    def age(self, i: int, on: dt.date) -> int:
        b = self.birth_date(i)
        return on.year - b.year - ((on.month, on.day) < (b.month, b.day))

    def sex(self, i: int) -> str:
        return "男" if self.male[i] else "女"

    def in_register(self, i: int) -> bool:
        return self.kind[i] in (KIND_REGISTER, KIND_NEWCOMER)

    def household_members(self, i: int) -> list[int]:
        h = int(self.household[i])
        if h < 0:
            return []
        first = int(self.hh_first[h])
        members = list(range(first, first + int(self.hh_size[h])))
        members += self.extra_members.get(h, [])
        return members

    def household_number(self, h: int) -> str:
        return str(int(self.hh_number[h]))

    def address(self, i: int, style: int = 0) -> str:
        """The address a person gives; style varies the wording as clerks do."""
        h = int(self.household[i])
        if h < 0:
            return self.address_text.get(i, "")
        city = self.city
        community = city.communities[int(self.hh_community[h])]
        compound = city.compounds[int(self.hh_compound[h])]
        room = f"{int(self.hh_floor[h])}{int(self.hh_room[h]):02d}"
        b, u = int(self.hh_building[h]), int(self.hh_unit[h])
        if style % 3 == 0:
            return f"{community.district}{community.street}{compound.name}{b}栋{u}单元{room}"
        if style % 3 == 1:
            return f"武汉市{community.district}{compound.name}{b}栋{u}单元{room}室"
        return f"{community.district}{community.name}{compound.name}{b}-{u}-{room}"

    def community_code(self, i: int) -> str:
        c = int(self.community[i])
        return self.city.communities[c].code if c >= 0 else ""
