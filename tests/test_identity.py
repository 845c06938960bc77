"""Row identity and provenance: one id per tune however its path is spelled, no stale rows after a file
changes, nothing met in a folder skipped silently, and the model carried from shards to index to queries."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
from pathlib import Path

import pyarrow as pa
import pytest
from helpers import tiny_model_dir
from query_corpus import clamp, corpus_path, other_model_dir

from indexer.reader import Failure, TuneRecord, expand_inputs, read_inputs
from indexer.runner import EmbedOptions, embed_corpus
from indexer.shards import (
    ShardWriter,
    iter_shard_batches,
    read_errors,
    rows_table,
    shard_schema,
    shards_metadata,
    shards_provenance,
)
from runtime.model.encoder import Encoder
from runtime.music.abc import split_tunes, tune_id
from runtime.search.index import Index

FILES = ("oneills1850/0721-0730.abc", "oneills1850/1116-1135_mh.abc")  # 10 jigs, 20 slip jigs


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return tiny_model_dir(tmp_path_factory.mktemp("model"))


@pytest.fixture(autouse=True)
def no_default_model(monkeypatch):
    monkeypatch.delenv("CLAMP_MODEL", raising=False)


def make_corpus(root: Path, files: tuple[str, ...] = FILES) -> Path:
    folder = root / "corpus"
    folder.mkdir(parents=True)
    for name in files:
        shutil.copy(corpus_path(name), folder / Path(name).name)
    return folder


def embed(model_dir: Path, out: Path, *inputs: object) -> str:
    """`clamp embed` as a user runs it; its summary."""
    return clamp("embed", *inputs, "--model", model_dir, "--out", out, "--workers", 0)


def current_ids(*inputs: object) -> list[str]:
    """The ids the reader gives the inputs' tunes now."""
    items = read_inputs(expand_inputs([str(i) for i in inputs]))
    return [r.id for r in items if isinstance(r, TuneRecord)]


def stored_ids(shards_dir: Path) -> list[str]:
    return [i for b in iter_shard_batches(shards_dir, ["id"]) for i in b.column("id").to_pylist()]


def indexed_ids(index_dir: Path) -> list[str]:
    """The id of every item the index answers with (over all its segments, none of its deleted rows)."""
    index = Index.open(index_dir)
    return [hit.id for hit in index.search_vectors(index.vectors[0], len(index), exact=True)[0]]


def test_one_id_per_tune_however_its_path_is_spelled(model_dir, tmp_path, monkeypatch):
    folder = make_corpus(tmp_path)
    (tmp_path / "link").symlink_to(folder, target_is_directory=True)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    spellings = ["../corpus", str(folder), str(tmp_path / "link"), "../link/../corpus/", "../link/*.abc"]
    tunes = current_ids(folder)
    assert len(tunes) == 30 and all(current_ids(s) == tunes for s in spellings)
    first = sorted(folder.glob("*.abc"))[0]
    assert tunes[0] == tune_id(os.path.realpath(first), 0, split_tunes(first.read_text())[0].abc)

    out = tmp_path / "shards"
    for spelling in spellings:
        summary = embed(model_dir, out, spelling)
    assert "embedded 0" in summary and "already done 30" in summary
    assert sorted(stored_ids(out)) == sorted(tunes)  # 30 rows after five runs, not 150
    sources = {s for b in iter_shard_batches(out, ["source"]) for s in b.column("source").to_pylist()}
    assert sources == {os.path.realpath(f) for f in folder.glob("*.abc")}
    clamp("index", "build", out, "--out", tmp_path / "index")
    assert sorted(indexed_ids(tmp_path / "index")) == sorted(tunes)


def rewrite(path: Path) -> str:
    """Edit two tunes of a file and drop its last one; the original text."""
    original = path.read_text()
    tunes = split_tunes(original)
    edited = [t.abc.replace("\nT:", "\nT:Edited ", 1) if t.index in (0, 3) else t.abc for t in tunes[:-1]]
    path.write_text("".join(edited))
    return original


