"""Auto-written personas: what sets each behavioural cluster apart, named and described in zh and en.

For every cluster and feature the effect size is Cohen's d of the cluster against everyone else (pooled
sample standard deviation; nulls ignored; when both groups are constant the population standard deviation
is used instead, and 0 when that is 0 too). A feature distinguishes a cluster when |d| >= the naming
threshold. The name combines the top one or two distinguishing features that have a phrase in the
vocabulary for their direction (at most one per group, so "late-night high" and "daytime low" do not both
speak for the same fact): the first gives the modifier, the second the head noun ("夜猫子" + "视频党";
"night-owl" + "video watchers"). Clusters with no distinguishing feature are "大众用户 · mainstream users".
Names that collide get the cluster id appended, the largest cluster keeping the plain name.
Descriptions quote the computed numbers, formatted by `format_value`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

CLUSTER_ID = "cluster_id"
UNKNOWN_GENDERS = frozenset({"U", "u", "未知", ""})
GENDER_WORDS = {"M": ("男性", "men"), "F": ("女性", "women"), "男": ("男性", "men"), "女": ("女性", "women")}
MAINSTREAM_NAME = ("大众用户", "mainstream users")


@dataclass(frozen=True)
class Phrase:
    """How one direction of one feature reads as a name part, in both languages."""

    zh_modifier: str
    zh_noun: str
    en_modifier: str
    en_noun: str


@dataclass(frozen=True)
class FeatureWords:
    """Label, unit and name phrases of one behavioural feature; `group` keeps redundant features apart."""

    label_zh: str
    label_en: str
    unit: str
    group: str
    high: Phrase | None = None
    low: Phrase | None = None


VOCABULARY: dict[str, FeatureWords] = {
    "share_morning": FeatureWords(
        "早间活跃占比",
        "share of activity in the morning",
        "share",
        "time_of_day",
        high=Phrase("早起", "早起族", "early-bird", "early birds"),
    ),
    "share_daytime": FeatureWords(
        "白天活跃占比",
        "share of activity in the daytime",
        "share",
        "time_of_day",
        high=Phrase("白天", "白天活跃族", "daytime", "daytime users"),
    ),
    "share_evening": FeatureWords(
        "晚间活跃占比",
        "share of activity in the evening",
        "share",
        "time_of_day",
        high=Phrase("晚间", "晚间活跃族", "evening", "evening users"),
    ),
    "share_late_night": FeatureWords(
        "深夜活跃占比",
        "share of activity late at night",
        "share",
        "time_of_day",
        high=Phrase("夜猫子", "夜猫子", "night-owl", "night owls"),
    ),
    "share_article": FeatureWords(
        "图文内容占比",
        "share of article content",
        "share",
        "content_type",
        high=Phrase("图文", "图文党", "article-reading", "article readers"),
    ),
    "share_video": FeatureWords(
        "视频内容占比",
        "share of video content",
        "share",
        "content_type",
        high=Phrase("视频", "视频党", "video-watching", "video watchers"),
    ),
    "share_live": FeatureWords(
        "直播内容占比",
        "share of live-stream content",
        "share",
        "content_type",
        high=Phrase("直播", "直播党", "live-stream", "live-stream fans"),
    ),
    "coupon_use_rate": FeatureWords(
        "用券率",
        "coupon use rate",
        "share",
        "price_sensitivity",
        high=Phrase("爱用券", "羊毛党", "coupon-savvy", "coupon hunters"),
        low=Phrase("不用券", "原价买家", "full-price", "full-price buyers"),
    ),
    "discount_share": FeatureWords(
        "折扣金额占比",
        "discount share of spend",
        "share",
        "price_sensitivity",
        high=Phrase("精打细算", "折扣党", "bargain-hunting", "bargain hunters"),
        low=Phrase("不看折扣", "原价买家", "full-price", "full-price buyers"),
    ),
    "shares_per_active_day": FeatureWords(
        "日均分享次数",
        "shares per active day",
        "count",
        "sharing",
        high=Phrase("爱分享", "分享达人", "sharing", "sharers"),
    ),
    "group_messages_per_active_day": FeatureWords(
        "日均群消息数",
        "group messages per active day",
        "count",
        "community",
        high=Phrase("群聊活跃", "群聊达人", "group-chatting", "community chatters"),
    ),
    "avg_dwell_seconds": FeatureWords(
        "平均停留时长",
        "average dwell time",
        "seconds",
        "engagement",
        high=Phrase("深度浏览", "深度浏览者", "deep-browsing", "deep browsers"),
        low=Phrase("快速浏览", "速览者", "skimming", "skimmers"),
    ),
    "avg_order_value": FeatureWords(
        "平均客单价",
        "average order value",
        "yuan",
        "order_value",
        high=Phrase("高客单", "高客单买家", "big-ticket", "big spenders"),
        low=Phrase("小额", "小额买家", "small-basket", "small spenders"),
    ),
    "avg_item_price": FeatureWords(
        "平均商品单价",
        "average item price",
        "yuan",
        "order_value",
        high=Phrase("品质", "品质买家", "premium", "premium buyers"),
        low=Phrase("平价", "平价买家", "budget", "budget buyers"),
    ),
    "full_price_item_share": FeatureWords(
        "原价商品占比",
        "share of items bought at full price",
        "share",
        "price_sensitivity",
        high=Phrase("原价购买", "原价买家", "full-price", "full-price buyers"),
        low=Phrase("折扣购买", "折扣党", "discount-buying", "discount buyers"),
    ),
    "video_seconds_per_active_day": FeatureWords(
        "日均视频时长",
        "video seconds per active day",
        "seconds",
        "content_type",
        high=Phrase("追视频", "视频党", "video-watching", "video watchers"),
    ),
    "orders_per_month": FeatureWords(
        "月均订单数",
        "orders per month",
        "count",
        "purchase_frequency",
        high=Phrase("高频", "回头客", "frequent", "repeat buyers"),
        low=Phrase("低频", "偶尔下单者", "occasional", "occasional buyers"),
    ),
    "consultations_per_active_day": FeatureWords(
        "日均咨询次数",
        "consultations per active day",
        "count",
        "service",
        high=Phrase("爱咨询", "咨询控", "question-asking", "advice seekers"),
    ),
}


@dataclass(frozen=True)
class PersonaConfig:
    """Knobs of the persona writer, so the asset can expose them through dg.Config."""

    name_effect_threshold: float = 0.5
    top_feature_count: int = 5
    described_feature_count: int = 3
    top_province_count: int = 3
    top_category_count: int = 3
    gender_column: str = "gender"
    age_band_column: str = "age_band"
    province_column: str = "province"
    category_column: str = "top_categories"


def feature_words(feature: str, feature_labels: Mapping[str, tuple[str, str]] | None = None) -> FeatureWords:
    """Vocabulary entry for a feature; features outside the vocabulary get generic high/low phrases."""
    label_zh, label_en = (feature_labels or {}).get(feature, (None, None))
    known = VOCABULARY.get(feature)
    if known is not None:
        return FeatureWords(
            label_zh or known.label_zh,
            label_en or known.label_en,
            known.unit,
            known.group,
            known.high,
            known.low,
        )
    label_zh = label_zh or feature
    label_en = label_en or feature.replace("_", " ")
    looks_like_share = feature.startswith("share_") or feature.endswith(("_share", "_rate"))
    return FeatureWords(
        label_zh,
        label_en,
        "share" if looks_like_share else "count",
        feature,
        high=Phrase(f"高{label_zh}", f"高{label_zh}用户", f"high-{label_en}", f"high-{label_en} users"),
        low=Phrase(f"低{label_zh}", f"低{label_zh}用户", f"low-{label_en}", f"low-{label_en} users"),
    )


def format_value(value: float, unit: str, language: str) -> str:
    """The one way numbers are written in descriptions (tests parse them back with the same rules)."""
    if unit == "share":
        return f"{value * 100:.1f}%"
    if unit == "seconds":
        return f"{value:.0f}秒" if language == "zh" else f"{value:.0f} s"
    if unit == "yuan":
        return f"¥{value:,.2f}"
    return f"{value:.2f}"


def format_ratio(ratio: float | None) -> str:
    """Ratio to the population mean, e.g. '3.9×'."""
    return "" if ratio is None else f"{ratio:.1f}×"


def cohens_d(cluster_values: np.ndarray, other_values: np.ndarray) -> float:
    """Standardised mean difference of a cluster against the rest, comparable across features and units."""
    cluster_values = cluster_values[~np.isnan(cluster_values)]
    other_values = other_values[~np.isnan(other_values)]
    n_cluster, n_other = cluster_values.size, other_values.size
    if n_cluster == 0 or n_other == 0:
        return float("nan")
    difference = cluster_values.mean() - other_values.mean()
    pooled_variance = 0.0
    if n_cluster + n_other > 2:
        cluster_ss = cluster_values.var(ddof=1) * (n_cluster - 1) if n_cluster > 1 else 0.0
        other_ss = other_values.var(ddof=1) * (n_other - 1) if n_other > 1 else 0.0
        pooled_variance = (cluster_ss + other_ss) / (n_cluster + n_other - 2)
    scale = np.sqrt(pooled_variance)
    if scale == 0:
        # Both groups constant: the spread of everyone keeps d finite for a clean split.
        scale = np.concatenate([cluster_values, other_values]).std(ddof=0)
    return 0.0 if scale == 0 else float(difference / scale)


def feature_effects(frame: pd.DataFrame, feature_columns: Sequence[str]) -> pd.DataFrame:
    """One row per cluster and feature: cluster_mean, population_mean, ratio and effect_size."""
    labels = frame[CLUSTER_ID].to_numpy()
    members = {cluster_id: labels == cluster_id for cluster_id in sorted(frame[CLUSTER_ID].dropna().unique())}
    rows = []
    for feature in feature_columns:
        values = pd.to_numeric(frame[feature]).to_numpy(dtype="float64", na_value=np.nan)
        population_mean = float(np.nanmean(values)) if (~np.isnan(values)).any() else float("nan")
        for cluster_id, in_cluster in members.items():
            present = values[in_cluster][~np.isnan(values[in_cluster])]
            cluster_mean = float(present.mean()) if present.size else float("nan")
            ratio = cluster_mean / population_mean if population_mean and not np.isnan(cluster_mean) else None
            rows.append(
                {
                    CLUSTER_ID: cluster_id,
                    "feature": feature,
                    "cluster_mean": cluster_mean,
                    "population_mean": population_mean,
                    "ratio": None if ratio is None or np.isnan(ratio) else float(ratio),
                    "effect_size": cohens_d(values[in_cluster], values[~in_cluster]),
                }
            )
    return pd.DataFrame(rows)


def ranked_features(effects: pd.DataFrame) -> list[dict[str, Any]]:
    """A cluster's features by |effect size|, largest first (ties by feature name; undefined ones last)."""
    ordered = effects.assign(
        strength=effects["effect_size"].abs().fillna(-1.0),
    ).sort_values(["strength", "feature"], ascending=[False, True], kind="stable")
    return [
        {
            "feature": row.feature,
            "cluster_mean": float(row.cluster_mean),
            "population_mean": float(row.population_mean),
            "ratio": None if pd.isna(row.ratio) else float(row.ratio),
            "effect_size": float(row.effect_size),
        }
        for row in ordered.itertuples(index=False)
    ]


