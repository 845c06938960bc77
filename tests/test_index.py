"""The index from Python: build, every query kind, filters, the exact path, model checks, recall."""

from __future__ import annotations

import json
import shutil
import sqlite3
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from query_corpus import build_corpus, corpus_path, other_model_dir

import runtime.search.hits
import runtime.search.planner
from indexer.index_build import build_index
from indexer.reader import TuneRecord
from indexer.shards import ShardWriter, checksum_file, rows_table, shard_files, shard_schema, shards_metadata
from runtime.model.encoder import Encoder
from runtime.music.abc import split_tunes
from runtime.search.filters import parse_filter
from runtime.search.hits import exact_top_k, softmax_probs
from runtime.search.index import Index, ModelMismatchError, read_manifest
from runtime.search.items import ItemStore, ItemWriter, item_row
from runtime.search.keys import read_music
from runtime.storage.dirs import OutDirError


def ids(hits) -> list[str]:
    return [h.id for h in hits]


def test_build_writes_graph_items_vectors_and_manifest(built):
    manifest = read_manifest(built.index_dir)
    shards = shard_files(built.shards_dir)
    tunes = sum(len(split_tunes(f.read_text("utf-8", errors="replace"))) for f in built.files)
    assert manifest["count"] == tunes == sum(s["rows"] for s in manifest["shards"])
    assert (
        manifest["model_hash"]
        == Encoder.open(built.model_dir).model_hash
        == shards_metadata(built.shards_dir)["model_hash"]
    )
    assert manifest["model_dir"] == str(built.model_dir.resolve())
    assert (manifest["space"], manifest["M"], manifest["ef_construction"]) == ("ip", 16, 200)
    assert [s["file"] for s in manifest["shards"]] == [f.name for f in shards]
    assert manifest["build_seconds"] > 0
    with sqlite3.connect(built.index_dir / "items.sqlite") as conn:
        assert conn.execute("SELECT count(*), min(label), max(label) FROM items").fetchone() == (
            tunes,
            0,
            tunes - 1,
        )
    vectors = np.load(built.index_dir / "vectors.npy")
    assert vectors.shape == (tunes, manifest["dim"])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)


def test_text_search_ranks_items_by_cosine(index):
    hits = index.search_text("a lively jig", k=10, mode="vector")
    assert len(hits) == 10
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    query = index.encoder.embed_texts(["a lively jig"])[0]
    for hit in hits:
        label = index.items.label_of(hit.id)
        assert hit.score == pytest.approx(float(index.vectors[label] @ query), abs=1e-5)
        assert {
            "title",
            "meter",
            "key",
            "rhythm",
            "origin",
            "source",
            "tune_index",
            "meta",
        } <= hit.metadata.keys()
        assert hit.abc is None
    assert ids(index.search_text("a lively jig", k=10, mode="vector", exact=True)) == ids(hits)


def test_music_search_finds_the_query_tune_first(index, built):
    path = built.abc_dir / "oneills1850-1556-1624.abc"
    hits = index.search_music(path, k=5, tune=7, with_abc=True, exclude_self=False)
    assert hits[0].abc == read_music(path, 7)
    assert hits[0].score == pytest.approx(1, abs=1e-4)
    assert ids(index.search_music(read_music(path, 7), k=5, exclude_self=False)) == ids(hits)  # ABC as a path
    assert ids(index.search_music(path, k=4, tune=7)) == ids(hits)[1:]  # by default, without the tune itself


def test_similar_to_an_indexed_tune_and_item_lookup(index):
    first = index.search_text("a hornpipe", k=1)[0]
    similar = index.similar_to(first.id, k=4, exclude_self=False)
    assert similar[0].id == first.id and similar[0].score == pytest.approx(1, abs=1e-5)
    assert ids(index.similar_to(first.id, k=3)) == ids(similar)[1:]
    item = index.item(first.id)
    assert (
        item["id"] == first.id and item["abc"].startswith("X:") and item["title"] == first.metadata["title"]
    )
    assert index.item("no-such-id") is None
    with pytest.raises(KeyError, match="no item with id"):
        index.similar_to("no-such-id")


