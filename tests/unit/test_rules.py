import math
import time
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_assets.rules import RULE_COLUMNS, association_rules, basket_item_matrix, frequent_itemsets

DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
GROCERIES = DATASETS / "groceries" / "groceries.csv"


def baskets_frame(baskets: dict) -> pd.DataFrame:
    rows = [(basket_id, item) for basket_id, items in baskets.items() for item in items]
    return pd.DataFrame(rows, columns=["basket_id", "item"]).astype("str")


# Five baskets; 'milk' is listed twice in b5 and must count once. Counts by hand:
# bread 4, milk 4, eggs 3, jam 1; bread+milk 3, eggs+milk 3, bread+eggs 2; bread+eggs+milk 2.
SHOP = {
    "b1": ["milk", "bread"],
    "b2": ["milk", "bread", "eggs"],
    "b3": ["milk", "eggs"],
    "b4": ["bread"],
    "b5": ["jam", "eggs", "milk", "bread", "milk"],
}


def test_frequent_itemsets_counts_each_basket_once_and_orders_by_size_support_itemset():
    itemsets = frequent_itemsets(baskets_frame(SHOP), min_support=0.4)

    assert itemsets["itemset"].tolist() == [
        ("bread",),
        ("milk",),
        ("eggs",),
        ("bread", "milk"),
        ("eggs", "milk"),
        ("bread", "eggs"),
        ("bread", "eggs", "milk"),
    ]
    assert itemsets["count"].tolist() == [4, 4, 3, 3, 3, 2, 2]
    assert itemsets["support"].tolist() == [0.8, 0.8, 0.6, 0.6, 0.6, 0.4, 0.4]


def test_max_len_stops_growth_and_threshold_is_inclusive():
    itemsets = frequent_itemsets(baskets_frame(SHOP), min_support=0.6, max_len=2)

    assert itemsets["itemset"].tolist() == [
        ("bread",),
        ("milk",),
        ("eggs",),
        ("bread", "milk"),
        ("eggs", "milk"),
    ]


def test_rows_without_an_item_are_ignored_and_empty_input_gives_empty_table():
    baskets = pd.concat([baskets_frame(SHOP), pd.DataFrame({"basket_id": ["b6"], "item": [None]})])

    assert frequent_itemsets(baskets, 0.4)["count"].tolist() == [4, 4, 3, 3, 3, 2, 2]
    empty = frequent_itemsets(baskets.iloc[:0], 0.4)
    assert empty.empty and empty.columns.tolist() == ["itemset", "support", "count"]


def test_association_rules_exact_measures_and_order():
    itemsets = frequent_itemsets(baskets_frame(SHOP), min_support=0.4)

    rules = association_rules(itemsets, n_baskets=5, min_confidence=0.6, min_lift=1.0)

    expected = pd.DataFrame(
        [
            # antecedent, consequent, support, confidence, lift, leverage, conviction, sA, sC
            ("bread + eggs", "milk", 0.4, 1.0, 1.25, 0.4 - 0.4 * 0.8, math.inf, 0.4, 0.8),
            ("eggs", "milk", 0.6, 1.0, 1.25, 0.6 - 0.6 * 0.8, math.inf, 0.6, 0.8),
            ("milk", "eggs", 0.6, 0.75, 1.25, 0.6 - 0.8 * 0.6, (1 - 0.6) / (1 - 0.75), 0.8, 0.6),
            ("bread + milk", "eggs", 0.4, 2 / 3, 10 / 9, 0.4 - 0.6 * 0.6, (1 - 0.6) / (1 - 2 / 3), 0.6, 0.6),
            ("eggs", "bread + milk", 0.4, 2 / 3, 10 / 9, 0.4 - 0.6 * 0.6, (1 - 0.6) / (1 - 2 / 3), 0.6, 0.6),
        ],
        columns=RULE_COLUMNS,
    )
    assert rules["antecedent"].tolist() == expected["antecedent"].tolist()
    assert rules["consequent"].tolist() == expected["consequent"].tolist()
    for column in RULE_COLUMNS[2:]:
        np.testing.assert_allclose(rules[column], expected[column], rtol=1e-12, err_msg=column)


def test_mirrored_rules_get_bit_identical_lift():
    itemsets = frequent_itemsets(baskets_frame(SHOP), min_support=0.2)

    rules = association_rules(itemsets, 5, 0.0, 0.0).set_index(["antecedent", "consequent"])["lift"]

    for (antecedent, consequent), lift in rules.items():
        assert rules[(consequent, antecedent)] == lift


def test_association_rules_rejects_a_wrong_basket_count():
    itemsets = frequent_itemsets(baskets_frame(SHOP), min_support=0.4)

    with pytest.raises(ValueError, match="n_baskets"):
        association_rules(itemsets, n_baskets=6, min_confidence=0.5, min_lift=1.0)


def test_integer_items_sort_numerically_in_itemsets_and_rule_text():
    baskets = pd.DataFrame({"basket_id": [1, 1, 2, 2], "item": [10, 2, 2, 10]})

    itemsets = frequent_itemsets(baskets, 0.5)
    rules = association_rules(itemsets, 2, 0.5, 1.0)

    assert itemsets["itemset"].tolist() == [(2,), (10,), (2, 10)]
    assert rules[["antecedent", "consequent"]].values.tolist() == [["10", "2"], ["2", "10"]]


