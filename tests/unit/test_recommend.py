import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_assets import recommend as recommend_module
from ml_assets.recommend import (
    RECOMMENDATION_COLUMNS,
    evaluate_holdout,
    interaction_strength,
    popularity_baseline,
    recommend,
    split_last_basket,
    top_n_columns,
)


def interactions_frame(rows: list[tuple], kind: str = "purchase") -> pd.DataFrame:
    """(user, product[, weight[, kind]]) tuples as an interactions frame with string keys."""
    full = [(row + (1.0, kind))[:4] if len(row) < 4 else row for row in rows]
    frame = pd.DataFrame(full, columns=["user_key", "product_id", "weight", "kind"])
    return frame.astype({"user_key": "str", "product_id": "str", "kind": "str", "weight": "float64"})


def bought(interactions: pd.DataFrame) -> pd.DataFrame:
    return interactions.loc[interactions["kind"] == "purchase", ["user_key", "product_id"]]


# Purchases: u1 {A, B}, u2 {A, C}, u3 {B, C, D}, u5 {E}. Binary user x item matrix, so by hand:
# |A| = |B| = |C| = sqrt(2), |D| = |E| = 1; cos(A,B) = cos(A,C) = cos(B,C) = 1/2,
# cos(B,D) = cos(C,D) = 1/sqrt(2), cos(A,D) = 0, E is similar to nothing.
# Buyers: A, B, C 2 each, D and E 1 each, out of 4 buyers.
SHOP = interactions_frame(
    [("u1", "A"), ("u1", "B"), ("u2", "A"), ("u2", "C"), ("u3", "B"), ("u3", "C"), ("u3", "D"), ("u5", "E")]
)


def as_records(frame: pd.DataFrame) -> list[tuple]:
    return [
        (user, product, rank, round(score, 12), reason)
        for user, product, rank, score, reason in frame[RECOMMENDATION_COLUMNS].itertuples(index=False)
    ]


def test_exact_top_n_from_hand_computed_cosines_then_popular_fill():
    recommendations = recommend(SHOP, bought(SHOP), eligible_users=None, n=3)

    root_half = round(1 / math.sqrt(2), 12)
    assert as_records(recommendations) == [
        ("u1", "C", 1, 1.0, "similar_items"),  # cos(A,C) + cos(B,C)
        ("u1", "D", 2, root_half, "similar_items"),  # cos(A,D) + cos(B,D)
        ("u1", "E", 3, 0.25, "popular"),
        ("u2", "B", 1, 1.0, "similar_items"),
        ("u2", "D", 2, root_half, "similar_items"),
        ("u2", "E", 3, 0.25, "popular"),
        ("u3", "A", 1, 1.0, "similar_items"),  # only A and E are left for u3
        ("u3", "E", 2, 0.25, "popular"),
        ("u5", "A", 1, 0.5, "popular"),  # ties among A, B, C broken by product_id
        ("u5", "B", 2, 0.5, "popular"),
        ("u5", "C", 3, 0.5, "popular"),
    ]
    assert recommendations.columns.tolist() == RECOMMENDATION_COLUMNS


def test_only_eligible_people_get_rows_and_newcomers_get_popular_items():
    recommendations = recommend(SHOP, bought(SHOP), eligible_users=pd.Series(["u9", "u1"]), n=4)

    assert sorted(recommendations["user_key"].unique()) == ["u1", "u9"]
    newcomer = recommendations[recommendations["user_key"] == "u9"]
    assert newcomer["product_id"].tolist() == ["A", "B", "C", "D"]
    assert newcomer["reason"].unique().tolist() == ["popular"]
    assert recommend(SHOP, bought(SHOP), eligible_users=pd.Series([], dtype="str"), n=3).empty


