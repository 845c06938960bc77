"""`clamp export`: ONNX graphs with the agreed interface, parity gates, manifest, idempotent re-runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner
from helpers import real_tunes, tiny_model

import exporter.export
from exporter.checkpoint import resolve_checkpoint, save_ours
from exporter.export import build_model_dir
from exporter.manifest import source_sha256
from runtime.cli import main
from runtime.model.encoder import Encoder
from runtime.model.modeldir import compute_model_hash, encoder_file, file_sha256, read_manifest

REPO = Path(__file__).resolve().parents[1]
ALL_FILES = {"config.json", "tokenizer.json", "manifest.json"} | {
    encoder_file(tower, precision) for tower in ("text", "music") for precision in ("fp32", "fp16", "int8")
}


def clamp(*args: object, ok: bool = True) -> str:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert (result.exit_code == 0) == ok, f"clamp {args}: {result.output} {result.exception!r}"
    return result.output


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """The tiny random model saved in our checkpoint layout, with its tokenizer."""
    model, family, tokenizer_json = tiny_model()
    directory = tmp_path_factory.mktemp("checkpoint")
    save_ours(model, {**family, "checkpoint_layout": "ours"}, directory)
    shutil.copyfile(tokenizer_json, directory / "tokenizer.json")
    return directory


@pytest.fixture(scope="module")
def exported(checkpoint, tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("export") / "model"
    return out, clamp("export", "--model", checkpoint, "--out", out)


def test_export_writes_every_variant_and_a_complete_manifest(exported, checkpoint):
    out, output = exported
    assert {p.name for p in out.iterdir()} == ALL_FILES
    manifest = read_manifest(out)
    assert manifest["model_hash"] == compute_model_hash(out)
    assert set(manifest["files"]) == ALL_FILES - {"manifest.json"}
    assert all(file_sha256(out / name) == entry["sha256"] for name, entry in manifest["files"].items())
    assert manifest["source"]["sha256"] == source_sha256(resolve_checkpoint(checkpoint).files())
    assert {"torch", "onnx", "onnxruntime", "transformers"} <= set(manifest["versions"])
    assert manifest["export"]["precisions"] == ["fp32", "fp16", "int8"] and manifest["dropped"] == {}
    for precision, gate in manifest["parity"]["gates"].items():
        for figures in manifest["parity"][precision].values():
            assert figures["min_cosine"] >= gate
    assert manifest["parity"]["samples"]["tunes"] >= 6
    assert "| fp32 | music |" in output and "model hash" in output


def test_graphs_take_ids_and_masks_and_return_vector_and_projection(exported):
    out, _ = exported
    music = onnx.load(str(out / encoder_file("music", "fp32")))
    inputs = {i.name: i.type.tensor_type for i in music.graph.input}
    assert inputs["patch_ids"].elem_type == onnx.TensorProto.UINT8
    assert [d.dim_param or d.dim_value for d in inputs["patch_ids"].shape.dim] == ["batch", "patches", 64]
    assert [o.name for o in music.graph.output] == ["music_vector", "music_projection"]
    assert "Loop" not in {node.op_type for node in music.graph.node}  # the embedding-bag is plain Gathers
    text = onnx.load(str(out / encoder_file("text", "fp32")))
    assert [i.name for i in text.graph.input] == ["input_ids", "attention_mask"]
    assert [o.name for o in text.graph.output] == ["text_vector", "text_projection"]
    fp16 = onnx.load(str(out / encoder_file("music", "fp16")))
    assert "Attention" in {node.op_type for node in fp16.graph.node}  # fused by ORT's optimiser


def test_rerun_is_a_no_op_until_forced_or_settings_change(exported, checkpoint):
    out, _ = exported
    before = (out / "manifest.json").stat().st_mtime_ns
    assert "up to date" in clamp("export", "--model", checkpoint, "--out", out)
    assert (out / "manifest.json").stat().st_mtime_ns == before
    model_hash = read_manifest(out)["model_hash"]
    clamp("export", "--model", checkpoint, "--out", out, "--no-int8")
    assert {p.name for p in out.iterdir()} == {n for n in ALL_FILES if ".int8." not in n}
    assert read_manifest(out)["model_hash"] == model_hash  # same checkpoint, same identity
    assert not list(out.parent.glob(".model.*"))  # no temporary dirs left behind


def test_failing_fp32_parity_fails_the_export_and_keeps_the_old_dir(exported, checkpoint, monkeypatch):
    out, _ = exported
    before = read_manifest(out)
    monkeypatch.setitem(exporter.export.GATES, "fp32", 1.1)
    output = clamp("export", "--model", checkpoint, "--out", out, "--force", ok=False)
    assert "failed parity: text fp32: min cosine" in output
    assert read_manifest(out) == before
    assert not list(out.parent.glob(".model.*"))


def test_int8_below_its_gate_is_dropped_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.setitem(exporter.export.GATES, "int8", 1.1)
    model, family, tokenizer_json = tiny_model()
    manifest = build_model_dir(model, family, tokenizer_json, tmp_path / "model", {"sha256": "0"})
    assert set(manifest["dropped"]) == {"text_encoder.int8.onnx", "music_encoder.int8.onnx"}
    assert "min cosine" in manifest["dropped"]["text_encoder.int8.onnx"]
    assert not list((tmp_path / "model").glob("*.int8.onnx"))
    assert Encoder.open(tmp_path / "model", precision="int8").precisions == {"text": "fp32", "music": "fp32"}


def test_unresolvable_models_and_foreign_out_dirs_fail_with_advice(checkpoint, tmp_path):
    assert "needs --checkpoint DIR" in clamp("export", "--model", "clamp-s-512", "--out", tmp_path, ok=False)
    assert "neither a known model" in clamp("export", "--model", tmp_path, "--out", tmp_path / "m", ok=False)
    (tmp_path / "notes.txt").write_text("mine")
    output = clamp("export", "--model", checkpoint, "--out", tmp_path, ok=False)
    said = "holds 1 entry clamp did not write (notes.txt): refusing to replace it with a model dir"
    assert said in output and (tmp_path / "notes.txt").is_file()


@pytest.mark.slow
def test_default_model_exports_within_the_gates(tmp_path):
    """The shipped default model (models/default, trained by `clamp train`) exports and passes parity."""
    out = tmp_path / "default"
    clamp("export", "--out", out)
    manifest = read_manifest(out)
    assert manifest["export"]["precisions"] == ["fp32", "fp16", "int8"]
    for precision in ("fp32", "fp16"):
        assert set(manifest["parity"][precision]) == {"text", "music"}
    assert set(manifest["parity"]["int8"]) | {f.split("_")[0] for f in manifest["dropped"]} == {
        "text",
        "music",
    }
    encoder = Encoder.open(out)
    assert json.loads((out / "config.json").read_text())["model_name"] == "default"
    assert encoder.embed_abc(real_tunes()[:2]).shape == (2, 256)
