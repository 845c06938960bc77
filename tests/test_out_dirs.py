"""No command replaces or writes into a dir it did not write: --out must be missing, empty or of its kind.

`index build` and `export` replace only an index / model dir whose manifest is ours and names every file
there (today's manifests by their "kind", older ones by their keys); `embed` and `train` add only to a
shards dir / checkpoint. Anything else is refused, saying what is there, and left byte for byte as it was.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from query_corpus import clamp

from runtime.storage.dirs import CHECKPOINT, INDEX, MODEL, SHARDS, describe_dir

CORPUS_FILES = ("oneills1850/0721-0730.abc",)  # what the `built` fixture (conftest) embeds


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


def foreign_dir(root: Path) -> Path:
    """Another program's output: a manifest.json of its own and data files."""
    other = root / "other"
    other.mkdir()
    (other / "manifest.json").write_text(json.dumps({"name": "photos", "files": ["a.jpg"]}))
    (other / "a.jpg").write_bytes(b"\xff\xd8 not ours")
    return other


def test_each_kind_of_dir_is_recognised(built, tmp_path):
    assert describe_dir(built.model_dir).kind == MODEL
    assert describe_dir(built.index_dir).kind == INDEX
    assert describe_dir(built.shards_dir).kind == SHARDS
    assert describe_dir(foreign_dir(tmp_path)).kind is None
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    for name in ("config.json", "model.safetensors", "training.json", "README.md"):
        (checkpoint / name).write_text("{}")
    (checkpoint / ".model.safetensors.tmp").write_text("")  # a save killed midway
    assert describe_dir(checkpoint).kind == CHECKPOINT
    (checkpoint / "holiday.jpg").write_text("")
    assert describe_dir(checkpoint).kind is None


def test_a_model_dir_of_an_older_version_without_a_kind_is_recognised(built, tmp_path):
    model = Path(shutil.copytree(built.model_dir, tmp_path / "model"))
    manifest = json.loads((model / "manifest.json").read_text())
    del manifest["kind"]
    (model / "manifest.json").write_text(json.dumps(manifest))
    assert describe_dir(model).kind == MODEL
    del manifest["export"]  # not the keys our exporter writes: not ours
    (model / "manifest.json").write_text(json.dumps(manifest))
    assert describe_dir(model).kind is None


def test_index_build_refuses_a_model_dir_and_leaves_it_whole(built):
    before = snapshot(built.model_dir)
    output = clamp("index", "build", built.shards_dir, "--out", built.model_dir, ok=False)
    files = len(before) - 1
    assert f"{built.model_dir} holds a clamp model dir (manifest.json, {files} files): " in output
    assert "refusing to replace it with an index; pass another --out" in output
    assert snapshot(built.model_dir) == before


@pytest.mark.parametrize("command", ["index build", "embed", "export"])
def test_no_command_touches_a_dir_with_another_programs_manifest(built, tmp_path, command):
    other = foreign_dir(tmp_path)
    before = snapshot(other)
    args = {
        "index build": ["index", "build", built.shards_dir, "--out", other],
        "embed": ["embed", built.abc_dir, "--model", built.model_dir, "--out", other, "--workers", 0],
        "export": ["export", "--out", other],
    }[command]
    output = clamp(*args, ok=False)
    said = f"{other} holds a manifest.json clamp did not write and 1 other entry (a.jpg, manifest.json)"
    assert said in output
    assert "pass another --out" in output and snapshot(other) == before


def test_an_index_dir_with_a_file_its_manifest_does_not_list_is_not_replaced(built, tmp_path):
    out = tmp_path / "index"
    clamp("index", "build", built.shards_dir, "--out", out, "--model", built.model_dir)
    (out / "notes.txt").write_text("my notes")
    output = clamp("index", "build", built.shards_dir, "--out", out, ok=False)
    assert "plus entries its manifest.json does not list (notes.txt)" in output
    assert (out / "notes.txt").read_text() == "my notes"


def test_an_index_of_an_older_version_without_a_kind_is_replaced(built, tmp_path):
    out = tmp_path / "index"
    clamp("index", "build", built.shards_dir, "--out", out, "--model", built.model_dir)
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["kind"]  # as written before manifests carried one
    (out / "manifest.json").write_text(json.dumps(manifest))
    clamp("index", "build", built.shards_dir, "--out", out, "--model", built.model_dir, "--m", 8)
    assert json.loads((out / "manifest.json").read_text())["M"] == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]  # no lock, partial or old dir left


def test_embed_and_export_refuse_each_others_dirs(built, tmp_path):
    index_before, shards_before = snapshot(built.index_dir), snapshot(built.shards_dir)
    output = clamp("embed", built.abc_dir, "--model", built.model_dir, "--out", built.index_dir, ok=False)
    assert "holds a clamp index dir" in output and "refusing to write shards into it" in output
    output = clamp("export", "--out", built.shards_dir, ok=False)
    assert "holds a clamp shards dir (1 shards): refusing to replace it with a model dir" in output
    assert snapshot(built.index_dir) == index_before and snapshot(built.shards_dir) == shards_before


def test_train_refuses_a_model_dir_before_training(built):
    before = snapshot(built.model_dir)
    output = clamp("train", "--out", built.model_dir, "--epochs", 1, ok=False)
    assert "holds a clamp model dir" in output and "refusing to write a checkpoint into it" in output
    assert snapshot(built.model_dir) == before
