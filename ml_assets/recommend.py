"""Item-to-item recommendations with a popularity fallback, and their offline hold-out evaluation.

Similarity is cosine between item columns of the sparse user x item interaction matrix M (purchases,
carts and views weighted by kind and, optionally, recency), so two items are similar when the same
people buy or look at both. A person's score for an item is the sum of its similarities to what they
interacted with: the row ``M[user] @ S``. Ranking runs over chunks of users sized so that a chunk holds
about ``CHUNK_CELLS`` scores, so memory stays O(nnz(M) + nnz(S) + CHUNK_CELLS) however many users there
are; top-N per row uses ``numpy.partition`` (introselect) instead of a full sort.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import sparse

DEFAULT_KIND_WEIGHTS: Mapping[str, float] = {"purchase": 1.0, "cart": 0.5, "view": 0.2}
RECOMMENDATION_COLUMNS = ["user_key", "product_id", "rank", "score", "reason"]
CHUNK_CELLS = 2_000_000


def interaction_strength(
    interactions: pd.DataFrame,
    kind_weights: Mapping[str, float] | None = None,
    half_life_days: float | None = None,
    as_of: pd.Timestamp | None = None,
) -> pd.Series:
    """Weigh each interaction by how much intent its kind shows and, if asked, by how recent it is.

    Recency needs an ``occurred_at`` column: weight halves every ``half_life_days`` before ``as_of``
    (default: the latest interaction).
    """
    kind_weights = DEFAULT_KIND_WEIGHTS if kind_weights is None else kind_weights
    unknown = set(interactions["kind"].dropna().unique()) - set(kind_weights)
    if unknown or interactions["kind"].isna().any():
        raise ValueError(f"interaction kinds without a weight: {sorted(map(str, unknown)) or ['<null>']}")
    strength = interactions["weight"].astype("float64") * interactions["kind"].map(kind_weights).astype(
        "float64"
    )
    if half_life_days is not None:
        occurred_at = pd.to_datetime(interactions["occurred_at"], utc=True)
        reference = occurred_at.max() if as_of is None else pd.Timestamp(as_of)
        reference = reference.tz_localize("UTC") if reference.tzinfo is None else reference
        age_days = (reference - occurred_at).dt.total_seconds() / 86_400
        strength = strength * np.power(0.5, age_days.clip(lower=0) / half_life_days)
    if (strength < 0).any() or strength.isna().any():
        raise ValueError("interaction weights must be present and not negative")
    return strength


def _codes(values: pd.Series, universe: pd.Index) -> np.ndarray:
    """Positions of values in a sorted universe; the universe is built to contain them all."""
    return universe.get_indexer(values)


def _sorted_universe(*columns: pd.Series) -> pd.Index:
    """Sorted distinct keys, so column order doubles as the product_id tie-break."""
    keys = pd.concat([column.dropna() for column in columns], ignore_index=True)
    return pd.Index(keys.unique()).sort_values()


def _user_item_matrix(
    user_keys: pd.Series, product_ids: pd.Series, values: np.ndarray, users: pd.Index, items: pd.Index
) -> sparse.csr_matrix:
    """Sum values per (user, item) into a sparse matrix over the given universes."""
    return sparse.csr_matrix(
        (values, (_codes(user_keys, users), _codes(product_ids, items))), shape=(len(users), len(items))
    )


def item_similarity(user_item: sparse.csr_matrix) -> sparse.csr_matrix:
    """Cosine similarity between item columns: items liked by the same people score close to 1.

    The diagonal is zeroed so an item never recommends itself.
    """
    norms = np.sqrt(np.asarray(user_item.multiply(user_item).sum(axis=0)).ravel())
    inverse = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    normalized = user_item @ sparse.diags(inverse)
    similarity = (normalized.T @ normalized).tocsr()
    similarity = (similarity - sparse.diags(similarity.diagonal())).tocsr()
    similarity.eliminate_zeros()
    return similarity


def item_popularity(purchases: pd.DataFrame, items: pd.Index) -> tuple[np.ndarray, np.ndarray]:
    """Share of buyers per item and each item's popularity rank (0 = most bought, ties by product_id)."""
    distinct = purchases[["user_key", "product_id"]].drop_duplicates()
    buyers = np.bincount(_codes(distinct["product_id"], items), minlength=len(items)).astype(np.float64)
    share = buyers / max(distinct["user_key"].nunique(), 1)
    order = np.lexsort((np.arange(len(items)), -buyers))
    rank = np.empty(len(items), dtype=np.int64)
    rank[order] = np.arange(len(items))
    return share, rank