def test_kind_weights_shape_similarity_and_viewed_items_stay_recommendable():
    interactions = interactions_frame(
        [
            ("a", "X", 1.0, "purchase"),
            ("a", "Y", 1.0, "view"),
            ("b", "X", 1.0, "purchase"),
            ("b", "Z", 1.0, "purchase"),
            ("c", "Y", 1.0, "view"),
            ("c", "Z", 1.0, "view"),
        ]
    )
    # Views weigh 0.2: a = (X 1, Y .2), b = (X 1, Z 1), c = (Y .2, Z .2); |X| = sqrt(2), |Y| = sqrt(.08),
    # |Z| = sqrt(1.04). a has viewed Y without buying it, so Y stays a candidate.
    norm_y, norm_z = math.sqrt(0.08), math.sqrt(1.04)
    cos_xy, cos_xz, cos_yz = (
        0.2 / (math.sqrt(2) * norm_y),
        1 / (math.sqrt(2) * norm_z),
        0.04 / (norm_y * norm_z),
    )

    default = recommend(interactions, bought(interactions), pd.Series(["a"]), n=2)
    # With views weighing as much as purchases every norm is sqrt(2) and every cosine 1/2.
    equal = recommend(
        interactions, bought(interactions), pd.Series(["a"]), n=2, kind_weights={"purchase": 1, "view": 1}
    )

    assert default["product_id"].tolist() == ["Z", "Y"]
    assert default["score"].tolist() == pytest.approx([1.0 * cos_xz + 0.2 * cos_yz, 1.0 * cos_xy], rel=1e-12)
    assert default["reason"].tolist() == ["similar_items", "similar_items"]
    assert equal["product_id"].tolist() == ["Z", "Y"]
    assert equal["score"].tolist() == pytest.approx([0.5 + 0.5, 0.5], rel=1e-12)


def test_interaction_strength_multiplies_weight_kind_and_half_life_decay():
    interactions = interactions_frame(
        [("a", "X", 2.0, "purchase"), ("a", "Y", 1.0, "view"), ("a", "Z", 3.0, "cart")]
    )
    interactions["occurred_at"] = pd.to_datetime(["2024-03-21", "2024-03-11", "2024-03-01"], utc=True)

    plain = interaction_strength(interactions)
    decayed = interaction_strength(interactions, half_life_days=10, as_of=pd.Timestamp("2024-03-21"))

    assert plain.tolist() == [2.0, 0.2, 1.5]
    assert decayed.tolist() == pytest.approx([2.0, 0.2 * 0.5, 1.5 * 0.25], rel=1e-12)
    with pytest.raises(ValueError, match="like"):
        interaction_strength(interactions.assign(kind="like"))
    with pytest.raises(ValueError, match="not negative"):
        interaction_strength(interactions.assign(weight=[1.0, np.nan, -1.0]))


def test_bought_items_are_never_recommended_and_everyone_gets_n_when_enough_items():
    recommendations = recommend(SHOP, bought(SHOP), eligible_users=None, n=2)

    pairs = set(zip(recommendations["user_key"], recommendations["product_id"], strict=True))
    assert not pairs & set(zip(SHOP["user_key"], SHOP["product_id"], strict=True))
    assert recommendations.groupby("user_key").size().to_dict() == {"u1": 2, "u2": 2, "u3": 2, "u5": 2}


def test_ties_break_by_product_id_whatever_the_input_order():
    # Two items equally similar to P (cosine 1/sqrt(3) each); 'b-item' is listed first on purpose.
    interactions = interactions_frame(
        [("x1", "P"), ("x1", "b-item"), ("x2", "P"), ("x2", "a-item"), ("x3", "P")],
    )

    first = recommend(interactions, bought(interactions), pd.Series(["x3"]), n=2)
    reversed_rows = interactions.iloc[::-1].reset_index(drop=True)
    second = recommend(reversed_rows, bought(reversed_rows), pd.Series(["x3"]), n=2)

    assert first["product_id"].tolist() == ["a-item", "b-item"]
    assert first["score"].tolist() == pytest.approx([1 / math.sqrt(3)] * 2, rel=1e-12)
    pd.testing.assert_frame_equal(first, second)


def test_top_n_columns_keeps_lowest_columns_among_ties_at_the_cut():
    keys = np.array([[1.0, 3.0, 3.0, 3.0, -np.inf], [-np.inf, -2.0, 5.0, -1.0, 5.0]])

    assert top_n_columns(keys, 2).tolist() == [[1, 2], [2, 4]]
    assert top_n_columns(keys, 4).tolist() == [[1, 2, 3, 0], [2, 4, 3, 1]]
    assert top_n_columns(keys, 9).shape == (2, 5)