def test_a_rewritten_file_supersedes_its_old_rows_and_the_index_holds_each_current_tune_once(
    model_dir, tmp_path
):
    folder = make_corpus(tmp_path)
    out, index = tmp_path / "shards", tmp_path / "index"
    embed(model_dir, out, folder)
    before = current_ids(folder)
    original = rewrite(folder / "0721-0730.abc")

    summary = embed(model_dir, out, folder)
    assert "embedded 2" in summary
    assert "1 file(s) changed since they were embedded: 3 old row(s) superseded" in summary
    assert len(stored_ids(out)) == 32  # the old rows stay in the shards; the list says they are stale
    built = clamp("index", "build", out, "--out", index)
    assert "left out 3 superseded row(s)" in built
    now = current_ids(folder)
    assert len(now) == 29 and sorted(indexed_ids(index)) == sorted(now)
    assert json.loads((index / "manifest.json").read_text())["superseded_skipped"] == 3

    (folder / "0721-0730.abc").write_text(original)  # changed back: the old rows are current again
    summary = embed(model_dir, out, folder)
    assert "embedded 0" in summary and "2 old row(s) superseded" in summary
    clamp("index", "build", out, "--out", index)
    assert sorted(indexed_ids(index)) == sorted(before)

    listed = out / "_superseded.pq"
    listed.write_bytes(listed.read_bytes()[:-9] + b"X" + listed.read_bytes()[-8:])  # a damaged list
    assert "_superseded.pq" in clamp("index", "build", out, "--out", index, ok=False)


class InterruptedEncoder:
    """The real encoder, but Ctrl-C arrives at its first batch."""

    def __init__(self, inner: Encoder):
        self.inner = inner

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def embed_patches(self, patches, max_batch_patches):
        raise KeyboardInterrupt


def test_only_a_complete_run_supersedes(model_dir, tmp_path):
    folder = make_corpus(tmp_path)
    out = tmp_path / "shards"
    embed(model_dir, out, folder)
    rewrite(folder / "0721-0730.abc")
    with pytest.raises(KeyboardInterrupt):
        embed_corpus([str(folder)], InterruptedEncoder(Encoder.open(model_dir)), out, EmbedOptions(workers=0))
    assert not (out / "_superseded.pq").exists()  # it had not read every file yet
    assert "3 old row(s) superseded" in embed(model_dir, out, folder)


def test_a_file_that_cannot_be_read_supersedes_nothing(model_dir, tmp_path):
    folder = make_corpus(tmp_path)
    out = tmp_path / "shards"
    embed(model_dir, out, folder)
    jigs = folder / "0721-0730.abc"
    jigs.unlink()
    jigs.symlink_to("missing.abc")  # unreadable, even for root (chmod would not stop it)
    summary = embed(model_dir, out, folder)
    assert "failed 1" in summary and "changed since" not in summary  # unread: it may not have changed
    clamp("index", "build", out, "--out", tmp_path / "index")
    assert len(indexed_ids(tmp_path / "index")) == 30


