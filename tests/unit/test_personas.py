"""Personas: exact effect sizes, names from the distinguishing features, numbers quoted as computed."""

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_assets.personas import (
    PersonaConfig,
    cohens_d,
    describe_clusters,
    feature_effects,
    format_value,
)

FEATURES = [
    "share_morning",
    "share_late_night",
    "share_article",
    "share_video",
    "coupon_use_rate",
    "avg_order_value",
    "orders_per_month",
]
# cluster id -> (mean per feature in FEATURES order, users)
PLANTED = {
    0: ([0.10, 0.75, 0.10, 0.80, 0.20, 120.0, 0.5], 120),  # night-owl video watchers
    1: ([0.60, 0.05, 0.80, 0.10, 0.10, 150.0, 0.4], 100),  # early-bird article readers
    2: ([0.20, 0.15, 0.40, 0.40, 0.85, 60.0, 3.0], 80),  # coupon-savvy repeat buyers
    3: ([0.25, 0.30, 0.45, 0.42, 0.30, 118.0, 1.0], 200),  # close to average on everything
}


@pytest.fixture(scope="module")
def planted() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    groups = []
    for cluster_id, (means, users) in PLANTED.items():
        scales = np.array(means) * 0.08
        group = pd.DataFrame(rng.normal(means, scales, size=(users, len(FEATURES))), columns=FEATURES)
        group["cluster_id"] = cluster_id
        groups.append(group)
    frame = pd.concat(groups, ignore_index=True)
    frame.insert(0, "user_key", [f"u{i}" for i in range(len(frame))])
    night_owls = frame["cluster_id"] == 0
    frame["gender"] = np.where(frame.index % 3 == 0, "U", np.where(frame.index % 3 == 1, "F", "M"))
    frame.loc[night_owls, "gender"] = np.where(frame.index[night_owls] % 4 == 0, "M", "F")  # 3 in 4 women
    frame["age_band"] = np.where(frame.index % 2 == 0, "18-24", "25-34")
    frame["province"] = np.select([frame.index % 5 < 3, frame.index % 5 == 3], ["广东省", "浙江省"], "江苏省")
    return frame.astype({"gender": "string", "age_band": "string", "province": "string"})


@pytest.fixture(scope="module")
def personas(planted) -> pd.DataFrame:
    return describe_clusters(planted, FEATURES).set_index("cluster_id")


def test_effect_sizes_are_exact_on_a_tiny_frame():
    frame = pd.DataFrame(
        {
            "cluster_id": [0, 0, 0, 1, 1],
            "x": [1.0, 2.0, 3.0, 5.0, 7.0],
            "y": [0.5, np.nan, 0.5, 0.1, 0.3],
            "z": [1.0, 1.0, 1.0, 0.0, 0.0],
        }
    )
    effects = feature_effects(frame, ["x", "y", "z"]).set_index(["cluster_id", "feature"])
    # x: means 2 vs 6, sample variances 1 and 2, pooled variance (2*1 + 1*2) / 3 = 4/3
    assert effects.loc[(0, "x"), "effect_size"] == pytest.approx(-4 / math.sqrt(4 / 3))
    assert effects.loc[(1, "x"), "effect_size"] == pytest.approx(2 * math.sqrt(3))
    assert effects.loc[(0, "x"), "population_mean"] == pytest.approx(3.6)
    assert effects.loc[(0, "x"), "ratio"] == pytest.approx(2 / 3.6)
    # y: the null is ignored; means 0.5 vs 0.2, pooled variance (0 + 0.02) / 2 = 0.01
    assert effects.loc[(0, "y"), "cluster_mean"] == pytest.approx(0.5)
    assert effects.loc[(0, "y"), "population_mean"] == pytest.approx(0.35)
    assert effects.loc[(0, "y"), "effect_size"] == pytest.approx(3.0)
    # z: both groups constant, so the population standard deviation sqrt(0.24) is the scale
    assert effects.loc[(0, "z"), "effect_size"] == pytest.approx(1 / math.sqrt(0.24))


def test_top_features_carry_the_computed_effects():
    frame = pd.DataFrame({"cluster_id": [0, 0, 0, 1, 1], "x": [1.0, 2.0, 3.0, 5.0, 7.0]})
    described = describe_clusters(frame, ["x"]).set_index("cluster_id")
    assert described.loc[1, "top_features"] == [
        {
            "feature": "x",
            "cluster_mean": 6.0,
            "population_mean": pytest.approx(3.6),
            "ratio": pytest.approx(6 / 3.6),
            "effect_size": pytest.approx(2 * math.sqrt(3)),
        }
    ]
    assert described["size"].tolist() == [3, 2]
    assert described["share"].tolist() == [0.6, 0.4]


def test_planted_clusters_get_the_right_names(personas):
    assert personas.loc[0, "name_zh"] == "夜猫子视频党"
    assert personas.loc[0, "name_en"] == "night-owl video watchers"
    assert personas.loc[1, "name_zh"] == "早起图文党"
    assert personas.loc[1, "name_en"] == "early-bird article readers"
    assert "羊毛党" in personas.loc[2, "name_zh"] or "爱用券" in personas.loc[2, "name_zh"]
    assert "coupon" in personas.loc[2, "name_en"]


def test_names_are_unique(personas):
    assert personas["name_zh"].is_unique
    assert personas["name_en"].is_unique


