"""The runtime Encoder: ONNX Runtime matches PyTorch on real texts and tunes; batching changes no vector."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest
from helpers import SENTENCES, real_tunes, tiny_model, tiny_model_dir

from exporter.parity import torch_reference
from runtime.model.encoder import Encoder, patch_batches
from runtime.model.modeldir import ModelDirError, compute_model_hash, encoder_file, read_manifest
from runtime.music.patching import prepare_music

TEXTS = [*SENTENCES, "", "a very long text " * 40]  # empty and over-long (truncated to max_tokens) too


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory.mktemp("encoder"))


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    """PyTorch raw projections, one item at a time (no padding), as clamp.py computes them."""
    model, family, tokenizer_json = tiny_model()
    return torch_reference(model, family, tokenizer_json, TEXTS, list(real_tunes()))


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_fp32_matches_pytorch_on_real_texts_and_tunes(model_dir, reference):
    encoder = Encoder.open(model_dir, provider="cpu")  # auto: fp32 on CPU
    assert encoder.precisions == {"text": "fp32", "music": "fp32"}
    np.testing.assert_allclose(encoder.embed_texts(TEXTS, normalized=False), reference["text"], atol=2e-5)
    np.testing.assert_allclose(encoder.embed_abc(real_tunes()), unit(reference["music"]), atol=2e-5)
    texts = encoder.embed_texts(TEXTS)
    assert texts.dtype == np.float32 and texts.shape == (len(TEXTS), encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(texts, unit(reference["text"]), atol=2e-5)


@pytest.mark.parametrize(("precision", "min_cosine"), [("fp16", 0.999), ("int8", 0.99)])
def test_reduced_precisions_stay_close_to_pytorch(model_dir, reference, precision, min_cosine):
    encoder = Encoder.open(model_dir, provider="cpu", precision=precision)
    assert encoder.precisions == {"text": precision, "music": precision}
    for vectors, tower in ((encoder.embed_texts(TEXTS), "text"), (encoder.embed_abc(real_tunes()), "music")):
        assert (vectors * unit(reference[tower])).sum(axis=1).min() > min_cosine


def test_batching_and_order_never_change_an_fp32_vector(model_dir):
    encoder = Encoder.open(model_dir, provider="cpu")
    patches = [prepare_music(abc, encoder.max_patches) for abc in real_tunes()]
    one_by_one = np.concatenate([encoder.embed_patches([p]) for p in patches])
    np.testing.assert_allclose(encoder.embed_patches(patches), one_by_one, atol=1e-6)
    np.testing.assert_allclose(encoder.embed_patches(patches, max_batch_patches=40), one_by_one, atol=1e-6)
    reversed_order = encoder.embed_patches(patches[::-1])
    np.testing.assert_allclose(reversed_order[::-1], one_by_one, atol=1e-6)
    texts_one_by_one = np.concatenate([encoder.embed_texts([t]) for t in TEXTS])
    np.testing.assert_allclose(encoder.embed_texts(TEXTS, batch_size=3), texts_one_by_one, atol=1e-6)


def test_patch_batches_respect_the_padded_budget():
    lengths = [5, 90, 12, 12, 40, 1, 7]
    batches = patch_batches(lengths, max_batch_patches=100)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 100
        assert lengths[batch[0]] == max(lengths[i] for i in batch)  # the first sets the padded width


def test_bad_patch_arrays_are_refused_with_their_index(model_dir):
    encoder = Encoder.open(model_dir, provider="cpu")
    good = prepare_music(real_tunes()[0], encoder.max_patches)
    with pytest.raises(ValueError, match=r"patches\[1\] has shape \(3, 32\)"):
        encoder.embed_patches([good, np.zeros((3, 32), np.uint8)])
    with pytest.raises(ValueError, match=r"patches\[0\] has 0 patches"):
        encoder.embed_patches([np.zeros((0, 64), np.uint8)])
    with pytest.raises(ValueError, match=r"has 513 patches.*prepare_music"):
        encoder.embed_patches([np.ones((513, 64), np.uint8)])
    assert encoder.embed_texts([]).shape == (0, encoder.dim) == encoder.embed_abc([]).shape


def test_identity_and_settings(model_dir):
    encoder = Encoder.open(model_dir, provider="cpu", threads=1)
    assert encoder.model_hash == read_manifest(model_dir)["model_hash"] == compute_model_hash(model_dir)
    assert (encoder.dim, encoder.max_patches, encoder.model_name) == (16, 512, "tiny-roberta")
    assert encoder.session("music").get_session_options().intra_op_num_threads == 1
    assert Encoder.open(model_dir).threads >= 1


def test_changed_files_are_named_on_open(model_dir, tmp_path):
    broken = shutil.copytree(model_dir, tmp_path / "broken")
    music = broken / encoder_file("music", "fp32")
    original = music.read_bytes()
    data = bytearray(original)
    data[-100] ^= 0xFF  # same size: only the sha256 can tell
    music.write_bytes(bytes(data))
    Encoder.open(broken)  # the cheap size check passes
    with pytest.raises(ModelDirError, match="music_encoder.onnx does not match its sha256"):
        Encoder.open(broken, full_check=True)
    music.write_bytes(bytes(data[:-1]))
    with pytest.raises(ModelDirError, match="music_encoder.onnx has .* bytes"):
        Encoder.open(broken)
    music.write_bytes(original)
    (broken / "tokenizer.json").unlink()
    with pytest.raises(ModelDirError, match="tokenizer.json is missing"):
        Encoder.open(broken)
    with pytest.raises(ModelDirError, match="does not exist.*clamp export"):
        Encoder.open(tmp_path / "nowhere")


def test_dropped_int8_tower_falls_back_to_fp32(model_dir, tmp_path):
    partial = shutil.copytree(model_dir, tmp_path / "partial")
    (partial / encoder_file("text", "int8")).unlink()
    manifest = read_manifest(partial)
    del manifest["files"][encoder_file("text", "int8")]
    (partial / "manifest.json").write_text(json.dumps(manifest))
    assert Encoder.open(partial, precision="int8").precisions == {"text": "fp32", "music": "int8"}


def test_unknown_or_unavailable_providers_and_precisions_are_explained(model_dir):
    with pytest.raises(ValueError, match="unknown precision 'int4'"):
        Encoder.open(model_dir, precision="int4")
    with pytest.raises(ValueError, match="unknown provider 'tpu'"):
        Encoder.open(model_dir, provider="tpu")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(ValueError, match="onnxruntime-gpu"):
            Encoder.open(model_dir, provider="cuda")
        assert Encoder.open(model_dir).provider == "cpu"
