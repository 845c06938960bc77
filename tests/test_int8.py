"""Static int8: bit-identical vectors whatever the batch, the export's int8 gate, and `auto` by CPU flags."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import SENTENCES, real_tunes, tiny_model, tiny_model_dir

import exporter.int8gate
import runtime.model.cpu
from exporter.export import build_model_dir
from exporter.model import masked_mean, ordered_masked_mean
from runtime.model.cpu import fast_int8_flags
from runtime.model.encoder import Encoder
from runtime.model.modeldir import INT8_SCHEME, encoder_file, read_manifest
from runtime.music.patching import prepare_music

AVX2_ONLY = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n"
VNNI = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma avx512f avx512_vnni\n"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return tiny_model_dir(tmp_path_factory.mktemp("int8"))


def fake_cpu(monkeypatch, tmp_path: Path, cpuinfo: str) -> None:
    (tmp_path / "cpuinfo").write_text(cpuinfo)
    monkeypatch.setattr(runtime.model.cpu, "CPUINFO", tmp_path / "cpuinfo")


def test_int8_vectors_are_bit_identical_alone_in_any_batch_and_across_runs(model_dir):
    encoder = Encoder.open(model_dir, provider="cpu", precision="int8")
    assert encoder.precisions == {"text": "int8", "music": "int8"}
    patches = [prepare_music(abc, encoder.max_patches) for abc in real_tunes()]
    alone = np.concatenate([encoder.embed_patches([p]) for p in patches])
    assert np.array_equal(encoder.embed_patches(patches), alone)
    assert np.array_equal(encoder.embed_patches(patches, max_batch_patches=40), alone)
    assert np.array_equal(encoder.embed_patches(patches[::-1])[::-1], alone)
    rerun = Encoder.open(model_dir, provider="cpu", precision="int8", threads=1)
    assert np.array_equal(rerun.embed_patches(patches), alone)
    texts = [*SENTENCES, "reel " * 40]
    texts_alone = np.concatenate([encoder.embed_texts([t]) for t in texts])
    assert np.array_equal(encoder.embed_texts(texts), texts_alone)
    assert np.array_equal(rerun.embed_texts(texts, batch_size=3), texts_alone)


def test_ordered_pooling_is_the_masked_mean():
    hidden = torch.randn(3, 7, 5, generator=torch.Generator().manual_seed(0))
    mask = torch.tensor([[1] * 7, [1, 1, 1, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0]])
    torch.testing.assert_close(ordered_masked_mean(hidden, mask), masked_mean(hidden, mask))


def test_export_records_the_int8_gate_measured_on_eval_tunes(model_dir):
    manifest = read_manifest(model_dir)
    assert manifest["export"]["int8_scheme"] == INT8_SCHEME and manifest["dropped"] == {}
    record = manifest["int8"]
    assert record["scheme"] == INT8_SCHEME
    assert record["calibration"] == {"split": "train", "tunes": 200, "texts": 200}
    assert record["eval"]["split"] == "eval" and record["eval"]["tunes"] == 500
    for tower in ("text", "music"):
        figures = record[tower]
        assert figures["passed"] and figures["bit_identical_alone_and_batched"]
        assert figures["min_cosine_vs_fp32"] >= record["gates"]["min_cosine"][tower]
        assert figures["mrr_fp32"] - figures["mrr_int8"] <= record["gates"]["max_mrr_drop"]


def test_auto_runs_int8_only_where_the_cpu_has_vnni_or_amx_and_the_gate_passed(
    model_dir, tmp_path, monkeypatch
):
    fake_cpu(monkeypatch, tmp_path, AVX2_ONLY)
    assert Encoder.open(model_dir, provider="cpu").precisions == {"text": "fp32", "music": "fp32"}
    fake_cpu(monkeypatch, tmp_path, VNNI)
    assert fast_int8_flags() == ["avx512_vnni"]
    assert Encoder.open(model_dir, provider="cpu").precisions == {"text": "int8", "music": "int8"}
    gated = shutil.copytree(model_dir, tmp_path / "gated")
    manifest = read_manifest(gated)
    manifest["int8"]["text"]["passed"] = False
    (gated / "manifest.json").write_text(json.dumps(manifest))
    assert Encoder.open(gated, provider="cpu").precisions == {"text": "fp32", "music": "int8"}
    del manifest["int8"]  # an export of the dynamic-int8 days: never chosen by auto
    (gated / "manifest.json").write_text(json.dumps(manifest))
    assert Encoder.open(gated, provider="cpu").precisions == {"text": "fp32", "music": "fp32"}
    assert Encoder.open(gated, provider="cpu", precision="int8").precisions == {
        "text": "int8",
        "music": "int8",
    }


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    (tmp_path / "amx").write_text("flags\t\t: avx2 avx_vnni amx_bf16 amx_int8 amx_tile\n")
    assert fast_int8_flags(tmp_path / "amx") == ["avx_vnni", "amx_int8"]
    (tmp_path / "avx2").write_text(AVX2_ONLY)
    assert fast_int8_flags(tmp_path / "avx2") == []
    assert fast_int8_flags(tmp_path / "missing") == []


def test_a_tower_failing_the_int8_gate_is_dropped_with_its_figures(tmp_path, monkeypatch):
    monkeypatch.setitem(exporter.int8gate.GATES, "min_cosine", {"music": 1.1, "text": 0.0})
    model, family, tokenizer_json = tiny_model()
    manifest = build_model_dir(model, family, tokenizer_json, tmp_path / "model", {"sha256": "0"})
    assert set(manifest["dropped"]) == {encoder_file("music", "int8")}
    assert "int8 gate on eval tunes: min cosine vs fp32" in manifest["dropped"][encoder_file("music", "int8")]
    assert not manifest["int8"]["music"]["passed"] and manifest["int8"]["text"]["passed"]
    assert not (tmp_path / "model" / encoder_file("music", "int8")).exists()
    fake_cpu(monkeypatch, tmp_path, VNNI)
    assert Encoder.open(tmp_path / "model", provider="cpu").precisions == {"text": "int8", "music": "fp32"}
