"""Keyword and hybrid text search, and match strength (z, "no better than chance"), from Python, CLI, HTTP."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from query_corpus import Corpus, clamp
from serving import serving

from runtime.search import hybrid, keyword
from runtime.search.calibration import CHANCE_Z, no_better_than_chance, null_queries
from runtime.search.filters import parse_filter
from runtime.search.hits import Hit, exact_top_k
from runtime.search.index import Index, read_manifest
from runtime.search.items import ENTRY_BYTES, KEYWORD_CACHE_ENV, KEYWORD_PART_CACHE_BYTES, ItemStore
from runtime.search.keyword import COLUMN_WEIGHTS, FTS_TABLE, key_words, normalize, query_groups, synonyms
from runtime.serve.server import create_app
from runtime.storage.integrity import file_entries


def with_calibration(built: Corpus, root: Path, mean: float) -> Path:
    """A copy of the index whose calibration puts the unrelated queries' best cosine at `mean`."""
    copy = root / f"index-{mean}"
    shutil.copytree(built.index_dir, copy)
    manifest = read_manifest(copy)
    manifest["calibration"] = {**manifest["calibration"], "top1_mean": mean, "top1_std": 0.01}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


def test_both_sides_compare_unidecoded_case_folded_text_with_german_umlauts_spelt_out():
    assert normalize("Wiegenlied aus Österreich, GRÜSS Gott") == "wiegenlied aus oesterreich, gruess gott"
    assert normalize("Café") == "cafe"
    assert [key_words(k) for k in ("G", "Em", "E Minor", "Bb", "F#m", "Ador", "Dmix", "HP")] == [
        "g major", "e minor", "e minor", "b flat major", "f sharp minor", "a dorian", "d mixolydian", "hp",
    ]  # fmt: skip


def test_queries_become_quoted_fts_terms_keys_and_meters_their_own_columns():
    groups = query_groups("a Christmas carol in G, 6/8")
    assert groups[:2] == ['key : "g major"', 'meter : "6 8"']
    assert '"weihnacht"*' in groups[2]  # English -> the German metadata, through synonyms.tsv
    assert query_groups("a tune in a lively way") == [
        '{title composer origin rhythm other} : ("lively")',
        ('{title composer origin rhythm other} : ("way")'),
    ]  # "in a" is an article, not A major
    assert query_groups("a song of the") == []  # only stop words: nothing to search
    for hostile in ('foo" OR * NEAR(a b', "title:x AND {rhythm} : ^y", "-- ; DROP TABLE items"):
        for group in query_groups(hostile):  # only quoted [a-z0-9] tokens reach FTS5
            inner = group.split(" : ", 1)[1]
            assert set(inner.replace('"', "").replace("*", "")) <= set(
                "abcdefghijklmnopqrstuvwxyz0123456789 ()OR"
            )


def test_the_synonym_table_is_well_formed_and_maps_english_to_german():
    table = synonyms()
    assert '"wiegen"*' in table["lullaby"] and '"schweiz"*' in table["switzerland"]
    assert '"irland"' in table["ireland"]


def test_keyword_search_finds_metadata_the_vector_side_cannot_read(index):
    hits = index.search_text("a song from Ireland", k=10, mode="keyword")
    assert len(hits) == 10 and all(h.metadata["origin"] == "Irland" for h in hits)  # via the synonym
    assert all(h.found_by == ("keyword",) and h.z is None for h in hits)
    slip = index.search_text("slip jig", k=5, mode="keyword", filter="meter = 9/8")
    assert slip and all(h.metadata["meter"] == "9/8" and "slip" in h.metadata["rhythm"] for h in slip)
    assert index.search_text("the stock market fell sharply today", k=5, mode="keyword") == []


def test_hybrid_fuses_both_sides_and_says_which_found_each_hit(index):
    depth = {"vector": hybrid.CANDIDATES, "keyword": hybrid.KEYWORD_CANDIDATES}
    vector, keyword = (
        {h.id for h in index.search_text("an Irish hornpipe", k=depth[mode], mode=mode)} for mode in depth
    )
    hits = index.search_text("an Irish hornpipe", k=20)  # hybrid: the default on an index with text fields
    assert index.default_mode() == "hybrid" and len(hits) == 20
    for hit in hits:
        assert hit.found_by and set(hit.found_by) <= {"vector", "keyword"}
        assert ("vector" in hit.found_by) == (hit.id in vector)
        assert ("keyword" in hit.found_by) == (hit.id in keyword)
        label = index.items.label_of(hit.id)
        query = index.encoder.embed_texts(["an Irish hornpipe"])[0]
        assert hit.score == pytest.approx(float(index.vectors[label] @ query), abs=1e-5)  # always the cosine
    assert any("keyword" in h.found_by for h in hits[:5])


