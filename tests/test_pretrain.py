"""Masked-patch pre-training of the music tower: choosing and corrupting patches, the decoder's loss,
a tiny training run that pre-trains first, and `clamp train --pretrain-epochs`."""

import copy
import json
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY_SIZES, tiny_family
from query_corpus import clamp
from safetensors.torch import load_file

import training.cli
from exporter.checkpoint import init_model, load_model, save_ours
from exporter.model import CLaMP
from runtime.music.patching import EOS_ID, MASK_ID, N_CLASSES, PAD_ID, prepare_music
from training.batches import pad_patches
from training.corpus import load_corpus
from training.pretrain import (
    CASE_PROBABILITIES,
    CASES,
    choose_case,
    choose_patches,
    content_length,
    corrupt,
    masked_batch,
    masked_patch_backward,
    patch_decoder,
    reconstruction_loss,
)
from training.train import TrainConfig, pretrain_music, train

SMALL_COLLECTION = ("miscFolk",)


@pytest.fixture(scope="module")
def tunes() -> list[np.ndarray]:
    """Eight real tunes as CLaMP 1 bar patches."""
    return [prepare_music(t.abc, 128) for t in load_corpus(collections=SMALL_COLLECTION)[:8]]


def test_masking_chooses_ceil_45_percent_of_each_tunes_own_patches():
    rng = np.random.default_rng(0)
    tunes = [rng.integers(1, 96, size=(n, 64)).astype(np.uint8) for n in (1, 2, 3, 7, 20, 64, 100)]
    batch = masked_batch(tunes, rng)
    assert batch.mask[batch.rows, batch.cols].all(), "a padding position was chosen"
    for row, patches in enumerate(tunes):
        cols = batch.cols[batch.rows == row].numpy()
        assert len(set(cols)) == len(cols) == math.ceil(Fraction(45, 100) * len(patches))
        np.testing.assert_array_equal(batch.targets[batch.rows == row].numpy(), patches[cols])
        masked = (batch.ids[row, cols] == MASK_ID).all(dim=1)
        assert masked.all() or not masked.any(), "the case is drawn per tune, not per patch"


def test_mask_shuffle_and_keep_do_what_they_say(tunes):
    rng = np.random.default_rng(1)
    patches = tunes[0]
    chosen = choose_patches(len(patches), rng)
    others = np.setdiff1d(np.arange(len(patches)), chosen)
    masked = corrupt(patches, chosen, "mask", rng)
    assert (masked[chosen] == MASK_ID).all()
    shuffled = corrupt(patches, chosen, "shuffle", rng)
    for i in chosen:
        n = content_length(patches[i])
        assert sorted(shuffled[i]) == sorted(patches[i]), "a shuffle keeps the patch's characters"
        np.testing.assert_array_equal(shuffled[i, n:], patches[i, n:])  # the EOS and pads stay put
    assert (shuffled[chosen] != patches[chosen]).any()
    for corrupted in (masked, shuffled):
        np.testing.assert_array_equal(corrupted[others], patches[others])
    np.testing.assert_array_equal(corrupt(patches, chosen, "keep", rng), patches)
    draws = [choose_case(rng) for _ in range(20_000)]
    for case, p in zip(CASES, CASE_PROBABILITIES, strict=True):
        assert draws.count(case) / len(draws) == pytest.approx(p, abs=0.01)


def test_a_patchs_content_is_what_precedes_its_eos():
    patch = np.arange(1, 65, dtype=np.uint8)
    assert content_length(patch) == 64 and content_length(np.full(64, EOS_ID)) == 0
    assert content_length(np.array([5, 6, EOS_ID, 0])) == 2


def test_pretraining_overfits_a_few_real_tunes(tunes):
    torch.manual_seed(0)
    encoder = CLaMP(tiny_family("bert")).music_enc
    decoder = patch_decoder(encoder)
    assert decoder.config.vocab_size == N_CLASSES and decoder.config.n_embd == TINY_SIZES["hidden_size"]
    batch = masked_batch(tunes, np.random.default_rng(0))
    params = list(encoder.parameters()) + list(decoder.parameters())
    optimizer = torch.optim.AdamW(params, lr=5e-3)
    losses = []
    for _ in range(40):
        optimizer.zero_grad()
        losses.append(masked_patch_backward(encoder, decoder, batch))
        optimizer.step()
    assert losses[0] == pytest.approx(math.log(N_CLASSES), rel=0.1), "untrained: about uniform"
    assert losses[-1] < 0.45 * losses[0], losses  # ~0.35 over seeds 0..2


