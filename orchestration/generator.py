"""Sample landing data for a WeChat mini-program shop, with the planted ground truth (`huaxiang generate`).

The output follows CONTRACT.md section 1 (events as Segment-spec JSON Lines, CRM/order/product/consent CSV
exports) and adds `_truth/` (ignored by ingestion) describing what was planted: who each person really is,
their persona and lifecycle stage as of `end`, every identifier they used, shared identifiers, referrals,
duplicate and bad records with their exact file and line.

How it works:
1. Planning, vectorised with numpy from one seeded Generator: catalogue, per-person persona, lifecycle
   anchors (first/last paid order, rhythm, first/last activity, registration day), identifiers, referrals,
   shared devices and the store's default phone.
2. Simulation, per chunk of 1,000 people: sessions are laid out on the calendar and turned into events,
   orders, CRM snapshots and consents. Each chunk has its own seed spawned from the root SeedSequence:
   messageIds come from a numpy Generator on it (bulk random bytes), scalar draws in the hot loop from a
   `random.Random` on the same seed (numpy scalar draws cost ~1 us each, which alone would blow the time
   budget). Nothing reads the clock or uuid4. Chunks are independent, so from 5,000 people on they run in
   spawned worker processes and the bytes stay identical to a serial run.
3. Writing: event lines are appended per local (Asia/Shanghai) day in chunk order, sorted by time inside
   a chunk; every third day is gzip-compressed (mtime 0, so bytes are reproducible). CSV files are written
   at the end, with the planted bad rows inserted at known lines.

Conventions: no activity is planted on the as-of day itself, so a cut-off at either the start or the end of
`end` sees the same data. Duplicates and bad records are extra lines: every real event is written once as
a good line, bad lines carry fresh messageIds, and a duplicate is the second copy in (path, line) order.
Guest orders typed in with the store's default phone belong to real (mature) people and count in their
truth `paid_orders`/`monetary`; `_truth/orders.csv` (order -> person, latest status, via_shared_phone)
says which, since no identifier in the data can attribute them.

`_truth/identifiers.csv` lists every identifier a person used, with `linkable` = whether the records written
prove it belongs to them: it is joined to their anchor (user_id if registered, else the device of their
first event) by the warehouse's identity-edge rules (dbt int_identity_edges: on one event userId-anonymousId,
openid-unionid, openid-userId or else openid-anonymousId, identify traits.phone-userId, alias
previousId-userId; CRM user_id-phone and user_id-unionid; online order user_id-phone), never through a shared
identifier. A device that only ever browsed anonymously, outside WeChat, is rightly `false`.
"""

from __future__ import annotations

import base64
import csv
import gzip
import io
import math
import os
import random
import shutil
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from itertools import accumulate
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import orjson
from tqdm import tqdm

# ---------------------------------------------------------------- reference data

LOCAL_OFFSET_MS = 8 * 3600 * 1000  # Asia/Shanghai has no DST
DAY_MS = 86_400_000
MP_APPID = "wx8f3a1c2b9d0e4f57"
OA_APPID = "wx51c9e07a3b2d8f16"
CHUNK_PEOPLE = 1000
PARALLEL_MIN_PEOPLE = 5000
DUPLICATE_RATE = 0.01
BAD_EVENT_RATE = 0.003
BAD_CSV_RATE = 0.003
LATEST_SESSION_START = 80_000  # 22:13 local: sessions end before midnight
CONTRACT_FOLDERS = ("events", "users", "orders", "order_items", "products", "consents")

LIFECYCLES = ("prospect", "new", "growing", "mature", "declining", "churned")
PROSPECT, NEW, GROWING, MATURE, DECLINING, CHURNED = range(6)
DEVICE_MP, DEVICE_APP, DEVICE_WEB = range(3)

CATEGORIES = {
    "美妆护肤": (
        ("兰蔻", "雅诗兰黛", "欧莱雅", "自然堂", "珀莱雅", "薇诺娜"),
        ("精华液", "面霜", "洁面乳", "防晒霜", "面膜", "口红", "爽肤水"),
        39,
        1200,
    ),
    "母婴用品": (
        ("飞鹤", "爱他美", "帮宝适", "好奇", "贝亲", "袋鼠妈妈"),
        ("婴儿奶粉", "纸尿裤", "奶瓶", "婴儿湿巾", "润肤露", "辅食米粉"),
        19,
        480,
    ),
    "食品饮料": (
        ("三只松鼠", "良品铺子", "蒙牛", "伊利", "农夫山泉", "元气森林"),
        ("坚果礼盒", "纯牛奶", "气泡水", "牛肉干", "挂耳咖啡", "燕麦片"),
        9,
        199,
    ),
    "服饰鞋包": (
        ("优衣库", "李宁", "安踏", "太平鸟", "波司登", "江南布衣"),
        ("T恤", "羽绒服", "运动鞋", "双肩包", "连衣裙", "牛仔裤"),
        59,
        1500,
    ),
    "家居日用": (
        ("名创优品", "网易严选", "洁柔", "维达", "苏泊尔", "乐扣乐扣"),
        ("抽纸", "保温杯", "收纳箱", "四件套", "洗衣液", "不粘锅"),
        9,
        399,
    ),
    "数码家电": (
        ("小米", "华为", "美的", "格力", "戴森", "漫步者"),
        ("蓝牙耳机", "电动牙刷", "空气炸锅", "吹风机", "充电宝", "智能手环"),
        49,
        3999,
    ),
    "运动户外": (
        ("迪卡侬", "探路者", "骆驼", "Keep", "特步"),
        ("瑜伽垫", "跑步鞋", "冲锋衣", "露营帐篷", "运动水壶", "跳绳"),
        19,
        1299,
    ),
    "图书文具": (
        ("晨光", "得力", "中信出版", "人民文学", "国誉"),
        ("笔记本", "中性笔套装", "畅销小说", "儿童绘本", "书包", "护眼台灯"),
        5,
        299,
    ),
}
CATEGORY_NAMES = tuple(CATEGORIES)
DESCRIPTORS = ("经典款", "升级版", "礼盒装", "轻薄款", "家庭装", "限定款", "新款", "便携装")

LOCATIONS = (
    ("广东省", "深圳市", 8),
    ("广东省", "广州市", 8),
    ("广东省", "东莞市", 3),
    ("广东省", "佛山市", 3),
    ("浙江省", "杭州市", 6),
    ("浙江省", "宁波市", 3),
    ("浙江省", "温州市", 2),
    ("江苏省", "南京市", 4),
    ("江苏省", "苏州市", 4),
    ("江苏省", "无锡市", 2),
    ("上海市", "上海市", 8),
    ("北京市", "北京市", 7),
    ("四川省", "成都市", 5),
    ("湖北省", "武汉市", 4),
    ("山东省", "济南市", 2),
    ("山东省", "青岛市", 3),
    ("福建省", "厦门市", 2),
    ("福建省", "福州市", 2),
    ("河南省", "郑州市", 3),
    ("湖南省", "长沙市", 3),
    ("陕西省", "西安市", 3),
    ("重庆市", "重庆市", 4),
    ("天津市", "天津市", 2),
    ("安徽省", "合肥市", 2),
    ("辽宁省", "大连市", 2),
    ("辽宁省", "沈阳市", 2),
)
STORES = (
    ("S001", "深圳市"),
    ("S002", "深圳市"),
    ("S003", "广州市"),
    ("S004", "杭州市"),
    ("S005", "上海市"),
    ("S006", "上海市"),
    ("S007", "北京市"),
    ("S008", "成都市"),
    ("S009", "南京市"),
    ("S010", "武汉市"),
)

MP_SCENES = ((1001, 25), (1089, 25), (1005, 10), (1011, 8), (1047, 7), (1035, 5), (1058, 5), (1104, 3))
SHARE_SCENES = (1007, 1008)
CAMPAIGNS = (
    {"name": "618大促", "source": "wechat_ads", "medium": "cpc", "content": "banner_a"},
    {"name": "双11预售", "source": "moments_ads", "medium": "cpm", "content": "video_15s"},
    {"name": "会员日", "source": "official_account", "medium": "push", "content": "article_top"},
    {"name": "新人礼包", "source": "koc", "medium": "social", "content": "koc_note"},
    {"name": "年货节", "source": "wechat_search", "medium": "cpc", "content": "brand_zone"},
)
# (coupon code, threshold in cents, discount in cents)
COUPONS = (
    ("NEW10", 5000, 1000),
    ("DAY5", 3900, 500),
    ("GROUP15", 9900, 1500),
    ("MJ20-199", 19900, 2000),
    ("VIP30", 29900, 3000),
    ("MJ50-399", 39900, 5000),
    ("618-MJ60", 49900, 6000),
    ("D11-MJ80", 59900, 8000),
    ("MJ100-699", 69900, 10000),
)
CUSTOM_EVENTS = ("Lucky Draw Played", "Live Gift Sent", "Sign In Checked", "Member Card Opened")
CONSULT_TOPICS = ("售后", "物流", "尺码", "成分咨询", "优惠活动", "发票")
CONTENT_TYPES = ("article", "video", "live")
MEMBER_LEVELS = ((0, "普通会员"), (3, "银卡会员"), (8, "金卡会员"), (15, "钻石会员"))
BAD_EVENT_KINDS = (
    "truncated_json",
    "missing_message_id",
    "missing_user_and_anonymous_id",
    "unparsable_timestamp",
    "unknown_type",
)
BAD_CSV_KINDS = ("negative_quantity", "non_numeric_amount", "unparsable_date")

USERS_HEADER = (
    "user_id",
    "phone",
    "unionid",
    "gender",
    "birth_date",
    "province",
    "city",
    "registered_at",
    "member_level",
    "updated_at",
)
ORDERS_HEADER = (
    "order_id",
    "user_id",
    "phone",
    "channel",
    "store_id",
    "status",
    "ordered_at",
    "paid_amount",
    "discount_amount",
    "coupon_code",
    "updated_at",
)
ORDER_ITEMS_HEADER = ("order_id", "line_no", "product_id", "quantity", "unit_price")
PRODUCTS_HEADER = ("product_id", "product_name", "category", "brand", "list_price", "updated_at")
CONSENTS_HEADER = ("user_id", "purpose", "granted", "recorded_at")

Identifier = tuple[str, str]  # (identifier_type, identifier_value) as in _truth/identifiers.csv


def _hours(peaks: dict[int, float], base: float = 0.15) -> tuple[float, ...]:
    """A 24-hour activity profile from a few peaks, so personas differ in when they visit."""
    weights = [base] * 24
    for hour, weight in peaks.items():
        weights[hour] += weight
        weights[(hour + 1) % 24] += weight / 2
        weights[(hour - 1) % 24] += weight / 2
    return tuple(weights)


@dataclass(frozen=True)
class Persona:
    name: str
    share: float
    hours: tuple[float, ...]
    content_mix: tuple[float, float, float]  # article, video, live
    actions: dict[str, float]
    actions_per_session: int
    activity: float
    coupon_use: float
    category_weights: tuple[float, ...]
    price_preference: str  # low | mid | high
    items_per_order: tuple[int, int]
    offline_share: float
    lifecycle_weights: tuple[float, ...]
    age_range: tuple[int, int]


def _actions(**weights: float) -> dict[str, float]:
    base = dict(
        product=3.0,
        content=1.0,
        search=1.0,
        cart=0.6,
        wishlist=0.2,
        share=0.1,
        group=0.05,
        consult=0.1,
        coupon=0.3,
        custom=0.15,
        review=0.05,
    )
    return base | weights


