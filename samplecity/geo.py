"""The city's geography: districts, streets, communities, compounds, venues, hotels, hospitals.

Two districts of Wuhan (江岸区 420102, 武昌区 420106). The sample (3 000 residents) has 2 streets
per district and 2 communities per street; larger runs add streets and communities so that a
community keeps a realistic few thousand residents.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

DISTRICTS = [
    ("江岸区", "420102", ["大智街道", "一元街道", "车站街道", "四唯街道", "永清街道", "西马街道", "球场街道",
                         "劳动街道", "二七街道", "新村街道", "丹水池街道", "台北街道", "花桥街道", "谌家矶街道",
                         "后湖街道", "塔子湖街道"]),
    ("武昌区", "420106", ["积玉桥街道", "中南路街道", "杨园街道", "徐家棚街道", "粮道街道", "中华路街道",
                         "黄鹤楼街道", "紫阳街道", "白沙洲街道", "首义路街道", "水果湖街道", "珞珈山街道",
                         "石洞街道", "南湖街道"]),
]

# The sample's eight communities (two per street of the first two streets of each district).
FIRST_COMMUNITIES = ["三阳社区", "天声社区", "鄱阳社区", "兰陵社区", "和平社区", "临江社区", "中南社区", "宝通社区"]

PLACE_WORDS = [
    "三阳", "天声", "鄱阳", "兰陵", "和平", "临江", "中南", "宝通", "黎黄", "胜利", "花楼", "吉庆", "洞庭",
    "长春", "友谊", "合作", "解放", "东方", "首义", "紫阳", "粮道", "昙华", "积玉", "杨园", "徐东", "白沙",
    "珞珈", "石洞", "南湖", "丹水", "后湖", "百步", "二七", "球场", "永清", "西马", "四唯", "一元", "大智",
    "台北", "花桥", "惠济", "育才", "建设", "幸福", "光华", "复兴", "民主", "青山", "晴川", "长江", "汉水",
    "江滩", "沿江", "中山", "京汉", "黄浦", "汉口", "武泰", "八一", "武珞", "彭刘", "司门", "大东", "小东",
    "新华", "华安", "铭新", "黄兴", "蔡锷", "车站", "四美", "芦沟", "江汉", "六合", "统一", "民权", "德润",
    "新河", "梅苑", "桃源", "荷花", "丽岛", "金桥", "怡和", "汇通", "锦绣", "春江", "清江", "玉带", "楚雄",
]
COMMUNITY_SUFFIXES = ["社区", "里社区", "路社区", "街社区", "新村社区", "园社区"]
COMPOUND_SUFFIXES = ["小区", "花园", "家园", "新村", "公寓", "苑", "雅居", "名邸"]

VENUE_KINDS = ["餐饮", "商超", "办公", "医疗", "交通", "其他"]
VENUE_WORDS = {
    "餐饮": ["热干面馆", "豆皮馆", "酒楼", "餐厅", "火锅店", "小吃店", "饭店", "汤包馆"],
    "商超": ["超市", "便利店", "菜市场", "购物中心", "生鲜超市"],
    "办公": ["大厦", "写字楼", "科技园", "办公楼", "商务中心"],
    "医疗": ["社区卫生服务中心", "诊所", "大药房"],
    "交通": ["地铁站", "公交站"],
    "其他": ["银行网点", "快递驿站", "理发店", "社区服务中心", "加油站", "菜鸟驿站"],
}
# Venue mix after the three every community has (a restaurant, a shop, an office).
VENUE_EXTRA_WEIGHTS = [0.30, 0.25, 0.12, 0.10, 0.08, 0.15]
# The sample city's venue density; the city benchmark uses denser venues (benchmarks/city.py).
SAMPLE_RESIDENTS_PER_VENUE = 600

HOTEL_NAMES = ["江滩宾馆", "汉口站快捷酒店", "首义大酒店", "楚河商务酒店", "黄鹤楼假日酒店", "江城之星酒店",
               "长江大酒店", "积玉桥商务宾馆", "中南花园酒店", "大智路精品酒店"]


@dataclass
class Community:
    index: int
    code: str
    name: str
    street: str
    street_code: str
    district: str
    county: str
    phone: str
    grids: int = 0
    compounds: list[int] = field(default_factory=list)


@dataclass
class Compound:
    index: int
    name: str
    community: int
    floors: int
    units: int
    rooms_per_floor: int


@dataclass
class Venue:
    index: int
    code: str
    name: str
    kind: str
    address: str
    community: int


@dataclass
class Hotel:
    code: str
    name: str
    address: str
    community: int
    floors: int


@dataclass
class Hospital:
    code: str
    name: str
    district: str
    wards: list[str]
    isolation: bool      # a designated (定点) or shelter hospital: admission isolates
    fever_clinic: bool


HOSPITALS = {
    "H01": Hospital("H01", "武汉市第一医院", "江岸区",
                    ["呼吸内科一病区", "呼吸内科二病区", "心血管内科病区", "普通外科病区", "神经内科病区",
                     "老年医学科病区"], False, True),
    "H02": Hospital("H02", "武昌区人民医院", "武昌区",
                    ["呼吸内科病区", "消化内科病区", "骨科病区", "内分泌科病区", "肾内科病区"], False, True),
    "H03": Hospital("H03", "武汉市传染病医院", "",
                    ["隔离一病区", "隔离二病区", "隔离三病区", "重症监护病区"], True, False),
    "FC01": Hospital("FC01", "武昌方舱医院", "武昌区", ["A区", "B区", "C区"], True, False),
}

LABS = [("武汉市疾病预防控制中心", "CDC"), ("武汉金域医学检验所", "JY"), ("武汉市第一医院检验科", "YYA"),
        ("武昌区人民医院检验科", "YYB")]


def numbered_names(suffix: str, count: int) -> list[str]:
    """``count`` place names past the word list (cities of over ~2 M residents): 三阳1社区, 天声1社区, ..."""
    return [f"{PLACE_WORDS[j % len(PLACE_WORDS)]}{j // len(PLACE_WORDS) + 1}{suffix}" for j in range(max(0, count))]


class City:
    """Districts, streets, communities and their compounds, venues and hotels."""

    def __init__(self, residents: int, rng: np.random.Generator):
        self.rng = rng
        n_comm = max(8, 2 * round(residents / 8000))
        self.communities: list[Community] = []
        self.compounds: list[Compound] = []
        self.venues: list[Venue] = []
        self.hotels: list[Hotel] = []
        self._make_communities(n_comm)
        self._make_compounds()

    # -- communities -----------------------------------------------------------------------
    def _make_communities(self, n_comm: int) -> None:
        rng = self.rng
        extra_names = [w + s for s in COMMUNITY_SUFFIXES for w in PLACE_WORDS]
        extra_names = [n for n in extra_names if n not in FIRST_COMMUNITIES]
        order = rng.permutation(len(extra_names))
        names = FIRST_COMMUNITIES + [extra_names[i] for i in order]
        # Very large cities (over ~2 M residents) outgrow the word list: number the rest.
        names += numbered_names("社区", n_comm - len(names))
        used_names = 0
        per_district = [n_comm // 2, n_comm - n_comm // 2]
        for (district, county, streets), n_d in zip(DISTRICTS, per_district, strict=True):
            n_streets = max(2, math.ceil(n_d / 10))
            street_names = list(streets) + [w + "街道" for w in PLACE_WORDS]
            street_names += numbered_names("街道", n_streets - len(street_names))
            sizes = [n_d // n_streets + (1 if i < n_d % n_streets else 0) for i in range(n_streets)]
            for s, size in enumerate(sizes):
                street_code = f"{s + 2:03d}"
                for k in range(size):
                    code = f"{county}{street_code}{k + 1:03d}"
                    phone = f"027-8{rng.integers(0, 10**7):07d}"
                    self.communities.append(Community(len(self.communities), code, names[used_names],
                                                      street_names[s], street_code, district, county, phone))
                    used_names += 1
        # The sample's fixed names are assigned in district order: 4 in 江岸区, 4 in 武昌区.

    def _make_compounds(self) -> None:
        rng = self.rng
        names = [w + s for s in COMPOUND_SUFFIXES for w in PLACE_WORDS]
        order = rng.permutation(len(names))
        k = 0
        for community in self.communities:
            for _ in range(int(rng.integers(1, 4))):
                if k >= len(order):  # very large cities: number the rest
                    name = f"{PLACE_WORDS[k % len(PLACE_WORDS)]}{k // len(PLACE_WORDS)}期小区"
                else:
                    name = names[order[k]]
                k += 1
                compound = Compound(len(self.compounds), name, community.index,
                                    floors=int(rng.choice([6, 7, 11, 18, 24, 33])),
                                    units=int(rng.integers(1, 4)), rooms_per_floor=int(rng.integers(2, 5)))
                community.compounds.append(compound.index)
                self.compounds.append(compound)

    def road_address(self, community: Community, number: int) -> str:
        """A street address such as 江岸区大智街道三阳路123号 (for venues and hotels)."""
        return f"{community.district}{community.street}{community.name[:2]}路{number}号"

    # -- venues and hotels -----------------------------------------------------------------
    def make_venues(self, residents_per_community: np.ndarray, residents_per_venue: int) -> None:
        """One venue per ``residents_per_venue`` residents, at least five per community (a
        restaurant, a shop and an office among them), plus the stations and the fever-clinic
        hospitals, which people scan into too."""
        rng = self.rng
        seq = 0
        for community in self.communities:
            n = max(5, round(int(residents_per_community[community.index]) / residents_per_venue))
            kinds = ["餐饮", "商超", "办公", *list(rng.choice(VENUE_KINDS, size=n - 3, p=VENUE_EXTRA_WEIGHTS))]
            for kind in kinds:
                words = VENUE_WORDS[kind]
                word = words[int(rng.integers(0, len(words)))]
                prefix = PLACE_WORDS[int(rng.integers(0, len(PLACE_WORDS)))]
                name = f"{prefix}{word}({community.name.removesuffix('社区')}店)" if kind in ("餐饮", "商超") \
                    else f"{community.name.removesuffix('社区')}{word}"
                seq += 1
                address = self.road_address(community, int(rng.integers(1, 400)))
                self.venues.append(Venue(len(self.venues), f"CSM{community.county}{seq:06d}", name, kind,
                                         address, community.index))
        for name, district_index in (("汉口火车站", 0), ("武昌火车站", 1)):
            community = next(c for c in self.communities if c.district == DISTRICTS[district_index][0])
            seq += 1
            self.venues.append(Venue(len(self.venues), f"CSM{community.county}{seq:06d}", name, "交通",
                                     self.road_address(community, int(rng.integers(1, 400))), community.index))
        for hospital in (HOSPITALS["H01"], HOSPITALS["H02"]):
            community = next(c for c in self.communities if c.district == hospital.district)
            seq += 1
            self.venues.append(Venue(len(self.venues), f"CSM{community.county}{seq:06d}", hospital.name, "医疗",
                                     self.road_address(community, int(rng.integers(1, 400))), community.index))

    def make_hotels(self, residents: int) -> None:
        rng = self.rng
        n = max(3, round(residents / 1000))
        for i in range(n):
            community = self.communities[int(rng.integers(0, len(self.communities)))]
            name = HOTEL_NAMES[i] if i < len(HOTEL_NAMES) else f"{PLACE_WORDS[i % len(PLACE_WORDS)]}商务酒店{i}"
            self.hotels.append(Hotel(f"{community.county}{i + 1:04d}", name,
                                     self.road_address(community, int(rng.integers(1, 400))),
                                     community.index, floors=int(rng.integers(4, 16))))

    def venues_of_kind(self, kind: str) -> list[Venue]:
        return [v for v in self.venues if v.kind == kind]
