"""kill -9 at random moments never loses a tune, never stores one twice, never leaves a half file or index.

The embedder and the index builder run in child processes that are SIGKILLed at seeded random delays (and
once each at the worst moment: in the middle of a shard write, between the two renames that swap an index
into place). After every kill the finished shards must be whole, and a rerun of the same command must end
with exactly the input's tunes; the index dir must be the old complete index or absent, and a rebuild works.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import tiny_model_dir

from indexer.index_build import build_index
from indexer.reader import expand_inputs, read_inputs
from indexer.runner import EmbedOptions, embed_corpus
from indexer.shards import checksum_file, failure_keys, iter_shard_batches, read_errors, shard_files
from runtime.model.encoder import Encoder
from runtime.search.index import Index, read_manifest

REPO = Path(__file__).resolve().parent.parent
CORPUS_FILES = ("essenFolksong/irl.abc", "oneills1850/0101-0200.abc", "miscFolk/americanfifeopus.abc")
SHARD_ROWS = 5
BROKEN_TUNES = 20
EMBED_KILLS = 12
BUILD_KILLS = 8
SEED = 12

# The child: the embedding run or the index build, slowed down so that kills land mid-run, and told
# where to stop dead (a marker file, then a long sleep) for the worst-moment kills.
CHILD = """
import sys, time
from pathlib import Path

job, stop_at, marker, *args = sys.argv[1:]

def stop_here():
    Path(marker).touch()
    time.sleep(600)

