"""One writer per output dir: a second `clamp embed` or `clamp index build` into the same --out is refused
at once, saying who holds it; the lock of a killed writer is taken over. Real processes, real commands.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import tiny_model_dir
from query_corpus import corpus_path

from indexer.shards import iter_shard_batches, shard_files
from runtime.storage.lock import lock_path

REPO = Path(__file__).resolve().parents[1]
FILES = ("oneills1850/1116-1135_mh.abc", "essenFolksong/irl.abc")  # 82 tunes
SHARD_ROWS = 8
# `clamp ARGS...` in a child whose every shard write (embed) or item batch (index build) takes 0.2 s longer,
# so that it is surely still writing when the test starts a second writer.
SLOW_CLAMP = """
import sys, time
import indexer.shards, indexer.segment_writer
from runtime.cli import main
write_atomic, add = indexer.shards.write_atomic, indexer.segment_writer.ItemWriter.add
def slow_write(table, path):
    write_atomic(table, path)
    time.sleep(0.2)
def slow_add(self, rows):
    add(self, rows)
    time.sleep(0.2)
indexer.shards.write_atomic = slow_write
indexer.segment_writer.ItemWriter.add = slow_add
main(sys.argv[1:])
"""


def clamp_process(*args: object, slow: bool = False) -> subprocess.Popen:
    code = SLOW_CLAMP if slow else "import sys; from runtime.cli import main; main(sys.argv[1:])"
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def finish(child: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    output, _ = child.communicate(timeout=timeout)
    return child.returncode, output.decode()


def wait_until(condition, child: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert child.poll() is None, f"the writer exited early: {child.stdout.read().decode()[-2000:]}"
        assert time.monotonic() < deadline, "the writer made no progress"
        time.sleep(0.01)


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("lock")
    abc = root / "abc"
    abc.mkdir()
    for name in FILES:
        (abc / name.replace("/", "-")).write_bytes(corpus_path(name).read_bytes())
    return tiny_model_dir(root), abc


def embed_args(model: Path, abc: Path, out: Path) -> list[object]:
    return [
        "embed",
        abc,
        "--model",
        model,
        "--out",
        out,
        "--shard-rows",
        SHARD_ROWS,
        "--workers",
        0,
        "--quiet",
    ]


def ids(shards: Path) -> list[str]:
    return [i for batch in iter_shard_batches(shards, columns=["id"]) for i in batch.column("id").to_pylist()]


def test_a_second_embed_into_the_same_out_is_refused_and_no_row_is_lost(setup, tmp_path):
    model, abc = setup
    out = tmp_path / "shards"
    first = clamp_process(*embed_args(model, abc, out), slow=True)
    wait_until(lambda: len(shard_files(out)) >= 1, first)
    started = time.perf_counter()
    code, said = finish(clamp_process(*embed_args(model, abc, out)))
    refused_ms = (time.perf_counter() - started) * 1000
    assert code != 0 and f"{out} is being written by clamp embed (pid {first.pid} on " in said
    assert "wait for it to finish, or pass another --out" in said and "Traceback" not in said
    assert first.poll() is None, "the first run finished before the second started: nothing was tested"
    assert finish(first)[0] == 0
    written = ids(out)
    assert len(written) == len(set(written)) == 82  # every tune once: none lost, none duplicated
    print(f"second embed refused in {refused_ms:.0f} ms (process start included); 0 of 82 rows lost")
    assert not lock_path(out).exists()


def test_the_lock_of_a_killed_embed_is_taken_over_and_the_rerun_completes(setup, tmp_path):
    model, abc = setup
    out = tmp_path / "shards"
    first = clamp_process(*embed_args(model, abc, out), slow=True)
    wait_until(lambda: len(shard_files(out)) >= 2, first)
    os.kill(first.pid, signal.SIGKILL)
    first.communicate()
    assert lock_path(out).exists()  # left behind, but no live process holds it
    code, said = finish(clamp_process(*embed_args(model, abc, out)))
    assert code == 0, said
    written = ids(out)
    assert len(written) == len(set(written)) == 82


def test_a_second_index_build_into_the_same_out_is_refused(setup, tmp_path):
    model, abc = setup
    shards, index = tmp_path / "shards", tmp_path / "index"
    assert finish(clamp_process(*embed_args(model, abc, shards)))[0] == 0
    build = ["index", "build", shards, "--out", index, "--model", model]
    first = clamp_process(*build, slow=True)
    wait_until(lambda: (tmp_path / ".index.partial" / "items.sqlite").exists(), first)
    code, said = finish(clamp_process(*build))
    assert code != 0 and f"{index} is being written by clamp index build (pid {first.pid} on " in said
    os.kill(first.pid, signal.SIGKILL)  # its lock dies with it
    first.communicate()
    code, said = finish(clamp_process(*build))
    assert code == 0 and "indexed 82 tunes" in said, said


HOLD_LOCK = """
import sys, time
from pathlib import Path
from runtime.storage.lock import exclusive
with exclusive(Path(sys.argv[1]), "clamp embed"):
    print("held", flush=True)
    time.sleep(600)
"""


def test_the_ray_engine_takes_the_same_lock(setup, tmp_path):
    model, abc = setup
    out = tmp_path / "shards"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], cwd=REPO, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"held\n"
        code, said = finish(clamp_process(*embed_args(model, abc, out)[:-3], "--engine", "ray", "--quiet"))
        assert code != 0 and f"{out} is being written by clamp embed (pid {holder.pid} on " in said
        assert not out.exists()  # refused before Ray started or anything was written
    finally:
        holder.kill()
        holder.wait()