def naming_features(
    ranked: Sequence[Mapping[str, Any]],
    threshold: float,
    feature_labels: Mapping[str, tuple[str, str]] | None = None,
) -> list[tuple[Mapping[str, Any], Phrase]]:
    """The (at most two) distinguishing features a name is built from, with the phrase for their direction."""
    chosen: list[tuple[Mapping[str, Any], Phrase]] = []
    used_groups: set[str] = set()
    for item in ranked:
        effect = item["effect_size"]
        if np.isnan(effect) or abs(effect) < threshold:
            break
        words = feature_words(item["feature"], feature_labels)
        phrase = words.high if effect > 0 else words.low
        if phrase is None or words.group in used_groups:
            continue
        used_groups.add(words.group)
        chosen.append((item, phrase))
        if len(chosen) == 2:
            break
    return chosen


def compose_name(phrases: Sequence[Phrase]) -> tuple[str, str]:
    """(Chinese, English) name: the first phrase's modifier on the second's noun, or one phrase's noun."""
    if not phrases:
        return MAINSTREAM_NAME
    if len(phrases) == 1:
        return phrases[0].zh_noun, phrases[0].en_noun
    first, second = phrases[0], phrases[1]
    return f"{first.zh_modifier}{second.zh_noun}", f"{first.en_modifier} {second.en_noun}"


