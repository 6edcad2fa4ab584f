"""Benchmark identity resolution on a synthetic graph of ~1M identifiers against networkx, in the same run.

Usage: ``python benchmarks/bench_identity.py [--identifiers N] [--seed S]``. Prints wall time, CPU time and
peak resident memory (sampled with psutil above the level before each step) of ``resolve_identities`` on a
first run, on a re-run with the previous map plus one new edge, and of two baselines on the same edges:
plain networkx connected components and scipy connected components without guards or keys. Also prints
pairwise precision/recall against the planted persons, for the guarded resolution and for networkx.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import psutil
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ml_assets.identity import IdentityConfig, pairwise_precision_recall, resolve_identities  # noqa: E402

START = pd.Timestamp("2025-01-01", tz="UTC")


@dataclass(frozen=True)
class Measurement:
    seconds: float
    cpu_seconds: float
    peak_megabytes: float


@dataclass(frozen=True)
class SyntheticGraph:
    identifiers: pd.DataFrame
    edges: pd.DataFrame
    truth: pd.DataFrame


def measure(step: Callable[[], object]) -> tuple[object, Measurement]:
    """Run a step; report wall time, CPU time (steady on a busy machine), peak RSS growth (5 ms samples)."""
    process = psutil.Process()
    baseline = process.memory_info().rss
    peak = baseline
    running = True

    def sample() -> None:
        nonlocal peak
        while running:
            peak = max(peak, process.memory_info().rss)
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started, cpu_started = time.perf_counter(), time.process_time()
    result = step()
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    running = False
    sampler.join()
    peak = max(peak, process.memory_info().rss)
    return result, Measurement(seconds, cpu_seconds, (peak - baseline) / 2**20)


def _labels(prefix: str, owners: np.ndarray, local: np.ndarray) -> np.ndarray:
    """Readable identifier values that encode their planted owner, e.g. ``a123-0``."""
    return np.char.add(np.char.add(np.char.add(prefix, owners.astype(str)), "-"), local.astype(str))


def plant_persons(person_count: int, rng: np.random.Generator) -> pd.DataFrame:
    """One row per planted identifier with its owner, in the mix a mini-program business sees."""
    registered = rng.random(person_count) < 0.7
    people = np.arange(person_count)
    frames = [pd.DataFrame({"identifier_type": "user_id", "person": people[registered], "local": 0})]
    for identifier_type, share, max_count in [
        ("phone", 0.8, 1),
        ("unionid", 0.6, 1),
        ("anonymous_id", 1.0, 3),
        ("openid", 1.0, 2),
    ]:
        holders = people[rng.random(person_count) < share]
        if identifier_type in ("phone", "unionid"):
            holders = holders[registered[holders]]
        counts = rng.integers(1, max_count + 1, len(holders))
        owners = np.repeat(holders, counts)
        local = np.arange(len(owners)) - np.repeat(np.cumsum(counts) - counts, counts)
        frames.append(pd.DataFrame({"identifier_type": identifier_type, "person": owners, "local": local}))
    planted = pd.concat(frames, ignore_index=True)
    prefix = planted["identifier_type"].map(
        {"user_id": "u", "phone": "p", "unionid": "n", "anonymous_id": "a", "openid": "o"}
    )
    planted["identifier_value"] = [
        f"{p}{person}-{local}"
        for p, person, local in zip(prefix, planted["person"], planted["local"], strict=True)
    ]
    planted["first_seen_at"] = START + pd.to_timedelta(rng.integers(0, 365 * 86400, len(planted)), unit="s")
    return planted


def _pair_edges(planted: pd.DataFrame, left: str, right: str, source: str, repeats: int, rng) -> pd.DataFrame:
    """Evidence rows linking every `left` identifier of a person to each of its `right` identifiers."""
    pairs = planted[planted["identifier_type"] == left].merge(
        planted[planted["identifier_type"] == right], on="person", suffixes=("_l", "_r")
    )
    copies = rng.integers(1, repeats + 1, len(pairs))
    pairs = pairs.loc[pairs.index.repeat(copies)].reset_index(drop=True)
    return pd.DataFrame(
        {
            "left_type": left,
            "left_value": pairs["identifier_value_l"],
            "right_type": right,
            "right_value": pairs["identifier_value_r"],
            "source": source,
            "person": pairs["person"],
        }
    )


def plant_noise(planted: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Shared devices (two users logged in on one device) and store phones typed in by many guests."""
    users = planted[planted["identifier_type"] == "user_id"]
    devices = planted[planted["identifier_type"] == "anonymous_id"]
    registered_devices = devices[devices["person"].isin(users["person"])].drop_duplicates("person")
    shared = registered_devices.sample(frac=0.005, random_state=1)
    intruders = users.sample(len(shared), random_state=2)
    guest_devices = devices[~devices["person"].isin(users["person"])]
    store_phones = [f"pstore-{store}" for store in range(20)]
    guests = guest_devices.sample(20 * 30, random_state=3)
    return pd.concat(
        [
            pd.DataFrame(
                {
                    "left_type": "user_id",
                    "left_value": intruders["identifier_value"].to_numpy(),
                    "right_type": "anonymous_id",
                    "right_value": shared["identifier_value"].to_numpy(),
                    "source": "event",
                    "person": -1,
                }
            ),
            pd.DataFrame(
                {
                    "left_type": "anonymous_id",
                    "left_value": guests["identifier_value"].to_numpy(),
                    "right_type": "phone",
                    "right_value": np.repeat(store_phones, 30),
                    "source": "identify",
                    "person": -1,
                }
            ),
        ],
        ignore_index=True,
    )