def test_clusters_with_the_same_profile_get_distinct_names_deterministically(planted):
    # cluster 5 is an exact copy of cluster 0: same statistics, same name; the tie goes to the lower id
    copy = planted[planted["cluster_id"] == 0].assign(
        cluster_id=5, user_key=lambda f: f["user_key"] + "-copy"
    )
    twins = pd.concat([planted, copy], ignore_index=True)
    described = describe_clusters(twins, FEATURES).set_index("cluster_id")
    assert described.loc[0, "name_en"] == "night-owl video watchers"
    assert described.loc[5, "name_en"] == "night-owl video watchers (cluster 5)"
    assert described.loc[5, "name_zh"] == "夜猫子视频党（5号）"
    assert described["name_zh"].is_unique and described["name_en"].is_unique


def test_description_quotes_the_computed_numbers(planted, personas):
    members = planted[planted["cluster_id"] == 0]
    late_night = members["share_late_night"].mean()
    population_late_night = planted["share_late_night"].mean()
    ratio = late_night / population_late_night
    english, chinese = personas.loc[0, "description_en"], personas.loc[0, "description_zh"]
    cluster_text, population_text = f"{late_night * 100:.1f}%", f"{population_late_night * 100:.1f}%"
    assert f"{cluster_text} vs {population_text} on average ({ratio:.1f}×)" in english
    assert f"深夜活跃占比{cluster_text}，总体平均{population_text}（{ratio:.1f}×）" in chinese
    assert english.startswith(f"Night-owl video watchers: 120 users ({120 / 500 * 100:.1f}% of all).")
    assert chinese.startswith("夜猫子视频党：共120人，占全部用户的24.0%。")
    value = planted.loc[planted["cluster_id"] == 2, "avg_order_value"].mean()
    assert format_value(value, "yuan", "en") in personas.loc[2, "description_en"]


def test_a_cluster_close_to_average_is_mainstream(personas):
    assert personas.loc[3, "name_en"] == "mainstream users"
    assert personas.loc[3, "name_zh"] == "大众用户"
    assert "close to the population average" in personas.loc[3, "description_en"]


def test_demographics_skip_unknown_gender_and_break_ties_alphabetically(personas):
    assert personas.loc[0, "typical_gender"] == "F"
    assert personas.loc[0, "top_provinces"] == ["广东省", "江苏省", "浙江省"]
    assert personas.loc[0, "typical_age_band"] == "18-24"
    assert "Mostly women" in personas.loc[0, "description_en"]
    assert "以女性为主" in personas.loc[0, "description_zh"]


def test_top_categories_count_list_and_scalar_columns():
    frame = pd.DataFrame(
        {
            "cluster_id": [0, 0, 0, 1],
            "x": [1.0, 1.0, 1.0, 2.0],
            "top_categories": [["美妆护肤", "母婴用品"], ["美妆护肤"], None, ["食品饮料"]],
        }
    )
    config = PersonaConfig(top_category_count=2)
    described = describe_clusters(frame, ["x"], config=config).set_index("cluster_id")
    assert described.loc[0, "top_categories"] == ["美妆护肤", "母婴用品"]
    assert described.loc[1, "top_categories"] == ["食品饮料"]
    assert described.loc[0, "typical_gender"] is None


def test_unknown_features_get_generic_phrases_and_caller_labels():
    refund_rate = [0.5, 0.6, 0.5, 0.6, 0, 0.1, 0, 0.1]
    frame = pd.DataFrame({"cluster_id": [0] * 4 + [1] * 4, "refund_rate": refund_rate})
    described = describe_clusters(frame, ["refund_rate"], {"refund_rate": ("退款率", "refund rate")})
    high = described.set_index("cluster_id").loc[0]
    assert high["name_zh"] == "高退款率用户"
    assert high["name_en"] == "high-refund rate users"
    assert "Refund rate 55.0% vs 30.0% on average (1.8×)" in high["description_en"]


def test_ratio_is_left_out_when_the_population_mean_is_zero():
    frame = pd.DataFrame({"cluster_id": [0, 0, 1, 1], "net_change": [2.0, 2.0, -2.0, -2.0]})
    described = describe_clusters(frame, ["net_change"]).set_index("cluster_id")
    assert described.loc[0, "top_features"][0]["ratio"] is None
    assert described.loc[0, "description_en"] == (
        "High-net change users: 2 users (50.0% of all). Net change 2.00 vs 0.00 on average."
    )
    assert described.loc[1, "name_zh"] == "低net_change用户"


@settings(max_examples=50, deadline=None)
@given(
    values=st.lists(st.integers(-1_000, 1_000), min_size=4, max_size=30),
    split=st.integers(1, 3),
    scale=st.floats(0.01, 100),
    shift=st.floats(-100, 100),
)
def test_effect_size_is_antisymmetric_and_unit_free(values, split, scale, shift):
    data = np.array(values, dtype="float64")
    inside, outside = data[:split], data[split:]
    effect = cohens_d(inside, outside)
    assert cohens_d(outside, inside) == pytest.approx(-effect, abs=1e-9)
    rescaled = cohens_d(inside * scale + shift, outside * scale + shift)
    assert rescaled == pytest.approx(effect, rel=1e-6, abs=1e-6)