def unique_names(names: pd.DataFrame) -> pd.DataFrame:
    """Append the cluster id to names already taken, visiting clusters largest first, so names are unique."""
    order = names.sort_values(["size", CLUSTER_ID], ascending=[False, True], kind="stable")
    taken_zh: set[str] = set()
    taken_en: set[str] = set()
    final: dict[Any, tuple[str, str]] = {}
    for row in order.itertuples(index=False):
        name_zh, name_en = row.name_zh, row.name_en
        if name_zh in taken_zh or name_en in taken_en:
            name_zh, name_en = f"{name_zh}（{row.cluster_id}号）", f"{name_en} (cluster {row.cluster_id})"
        taken_zh.add(name_zh)
        taken_en.add(name_en)
        final[row.cluster_id] = (name_zh, name_en)
    return names.assign(
        name_zh=names[CLUSTER_ID].map(lambda c: final[c][0]),
        name_en=names[CLUSTER_ID].map(lambda c: final[c][1]),
    )


def most_common(values: pd.Series, count: int, exclude: frozenset[str] = frozenset()) -> list[str]:
    """The `count` most frequent non-null values (ties alphabetical), as plain strings."""
    present = values.dropna().astype(str)
    present = present[~present.isin(exclude)]
    if present.empty:
        return []
    counts = present.value_counts().rename_axis("value").reset_index(name="n")
    return (
        counts.sort_values(["n", "value"], ascending=[False, True], kind="stable")["value"]
        .head(count)
        .tolist()
    )