@pytest.mark.parametrize(
    ("sources", "root"),
    [
        (["/c/folk/a.abc", "/c/folk/ab.abc", "/c/fiddle/b.abc"], "/c/"),
        (["/c/folk/a.abc", "/c/folk/a.abc"], "/c/folk/"),  # one file: its folder
        (["C:\\tunes\\a.abc", "C:\\tunes\\b.abc"], "C:\\tunes\\"),
        (["a.abc", "b.abc"], ""),
        ([None], ""),
    ],
)
def test_the_source_root_is_the_folder_all_sources_share(tmp_path, sources, root):
    writer = ItemWriter(tmp_path / "items.sqlite")
    writer.add(item_row(i, f"id{i}", source, 0, "{}", "") for i, source in enumerate(sources))
    writer.finish()
    assert ItemStore(tmp_path / "items.sqlite").source_root() == root


def test_classify_ranks_every_label_by_cosine_with_its_prompt(index, built):
    music = built.abc_dir / "oneills1850-0721-0730.abc"
    hits = index.classify(music, ["jig", "reel", "hornpipe"], template="This is a {}.", tune=2)
    assert sorted(ids(hits)) == ["hornpipe", "jig", "reel"]
    music_vector = index.encoder.embed_abc([read_music(music, 2)])[0]
    for hit in hits:
        text_vector = index.encoder.embed_texts([f"This is a {hit.id}."])[0]
        assert hit.score == pytest.approx(float(music_vector @ text_vector), abs=1e-5)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    with pytest.raises(ValueError, match="needs a {}"):
        index.classify(music, ["jig"], template="no slot")


@pytest.mark.parametrize(
    ("text", "check"),
    [
        ("meter = 6/8", lambda m: m["meter"] == "6/8"),
        ('rhythm contains "JIG"', lambda m: "jig" in m["rhythm"].lower()),
        (
            "rhythm = 'slip jig' and meter != 6/8",
            lambda m: m["rhythm"].lower() == "slip jig" and m["meter"] != "6/8",
        ),
        ("origin = Irland AND meter != 3/4", lambda m: m["origin"] == "Irland" and m["meter"] != "3/4"),
        (
            "reference = 5",
            lambda m: m["meta"]["reference"] == "5",
        ),  # any ABC header field, from the meta JSON
        (
            "(rhythm = jig or rhythm = 'slip jig') and not meter = 6/8",
            lambda m: m["rhythm"] in ("jig", "slip jig") and m["meter"] != "6/8",
        ),
        ("key in (G, Dmaj)", lambda m: m["key"] in ("G major", "D major")),  # canonical, read as ABC
        ("raw.key = G", lambda m: m["meta"]["key"] == "G" and m["key"] == "G major"),
    ],
)
def test_filters_keep_only_matching_items(index, text, check):
    hits = index.search_text("a tune", k=20, filter=text)
    assert hits and all(check(h.metadata) for h in hits)


@pytest.mark.parametrize(
    ("fetch_cost", "call_cost"),
    [(0, 10**9), (10**9, 0), (10**9, 10**9)],
    ids=["graph-then-filter", "hnswlib-filter", "exact-over-subset"],
)
def test_every_filtered_search_path_agrees_with_filtered_exact_search(
    index, monkeypatch, fetch_cost, call_cost
):
    monkeypatch.setattr(runtime.search.planner, "FETCH_COST", fetch_cost)
    monkeypatch.setattr(runtime.search.planner, "CALL_COST", call_cost)
    query = index.encoder.embed_texts(["a slow air"])
    for text in (
        "meter = 6/8",
        "origin contains irl",
        "rhythm != hornpipe",
        "rhythm in (jig, hornpipe) or key = Em",
        "not (meter = 6/8 or origin contains irl)",
    ):
        graph = index.search_vectors(query, 10, filter=text)[0]
        exact = index.search_vectors(query, 10, filter=text, exact=True)[0]
        assert ids(graph) == ids(exact)
        assert len(graph) == min(10, len(index.items.labels_matching(parse_filter(text))))  # k when k pass
    assert index.search_vectors(query, 10, filter="meter = 99/7") == [[]]