def test_old_indices_without_the_keyword_table_search_by_vector_and_say_so(built, tmp_path):
    old = tmp_path / "old-index"
    shutil.copytree(built.index_dir, old)
    with sqlite3.connect(old / "items.sqlite") as conn:
        conn.execute(f"DROP TABLE {FTS_TABLE}")
    manifest = read_manifest(old)
    manifest["files"] = file_entries(old, list(manifest["files"]))
    (old / "manifest.json").write_text(json.dumps(manifest))
    index = Index.open(old)
    assert index.default_mode() == "vector"
    assert all(h.found_by == ("vector",) for h in index.search_text("a jig", k=3))
    with pytest.raises(ValueError, match="no keyword table.*rebuild"):
        index.search_text("a jig", mode="hybrid")
    out = clamp("search", "a jig", "--index", old, "-k", 2)
    assert "no keyword table" in out and "vector" in out


def test_the_build_records_what_unrelated_queries_score_on_the_index(index):
    calibration = index.manifest["calibration"]
    texts = null_queries()
    best = exact_top_k(index.encoder.embed_texts(texts), np.asarray(index.vectors), 1)[0][:, 0]
    assert calibration["null_queries"] == len(texts) >= 100
    assert calibration["top1_mean"] == pytest.approx(best.mean(), abs=1e-5)
    assert calibration["top1_std"] == pytest.approx(best.std(), abs=1e-5)
    hit = index.search_text("a reel", k=1, mode="vector")[0]
    assert hit.z == pytest.approx((hit.score - calibration["top1_mean"]) / calibration["top1_std"], abs=1e-4)


def test_no_better_than_chance_needs_a_keyword_match_or_a_best_z_over_the_threshold():
    def hit(z, *found_by):
        return Hit("x", 0.5, found_by=found_by, z=z)

    assert no_better_than_chance([hit(CHANCE_Z - 0.1, "vector"), hit(-1.0, "vector")]) is True
    assert no_better_than_chance([hit(CHANCE_Z + 0.1, "vector")]) is False
    assert no_better_than_chance([hit(-3.0, "keyword")]) is False  # the item's own metadata matched
    assert no_better_than_chance([hit(None, "keyword")]) is False
    assert no_better_than_chance([Hit("x", 0.5)]) is None  # uncalibrated: cannot tell


def test_the_cli_says_when_the_best_match_is_no_better_than_chance(built, tmp_path):
    chance = with_calibration(built, tmp_path, mean=2.0)  # no cosine reaches it
    out = clamp("search", "asdfghjkl qwerty", "--index", chance, "-k", 3)
    assert out.startswith("no match better than chance (best z=")
    answer = json.loads(clamp("search", "asdfghjkl qwerty", "--index", chance, "--json"))
    assert answer["no_match_better_than_chance"] is True and answer["mode"] == "hybrid"
    assert all(r["found_by"] == ["vector"] and r["z"] < CHANCE_Z for r in answer["results"])
    sure = with_calibration(built, tmp_path, mean=-2.0)  # every cosine is far above it
    assert "chance" not in clamp("search", "asdfghjkl qwerty", "--index", sure, "-k", 3)
    keyword = clamp("search", "a song from Ireland", "--index", chance, "-k", 3)
    assert "chance" not in keyword and "keyword" in keyword  # a metadata match is never chance


def test_http_search_takes_a_mode_and_carries_found_by_z_and_the_chance_flag(built, tmp_path):
    with serving(create_app(Index.open(with_calibration(built, tmp_path, mean=2.0)))) as client:
        answer = client.post("/search", json={"text": "a song from Ireland", "k": 5}).json()
        assert answer["mode"] == "hybrid" and answer["no_match_better_than_chance"] is False
        assert all("z" in h and h["found_by"] and "prob" not in h for h in answer["results"])
        keyword = client.post("/search", json={"text": "a song from Ireland", "mode": "keyword"})
        assert all(h["origin"] == "Irland" for h in keyword.json()["results"])
        assert "encode;dur=" not in keyword.headers["server-timing"]  # keyword mode needs no model
        nonsense = client.post("/search", json={"text": "asdfghjkl qwerty", "mode": "vector"}).json()
        assert nonsense["no_match_better_than_chance"] is True
        assert client.post("/search", json={"text": "x", "mode": "fuzzy"}).status_code == 422