def test_everything_met_in_a_folder_is_embedded_or_recorded_and_nothing_blocks(model_dir, tmp_path):
    folder = make_corpus(tmp_path, FILES[:1])
    os.mkfifo(folder / "pipe.abc")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(folder / "socket.abc"))
    (folder / "gone.abc").symlink_to("missing.abc")
    (folder / "loop-a.abc").symlink_to("loop-b.abc")
    (folder / "loop-b.abc").symlink_to("loop-a.abc")
    (folder / "deep").mkdir()
    (folder / "deep" / "up").symlink_to("..", target_is_directory=True)
    elsewhere = make_corpus(tmp_path / "elsewhere", FILES[1:])
    (folder / "deep" / "more").symlink_to(elsewhere, target_is_directory=True)  # followed
    (folder / "notes.txt").write_text("not music")
    (folder / "README").write_text("not music either")

    signal.alarm(120)  # a read that blocks on the FIFO fails the test instead of hanging it
    try:
        summary = embed(model_dir, tmp_path / "shards", folder)
    finally:
        signal.alarm(0)
        listener.close()
    assert "embedded 30" in summary
    assert "2 file(s) ignored for their extension (1 (no extension), 1 .txt)" in summary
    reasons = {Path(e["source"]).name: e["reason"] for e in read_errors(tmp_path / "shards").to_pylist()}
    assert set(reasons) == {"pipe.abc", "socket.abc", "gone.abc", "loop-a.abc", "loop-b.abc", "up"}
    assert "not a regular file but a FIFO" in reasons["pipe.abc"] and "a socket" in reasons["socket.abc"]
    assert "No such file" in reasons["gone.abc"] and "symbolic links" in reasons["loop-a.abc"]
    assert "a folder that holds it (a loop)" in reasons["up"]
    for name in ("pipe.abc", "socket.abc", "gone.abc", "loop-a.abc"):  # as when named directly
        [named] = read_inputs([folder / name])
        assert isinstance(named, Failure) and named.reason == reasons[name]


def test_shards_of_the_old_id_scheme_are_refused_with_what_to_do(model_dir, tmp_path):
    encoder = Encoder.open(model_dir)
    out = tmp_path / "shards"
    record = TuneRecord("spelled-path-id", "corpus/a.abc", 0, "X:1\nK:C\n|CDE|\n")
    writer = ShardWriter(out, shard_schema(encoder.dim, "float16", encoder.model_hash, encoder.model_name), 9)
    writer.add(rows_for(writer, record, encoder))
    writer.flush()
    refused = clamp("embed", make_corpus(tmp_path), "--model", model_dir, "--out", out, ok=False)
    assert "from an older clamp-index" in refused and "embed into a new --out" in refused
    clamp("index", "build", out, "--out", tmp_path / "index", "--model", model_dir)  # still indexable
    assert indexed_ids(tmp_path / "index") == ["spelled-path-id"]


def rows_for(writer: ShardWriter, record: TuneRecord, encoder: Encoder) -> pa.Table:
    return rows_table(writer.schema, [record], [1], [False], encoder.embed_abc([record.abc]))


def test_the_model_travels_from_shards_to_index_to_classify_and_query(model_dir, tmp_path, monkeypatch):
    folder = make_corpus(tmp_path)
    monkeypatch.chdir(tmp_path)  # no build/model here: the model must come from the artifacts
    embed(model_dir, Path("shards"), "corpus")
    encoder = Encoder.open(model_dir)
    assert shards_metadata("shards")["model_hash"] == encoder.model_hash
    provenance = shards_provenance("shards")
    assert provenance["model_dir"] == str(model_dir.resolve())
    assert provenance["corpus_roots"] == [os.path.realpath(folder)]

    clamp("index", "build", "shards", "--out", "index")  # no --model: inherited from the shards
    manifest = json.loads(Path("index/manifest.json").read_text())
    assert manifest["model_dir"] == str(model_dir.resolve()) and manifest["model_hash"] == encoder.model_hash
    assert manifest["corpus_roots"] == [os.path.realpath(folder)]

    tune = next(folder.glob("*.abc"))
    labels = ["--labels", "jig,reel"]
    assert "no model dir found" in clamp("classify", tune, *labels, ok=False)
    ranked = json.loads(clamp("classify", tune, *labels, "--index", "index", "--json"))["results"]
    assert {hit["id"] for hit in ranked} == {"jig", "reel"}
    keys = ["--query-modal", "text", "--key-modal", "music", "--keys", "corpus", "--no-cache"]
    hits = json.loads(clamp("query", "a jig", *keys, "--index", "index", "--json"))["results"]
    assert len(hits) == 10
    other = other_model_dir(model_dir, tmp_path / "other")
    for command in (["classify", tune, *labels], ["query", "a jig", *keys]):
        refused = clamp(*command, "--index", "index", "--model", other, ok=False)
        assert "was built with model" in refused
