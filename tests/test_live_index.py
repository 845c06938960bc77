"""A served index follows its dir: updates and rebuilds are swapped in between requests, none of which fails.

Clients query a real server without pause while the index is updated (a segment added, rows deleted) and
then rebuilt whole; every answer is a 200, and after each swap the server answers from the new generation.
An Index opened before a swap keeps answering from its own generation, even once its files are deleted.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from query_corpus import Corpus, build_corpus, clamp
from serving import serving
from updating import BASE_FILES, MORE, add_file, drop_tunes, update

from indexer.index_build import build_index
from runtime.search.index import Index
from runtime.search.live import LiveIndex
from runtime.serve.server import create_app

CLIENTS = 3


@pytest.fixture
def corpus(tmp_path) -> Corpus:
    return build_corpus(tmp_path, BASE_FILES)


def hammer(client: httpx.Client, item_id: str, stop: threading.Event, answers: list) -> None:
    """Query every kind of route in turn until `stop`; record (route, status) of each answer."""
    asks = [
        ("post", "/search", {"json": {"text": "a lively jig", "k": 5, "mode": "vector"}}),
        ("post", "/search", {"json": {"text": "hornpipe", "k": 5, "mode": "keyword"}}),
        ("post", "/search", {"json": {"text": "a reel", "k": 5, "filter": "rhythm = jig"}}),
        ("post", "/similar", {"json": {"id": item_id, "k": 5}}),
        ("get", "/v1/facets", {"params": {"fields": "rhythm,key"}}),
        ("get", f"/items/{item_id}", {}),
    ]
    while not stop.is_set():
        for method, path, options in asks:
            answers.append((path, getattr(client, method)(path, **options).status_code))


def wait_for(client: httpx.Client, expected: dict, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while {k: client.get("/health").json()[k] for k in expected} != expected:
        assert time.monotonic() < deadline, f"the server did not swap in {expected}"
        time.sleep(0.05)


def test_a_server_under_load_swaps_updates_and_rebuilds_in_without_a_failed_request(corpus):
    index = Index.open(corpus.index_dir)
    item_id = index.search_text("jig", 1, mode="keyword")[0].id  # a base tune: it stays through every change
    base = len(index)
    stop, answers = threading.Event(), []
    with serving(create_app(LiveIndex(index, poll_s=0.05))) as client:
        threads = [
            threading.Thread(target=hammer, args=(client, item_id, stop, answers)) for _ in range(CLIENTS)
        ]
        for thread in threads:
            thread.start()
        try:
            add_file(corpus, MORE[0])
            update(corpus)
            wait_for(client, {"generation": 1, "segments": 2, "count": base + 69})
            hornpipes = client.post("/search", json={"text": "hornpipe", "k": 3, "mode": "keyword"}).json()
            assert all(hit["rhythm"] == "hornpipe" for hit in hornpipes["results"])  # the new segment's tunes
            drop_tunes(corpus, MORE[0], 4)
            update(corpus)
            wait_for(client, {"generation": 2, "count": base + 65})
            clamp(
                "index", "build", corpus.shards_dir, "--out", corpus.index_dir, "--full"
            )  # the dir replaced
            wait_for(client, {"generation": 0, "segments": 1, "count": base + 65})
            time.sleep(0.3)  # and some answers from the rebuilt index
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
    failed = [answer for answer in answers if answer[1] != 200]
    assert len(answers) > 100 and failed == []


def test_an_open_generation_answers_as_before_after_its_dir_is_rebuilt(corpus):
    live = LiveIndex(Index.open(corpus.index_dir))
    first = live.current
    before = [h.id for h in first.search_vectors(first.vectors[0], 10, filter="rhythm = jig")[0]]
    facets = first.facets(["rhythm", "key"])
    add_file(corpus, MORE[0])
    update(corpus)
    assert live.refresh() and live.current is not first
    assert live.current.segments[0] is first.segments[0]  # the base segment is shared, not loaded twice
    assert not live.refresh()  # no change since
    build_index(corpus.shards_dir, corpus.index_dir, model_dir=corpus.model_dir, full=True)
    assert live.refresh() and live.current.segments[0] is not first.segments[0]
    assert not (first.directory / "segment-00001").exists()  # the old generation's files are gone...
    assert [
        h.id for h in first.search_vectors(first.vectors[0], 10, filter="rhythm = jig")[0]
    ] == before  # ...it answers
    assert first.item(before[0])["rhythm"] == "jig" and first.facets(["rhythm", "key"], "key = G") != facets
    assert first.facets(["rhythm", "key"]) == facets