def category_counts_input(values: pd.Series) -> pd.Series:
    """One category per element, whether the column holds single categories or lists of them."""
    exploded = values.dropna().explode()
    return exploded[exploded.notna()]


def demographics(members: pd.DataFrame, config: PersonaConfig) -> dict[str, Any]:
    """Typical gender and age band, top provinces and categories of a cluster (None/[] when not available)."""

    def column(name: str) -> pd.Series | None:
        return members[name] if name in members.columns else None

    gender = column(config.gender_column)
    age_band = column(config.age_band_column)
    province = column(config.province_column)
    categories = column(config.category_column)
    typical_gender = most_common(gender, 1, UNKNOWN_GENDERS) if gender is not None else []
    typical_age_band = most_common(age_band, 1) if age_band is not None else []
    return {
        "typical_gender": typical_gender[0] if typical_gender else None,
        "typical_age_band": typical_age_band[0] if typical_age_band else None,
        "top_provinces": most_common(province, config.top_province_count) if province is not None else [],
        "top_categories": (
            most_common(category_counts_input(categories), config.top_category_count)
            if categories is not None
            else []
        ),
    }


def upper_first(text: str) -> str:
    """Sentence case without lowercasing the rest (str.capitalize would turn "WeChat" into "wechat")."""
    return text[:1].upper() + text[1:]


def _feature_clauses(
    described: Sequence[Mapping[str, Any]], feature_labels: Mapping[str, tuple[str, str]] | None
) -> tuple[list[str], list[str]]:
    """One Chinese and one English clause per described feature, quoting cluster and population values."""
    clauses_zh, clauses_en = [], []
    for item in described:
        words = feature_words(item["feature"], feature_labels)
        ratio = format_ratio(item["ratio"])
        cluster_zh = format_value(item["cluster_mean"], words.unit, "zh")
        population_zh = format_value(item["population_mean"], words.unit, "zh")
        cluster_en = format_value(item["cluster_mean"], words.unit, "en")
        population_en = format_value(item["population_mean"], words.unit, "en")
        clauses_zh.append(
            f"{words.label_zh}{cluster_zh}，总体平均{population_zh}" + (f"（{ratio}）" if ratio else "")
        )
        clauses_en.append(
            f"{words.label_en} {cluster_en} vs {population_en} on average" + (f" ({ratio})" if ratio else "")
        )
    return clauses_zh, clauses_en