basket_lists = st.lists(st.lists(st.sampled_from("abcdef"), min_size=1, max_size=5), min_size=1, max_size=25)


@settings(max_examples=60, deadline=None)
@given(basket_lists, st.sampled_from([0.05, 0.1, 0.2, 0.34, 0.5]), st.integers(0, 2**32 - 1))
def test_frequent_itemsets_equal_brute_force_and_ignore_row_order(baskets, min_support, seed):
    frame = baskets_frame(dict(enumerate(baskets)))
    sets = [set(items) for items in baskets]
    expected = {}
    for size in range(1, 4):
        for itemset in combinations("abcdef", size):
            count = sum(set(itemset) <= basket for basket in sets)
            if count / len(sets) >= min_support:
                expected[itemset] = count

    itemsets = frequent_itemsets(frame, min_support)
    shuffled = frequent_itemsets(frame.sample(frac=1.0, random_state=seed % 2**31), min_support)

    assert dict(zip(itemsets["itemset"], itemsets["count"], strict=True)) == expected
    pd.testing.assert_frame_equal(itemsets, shuffled)
    rules = association_rules(itemsets, len(sets), 0.0, 0.0)
    assert len(rules) == sum(2 ** len(itemset) - 2 for itemset in expected)


@pytest.fixture(scope="module")
def groceries() -> pd.DataFrame:
    lines = GROCERIES.read_text(encoding="utf-8").splitlines()
    return pd.DataFrame(
        [(number, item) for number, line in enumerate(lines) for item in line.split(",")],
        columns=["basket_id", "item"],
    ).astype({"item": "str"})


def test_groceries_matches_the_published_figures(groceries):
    matrix, items = basket_item_matrix(groceries)

    assert matrix.shape == (9835, 169)
    assert len(items) == 169
    assert matrix.nnz / (9835 * 169) == pytest.approx(0.02609146, abs=5e-9)
    whole_milk = frequent_itemsets(groceries, 0.01).set_index("itemset").loc[[("whole milk",)], "count"]
    assert whole_milk.item() == 2513


def test_groceries_itemsets_and_rules_equal_mlxtend(groceries):
    mlxtend = pytest.importorskip("mlxtend.frequent_patterns")
    n_baskets = groceries["basket_id"].nunique()
    one_hot = pd.crosstab(groceries["basket_id"], groceries["item"]).gt(0)
    reference_itemsets = mlxtend.apriori(one_hot, min_support=0.01, use_colnames=True, max_len=3)
    reference_rules = mlxtend.association_rules(
        reference_itemsets, num_itemsets=n_baskets, metric="confidence", min_threshold=0.3
    )
    reference_rules = reference_rules[reference_rules["lift"] >= 1.0]

    itemsets = frequent_itemsets(groceries, min_support=0.01, max_len=3)
    rules = association_rules(itemsets, n_baskets, min_confidence=0.3, min_lift=1.0)

    expected_support = {
        tuple(sorted(s)): v
        for s, v in zip(reference_itemsets["itemsets"], reference_itemsets["support"], strict=True)
    }
    assert len(itemsets) == 333
    assert dict(zip(itemsets["itemset"], itemsets["support"], strict=True)) == expected_support
    expected = pd.DataFrame(
        {
            "antecedent": [" + ".join(sorted(s)) for s in reference_rules["antecedents"]],
            "consequent": [" + ".join(sorted(s)) for s in reference_rules["consequents"]],
            "support": reference_rules["support"].to_numpy(),
            "confidence": reference_rules["confidence"].to_numpy(),
            "lift": reference_rules["lift"].to_numpy(),
        }
    ).set_index(["antecedent", "consequent"])
    ours = rules.set_index(["antecedent", "consequent"])[["support", "confidence", "lift"]]
    assert len(ours) == 125
    assert sorted(ours.index) == sorted(expected.index)
    np.testing.assert_allclose(ours.to_numpy(), expected.loc[ours.index].to_numpy(), rtol=0, atol=1e-9)


@pytest.mark.slow
def test_a_million_baskets_over_four_hundred_items_take_seconds():
    rng = np.random.default_rng(11)
    sizes = np.minimum(rng.geometric(0.25, 1_000_000), 30)
    popularity = 1 / np.arange(1, 401) ** 0.8
    items = rng.choice(400, size=sizes.sum(), p=popularity / popularity.sum())
    baskets = pd.DataFrame({"basket_id": np.repeat(np.arange(len(sizes)), sizes), "item": items})

    started = time.perf_counter()
    itemsets = frequent_itemsets(baskets, min_support=0.001, max_len=3)
    elapsed = time.perf_counter() - started

    assert elapsed < 30
    pairs = baskets.drop_duplicates().merge(baskets.drop_duplicates(), on="basket_id")
    pair_counts = pairs[pairs["item_x"] < pairs["item_y"]].groupby(["item_x", "item_y"]).size()
    frequent_pairs = pair_counts[pair_counts / len(sizes) >= 0.001]
    ours = itemsets[itemsets["itemset"].map(len) == 2].set_index("itemset")["count"]
    assert dict(ours) == {pair: count for pair, count in frequent_pairs.items()}