def test_an_index_built_without_its_model_is_uncalibrated_and_says_so(built, tmp_path, monkeypatch):
    model = tmp_path / "model"
    shutil.copytree(built.model_dir, model)
    shards = tmp_path / "shards"
    tune = built.abc_dir / "oneills1850-0721-0730.abc"
    clamp("embed", tune, "--model", model, "--out", shards, "--workers", 0, "--quiet")
    shutil.rmtree(model)  # the model the shards record is gone, and no default one exists here
    monkeypatch.delenv("CLAMP_MODEL", raising=False)
    monkeypatch.chdir(tmp_path)
    out = clamp("index", "build", shards, "--out", tmp_path / "index")
    assert "no model to calibrate match strength" in out
    assert read_manifest(tmp_path / "index")["calibration"] is None
    hits = Index.open(tmp_path / "index", built.model_dir).search_text("a jig", k=3, mode="vector")
    assert hits and all(h.z is None for h in hits) and no_better_than_chance(hits) is None


def test_keyword_answers_are_cached_per_query_k_and_filter_and_read_only(index):
    items = index.items
    first = items.keyword_search("a Christmas carol", 10)
    assert items.keyword_search("a Christmas carol", 10) is first  # no second bm25 ranking
    assert items.keyword_search("a Christmas carol", 5) is not first
    three_four = parse_filter("meter = 3/4")
    filtered = items.keyword_search("a Christmas carol", 10, three_four)
    assert filtered is not first and set(filtered[0]) <= set(items.labels_matching(three_four).tolist())
    with pytest.raises(ValueError):
        first[0][0] = -1  # shared by every caller: nobody may change it


def test_a_querys_bm25_is_the_sum_of_its_parts_and_every_item_covering_enough_parts_is_ranked(index):
    """keyword.search sums the parts' bm25 (looked up, and cached, one part at a time): it must be FTS5's
    bm25 of the whole query, and no item matching enough parts may be cut off by a pool of the best bm25s."""
    weights = ", ".join(map(str, COLUMN_WEIGHTS))
    with sqlite3.connect(index.directory / "items.sqlite") as conn:
        for query in (
            "a double jig in D major",
            "Weihnachtslied in 3/4",
            "a song from Ireland",
            "a reel in G",
        ):
            groups = query_groups(query)
            whole = dict(
                conn.execute(
                    f"SELECT rowid, -bm25({FTS_TABLE}, {weights}) FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH ?",
                    [" OR ".join(f"({g})" for g in groups)],
                )
            )
            labels, bm25, parts = keyword.search(conn, query, len(whole) + 1)
            assert len(labels) and np.allclose(bm25, [whole[label] for label in labels], rtol=1e-6)
            covered = {
                label: sum(label in {r for (r,) in conn.execute(
                    f"SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH ?", [g])} for g in groups)
                for label in whole
            }  # fmt: skip
            need = keyword.MIN_COVERAGE * len(groups) if len(groups) > 1 else 0
            assert sorted(labels.tolist()) == sorted(label for label, n in covered.items() if n >= need)
            assert [covered[label] for label in labels] == parts.tolist()
            assert all(np.diff(parts) <= 0) and all(np.diff(bm25[parts == parts.max()]) <= 1e-6)


def test_the_matches_of_query_parts_are_cached_within_a_byte_budget(index, monkeypatch):
    store = ItemStore(index.directory / "items.sqlite")
    store.keyword_search("a jig in D", 10)
    cache = store._part_matches.cache
    assert set(cache) == set(query_groups("a jig in D")) and len(cache) == 2
    jig = cache[query_groups("a jig")[0]]
    arrays = [array for part in cache for array in cache[part]]
    assert cache.currsize == 2 * ENTRY_BYTES + sum(a.nbytes for a in arrays) and len(jig[0]) > 1
    store.keyword_search("a jig in G", 10)  # "jig" is looked up once for both queries
    assert len(cache) == 3 and cache[query_groups("a jig")[0]] is jig
    assert cache.maxsize == KEYWORD_PART_CACHE_BYTES
    monkeypatch.setenv(KEYWORD_CACHE_ENV, "0")  # the code path before any cache: every part looked up
    assert ItemStore(index.directory / "items.sqlite")._part_matches is keyword.part_matches
