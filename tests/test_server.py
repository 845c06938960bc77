"""`clamp serve`'s HTTP API: a real uvicorn server on 127.0.0.1, real requests with httpx."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from query_corpus import corpus_path
from serving import serving

from runtime.music.abc import split_tunes
from runtime.search.keys import read_music
from runtime.serve.server import create_app


@pytest.fixture(scope="module")
def client(index) -> Iterator[httpx.Client]:
    with serving(create_app(index, max_body_bytes=100_000)) as client:
        yield client


def test_search_returns_ranked_hits_with_timing(client, index):
    response = client.post("/search", json={"text": "a lively jig", "k": 4, "mode": "vector"})
    assert response.status_code == 200
    hits = response.json()["results"]
    assert [h["id"] for h in hits] == [h.id for h in index.search_text("a lively jig", k=4, mode="vector")]
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    timing = response.headers["server-timing"]
    assert "encode;dur=" in timing and "search;dur=" in timing and "total;dur=" in timing


def test_search_filters_and_its_errors(client):
    hits = client.post(
        "/search", json={"text": "a song", "k": 5, "filter": "origin = irland", "with_abc": True}
    )
    assert all(h["origin"] == "Irland" and h["abc"] for h in hits.json()["results"])
    bad = client.post("/search", json={"text": "a song", "filter": "origin is Irland"})
    assert bad.status_code == 400 and "bad filter" in bad.json()["detail"]
    assert client.post("/search", json={"text": ""}).status_code == 422
    assert client.post("/search", json={"text": "x", "k": 0}).status_code == 422


def test_new_filter_syntax_and_capped_filters_over_http(client):
    hits = client.post(
        "/search", json={"text": "a song", "k": 5, "filter": "key in (G, D) and not rhythm = jig"}
    )
    assert hits.status_code == 200 and hits.json()["results"]
    assert all(h["key"] in ("G major", "D major") and h["rhythm"] != "jig" for h in hits.json()["results"])
    huge = " and ".join(["meter = 6/8"] * 1100)  # issue #16: a 500 from SQLite's expression-tree limit
    bad = client.post("/search", json={"text": "a song", "filter": huge})
    assert bad.status_code == 400 and bad.json()["detail"].startswith("filter too long: 17595 characters")
    many = " or ".join(["meter = 6/8"] * 65)
    bad = client.post("/similar", json={"abc": "X:1\nK:G\nGABc|\n", "filter": many})
    assert bad.status_code == 400 and "more than 64 terms" in bad.json()["detail"]


def test_facets_endpoint_shape_counts_and_filter(client, index):
    response = client.get("/v1/facets", params={"fields": "key,meter,rhythm,origin,collection", "top": 3})
    assert response.status_code == 200
    facets = response.json()["facets"]
    assert list(facets) == ["key", "meter", "rhythm", "origin", "collection"]
    assert facets["collection"] == [{"value": "abc", "count": len(index)}]
    assert all(len(values) <= 3 and set(values[0]) == {"value", "count"} for values in facets.values())
    assert facets["key"] == [{"value": v, "count": n} for v, n in index.facets(["key"], top=3)["key"]]
    jigs = client.get("/v1/facets", params={"fields": "rhythm", "filter": "rhythm = jig"}).json()["facets"]
    assert jigs == {"rhythm": [{"value": "jig", "count": 10}]}
    default = client.get("/v1/facets").json()["facets"]
    assert list(default) == ["key", "meter", "rhythm", "origin", "collection"]
    bad = client.get("/v1/facets", params={"fields": "colour"})
    assert bad.status_code == 400 and "unknown filter field 'colour'" in bad.json()["detail"]
    bad = client.get("/v1/facets", params={"filter": "rhythm is jig"})
    assert bad.status_code == 400 and "bad filter at column 8" in bad.json()["detail"]


def test_similar_from_json_an_uploaded_file_or_an_id(client, built):
    path = built.abc_dir / "oneills1850-1556-1624.abc"
    query = {"abc": path.read_text(), "tune": 5, "k": 3, "exclude_self": False}
    from_json = client.post("/similar", json=query).json()["results"]
    assert from_json[0]["score"] == pytest.approx(1, abs=1e-4)
    upload = client.post(
        "/similar",
        files={"file": (path.name, path.read_bytes())},
        data={"tune": "5", "k": "3", "exclude_self": "false"},
    )
    assert upload.status_code == 200 and upload.json()["results"] == from_json
    by_id = client.post("/similar", json={"id": from_json[0]["id"], "k": 3, "exclude_self": False})
    assert by_id.json()["results"][0]["id"] == from_json[0]["id"]
    assert client.post("/similar", json={"id": "nope"}).status_code == 404
    assert "give the query tune" in client.post("/similar", json={"k": 3}).json()["detail"]
    assert client.post("/similar", json={"abc": read_music(path, 0), "tune": 3}).status_code == 400


def test_classify_with_labels_or_a_label_set(client, built):
    abc = (built.abc_dir / "oneills1850-0721-0730.abc").read_text()
    hits = client.post("/classify", json={"abc": abc, "labels": ["jig", "reel"], "template": "A {}."}).json()
    assert sorted(h["id"] for h in hits["results"]) == ["jig", "reel"]
    by_set = client.post("/classify", json={"abc": abc, "label_set": "meter"})
    assert by_set.status_code == 200 and len(by_set.json()["results"]) >= 4
    assert client.post("/classify", json={"abc": abc}).status_code == 400


def test_embeddings_are_openai_shaped_and_match_the_encoder(client, index, built):
    texts = client.post("/v1/embeddings", json={"input": ["a jig", "a reel"], "modality": "text"}).json()
    assert texts["object"] == "list" and [d["index"] for d in texts["data"]] == [0, 1]
    np.testing.assert_allclose(
        [d["embedding"] for d in texts["data"]], index.encoder.embed_texts(["a jig", "a reel"]), atol=1e-6
    )
    abc = read_music(built.abc_dir / "essenFolksong-irl.abc", 0)
    music = client.post("/v1/embeddings", json={"input": abc, "modality": "abc"}).json()
    np.testing.assert_allclose(music["data"][0]["embedding"], index.encoder.embed_abc([abc])[0], atol=1e-6)
    assert client.post("/v1/embeddings", json={"input": [], "modality": "text"}).status_code == 400
    assert client.post("/v1/embeddings", json={"input": "x", "modality": "midi"}).status_code == 422


def test_items_health_metrics_and_docs(client, index):
    some_id = index.search_text("a tune", k=1)[0].id
    item = client.get(f"/items/{some_id}").json()
    assert item["id"] == some_id and item["abc"].startswith("X:")
    assert client.get("/items/nope").status_code == 404
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["count"] == len(index) and health["model_loaded"]
    client.post("/search", json={"text": "metrics"})
    routes = client.get("/metrics").json()["routes"]
    assert routes["/search"]["requests"] >= 1 and routes["/items/{item_id}"]["errors"] >= 1
    assert routes["/search"]["latency_ms"]["p50"] > 0
    paths = client.get("/openapi.json").json()["paths"]
    assert {
        "/search",
        "/similar",
        "/classify",
        "/v1/embeddings",
        "/items/{item_id}",
        "/health",
    } <= paths.keys()


def test_sources_are_shown_relative_to_the_corpus_root(client, built):
    assert str(built.abc_dir).startswith("/")  # the index stores the server's absolute paths
    files = {f.name for f in built.files}
    searched = client.post("/search", json={"text": "a jig", "k": 50}).json()["results"]
    first = searched[0]["id"]
    similar = client.post("/similar", json={"id": first, "k": 50}).json()["results"]
    item = client.get(f"/items/{first}").json()
    uploaded = client.post(
        "/similar", files={"file": ("q.abc", (built.abc_dir / "oneills1850-0721-0730.abc").read_bytes())}
    ).json()["results"]
    sources = [row["source"] for row in (*searched, *similar, item, *uploaded)]
    assert set(sources) <= files and len(set(sources)) > 1


def test_convert_shows_the_abc_an_uploaded_score_is_read_as(client, built):
    jigs = built.abc_dir / "oneills1850-0721-0730.abc"
    answer = client.post("/convert", files={"file": (jigs.name, jigs.read_bytes())}).json()
    assert answer["abc"] == jigs.read_text() and len(answer["titles"]) == 10
    assert answer["titles"][0] == split_tunes(jigs.read_text())[0].meta["title"]
    chorale = corpus_path("bach/bwv1.6.mxl")
    converted = client.post("/convert", files={"file": (chorale.name, chorale.read_bytes())}).json()
    assert converted["abc"].startswith("X:") and "\nK:" in converted["abc"] and len(converted["titles"]) == 1
    assert client.post("/convert", files={"file": ("x.mxl", b"PK not a zip")}).status_code == 400


def test_request_size_limits_declared_or_chunked(client):
    big = client.post("/search", json={"text": "x" * 200_000})
    assert big.status_code == 413 and "over 100000 bytes" in big.json()["detail"]
    chunked = client.post(
        "/search", content=(b"x" * 10_000 for _ in range(20)), headers={"content-type": "application/json"}
    )
    assert chunked.status_code == 413


def test_overload_is_answered_with_429(index, monkeypatch):
    encoder = index.require_encoder()
    original = encoder.embed_texts

    def slow(texts, *args, **kwargs):  # the first query holds the one slot while it is being answered
        if "a slow air" in texts:
            time.sleep(1.0)
        return original(texts, *args, **kwargs)

    monkeypatch.setattr(encoder, "embed_texts", slow)
    with serving(create_app(index, max_concurrency=1)) as client:
        outcome = {}
        first = threading.Thread(
            target=lambda: outcome.update(slow=client.post("/search", json={"text": "a slow air"}))
        )
        first.start()
        time.sleep(0.3)
        busy = client.post("/search", json={"text": "a reel"})
        first.join()
        assert busy.status_code == 429 and busy.headers["retry-after"] == "1"
        assert outcome["slow"].status_code == 200
        assert client.get("/metrics").json()["routes"]["/search"]["rejected"] == 1
