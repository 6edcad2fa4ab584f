"""Market-basket analysis: frequent itemsets (Apriori) and association rules on paid baskets.

The caller passes ``item`` = ``product_id`` or ``category``; nothing here knows which.

Complexity. Baskets become one sparse boolean basket x item matrix (CSR, ``nnz`` = basket lines).
Level 1 is a column sum, O(nnz). Level k >= 2 groups candidates by their (k-2)-item prefix P and counts
every extension pair {j, l} at once with a sparse Gram matrix ``Xᵀ X`` over the baskets that contain P,
restricted to the items x for which P + {x} is frequent (Apriori pruning). The cost of level k is
about sum over baskets of |b|^k (|b| = frequent items in the basket), so 1M short baskets over a few
hundred items take seconds and memory stays O(nnz + frequent itemsets); nothing is ever dense in
baskets x items. Rules are then O(sum over itemsets of 2^|itemset|).
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd
from scipy import sparse

ITEMSET_COLUMNS = ["itemset", "support", "count"]
RULE_COLUMNS = [
    "antecedent",
    "consequent",
    "support",
    "confidence",
    "lift",
    "leverage",
    "conviction",
    "antecedent_support",
    "consequent_support",
]
ITEM_SEPARATOR = " + "


def basket_item_matrix(baskets: pd.DataFrame) -> tuple[sparse.csr_matrix, list]:
    """Encode baskets as a 0/1 sparse matrix so that counting is matrix algebra, not Python loops.

    Columns follow the sorted item order, so index tuples in ascending order are sorted itemsets.
    Rows without an item carry no item information and are ignored; a repeated item counts once.
    """
    lines = baskets.loc[baskets["item"].notna(), ["basket_id", "item"]]
    basket_codes, _ = pd.factorize(lines["basket_id"])
    item_codes, items = pd.factorize(lines["item"], sort=True)
    matrix = sparse.csr_matrix(
        (np.ones(len(lines), dtype=np.int32), (basket_codes, item_codes)),
        shape=(int(basket_codes.max(initial=-1)) + 1, len(items)),
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1
    return matrix, list(items)


def _is_frequent(counts: np.ndarray, n_baskets: int, min_support: float) -> np.ndarray:
    """Compare support (not counts) with the threshold, exactly as other Apriori implementations do."""
    return counts / n_baskets >= min_support


def _baskets_containing(matrix_csc: sparse.csc_matrix, prefix: tuple[int, ...]) -> np.ndarray | None:
    """Row indices of the baskets holding every item of ``prefix``; None means all baskets."""
    rows = None
    for item in prefix:
        column_rows = matrix_csc.indices[matrix_csc.indptr[item] : matrix_csc.indptr[item + 1]]
        rows = column_rows if rows is None else np.intersect1d(rows, column_rows, assume_unique=True)
    return rows


def _next_level(
    matrix: sparse.csr_matrix,
    matrix_csc: sparse.csc_matrix,
    frequent: dict[tuple[int, ...], int],
    n_baskets: int,
    min_support: float,
) -> dict[tuple[int, ...], int]:
    """Count the (k+1)-itemsets that extend the frequent k-itemsets, one Gram matrix per shared prefix."""
    extensions_by_prefix: dict[tuple[int, ...], list[int]] = {}
    for itemset in frequent:
        extensions_by_prefix.setdefault(itemset[:-1], []).append(itemset[-1])

    next_frequent: dict[tuple[int, ...], int] = {}
    for prefix, extensions in sorted(extensions_by_prefix.items()):
        if len(extensions) < 2:
            continue
        extensions = np.array(sorted(extensions))
        rows = _baskets_containing(matrix_csc, prefix)
        within = matrix[:, extensions] if rows is None else matrix[rows][:, extensions]
        gram = (within.T @ within).tocoo()
        upper = gram.row < gram.col
        left, right, counts = gram.row[upper], gram.col[upper], gram.data[upper]
        keep = _is_frequent(counts, n_baskets, min_support)
        for a, b, count in zip(left[keep], right[keep], counts[keep], strict=True):
            next_frequent[(*prefix, int(extensions[a]), int(extensions[b]))] = int(count)
    return next_frequent


def frequent_itemsets(baskets: pd.DataFrame, min_support: float, max_len: int = 3) -> pd.DataFrame:
    """Find the item combinations bought together often enough to be worth a rule (Apriori, exact counts).

    ``baskets`` has columns ``basket_id, item``. Returns ``itemset`` (tuple of sorted items),
    ``support`` (share of baskets) and ``count``, ordered by size, support desc, then itemset.
    """
    if not 0 < min_support <= 1:
        raise ValueError(f"min_support must be in (0, 1], got {min_support}")
    if max_len < 1:
        raise ValueError(f"max_len must be at least 1, got {max_len}")
    matrix, items = basket_item_matrix(baskets)
    n_baskets = matrix.shape[0]
    if n_baskets == 0:
        return _itemset_frame([], [], n_baskets)

    item_counts = np.asarray(matrix.sum(axis=0)).ravel()
    frequent_items = np.flatnonzero(_is_frequent(item_counts, n_baskets, min_support))
    level = {(int(item),): int(item_counts[item]) for item in frequent_items}
    found = dict(level)
    matrix = matrix.tocsr()
    matrix_csc = matrix.tocsc()
    matrix_csc.sort_indices()
    for _ in range(2, max_len + 1):
        level = _next_level(matrix, matrix_csc, level, n_baskets, min_support)
        if not level:
            break
        found.update(level)

    itemsets = [tuple(items[i] for i in codes) for codes in found]
    return _itemset_frame(itemsets, list(found.values()), n_baskets)


def _itemset_frame(itemsets: list[tuple], counts: list[int], n_baskets: int) -> pd.DataFrame:
    """Assemble the itemset table in its documented, deterministic order."""
    frame = pd.DataFrame(
        {
            "itemset": pd.Series(itemsets, dtype=object),
            "support": np.asarray(counts, dtype=np.float64) / max(n_baskets, 1),
            "count": np.asarray(counts, dtype=np.int64),
        }
    )
    order = sorted(range(len(frame)), key=lambda i: (len(itemsets[i]), -counts[i], itemsets[i]))
    return frame.iloc[order].reset_index(drop=True)[ITEMSET_COLUMNS]


def _join_items(items: tuple) -> str:
    """Render an itemset as one readable, stable string for BI tools."""
    return ITEM_SEPARATOR.join(str(item) for item in items)


def association_rules(
    itemsets: pd.DataFrame, n_baskets: int, min_confidence: float, min_lift: float
) -> pd.DataFrame:
    """Turn frequent itemsets into 'who buys A also buys C' rules with the usual strength measures.

    Every split of a frequent itemset into antecedent and consequent is a candidate; those with
    ``confidence >= min_confidence`` and ``lift >= min_lift`` are kept, ordered by lift desc,
    confidence desc, antecedent, consequent. Ratios are taken from integer counts, so A -> C and
    C -> A get bit-identical lift.
    """
    if n_baskets <= 0:
        raise ValueError(f"n_baskets must be positive, got {n_baskets}")
    counts = dict(zip(itemsets["itemset"], itemsets["count"].astype("int64"), strict=True))
    if counts and not np.allclose(itemsets["count"] / n_baskets, itemsets["support"], rtol=1e-12):
        raise ValueError("n_baskets does not match the counts and supports of these itemsets")

    antecedents, consequents, both, ante, cons = [], [], [], [], []
    for itemset, count in counts.items():
        for size in range(1, len(itemset)):
            for antecedent in combinations(itemset, size):
                consequent = tuple(item for item in itemset if item not in antecedent)
                antecedents.append(antecedent)
                consequents.append(consequent)
                both.append(count)
                ante.append(counts[antecedent])
                cons.append(counts[consequent])

    count_both = np.asarray(both, dtype=np.int64)
    count_ante = np.asarray(ante, dtype=np.int64)
    count_cons = np.asarray(cons, dtype=np.int64)
    support = count_both / n_baskets
    antecedent_support = count_ante / n_baskets
    consequent_support = count_cons / n_baskets
    confidence = count_both / np.maximum(count_ante, 1)
    lift = (count_both * n_baskets) / np.maximum(count_ante * count_cons, 1)
    uncertain = count_both < count_ante
    conviction = np.full(len(count_both), np.inf)
    conviction[uncertain] = (1.0 - consequent_support[uncertain]) / (1.0 - confidence[uncertain])

    rules = pd.DataFrame(
        {
            "antecedent": pd.Series([_join_items(a) for a in antecedents], dtype="str"),
            "consequent": pd.Series([_join_items(c) for c in consequents], dtype="str"),
            "support": support,
            "confidence": confidence,
            "lift": lift,
            "leverage": support - antecedent_support * consequent_support,
            "conviction": conviction,
            "antecedent_support": antecedent_support,
            "consequent_support": consequent_support,
        },
        columns=RULE_COLUMNS,
    )
    rules = rules[(rules["confidence"] >= min_confidence) & (rules["lift"] >= min_lift)]
    return rules.sort_values(
        ["lift", "confidence", "antecedent", "consequent"], ascending=[False, False, True, True]
    ).reset_index(drop=True)