# Category order: 美妆护肤 母婴用品 食品饮料 服饰鞋包 家居日用 数码家电 运动户外 图书文具
PERSONAS = (
    Persona(
        "night_owl_viewer",
        share=0.15,
        hours=_hours({23: 3, 0: 3, 1: 2, 22: 2}),
        content_mix=(0.15, 0.6, 0.25),
        actions=_actions(content=4.0, product=1.5),
        actions_per_session=5,
        activity=1.3,
        coupon_use=0.2,
        category_weights=(1, 0.5, 1.5, 1, 0.5, 2.5, 1, 1.5),
        price_preference="mid",
        items_per_order=(1, 2),
        offline_share=0.05,
        lifecycle_weights=(0.30, 0.08, 0.12, 0.12, 0.13, 0.25),
        age_range=(18, 32),
    ),
    Persona(
        "bargain_hunter",
        share=0.22,
        hours=_hours({12: 2, 20: 3, 21: 2}),
        content_mix=(0.5, 0.4, 0.1),
        actions=_actions(coupon=2.0, search=2.0, cart=1.0),
        actions_per_session=4,
        activity=1.0,
        coupon_use=0.75,
        category_weights=(1, 2, 3, 1, 3, 0.5, 0.5, 0.5),
        price_preference="low",
        items_per_order=(2, 4),
        offline_share=0.12,
        lifecycle_weights=(0.20, 0.10, 0.15, 0.18, 0.15, 0.22),
        age_range=(25, 55),
    ),
    Persona(
        "quality_seeker",
        share=0.13,
        hours=_hours({19: 2, 20: 3, 21: 2}),
        content_mix=(0.4, 0.5, 0.1),
        actions=_actions(product=4.0, consult=0.5, wishlist=0.6),
        actions_per_session=4,
        activity=0.9,
        coupon_use=0.05,
        category_weights=(3, 1, 0.5, 2.5, 0.5, 2.5, 1, 0.3),
        price_preference="high",
        items_per_order=(1, 2),
        offline_share=0.15,
        lifecycle_weights=(0.20, 0.10, 0.15, 0.20, 0.12, 0.23),
        age_range=(28, 50),
    ),
    Persona(
        "community_sharer",
        share=0.10,
        hours=_hours({10: 2, 15: 1, 20: 3}),
        content_mix=(0.4, 0.4, 0.2),
        actions=_actions(share=2.0, group=1.5, content=1.5),
        actions_per_session=4,
        activity=1.2,
        coupon_use=0.35,
        category_weights=(2, 2, 2, 1, 1.5, 0.5, 0.5, 0.5),
        price_preference="mid",
        items_per_order=(1, 3),
        offline_share=0.1,
        lifecycle_weights=(0.15, 0.08, 0.15, 0.25, 0.12, 0.25),
        age_range=(25, 45),
    ),
    Persona(
        "casual_browser",
        share=0.25,
        hours=_hours({8: 2, 12: 2, 22: 2}),
        content_mix=(0.75, 0.2, 0.05),
        actions=_actions(content=3.0, product=1.0, cart=0.1),
        actions_per_session=3,
        activity=0.7,
        coupon_use=0.15,
        category_weights=(1, 1, 1.5, 1, 1, 1, 1, 2),
        price_preference="mid",
        items_per_order=(1, 2),
        offline_share=0.1,
        lifecycle_weights=(0.55, 0.08, 0.07, 0.05, 0.07, 0.18),
        age_range=(18, 60),
    ),
    Persona(
        "loyal_regular",
        share=0.15,
        hours=_hours({10: 3, 11: 1, 20: 2}),
        content_mix=(0.4, 0.4, 0.2),
        actions=_actions(product=2.5, cart=1.0),
        actions_per_session=4,
        activity=1.2,
        coupon_use=0.3,
        category_weights=(2, 1.5, 2, 1, 1.5, 1, 1, 0.5),
        price_preference="mid",
        items_per_order=(1, 3),
        offline_share=0.3,
        lifecycle_weights=(0.05, 0.05, 0.10, 0.50, 0.12, 0.18),
        age_range=(30, 60),
    ),
)
KOC = 3  # index of community_sharer, the persona that brings new visitors
BROWSE_SESSIONS = {PROSPECT: 2.5, NEW: 3.0, GROWING: 3.5, MATURE: 4.5, DECLINING: 4.5, CHURNED: 2.5}


@dataclass(frozen=True)
class GenerationSummary:
    people: int
    files_written: int
    records_per_folder: dict[str, int]
    duplicates_planted: int
    bad_records_planted: int
    as_of: date
    out: Path


# ---------------------------------------------------------------- small formatting helpers


def money(cents: int) -> str:
    """Contract money: yuan as decimal text with two places, from exact integer cents."""
    sign = "-" if cents < 0 else ""
    cents = abs(cents)
    return f"{sign}{cents // 100}.{cents % 100:02d}"


@dataclass(frozen=True)
class Calendar:
    start: date
    n_days: int  # days start..end inclusive; index n_days - 1 is the as-of day

    @property
    def last_activity_day(self) -> int:
        return self.n_days - 2

    def day(self, k: int) -> date:
        return self.start + timedelta(days=k)

    def iso(self, k: int) -> str:
        return (self.start + timedelta(days=k)).isoformat()


class _Clock:
    """Formats local-millisecond offsets from the start day into the contract's timestamp shapes."""

    def __init__(self, calendar: Calendar):
        self.dates = [calendar.iso(k) for k in range(-1, calendar.n_days + 2)]
        self.times = _times_of_day()

    def utc_iso(self, local_ms: int) -> str:
        day, rest = divmod(local_ms - LOCAL_OFFSET_MS, DAY_MS)
        second, ms = divmod(rest, 1000)
        return f"{self.dates[day + 1]}T{self.times[second]}.{ms:03d}Z"

    def local_offset(self, local_ms: int) -> str:
        day, rest = divmod(local_ms, DAY_MS)
        return f"{self.dates[day + 1]}T{self.times[rest // 1000]}+08:00"

    def local_naive(self, local_ms: int) -> str:
        day, rest = divmod(local_ms, DAY_MS)
        return f"{self.dates[day + 1]} {self.times[rest // 1000]}"


@cache
def _times_of_day() -> tuple[str, ...]:
    """'HH:MM:SS' for every second of a day: looking up beats formatting tens of millions of timestamps."""
    return tuple(f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60))


# ---------------------------------------------------------------- planning (vectorised)


@dataclass(frozen=True)
class Catalogue:
    product_ids: tuple[str, ...]
    names: tuple[str, ...]
    categories: tuple[int, ...]
    brands: tuple[str, ...]
    price_before: tuple[int, ...]  # cents
    price_after: tuple[int, ...]
    update_day: int
    by_category_price: tuple[tuple[int, ...], ...]  # product indexes per category, cheapest first
    content_by_type: tuple[tuple[str, ...], ...]


