"""A full disk: `clamp embed` and `clamp index build` end with one line (what ran out, that finished work is
intact, that a rerun resumes) and exit 1; nothing half-written is left; a rerun with space finishes the job.

The disk is a real one that fills: a tiny tmpfs mounted for the test (mounting needs root).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers import tiny_model_dir
from query_corpus import corpus_path

from indexer.shards import iter_shard_batches, shard_files
from runtime.search.index import Index, read_manifest

REPO = Path(__file__).resolve().parents[1]
FILES = ("oneills1850/1116-1135_mh.abc", "essenFolksong/irl.abc")  # 82 tunes
FULL = "Error: no space left on the filesystem of "
PROMISE = "files finished before it are intact and nothing half-written was kept; free some space and rerun"


def clamp(*args: object) -> tuple[int, str]:
    """`clamp ARGS` in its own process (a SIGBUS would kill only it); its exit code and output."""
    code = "import sys; from runtime.cli import main; main(sys.argv[1:])"
    done = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    return done.returncode, done.stdout + done.stderr


@contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill (needs root): {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def remount(where: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(where)], check=True)


def leftovers(directory: Path) -> list[str]:
    """Temporary or partial files and dirs (dot-names) anywhere under `directory`."""
    return [str(p.relative_to(directory)) for p in directory.rglob(".*")]


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("disk-full")
    abc = root / "abc"
    abc.mkdir()
    for name in FILES:
        (abc / name.replace("/", "-")).write_bytes(corpus_path(name).read_bytes())
    model = tiny_model_dir(root)
    shards = root / "shards"
    assert clamp("embed", abc, "--model", model, "--out", shards, "--workers", 0, "--quiet")[0] == 0
    return model, abc, shards


def assert_one_line_refusal(code: int, output: str) -> None:
    assert code == 1, f"exit {code} (a negative code is a signal, -7 SIGBUS): {output[-2000:]}"
    assert "Traceback" not in output and output.count("Errno 28") == 0
    [line] = [line for line in output.splitlines() if line.startswith("Error")]
    assert line.startswith(FULL) and PROMISE in line, line


def test_embed_on_a_full_disk_keeps_its_shards_and_a_rerun_resumes(setup, tmp_path):
    model, abc, _ = setup
    with tmpfs(tmp_path / "disk", "64k") as disk:
        out = disk / "shards"
        args = ["embed", abc, "--model", model, "--out", out, "--shard-rows", 8, "--workers", 0, "--quiet"]
        code, output = clamp(*args)
        assert_one_line_refusal(code, output)
        assert f"{FULL}{out} (" in output
        kept = [i for b in iter_shard_batches(out, columns=["id"]) for i in b.column("id").to_pylist()]
        assert 0 < len(kept) < 82 and leftovers(out) == []  # finished shards verify; no temporary file
        remount(disk, "2m")
        assert clamp(*args) == (0, "")
        ids = [i for b in iter_shard_batches(out, columns=["id"]) for i in b.column("id").to_pylist()]
        assert len(ids) == len(set(ids)) == 82 and ids[: len(kept)] == kept
        assert len(shard_files(out)) == 11


def test_index_build_on_a_full_disk_fails_in_one_line_at_every_stage(setup, tmp_path):
    model, _, shards = setup
    with tmpfs(tmp_path / "disk", "16k") as disk:
        out, failures, size = disk / "index", 0, 16
        while (result := clamp("index", "build", shards, "--out", out, "--model", model))[0] != 0:
            assert_one_line_refusal(*result)
            assert not out.exists() and leftovers(disk) == []  # the partial build was removed
            failures += 1
            size += 16  # KiB: each size runs out at a later write (items, vectors, graph, indexes, manifest)
            remount(disk, f"{size}k")
        assert failures >= 5 and len(Index.open(out, model, full_check=True)) == 82
        print(f"index build: {failures} clean failures (16 to {size - 16} KiB), then built at {size} KiB")
        old = read_manifest(out)
        result = clamp("index", "build", shards, "--out", out, "--model", model, "--m", 8)  # no room for two
        assert_one_line_refusal(*result)
        assert read_manifest(out) == old and len(Index.open(out, model, full_check=True)) == 82


VECTORS_ON_A_FULL_DISK = """
import sys
import numpy as np
from indexer.segment_writer import _vectors_file
rows = np.ones((4096, 64), dtype="<f4")
with _vectors_file(__import__("pathlib").Path(sys.argv[1]), 64 * 4096, 64) as vectors:
    for _ in range(64):
        vectors.write(rows.tobytes())
"""


def test_vectors_on_a_full_disk_are_an_oserror_not_a_sigbus(tmp_path):
    with tmpfs(tmp_path / "disk", "1m") as disk:
        done = subprocess.run(
            [sys.executable, "-c", VECTORS_ON_A_FULL_DISK, str(disk / "vectors.npy")],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 1 and "No space left on device" in done.stderr
