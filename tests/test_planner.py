"""The filter planner: which way it answers at each selectivity, and recall against exact filtered search."""

from __future__ import annotations

import hnswlib
import numpy as np
import pytest

from runtime.search import planner

ITEMS, CLUSTERS, DIM = 10_000, 200, 32


@pytest.fixture(scope="module")
def data() -> tuple[hnswlib.Index, np.ndarray, np.ndarray, np.ndarray]:
    """A graph over clustered unit vectors, the vectors, each item's cluster, and queries near clusters."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((CLUSTERS, DIM)).astype(np.float32)
    cluster = rng.integers(CLUSTERS, size=ITEMS)

    def near(which: np.ndarray) -> np.ndarray:
        x = centres[which] + 0.4 * rng.standard_normal((len(which), DIM)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    vectors = near(cluster)
    graph = hnswlib.Index(space="ip", dim=DIM)
    graph.init_index(max_elements=ITEMS, ef_construction=100, M=16, random_seed=1)
    graph.add_items(vectors, np.arange(ITEMS), num_threads=2)
    graph.set_ef(128)
    return graph, vectors, cluster, near(rng.integers(CLUSTERS, size=50))


def test_few_passing_items_are_scored_exactly_and_many_are_over_fetched_or_walked(monkeypatch):
    total, k = 1_000_000, 10
    assert planner.choose(k, total, k) == planner.EXACT  # never walk for no more items than asked for
    assert planner.choose(1000, total, k) == planner.EXACT
    assert planner.choose(total // 2, total, k) == planner.OVERFETCH
    assert planner.fetch_size(total // 2, total, k) == k * planner.OVERFETCH_MARGIN * 2
    assert planner.fetch_size(1, 100, 10) == 100  # never more than the whole graph
    assert planner.fallback(1000, total, k) == planner.EXACT  # a walk would ask the mask too often
    assert planner.fallback(total // 2, total, k) == planner.WALK
    monkeypatch.setattr(planner, "FETCH_COST", 10**6)  # were over-fetching dear, wide filters would walk
    assert planner.choose(total // 2, total, k) == planner.WALK
    assert planner.choose(1000, total, k) == planner.EXACT


@pytest.mark.parametrize("share", [0.001, 0.01, 0.05, 0.2, 0.5, 0.9])
@pytest.mark.parametrize("tied_to_vectors", [False, True], ids=["independent", "by-cluster"])
def test_recall_against_exact_filtered_search_at_every_selectivity(data, monkeypatch, share, tied_to_vectors):
    graph, vectors, cluster, queries = data
    for name, cost in (("FETCH_COST", 10), ("CALL_COST", 12), ("WALK_CALLS", 30)):
        monkeypatch.setattr(planner, name, cost)  # this small graph then takes every way the planner has
    rng = np.random.default_rng(int(share * 1000))
    if tied_to_vectors:  # a filter that whole neighbourhoods pass or fail, as tune types do
        passing = np.isin(cluster, rng.permutation(CLUSTERS)[: max(1, round(share * CLUSTERS))])
    else:
        passing = rng.random(ITEMS) < share
    found = planner.search(graph, vectors, passing, queries, 10)
    truth, truth_scores = planner.exact(vectors, passing, queries, 10)
    assert passing[found.labels].all()
    hits = [len(set(f) & set(t)) for f, t in zip(found.labels, truth, strict=True)]
    assert np.sum(hits) / truth.size >= 0.99, found.how
    np.testing.assert_allclose(
        found.scores[found.labels == truth], truth_scores[found.labels == truth], atol=1e-5
    )
    assert (np.diff(found.scores, axis=1) <= 1e-6).all()  # best first
    first = planner.choose(int(passing.sum()), ITEMS, 10)
    expected = {first, planner.EXACT}  # a walk left short is scored exactly
    if first == planner.OVERFETCH:  # queries near failing clusters find too few passing neighbours
        expected.add(planner.fallback(int(passing.sum()), ITEMS, 10))
    assert set(found.how) <= expected
    if tied_to_vectors and share == 0.5:
        assert set(found.how) == {planner.OVERFETCH, planner.WALK}  # every way is tested
    if share == 0.001:
        assert set(found.how) == {planner.EXACT}


def test_no_passing_item_gives_empty_rows_and_few_give_all_of_them(data):
    graph, vectors, _, queries = data
    none = planner.search(graph, vectors, np.zeros(ITEMS, dtype=bool), queries, 10)
    assert none.labels.shape == none.scores.shape == (len(queries), 0)
    three = np.zeros(ITEMS, dtype=bool)
    three[[5, 50, 500]] = True
    found = planner.search(graph, vectors, three, queries, 10)
    assert found.labels.shape == (len(queries), 3)
    assert all(sorted(row) == [5, 50, 500] for row in found.labels.tolist())