def _round_price(yuan: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shop prices end in .00 or .90, so the catalogue looks like a real price list."""
    whole = np.maximum(np.round(yuan), 2).astype(np.int64) * 100
    return whole - np.where(rng.random(len(yuan)) < 0.4, 10, 0)


def build_catalogue(rng: np.random.Generator, calendar: Calendar) -> Catalogue:
    """200-400 products over the eight categories, with a later price-update snapshot for a quarter."""
    n = int(rng.integers(200, 401))
    cat = rng.integers(0, len(CATEGORY_NAMES), size=n)
    lo = np.array([CATEGORIES[c][2] for c in CATEGORY_NAMES], dtype=float)[cat]
    hi = np.array([CATEGORIES[c][3] for c in CATEGORY_NAMES], dtype=float)[cat]
    price = _round_price(np.exp(rng.uniform(np.log(lo), np.log(hi))), rng)
    changed = rng.random(n) < 0.25
    factor = rng.choice([0.8, 0.9, 1.1, 1.2], size=n)
    new_price = np.where(changed, _round_price(price / 100 * factor, rng), price)
    brand_pick, noun_pick, desc_pick = rng.integers(0, 1000, size=(3, n))
    names, brands = [], []
    for i in range(n):
        brand_list, nouns, _, _ = CATEGORIES[CATEGORY_NAMES[cat[i]]]
        brand = brand_list[brand_pick[i] % len(brand_list)]
        brands.append(brand)
        names.append(
            f"{brand}{DESCRIPTORS[desc_pick[i] % len(DESCRIPTORS)]}{nouns[noun_pick[i] % len(nouns)]}"
        )
    by_cat = tuple(
        tuple(int(j) for j in sorted(np.flatnonzero(cat == c), key=lambda j: (price[j], j)))
        for c in range(len(CATEGORY_NAMES))
    )
    content_type = rng.choice(3, size=240, p=[0.5, 0.35, 0.15])
    content = tuple(tuple(f"C{j + 1:05d}" for j in np.flatnonzero(content_type == t)) for t in range(3))
    return Catalogue(
        product_ids=tuple(f"SKU{10001 + i}" for i in range(n)),
        names=tuple(names),
        categories=tuple(int(c) for c in cat),
        brands=tuple(brands),
        price_before=tuple(int(p) for p in price),
        price_after=tuple(int(p) for p in new_price),
        update_day=int(calendar.n_days * 0.6),
        by_category_price=by_cat,
        content_by_type=content,
    )


def _uniform(rng: np.random.Generator, lo, hi, size: int) -> np.ndarray:
    """Integers uniform on [lo, hi] inclusive, element-wise for array bounds."""
    lo = np.broadcast_to(np.asarray(lo, dtype=np.int64), (size,))
    hi = np.broadcast_to(np.asarray(hi, dtype=np.int64), (size,))
    return lo + np.floor(rng.random(size) * (hi - lo + 1)).astype(np.int64)


def _pick(rng: np.random.Generator, values: Iterable[int], size: int) -> np.ndarray:
    return rng.choice(np.fromiter(values, dtype=np.int64), size=size)


def _sample_categorical(rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
    """One draw per row of a (rows, options) weight matrix."""
    cum = np.cumsum(weights / weights.sum(axis=1, keepdims=True), axis=1)
    return np.minimum((rng.random(len(weights))[:, None] > cum).sum(axis=1), weights.shape[1] - 1)


LAPSE_MARGIN_DAYS = 20
"""How far past the classifier's lapse threshold, max(60, 3 x median order interval), a declining buyer is."""
ORDER_DAY_JITTER = 5
"""Most an order interval can exceed the planned gap: +-2 days of order-day jitter at each end, plus one
day for a pipeline that measures intervals from timestamps rather than dates."""


def _largest_declining_gap(last_paid: np.ndarray) -> np.ndarray:
    """Longest regular gap that keeps 3 x (gap + jitter) at least LAPSE_MARGIN_DAYS short of the lapse."""
    return (last_paid - LAPSE_MARGIN_DAYS) // 3 - ORDER_DAY_JITTER


def plan_lifecycles(rng: np.random.Generator, persona: np.ndarray, last_day: int) -> dict[str, np.ndarray]:
    """Order anchors in days before the as-of day, inside each stage's band (about 12% near its edges).

    Every person's stage is also what the lifecycle rules (ml_assets/lifecycle.py: churned after 180 quiet
    days, new within 30 days of the first order, declining past max(60, 3 x median interval), mature from 4
    orders) give; clear-cut people keep a margin of two weeks or more from each of those thresholds.
    """
    n = len(persona)
    lifecycle = _sample_categorical(rng, np.array([p.lifecycle_weights for p in PERSONAS])[persona])
    edge = rng.random(n) < 0.12
    first_paid = np.full(n, -1, dtype=np.int64)
    last_paid = np.full(n, -1, dtype=np.int64)
    n_paid = np.zeros(n, dtype=np.int64)
    interval = np.zeros(n, dtype=np.int64)
    last_active = np.zeros(n, dtype=np.int64)
    lead = _uniform(rng, 0, 30, n)  # days between first visit and first paid order

    m = lifecycle == PROSPECT
    k = int(m.sum())
    # churn starts at 180 days without activity; edge prospects come close to it but stay short of it
    last_active[m] = np.where(edge[m], _uniform(rng, 151, 172, k), _uniform(rng, 1, 150, k))

    m = lifecycle == NEW
    k = int(m.sum())
    paid = np.where(edge[m], _pick(rng, (3, 4, 19, 20), k), _uniform(rng, 5, 18, k))
    first_paid[m], last_paid[m], n_paid[m] = paid, paid, 1
    last_active[m] = _uniform(rng, 1, paid, k)

    m = lifecycle == GROWING
    k = int(m.sum())
    first = _uniform(rng, 70, 140, k)
    last = _uniform(rng, 2, 25, k)
    edge_first = edge[m] & (rng.random(k) < 0.5)
    first = np.where(edge_first, _pick(rng, [*range(60, 70), *range(141, 151)], k), first)
    last = np.where(edge[m] & ~edge_first, _uniform(rng, 26, 30, k), last)
    first_paid[m], last_paid[m], n_paid[m] = first, last, _uniform(rng, 2, 3, k)
    last_active[m] = _uniform(rng, 1, last, k)

    m = lifecycle == MATURE
    k = int(m.sum())
    last = np.where(edge[m], _uniform(rng, 16, 20, k), _uniform(rng, 1, 15, k))
    gap = _uniform(rng, 14, 35, k)
    count = np.minimum(_uniform(rng, 6, 16, k), (last_day - 35 - last) // gap + 1)
    last_paid[m], interval[m], n_paid[m] = last, gap, count
    first_paid[m] = last + (count - 1) * gap
    last_active[m] = _uniform(rng, 1, last, k)

    m = lifecycle == DECLINING
    k = int(m.sum())
    last = np.where(edge[m], _pick(rng, [*range(90, 100), *range(141, 151)], k), _uniform(rng, 100, 140, k))
    gap = _uniform(rng, 15, np.minimum(30, _largest_declining_gap(last)), k)
    count = np.minimum(_uniform(rng, 5, 10, k), (last_day - 35 - last) // gap + 1)
    last_paid[m], interval[m], n_paid[m] = last, gap, count
    first_paid[m] = last + (count - 1) * gap
    last_active[m] = _uniform(rng, 1, 30, k)

    m = lifecycle == CHURNED
    k = int(m.sum())
    active = np.where(edge[m], _uniform(rng, 200, 219, k), _uniform(rng, 220, last_day - 40, k))
    last = np.minimum(active + _uniform(rng, 0, 20, k), last_day - 35)
    gap = _uniform(rng, 20, 60, k)
    count = np.minimum(_uniform(rng, 1, 4, k), (last_day - 35 - last) // gap + 1)
    last_paid[m], interval[m], n_paid[m] = last, gap, count
    first_paid[m] = last + (count - 1) * gap
    last_active[m] = active

    anchor = np.where(first_paid >= 0, first_paid, last_active)
    first_seen = np.minimum(anchor + lead, last_day)
    return dict(
        lifecycle=lifecycle,
        clear=~edge,
        first_paid=first_paid,
        last_paid=last_paid,
        n_paid=n_paid,
        interval=interval,
        first_seen=first_seen,
        last_active=last_active,
    )


def _openids(rng: np.random.Generator, n: int) -> list[str]:
    """WeChat-looking 28-character ids ('o' + url-safe base64)."""
    raw = rng.bytes(21 * n)
    return ["o" + base64.urlsafe_b64encode(raw[21 * i : 21 * i + 21]).decode()[:27] for i in range(n)]


def _uuid_from_bits(bits: int) -> str:
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{h[16:20]}-{h[20:32]}"


def _uuids(rng: np.random.Generator, n: int) -> list[str]:
    raw = rng.bytes(16 * n)
    return [_uuid_from_bits(int.from_bytes(raw[16 * i : 16 * i + 16], "big")) for i in range(n)]


def plan_people(rng: np.random.Generator, n: int, calendar: Calendar) -> dict:
    """Everything about each person that other people's simulation may need, drawn as whole arrays."""
    last_day = calendar.n_days - 1  # in days-before-end, activity lives in [1, last_day]
    persona = rng.choice(len(PERSONAS), size=n, p=np.array([p.share for p in PERSONAS]))
    plan: dict = plan_lifecycles(rng, persona, last_day)
    plan["persona"] = persona
    lifecycle = plan["lifecycle"]
    for key in ("first_paid", "last_paid", "first_seen", "last_active"):
        days_before = plan[key]
        plan[key] = np.where(days_before >= 0, last_day - days_before, -1)  # to day index from start

    registered = (lifecycle != PROSPECT) | (rng.random(n) < 0.4)
    latest_reg = np.where(plan["first_paid"] >= 0, plan["first_paid"], plan["last_active"])
    spread = latest_reg - plan["first_seen"]
    reg_day = plan["first_seen"] + np.floor(rng.random(n) ** 2 * (spread + 1)).astype(np.int64)
    plan["registered"] = registered
    plan["reg_day"] = np.where(registered, np.minimum(reg_day, latest_reg), -1)

    hours = np.array([p.hours for p in PERSONAS])[persona]
    plan["first_sec"] = np.minimum(
        _sample_categorical(rng, hours) * 3600 + _uniform(rng, 0, 3599, n), LATEST_SESSION_START
    )
    n_devices = 1 + _sample_categorical(rng, np.tile([0.6, 0.3, 0.1], (n, 1)))
    kinds = _sample_categorical(rng, np.tile([0.5, 0.25, 0.25], (3 * n, 1))).reshape(n, 3)
    first_kind = _sample_categorical(rng, np.tile([0.86, 0.08, 0.06], (n, 1)))
    buyers = lifecycle != PROSPECT
    first_kind = np.where(buyers & (first_kind == DEVICE_WEB), DEVICE_MP, first_kind)
    first_kind = np.where(persona == KOC, DEVICE_MP, first_kind)
    kinds[:, 0] = first_kind
    plan["n_devices"], plan["device_kinds"] = n_devices, kinds

    plan["location"] = rng.choice(len(LOCATIONS), size=n, p=_location_weights())
    plan["female"] = rng.random(n) < 0.62
    plan["gender_label"] = _uniform(rng, 0, 99, n)
    ages = np.array([p.age_range for p in PERSONAS])[persona]
    age_days = (_uniform(rng, ages[:, 0], ages[:, 1], n) * 365.25 + _uniform(rng, 0, 364, n)).astype(np.int64)
    plan["birth_ordinal"] = (calendar.day(last_day)).toordinal() - age_days
    plan["birth_known"] = rng.random(n) < 0.9

    user_numbers = rng.choice(9 * 10**9, size=n, replace=False) + 10**9
    phone_numbers = rng.choice(7 * 10**9, size=n + 1, replace=False)
    plan["user_id"] = [f"U{v}" for v in user_numbers.tolist()]
    phones = [f"1{3 + v // 10**9}{v % 10**9:09d}" for v in phone_numbers.tolist()]
    plan["phone"], plan["store_phone"] = phones[:n], phones[n]
    plan["unionid"] = _openids(rng, n)
    plan["openid_mp"] = _openids(rng, n)
    plan["openid_oa"] = _openids(rng, n)
    plan["devices"] = np.array(_uuids(rng, 3 * n), dtype=object).reshape(n, 3)
    _plan_referrals(rng, plan)
    _plan_shared_identifiers(rng, plan)
    return plan


def _location_weights() -> np.ndarray:
    weights = np.array([w for _, _, w in LOCATIONS], dtype=float)
    return weights / weights.sum()


def _plan_referrals(rng: np.random.Generator, plan: dict) -> None:
    """Share-driven first visits: a sharer active that day sends a card, the visitor arrives through it."""
    n = len(plan["persona"])
    sharers = np.flatnonzero(plan["persona"] == KOC)
    referrer = np.full(n, -1, dtype=np.int64)
    if len(sharers) == 0:
        plan["referrer"] = referrer
        return
    pending = np.flatnonzero((plan["persona"] != KOC) & (rng.random(n) < 0.18))
    for _ in range(6):
        if len(pending) == 0:
            break
        candidate = sharers[rng.integers(0, len(sharers), size=len(pending))]
        day = plan["first_seen"][pending]
        ok = (
            (plan["first_seen"][candidate] < day)
            & (day <= plan["last_active"][candidate])
            & (day != plan["reg_day"][candidate])
        )
        referrer[pending[ok]] = candidate[ok]
        pending = pending[~ok]
    plan["referrer"] = referrer
    visitors = referrer >= 0
    plan["device_kinds"][visitors, 0] = DEVICE_MP


def _plan_shared_identifiers(rng: np.random.Generator, plan: dict) -> None:
    """A few family devices used by two registered people, and one store phone typed in for walk-ins."""
    n = len(plan["persona"])
    lifecycle = plan["lifecycle"]
    registered = plan["registered"]
    plan["shared_device_owner"] = np.full(n, -1, dtype=np.int64)
    # the owner's phone runs the mini-program, so even their pre-login events carry their own openid
    owner_pool = np.flatnonzero(registered & (plan["device_kinds"][:, 0] == DEVICE_MP))
    borrower_pool = np.flatnonzero(registered & (plan["last_active"] > plan["reg_day"] + 1))
    pairs = min(max(1, n // 1000), len(owner_pool) // 2, len(borrower_pool) // 2)
    owners = rng.choice(owner_pool, size=pairs, replace=False)
    borrower_pool = np.setdiff1d(borrower_pool, owners)
    borrowers = rng.choice(borrower_pool, size=min(pairs, len(borrower_pool)), replace=False)
    owners = owners[: len(borrowers)]
    chosen = np.concatenate([owners, borrowers])
    plan["shared_device_owner"][borrowers] = owners
    in_pair = np.zeros(n, dtype=bool)
    in_pair[chosen] = True

    staff = np.flatnonzero(registered & (lifecycle == PROSPECT) & ~in_pair)
    plan["staff_registered"] = np.zeros(n, dtype=bool)
    plan["staff_registered"][rng.choice(staff, size=min(max(2, n // 2000), len(staff)), replace=False)] = True
    mature = np.flatnonzero((lifecycle == MATURE) & ~in_pair)
    plan["store_phone_order"] = np.zeros(n, dtype=bool)
    plan["store_phone_order"][rng.choice(mature, size=min(max(5, n // 100), len(mature)), replace=False)] = (
        True
    )


# ---------------------------------------------------------------- simulation of one chunk


@dataclass
class ChunkTask:
    index: int
    seed: int
    first_person: int
    plan: dict  # the chunk's slice of the people plan
    referrals_out: dict[int, list[tuple[int, int, str]]]  # sharer -> [(visit day, visit second, referrer id)]
    shared_device_ids: dict[int, str]  # borrower -> the owner's device anonymousId
    referrer_ids: dict[int, str]  # visitor -> id the share card carried


@dataclass
class ChunkResult:
    index: int
    people: int
    event_days: dict[int, tuple[bytes, int, list[tuple[int, str]], int]]  # day -> blob, lines, bad, dups
    orders: list[tuple[int, int, str, tuple[str, ...]]]  # (file day, updated ms, order id, row)
    order_items: list[tuple[int, int, str, tuple[str, ...]]]
    users: list[tuple[int, str, tuple[str, ...]]]  # (updated ms, user id, row)
    consents: list[tuple[int, str, tuple[str, ...]]]
    persons: list[tuple[str, ...]]
    identifiers: list[tuple[str, str, str, str]]  # type, value, person id, linkable
    truth_orders: list[tuple[str, ...]]
    store_phone_people: list[str]


@dataclass
class _Order:
    day: int
    ms: int  # local ms since start midnight
    online: bool
    items: list[tuple[int, int, int]]  # product index, quantity, unit price cents
    coupon: str | None
    discount: int
    status: str  # final status
    via_store_phone: bool = False
    order_id: str = ""
    store_id: str = ""
    channel: str = "offline_store"

    @property
    def subtotal(self) -> int:
        return sum(q * p for _, q, p in self.items)

    @property
    def paid(self) -> int:
        return self.subtotal - self.discount


@dataclass
class _Session:
    day: int
    sec: int
    device: int
    register: bool = False
    referral_id: str | None = None
    order: _Order | None = None
    share_card: bool = False
    borrowed: bool = False


class _FastRandom(random.Random):
    """random.Random with cheaper integer and choice draws; the hot loop makes tens of millions of them."""

    def randint(self, a: int, b: int) -> int:
        return a + int(self.random() * (b - a + 1))

    def choice(self, seq):
        return seq[int(self.random() * len(seq))]


class _ChunkSimulator:
    """Turns a chunk of planned people into event lines and CSV rows; state is the chunk's own RNG."""

    def __init__(self, world: World, task: ChunkTask):
        self.world = world
        self.cat = world.catalogue
        self.clock = _Clock(world.calendar)
        self.task = task
        self.rnd = _FastRandom(task.seed)
        self.id_rng = np.random.default_rng(task.seed)
        self.id_pool, self.id_offset = "", 0
        self.days: dict[int, list[tuple[int, int, int, bytes]]] = defaultdict(list)
        self.seq = 0
        self.orders: list = []
        self.items: list = []
        self.users: list = []
        self.consents: list = []
        self.persons: list = []
        self.identifiers: list = []
        self.truth_orders: list = []
        self.store_phone_people: list = []
        self.last_file_day = world.calendar.last_activity_day
        self.shared_values = world.shared_anonymous_ids | {world.store_phone}

    # ------------------------------------------------------------ event plumbing
    def _timestamp(self, local_ms: int) -> tuple[str, int]:
        r = self.rnd.random()
        if r < 0.82:
            return self.clock.utc_iso(local_ms), local_ms
        whole = local_ms - local_ms % 1000
        if r < 0.93:
            return self.clock.local_offset(whole), whole
        return self.clock.local_naive(whole), whole

    def _message_id(self) -> str:
        if self.id_offset >= len(self.id_pool):
            self.id_pool, self.id_offset = self.id_rng.bytes(16 * 16_384).hex(), 0
        start = self.id_offset
        self.id_offset += 32
        return self.id_pool[start : start + 32]

    def _push(self, day: int, ms: int, tag: int, line: bytes) -> None:
        self.seq += 1
        self.days[day].append((ms, self.seq, tag, line))

    def _emit(self, record: dict, local_ms: int) -> None:
        """Write one good event line and maybe a retry copy or a corrupted sibling."""
        line = orjson.dumps(record)
        day = local_ms // DAY_MS
        self._push(day, local_ms, 0, line)
        u = self.rnd.random()
        if u >= DUPLICATE_RATE + BAD_EVENT_RATE:
            return
        rnd = self.rnd
        if u < DUPLICATE_RATE:
            if rnd.random() < 0.3 and day < self.last_file_day:
                later = min(day + rnd.randint(1, 3), self.last_file_day)
                self._push(later, later * DAY_MS + rnd.randint(0, DAY_MS - 1), 1, line)
            else:
                self._push(day, local_ms + rnd.randint(0, 5000), 1, line)
        else:
            kind = rnd.randint(0, len(BAD_EVENT_KINDS) - 1)
            self._push(day, local_ms + rnd.randint(0, 3000), 2 + kind, self._corrupt(record, kind))

    def _corrupt(self, record: dict, kind: int) -> bytes:
        bad = dict(record)
        bad["messageId"] = self._message_id()
        name = BAD_EVENT_KINDS[kind]
        if name == "missing_message_id":
            del bad["messageId"]
        elif name == "missing_user_and_anonymous_id":
            bad.pop("userId", None)
            bad.pop("anonymousId", None)
        elif name == "unparsable_timestamp":
            bad["timestamp"] = self.rnd.choice(("2026-02-30T25:61:00Z", "昨天 18:23", "1700000000abc"))
        elif name == "unknown_type":
            bad["type"] = self.rnd.choice(("trak", "group", "event"))
        text = orjson.dumps(bad)
        if name == "truncated_json":
            decoded = text.decode()
            text = decoded[: self.rnd.randint(10, len(decoded) - 2)].encode()
        return text

    # ------------------------------------------------------------ per person
    def run(self) -> ChunkResult:
        plan, task = self.task.plan, self.task
        for i in range(len(plan["persona"])):
            self._person(i, task.first_person + i)
        return ChunkResult(
            index=task.index,
            people=len(plan["persona"]),
            event_days=self._event_blocks(),
            orders=self.orders,
            order_items=self.items,
            users=self.users,
            consents=self.consents,
            persons=self.persons,
            identifiers=self.identifiers,
            truth_orders=self.truth_orders,
            store_phone_people=self.store_phone_people,
        )

    def _event_blocks(self) -> dict[int, tuple[bytes, int, list[tuple[int, str]], int]]:
        blocks = {}
        for day in sorted(self.days):
            rows = sorted(self.days[day])
            bad = [(i, BAD_EVENT_KINDS[tag - 2]) for i, (_, _, tag, _) in enumerate(rows) if tag >= 2]
            duplicates = sum(1 for r in rows if r[2] == 1)
            blob = b"\n".join(r[3] for r in rows) + b"\n"
            blocks[day] = (blob, len(rows), bad, duplicates)
        return blocks

    def _person(self, i: int, person_index: int) -> None:
        p = _PersonView(self.task.plan, i, person_index)
        persona = PERSONAS[p.persona]
        rnd = self.rnd
        state = _PersonState(
            p,
            persona,
            rnd,
            self.cat,
            self.task.shared_device_ids.get(person_index),
            self.shared_values,
        )
        orders = self._plan_orders(p, state)
        sessions = self._plan_sessions(p, state, orders)
        for session in sessions:
            self._session(p, state, session)
        for order in orders:
            if not order.online:
                self._offline_order(p, state, order)
        self._crm_rows(p, state, orders)
        self._truth_rows(p, state, orders)

    def _plan_orders(self, p: _PersonView, state: _PersonState) -> list[_Order]:
        rnd = self.rnd
        days = _paid_order_days(p, rnd)
        statuses = ["paid"] * len(days)
        if len(days) >= 2 and rnd.random() < 0.3:
            days.append(rnd.randint(days[0], days[-1] - 1))
            statuses.append("refunded" if rnd.random() < 0.6 else "cancelled")
        persona = state.persona
        orders = []
        for day, status in zip(days, statuses, strict=True):
            online = rnd.random() >= persona.offline_share
            sec = min(state.session_second(), LATEST_SESSION_START) if online else rnd.randint(36_000, 77_400)
            orders.append(self._basket(state, day, sec, online, status))
        orders.sort(key=lambda o: (o.day, o.ms))
        if p.store_phone_order:
            middle = [o for o in orders[1:-1] if o.status == "paid"]
            if middle:
                chosen = rnd.choice(middle)
                chosen.online, chosen.via_store_phone = False, True
                chosen.ms = chosen.day * DAY_MS + rnd.randint(36_000, 77_400) * 1000
                self.store_phone_people.append(p.person_id)
        orders.sort(key=lambda o: (o.day, o.ms))
        for order in orders:
            order.order_id = f"{self.world.calendar.day(order.day):%Y%m%d}{rnd.getrandbits(56):017d}"
            if not order.online:
                order.store_id = state.store_id
        return orders

    def _basket(self, state: _PersonState, day: int, sec: int, online: bool, status: str) -> _Order:
        rnd, persona, cat = self.rnd, state.persona, self.cat
        items = []
        used = set()
        for _ in range(rnd.randint(*persona.items_per_order)):
            product = state.pick_product()
            if product in used:
                continue
            used.add(product)
            price = cat.price_after[product] if day >= cat.update_day else cat.price_before[product]
            if persona.price_preference == "low" and rnd.random() < 0.2:
                price = max(100, int(price * 0.85) // 10 * 10)
            items.append((product, 1 if rnd.random() < 0.75 else rnd.randint(2, 3), price))
        subtotal = sum(q * u for _, q, u in items)
        coupon, discount = None, 0
        if rnd.random() < persona.coupon_use:
            fitting = [c for c in COUPONS if c[1] <= subtotal]
            if fitting:
                coupon, _, discount = (
                    fitting[-1] if persona.price_preference == "low" else rnd.choice(fitting)
                )
        return _Order(
            day=day,
            ms=day * DAY_MS + sec * 1000 + rnd.randint(0, 999),
            online=online,
            items=items,
            coupon=coupon,
            discount=discount,
            status=status,
        )

    def _plan_sessions(self, p: _PersonView, state: _PersonState, orders: list[_Order]) -> list[_Session]:
        rnd, persona = self.rnd, state.persona
        first = _Session(p.first_seen, p.first_sec, 0, referral_id=self.task.referrer_ids.get(p.person_index))
        sessions = [first]
        if p.registered:
            if p.reg_day == p.first_seen:
                first.register = True
            else:
                sessions.append(
                    _Session(p.reg_day, min(state.session_second(), LATEST_SESSION_START), 0, register=True)
                )
        reg_sec = next(s.sec for s in sessions if s.register) if p.registered else 0
        for order in orders:
            sec = (order.ms - order.day * DAY_MS) // 1000
            if order.day == p.reg_day and sec <= reg_sec + 600:  # members buy after they registered
                sec = min(reg_sec + rnd.randint(600, 1800), LATEST_SESSION_START + 1800)
                order.ms = order.day * DAY_MS + sec * 1000 + rnd.randint(0, 999)
            if order.online:
                device = state.order_device()
                sessions.append(_Session(order.day, max(0, sec - rnd.randint(120, 600)), device, order=order))
        rate = BROWSE_SESSIONS[p.lifecycle] * persona.activity * rnd.uniform(0.6, 1.4)
        after_last_paid = p.lifecycle == DECLINING
        for _ in range(int(rate)):
            lo, hi = p.first_seen, p.last_active
            if after_last_paid and rnd.random() < 0.25:
                lo = p.last_paid + 1
            elif after_last_paid:
                hi = p.last_paid
            sessions.append(self._browse_session(state, rnd.randint(lo, hi), p))
        if not any(s.day == p.last_active for s in sessions):
            sessions.append(self._browse_session(state, p.last_active, p))
        for day, sec, _ in self.task.referrals_out.get(p.person_index, []):
            sessions.append(_Session(day, max(60, sec - rnd.randint(120, 7200)), 0, share_card=True))
        if state.borrowed_device is not None:
            for _ in range(rnd.randint(2, 4)):
                sessions.append(
                    _Session(
                        rnd.randint(p.reg_day + 1, p.last_active),
                        state.session_second(),
                        state.borrowed_device,
                        borrowed=True,
                    )
                )
        _after_anchor(sessions, first, rnd)
        if p.registered:
            _after_anchor(sessions, next(s for s in sessions if s.register), rnd)
        sessions.sort(key=lambda s: (s.day, s.sec))
        return sessions

    def _browse_session(self, state: _PersonState, day: int, p: _PersonView) -> _Session:
        device = 0 if self.rnd.random() < 0.7 else self.rnd.randrange(p.n_devices)
        return _Session(day, min(state.session_second(), LATEST_SESSION_START), device)

    # ------------------------------------------------------------ one session
    def _session(self, p: _PersonView, state: _PersonState, s: _Session) -> None:
        rnd, persona = self.rnd, state.persona
        device = state.devices[s.device]
        kind = device.kind
        logged_in = device.logged_in and state.has_registered
        channel = _channel_for(kind, persona, rnd, s)
        ctx = state.context(channel, device, s, rnd)
        ctx_in = state.logged_in_context(ctx) if p.registered else ctx
        ev = _EventCursor(
            self, p, state, device, ctx, ctx_in, s.day * DAY_MS + s.sec * 1000 + rnd.randint(0, 999), channel
        )
        if logged_in:
            ev.login()
        if s.borrowed and not device.logged_in:
            ev.identify(with_phone=True)
            device.logged_in = True
        landing = (
            "商品详情"
            if s.referral_id and rnd.random() < 0.6
            else ("文章详情" if channel == "official_account" else "首页")
        )
        ev.page(landing)
        if s.register:
            ev.page("登录")
            ev.register(rnd.random() < 0.3)
            device.logged_in = state.has_registered = True
        elif state.has_registered and not device.logged_in and (s.order is not None or rnd.random() < 0.7):
            ev.identify(with_phone=rnd.random() < 0.6)
            device.logged_in = True
        if s.share_card:
            ev.share_card()
        elif s.order is not None:
            ev.order_funnel(s.order)
        else:
            ev.browse(persona.actions_per_session + rnd.randint(-2, 3))
        state.note_session(channel, device, ev)

    # ------------------------------------------------------------ orders, CRM, truth
    def _offline_order(self, p: _PersonView, state: _PersonState, order: _Order) -> None:
        if not order.via_store_phone and self.rnd.random() < 0.5:
            record = {
                "messageId": self._message_id(),
                "type": "track",
                "event": "Store Checkout Scanned",
                "userId": p.user_id,
                "properties": {"store_id": order.store_id, "order_id": order.order_id},
            }
            stamp, used = self._timestamp(order.ms + 30_000)
            record["timestamp"] = stamp
            record["context"] = {"channel": "offline_store", "location": state.location_ctx}
            self._emit(record, used)
            state.ids.add(("user_id", p.user_id))
            state.note_first_seen(used, "offline_store", ("user_id", p.user_id))

    def _order_rows(self, p: _PersonView, state: _PersonState, order: _Order) -> None:
        clock, rnd = self.clock, self.rnd
        ordered = clock.local_naive(order.ms)
        phone = self.world.store_phone if order.via_store_phone else p.phone
        if not order.online and not order.via_store_phone:
            state.ids.add(("phone", p.phone))
        row = (
            order.order_id,
            p.user_id if order.online else "",
            phone,
            order.channel,
            order.store_id,
            "paid",
            ordered,
            money(order.paid),
            money(order.discount),
            order.coupon or "",
            ordered,
        )
        self.orders.append((order.day, order.ms, order.order_id, row))
        if order.online:
            state.link(("user_id", p.user_id), ("phone", phone))
        for line_no, (product, qty, price) in enumerate(order.items, start=1):
            self.items.append(
                (
                    order.day,
                    order.ms,
                    order.order_id,
                    (order.order_id, str(line_no), self.cat.product_ids[product], str(qty), money(price)),
                )
            )
        if order.status != "paid":
            if order.status == "refunded" and order.day + 1 < p.last_active:
                update_day = rnd.randint(order.day + 1, min(order.day + 10, p.last_active))
                update_ms = update_day * DAY_MS + rnd.randint(36_000, 79_000) * 1000
            else:
                update_ms = min(order.ms + rnd.randint(300, 3600) * 1000, (order.day + 1) * DAY_MS - 1000)
            updated = clock.local_naive(update_ms)
            later = (*row[:5], order.status, ordered, *row[7:10], updated)
            self.orders.append((update_ms // DAY_MS, update_ms, order.order_id, later))

    def _crm_rows(self, p: _PersonView, state: _PersonState, orders: list[_Order]) -> None:
        for order in orders:
            self._order_rows(p, state, order)
        if not p.registered:
            return
        rnd, clock = self.rnd, self.clock
        phone = self.world.store_phone if p.staff_registered else p.phone
        if not p.staff_registered:
            state.ids.add(("phone", p.phone))
        state.ids.add(("user_id", p.user_id))
        state.ids.add(("unionid", p.unionid))
        state.link(("user_id", p.user_id), ("phone", phone))
        state.link(("user_id", p.user_id), ("unionid", p.unionid))
        registered = clock.local_naive(state.registered_ms)

        def snapshot(level: str, at_ms: int) -> None:
            row = (
                p.user_id,
                phone,
                p.unionid,
                p.crm_gender,
                p.birth_date,
                p.province,
                p.city,
                registered,
                level,
                clock.local_naive(at_ms),
            )
            self.users.append((at_ms, p.user_id, row))

        snapshot(MEMBER_LEVELS[0][1], state.registered_ms)
        paid_so_far = 0
        for order in orders:
            if order.status != "paid":
                continue
            paid_so_far += 1
            for threshold, level in MEMBER_LEVELS[1:]:
                if paid_so_far == threshold:
                    snapshot(level, min(order.ms + 600_000, (order.day + 1) * DAY_MS - 1000))
        if rnd.random() < 0.1 and p.last_active > p.reg_day:
            day = rnd.randint(p.reg_day + 1, p.last_active)
            level = _level_for(sum(1 for o in orders if o.status == "paid" and o.day < day))
            snapshot(level, day * DAY_MS + rnd.randint(36_000, 79_000) * 1000)
        self._consent_rows(p, state)

    def _consent_rows(self, p: _PersonView, state: _PersonState) -> None:
        rnd, clock = self.rnd, self.clock

        def record(purpose: str, granted: bool, at_ms: int) -> None:
            row = (p.user_id, purpose, "true" if granted else "false", clock.local_naive(at_ms))
            self.consents.append((at_ms, p.user_id, row))

        def later_ms() -> int:
            day = rnd.randint(p.reg_day, p.last_active)
            return max(day * DAY_MS + rnd.randint(36_000, 79_000) * 1000, state.registered_ms + 60_000)

        if rnd.random() < 0.35:
            record("marketing", True, state.registered_ms + 5_000)
            if rnd.random() < 0.1:
                record("marketing", False, later_ms())
        if rnd.random() < 0.04:
            record("profiling", False, later_ms())
        if rnd.random() < 0.06:
            record("personalization", False, later_ms())

    def _truth_rows(self, p: _PersonView, state: _PersonState, orders: list[_Order]) -> None:
        paid = [o for o in orders if o.status == "paid"]
        last_paid = self.clock.utc_iso(paid[-1].ms - paid[-1].ms % 1000) if paid else ""
        gender = p.truth_gender if p.registered else "U"
        self.persons.append(
            (
                p.person_id,
                PERSONAS[p.persona].name,
                LIFECYCLES[p.lifecycle],
                "true" if p.clear else "false",
                p.user_id if p.registered else "",
                gender,
                p.birth_date if p.registered else "",
                p.province,
                p.city,
                self.clock.utc_iso(state.first_seen_ms),
                state.first_channel,
                str(len(paid)),
                money(sum(o.paid for o in paid)),
                last_paid,
            )
        )
        for order in orders:
            self.truth_orders.append(
                (
                    order.order_id,
                    p.person_id,
                    order.status,
                    money(order.paid),
                    "true" if order.via_store_phone else "false",
                )
            )
        anchor = ("user_id", p.user_id) if p.registered else state.first_identifier
        linked = linked_identifiers(anchor, state.links)
        self.identifiers.extend(
            (kind, value, p.person_id, "true" if (kind, value) in linked else "false")
            for kind, value in sorted(state.ids)
        )


def linked_identifiers(anchor: Identifier, links: Iterable[tuple[Identifier, Identifier]]) -> set[Identifier]:
    """Identifiers a chain of proven links joins to the anchor (union-find): what the data can attribute."""
    parent: dict[Identifier, Identifier] = {anchor: anchor}

    def root(node: Identifier) -> Identifier:
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for one, other in links:
        parent[root(one)] = root(other)
    anchor_root = root(anchor)
    return {node for node in parent if root(node) == anchor_root}


def _after_anchor(sessions: list[_Session], anchor: _Session, rnd: random.Random) -> None:
    """Sessions sharing the anchor's day start after it, so a first visit or a login is really first."""
    for s in sessions:
        if s is not anchor and s.day == anchor.day and s.sec <= anchor.sec:
            s.sec = min(anchor.sec + rnd.randint(600, 3600), 82_800)


def _level_for(paid_orders: int) -> str:
    return [level for threshold, level in MEMBER_LEVELS if paid_orders >= threshold][-1]


def _paid_order_days(p: _PersonView, rnd: random.Random) -> list[int]:
    """Paid order days (index from start) matching the planted lifecycle anchors."""
    if p.n_paid == 0:
        return []
    if p.lifecycle in (NEW, GROWING):
        days = [p.first_paid, p.last_paid][: p.n_paid]
        if p.n_paid == 3:
            days.insert(1, rnd.randint(p.first_paid + 1, p.last_paid - 1))
        return days
    days = [p.last_paid]
    for j in range(1, p.n_paid):
        jitter = (
            0 if p.lifecycle == CHURNED else (rnd.randint(-2, 0) if j == p.n_paid - 1 else rnd.randint(-2, 2))
        )
        days.append(p.last_paid - j * p.interval - jitter)
    return sorted(days)


def _channel_for(kind: int, persona: Persona, rnd: random.Random, s: _Session) -> str:
    if kind == DEVICE_APP:
        return "app"
    if kind == DEVICE_WEB:
        return "web"
    if s.order is not None or s.referral_id or s.share_card or s.register or s.borrowed:
        return "miniprogram"
    oa_share = 0.35 if persona.name == "casual_browser" else 0.1
    return "official_account" if rnd.random() < oa_share else "miniprogram"


class _PersonView:
    """Attribute access to one person's planned arrays, converted to plain Python values once."""

    def __init__(self, plan: dict, i: int, person_index: int):
        self.person_index = person_index
        self.person_id = f"person_{person_index + 1:07d}"
        self.persona = int(plan["persona"][i])
        self.lifecycle = int(plan["lifecycle"][i])
        self.clear = bool(plan["clear"][i])
        for key in (
            "first_paid",
            "last_paid",
            "n_paid",
            "interval",
            "first_seen",
            "last_active",
            "reg_day",
            "first_sec",
            "n_devices",
        ):
            setattr(self, key, int(plan[key][i]))
        self.registered = bool(plan["registered"][i])
        self.staff_registered = bool(plan["staff_registered"][i])
        self.store_phone_order = bool(plan["store_phone_order"][i])
        self.device_kinds = [int(k) for k in plan["device_kinds"][i]]
        self.device_ids = list(plan["devices"][i])
        self.user_id = plan["user_id"][i]
        self.phone = plan["phone"][i]
        self.unionid = plan["unionid"][i]
        self.openid_mp = plan["openid_mp"][i]
        self.openid_oa = plan["openid_oa"][i]
        self.province, self.city, _ = LOCATIONS[int(plan["location"][i])]
        label = int(plan["gender_label"][i])
        female = bool(plan["female"][i])
        if label < 8:
            self.crm_gender, self.truth_gender = "U", "U"
        else:
            self.truth_gender = "F" if female else "M"
            self.crm_gender = self.truth_gender if label < 60 else ("女" if female else "男")
        known = bool(plan["birth_known"][i])
        self.birth_date = date.fromordinal(int(plan["birth_ordinal"][i])).isoformat() if known else ""


@dataclass
class _Device:
    anonymous_id: str
    kind: int
    logged_in: bool = False
    os_ctx: dict | None = None


class _PersonState:
    """What accumulates while one person's sessions are simulated: login state, identifiers, first visit."""

    def __init__(
        self,
        p: _PersonView,
        persona: Persona,
        rnd: random.Random,
        cat: Catalogue,
        borrowed_id: str | None,
        shared_values: frozenset[str],
    ):
        self.p, self.persona, self.rnd, self.cat = p, persona, rnd, cat
        self.devices = [_Device(p.device_ids[j], p.device_kinds[j]) for j in range(p.n_devices)]
        for device in self.devices:
            device.os_ctx = _os_context(device.kind, rnd)
        self.borrowed_device: int | None = None
        if borrowed_id is not None:
            self.borrowed_device = len(self.devices)
            self.devices.append(_Device(borrowed_id, DEVICE_MP, os_ctx=_os_context(DEVICE_MP, rnd)))
        self.category_cum = _cumulative([w * rnd.uniform(0.3, 1.7) for w in persona.category_weights])
        self.hour_cum = _cumulative(persona.hours)
        self.content_cum = _cumulative(persona.content_mix)
        self.action_names = list(persona.actions)
        self.action_cum = _cumulative(persona.actions.values())
        self.ids: set[Identifier] = set()
        self.links: set[tuple[Identifier, Identifier]] = set()
        self.first_seen_ms: int | None = None
        self.first_identifier: Identifier | None = None
        self.first_channel = ""
        self.registered_ms = 0
        self.location_ctx = {"country": "中国", "region": p.province, "city": p.city}
        stores = [s for s, city in STORES if city == p.city] or [s for s, _ in STORES]
        self.store_id = stores[rnd.randrange(len(stores))]
        self.shared_values = shared_values
        self.has_registered = False
        self.groups = [f"G{rnd.randint(1000, 1060)}" for _ in range(2)]

    def session_second(self) -> int:
        hour = _bisect(self.hour_cum, self.rnd.random())
        return hour * 3600 + self.rnd.randint(0, 3599)

    def pick_product(self) -> int:
        category = _bisect(self.category_cum, self.rnd.random())
        products = self.cat.by_category_price[category] or self.cat.by_category_price[0]
        half = max(1, len(products) // 2)
        if self.persona.price_preference == "low":
            return products[self.rnd.randrange(half)]
        if self.persona.price_preference == "high":
            return products[len(products) - 1 - self.rnd.randrange(half)]
        return products[self.rnd.randrange(len(products))]

    def order_device(self) -> int:
        usable = [j for j, d in enumerate(self.devices[: self.p.n_devices]) if d.kind != DEVICE_WEB]
        return 0 if 0 in usable and self.rnd.random() < 0.8 else self.rnd.choice(usable)

    def logged_in_context(self, ctx: dict) -> dict:
        """After login WeChat also reveals the unionid, so logged-in events carry it."""
        if "wechat" not in ctx:
            return ctx
        return ctx | {"wechat": ctx["wechat"] | {"unionid": self.p.unionid}}

    def context(self, channel: str, device: _Device, s: _Session, rnd: random.Random) -> dict:
        """The session's context object; events of the session share it."""
        ctx: dict = {"channel": channel}
        if channel == "miniprogram":
            scene = rnd.choice(SHARE_SCENES) if s.referral_id else _weighted(MP_SCENES, rnd)
            ctx["wechat"] = {"appid": MP_APPID, "openid": self.p.openid_mp, "scene": scene}
        elif channel == "official_account":
            ctx["wechat"] = {"appid": OA_APPID, "openid": self.p.openid_oa}
        if device.os_ctx:
            ctx.update(device.os_ctx)
        if s.referral_id:
            ctx["referrer"] = {"type": "share", "id": s.referral_id}
        if rnd.random() < 0.4:
            ctx["location"] = self.location_ctx
        if rnd.random() < 0.08:
            ctx["campaign"] = rnd.choice(CAMPAIGNS)
        return ctx

    def link(self, one: Identifier, other: Identifier) -> None:
        """Record that a written record proves two identifiers belong together (never via a shared one)."""
        if one[1] not in self.shared_values and other[1] not in self.shared_values:
            self.links.add((one, other))

    def note_first_seen(self, at_ms: int, channel: str, identifier: Identifier) -> None:
        if self.first_seen_ms is None or at_ms < self.first_seen_ms:
            self.first_seen_ms, self.first_channel, self.first_identifier = at_ms, channel, identifier

    def note_session(self, channel: str, device: _Device, ev: _EventCursor) -> None:
        if ev.first_ms is None:
            return
        anonymous = ("anonymous_id", device.anonymous_id)
        self.note_first_seen(ev.first_ms, channel, anonymous)
        self._note_session_links(anonymous, ev)
        if device.anonymous_id not in self.shared_values:
            self.ids.add(anonymous)
        if channel == "miniprogram":
            self.ids.add(("openid", self.p.openid_mp))
        elif channel == "official_account":
            self.ids.add(("openid", self.p.openid_oa))
        if ev.was_logged_in:
            self.ids.add(("user_id", self.p.user_id))
            if "wechat" in ev.ctx_in:
                self.ids.add(("unionid", self.p.unionid))
        if ev.phone_sent:
            self.ids.add(("phone", self.p.phone))

    def _note_session_links(self, anonymous: Identifier, ev: _EventCursor) -> None:
        """The links the session's events prove, by the same rules as the warehouse's identity edges."""
        wechat = ev.ctx.get("wechat")
        openid = ("openid", wechat["openid"]) if wechat else None
        if ev.sent_anonymous and openid:
            self.link(openid, anonymous)
        if not ev.was_logged_in:
            return
        user = ("user_id", self.p.user_id)
        self.link(user, anonymous)
        if openid:
            self.link(openid, user)
            if "unionid" in ev.ctx_in["wechat"]:
                self.link(openid, ("unionid", ev.ctx_in["wechat"]["unionid"]))
        if ev.phone_sent:
            self.link(("phone", self.p.phone), user)
        if ev.alias_sent:
            self.link(anonymous, user)


def _os_context(kind: int, rnd: random.Random) -> dict:
    ios = rnd.random() < 0.45
    if kind == DEVICE_WEB:
        agent = (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15"
            if ios
            else "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"
        )
        return {"userAgent": agent, "locale": "zh-CN", "timezone": "Asia/Shanghai"}
    os_ctx = {"os": {"name": "iOS" if ios else "Android", "version": "17.5" if ios else "14"}}
    if kind == DEVICE_APP:
        os_ctx["app"] = {"name": "华享商城", "version": rnd.choice(("3.1.0", "3.2.1", "3.3.0"))}
        os_ctx["device"] = {
            "type": "ios" if ios else "android",
            "model": rnd.choice(("iPhone15,2", "iPhone16,1"))
            if ios
            else rnd.choice(("HUAWEI Mate 60", "Xiaomi 14", "OPPO Reno11")),
        }
    return os_ctx


def _weighted(options: tuple[tuple[int, int], ...], rnd: random.Random) -> int:
    total = sum(w for _, w in options)
    r = rnd.random() * total
    for value, weight in options:
        r -= weight
        if r < 0:
            return value
    return options[-1][0]


def _cumulative(weights: Iterable[float]) -> list[float]:
    """Normalised running sums, the lookup table `_bisect` draws from."""
    sums = list(accumulate(weights))
    return [x / sums[-1] for x in sums]


def _bisect(cum: list[float], u: float) -> int:
    for i, c in enumerate(cum):
        if u < c:
            return i
    return len(cum) - 1


PAGE_PATHS = {
    "首页": "pages/index/index",
    "商品详情": "pages/goods/detail",
    "文章详情": "pages/article/detail",
    "搜索": "pages/search/index",
    "购物车": "pages/cart/index",
    "订单确认": "pages/order/confirm",
    "支付成功": "pages/pay/success",
    "登录": "pages/login/index",
    "直播间": "pages/live/room",
    "个人中心": "pages/me/index",
    "视频": "pages/video/detail",
}
CONTENT_PAGES = ("文章详情", "视频", "直播间")


class _EventCursor:
    """Writes one session's events in time order with the right identity fields."""

    def __init__(
        self,
        sim: _ChunkSimulator,
        p: _PersonView,
        state: _PersonState,
        device: _Device,
        ctx: dict,
        ctx_in: dict,
        start_ms: int,
        channel: str,
    ):
        self.sim, self.p, self.state, self.device = sim, p, state, device
        self.ctx, self.ctx_in = ctx, ctx_in
        self.t = start_ms
        self.day_end = (start_ms // DAY_MS + 1) * DAY_MS - 600_000
        self.user_id: str | None = None
        self.page_type = "screen" if channel == "app" else "page"
        self.first_ms: int | None = None
        self.was_logged_in = False
        self.sent_anonymous = False
        self.phone_sent = False
        self.alias_sent = False

    def _send(self, body: dict, advance_ms: int) -> None:
        record = {"messageId": self.sim._message_id(), **body}
        if self.user_id is not None:
            record["userId"] = self.user_id
            record["context"] = self.ctx_in
        else:
            record["context"] = self.ctx
            self.sent_anonymous = True
        record["anonymousId"] = self.device.anonymous_id
        stamp, used = self.sim._timestamp(self.t)
        record["timestamp"] = stamp
        if self.first_ms is None:
            self.first_ms = used
        self.sim._emit(record, used)
        self.t += advance_ms

    def login(self) -> None:
        self.user_id = self.p.user_id
        self.was_logged_in = True

    def page(self, name: str, **extra) -> None:
        rnd = self.sim.rnd
        duration = rnd.randint(3_000, 90_000)
        props = {"path": PAGE_PATHS[name], "duration_ms": duration, **extra}
        self._send(
            {"type": self.page_type, "name": name, "properties": props}, duration + rnd.randint(200, 2000)
        )

    def track(self, event: str, props: dict, advance_ms: int | None = None) -> None:
        rnd = self.sim.rnd
        if rnd.random() < 0.03:
            props["ab_variant"] = rnd.choice(("A", "B"))
        self._send(
            {"type": "track", "event": event, "properties": props},
            advance_ms if advance_ms is not None else rnd.randint(2_000, 40_000),
        )

    def identify(self, with_phone: bool) -> None:
        self.login()
        traits: dict = {}
        if with_phone and not self.p.staff_registered:
            traits["phone"] = self.p.phone
            self.phone_sent = True
        if self.sim.rnd.random() < 0.5:
            traits["city"] = self.p.city
        self._send({"type": "identify", "traits": traits}, self.sim.rnd.randint(1_000, 5_000))

    def register(self, with_alias: bool) -> None:
        """Phone authorisation: identify with traits, sometimes an explicit alias of the device id."""
        self.state.registered_ms = self.t - self.t % 1000
        self.identify(with_phone=True)
        if with_alias:
            self._send({"type": "alias", "previousId": self.device.anonymous_id}, 1_000)
            self.alias_sent = True
        self.track("Coupon Received", {"coupon_id": "NEW10"})

    def product_view(self, product: int) -> int:
        """Detail page plus Product Viewed at the list price of the day; returns that price in cents."""
        cat = self.sim.cat
        day = self.t // DAY_MS
        price = cat.price_after[product] if day >= cat.update_day else cat.price_before[product]
        pid = cat.product_ids[product]
        self.page("商品详情", product_id=pid)
        self.track(
            "Product Viewed",
            {"product_id": pid, "category": CATEGORY_NAMES[cat.categories[product]], "price": price / 100},
        )
        return price

    def browse(self, actions: int) -> None:
        rnd, state, cat = self.sim.rnd, self.state, self.sim.cat
        for _ in range(max(1, actions)):
            if self.t > self.day_end:
                return
            action = state.action_names[_bisect(state.action_cum, rnd.random())]
            if action == "product":
                self.product_view(state.pick_product())
            elif action == "content":
                kind = _bisect(state.content_cum, rnd.random())
                content_id = rnd.choice(cat.content_by_type[kind])
                duration = rnd.randint(15_000, 240_000) * (1 + 2 * kind)
                self.page(CONTENT_PAGES[kind], content_id=content_id)
                self.track(
                    "Content Viewed",
                    {"content_id": content_id, "content_type": CONTENT_TYPES[kind], "duration_ms": duration},
                    min(duration, 120_000),
                )
            elif action == "search":
                product = state.pick_product()
                query = rnd.choice(
                    (cat.brands[product], cat.names[product][-4:], CATEGORY_NAMES[cat.categories[product]])
                )
                self.page("搜索")
                self.track("Products Searched", {"query": query})
            elif action == "cart":
                product = state.pick_product()
                price = self.product_view(product)
                self.track(
                    "Product Added",
                    {"product_id": cat.product_ids[product], "quantity": 1, "price": price / 100},
                )
                if rnd.random() < 0.3:
                    self.track("Product Removed", {"product_id": cat.product_ids[product]})
            elif action == "wishlist":
                self.track("Product Added to Wishlist", {"product_id": cat.product_ids[state.pick_product()]})
            elif action == "share":
                self.share(group=rnd.random() < 0.4)
            elif action == "group":
                self.track("Group Message Sent", {"group_id": rnd.choice(state.groups)})
            elif action == "consult":
                self.track("Consultation Started", {"topic": rnd.choice(CONSULT_TOPICS)})
            elif action == "coupon":
                self.track("Coupon Received", {"coupon_id": rnd.choice(COUPONS)[0]})
            elif action == "review":
                self.track(
                    "Product Reviewed",
                    {
                        "product_id": cat.product_ids[state.pick_product()],
                        "rating": rnd.randint(3, 5),
                        "review_body": "物流很快，质量不错",
                    },
                )
            else:
                self.custom_event()

    def custom_event(self) -> None:
        rnd = self.sim.rnd
        name = rnd.choice(CUSTOM_EVENTS)
        props = {
            "Lucky Draw Played": {"prize": rnd.choice(("积分10", "优惠券", "谢谢参与"))},
            "Live Gift Sent": {"live_id": f"L{rnd.randint(100, 160)}", "gift": "小心心"},
            "Sign In Checked": {"streak": rnd.randint(1, 30)},
            "Member Card Opened": {"card": "wx_member"},
        }[name]
        self.track(name, props)

    def share(self, group: bool) -> None:
        rnd, cat = self.sim.rnd, self.sim.cat
        via = "wechat_group" if group else rnd.choice(("wechat_friend", "moments"))
        if rnd.random() < 0.5:
            product = self.state.pick_product()
            self.product_view(product)
            self.track("Product Shared", {"product_id": cat.product_ids[product], "share_via": via})
        else:
            kind = _bisect(self.state.content_cum, rnd.random())
            content_id = rnd.choice(cat.content_by_type[kind])
            self.page(CONTENT_PAGES[kind], content_id=content_id)
            self.track("Content Shared", {"content_id": content_id, "content_type": CONTENT_TYPES[kind]})
        if group:
            self.track("Group Message Sent", {"group_id": rnd.choice(self.state.groups)})

    def share_card(self) -> None:
        """The sharer's side of a referral: the card that brought a new visitor."""
        self.share(group=self.sim.rnd.random() < 0.5)

    def order_funnel(self, order: _Order) -> None:
        rnd, cat = self.sim.rnd, self.sim.cat
        if rnd.random() < 0.3:
            self.page("搜索")
            self.track("Products Searched", {"query": CATEGORY_NAMES[cat.categories[order.items[0][0]]]})
        for product, qty, price in order.items:
            self.product_view(product)
            self.track(
                "Product Added",
                {"product_id": cat.product_ids[product], "quantity": qty, "price": price / 100},
            )
        if order.coupon and rnd.random() < 0.5:
            self.track("Coupon Received", {"coupon_id": order.coupon})
        self.page("订单确认")
        checkout_gap = max(1_000, min(order.ms - self.t - 20_000, 300_000))
        self.track(
            "Checkout Started",
            {"order_id": order.order_id, "revenue": order.subtotal / 100},
            checkout_gap if order.ms > self.t + 21_000 else 5_000,
        )
        if order.coupon:
            self.track("Coupon Applied", {"coupon_id": order.coupon, "discount": order.discount / 100}, 3_000)
        self.t = max(self.t, order.ms)
        order.ms = self.t - self.t % 1000
        order.channel = "app" if self.device.kind == DEVICE_APP else "miniprogram"
        self.track(
            "Order Completed",
            {
                "order_id": order.order_id,
                "revenue": order.paid / 100,
                "discount": order.discount / 100,
                "coupon": order.coupon,
                "currency": "CNY",
            },
            rnd.randint(2_000, 8_000),
        )
        self.page("支付成功")


# ---------------------------------------------------------------- chunks, workers and files


@dataclass(frozen=True)
class World:
    calendar: Calendar
    catalogue: Catalogue
    store_phone: str
    shared_anonymous_ids: frozenset[str]


PERSON_KEYS = (
    "persona",
    "lifecycle",
    "clear",
    "first_paid",
    "last_paid",
    "n_paid",
    "interval",
    "first_seen",
    "last_active",
    "reg_day",
    "first_sec",
    "n_devices",
    "registered",
    "staff_registered",
    "store_phone_order",
    "device_kinds",
    "devices",
    "user_id",
    "phone",
    "unionid",
    "openid_mp",
    "openid_oa",
    "location",
    "gender_label",
    "female",
    "birth_ordinal",
    "birth_known",
)


def _referrer_id(plan: dict, sharer: int, day: int) -> str:
    """A logged-in sharer's card carries their userId, an anonymous sharer's carries their openid."""
    if plan["registered"][sharer] and day > plan["reg_day"][sharer]:
        return plan["user_id"][sharer]
    return plan["openid_mp"][sharer]


def make_tasks(plan: dict, chunk_seeds: list[int], chunk_people: int) -> list[ChunkTask]:
    """Slice the plan into independent chunks, carrying the cross-person facts each chunk needs."""
    n = len(plan["persona"])
    referrals_out: dict[int, list[tuple[int, int, str]]] = defaultdict(list)
    referrer_ids: dict[int, str] = {}
    for visitor in np.flatnonzero(plan["referrer"] >= 0).tolist():
        sharer = int(plan["referrer"][visitor])
        day = int(plan["first_seen"][visitor])
        referrer_ids[visitor] = _referrer_id(plan, sharer, day)
        referrals_out[sharer].append((day, int(plan["first_sec"][visitor]), referrer_ids[visitor]))
    shared = {
        b: plan["devices"][int(a)][0] for b, a in enumerate(plan["shared_device_owner"].tolist()) if a >= 0
    }
    tasks = []
    for index, lo in enumerate(range(0, n, chunk_people)):
        hi = min(n, lo + chunk_people)
        inside = range(lo, hi)
        tasks.append(
            ChunkTask(
                index=index,
                seed=chunk_seeds[index],
                first_person=lo,
                plan={key: plan[key][lo:hi] for key in PERSON_KEYS},
                referrals_out={s: v for s, v in referrals_out.items() if s in inside},
                shared_device_ids={b: v for b, v in shared.items() if b in inside},
                referrer_ids={v: r for v, r in referrer_ids.items() if v in inside},
            )
        )
    return tasks


def simulate_chunk(world: World, task: ChunkTask) -> ChunkResult:
    """Worker entry point: one chunk of people to event blocks and CSV rows."""
    return _ChunkSimulator(world, task).run()


class _EventFiles:
    """Appends event blocks to per-day files (every third day gzip) and keeps line accounting."""

    def __init__(self, out: Path, calendar: Calendar):
        self.out, self.calendar = out, calendar
        self.handles: dict[str, io.BufferedWriter | gzip.GzipFile] = {}
        self.raw: dict[str, io.BufferedWriter] = {}
        self.lines: Counter[str] = Counter()
        self.duplicates: Counter[str] = Counter()
        self.bad: list[tuple[str, int, str]] = []

    def relative_path(self, day: int) -> str:
        d = self.calendar.day(day)
        suffix = ".jsonl.gz" if day % 3 == 2 else ".jsonl"
        return f"events/{d:%Y/%m/%d}/events{suffix}"

    def _handle(self, rel: str) -> io.BufferedWriter | gzip.GzipFile:
        if rel not in self.handles:
            path = self.out / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            raw = open(path, "wb")  # noqa: SIM115 - kept open across chunks, closed in close()
            self.raw[rel] = raw
            self.handles[rel] = (
                gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0)
                if rel.endswith(".gz")
                else raw
            )
        return self.handles[rel]

    def write(self, day: int, blob: bytes, n_lines: int, bad: list[tuple[int, str]], duplicates: int) -> None:
        rel = self.relative_path(day)
        base = self.lines[rel]
        self.bad.extend((rel, base + index + 1, kind) for index, kind in bad)
        self.lines[rel] += n_lines
        self.duplicates[rel] += duplicates
        self._handle(rel).write(blob)

    def close(self) -> None:
        for rel, handle in self.handles.items():
            handle.close()
            self.raw[rel].close()


def _workers_can_start() -> bool:
    """Spawned workers re-import __main__ by path; a main read from stdin or a notebook cell has none."""
    main_file = getattr(sys.modules["__main__"], "__file__", None)
    return main_file is None or Path(main_file).exists()


def _run_chunks(
    world: World, tasks: list[ChunkTask], progress: bool, parallel: bool
) -> Iterator[ChunkResult]:
    """Chunk results in chunk order, computed in worker processes when worth it."""
    bar = tqdm(
        total=sum(len(t.plan["persona"]) for t in tasks), unit="people", desc="generate", disable=not progress
    )
    try:
        if not parallel:
            for task in tasks:
                result = simulate_chunk(world, task)
                bar.update(result.people)
                yield result
            return
        workers = max(1, min(os.cpu_count() or 1, 8))
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            pending = []
            next_task = 0
            while next_task < len(tasks) or pending:
                while next_task < len(tasks) and len(pending) < 2 * workers:
                    pending.append(pool.submit(simulate_chunk, world, tasks[next_task]))
                    next_task += 1
                result = pending.pop(0).result()
                bar.update(result.people)
                yield result
    finally:
        bar.close()


# ---------------------------------------------------------------- CSV files


def _group_rows(rows: Iterable[tuple], name_of) -> dict[str, list[tuple[str, ...]]]:
    """Rows keyed by (file key, sort keys..., row) into files, sorted by their time then id."""
    files: dict[str, list[tuple]] = defaultdict(list)
    for item in rows:
        files[name_of(item)].append(item)
    return {
        name: [item[-1] for item in sorted(items, key=lambda r: r[1:-1])]
        for name, items in sorted(files.items())
    }


def order_files(results: list[ChunkResult], calendar: Calendar) -> tuple[dict, dict]:
    """Daily orders and order_items files; an order's status change lands in the file of its update day."""
    orders = _group_rows(
        (r for res in results for r in res.orders), lambda r: f"orders/orders_{calendar.iso(r[0])}.csv"
    )
    items = _group_rows(
        (r for res in results for r in res.order_items),
        lambda r: f"order_items/order_items_{calendar.iso(r[0])}.csv",
    )
    return orders, items


def monthly_files(rows: Iterable[tuple[int, str, tuple[str, ...]]], folder: str, calendar: Calendar) -> dict:
    """Monthly CRM-style exports named by the month of each row's update time."""

    def name(row: tuple) -> str:
        month = calendar.day(row[0] // DAY_MS)
        return f"{folder}/{folder}_{month:%Y-%m}.csv"

    return _group_rows(rows, name)


def product_files(catalogue: Catalogue, calendar: Calendar) -> dict:
    """The initial catalogue at the start, then a snapshot of the products whose list price changed."""
    start = f"{calendar.iso(0)} 00:00:00"
    update = f"{calendar.iso(catalogue.update_day)} 00:00:00"

    def row(i: int, price: int, at: str) -> tuple[str, ...]:
        return (
            catalogue.product_ids[i],
            catalogue.names[i],
            CATEGORY_NAMES[catalogue.categories[i]],
            catalogue.brands[i],
            money(price),
            at,
        )

    n = len(catalogue.product_ids)
    initial = [row(i, catalogue.price_before[i], start) for i in range(n)]
    changed = [
        row(i, catalogue.price_after[i], update)
        for i in range(n)
        if catalogue.price_after[i] != catalogue.price_before[i]
    ]
    return {
        f"products/products_{calendar.day(0):%Y-%m}.csv": initial,
        f"products/products_{calendar.day(catalogue.update_day):%Y-%m}.csv": changed,
    }


def _bad_csv_row(kind: str, template: tuple[str, ...], rnd: random.Random) -> tuple[str, ...]:
    """A rejected-on-arrival row modelled on a real one: fresh order id or an extra negative line."""
    row = list(template)
    if kind == "negative_quantity":
        row[1] = str(90 + rnd.randint(0, 9))
        row[3] = str(-rnd.randint(1, 3))
        return tuple(row)
    row[0] = f"{template[0][:8]}{rnd.getrandbits(56):017d}"
    if kind == "non_numeric_amount":
        row[7] = rnd.choice(("N/A", "¥128.00", "12O.50", "一百元"))
    else:
        year = template[6][:4]
        row[6] = rnd.choice((f"{year}-02-30 10:12:00", f"31/13/{year} 25:00", "昨天 14:05"))
    return tuple(row)


def plant_csv_bad_rows(orders: dict, items: dict, rnd: random.Random) -> dict[str, list[str | None]]:
    """Insert ~0.3% bad rows into order files in place; returns per-file row kinds (None for good rows)."""
    kinds = {name: [None] * len(rows) for files in (orders, items) for name, rows in files.items()}
    total = sum(len(rows) for files in (orders, items) for rows in files.values())
    n_bad = max(len(BAD_CSV_KINDS), round(total * BAD_CSV_RATE))
    order_names, item_names = sorted(orders), sorted(items)
    for j in range(n_bad):
        kind = BAD_CSV_KINDS[j % len(BAD_CSV_KINDS)]
        files, names = (items, item_names) if kind == "negative_quantity" else (orders, order_names)
        name = rnd.choice(names)
        good = [i for i, k in enumerate(kinds[name]) if k is None]
        template = files[name][rnd.choice(good)]
        position = rnd.randint(0, len(files[name]))
        files[name].insert(position, _bad_csv_row(kind, template, rnd))
        kinds[name].insert(position, kind)
    return kinds


def write_csv(path: Path, header: tuple[str, ...], rows: list[tuple[str, ...]], bom: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + buffer.getvalue().encode("utf-8"))


# ---------------------------------------------------------------- entry point


def _prepare_out(out: Path, overwrite: bool) -> None:
    owned = [out / name for name in (*CONTRACT_FOLDERS, "_truth")]
    existing = [p for p in owned if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{out} already holds generated data ({existing[0].name}/); pass overwrite=True"
        )
    for path in existing:
        shutil.rmtree(path)
    out.mkdir(parents=True, exist_ok=True)


def build_world(
    people: int, seed: int, start: date, end: date
) -> tuple[World, dict, list[int], random.Random]:
    """The seeded plan: catalogue, people, per-chunk seeds and the CSV-noise stream."""
    calendar = Calendar(start, (end - start).days + 1)
    plan_seq, chunk_seq, noise_seq = np.random.SeedSequence(seed).spawn(3)
    rng = np.random.default_rng(plan_seq)
    catalogue = build_catalogue(rng, calendar)
    plan = plan_people(rng, people, calendar)
    n_chunks = math.ceil(people / CHUNK_PEOPLE)
    chunk_seeds = [int(s.generate_state(2, dtype=np.uint64)[0]) for s in chunk_seq.spawn(n_chunks)]
    owners = plan["shared_device_owner"]
    shared_ids = frozenset(plan["devices"][int(a)][0] for a in owners.tolist() if a >= 0)
    world = World(calendar, catalogue, plan["store_phone"], shared_ids)
    noise = random.Random(int(noise_seq.generate_state(2, dtype=np.uint64)[0]))
    return world, plan, chunk_seeds, noise


def generate(
    people: int,
    seed: int,
    out: Path,
    start: date = date(2025, 1, 1),
    end: date = date(2026, 6, 30),
    progress: bool = True,
    overwrite: bool = False,
) -> GenerationSummary:
    """Write the sample landing data set and its ground truth under `out`; same inputs, same bytes."""
    if people < 1:
        raise ValueError("people must be at least 1")
    if (end - start).days + 1 < 365:
        raise ValueError("the window start..end must span at least 365 days to hold every lifecycle stage")
    out = Path(out)
    _prepare_out(out, overwrite)
    world, plan, chunk_seeds, noise = build_world(people, seed, start, end)
    calendar = world.calendar
    tasks = make_tasks(plan, chunk_seeds, CHUNK_PEOPLE)
    events = _EventFiles(out, calendar)
    results = []
    parallel = people >= PARALLEL_MIN_PEOPLE and (os.cpu_count() or 1) > 1 and _workers_can_start()
    try:
        for result in _run_chunks(world, tasks, progress, parallel):
            for day, (blob, n_lines, bad, duplicates) in result.event_days.items():
                events.write(day, blob, n_lines, bad, duplicates)
            result.event_days = {}
            results.append(result)
    finally:
        events.close()

    orders, items = order_files(results, calendar)
    csv_kinds = plant_csv_bad_rows(orders, items, noise)
    users = monthly_files((r for res in results for r in res.users), "users", calendar)
    consents = monthly_files((r for res in results for r in res.consents), "consents", calendar)
    products = product_files(world.catalogue, calendar)
    headers = {
        "orders": ORDERS_HEADER,
        "order_items": ORDER_ITEMS_HEADER,
        "users": USERS_HEADER,
        "consents": CONSENTS_HEADER,
        "products": PRODUCTS_HEADER,
    }
    file_stats: dict[str, dict[str, int]] = {
        rel: {"lines": events.lines[rel], "bad": 0, "duplicates": events.duplicates[rel]}
        for rel in events.lines
    }
    bad_records = list(events.bad)
    for rel, _, _ in events.bad:
        file_stats[rel]["bad"] += 1
    for files in (orders, items, users, consents, products):
        for index, (rel, rows) in enumerate(files.items()):
            folder = rel.split("/")[0]
            bom = {
                "users": index % 4 == 1,
                "orders": index % 15 == 7,
                "order_items": index % 20 == 3,
                "products": index == 0,
                "consents": index % 6 == 2,
            }[folder]
            write_csv(out / rel, headers[folder], rows, bom)
            kinds = csv_kinds.get(rel, [None] * len(rows))
            bad_here = [(rel, i + 2, k) for i, k in enumerate(kinds) if k is not None]
            bad_records.extend(bad_here)
            file_stats[rel] = {"lines": len(rows), "bad": len(bad_here), "duplicates": 0}

    return _write_truth(out, seed, people, world, plan, results, file_stats, bad_records)


def _write_truth(
    out: Path,
    seed: int,
    people: int,
    world: World,
    plan: dict,
    results: list[ChunkResult],
    file_stats: dict[str, dict[str, int]],
    bad_records: list[tuple[str, int, str]],
) -> GenerationSummary:
    truth = out / "_truth"
    person_ids = [f"person_{i + 1:07d}" for i in range(people)]
    write_csv(
        truth / "persons.csv",
        (
            "person_id",
            "persona",
            "lifecycle_stage",
            "is_clear_cut",
            "crm_user_id",
            "gender",
            "birth_date",
            "province",
            "city",
            "first_seen_at",
            "first_channel",
            "paid_orders",
            "monetary",
            "last_paid_at",
        ),
        [row for res in results for row in res.persons],
        bom=False,
    )
    write_csv(
        truth / "identifiers.csv",
        ("identifier_type", "identifier_value", "person_id", "linkable"),
        [row for res in results for row in res.identifiers],
        bom=False,
    )
    store_people = {p for res in results for p in res.store_phone_people}
    store_people |= {person_ids[i] for i in np.flatnonzero(plan["staff_registered"]).tolist()}
    shared_rows = [("anonymous_id", device_id, "2") for device_id in sorted(world.shared_anonymous_ids)]
    shared_rows.append(("phone", world.store_phone, str(len(store_people))))
    write_csv(
        truth / "shared_identifiers.csv",
        ("identifier_type", "identifier_value", "person_count"),
        shared_rows,
        bom=False,
    )
    bad_records.sort()
    write_csv(
        truth / "bad_records.csv",
        ("source_file", "line_number", "kind"),
        [(f, str(n), k) for f, n, k in bad_records],
        bom=False,
    )
    referrals = [
        (person_ids[int(s)], person_ids[v]) for v, s in enumerate(plan["referrer"].tolist()) if s >= 0
    ]
    write_csv(
        truth / "referrals.csv", ("sharer_person_id", "visitor_person_id"), sorted(referrals), bom=False
    )
    write_csv(
        truth / "orders.csv",
        ("order_id", "person_id", "latest_status", "paid_amount", "via_shared_phone"),
        sorted(row for res in results for row in res.truth_orders),
        bom=False,
    )

    records: Counter[str] = Counter()
    for rel, stats in file_stats.items():
        records[rel.split("/")[0]] += stats["lines"]
    event_stats = [s for rel, s in file_stats.items() if rel.startswith("events/")]
    duplicates = sum(s["duplicates"] for s in event_stats)
    bad_by_kind = Counter(kind for _, _, kind in bad_records)
    summary = {
        "seed": seed,
        "people": people,
        "start": world.calendar.iso(0),
        "end": world.calendar.iso(world.calendar.n_days - 1),
        "as_of": world.calendar.iso(world.calendar.n_days - 1),
        "records_per_folder": dict(sorted(records.items())),
        "unique_events": sum(s["lines"] - s["bad"] - s["duplicates"] for s in event_stats),
        "duplicate_events": duplicates,
        "bad_records": dict(sorted(bad_by_kind.items())),
        "files": dict(sorted(file_stats.items())),
        "notes": "files.lines counts data lines (CSV header excluded); line_number in bad_records.csv is the "
        "physical line (CSV header is line 1).",
    }
    (truth / "summary.json").write_bytes(
        orjson.dumps(summary, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    )
    return GenerationSummary(
        people=people,
        files_written=len(file_stats) + 7,
        records_per_folder=dict(sorted(records.items())),
        duplicates_planted=duplicates,
        bad_records_planted=len(bad_records),
        as_of=world.calendar.day(world.calendar.n_days - 1),
        out=out,
    )
