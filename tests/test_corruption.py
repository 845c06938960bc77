"""A truncated or altered shard, index file, model file or manifest is refused with a message naming the file.

Shards: the sha256 file written beside each, Parquet footers and per-page CRCs, checked on every read. Index
and model dirs: the sizes their manifest lists (always) and sha256 (on a full check, which `clamp serve` and
`clamp embed` make). An index or shards made with another model are refused too.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pyarrow as pa
import pytest
from query_corpus import clamp, other_model_dir

from indexer.index_build import build_index
from indexer.reader import Failure
from indexer.shards import (
    ShardError,
    checksum_file,
    failures_table,
    iter_shard_batches,
    read_errors,
    shard_files,
    shard_ids,
    shards_metadata,
    write_atomic,
)
from runtime.model.encoder import Encoder
from runtime.model.modeldir import ModelDirError, encoder_file
from runtime.search.index import Index, IndexDirError, ModelMismatchError
from runtime.storage.integrity import file_sha256

SEED = 7
FLIPS = 60  # single-bit flips per shard, at seeded random offsets

CORPUS_FILES = ("essenFolksong/irl.abc",)  # what the `built` fixture (conftest) embeds


def copy(directory: Path, to: Path) -> Path:
    return Path(shutil.copytree(directory, to))


def flip_bit(path: Path, offset: int, bit: int = 0) -> bytes:
    """Flip one bit of a file in place (same size: only checksums can tell); return the original bytes."""
    original = path.read_bytes()
    data = bytearray(original)
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))
    return original


def read_all(shards_dir: Path) -> pa.Table:
    return pa.Table.from_batches(list(iter_shard_batches(shards_dir)))


# --- shards -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("keep", [0, 4, 0.5, -1, -8], ids=["empty", "4-bytes", "half", "last-byte", "footer"])
def test_a_truncated_shard_is_refused_by_name_everywhere(built, tmp_path, keep):
    shards = copy(built.shards_dir, tmp_path / "shards")
    victim = shard_files(shards)[0]
    data = victim.read_bytes()
    cut = int(len(data) * keep) if isinstance(keep, float) else keep % len(data) if keep < 0 else keep
    victim.write_bytes(data[:cut])
    for read in (read_all, shard_ids, shards_metadata):
        with pytest.raises(ShardError, match=f"{victim.name} does not match its sha256"):
            read(shards)
    output = clamp("index", "build", shards, "--out", tmp_path / "index", ok=False)
    assert victim.name in output and "does not match" in output and not (tmp_path / "index").exists()
    args = ["embed", built.abc_dir, "--model", built.model_dir, "--out", shards, "--workers", 0, "--quiet"]
    assert victim.name in clamp(*args, ok=False)  # a resumed run will not build on it either


def test_every_bit_flip_in_a_shard_is_refused_by_name(built, tmp_path):
    shards = copy(built.shards_dir, tmp_path / "shards")
    victim = shard_files(shards)[0]
    rng = random.Random(SEED)
    for _ in range(FLIPS):
        original = flip_bit(victim, rng.randrange(victim.stat().st_size), rng.randrange(8))
        for read in (read_all, shard_ids, shards_metadata):
            sidecar = f"_checksums/{victim.name}.sha256"
            with pytest.raises(ShardError, match=f"{victim.name} does not match its sha256 in {sidecar}"):
                read(shards)
        victim.write_bytes(original)
    assert read_all(shards).equals(read_all(built.shards_dir))


def test_a_shard_without_its_checksum_is_refused_by_name(built, tmp_path):
    shards = copy(built.shards_dir, tmp_path / "shards")
    victim = shard_files(shards)[0]
    checksum_file(victim).unlink()  # copied without it, or dropped in by hand: nothing vouches for its bytes
    for read in (read_all, shard_ids, shards_metadata):
        with pytest.raises(ShardError, match=f"{victim.name} has no checksum \\(_checksums/{victim.name}"):
            read(shards)
    output = clamp("index", "build", shards, "--out", tmp_path / "index", ok=False)
    assert f"{victim.name} has no checksum" in output and not (tmp_path / "index").exists()


def test_a_shard_altered_with_a_recomputed_checksum_is_still_caught_by_page_crcs(built, tmp_path):
    shards = copy(built.shards_dir, tmp_path / "shards")
    victim = shard_files(shards)[0]
    flip_bit(victim, victim.stat().st_size // 3)  # inside the data pages
    checksum_file(victim).write_text(f"{file_sha256(victim)}  {victim.name}\n")
    with pytest.raises(ShardError, match=f"{victim.name} is damaged or truncated"):
        read_all(shards)


def test_a_damaged_errors_table_is_named(built, tmp_path):
    shards = copy(built.shards_dir, tmp_path / "shards")
    errors = shards / "_errors" / "errors-00000.pq"
    write_atomic(failures_table([Failure("a.abc", 0, "patch", "no music", "x" * 32)]), errors)
    errors.write_bytes(errors.read_bytes()[:-10])
    with pytest.raises(ShardError, match="errors-00000.pq does not match its sha256"):
        read_errors(shards)


# --- index dir --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["index.hnsw", "items.sqlite", "vectors.npy"])
def test_a_truncated_or_altered_index_file_is_refused_by_name(built, tmp_path, name):
    index_dir = copy(built.index_dir, tmp_path / "index")
    path = index_dir / name
    original = flip_bit(path, len(path.read_bytes()) // 2)
    Index.open(index_dir, built.model_dir)  # the default check is sizes only: a flip needs the full check
    with pytest.raises(IndexDirError, match=f"{name} does not match its sha256.*clamp index build"):
        Index.open(index_dir, built.model_dir, full_check=True)
    path.write_bytes(original[:-1])
    with pytest.raises(IndexDirError, match=f"{name} has {len(original) - 1} bytes.*says {len(original)}"):
        Index.open(index_dir, built.model_dir)
    path.unlink()
    with pytest.raises(IndexDirError, match=f"{name} is missing"):
        Index.open(index_dir, built.model_dir)


def edit_manifest(directory: Path, change) -> None:
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    "damage, message",
    [
        (
            lambda d: (d / "manifest.json").write_bytes((d / "manifest.json").read_bytes()[:100]),
            "not valid JSON",
        ),
        (lambda d: (d / "manifest.json").write_text("[1, 2]"), "not a JSON object"),
        (lambda d: edit_manifest(d, lambda m: m.pop("files")), 'no valid "files" table'),
        (lambda d: edit_manifest(d, lambda m: m["files"].update({"../../etc/passwd": {}})), '"files" table'),
        (lambda d: edit_manifest(d, lambda m: m["files"].clear()), "does not list index.hnsw, items.sqlite"),
        (lambda d: edit_manifest(d, lambda m: m["files"].pop("vectors.npy")), "does not list vectors.npy"),
        (lambda d: edit_manifest(d, lambda m: m.update(count="many")), "no valid 'count'"),
        (lambda d: edit_manifest(d, lambda m: m.update(count=m["count"] - 1)), "vectors.npy holds"),
        (lambda d: edit_manifest(d, lambda m: m.update(dim=m["dim"] * 2)), "vectors.npy holds"),
        (lambda d: edit_manifest(d, lambda m: m["files"]["index.hnsw"].update(bytes=1)), "index.hnsw has"),
    ],
    ids=[
        "truncated",
        "not-an-object",
        "no-files",
        "path-in-files",
        "empty-files",
        "vectors-unlisted",
        "bad-count",
        "count",
        "dim",
        "size",
    ],
)
def test_a_damaged_or_altered_index_manifest_is_refused_by_name(built, tmp_path, damage, message):
    index_dir = copy(built.index_dir, tmp_path / "index")
    damage(index_dir)
    with pytest.raises(IndexDirError, match=message) as refused:
        Index.open(index_dir, built.model_dir)
    assert str(index_dir) in str(refused.value)
    assert "rebuild the index" in clamp(
        "search", "a jig", "--index", index_dir, "--model", built.model_dir, ok=False
    )


def test_an_index_built_with_another_model_is_refused(built, tmp_path):
    other = other_model_dir(built.model_dir, tmp_path / "other-model")
    with pytest.raises(ModelMismatchError, match="was built with model"):
        Index.open(built.index_dir, other)
    with pytest.raises(ModelMismatchError, match="did not make these shards"):
        build_index(built.shards_dir, tmp_path / "index", model_dir=other)
    assert "was built with model" in clamp(
        "search", "a jig", "--index", built.index_dir, "--model", other, ok=False
    )


# --- model dir --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", [encoder_file("music", "fp32"), encoder_file("text", "fp16"), "tokenizer.json"]
)
def test_a_truncated_or_altered_model_file_is_refused_by_name(built, tmp_path, name):
    model_dir = copy(built.model_dir, tmp_path / "model")
    path = model_dir / name
    original = flip_bit(path, len(path.read_bytes()) - 100)
    with pytest.raises(ModelDirError, match=f"{name} does not match its sha256"):
        Encoder.open(model_dir, full_check=True)
    with pytest.raises(ModelDirError, match=name):
        Index.open(built.index_dir, model_dir, full_check=True)
    path.write_bytes(original[: len(original) // 2])
    with pytest.raises(ModelDirError, match=f"{name} has {len(original) // 2} bytes"):
        Encoder.open(model_dir)


def test_a_damaged_model_manifest_is_refused_by_name(built, tmp_path):
    model_dir = copy(built.model_dir, tmp_path / "model")
    manifest = model_dir / "manifest.json"
    original = manifest.read_bytes()
    manifest.write_bytes(original[: len(original) // 2])
    with pytest.raises(ModelDirError, match="manifest.json is not valid JSON"):
        Encoder.open(model_dir)
    manifest.write_bytes(original)
    edit_manifest(model_dir, lambda m: m.update(model_hash="0" * 64))
    with pytest.raises(ModelDirError, match="model_hash in manifest.json does not match"):
        Encoder.open(model_dir, full_check=True)
    manifest.write_text(json.dumps({"model_hash": "0" * 64}))
    with pytest.raises(ModelDirError, match='manifest.json has no valid "files" table'):
        Encoder.open(model_dir)


@pytest.mark.parametrize("name", ["config.json", "tokenizer.json", encoder_file("music", "fp16")])
def test_a_model_manifest_that_omits_a_file_the_encoder_opens_is_refused(built, tmp_path, name):
    model_dir = copy(built.model_dir, tmp_path / "model")
    edit_manifest(model_dir, lambda m: m["files"].pop(name))
    for full_check in (False, True):  # the check `clamp serve` and `clamp embed` make is no weaker
        with pytest.raises(ModelDirError, match=f'does not list {name} in its "files" table'):
            Encoder.open(model_dir, full_check=full_check)
    edit_manifest(model_dir, lambda m: m["files"].clear())
    with pytest.raises(ModelDirError, match="does not list config.json, .*music_encoder.onnx"):
        Encoder.open(model_dir)