def synthetic_graph(identifier_target: int, seed: int) -> SyntheticGraph:
    """Planted persons (~5 identifiers each), ~2 evidence rows per identifier, plus shared identifiers."""
    rng = np.random.default_rng(seed)
    planted = plant_persons(identifier_target * 100 // 519, rng)
    edges = pd.concat(
        [
            _pair_edges(planted, "user_id", "anonymous_id", "event", 3, rng),
            _pair_edges(planted, "openid", "anonymous_id", "event", 2, rng),
            _pair_edges(planted, "openid", "unionid", "event", 1, rng),
            _pair_edges(planted, "user_id", "phone", "crm_user", 1, rng),
            _pair_edges(planted, "user_id", "unionid", "crm_user", 1, rng),
            _pair_edges(planted, "user_id", "phone", "order", 2, rng),
            plant_noise(planted, rng),
        ],
        ignore_index=True,
    )
    edges["record_id"] = [f"r{row}" for row in range(len(edges))]
    edges["observed_at"] = START + pd.to_timedelta(rng.integers(0, 365 * 86400, len(edges)), unit="s")
    edges = edges.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    truth = planted.rename(columns={"person": "person_id"})[
        ["identifier_type", "identifier_value", "person_id"]
    ]
    return SyntheticGraph(
        identifiers=planted[["identifier_type", "identifier_value", "first_seen_at"]],
        edges=edges.drop(columns="person"),
        truth=truth,
    )


def networkx_components(identifiers: pd.DataFrame, edges: pd.DataFrame) -> pd.DataFrame:
    """Baseline: unguarded connected components with networkx on (type, value) tuples."""
    graph = nx.Graph()
    graph.add_nodes_from(zip(identifiers["identifier_type"], identifiers["identifier_value"], strict=True))
    graph.add_edges_from(
        zip(
            zip(edges["left_type"], edges["left_value"], strict=True),
            zip(edges["right_type"], edges["right_value"], strict=True),
            strict=True,
        )
    )
    rows = [
        (t, v, f"c{label}") for label, nodes in enumerate(nx.connected_components(graph)) for t, v in nodes
    ]
    return pd.DataFrame(rows, columns=["identifier_type", "identifier_value", "user_key"])


def scipy_components(identifiers: pd.DataFrame, edges: pd.DataFrame) -> pd.DataFrame:
    """Baseline: unguarded connected components with scipy after pandas factorisation, no keys or audit."""
    names = pd.concat(
        [
            identifiers["identifier_type"] + ":" + identifiers["identifier_value"],
            edges["left_type"] + ":" + edges["left_value"],
            edges["right_type"] + ":" + edges["right_value"],
        ],
        ignore_index=True,
    )
    codes, uniques = pd.factorize(names)
    left = codes[len(identifiers) : len(identifiers) + len(edges)]
    right = codes[len(identifiers) + len(edges) :]
    graph = coo_matrix((np.ones(len(left), dtype=np.int8), (left, right)), shape=(len(uniques),) * 2).tocsr()
    labels = connected_components(graph, directed=False)[1]
    split = pd.Series(uniques).str.split(":", n=1, expand=True)
    return pd.DataFrame({"identifier_type": split[0], "identifier_value": split[1], "user_key": labels})


def with_one_new_edge(edges: pd.DataFrame, identity_map: pd.DataFrame) -> pd.DataFrame:
    """The next day's evidence: yesterday's plus an alias joining two guest devices."""
    registered = identity_map.loc[identity_map["identifier_type"] == "user_id", "user_key"]
    guest_devices = identity_map[
        (identity_map["identifier_type"] == "anonymous_id")
        & ~identity_map["user_key"].isin(registered)
        & ~identity_map["is_shared"]
    ]
    guests = guest_devices.drop_duplicates("user_key").head(2)["identifier_value"].to_list()
    alias = {
        "left_type": "anonymous_id",
        "left_value": guests[0],
        "right_type": "anonymous_id",
        "right_value": guests[1],
        "source": "alias",
        "record_id": "r-new",
        "observed_at": START + pd.Timedelta(days=366),
    }
    return pd.concat([edges, pd.DataFrame([alias])], ignore_index=True)


def main(argv: list[str] | None = None) -> None:
    """Build the graph, time each contender in this process, and print a small report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identifiers", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    graph = synthetic_graph(args.identifiers, args.seed)
    print(
        f"synthetic graph: {len(graph.identifiers):,} identifiers, {len(graph.edges):,} evidence rows, "
        f"{graph.truth['person_id'].nunique():,} planted persons"
    )
    config = IdentityConfig()
    first, first_cost = measure(lambda: resolve_identities(graph.identifiers, graph.edges, None, config))
    next_edges = with_one_new_edge(graph.edges, first.identity_map)
    second, second_cost = measure(
        lambda: resolve_identities(graph.identifiers, next_edges, first.identity_map, config)
    )
    nx_map, nx_cost = measure(lambda: networkx_components(graph.identifiers, graph.edges))
    scipy_map, scipy_cost = measure(lambda: scipy_components(graph.identifiers, graph.edges))
    print(f"{'step':<44}{'wall s':>9}{'cpu s':>9}{'peak MB':>10}")
    for name, cost in [
        ("resolve_identities, first run", first_cost),
        ("resolve_identities, re-run with previous map", second_cost),
        ("baseline networkx connected_components", nx_cost),
        ("baseline scipy components (no guards/keys)", scipy_cost),
    ]:
        print(f"{name:<44}{cost.seconds:>9.2f}{cost.cpu_seconds:>9.2f}{cost.peak_megabytes:>10.0f}")
    print(
        f"ratio networkx / resolve_identities: wall {nx_cost.seconds / first_cost.seconds:.2f}x, "
        f"cpu {nx_cost.cpu_seconds / first_cost.cpu_seconds:.2f}x, "
        f"peak memory {nx_cost.peak_megabytes / first_cost.peak_megabytes:.2f}x"
    )
    print(f"load average during the run (1 min): {psutil.getloadavg()[0]:.1f} on {psutil.cpu_count()} cores")
    print(f"key changes on the re-run: {second.key_history['reason'].value_counts().to_dict()}")
    print(f"metrics: {first.metrics}")
    planted = graph.truth[["identifier_type", "identifier_value"]]
    for name, predicted in [("resolve_identities", first.identity_map), ("networkx (unguarded)", nx_map)]:
        # Store phones are noise with no planted owner, so pairs are scored over planted identifiers only.
        precision, recall = pairwise_precision_recall(predicted.merge(planted), graph.truth)
        print(f"pairwise precision / recall vs planted persons, {name}: {precision:.4f} / {recall:.4f}")
    del scipy_map


if __name__ == "__main__":
    main()