def test_unknown_filter_fields_are_refused_with_the_known_ones(index):
    with pytest.raises(ValueError, match="unknown filter field 'colour'.*meter"):
        index.search_text("x", filter="colour = red")
    with pytest.raises(ValueError, match="too long"):  # issue #16: no SQLite "Expression tree is too large"
        index.search_text("x", filter=" and ".join(["meter = 6/8"] * 1100))


def test_facets_count_canonical_values_among_filtered_items(index):
    facets = index.facets(["key", "meter", "rhythm", "collection", "raw.key"], top=5)
    assert facets["collection"] == [("abc", len(index))]  # the test corpus's files share one folder
    assert [count for _, count in facets["key"]] == sorted((c for _, c in facets["key"]), reverse=True)
    assert all(" " in key for key, _ in facets["key"]) and all(" " not in key for key, _ in facets["raw.key"])
    jigs = index.facets(["rhythm", "meter"], filter="rhythm in (jig, 'slip jig')")
    jig_count = len(index.items.labels_matching(parse_filter("rhythm in (jig, 'slip jig')")))
    assert (
        sorted(jigs["rhythm"]) == [("jig", 10), ("slip jig", 20)]
        and sum(c for _, c in jigs["meter"]) == jig_count
    )
    with pytest.raises(ValueError, match="1..16 fields"):
        index.facets([])


def test_facets_are_counted_once_per_open_index(built, monkeypatch):
    index = Index.open(built.index_dir)
    counted = []
    facet = index.items.facet
    monkeypatch.setattr(index.items, "facet", lambda *args: counted.append(args) or facet(*args))
    first = index.facets(["key", "meter"], "rhythm = jig")
    first["key"].clear()  # callers get copies
    assert index.facets(["Key", "meter"], "rhythm = jig") == index.facets(["key", "meter"], "rhythm = jig")
    assert index.facets(["key"], "rhythm = jig")["key"] and len(counted) == 3  # key+meter once, then key


def test_exact_top_k_equals_a_full_sort_across_chunks(monkeypatch):
    monkeypatch.setattr(runtime.search.hits, "EXACT_CHUNK_ROWS", 7)
    rng = np.random.default_rng(0)
    keys, queries = (
        rng.standard_normal((50, 8)).astype(np.float32),
        rng.standard_normal((3, 8)).astype(np.float32),
    )
    scores, rows = exact_top_k(queries, keys, 5)
    expected = np.argsort(-(queries @ keys.T), axis=1)[:, :5]
    np.testing.assert_array_equal(rows, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(queries @ keys.T, expected, axis=1), rtol=1e-6)
    assert exact_top_k(queries, keys, 500)[1].shape == (3, 50)


def test_softmax_probs_are_clamp_py_probabilities():
    probs = softmax_probs([0.9, 0.5, 0.1])
    logits = np.e * np.array([0.9, 0.5, 0.1])
    np.testing.assert_allclose(probs, np.exp(logits) / np.exp(logits).sum())


def test_another_model_is_refused_by_queries_and_build(built, tmp_path):
    other = other_model_dir(built.model_dir, tmp_path / "other-model")
    with pytest.raises(ModelMismatchError, match="was built with model"):
        Index.open(built.index_dir, other)
    with pytest.raises(ModelMismatchError, match="did not make these shards"):
        build_index(built.shards_dir, tmp_path / "index", model_dir=other)


def test_shards_of_mixed_models_are_refused(built, tmp_path):
    shards = tmp_path / "shards"
    shutil.copytree(built.shards_dir, shards)
    schema = shard_schema(read_manifest(built.index_dir)["dim"], "float16", "f" * 64, "another")
    writer = ShardWriter(shards, schema, shard_rows=1)
    record = TuneRecord("x", "x.abc", 0, "X:1\nK:C\nCDEF|\n")
    writer.add(
        rows_table(schema, [record], [2], [False], np.eye(1, schema.field("embedding").type.list_size))
    )
    writer.flush()
    with pytest.raises(ValueError, match="one model"):
        build_index(shards, tmp_path / "index")


