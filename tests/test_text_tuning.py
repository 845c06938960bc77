"""Tuning the text tower's top layers (TrainConfig.text_tuned_layers): the cached-prefix path computes what
the full forward does, the option trains only those layers, and checkpoints store and load exactly them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import TINY_SIZES, tiny_family
from safetensors.torch import load_file

from exporter.checkpoint import (
    TOKENIZER_FILE,
    first_tuned_text_layer,
    init_model,
    load_model,
    load_ours,
    pretrained_text_dir,
    save_ours,
)
from exporter.model import CLaMP
from runtime.model.families import load_family
from runtime.model.text import TextTokenizer
from training import cli
from training import train as train_module
from training.batches import pad_rows, pooled_above, text_prefixes
from training.train import TrainConfig, _optimizer, cached_per_text, train, trainable_parameters

TEXTS = ["a lively jig in D major", "slow air", "a reel in A dorian, from the Ryan collection, 4/4 time"]
ONE_LAYER = {**TINY_SIZES, "num_hidden_layers": 1}


def tiny_default_family(tuned: int = 0) -> dict:
    """The default family (pretrained MiniLM text tower) with a one-layer music tower."""
    family = load_family("default")
    return {
        **family,
        "text": {**family["text"], "trainable_layers": tuned},
        "music": {**family["music"], **ONE_LAYER},
    }


def tokenizer_of(family: dict) -> TextTokenizer:
    text = family["text"]
    return TextTokenizer.from_file(
        pretrained_text_dir(family) / TOKENIZER_FILE, text["max_tokens"], text["pad_token_id"]
    )


@pytest.fixture(scope="module")
def minilm() -> CLaMP:
    return init_model(tiny_default_family()).eval()


@pytest.mark.parametrize("first", [0, 5, 6])
def test_cached_prefix_path_equals_the_full_forward(minilm, first):
    """Hidden states entering layer `first`, trimmed to each text and padded again per batch, then the
    layers above and the pooling: CLaMP.text_pooled's vectors (the cache holds float32, so to 1e-5)."""
    family = tiny_default_family()
    tokenizer = tokenizer_of(family)
    prefixes = text_prefixes(minilm, tokenizer, TEXTS, first, torch.device("cpu"))
    assert [len(p) for p in prefixes] == [len(ids) for ids in tokenizer.token_ids(TEXTS)]
    ids, mask = (torch.from_numpy(a) for a in tokenizer(TEXTS))
    with torch.no_grad():
        expected = minilm.text_pooled(ids, mask)
        reordered = [prefixes[i] for i in (2, 0, 1)]  # batch shape and order do not matter
        actual = pooled_above(minilm, *pad_rows(reordered), first)
    torch.testing.assert_close(actual, expected[[2, 0, 1]], atol=1e-5, rtol=0)


def test_per_text_cache_reads_ragged_arrays_and_lit_features(tmp_path: Path):
    path = tmp_path / "cache.npz"
    arrays = {t: np.full((len(t) % 5 + 1, 3), i, dtype=np.float32) for i, t in enumerate(TEXTS)}
    first = cached_per_text(path, TEXTS[:2], lambda missing: [arrays[t] for t in missing], "test")
    both = cached_per_text(path, TEXTS, lambda missing: [arrays[t] for t in missing], "test")
    again = cached_per_text(path, TEXTS[::-1], lambda missing: pytest.fail(f"re-encoded {missing}"), "test")
    for got in (first, both, again[::-1]):
        for text, array in zip(TEXTS, got, strict=False):
            np.testing.assert_array_equal(array, arrays[text])
    lit = tmp_path / "lit.npz"  # LiT's feature cache as first written: one row per text, no "rows"
    np.savez(lit, texts=json.dumps(TEXTS), features=np.eye(3, dtype=np.float32))
    read = cached_per_text(lit, TEXTS, lambda missing: pytest.fail("cached"), "test")
    np.testing.assert_array_equal(np.concatenate(read), np.eye(3))


