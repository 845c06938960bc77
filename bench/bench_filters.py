"""Filtered vector search at 1M: the filter planner beside the code path before it, at set selectivities.

The index is bench/filter_corpus.py's (built once under --workdir, then reused): real tunes' embeddings
replicated with noise, an `origin` field drawn per item (independent of the vectors) and a `rhythm`
field shared by each base tune's copies (tied to the vectors). Queries are fresh noisy copies of base
tunes. Per filter: the share of items that pass, p50 / p99 of one query at a time (k=10, ef=128, one
thread), recall@10 against exact filtered search, for
- before: Index.nearest as it was (over-fetch k * 10 with a SQLite check, else SQLite's passing labels,
  exact up to 20,000 of them, else hnswlib's filtered walk with a Python set);
- planner: Index.nearest now, the filter evaluated every query (its mask not cached), and with the mask
  cached (a repeated filter), and how the planner answered (e: exact, o: over-fetch, w: filtered walk).

    python bench/bench_filters.py --base-shards build/shards
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_index import noise_scale, replicas  # noqa: E402
from filter_corpus import base_vectors, build_corpus  # noqa: E402

from runtime.search import planner  # noqa: E402
from runtime.search.filters import Filter, parse_filter  # noqa: E402
from runtime.search.hits import exact_top_k  # noqa: E402
from runtime.search.index import Index, read_manifest  # noqa: E402
from runtime.search.masks import FilterMasks  # noqa: E402

K = 10
FILTERS = [
    *(f"origin = o{share}" for share in ("0.01", "0.1", "1", "5", "20", "50")),
    "origin != o10",
    *(f"rhythm = r{share}" for share in ("0.01", "0.1", "1", "5", "20", "50")),
    "rhythm != r10",
    "meter = 6/8",
    "rhythm in (r5, r1) and origin != o10",
    "source = bench/7.abc",
]


def before(index: Index, queries: np.ndarray, k: int, tree: Filter) -> np.ndarray:
    """Index.nearest's filtered path before the planner (commit 36fe70c), for comparison: its labels."""
    labels, _ = index.segments[0].graph.knn_query(queries, k=k * 10, num_threads=1)
    passing = np.isin(labels, index.items.labels_matching(tree, among=np.unique(labels)))
    if (passing.sum(axis=1) >= k).all():
        return np.stack([row[np.flatnonzero(keep)[:k]] for row, keep in zip(labels, passing, strict=True)])
    allowed = index.items.labels_matching(tree)
    if len(allowed) <= 20_000:
        return allowed[exact_top_k(queries, index.vectors[allowed], k)[1]]
    allowed_set = set(allowed.tolist())
    try:
        return index.segments[0].graph.knn_query(
            queries, k=k, num_threads=1, filter=allowed_set.__contains__
        )[0]
    except RuntimeError:
        return allowed[exact_top_k(queries, index.vectors[allowed], k)[1]]