def test_short_sorted_chunks_give_the_loss_and_gradient_of_one_full_pass(tunes):
    torch.manual_seed(0)
    encoder = CLaMP(tiny_family("bert")).music_enc.eval()
    decoder = patch_decoder(encoder).eval()
    batch = masked_batch(tunes[:3], np.random.default_rng(0))
    params = [*encoder.parameters(), *decoder.parameters()]
    hidden = encoder(batch.ids, batch.mask)[batch.rows, batch.cols]
    whole = reconstruction_loss(decoder, hidden, batch.targets) / (batch.targets != PAD_ID).sum()
    whole.backward()  # every patch, all 64 positions, in one pass
    expected = [p.grad.clone() for p in params if p.grad is not None]
    for p in params:
        p.grad = None
    assert masked_patch_backward(encoder, decoder, batch, chunk=7) == pytest.approx(whole.item(), rel=1e-5)
    chunked = [p.grad for p in params if p.grad is not None]
    assert len(chunked) == len(expected) > len(params) // 2
    for got, want in zip(chunked, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_pretraining_is_seeded_and_leaves_torchs_random_stream_alone(tunes):
    torch.manual_seed(0)
    model = CLaMP(tiny_family("bert"))
    before = copy.deepcopy(model.music_enc.state_dict())
    config = TrainConfig(pretrain_epochs=2, batch_size=4, warmup_steps=1)
    state = torch.get_rng_state()
    losses = pretrain_music(model, tunes, config, torch.device("cpu"))
    assert torch.equal(torch.get_rng_state(), state), "the contrastive stage must draw what it would have"
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    again = CLaMP(tiny_family("bert"))
    again.music_enc.load_state_dict(before)
    assert pretrain_music(again, tunes, config, torch.device("cpu")) == losses
    for name, value in model.music_enc.state_dict().items():
        torch.testing.assert_close(again.music_enc.state_dict()[name], value, rtol=0, atol=0)
    assert not torch.equal(before["patch_embedding.weight"], model.music_enc.patch_embedding.weight)


def test_a_tiny_run_that_pretrains_saves_the_usual_checkpoint(tmp_path: Path, tunes):
    config = TrainConfig(
        out=tmp_path / "ckpt",
        epochs=1,
        pretrain_epochs=1,
        batch_size=8,
        variants=1,
        limit=16,
        warmup_steps=1,
        cache_dir=None,
        collections=SMALL_COLLECTION,
        music_overrides={**TINY_SIZES, "num_hidden_layers": 1},
    )
    summary = train(config)
    assert len(summary["pretrain_losses"]) == 1 and math.isfinite(summary["pretrain_losses"][0])
    assert (
        json.loads((config.out / "training.json").read_text())["pretrain_losses"]
        == summary["pretrain_losses"]
    )
    model, family, _ = load_model(config.out)
    save_ours(init_model(family), family, tmp_path / "fresh")  # what a run without pre-training saves
    saved, fresh = (
        load_file(config.out / "model.safetensors"),
        load_file(tmp_path / "fresh/model.safetensors"),
    )
    assert {k: v.shape for k, v in saved.items()} == {k: v.shape for k, v in fresh.items()}
    ids, mask = pad_patches(tunes[:2])
    with torch.no_grad():
        assert torch.isfinite(model.encode_music(ids, mask)).all()


def test_clamp_train_passes_pretrain_epochs_on(tmp_path: Path, monkeypatch):
    configs = []

    def fake_training(config: TrainConfig) -> dict:
        configs.append(config)
        return {"train_tunes": 0, "seconds": 0}

    monkeypatch.setattr(training.cli, "run_training", fake_training)
    clamp("train", "--out", tmp_path / "a", "--no-eval", "--pretrain-epochs", 2)
    clamp("train", "--out", tmp_path / "b", "--no-eval")
    assert [c.pretrain_epochs for c in configs] == [2, 0]