def top_n_columns(keys: np.ndarray, n: int) -> np.ndarray:
    """Column indices of the n largest keys per row, by key desc then column asc (stable under ties).

    ``numpy.partition`` finds each row's n-th largest key in linear time; keys tied with it are then
    admitted lowest column first, so the chosen set never depends on the selection algorithm.
    """
    n = min(n, keys.shape[1])
    if n == 0:
        return np.empty((keys.shape[0], 0), dtype=np.int64)
    nth = -np.partition(-keys, n - 1, axis=1)[:, n - 1 : n]
    above = keys > nth
    tied = keys == nth
    room = n - above.sum(axis=1, keepdims=True)
    chosen = above | (tied & (np.cumsum(tied, axis=1) <= room))
    columns = np.nonzero(chosen)[1].reshape(-1, n)
    values = np.take_along_axis(keys, columns, axis=1)
    order = np.lexsort((columns, -values), axis=1)
    return np.take_along_axis(columns, order, axis=1)


def _ranking_keys(scores: np.ndarray, bought: sparse.csr_matrix, popularity_rank: np.ndarray) -> np.ndarray:
    """One sortable key per (user, item): similarity first, then popularity, bought items never.

    Positive similarity scores sort above every popularity key -(1 + rank), and bought items get -inf.
    """
    keys = np.where(scores > 0, scores, -(1.0 + popularity_rank)[np.newaxis, :])
    rows, columns = bought.nonzero()
    keys[rows, columns] = -np.inf
    return keys


