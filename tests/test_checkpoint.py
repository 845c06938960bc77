"""Checkpoints: the official layout loads strictly and exactly, damage is named, our format round-trips."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import (
    SENTENCES,
    official_config,
    official_state_dict,
    tiny_family,
    write_official_checkpoint,
    write_roberta_tokenizer_files,
)
from safetensors.torch import load_file
from tokenizers import Tokenizer

from exporter.checkpoint import (
    init_model,
    load_model,
    load_official,
    load_ours,
    pretrained_text_dir,
    roberta_tokenizer,
    save_ours,
)
from exporter.model import CLaMP
from runtime.model.families import load_family

TEXT_IDS = torch.tensor([[0, 57, 101, 220, 2, 1, 1], [0, 99, 12, 7, 30, 150, 2]])
PATCHES = torch.randint(0, 98, (2, 9, 64), generator=torch.Generator().manual_seed(3))
PATCH_MASK = torch.tensor([[1] * 5 + [0] * 4, [1] * 9])


def outputs(model: CLaMP) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return model.encode_text(TEXT_IDS, (TEXT_IDS != 1).long()), model.encode_music(PATCHES, PATCH_MASK)


@pytest.fixture(scope="module")
def source():
    """A tiny clamp-s-shaped model with random weights and its family."""
    torch.manual_seed(0)
    family = tiny_family("roberta")
    return CLaMP(family).eval(), family


def test_official_checkpoint_loads_strictly_and_reproduces_the_source(source, tmp_path):
    model, family = source
    checkpoint = write_official_checkpoint(tmp_path, model, family)
    assert len(torch.load(checkpoint / "pytorch_model.bin", weights_only=True)) == len(model.state_dict()) + 2
    loaded = load_official(checkpoint, family)
    assert not loaded.training
    for expected, actual in zip(outputs(model), outputs(loaded), strict=True):
        torch.testing.assert_close(actual, expected, atol=0, rtol=0)


def test_official_checkpoint_without_position_id_buffers_loads_too(source, tmp_path):
    model, family = source
    checkpoint = write_official_checkpoint(tmp_path, model, family, state=model.state_dict())
    torch.testing.assert_close(outputs(load_official(checkpoint, family))[1], outputs(model)[1])


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (lambda s: s.pop("music_proj.bias"), r"missing keys \(1\): music_proj\.bias"),
        (
            lambda s: s.pop("text_enc.encoder.layer.1.output.dense.weight"),
            "text_enc.encoder.layer.1.output.dense.weight",
        ),
        (lambda s: s.update({"logit_scale": torch.ones(())}), r"unexpected keys \(1\): logit_scale"),
        (lambda s: s.update({"text_enc.embeddings.token_type_ids": torch.zeros(1, 34)}), "token_type_ids"),
        (
            lambda s: s.update({"music_enc.patch_embedding.weight": torch.zeros(32, 64 * 96)}),
            r"music_enc\.patch_embedding\.weight: checkpoint \(32, 6144\) vs model \(32, 6272\)",
        ),
    ],
    ids=["missing-proj", "missing-layer", "extra-key", "extra-buffer", "wrong-shape"],
)
def test_damaged_official_checkpoint_fails_naming_the_key(source, tmp_path, damage, named):
    model, family = source
    state = official_state_dict(model, family)
    damage(state)
    checkpoint = write_official_checkpoint(tmp_path, model, family, state=state)
    with pytest.raises(ValueError, match=named):
        load_official(checkpoint, family)


def test_config_of_the_other_official_size_is_refused_with_advice(source, tmp_path):
    model, family = source
    checkpoint = write_official_checkpoint(tmp_path, model, family)
    (checkpoint / "config.json").write_text(json.dumps(official_config(load_family("clamp-s-1024"))))
    with pytest.raises(ValueError, match="max_position_embeddings=1024.*use --model clamp-s-1024"):
        load_official(checkpoint, "clamp-s-512")


def test_missing_files_and_names_give_actionable_errors(tmp_path):
    with pytest.raises(ValueError, match="needs --checkpoint DIR.*README"):
        load_model("clamp-s-512")
    with pytest.raises(FileNotFoundError, match="lacks pytorch_model.bin"):
        (tmp_path / "config.json").write_text("{}")
        load_official(tmp_path, "clamp-s-512")
    with pytest.raises(FileNotFoundError, match="neither a known model"):
        load_model(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="model default has no checkpoint.*--checkpoint"):
        load_model("default", checkpoint=tmp_path / "empty")


def test_roberta_tokenizer_matches_transformers(tmp_path):
    """Our tokenizer.json for clamp-s gives the ids of HF's RoBERTa tokenizer on the same vocab/merges."""
    from transformers import RobertaTokenizer

    write_roberta_tokenizer_files(tmp_path)
    ours = roberta_tokenizer(tmp_path / "vocab.json", tmp_path / "merges.txt")
    reference = RobertaTokenizer.from_pretrained(tmp_path)  # as CLaMP loads distilroberta-base's files
    texts = [*SENTENCES, "  two  spaces,\ttabs\nand lines", "</s> inside"]
    assert [e.ids for e in ours.encode_batch(texts)] == reference(texts)["input_ids"]
    assert ours.encode("reel").ids[0] == 0 and ours.encode("reel").ids[-1] == 2


