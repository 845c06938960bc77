"""CLaMP 2 / CLaMP 3 towers in PyTorch; strict loading of their released checkpoint layout (spec §12-13)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from m3_helpers import tiny_m3_family, write_m3_checkpoint

from exporter.checkpoint import load_model
from exporter.m3_checkpoint import load_m3, read_state, to_official
from exporter.model import CLaMP
from runtime.model.families import load_family
from runtime.music.interleave import interleave_abc
from runtime.music.m3 import m3_patchilize

FOLK = "X:1\nT:Reel\nM:4/4\nL:1/8\nK:D\n|:d2fd AdFA|d2fd e2ge|d2fd AdFA|B2AG FDD2:|\n"


@pytest.fixture(scope="module", params=["clamp3-c2", "clamp2"])
def tiny(request) -> tuple[CLaMP, dict]:
    torch.manual_seed(0)
    family = tiny_m3_family(request.param)
    return CLaMP(family).eval(), family


def test_full_size_clamp3_has_the_published_layout():
    """605 keys and 457,896,960 parameters with the audio branch; we build the 404 we serve (§13.3)."""
    family = load_family("clamp3-c2")
    with torch.device("meta"):
        model = CLaMP(family)
    official = to_official(model.state_dict(), family)
    assert len(official) == 404
    count = {
        p: sum(v.numel() for k, v in official.items() if k.startswith(p))
        for p in ("text_model.", "text_proj.", "symbolic_model.", "symbolic_proj.")
    }
    assert count == {
        "text_model.": 278_043_648,
        "text_proj.": 590_592,
        "symbolic_model.": 92_334_336,
        "symbolic_proj.": 590_592,
    }
    audio = 85_747_200 + 590_592  # the 199 + 2 audio keys the loader ignores by name
    assert sum(count.values()) + audio == 457_896_960
    shapes = {k: tuple(v.shape) for k, v in official.items()}
    assert shapes["text_model.embeddings.word_embeddings.weight"] == (250002, 768)
    assert shapes["text_model.embeddings.position_embeddings.weight"] == (514, 768)
    assert shapes["symbolic_model.patch_embedding.weight"] == (768, 8192)
    assert shapes["symbolic_model.base.embeddings.position_embeddings.weight"] == (512, 768)
    assert shapes["symbolic_model.base.embeddings.token_type_embeddings.weight"] == (2, 768)
    assert sum(k.startswith("symbolic_model.base.encoder.layer.") for k in official) == 192


def test_released_layout_loads_strictly_and_ignores_only_audio_and_buffers(tiny, tmp_path):
    model, family = tiny
    directory = write_m3_checkpoint(tmp_path, model, family)
    assert any(k.startswith("audio_") for k in read_state(directory / family["checkpoint_file"])) == (
        family["checkpoint_layout"] == "clamp3"
    )
    loaded = load_m3(directory, family)
    for (key, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), key


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("drop", "missing keys (1): {music}_proj.bias"),
        ("extra", "unexpected keys (1): {music}_model.base.extra.weight"),
        ("shape", "shape mismatches (1): {music}_proj.weight"),
    ],
)
def test_a_checkpoint_that_does_not_fit_names_the_official_keys(tiny, tmp_path, change, message):
    model, family = tiny
    music = family["checkpoint_prefixes"]["music"]
    state = to_official(model.state_dict(), family)
    if change == "drop":
        extra = {}
        directory = write_m3_checkpoint(tmp_path, model, family)
        path = directory / family["checkpoint_file"]
        container = torch.load(path, weights_only=True)
        del container["model"][f"{music}_proj.bias"]
        torch.save(container, path)
    else:
        extra = (
            {f"{music}_model.base.extra.weight": torch.zeros(2)}
            if change == "extra"
            else {f"{music}_proj.weight": torch.zeros_like(state[f"{music}_proj.weight"])[:, :3]}
        )
        directory = write_m3_checkpoint(tmp_path, model, family, extra)
    with pytest.raises(ValueError, match=message.format(music=music).replace("(", r"\(").replace(")", r"\)")):
        load_m3(directory, family)


def test_family_name_resolution_needs_the_checkpoint_and_names_what_to_download(tmp_path):
    with pytest.raises(ValueError, match="weights_clamp3_c2_.*sander-wood/clamp3.*xlm-roberta-base"):
        load_model("clamp3-c2")
    with pytest.raises(FileNotFoundError, match="lacks weights_clamp3_c2_"):
        load_model("clamp3-c2", tmp_path)


def test_m3_patch_embedding_equals_the_one_hot_linear(tiny):
    model, _ = tiny
    patches = torch.from_numpy(m3_patchilize(interleave_abc(FOLK)).astype(np.int64)).unsqueeze(0)
    one_hot = F.one_hot(patches, num_classes=128).reshape(1, len(patches[0]), -1).float()
    with torch.no_grad():
        expected = model.music_enc.patch_embedding(one_hot)
        assert torch.allclose(model.music_enc.embed_patches(patches), expected, atol=1e-5)


def test_padded_m3_batch_equals_one_piece_at_a_time(tiny):
    model, _ = tiny
    short = m3_patchilize(interleave_abc(FOLK))
    long = m3_patchilize(interleave_abc(FOLK.replace("K:D\n", "K:D\nA4 B4|c8|A4 B4|c8|\n")))
    pieces = [torch.from_numpy(p.astype(np.int64)) for p in (short, long)]
    width = max(len(p) for p in pieces)
    batch = torch.zeros(2, width, 64, dtype=torch.long)
    mask = torch.zeros(2, width, dtype=torch.long)
    for row, piece in enumerate(pieces):
        batch[row, : len(piece)], mask[row, : len(piece)] = piece, 1
    with torch.no_grad():
        together = model.encode_music(batch, mask)
        alone = [model.encode_music(p.unsqueeze(0), torch.ones(1, len(p), dtype=torch.long)) for p in pieces]
    assert torch.allclose(together, torch.cat(alone), atol=1e-5)