def test_duplicate_rows_are_indexed_once_and_a_rebuild_replaces_the_index(built, tmp_path):
    shards = tmp_path / "shards"
    shutil.copytree(built.shards_dir, shards)
    first = shard_files(shards)[0]
    shutil.copy(first, shards / "shard-00099.parquet")
    shutil.copy(checksum_file(first), checksum_file(shards / "shard-00099.parquet"))
    out = tmp_path / "index"
    build_index(shards, out, model_dir=built.model_dir)
    manifest = build_index(shards, out, model_dir=built.model_dir, m=8)
    assert manifest["count"] == read_manifest(built.index_dir)["count"]
    assert manifest["duplicates_skipped"] == sum(
        s["rows"] for s in manifest["shards"] if s["file"] == first.name
    )
    assert read_manifest(out)["M"] == 8
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    with pytest.raises(OutDirError, match="keep.txt.*refusing to replace it"):
        build_index(shards, tmp_path / "notes")


def test_an_index_without_its_model_answers_vector_queries_and_says_what_is_missing(
    built, tmp_path, monkeypatch
):
    moved = tmp_path / "index"
    shutil.copytree(built.index_dir, moved)
    manifest = read_manifest(moved)
    manifest["model_dir"] = str(tmp_path / "gone")
    (moved / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.delenv("CLAMP_MODEL", raising=False)
    monkeypatch.chdir(tmp_path)
    index = Index.open(moved)
    assert index.encoder is None
    assert len(index.search_vectors(np.asarray(index.vectors[0]), 3)[0]) == 3
    with pytest.raises(FileNotFoundError, match="--model"):
        index.search_text("a jig")
    monkeypatch.setenv("CLAMP_MODEL", str(built.model_dir))
    assert Index.open(moved).search_text("a jig", k=3)


def test_concurrent_queries_give_the_sequential_answers(index, built):
    music = built.abc_dir / "essenFolksong-irl.abc"
    queries = [
        lambda: index.search_text("a lively jig", k=5),
        lambda: index.search_text("a sad song", k=5, filter="origin = Irland"),
        lambda: index.search_music(music, k=5, tune=3),
        lambda: index.search_text("a reel", k=5, exact=True),
        lambda: index.classify(music, ["jig", "air", "song"]),
    ] * 8
    expected = [ids(q()) for q in queries]
    with ThreadPoolExecutor(max_workers=8) as pool:
        assert [ids(hits) for hits in pool.map(lambda q: q(), queries)] == expected


def test_hnsw_recall_at_10_against_exact_search(tmp_path):
    """Recall on real embeddings: ~2,000 Essen tunes through the tiny model (never i.i.d. random vectors)."""
    corpus = build_corpus(
        tmp_path, files=("essenFolksong/han2.abc", "essenFolksong/erk30.abc", "essenFolksong/lux.abc")
    )
    index = Index.open(corpus.index_dir, ef=64)
    assert len(index) > 1900
    rng = np.random.default_rng(0)
    queries = np.asarray(index.vectors[rng.choice(len(index), 200, replace=False)])
    queries = queries + 0.05 * rng.standard_normal(queries.shape).astype(
        np.float32
    )  # near, not on, the items
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    graph = index.search_vectors(queries, 10)
    exact = index.search_vectors(queries, 10, exact=True)
    recall = np.mean([len(set(ids(g)) & set(ids(e))) / 10 for g, e in zip(graph, exact, strict=True)])
    assert recall >= 0.95, recall


def test_read_music_explains_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        read_music(tmp_path / "missing.abc")
    with pytest.raises(ValueError, match=r"holds 62 tune\(s\): pick one with tune index 0..61"):
        read_music(corpus_path("essenFolksong/irl.abc"), 62)