if job == "embed":
    import indexer.shards as shards
    from indexer.runner import EmbedOptions, embed_corpus
    from runtime.model.encoder import Encoder

    class SlowEncoder:
        def __init__(self, inner):
            self.inner = inner
        def __getattr__(self, name):
            return getattr(self.inner, name)
        def embed_patches(self, patches, max_batch_patches):
            time.sleep(0.1)
            return self.inner.embed_patches(patches, max_batch_patches=max_batch_patches)

    write_table = shards.pq.write_table
    def slow_write(table, where, **options):
        write_table(table, where, **options)
        if stop_at == "mid-write" and Path(where).name.startswith(".shard-00003"):
            with open(where, "r+b") as half:  # the file is only half on disk when the process dies
                half.truncate(Path(where).stat().st_size // 2)
            stop_here()
        time.sleep(0.01)
    shards.pq.write_table = slow_write
    model, out, shard_rows, *inputs = args
    options = EmbedOptions(  # small chunks and windows: each run gets a few tunes further
        shard_rows=int(shard_rows), chunk_tunes=4, window_patches=40, workers=0, quiet=True
    )
    Path(marker + ".ready").touch()
    embed_corpus(inputs, SlowEncoder(Encoder.open(model)), out, options)
else:
    import indexer.index_build as index_build
    import indexer.segment_writer as segment_writer
    add, batches = segment_writer.ItemWriter.add, []
    def slow_add(self, rows):
        add(self, rows)
        batches.append(1)
        Path(f"{marker}.batch{len(batches)}").touch()  # progress the test can see
        time.sleep(0.02)
    segment_writer.ItemWriter.add = slow_add
    rename = Path.rename
    def stopping_rename(self, target):
        result = rename(self, target)
        if stop_at == "mid-swap" and Path(target).name.endswith(".old"):
            stop_here()  # the old index moved aside, the new one not yet in place
        return result
    Path.rename = stopping_rename
    shards_dir, out, model = args
    Path(marker + ".ready").touch()
    index_build.build_index(shards_dir, out, model_dir=model, batch_size=16)
"""


def start_child(job: str, stop_at: str, marker: Path, *args: object) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, job, stop_at, str(marker), *map(str, args)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def wait_for(path: Path, child: subprocess.Popen) -> None:
    wait_until(path.exists, child)


def wait_until(condition, child: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert child.poll() is None, f"child exited early: {child.stderr.read().decode()[-2000:]}"
        assert time.monotonic() < deadline, "the child made no progress"
        time.sleep(0.005)


def kill(child: subprocess.Popen) -> bool:
    """SIGKILL the child; True if it was still running (False: it had already finished)."""
    running = child.poll() is None
    if running:
        os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stderr.close()
    return running


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return tiny_model_dir(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[str]:
    """~220 real tunes, and a file whose tunes fail (so the errors table is crash-tested too)."""
    from music21 import corpus as music21_corpus

    root = Path(music21_corpus.__file__).parent
    broken = tmp_path_factory.mktemp("broken") / "broken.abc"
    broken.write_text("".join(f"X:{i}\nT:Title only {i}\n\n" for i in range(BROKEN_TUNES)))
    return [*(str(root / name) for name in CORPUS_FILES), str(broken)]


def expected_ids(inputs: list[str]) -> list[str]:
    """Every tune's id: each ends in a shard or in the errors table (the reader refuses what is not music)."""
    return sorted(item.id for item in read_inputs(expand_inputs(inputs)) if item.id is not None)


def assert_only_whole_shards(out: Path) -> list[str]:
    """Every listed shard reads in full (footer, pages, checksums); return the ids they hold."""
    ids = []
    for shard in shard_files(out):
        table = pq.ParquetFile(shard, page_checksum_verification=True).read(columns=["id"])
        assert table.num_rows <= SHARD_ROWS
        ids += table.column("id").to_pylist()
    assert ids == [row["id"] for b in iter_shard_batches(out, ["id"]) for row in b.to_pylist()]
    assert len(ids) == len(set(ids)), "a tune is stored twice"
    return ids


def test_embedder_killed_at_random_moments_resumes_to_exactly_the_input_tunes(model_dir, corpus, tmp_path):
    out, rng = tmp_path / "shards", random.Random(SEED)
    wanted = expected_ids(corpus)
    survived, progress = 0, [0]
    for attempt in range(EMBED_KILLS + 1):
        stop_at = "mid-write" if attempt == 0 else "nowhere"
        marker = tmp_path / f"marker-{attempt}"
        child = start_child("embed", stop_at, marker, model_dir, out, SHARD_ROWS, *corpus)
        if stop_at == "mid-write":
            wait_for(marker, child)
        else:  # once it has finished one more shard, at a random moment in its next steps
            target = len(shard_files(out)) + 1
            wait_until(lambda n=target: len(shard_files(out)) >= n, child)
            time.sleep(rng.uniform(0, 0.1))
        survived += kill(child)
        if stop_at == "mid-write":
            [half] = out.glob(".shard-00003.parquet.tmp")  # a half-written shard, never listed as one
            with pytest.raises(Exception, match="(?i)parquet|footer|magic"):
                pq.read_metadata(half)
        progress.append(len(assert_only_whole_shards(out)))
    assert survived == EMBED_KILLS + 1, "a run finished before it could be killed"
    assert progress == sorted(progress) and progress[-1] < len(wanted)  # each run kept its finished shards

    encoder = Encoder.open(model_dir)
    stats = embed_corpus(corpus, encoder, out, EmbedOptions(shard_rows=SHARD_ROWS, workers=0, quiet=True))
    assert stats.embedded > 0 and stats.embedded + progress[-1] == len(wanted) - BROKEN_TUNES
    assert not list(out.glob(".*.tmp")), "the half-written shard was cleared away"
    stored = assert_only_whole_shards(out)
    rejected = [e["id"] for e in read_errors(out).to_pylist() if e["stage"] == "read"]
    assert sorted(stored + rejected) == wanted and len(rejected) == BROKEN_TUNES
    assert len(read_errors(out)) == len(failure_keys(out)), "a failure was recorded twice"


def first_vector_finds_itself(index: Index) -> bool:
    [hits] = index.search_vectors(np.asarray(index.vectors[0]), k=3)
    return abs(hits[0].score - 1) < 1e-4


def test_index_build_killed_at_random_moments_leaves_the_old_index_or_none(model_dir, corpus, tmp_path):
    shards = tmp_path / "shards"
    embed_corpus(corpus, Encoder.open(model_dir), shards, EmbedOptions(shard_rows=40, workers=0, quiet=True))
    first_shards = tmp_path / "first-shards"
    first_shards.mkdir()
    first = shard_files(shards)[0]
    os.link(first, first_shards / first.name)
    checksum_file(first_shards / first.name).parent.mkdir()
    os.link(checksum_file(first), checksum_file(first_shards / first.name))
    out = tmp_path / "index"
    old = build_index(first_shards, out, model_dir=model_dir)
    batches = -(-sum(pq.read_metadata(f).num_rows for f in shard_files(shards)) // 16)
    rng, survived = random.Random(SEED), 0
    for attempt in range(BUILD_KILLS + 1):
        stop_at = "mid-swap" if attempt == BUILD_KILLS else "nowhere"  # last: it leaves no index
        marker = tmp_path / f"build-marker-{attempt}"
        child = start_child("build", stop_at, marker, shards, out, model_dir)
        if stop_at == "mid-swap":
            wait_for(marker, child)
        else:  # after a random number of the build's batches, at a random moment
            wait_for(Path(f"{marker}.batch{rng.randint(1, batches - 1)}"), child)
            time.sleep(rng.uniform(0, 0.02))
        survived += kill(child)
        if stop_at == "mid-swap":
            assert not out.exists()
        else:  # untouched: the old index, whole, as its manifest says
            index = Index.open(out, model_dir, full_check=True)
            assert (
                read_manifest(out) == old and len(index) == old["count"] and first_vector_finds_itself(index)
            )
    assert survived == BUILD_KILLS + 1, "a build finished before it could be killed"

    new = build_index(shards, out, model_dir=model_dir)
    index = Index.open(out, model_dir, full_check=True)
    assert len(index) == new["count"] > old["count"] and first_vector_finds_itself(index)
    assert not list(tmp_path.glob(".index.*")), "the rebuild cleaned up what the killed builds left"