def test_tuned_layers_learn_at_a_fraction_of_the_lr():
    model = CLaMP(tiny_family("bert"))  # two text layers
    params, text = trainable_parameters(model, 1)
    learning = {name for name, p in model.named_parameters() if p.requires_grad}
    frozen = {name for name, _ in model.named_parameters() if name.startswith("text_enc.")} - {
        name for name, _ in model.named_parameters() if name.startswith("text_enc.encoder.layer.1.")
    }
    assert learning == {name for name, _ in model.named_parameters()} - frozen
    assert len(params) + len(text) == len(learning)
    logit_scale = torch.nn.Parameter(torch.zeros(()))
    groups = _optimizer([*params, logit_scale], TrainConfig(lr=1e-3, text_lr_scale=0.1), text).param_groups
    lrs = {id(p): group["lr"] for group in groups for p in group["params"]}
    assert {lrs[id(p)] for p in text} == {1e-4} and {lrs[id(p)] for p in [*params, logit_scale]} == {1e-3}


@pytest.mark.parametrize("tuned", [0, 1])
def test_training_tunes_only_the_top_layers_and_checkpoints_them(tmp_path: Path, monkeypatch, tuned):
    trained = {}

    def keep_state(model, family, out):
        trained.update({k: v.clone() for k, v in model.state_dict().items()})
        save_ours(model, family, out)

    monkeypatch.setattr(train_module, "save_ours", keep_state)
    config = TrainConfig(
        out=tmp_path / "ckpt",
        epochs=1,
        batch_size=8,
        variants=2,
        limit=16,
        warmup_steps=1,
        lr=1e-3,
        classical=False,
        round_trips=None,
        collections=("miscFolk",),
        music_overrides=ONE_LAYER,
        cache_dir=tmp_path / "cache",
        text_tuned_layers=tuned,
    )
    summary = train(config)
    assert np.isfinite(summary["epoch_losses"]).all()
    assert summary["config"]["text_tuned_layers"] == tuned
    cached = {path.name.rsplit("-", 1)[0] for path in config.cache_dir.glob("text-*.npz")}
    assert cached == {"text-prefixes" if tuned else "text-features"}
    pretrained = init_model(tiny_default_family()).state_dict()
    changed = {
        k for k in pretrained if k.startswith("text_enc.") and not torch.equal(trained[k], pretrained[k])
    }
    tuned_keys = {k for k in pretrained if k.startswith("text_enc.encoder.layer.5.")} if tuned else set()
    assert changed == tuned_keys  # every weight of the tuned layer learns, and nothing else of the tower

    family = json.loads((config.out / "config.json").read_text())
    assert family == tiny_default_family(tuned)
    stored = load_file(config.out / "model.safetensors")
    assert {k for k in stored if k.startswith("text_enc.")} == tuned_keys
    assert set(stored) == {k for k in trained if not k.startswith("text_enc.")} | tuned_keys

    loaded, _, tokenizer_json = load_model(config.out)
    model = CLaMP(family)
    model.load_state_dict(trained)
    ids, mask = (torch.from_numpy(a) for a in tokenizer_of(family)(TEXTS))
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.encode_text(ids, mask), model.eval().encode_text(ids, mask), atol=0, rtol=0
        )
    assert tokenizer_json == pretrained_text_dir(family) / TOKENIZER_FILE


def test_loading_is_strict_about_the_tuned_layers(tmp_path: Path, minilm):
    """A config that says tuned with no tuned layers stored fails; stored layers a LiT config denies too."""
    save_ours(minilm, tiny_default_family(), tmp_path)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(tiny_default_family(2)))
    with pytest.raises(ValueError, match=r"missing keys .*text_enc\.encoder\.layer\.4\."):
        load_ours(tmp_path)
    save_ours(minilm, tiny_default_family(2), tmp_path)
    config.write_text(json.dumps(tiny_default_family(0)))
    with pytest.raises(ValueError, match=r"unexpected keys .*text_enc\.encoder\.layer\.5\."):
        load_ours(tmp_path)
    with pytest.raises(ValueError, match="trainable_layers must be 0..6, not 7"):
        first_tuned_text_layer(tiny_default_family(7))


def test_clamp_train_passes_the_tuned_layers_on(tmp_path: Path, monkeypatch):
    configs = []
    monkeypatch.setattr(
        cli, "run_training", lambda config: configs.append(config) or {"train_tunes": 0, "seconds": 0}
    )
    args = ["--out", str(tmp_path / "ckpt"), "--no-eval"]
    assert CliRunner().invoke(cli.train, args).exit_code == 0
    assert CliRunner().invoke(cli.train, [*args, "--text-tuned-layers", "2"]).exit_code == 0
    assert [c.text_tuned_layers for c in configs] == [0, 2]
