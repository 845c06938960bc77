"""`clamp embed` on real tunes with the real Encoder: parity, resume after a kill, errors, tables."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from helpers import tiny_model_dir

from indexer.reader import TuneRecord, expand_inputs, read_inputs
from indexer.runner import EmbedOptions, embed_corpus
from indexer.shards import embeddings_matrix, iter_shard_batches, read_errors, shard_files, shards_metadata
from runtime.cli import main
from runtime.model.encoder import Encoder
from runtime.music.abc import split_tunes
from runtime.music.patching import prepare_music

REPO = Path(__file__).resolve().parent.parent
# ~200 real tunes: Essen folk songs, O'Neill's, a fife book, Josquin.
CORPUS_FILES = (
    "essenFolksong/irl.abc",
    "essenFolksong/erk5.abc",
    "oneills1850/0051-0100.abc",
    "miscFolk/americanfifeopus.abc",
    "josquin/adieuMesAmours.abc",
)
SMALL = {"shard_rows": 40, "window_patches": 1500, "workers": 1, "quiet": True}  # many shards and windows


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[Path]:
    """The real files, and one real tune played over and over: longer than any model's max patches."""
    from music21 import corpus as music21_corpus

    files = [Path(music21_corpus.__file__).parent / name for name in CORPUS_FILES]
    head, rest = split_tunes(files[2].read_text())[0].abc.split("\nK:", 1)
    key, music = rest.split("\n", 1)
    long_tune = tmp_path_factory.mktemp("long") / "long.abc"
    long_tune.write_text(f"{head}\nK:{key}\n" + music * 80)
    return [*files, long_tune]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return tiny_model_dir(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def encoder(model_dir) -> Encoder:
    return Encoder.open(model_dir)


def expected_records(inputs: list) -> list[TuneRecord]:
    return [r for r in read_inputs(expand_inputs([str(i) for i in inputs])) if isinstance(r, TuneRecord)]


def read_rows(shards_dir: Path) -> tuple[pa.Table, np.ndarray]:
    batches = list(iter_shard_batches(shards_dir))
    return pa.Table.from_batches(batches), np.concatenate([embeddings_matrix(b) for b in batches])


@pytest.fixture(scope="module")
def uninterrupted(corpus, model_dir, tmp_path_factory) -> Path:
    """One run of the real command over the corpus."""
    out = tmp_path_factory.mktemp("shards")
    args = ["embed", *map(str, corpus), "--model", str(model_dir), "--out", str(out), "--shard-rows", "64"]
    result = CliRunner().invoke(main, [*args, "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "failed 0" in result.output and "embedded" in result.output
    return out


def test_one_row_per_tune_with_the_encoders_vectors(uninterrupted, corpus, encoder):
    table, vectors = read_rows(uninterrupted)
    records = expected_records(corpus)
    assert len(records) > 150 and table.column("id").to_pylist() == [r.id for r in records]
    expected = encoder.embed_abc([r.abc for r in records])
    assert np.abs(vectors - expected).max() < 2e-3  # float16 storage
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=2e-3)
    n_patches = [len(prepare_music(r.abc, None)) for r in records]
    assert table.column("n_patches").to_pylist() == [min(n, encoder.max_patches) for n in n_patches]
    assert table.column("truncated").to_pylist() == [n > encoder.max_patches for n in n_patches]
    assert any(table.column("truncated").to_pylist())
    assert table.column("title").to_pylist() == [r.meta.get("title") for r in records]
    assert json.loads(table.column("meta")[0].as_py()) == records[0].meta
    assert shards_metadata(uninterrupted)["model_hash"] == encoder.model_hash
    [stats] = (uninterrupted / "_stats").glob("*.json")
    stats = json.loads(stats.read_text())
    assert stats["status"] == "complete" and stats["embedded"] == len(records)
    assert set(stats["seconds"]) >= {"read", "patch", "infer", "write"}


SLOW_RUN = """
import sys, time
from indexer.runner import EmbedOptions, embed_corpus
from runtime.model.encoder import Encoder

class SlowEncoder:  # slow enough to be killed mid-run
    def __init__(self, inner):
        self.inner = inner
    def __getattr__(self, name):
        return getattr(self.inner, name)
    def embed_patches(self, patches, max_batch_patches):
        time.sleep(0.5)
        return self.inner.embed_patches(patches, max_batch_patches=max_batch_patches)

model, out, *inputs = sys.argv[1:]
embed_corpus(inputs, SlowEncoder(Encoder.open(model)), out, EmbedOptions(**{options}))
"""


def test_a_run_killed_after_its_first_shard_resumes_to_exactly_the_same_ids(
    uninterrupted, corpus, model_dir, encoder, tmp_path
):
    out = tmp_path / "shards"
    script = SLOW_RUN.format(options=SMALL)
    run = subprocess.Popen(
        [sys.executable, "-c", script, str(model_dir), str(out), *map(str, corpus)], cwd=REPO
    )
    deadline = time.monotonic() + 60
    while not shard_files(out) and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    first = shard_files(out)[0].read_bytes()
    done_before = len(read_rows(out)[0])
    assert 0 < done_before < len(expected_records(corpus))

    stats = embed_corpus(list(map(str, corpus)), encoder, out, EmbedOptions(**SMALL))
    assert stats.already_done == done_before and stats.embedded == len(expected_records(corpus)) - done_before
    assert shard_files(out)[0].read_bytes() == first  # finished shards are never redone
    ids = read_rows(out)[0].column("id").to_pylist()
    assert len(ids) == len(set(ids)) and set(ids) == set(read_rows(uninterrupted)[0].column("id").to_pylist())


class InterruptingEncoder:
    """The real encoder, but Ctrl-C arrives during its third batch."""

    def __init__(self, inner: Encoder, model_hash: str | None = None):
        self.inner, self.calls = inner, 0
        self.model_hash = model_hash or inner.model_hash

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def embed_patches(self, patches, max_batch_patches):
        self.calls += 1
        if self.calls == 3:
            raise KeyboardInterrupt
        return self.inner.embed_patches(patches, max_batch_patches=max_batch_patches)


def test_ctrl_c_keeps_what_was_embedded_and_a_rerun_finishes_the_rest(corpus, encoder, tmp_path):
    inputs = list(map(str, corpus))
    with pytest.raises(KeyboardInterrupt):
        embed_corpus(inputs, InterruptingEncoder(encoder), tmp_path, EmbedOptions(**SMALL))
    kept = read_rows(tmp_path)[0].num_rows
    [stats] = (tmp_path / "_stats").glob("*.json")
    assert json.loads(stats.read_text())["status"] == "stopped: KeyboardInterrupt" and kept > 0

    with pytest.raises(ValueError, match="not with this model"):
        embed_corpus(inputs, InterruptingEncoder(encoder, "another-model"), tmp_path, EmbedOptions(**SMALL))
    with pytest.raises(ValueError, match="--resume"):
        embed_corpus(inputs, encoder, tmp_path, EmbedOptions(**{**SMALL, "resume": False}))

    again = embed_corpus(inputs[:2], encoder, tmp_path, EmbedOptions(**SMALL))
    assert again.embedded + again.already_done == len(expected_records(inputs[:2]))
    rest = embed_corpus(inputs, encoder, tmp_path, EmbedOptions(**SMALL))  # new files: only their tunes
    assert rest.embedded == len(expected_records(inputs)) - kept - again.embedded
    ids = read_rows(tmp_path)[0].column("id").to_pylist()
    assert sorted(ids) == sorted(r.id for r in expected_records(inputs))


def test_broken_tunes_are_listed_in_the_errors_table_and_the_run_completes(corpus, encoder, tmp_path):
    real = corpus[CORPUS_FILES.index("josquin/adieuMesAmours.abc")]
    broken = tmp_path / "in" / "broken.abc"
    broken.parent.mkdir()
    broken.write_text(real.read_text() + "\nX:99\nT:A title and nothing else\n\nX:100\nT:Empty body\nK:G\n")
    (tmp_path / "in" / "latin1.abc").write_bytes("X:1\nT:Chanson à boire\nK:F\n|FAc|\n".encode("latin-1"))
    (tmp_path / "in" / "rows.jsonl").write_text('{"abc": 3}\n{oops\n{"abc": "X:1\\nK:C\\n|CDE|\\n"}\n')
    stats = embed_corpus([str(tmp_path / "in")], encoder, tmp_path / "out", EmbedOptions(**SMALL))
    errors = read_errors(tmp_path / "out").to_pylist()
    by_place = {(Path(e["source"]).name, e["tune_index"]): e for e in errors}
    n_good = len(expected_records([real]))
    for title_only_or_k_alone in (by_place[("broken.abc", n_good)], by_place[("broken.abc", n_good + 1)]):
        assert title_only_or_k_alone["stage"] == "read" and "no music" in title_only_or_k_alone["reason"]
    assert by_place[("latin1.abc", None)]["stage"] == "decode"
    assert by_place[("rows.jsonl", 0)]["stage"] == "read" and by_place[("rows.jsonl", 1)]["stage"] == "read"
    assert (stats.failed, stats.embedded) == (4, n_good + 1 + 1)
    titles = read_rows(tmp_path / "out")[0].column("title").to_pylist()
    assert "Chanson à boire" in titles and "Empty body" not in titles
    rerun = embed_corpus([str(tmp_path / "in")], encoder, tmp_path / "out", EmbedOptions(**SMALL))
    assert rerun.embedded == 0 and rerun.failed == 4  # what the reader refuses is met again...
    assert len(read_errors(tmp_path / "out")) == len(errors)  # ...but nothing is recorded twice


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_table_inputs_with_abc_and_id_columns(corpus, model_dir, encoder, tmp_path, suffix):
    tunes = expected_records(corpus[:1])[:12]
    rows = [{"uid": f"tune-{i}", "score": t.abc, "genre": "folk", "bars": i} for i, t in enumerate(tunes)]
    table = tmp_path / f"tunes{suffix}"
    if suffix == ".jsonl":
        table.write_text("".join(json.dumps(row) + "\n" for row in rows))
    else:
        pq.write_table(pa.Table.from_pylist(rows), table)
    args = ["embed", str(table), "--model", str(model_dir), "--out", str(tmp_path / "out"), "--workers", "0"]
    result = CliRunner().invoke(
        main, [*args, "--abc-column", "score", "--id-column", "uid", "--dtype", "float32"]
    )
    assert result.exit_code == 0, result.output
    out, vectors = read_rows(tmp_path / "out")
    assert out.column("id").to_pylist() == [row["uid"] for row in rows]
    assert np.allclose(vectors, encoder.embed_abc([t.abc for t in tunes]), atol=1e-5)
    meta = json.loads(out.column("meta")[5].as_py())
    assert (meta["genre"], meta["bars"], meta["title"]) == ("folk", "5", tunes[5].meta["title"])


def test_the_progress_bar_counts_the_tunes_up_front_and_shows_an_eta(corpus, model_dir, tmp_path):
    n_tunes = len(expected_records(corpus[:2]))
    args = ["embed", *map(str, corpus[:2]), "--model", str(model_dir), "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(main, [*args, "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert re.search(
        rf"embedding: 100%\|.*\| {n_tunes}/{n_tunes} \[\d+:\d+<\d+:\d+, +[\d.]+ ?tune/s\]", result.output
    )
