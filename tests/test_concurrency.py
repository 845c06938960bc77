"""Many threads querying one Index get exactly the answers one thread gets: same ids, same scores, same order.

The threads start together on a freshly opened index, so they also race on everything made on first use
(ONNX Runtime sessions, the tokenizer, per-thread SQLite connections), and every query path runs at once:
text, music, by id, zero-shot, exact, batched vectors, filters answered by over-fetching, by exact search over
a subset, and by hnswlib's filtered graph walk.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import runtime.search.planner
from runtime.model.encoder import Encoder
from runtime.search.index import Index
from runtime.search.keys import read_music

THREADS = 32
ROUNDS = 25  # each query is asked this many times, interleaved across the threads
TEXTS = ["a lively jig", "a slow air", "a sad song from Ireland", "a hornpipe", "a reel in D", "Liebeslied"]


def queries(index: Index, tunes: list[str], some_ids: list[str], vectors: np.ndarray) -> list:
    """One closure per query kind and input; each returns something comparable with ==."""

    def answer(hits):
        return [(hit.id, hit.score, hit.metadata.get("title")) for hit in hits]

    asks = []
    for text in TEXTS:
        asks += [
            lambda t=text: answer(index.search_text(t, k=7)),
            lambda t=text: answer(
                index.search_text(t, k=5, filter="rhythm = hornpipe")
            ),  # graph, then filter
            lambda t=text: answer(index.search_text(t, k=5, filter="origin = Irland", exact=True)),
            lambda t=text: answer(index.search_text(t, k=5, filter='title contains "a"')),  # a large subset
        ]
    for tune in tunes:
        asks += [
            lambda a=tune: answer(index.search_music(a + "\n", k=6)),
            lambda a=tune: answer(index.classify(a + "\n", ["jig", "reel", "hornpipe", "song"])),
        ]
    for item_id in some_ids:
        asks += [
            lambda i=item_id: answer(index.similar_to(i, k=6)),
            lambda i=item_id: index.item(i),
        ]
    asks.append(
        lambda: [answer(hits) for hits in index.search_vectors(vectors, k=8)]
    )  # hnswlib's own threads
    return asks


def test_32_threads_on_a_fresh_index_give_the_one_thread_answers(built, monkeypatch):
    monkeypatch.setattr(runtime.search.planner, "FETCH_COST", 10**9)  # subsets of more than k walk the graph
    monkeypatch.setattr(runtime.search.planner, "CALL_COST", 0)
    alone = Index.open(built.index_dir)
    inputs = (
        [read_music(path, 0) for path in built.files],
        [hit.id for hit in alone.search_text("a tune", k=4)],
        np.asarray(alone.vectors[:5]),
    )
    expected = [ask() for ask in queries(alone, *inputs)]

    made: list[str] = []
    new_session = Encoder._new_session
    monkeypatch.setattr(
        Encoder, "_new_session", lambda self, tower: made.append(tower) or new_session(self, tower)
    )
    shared = Index.open(built.index_dir)  # nothing made yet: the threads race to make it
    asks = queries(shared, *inputs) * ROUNDS
    order = np.random.default_rng(3).permutation(len(asks))
    start = threading.Barrier(THREADS)

    def run(position: int):
        if position < THREADS:
            start.wait()  # the first 32 queries all begin at once
        index = order[position]
        return index % len(expected), asks[index]()

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        answers = list(pool.map(run, range(len(asks))))
    assert len(answers) == len(expected) * ROUNDS > 1000
    for which, got in answers:
        assert got == expected[which], f"query {which} answered differently under threads"
    assert sorted(made) == ["music", "text"], "each ONNX Runtime session must be built once, not per thread"