def _profile_sentences(profile: Mapping[str, Any]) -> tuple[str, str]:
    """Demographic sentences in Chinese and English; empty when no demographics were given."""
    parts_zh, parts_en = [], []
    gender = profile["typical_gender"]
    if gender is not None:
        gender_zh, gender_en = GENDER_WORDS.get(gender, (gender, gender))
        parts_zh.append(f"以{gender_zh}为主")
        parts_en.append(f"mostly {gender_en}")
    if profile["typical_age_band"] is not None:
        parts_zh.append(f"年龄多在{profile['typical_age_band']}")
        parts_en.append(f"typically aged {profile['typical_age_band']}")
    if profile["top_provinces"]:
        parts_zh.append("主要来自" + "、".join(profile["top_provinces"]))
        parts_en.append("mainly from " + ", ".join(profile["top_provinces"]))
    if profile["top_categories"]:
        parts_zh.append("偏好" + "、".join(profile["top_categories"]))
        parts_en.append("favouring " + ", ".join(profile["top_categories"]))
    sentence_zh = "，".join(parts_zh) + "。" if parts_zh else ""
    sentence_en = upper_first("; ".join(parts_en)) + "." if parts_en else ""
    return sentence_zh, sentence_en


def write_descriptions(
    name_zh: str,
    name_en: str,
    size: int,
    share: float,
    described: Sequence[Mapping[str, Any]],
    profile: Mapping[str, Any],
    feature_labels: Mapping[str, tuple[str, str]] | None = None,
) -> tuple[str, str]:
    """One paragraph per language: size, the distinguishing features with their numbers, then demographics."""
    clauses_zh, clauses_en = _feature_clauses(described, feature_labels)
    if clauses_zh:
        behaviour_zh = "；".join(clauses_zh) + "。"
        behaviour_en = upper_first("; ".join(clauses_en)) + "."
    else:
        behaviour_zh = "各项行为指标均接近总体平均。"
        behaviour_en = "Every behavioural feature is close to the population average."
    profile_zh, profile_en = _profile_sentences(profile)
    description_zh = f"{name_zh}：共{size:,}人，占全部用户的{share * 100:.1f}%。{behaviour_zh}{profile_zh}"
    description_en = f"{upper_first(name_en)}: {size:,} users ({share * 100:.1f}% of all). {behaviour_en}" + (
        f" {profile_en}" if profile_en else ""
    )
    return description_zh, description_en


def describe_clusters(
    frame: pd.DataFrame,
    feature_columns: Sequence[str],
    feature_labels: Mapping[str, tuple[str, str]] | None = None,
    config: PersonaConfig = PersonaConfig(),
) -> pd.DataFrame:
    """One row per cluster: size, share, distinguishing features, demographics, names and descriptions.

    `feature_labels` maps a feature to (Chinese label, English label), overriding the vocabulary's labels.
    """
    if CLUSTER_ID not in frame.columns:
        raise KeyError(f"frame has no {CLUSTER_ID!r} column")
    if frame.empty:
        raise ValueError("no users to describe")
    effects = feature_effects(frame, feature_columns)
    total = len(frame)
    rows = []
    described: dict[Any, list[dict[str, Any]]] = {}
    for cluster_id, members in frame.groupby(CLUSTER_ID, sort=True):
        ranked = ranked_features(effects[effects[CLUSTER_ID] == cluster_id])
        naming = naming_features(ranked, config.name_effect_threshold, feature_labels)
        name_zh, name_en = compose_name([phrase for _, phrase in naming])
        distinguishing = [
            item
            for item in ranked
            if not np.isnan(item["effect_size"]) and abs(item["effect_size"]) >= config.name_effect_threshold
        ]
        described[cluster_id] = distinguishing[: config.described_feature_count]
        rows.append(
            {
                CLUSTER_ID: cluster_id,
                "size": len(members),
                "share": len(members) / total,
                "top_features": ranked[: config.top_feature_count],
                **demographics(members, config),
                "name_zh": name_zh,
                "name_en": name_en,
            }
        )
    personas = unique_names(pd.DataFrame(rows))
    texts = [
        write_descriptions(
            row["name_zh"],
            row["name_en"],
            row["size"],
            row["share"],
            described[row[CLUSTER_ID]],
            row,
            feature_labels,
        )
        for row in personas.to_dict("records")
    ]
    return personas.assign(description_zh=[zh for zh, _ in texts], description_en=[en for _, en in texts])
