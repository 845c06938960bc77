"""`clamp index attach`: index dirs of shard groups, built apart with their own label ranges, join an index as
its segments in one atomic swap, and answer as one full build of every group's tunes; what would mix
models, labels or tunes is refused; updates of the index leave the groups alone.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from query_corpus import Corpus, build_corpus, clamp, corpus_path, other_model_dir
from updating import BASE_FILES, MORE, add_file, embed_into, update

from indexer.index_build import build_index
from runtime.search.index import Index, read_manifest
from runtime.search.live import LiveIndex

GROUP_LABELS = 10**12  # group g's labels start at g * GROUP_LABELS


@pytest.fixture
def corpus(tmp_path) -> Corpus:
    return build_corpus(tmp_path, BASE_FILES)


def group(corpus: Corpus, root: Path, name: str, number: int | None) -> Path:
    """A shard group of one music21 file (copied to abc_dir(root, name)), embedded and built apart: its
    index dir."""
    slug = name.replace("/", "-")
    abc = abc_dir(root, name)
    abc.mkdir()
    shutil.copy(corpus_path(name), abc / name.replace("/", "-"))
    shards, out = root / f"shards-{slug}", root / f"group-{slug}"
    embed_into(shards, corpus.model_dir, abc)
    labels = [] if number is None else ["--first-label", number * GROUP_LABELS]
    clamp("index", "build", shards, "--out", out, "--model", corpus.model_dir, *labels)
    return out


def abc_dir(root: Path, name: str) -> Path:
    return root / f"abc-{name.replace('/', '-')}"


def full_build(corpus: Corpus, root: Path, *dirs: Path) -> Index:
    """One index over every file of the corpus and the groups, embedded from the same paths (same ids)."""
    shards = root / "all-shards"
    embed_into(shards, corpus.model_dir, corpus.abc_dir, *dirs)
    build_index(shards, root / "all", model_dir=corpus.model_dir)
    return Index.open(root / "all")


def assert_same_answers(index: Index, full: Index) -> None:
    assert len(index) == len(full)
    queries = np.asarray(full.vectors[np.arange(0, len(full), 5)])
    for where in (None, "rhythm = hornpipe", "meter = 6/8 or key = G"):
        got = index.search_vectors(queries, 10, filter=where, exact=True)
        want = full.search_vectors(queries, 10, filter=where, exact=True)
        assert [[h.id for h in g] for g in got] == [[h.id for h in w] for w in want], where
        np.testing.assert_allclose(
            [[h.score for h in g] for g in got], [[h.score for h in w] for w in want], atol=1e-5
        )
        walked = index.search_vectors(queries, 10, filter=where)
        overlap = [
            len({h.id for h in g} & {h.id for h in w}) / max(1, len(w))
            for g, w in zip(walked, want, strict=True)
        ]
        assert np.mean(overlap) >= 0.95, where
    fields = ["rhythm", "key", "meter"]
    assert index.facets(fields) == full.facets(fields)
    for text in ("hornpipe", "jig", "Irland"):  # which items match (bm25 weighs words per segment)
        assert {h.id for h in index.search_text(text, 500, mode="keyword")} == {
            h.id for h in full.search_text(text, 500, mode="keyword")
        }
    some = [h.id for h in full.search_vectors(queries[:1], len(full), exact=True)[0][::7]]
    assert [index.item(i)["title"] for i in some] == [full.item(i)["title"] for i in some]
    np.testing.assert_array_equal([index.item_vector(i) for i in some], [full.item_vector(i) for i in some])


def test_groups_built_apart_and_attached_answer_as_one_full_build(corpus, tmp_path):
    hornpipes, songs = group(corpus, tmp_path, MORE[0], 2), group(corpus, tmp_path, MORE[1], 1)
    alone = Index.open(hornpipes)  # a group's own index serves on its own, its labels from 2 * 10**12
    labels = sorted(alone.items.id_labels().values())
    assert labels == list(range(2 * GROUP_LABELS, 2 * GROUP_LABELS + 69))
    (hit,) = alone.search_vectors(alone.vectors[[labels[3]]], 1)[0]
    assert alone.items.label_of(hit.id) == labels[3] and hit.score == pytest.approx(1.0, abs=1e-5)
    before = read_manifest(corpus.index_dir)
    served = LiveIndex(Index.open(corpus.index_dir))  # as `clamp serve` holds it
    output = clamp("index", "attach", corpus.index_dir, hornpipes, songs)
    assert served.refresh() and len(served.current) == before["count"] + 131  # swapped in, no restart
    manifest = read_manifest(corpus.index_dir)
    assert "attached 2 group(s), +131 tunes" in output and manifest["generation"] == 2
    assert manifest["count"] == before["count"] + 131 and manifest["files"] == before["files"]
    assert [s["first_label"] for s in manifest["segments"]] == [GROUP_LABELS, 2 * GROUP_LABELS]  # label order
    assert manifest["segments"][1]["attached"]["from"] == str(hornpipes.resolve())
    attached = corpus.index_dir / manifest["segments"][1]["dir"] / "index.hnsw"
    assert attached.stat().st_ino == (hornpipes / "index.hnsw").stat().st_ino  # linked, not copied
    index = Index.open(corpus.index_dir, full_check=True)
    assert len(index.segments) == 3
    assert_same_answers(
        index, full_build(corpus, tmp_path, abc_dir(tmp_path, MORE[0]), abc_dir(tmp_path, MORE[1]))
    )


def test_what_would_mix_labels_tunes_or_models_is_refused_and_leaves_the_index_as_it_was(corpus, tmp_path):
    before = read_manifest(corpus.index_dir)
    entries = sorted(p.name for p in corpus.index_dir.iterdir())
    overlapping = group(corpus, tmp_path, MORE[0], None)  # labels from 0, as the index's own
    error = clamp("index", "attach", corpus.index_dir, overlapping, ok=False)
    assert "holds labels 0..68" in error and "--first-label" in error
    fine = group(corpus, tmp_path, MORE[1], 1)
    twice = tmp_path / "twice"  # the same shards (the same tunes) under other labels
    build_index(
        read_manifest(fine)["shards_dir"], twice, model_dir=corpus.model_dir, first_label=2 * GROUP_LABELS
    )
    error = clamp("index", "attach", corpus.index_dir, fine, twice, ok=False)
    assert "holds 62 tune(s) the index already holds" in error
    other = tmp_path / "other-model-group"
    shutil.copytree(fine, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["model_hash"] = json.loads(
        (other_model_dir(corpus.model_dir, tmp_path / "m2") / "manifest.json").read_text()
    )["model_hash"]
    (other / "manifest.json").write_text(json.dumps(manifest))
    error = clamp("index", "attach", corpus.index_dir, other, ok=False)
    assert "built otherwise than the index: model_hash" in error
    assert read_manifest(corpus.index_dir) == before
    assert sorted(p.name for p in corpus.index_dir.iterdir()) == entries  # no segment left behind
    add_file(corpus, MORE[0])
    update(corpus)  # the index has a segment of its own now: as a group, it is refused
    fine_manifest = read_manifest(fine)
    error = clamp("index", "attach", fine, corpus.index_dir, ok=False)
    assert "is an updated index (2 segments" in error and read_manifest(fine) == fine_manifest


def test_updates_of_the_index_leave_attached_groups_alone_and_a_full_build_is_refused(corpus, tmp_path):
    songs = group(corpus, tmp_path, MORE[1], 1)
    clamp("index", "attach", corpus.index_dir, songs)
    add_file(
        corpus, MORE[0]
    )  # the index's own shards gain 69 hornpipes; the group's 62 songs are not in them
    manifest = update(corpus)
    assert manifest["update"] == {"added": 69, "deleted": 0, "merged_segments": 0}
    assert [s.get("attached", {}).get("from") for s in manifest["segments"]] == [str(songs.resolve()), None]
    assert manifest["segments"][1]["first_label"] == GROUP_LABELS + 62  # after every label in use
    assert_same_answers(
        Index.open(corpus.index_dir), full_build(corpus, tmp_path, abc_dir(tmp_path, MORE[1]))
    )
    error = clamp("index", "build", corpus.shards_dir, "--out", corpus.index_dir, "--full", ok=False)
    assert "1 attached group(s)" in error and "would drop" in error
    assert read_manifest(corpus.index_dir) == manifest


def test_a_build_given_another_first_label_rebuilds_rather_than_updates(corpus):
    manifest = build_index(corpus.shards_dir, corpus.index_dir, model_dir=corpus.model_dir, first_label=5)
    assert "update" not in manifest and manifest["first_label"] == 5
    assert min(Index.open(corpus.index_dir).items.id_labels().values()) == 5
    again = build_index(corpus.shards_dir, corpus.index_dir, model_dir=corpus.model_dir, first_label=5)
    assert again["update"]["added"] == 0 and again["first_label"] == 5
