"""Micro-batching in the server: batched answers equal the ones each query gets alone; inputs of requests that
timed out or disconnected never reach the encoder; a full queue answers 429. Real uvicorn servers on loopback.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from serving import serving

from runtime.search.index import Index
from runtime.search.keys import read_music
from runtime.serve.batching import Batcher, BatchSettings, text_embedder
from runtime.serve.server import create_app

CORPUS_FILES = ("oneills1850/0721-0730.abc", "essenFolksong/irl.abc")
TEXTS = [
    f"{mood} {kind} {where}"
    for mood in ("a lively", "a sad")
    for kind in ("jig", "air", "song")
    for where in ("from Ireland", "in D", "for the fiddle")
]
LABELS = ["jig", "reel", "hornpipe", "song"]


def record_texts(monkeypatch, index: Index, slow: str, seconds: float) -> list[list[str]]:
    """Every batch of texts the encoder gets, from now on; a batch holding `slow` takes `seconds` more."""
    encoder = index.require_encoder()
    original, batches = encoder.embed_texts, []

    def recorded(texts, *args, **kwargs):
        batches.append(list(texts))
        if slow in texts:
            time.sleep(seconds)
        return original(texts, *args, **kwargs)

    monkeypatch.setattr(encoder, "embed_texts", recorded)
    return batches


def hits_of(response) -> list[tuple[str, float]]:
    assert response.status_code == 200, response.text
    return [(hit["id"], hit["score"]) for hit in response.json()["results"]]


def assert_same_hits(got: list[tuple[str, float]], expected: list) -> None:
    assert [i for i, _ in got] == [hit.id for hit in expected]
    np.testing.assert_allclose([s for _, s in got], [hit.score for hit in expected], atol=1e-5)


def test_concurrent_queries_batched_get_the_answers_each_gets_alone(index, built, monkeypatch):
    tune = read_music(built.files[0], 3)
    alone = {
        "search": [index.search_text(text, k=5) for text in TEXTS],
        "filtered": [index.search_text(text, k=3, filter="rhythm = jig") for text in TEXTS[:6]],
        "classify": index.classify(tune + "\n", LABELS),
        "similar": index.search_music(tune + "\n", k=4),
        "embeddings": index.require_encoder().embed_texts(TEXTS[:4]),
    }
    batches = record_texts(monkeypatch, index, slow="hold the worker", seconds=0.5)
    asks = [("/search", {"text": text, "k": 5}) for text in TEXTS]
    asks += [("/search", {"text": text, "k": 3, "filter": "rhythm = jig"}) for text in TEXTS[:6]]
    asks += [("/classify", {"abc": tune, "labels": LABELS}), ("/similar", {"abc": tune, "k": 4})]
    asks += [("/v1/embeddings", {"input": TEXTS[:4]})]
    with serving(create_app(index)) as client:
        holding = threading.Thread(
            target=client.post, args=("/search",), kwargs={"json": {"text": "hold the worker"}}
        )
        holding.start()
        time.sleep(0.1)  # the worker is busy: everything below queues and goes in batches
        with ThreadPoolExecutor(len(asks)) as pool:
            answers = list(pool.map(lambda ask: client.post(ask[0], json=ask[1]), asks))
        holding.join()

    for response, expected in zip(answers, alone["search"] + alone["filtered"], strict=False):
        assert_same_hits(hits_of(response), expected)
    classified, similar, embedded = answers[-3:]
    assert_same_hits([(h["id"], h["score"]) for h in classified.json()["results"]], alone["classify"])
    assert_same_hits(hits_of(similar), alone["similar"])
    vectors = [item["embedding"] for item in embedded.json()["data"]]
    np.testing.assert_allclose(vectors, alone["embeddings"], atol=1e-5)
    prompts = {f"This is a {label}." for label in LABELS}
    mixed = [batch for batch in batches if prompts & set(batch) and set(TEXTS) & set(batch)]
    assert mixed, f"label prompts never shared a batch with search texts: {batches}"
    assert len(batches) < len(TEXTS), "the queued texts were not batched"


def raw_post(port: int, path: str, body: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    head = f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
    sock.sendall(head.encode() + f"content-length: {len(body)}\r\n\r\n".encode() + body)
    return sock


def test_inputs_of_requests_that_timed_out_or_disconnected_never_reach_the_encoder(index, monkeypatch):
    batches = record_texts(monkeypatch, index, slow="stuck", seconds=1.5)
    with serving(create_app(index, request_timeout=1.0)) as client:
        port = client.base_url.port
        stuck = threading.Thread(target=client.post, args=("/search",), kwargs={"json": {"text": "stuck"}})
        stuck.start()
        time.sleep(0.2)  # the worker now encodes "stuck" for 1.5 s; what follows waits in the queue
        gone = raw_post(port, "/search", b'{"text": "gone"}')
        with ThreadPoolExecutor(2) as pool:
            late = [
                pool.submit(client.post, "/search", json={"text": "too late"}),
                pool.submit(client.post, "/v1/embeddings", json={"input": ["too late 1", "too late 2"]}),
            ]
            time.sleep(0.2)
            gone.close()  # the client disconnects: its request is cancelled
            assert [f.result().status_code for f in late] == [503, 503]
        stuck.join()
        assert client.post("/search", json={"text": "a jig"}).status_code == 200
        in_flight = client.get("/metrics").json()["in_flight"]
    seen = {text for batch in batches for text in batch}
    assert seen == {"stuck", "a jig"}, f"dropped inputs were encoded: {batches}"
    assert in_flight == 0


def test_a_full_queue_is_answered_with_429(index, monkeypatch):
    record_texts(monkeypatch, index, slow="stuck", seconds=1.0)
    with serving(create_app(index, batching=BatchSettings(max_queue=2))) as client:
        stuck = threading.Thread(target=client.post, args=("/search",), kwargs={"json": {"text": "stuck"}})
        stuck.start()
        time.sleep(0.2)
        queued = threading.Thread(
            target=client.post, args=("/v1/embeddings",), kwargs={"json": {"input": ["a", "b"]}}
        )
        queued.start()
        time.sleep(0.2)  # two inputs wait: the queue is full
        full = client.post("/search", json={"text": "one more"})
        stuck.join()
        queued.join()
        assert full.status_code == 429 and full.headers["retry-after"] == "1"
        assert "retry shortly" in full.json()["detail"]
        assert client.post("/search", json={"text": "one more"}).status_code == 200


# --- the batcher alone ------------------------------------------------------------------------------------


def test_batches_keep_to_max_batch_requests_and_the_budget_and_one_bad_input_fails_only_its_request():
    seen: list[list[str]] = []

    def run(inputs, stages):
        seen.append(list(inputs))
        if "bad" in inputs:
            raise ValueError("bad input")
        return [value.upper() for value in inputs]

    async def scenario():
        batcher = Batcher("t", run, BatchSettings(max_batch=2, wait_ms=50), budget=4, cost=len)
        asks = [["a", "b"], ["cc", "d"], ["bad"], ["e", "f", "g", "h"]]
        answers = await asyncio.gather(*(batcher.submit(ask) for ask in asks), return_exceptions=True)
        await batcher.close()
        return answers

    answers = asyncio.run(scenario())
    assert answers[0] == ["A", "B"] and answers[1] == ["CC", "D"] and answers[3] == ["E", "F", "G", "H"]
    assert isinstance(answers[2], ValueError)
    # Two requests at most, four characters at most: the second request is split over two batches;
    # the batch that failed is rerun request by request.
    assert seen == [["a", "b", "cc"], ["d", "bad"], ["d"], ["bad"], ["e", "f", "g", "h"]]


def test_an_idle_worker_waits_for_batch_mates_only_while_other_requests_are_in_flight():
    seen: list[list[int]] = []

    def run(inputs, stages):
        seen.append(list(inputs))
        return inputs

    async def scenario(in_flight: int) -> float:
        batcher = Batcher("t", run, BatchSettings(wait_ms=300), budget=64, in_flight=lambda: in_flight)
        started = time.perf_counter()
        first = asyncio.ensure_future(batcher.submit([1]))
        await asyncio.sleep(0.05)
        second = await batcher.submit([2])
        await first
        await batcher.close()
        return second, time.perf_counter() - started

    assert asyncio.run(scenario(in_flight=2))[0] == [2] and seen[-1] == [1, 2]  # waited, then one batch
    seen.clear()
    _, took = asyncio.run(scenario(in_flight=1))
    assert seen == [[1], [2]] and took < 0.25  # alone: no wait


def test_a_cancelled_request_split_over_batches_stops_after_the_batch_running():
    seen: list[list[int]] = []

    def run(inputs, stages):
        seen.append(list(inputs))
        time.sleep(0.1)
        return inputs

    async def scenario() -> None:
        batcher = Batcher("t", run, BatchSettings(), budget=2)
        heavy = asyncio.ensure_future(batcher.submit(list(range(10))))
        await asyncio.sleep(0.05)  # the first batch of two runs
        heavy.cancel()
        assert await batcher.submit([99]) == [99]
        await batcher.close()

    asyncio.run(scenario())
    assert seen == [[0, 1], [99]]


def test_the_text_tower_encodes_a_text_once_and_a_new_model_starts_afresh(index):
    encoder, seen = index.require_encoder(), []

    class Counting:
        def __init__(self, inner):
            self.inner = inner

        def embed_texts(self, texts):
            seen.append(list(texts))
            return self.inner.embed_texts(texts)

    counting = Counting(encoder)
    embed = text_embedder(entries=3)
    first = embed(counting, ["a jig", "a reel", "a jig"])
    again = embed(counting, ["a reel", "a slow air", "a jig"])
    assert seen == [["a jig", "a reel"], ["a slow air"]]  # each distinct text encoded once
    np.testing.assert_array_equal(again[[0, 2]], first[[1, 0]])
    np.testing.assert_allclose(again, encoder.embed_texts(["a reel", "a slow air", "a jig"]), atol=1e-5)
    embed(counting, ["a hornpipe"])  # a fourth text: the least recently used ("a reel") goes
    embed(counting, ["a jig", "a reel"])
    assert seen[2:] == [["a hornpipe"], ["a reel"]]
    other = Counting(encoder)  # another generation's encoder: nothing it did not encode is reused
    embed(other, ["a jig"])
    assert seen[-1] == ["a jig"]
    uncached = text_embedder(entries=0)
    uncached(counting, ["a jig"]), uncached(counting, ["a jig"])
    assert seen[-2:] == [["a jig"], ["a jig"]]