def test_chunked_ranking_equals_one_pass(monkeypatch):
    whole = recommend(SHOP, bought(SHOP), None, n=3)
    monkeypatch.setattr(recommend_module, "CHUNK_CELLS", 1)

    pd.testing.assert_frame_equal(recommend(SHOP, bought(SHOP), None, n=3), whole)


def test_popularity_baseline_ranks_by_buyers_excluding_own_purchases():
    baseline = popularity_baseline(bought(SHOP), pd.Series(["u1", "u9"]), n=2)

    assert as_records(baseline) == [
        ("u1", "C", 1, 0.5, "popular"),
        ("u1", "D", 2, 0.25, "popular"),
        ("u9", "A", 1, 0.5, "popular"),
        ("u9", "B", 2, 0.5, "popular"),
    ]


interaction_rows = st.lists(
    st.tuples(
        st.sampled_from(["u1", "u2", "u3", "u4", "u5"]),
        st.sampled_from(["p1", "p2", "p3", "p4", "p5", "p6"]),
        st.sampled_from([0.5, 1.0, 2.0]),
        st.sampled_from(["purchase", "view", "cart"]),
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=40, deadline=None)
@given(interaction_rows, st.integers(1, 7), st.integers(0, 2**31 - 1))
def test_invariants_of_any_recommendation(rows, n, seed):
    interactions = interactions_frame(rows)
    purchases = bought(interactions)
    eligible = pd.Series(["u1", "u2", "u3", "u6"])

    recommendations = recommend(interactions, purchases, eligible, n=n)
    shuffled = interactions.sample(frac=1.0, random_state=seed)
    again = recommend(shuffled, bought(shuffled), eligible.iloc[::-1], n=n)

    pd.testing.assert_frame_equal(recommendations, again)
    items = set(interactions["product_id"])
    owned = purchases.groupby("user_key")["product_id"].agg(set).to_dict()
    for user in eligible:
        mine = recommendations[recommendations["user_key"] == user]
        assert len(mine) == min(n, len(items - owned.get(user, set())))
        assert mine["rank"].tolist() == list(range(1, len(mine) + 1))
        assert not set(mine["product_id"]) & owned.get(user, set())
        reasons = mine["reason"].tolist()
        assert reasons == sorted(reasons, key=lambda reason: reason != "similar_items")
        similar_scores = mine.loc[mine["reason"] == "similar_items", "score"].to_numpy()
        assert (np.diff(similar_scores) <= 0).all() and (similar_scores > 0).all()


def baskets_frame(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["user_key", "basket_id", "product_id", "ordered_at"])
    return frame.assign(ordered_at=pd.to_datetime(frame["ordered_at"], utc=True)).astype(
        {"user_key": "str", "basket_id": "str", "product_id": "str"}
    )


# s and t have two baskets each (the later one listed first for s); u's last basket only repeats X.
HOLDOUT = baskets_frame(
    [
        ("p", "p1", "X", "2024-01-01"),
        ("p", "p1", "Y", "2024-01-01"),
        ("q", "q1", "X", "2024-01-01"),
        ("q", "q1", "Y", "2024-01-01"),
        ("r", "r1", "X", "2024-01-01"),
        ("r", "r1", "Z", "2024-01-01"),
        ("r", "r1", "V", "2024-01-01"),
        ("s", "s2", "V", "2024-02-01"),
        ("s", "s1", "Z", "2024-01-05"),
        ("t", "t1", "Y", "2024-01-02"),
        ("t", "t2", "X", "2024-02-02"),
        ("t", "t2", "W", "2024-02-02"),
        ("u", "u1", "X", "2024-01-03"),
        ("u", "u2", "X", "2024-01-04"),
    ]
)


def test_split_last_basket_holds_out_each_repeat_buyers_latest_basket():
    train, holdout = split_last_basket(HOLDOUT)

    assert sorted(set(holdout["basket_id"])) == ["s2", "t2", "u2"]
    assert len(train) + len(holdout) == len(HOLDOUT)


def test_evaluate_holdout_exact_hit_rate_and_ndcg():
    # Train: p {X,Y}, q {X,Y}, r {X,Z,V}, s {Z}, t {Y}, u {X}. Relevant: s {V}, t {X, W}; u only repeats.
    # Column norms |V| = 1, |X| = 2, |Y| = sqrt(3), |Z| = sqrt(2): s scores V = cos(Z,V) = 1/sqrt(2) and
    # X = cos(Z,X) = 1/(2 sqrt(2)); t scores X = cos(Y,X) = 1/sqrt(3), then popular Z (2 buyers) before V (1).
    # Model: s [V, X] hits at rank 1; t [X, Z] hits at rank 1 with two relevant items.
    # Popularity (X 4, Y 3, Z 2, V 1): s [X, Y] misses; t [X, Z] hits at rank 1.
    ideal_two = 1 + 1 / math.log2(3)

    metrics = evaluate_holdout(HOLDOUT, k=2)

    assert metrics["users_evaluated"] == 2
    assert metrics["hit_rate"] == 1.0
    assert metrics["ndcg"] == pytest.approx((1 + 1 / ideal_two) / 2, rel=1e-12)
    assert metrics["baseline_hit_rate"] == 0.5
    assert metrics["baseline_ndcg"] == pytest.approx((0 + 1 / ideal_two) / 2, rel=1e-12)


def planted_baskets(seed: int, n_users: int = 1500, n_groups: int = 30, group_size: int = 6) -> pd.DataFrame:
    """People shop within one taste group (planted co-occurrence) plus a few very popular staples."""
    rng = np.random.default_rng(seed)
    staple_weights = np.array([0.4, 0.25, 0.15, 0.1, 0.1])
    rows = []
    for user in range(n_users):
        group = rng.integers(n_groups)
        for basket in range(3):
            basket_id = f"u{user}-b{basket}"
            ordered_at = pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(days=7 * basket + user % 5)
            picks = rng.choice(group_size, size=2, replace=False)
            items = [f"g{group:02d}-{pick}" for pick in picks]
            if rng.random() < 0.8:
                items.append(f"staple-{rng.choice(5, p=staple_weights)}")
            rows += [(f"u{user}", basket_id, item, ordered_at) for item in items]
    return pd.DataFrame(rows, columns=["user_key", "basket_id", "product_id", "ordered_at"]).astype(
        {"user_key": "str", "basket_id": "str", "product_id": "str"}
    )


@pytest.mark.parametrize("half_life_days", [None, 14.0])
def test_model_beats_popularity_on_planted_co_occurrence(half_life_days):
    metrics = evaluate_holdout(planted_baskets(seed=5), k=10, half_life_days=half_life_days)

    assert metrics["users_evaluated"] > 1000
    assert metrics["hit_rate"] > metrics["baseline_hit_rate"] + 0.2
    assert metrics["ndcg"] > metrics["baseline_ndcg"]


@pytest.mark.slow
def test_hundred_thousand_people_over_four_hundred_items_get_ten_each():
    rng = np.random.default_rng(3)
    users = np.repeat(np.arange(100_000), 15)
    taste = rng.integers(0, 40, 100_000)[users] * 10 + rng.integers(0, 10, len(users))
    items = np.where(rng.random(len(users)) < 0.7, taste, rng.integers(0, 400, len(users)))
    interactions = pd.DataFrame(
        {
            "user_key": pd.array(np.char.add("U", users.astype(str)), dtype="str"),
            "product_id": pd.array(np.char.add("P", items.astype(str)), dtype="str"),
            "weight": 1.0,
            "kind": rng.choice(["view", "cart", "purchase"], len(users), p=[0.6, 0.2, 0.2]),
        }
    )

    recommendations = recommend(interactions, bought(interactions), None, n=10)

    assert recommendations.groupby("user_key").size().eq(10).all()
    assert recommendations["user_key"].nunique() == 100_000
