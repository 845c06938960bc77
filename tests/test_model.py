"""The PyTorch CLaMP: official module layout, exact patch embedding, padding-invariant batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import real_tunes, tiny_family, write_official_checkpoint

from exporter.checkpoint import load_model
from exporter.model import CLaMP, gathered_sum
from runtime.model.families import load_family
from runtime.music.patching import N_CLASSES, PATCH_LENGTH, prepare_music


def one_hot_patch_embedding(model: CLaMP, patches: torch.Tensor) -> torch.Tensor:
    """The released code's path (spec §1.2): one-hot(98), flattened position-major, through the Linear."""
    batch, n_patches, _ = patches.shape
    one_hot = F.one_hot(patches.long(), num_classes=N_CLASSES).reshape(batch, n_patches, -1).float()
    return model.music_enc.patch_embedding(one_hot)


def pad_patches(arrays: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(a) for a in arrays)
    patches = torch.zeros(len(arrays), width, PATCH_LENGTH, dtype=torch.long)
    mask = torch.zeros(len(arrays), width, dtype=torch.long)
    for row, array in enumerate(arrays):
        patches[row, : len(array)] = torch.from_numpy(array.astype(np.int64))
        mask[row, : len(array)] = 1
    return patches, mask


@pytest.fixture(scope="module", params=["roberta", "bert"])
def tiny(request) -> tuple[CLaMP, dict]:
    torch.manual_seed(0)
    family = tiny_family(request.param)
    return CLaMP(family).eval(), family


def test_patch_embedding_equals_the_one_hot_linear(tiny):
    model, _ = tiny
    patches = torch.from_numpy(np.stack([prepare_music(abc, 14) for abc in real_tunes()]).astype(np.int64))
    patches[0, 0, :] = torch.arange(PATCH_LENGTH) % N_CLASSES  # every position, classes 0..63
    patches[1, 0, :] = N_CLASSES - 1 - torch.arange(PATCH_LENGTH) % N_CLASSES  # and 97..34
    encoder = model.music_enc
    with torch.no_grad():
        expected = one_hot_patch_embedding(model, patches)
        actual = encoder.embed_patches(patches.to(torch.uint8))
        rows = patches + encoder.class_offsets
        in_graphs = gathered_sum(rows, encoder.patch_embedding.weight.t()) + encoder.patch_embedding.bias
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(in_graphs, expected, atol=1e-5, rtol=1e-5)  # the ONNX export's formulation


def test_padded_music_batch_equals_one_tune_at_a_time(tiny):
    model, family = tiny
    arrays = [prepare_music(abc, family["music"]["max_patches"]) for abc in real_tunes()]
    assert len({len(a) for a in arrays}) > 3, "the tunes must differ in length for padding to matter"
    with torch.no_grad():
        batched = model.encode_music(*pad_patches(arrays))
        single = torch.cat([model.encode_music(*pad_patches([a])) for a in arrays])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)


def test_padded_text_batch_equals_one_text_at_a_time(tiny):
    model, family = tiny
    text = family["text"]
    generator = torch.Generator().manual_seed(1)
    lengths = [3, 9, 17, 30]
    ids = torch.full((len(lengths), max(lengths)), text["pad_token_id"], dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, length in enumerate(lengths):
        ids[row, :length] = torch.randint(5, text["vocab_size"], (length,), generator=generator)
        mask[row, :length] = 1
    with torch.no_grad():
        batched = model.encode_text(ids, mask)
        single = torch.cat(
            [model.encode_text(ids[r : r + 1, :n], mask[r : r + 1, :n]) for r, n in enumerate(lengths)]
        )
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)


def test_outputs_are_pooled_then_projected_and_unnormalised(tiny):
    model, family = tiny
    patches, mask = pad_patches([prepare_music(real_tunes()[0], 64)])
    with torch.no_grad():
        pooled = model.music_pooled(patches, mask)
        projected = model.encode_music(patches, mask)
    assert pooled.shape == (1, family["music"]["hidden_size"])
    assert projected.shape == (1, family["projection_dim"])
    torch.testing.assert_close(projected, model.music_proj(pooled))
    assert not torch.allclose(projected.norm(dim=-1), torch.ones(1))


def test_wrong_patch_length_is_refused(tiny):
    model, _ = tiny
    with pytest.raises(ValueError, match="expects 64"):
        model.encode_music(torch.zeros(1, 2, 32, dtype=torch.long), torch.ones(1, 2))


def test_full_size_clamp_s_512_has_the_published_layout_and_loads_back(tmp_path):
    """One full-size model: the 214-key, 131,632,128-parameter layout of spec §1.9, saved and reloaded."""
    family = load_family("clamp-s-512")
    torch.manual_seed(0)
    model = CLaMP(family).eval()
    state = model.state_dict()
    assert sum(t.numel() for t in state.values()) == 131_632_128
    assert len(state) + 2 == 214  # + the two position_ids buffers transformers 4.18 saved
    shapes = {
        "text_enc.embeddings.word_embeddings.weight": (50265, 768),
        "text_enc.embeddings.position_embeddings.weight": (514, 768),
        "text_enc.embeddings.token_type_embeddings.weight": (1, 768),
        "text_enc.pooler.dense.weight": (768, 768),
        "text_proj.weight": (768, 768),
        "music_enc.patch_embedding.weight": (768, 6272),
        "music_enc.enc.embeddings.word_embeddings.weight": (1, 768),
        "music_enc.enc.embeddings.position_embeddings.weight": (512, 768),
        "music_enc.enc.embeddings.token_type_embeddings.weight": (2, 768),
        "music_enc.enc.encoder.layer.5.output.dense.weight": (768, 3072),
        "music_proj.bias": (768,),
    }
    assert {key: tuple(state[key].shape) for key in shapes} == shapes
    checkpoint = write_official_checkpoint(tmp_path / "clamp-small-512", model, family)
    del state

    loaded, loaded_family, tokenizer_json = load_model(checkpoint)  # family detected from config.json
    assert loaded_family["name"] == "clamp-s-512" and tokenizer_json.is_file()
    patches, mask = pad_patches([prepare_music(real_tunes()[1], 512)])
    ids = torch.tensor([[0, 250, 1000, 40000, 2]])
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_music(patches, mask), model.encode_music(patches, mask))
        torch.testing.assert_close(
            loaded.encode_text(ids, torch.ones_like(ids)), model.encode_text(ids, torch.ones_like(ids))
        )