def timed(fn, queries: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Milliseconds of fn(query) for each query, one at a time, and its answers."""
    fn(queries[:1])
    ms, answers = [], []
    for query in queries:
        started = time.perf_counter()
        answers.append(fn(query[None]))
        ms.append((time.perf_counter() - started) * 1000)
    return np.asarray(ms), answers


def recall(answers: list[np.ndarray], truth: np.ndarray) -> float:
    return float(
        np.mean(
            [
                len(set(a.ravel()) & set(t)) / len(t)
                for a, t in zip(answers, truth[: len(answers)], strict=True)
            ]
        )
    )


def p50_p99(ms: np.ndarray) -> str:
    return f"{np.percentile(ms, 50):.2f} / {np.percentile(ms, 99):.2f}"


def unit_costs(index: Index, queries: np.ndarray) -> None:
    """The planner's cost units measured here: an item scored exactly, a neighbour fetched, a mask call."""
    rng = np.random.default_rng(3)
    some = rng.random(len(index)) < 0.02
    exact_ms, _ = timed(lambda q: planner.exact(index.vectors, some, q, K), queries[:50])
    per_item = np.median(exact_ms) * 1000 / np.count_nonzero(some)
    fetch = 3000
    fetch_ms, _ = timed(lambda q: index.segments[0].graph.knn_query(q, k=fetch, num_threads=1), queries[:50])
    share = 0.05
    wide = rng.random(len(index)) < share
    calls = []
    for query in queries[:50]:
        index.segments[0].graph.knn_query(
            query, k=K, num_threads=1, filter=lambda label: calls.append(label) or wide[label]
        )
    walk_ms, _ = timed(
        lambda q: index.segments[0].graph.knn_query(q, k=K, num_threads=1, filter=wide.__getitem__),
        queries[:50],
    )
    per_call = np.median(walk_ms) * 1000 / (len(calls) / 50)
    per_fetch = np.median(fetch_ms) * 1000 / fetch
    rows = [
        ("an item scored exactly (2% pass)", per_item, ""),
        (
            f"a neighbour of an unfiltered walk (k = ef = {fetch})",
            per_fetch,
            f"FETCH_COST = {planner.FETCH_COST}",
        ),
        (f"a mask call of a filtered walk ({share:.0%} pass)", per_call, f"CALL_COST = {planner.CALL_COST}"),
    ]
    print("| cost unit | us (median) | in items scored exactly | planner constant |\n|---|---|---|---|")
    for name, us, constant in rows:
        print(f"| {name} | {us:.3f} | {us / per_item:.1f} | {constant} |")
    walk_calls = len(calls) / 50 * share
    print(f"\nmask calls x selectivity, per query: {walk_calls:.0f} (WALK_CALLS = {planner.WALK_CALLS})\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base-shards", required=True, help="Shards of real embeddings to replicate.")
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--workdir", default="build/bench_filters")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--before-queries", type=int, default=50, help="Queries for the slower old path.")
    args = parser.parse_args()
    started = time.perf_counter()
    index_dir = build_corpus(Path(args.base_shards), args.size, Path(args.workdir) / f"n{args.size}")
    print(f"index {index_dir} ready in {time.perf_counter() - started:.0f} s", flush=True)
    index = Index(index_dir, read_manifest(index_dir), None)
    base = base_vectors(Path(args.base_shards))
    queries, _ = replicas(base, args.queries, noise_scale(base, 0.5), np.random.default_rng(7))
    # One segment (a full build): its masks, and the same never cached.
    cached, fresh = index.masks[0], FilterMasks(index.items, len(index), cache_size=0)
    loads = []
    for field in ("origin", "rhythm", "meter", "source"):
        started = time.perf_counter()
        fresh.mask(parse_filter(f"{field} = x"))
        loads.append(f"{field} {time.perf_counter() - started:.2f} s")
        cached.mask(parse_filter(f"{field} = x"))
    print(f"columns read into memory (once per open index): {', '.join(loads)}\n")
    unit_costs(index, queries)
    print(
        "| filter | passes | before p50 / p99 ms | before recall | planner p50 / p99 ms | planner recall "
        "| planner, mask cached, p50 / p99 ms | planner answered by |\n|---|---|---|---|---|---|---|---|"
    )
    graph = index.segments[0].graph
    for text in FILTERS:
        tree = parse_filter(text)
        passing = cached.mask(tree)
        truth = planner.exact(index.vectors, passing, queries, K)[0]
        old_ms, old = timed(lambda q, t=tree: before(index, q, K, t), queries[: args.before_queries])
        index.masks = [fresh]
        new_ms, new = timed(lambda q, t=text: index.nearest(q, K, filter=t)[0], queries)
        index.masks = [cached]
        cached_ms, found = timed(  # Index.nearest's own steps, to see how the planner answered
            lambda q, t=text: planner.search(graph, index.vectors, cached.mask(parse_filter(t)), q, K),
            queries,
        )
        how = Counter(h for f in found for h in f.how)
        answered_by = " ".join(f"{h[0]} {n / len(queries):.0%}" for h, n in sorted(how.items()))
        print(
            f"| `{text}` | {np.count_nonzero(passing) / len(index):.4%} | {p50_p99(old_ms)} "
            f"| {recall(old, truth):.4f} | {p50_p99(new_ms)} | {recall(new, truth):.4f} "
            f"| {p50_p99(cached_ms)} | {answered_by} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
