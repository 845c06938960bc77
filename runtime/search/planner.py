"""The filter planner: a filtered top-k query answered the cheapest way that still finds the filtered top k.

Its inputs are one graph, its vectors and a boolean mask of the items that pass (runtime.search.masks),
so a segmented index calls it once per segment, with its label range's slice of the mask. From the
mask's count it estimates the cost of
- exact: score every passing item, gathered from the (memory-mapped) matrix;
- over-fetch: walk the graph unfiltered for the k / selectivity * OVERFETCH_MARGIN nearest and keep those
  that pass: when k of them pass they are the filtered top k (no passing item is nearer);
- walk: walk the graph with the filter (hnswlib asks the mask about each item it reaches),
and takes the cheapest. Queries an over-fetch leaves short (the filter rejects their whole
neighbourhood, as a tune type does) take the cheaper of the other two; a walk that finds fewer than k
passing items falls back to exact search.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import hnswlib
import numpy as np

from runtime.search.hits import exact_top_k

EXACT = "exact"
OVERFETCH = "overfetch"
WALK = "walk"
# Costs in units of one passing item scored exactly, measured at 1M items (BENCHMARKS.md, "Filtered
# search"): per neighbour an unfiltered walk returns (hnswlib's cost grows with the k asked for), and per
# mask call of a filtered walk (a trip into Python), which makes about WALK_CALLS / selectivity calls.
FETCH_COST = 3.5
CALL_COST = 3.3
WALK_CALLS = 170
OVERFETCH_MARGIN = 3.0


@dataclass(frozen=True)
class Found:
    """Labels and inner products [Q, min(k, passing)], best first, and how each query was answered."""

    labels: np.ndarray
    scores: np.ndarray
    how: tuple[str, ...]


def fetch_size(passing: int, total: int, k: int) -> int:
    """The unfiltered neighbours to look at for k passing ones, at the mask's selectivity."""
    return min(total, math.ceil(k * OVERFETCH_MARGIN * total / passing))


def costs(passing: int, total: int, k: int) -> dict[str, float]:
    """Each way's estimated cost for one query, in items scored exactly."""
    return {
        EXACT: passing,
        OVERFETCH: FETCH_COST * fetch_size(passing, total, k),
        WALK: CALL_COST * WALK_CALLS * total / passing,
    }


def choose(passing: int, total: int, k: int) -> str:
    """How a query batch is answered first, from the count of passing items."""
    if passing <= k:
        return EXACT
    cost = costs(passing, total, k)
    return min(cost, key=cost.__getitem__)


def fallback(passing: int, total: int, k: int) -> str:
    """How queries that an over-fetch left short are answered: the cheaper of a walk and exact search."""
    cost = costs(passing, total, k)
    return EXACT if cost[EXACT] <= cost[WALK] else WALK


def search(
    graph: hnswlib.Index,
    vectors: np.ndarray,
    passing: np.ndarray,
    queries: np.ndarray,
    k: int,
    first_label: int = 0,
) -> Found:
    """The filtered top k for each query [Q, dim] over a graph in inner-product space and its vectors.

    `passing` is a bool mask by row (len(vectors)); `vectors` may be memory-mapped. The graph's labels
    are first_label + row (a segment of a larger index).
    """
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    total, count = len(passing), int(np.count_nonzero(passing))
    k = min(k, count)
    labels = np.zeros((len(queries), k), dtype=np.int64)
    scores = np.zeros((len(queries), k), dtype=np.float32)
    answered = np.full(len(queries), choose(count, total, k), dtype=object)
    if answered[0] == OVERFETCH:
        near, distances = graph.knn_query(
            queries, k=fetch_size(count, total, k), num_threads=_threads(queries)
        )
        kept = passing[near - first_label]
        enough = kept.sum(axis=1) >= k
        for row in np.flatnonzero(enough):
            first = np.flatnonzero(kept[row])[:k]
            labels[row], scores[row] = near[row, first], 1.0 - distances[row, first]
        answered[~enough] = fallback(count, total, k)
    if len(walked := np.flatnonzero(answered == WALK)):
        try:  # a Python filter is slow across threads: hnswlib advises one
            allowed = passing.__getitem__ if first_label == 0 else lambda label: passing[label - first_label]
            near, distances = graph.knn_query(queries[walked], k=k, num_threads=1, filter=allowed)
            labels[walked], scores[walked] = near, 1.0 - distances
        except RuntimeError:  # the walk found fewer than k passing items
            answered[walked] = EXACT
    if len(scored := np.flatnonzero(answered == EXACT)):
        labels[scored], scores[scored] = exact(vectors, passing, queries[scored], k, first_label)
    return Found(labels, scores, tuple(answered))


def exact(
    vectors: np.ndarray, passing: np.ndarray, queries: np.ndarray, k: int, first_label: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top k among the passing items: (labels, scores), each [Q, min(k, passing)]."""
    allowed = np.flatnonzero(passing)
    scores, rows = exact_top_k(queries, np.take(vectors, allowed, axis=0), k)  # 3x a memmap's [allowed]
    return allowed[rows] + first_label, scores


def _threads(queries: np.ndarray) -> int:
    return 1 if len(queries) == 1 else -1
