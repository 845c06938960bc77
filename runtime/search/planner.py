"""The filter planner: a filtered top-k query answered the cheapest way that still finds the filtered top k.

Its inputs are one graph, its vectors and a boolean mask of the items that pass (runtime.search.masks),
so a segmented index calls it once per segment. The mask's count decides, per query batch:
- few items pass (EXACT_MAX at most): score them all, gathered from the (memory-mapped) matrix;
- otherwise over-fetch: walk the graph unfiltered for the k / selectivity * OVERFETCH_MARGIN nearest and
  keep those that pass: if k of them pass, they are the filtered top k (no passing item is nearer);
- queries that over-fetching left short (the filter rejects their whole neighbourhood), or whose
  over-fetch would exceed FETCH_MAX, walk the graph with the filter (hnswlib asks the mask per item);
- and a walk that finds fewer than k passing items falls back to exact search over them.
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
# Exact search over the passing items up to this many: a gather and a matrix product (BENCHMARKS.md).
EXACT_MAX = 30_000
# An over-fetch asks for this many times the items that would hold k passing ones at the filter's
# selectivity, and is tried up to FETCH_MAX items (the graph's cost grows with the items asked for).
OVERFETCH_MARGIN = 3.0
FETCH_MAX = 2_000


@dataclass(frozen=True)
class Found:
    """Labels and inner products [Q, min(k, passing)], best first, and how each query was answered."""

    labels: np.ndarray
    scores: np.ndarray
    how: tuple[str, ...]


def fetch_size(passing: int, total: int, k: int) -> int:
    """The unfiltered neighbours to look at for k passing ones, at the mask's selectivity."""
    return min(total, math.ceil(k * OVERFETCH_MARGIN * total / passing))


def choose(passing: int, total: int, k: int) -> str:
    """How a query batch is answered first, from the count of passing items."""
    if passing <= max(EXACT_MAX, k):
        return EXACT
    return OVERFETCH if fetch_size(passing, total, k) <= FETCH_MAX else WALK


def search(
    graph: hnswlib.Index, vectors: np.ndarray, passing: np.ndarray, queries: np.ndarray, k: int
) -> Found:
    """The filtered top k for each query [Q, dim] over a graph in inner-product space and its vectors.

    `passing` is a bool mask by label (len(vectors)); `vectors` may be memory-mapped.
    """
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    total, count = len(passing), int(np.count_nonzero(passing))
    k = min(k, count)
    how = choose(count, total, k)
    if how == EXACT or k == 0:
        labels, scores = exact(vectors, passing, queries, k)
        return Found(labels, scores, (EXACT,) * len(queries))
    labels = np.zeros((len(queries), k), dtype=np.int64)
    scores = np.zeros((len(queries), k), dtype=np.float32)
    answered = np.full(len(queries), how, dtype=object)
    short = np.arange(len(queries))
    if how == OVERFETCH:
        near, distances = graph.knn_query(
            queries, k=fetch_size(count, total, k), num_threads=_threads(queries)
        )
        kept = passing[near]
        enough = kept.sum(axis=1) >= k
        for row in np.flatnonzero(enough):
            first = np.flatnonzero(kept[row])[:k]
            labels[row], scores[row] = near[row, first], 1.0 - distances[row, first]
        short = np.flatnonzero(~enough)
        answered[short] = WALK
    if len(short):
        try:  # a Python filter is slow across threads: hnswlib advises one
            near, distances = graph.knn_query(queries[short], k=k, num_threads=1, filter=passing.__getitem__)
            labels[short], scores[short] = near, 1.0 - distances
        except RuntimeError:  # the walk found fewer than k passing items
            labels[short], scores[short] = exact(vectors, passing, queries[short], k)
            answered[short] = EXACT
    return Found(labels, scores, tuple(answered))


def exact(
    vectors: np.ndarray, passing: np.ndarray, queries: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top k among the passing items: (labels, scores), each [Q, min(k, passing)]."""
    allowed = np.flatnonzero(passing)
    scores, rows = exact_top_k(queries, vectors[allowed], k)
    return allowed[rows], scores


def _threads(queries: np.ndarray) -> int:
    return 1 if len(queries) == 1 else -1