def test_our_format_round_trips_without_storing_the_frozen_text_tower(tmp_path):
    family = load_family("default")
    family["music"].update(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    family["projection_dim"] = 16
    torch.manual_seed(0)
    model = init_model(family).eval()
    save_ours(model, family, tmp_path)
    stored = load_file(tmp_path / "model.safetensors")
    assert not any(key.startswith("text_enc.") for key in stored) and "text_proj.weight" in stored
    assert json.loads((tmp_path / "config.json").read_text()) == family

    loaded, loaded_family, tokenizer_json = load_model(tmp_path)
    assert loaded_family == family
    assert tokenizer_json == pretrained_text_dir(family) / "tokenizer.json"
    ids = torch.tensor(Tokenizer.from_file(str(tokenizer_json)).encode("a lively jig").ids).unsqueeze(0)
    with torch.no_grad():
        for module in ("text", "music"):
            args = (ids, torch.ones_like(ids)) if module == "text" else (PATCHES, PATCH_MASK)
            encode = f"encode_{module}"
            torch.testing.assert_close(getattr(loaded, encode)(*args), getattr(model, encode)(*args))


def test_pretrained_text_tower_is_all_minilm(tmp_path):
    """init_model starts the default text tower from all-MiniLM-L6-v2: same hidden states as its weights."""
    family = load_family("default")
    model = init_model(family)
    reference = load_file(pretrained_text_dir(family) / "model.safetensors")
    torch.testing.assert_close(
        model.text_enc.embeddings.word_embeddings.weight, reference["embeddings.word_embeddings.weight"]
    )
    torch.testing.assert_close(
        model.text_enc.encoder.layer[5].output.dense.weight, reference["encoder.layer.5.output.dense.weight"]
    )


@pytest.mark.parametrize("arch", ["roberta", "bert"])
def test_our_format_stores_a_trained_text_tower(tmp_path, arch):
    family = tiny_family(arch)
    family["text"]["trainable_layers"] = 1
    torch.manual_seed(1)
    model = CLaMP(family).eval()
    save_ours(model, family, tmp_path)
    assert "text_enc.embeddings.word_embeddings.weight" in load_file(tmp_path / "model.safetensors")
    loaded, _ = load_ours(tmp_path)
    for expected, actual in zip(outputs(model), outputs(loaded), strict=True):
        torch.testing.assert_close(actual, expected, atol=0, rtol=0)


def test_damaged_ours_checkpoint_fails_naming_the_key(tmp_path):
    family = tiny_family("roberta")
    model = CLaMP(family)
    save_ours(model, family, tmp_path)
    family["music"]["num_hidden_layers"] = 3
    (tmp_path / "config.json").write_text(json.dumps(family))
    with pytest.raises(ValueError, match=r"missing keys .*music_enc\.enc\.encoder\.layer\.2\."):
        load_ours(tmp_path)
