"""`clamp index build` over an index of the same shards dir updates it: new rows become a segment, rows of
changed files are deleted, and every answer is the answer of a full build over the same shards.

Past COMPACT_DELETED deleted rows the update rebuilds (compaction), past MAX_SEGMENTS it merges the added
segments; a kill before its manifest is swapped leaves the old generation, and the next update tidies up.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from query_corpus import Corpus, build_corpus, clamp
from updating import BASE_FILES, MORE, add_file, drop_tunes, remove_file, update

import indexer.index_update as index_update
from indexer.index_build import build_index
from runtime.search.index import Index, read_manifest
from runtime.storage.dirs import INDEX, describe_dir, write_json


@pytest.fixture
def corpus(tmp_path) -> Corpus:
    return build_corpus(tmp_path, BASE_FILES)


def assert_answers_as_a_full_build(corpus: Corpus, tmp_path: Path) -> None:
    """Same tunes, same exact top-k (ids, scores), same facets and keyword matches as a fresh full build."""
    full_dir = tmp_path / "full"
    build_index(corpus.shards_dir, full_dir, model_dir=corpus.model_dir, full=True)
    updated, full = Index.open(corpus.index_dir), Index.open(full_dir)
    assert len(updated) == len(full) and not read_manifest(full_dir).get("segments")
    queries = np.asarray(full.vectors[np.arange(0, len(full), 7)])
    for exact in (True, False):
        got, want = (
            updated.search_vectors(queries, 10, exact=exact),
            full.search_vectors(queries, 10, exact=True),
        )
        overlap = [len({h.id for h in g} & {h.id for h in w}) / 10 for g, w in zip(got, want, strict=True)]
        assert np.mean(overlap) >= (1.0 if exact else 0.95)
        if exact:
            scores = [[h.score for h in g] for g in got], [[h.score for h in w] for w in want]
            np.testing.assert_allclose(*scores, atol=1e-6)
    for where in ("rhythm = hornpipe", "meter = 6/8 or key = G", "not rhythm = jig"):  # planner per segment
        for exact in (True, False):
            got = updated.search_vectors(queries, 10, filter=where, exact=exact)
            want = full.search_vectors(queries, 10, filter=where, exact=True)
            overlap = [
                len({h.id for h in g} & {h.id for h in w}) / len(w) if w else float(not g)
                for g, w in zip(got, want, strict=True)
            ]
            assert np.mean(overlap) >= (1.0 if exact else 0.95), (where, exact)
    every = updated.search_vectors(queries[:1], len(full), exact=True)[0]
    assert sorted(h.id for h in every) == sorted(
        h.id for h in full.search_vectors(queries[:1], len(full), exact=True)[0]
    )
    fields = ["rhythm", "key", "meter", "origin"]
    assert updated.facets(fields) == full.facets(fields)
    for text in ("hornpipe", "jig", "Irland"):
        assert {h.id for h in updated.search_text(text, 500, mode="keyword")} == {
            h.id for h in full.search_text(text, 500, mode="keyword")
        }
    assert updated.facets(["rhythm"], "rhythm = hornpipe") == full.facets(["rhythm"], "rhythm = hornpipe")
    some = [h.id for h in every[::5]]
    assert [updated.item(i)["title"] for i in some] == [full.item(i)["title"] for i in some]


def test_new_shards_become_one_segment_that_answers_as_a_full_build(corpus, tmp_path):
    base = read_manifest(corpus.index_dir)
    add_file(corpus, MORE[0])
    output = clamp(
        "index", "build", corpus.shards_dir, "--out", corpus.index_dir, "--model", corpus.model_dir
    )
    manifest = read_manifest(corpus.index_dir)
    assert "updated" in output and manifest["update"] == {"added": 69, "deleted": 0, "merged_segments": 0}
    assert manifest["count"] == base["count"] + 69 and manifest["generation"] == 1
    assert [s["rows"] for s in manifest["segments"]] == [69] and manifest["files"] == base[
        "files"
    ]  # base untouched
    assert describe_dir(corpus.index_dir).kind == INDEX
    assert len(Index.open(corpus.index_dir, full_check=True).segments) == 2
    assert_answers_as_a_full_build(corpus, tmp_path)

    again = update(corpus)  # nothing new: the index stays as it is
    assert again["update"]["added"] == 0 and read_manifest(corpus.index_dir) == manifest


def test_rows_of_a_changed_file_are_deleted_from_every_answer(corpus, tmp_path):
    add_file(corpus, MORE[0])
    update(corpus)
    titles = drop_tunes(corpus, MORE[0], 3)
    manifest = update(corpus)
    assert manifest["update"]["deleted"] == 3 and manifest["deleted"]["count"] == 3
    index = Index.open(corpus.index_dir, full_check=True)
    every = [
        h
        for exact in (True, False)
        for h in index.search_vectors(index.vectors[0], len(index), exact=exact)[0]
    ]
    assert not {h.metadata["title"] for h in every} & set(titles)
    assert {h.metadata["title"] for h in index.search_text(titles[0], 50, mode="keyword")}.isdisjoint(
        titles[:1]
    )
    assert_answers_as_a_full_build(corpus, tmp_path)


def test_rows_of_a_deleted_file_are_deleted(corpus, tmp_path):
    add_file(corpus, MORE[1])
    update(corpus)
    remove_file(corpus, BASE_FILES[0])  # its 10 jigs
    manifest = update(corpus)
    assert manifest["update"] == {"added": 0, "deleted": 10, "merged_segments": 0}
    index = Index.open(corpus.index_dir)
    sources = {Path(value).name for value, _ in index.facets(["source"], top=1000)["source"]}
    assert sources == {name.replace("/", "-") for name in (BASE_FILES[1], MORE[1])}
    assert_answers_as_a_full_build(corpus, tmp_path)


def test_deleted_rows_past_the_threshold_compact_into_one_segment(corpus, tmp_path, monkeypatch):
    add_file(corpus, MORE[0])
    update(corpus)
    monkeypatch.setattr(index_update, "COMPACT_DELETED", 0.05)
    drop_tunes(corpus, MORE[0], 10)  # 10 of 99 rows
    manifest = update(corpus)
    assert "update" not in manifest and "segments" not in manifest and "deleted" not in manifest
    assert sorted(p.name for p in corpus.index_dir.iterdir()) == [
        "index.hnsw",
        "items.sqlite",
        "manifest.json",
        "vectors.npy",
    ]
    assert_answers_as_a_full_build(corpus, tmp_path)


def test_segments_past_the_limit_are_merged_into_the_new_one(corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(index_update, "MAX_SEGMENTS", 2)
    add_file(corpus, MORE[0])
    update(corpus)
    drop_tunes(corpus, MORE[0], 2)
    add_file(corpus, MORE[1])
    manifest = update(corpus)
    assert (
        manifest["update"]["merged_segments"] == 1 and "deleted" not in manifest
    )  # the deleted rows went too
    assert [s["rows"] for s in manifest["segments"]] == [67 + 62]
    assert sorted(p.name for p in corpus.index_dir.iterdir() if p.name.startswith("segment-")) == [
        "segment-00002"
    ]
    assert_answers_as_a_full_build(corpus, tmp_path)


def test_an_update_killed_before_its_manifest_leaves_the_old_generation(corpus, tmp_path, monkeypatch):
    before = read_manifest(corpus.index_dir)
    add_file(corpus, MORE[0])

    def killed(path, content):
        if path == corpus.index_dir / "manifest.json":
            raise KeyboardInterrupt  # as a kill between the new segment's rename and the manifest swap
        write_json(path, content)

    monkeypatch.setattr(index_update, "write_json", killed)
    with pytest.raises(KeyboardInterrupt):
        update(corpus)
    monkeypatch.undo()
    assert (corpus.index_dir / "segment-00001").is_dir()  # the orphan: complete, but listed nowhere
    assert read_manifest(corpus.index_dir) == before and describe_dir(corpus.index_dir).kind == INDEX
    assert len(Index.open(corpus.index_dir, full_check=True)) == before["count"]
    manifest = update(corpus)
    assert manifest["count"] == before["count"] + 69
    assert_answers_as_a_full_build(corpus, tmp_path)


def test_another_shards_dir_or_settings_rebuild_rather_than_update(corpus, tmp_path):
    manifest = build_index(corpus.shards_dir, corpus.index_dir, model_dir=corpus.model_dir, m=8)
    assert "update" not in manifest and manifest["M"] == 8
    shutil.copytree(corpus.shards_dir, tmp_path / "copy")
    manifest = build_index(tmp_path / "copy", corpus.index_dir, model_dir=corpus.model_dir, m=8)
    assert "update" not in manifest and manifest["shards_dir"] == str((tmp_path / "copy").resolve())


def test_an_index_listing_a_segment_it_lacks_is_refused_by_name(corpus):
    add_file(corpus, MORE[0])
    update(corpus)
    manifest_path = corpus.index_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    (corpus.index_dir / "segment-00001" / "manifest.json").write_text("{}")
    with pytest.raises(ValueError, match="segment-00001/manifest.json is missing or not the one"):
        Index.open(corpus.index_dir)
    manifest["segments"][0]["dir"] = "../elsewhere"
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="lists a segment without a dir"):
        Index.open(corpus.index_dir)


def test_building_again_over_an_index_never_updated_changes_nothing_and_says_so(corpus):
    before = read_manifest(corpus.index_dir)
    output = clamp(
        "index", "build", corpus.shards_dir, "--out", corpus.index_dir, "--model", corpus.model_dir
    )
    assert "+0 -0 tunes" in output and "generation 0" in output  # as a second `make demo` builds
    assert read_manifest(corpus.index_dir) == before