def _rank_users(
    user_rows: np.ndarray,
    affinity: sparse.csr_matrix | None,
    similarity: sparse.csr_matrix | None,
    bought: sparse.csr_matrix,
    popularity_share: np.ndarray,
    popularity_rank: np.ndarray,
    n: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rank items for matrix rows chunk by chunk; returns flat (row, item, rank, score, is_similar)."""
    n_items = len(popularity_rank)
    chunk_size = max(1, CHUNK_CELLS // max(n_items, 1))
    parts = []
    for start in range(0, len(user_rows), chunk_size):
        rows = user_rows[start : start + chunk_size]
        if affinity is None:
            scores = np.zeros((len(rows), n_items))
        else:
            scores = np.asarray((affinity[rows] @ similarity).todense())
        keys = _ranking_keys(scores, bought[rows], popularity_rank)
        columns = top_n_columns(keys, n)
        chosen_keys = np.take_along_axis(keys, columns, axis=1)
        available = np.isfinite(chosen_keys)
        ranks = np.broadcast_to(np.arange(1, columns.shape[1] + 1), columns.shape)
        is_similar = chosen_keys > 0
        score = np.where(is_similar, chosen_keys, popularity_share[columns])
        row_ids = np.broadcast_to(rows[:, np.newaxis], columns.shape)
        parts.append(tuple(part[available] for part in (row_ids, columns, ranks, score, is_similar)))
    if not parts:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, empty, np.empty(0), np.empty(0, dtype=bool)
    return tuple(np.concatenate(column) for column in zip(*parts, strict=True))


def _recommendation_frame(
    users: pd.Index,
    items: pd.Index,
    ranked: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> pd.DataFrame:
    """Label ranked matrix positions with keys and reasons, ordered by user then rank."""
    user_rows, item_columns, ranks, scores, is_similar = ranked
    frame = pd.DataFrame(
        {
            "user_key": users.take(user_rows).array,
            "product_id": items.take(item_columns).array,
            "rank": ranks.astype(np.int64),
            "score": scores.astype(np.float64),
            "reason": pd.Series(np.where(is_similar, "similar_items", "popular"), dtype="str"),
        },
        columns=RECOMMENDATION_COLUMNS,
    )
    return frame.sort_values(["user_key", "rank"], kind="stable").reset_index(drop=True)


def _target_users(eligible_users: pd.Series | None, *key_columns: pd.Series) -> pd.Index:
    """The people who get rows: the eligible ones if given, else everyone seen."""
    if eligible_users is None:
        return _sorted_universe(*key_columns)
    return _sorted_universe(pd.Series(eligible_users))


def recommend(
    interactions: pd.DataFrame,
    purchases: pd.DataFrame,
    eligible_users: pd.Series | None,
    n: int = 10,
    kind_weights: Mapping[str, float] | None = None,
    half_life_days: float | None = None,
    as_of: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Suggest up to n unbought items per eligible person: similar items first, then popular ones.

    ``interactions`` (``user_key, product_id, weight, kind`` and, for recency, ``occurred_at``) feed
    the similarity and the person's profile; ``purchases`` (``user_key, product_id``) decide what is
    excluded as already bought and what is popular. Everybody in ``eligible_users`` (all people seen
    when None) gets exactly ``min(n, items not yet bought)`` rows, people without history included.
    ``score`` is the summed similarity for ``similar_items`` and the share of buyers for ``popular``.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    targets = _target_users(eligible_users, interactions["user_key"], purchases["user_key"])
    users = _sorted_universe(interactions["user_key"], purchases["user_key"], targets.to_series())
    items = _sorted_universe(interactions["product_id"], purchases["product_id"])
    interactions = interactions[interactions["user_key"].notna() & interactions["product_id"].notna()]
    purchases = purchases[purchases["user_key"].notna() & purchases["product_id"].notna()]

    strength = interaction_strength(interactions, kind_weights, half_life_days, as_of).to_numpy()
    affinity = _user_item_matrix(interactions["user_key"], interactions["product_id"], strength, users, items)
    bought = _user_item_matrix(
        purchases["user_key"], purchases["product_id"], np.ones(len(purchases)), users, items
    )
    share, popularity_rank = item_popularity(purchases, items)
    ranked = _rank_users(
        _codes(targets.to_series(), users),
        affinity,
        item_similarity(affinity),
        bought,
        share,
        popularity_rank,
        n,
    )
    return _recommendation_frame(users, items, ranked)


def popularity_baseline(
    purchases: pd.DataFrame, eligible_users: pd.Series | None, n: int = 10
) -> pd.DataFrame:
    """The yardstick a recommender must beat: the most bought items each person has not bought yet."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    purchases = purchases[purchases["user_key"].notna() & purchases["product_id"].notna()]
    targets = _target_users(eligible_users, purchases["user_key"])
    users = _sorted_universe(purchases["user_key"], targets.to_series())
    items = _sorted_universe(purchases["product_id"])
    bought = _user_item_matrix(
        purchases["user_key"], purchases["product_id"], np.ones(len(purchases)), users, items
    )
    share, popularity_rank = item_popularity(purchases, items)
    ranked = _rank_users(_codes(targets.to_series(), users), None, None, bought, share, popularity_rank, n)
    return _recommendation_frame(users, items, ranked)


def split_last_basket(baskets: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out each repeat buyer's latest basket (ties on time broken by basket_id) as the future.

    Returns (train, holdout) line frames; buyers with a single basket stay wholly in train.
    """
    basket_times = (
        baskets.groupby(["user_key", "basket_id"], as_index=False, observed=True)["ordered_at"]
        .min()
        .sort_values(["user_key", "ordered_at", "basket_id"], kind="stable")
    )
    baskets_per_user = basket_times.groupby("user_key", observed=True)["basket_id"].transform("size")
    last = basket_times[baskets_per_user >= 2].groupby("user_key", observed=True).tail(1)
    is_holdout = pd.MultiIndex.from_frame(baskets[["user_key", "basket_id"]]).isin(
        pd.MultiIndex.from_frame(last[["user_key", "basket_id"]])
    )
    return baskets[~is_holdout], baskets[is_holdout]


def ranking_metrics(
    recommendations: pd.DataFrame, relevant: pd.DataFrame, users: pd.Index, k: int
) -> tuple[float, float]:
    """Hit rate@k and NDCG@k (binary relevance), averaged over ``users`` whether or not they got rows.

    ``relevant`` holds the (user_key, product_id) pairs that count as a hit; every user needs one.
    """
    if len(users) == 0:
        return float("nan"), float("nan")
    relevant = relevant.drop_duplicates()
    relevant_counts = relevant.groupby("user_key", observed=True).size().reindex(users).fillna(0)
    if (relevant_counts == 0).any():
        raise ValueError("every evaluated user needs at least one relevant item")
    top = recommendations[recommendations["rank"] <= k]
    hits = top.merge(relevant, on=["user_key", "product_id"], how="inner")
    gain = 1.0 / np.log2(hits["rank"].to_numpy(dtype=np.float64) + 1.0)
    dcg = pd.Series(gain, index=hits["user_key"].to_numpy()).groupby(level=0).sum().reindex(users).fillna(0)
    ideal_dcg = np.cumsum(1.0 / np.log2(np.arange(1, k + 1) + 1.0))
    ideal_positions = relevant_counts.clip(upper=k).to_numpy(dtype=np.int64) - 1
    ndcg = dcg.to_numpy(dtype=np.float64) / ideal_dcg[ideal_positions]
    hit_rate = float(users.isin(hits["user_key"]).mean())
    return hit_rate, float(ndcg.mean())


def evaluate_holdout(baskets: pd.DataFrame, k: int = 10, half_life_days: float | None = None) -> dict:
    """Measure whether the recommender predicts people's next basket better than popularity does.

    ``baskets`` has ``user_key, basket_id, product_id, ordered_at``. Each repeat buyer's last basket is
    held out and the model trains on every other basket (one purchase interaction per line, decayed by
    ``half_life_days`` before the latest training order if given). Since both rankers exclude items
    already bought, the relevant items are the held-out ones the person had not bought before; buyers
    whose last basket holds only repeats are not evaluated.
    """
    train, holdout = split_last_basket(baskets)
    train_purchases = train[["user_key", "product_id"]]
    known = pd.MultiIndex.from_frame(train_purchases)
    held = holdout[["user_key", "product_id"]].drop_duplicates()
    relevant = held[~pd.MultiIndex.from_frame(held).isin(known)]
    users = _sorted_universe(relevant["user_key"])

    interactions = train[["user_key", "product_id"]].assign(
        weight=1.0, kind="purchase", occurred_at=train["ordered_at"]
    )
    eligible = users.to_series()
    model = recommend(interactions, train_purchases, eligible, n=k, half_life_days=half_life_days)
    baseline = popularity_baseline(train_purchases, eligible, n=k)
    hit_rate, ndcg = ranking_metrics(model, relevant, users, k)
    baseline_hit_rate, baseline_ndcg = ranking_metrics(baseline, relevant, users, k)
    return {
        "hit_rate": hit_rate,
        "ndcg": ndcg,
        "baseline_hit_rate": baseline_hit_rate,
        "baseline_ndcg": baseline_ndcg,
        "users_evaluated": len(users),
    }
