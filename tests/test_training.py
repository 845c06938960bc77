"""Training and evaluation of the default model: metrics on hand-made cases, the loss, a tiny real run."""

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY_SIZES, tiny_family
from safetensors.torch import load_file

from exporter.checkpoint import init_model, load_ours, save_ours
from exporter.model import CLaMP
from runtime.model.families import load_family
from runtime.music.patching import prepare_music
from training.batches import length_batches, pad_patches
from training.corpus import load_corpus
from training.evaluate import CARD_END, CARD_START, evaluate, markdown_table, write_into_card
from training.metrics import accuracy, hit_rate, macro_f1, mean_reciprocal_rank, random_mrr, true_match_ranks
from training.roundtrip import cache_file
from training.train import TrainConfig, build_training_set, contrastive_loss, train
from training.variants import bar_per_line

SMALL_COLLECTION = ("miscFolk",)  # 177 real tunes, 21 of them held out


def test_ranks_mrr_and_hits_on_a_hand_made_case():
    similarity = np.array(
        [
            [0.9, 0.1, 0.2, 0.0],  # true match best: rank 1
            [0.5, 0.4, 0.6, 0.1],  # two better: rank 3
            [0.3, 0.1, 0.3, 0.3],  # ties count in its favour: rank 1
            [0.8, 0.7, 0.9, 0.1],  # worst: rank 4
        ]
    )
    ranks = true_match_ranks(similarity)
    assert ranks.tolist() == [1, 3, 1, 4]
    assert mean_reciprocal_rank(ranks) == pytest.approx((1 + 1 / 3 + 1 + 1 / 4) / 4)
    assert (hit_rate(ranks, 1), hit_rate(ranks, 3), hit_rate(ranks, 10)) == (0.5, 0.75, 1.0)
    assert random_mrr(1) == 1.0 and random_mrr(2) == 0.75


def test_accuracy_and_macro_f1_on_a_hand_made_case():
    y_true = ["reel", "reel", "reel", "jig", "jig", "air"]
    y_pred = ["reel", "reel", "jig", "jig", "polka", "reel"]
    assert accuracy(y_true, y_pred) == pytest.approx(3 / 6)
    # reel: tp 2, fp 1, fn 1 -> 2/3; jig: tp 1, fp 1, fn 1 -> 1/2; air: 0. "polka" is not a true class.
    assert macro_f1(y_true, y_pred) == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert macro_f1(["a", "b"], ["a", "b"]) == 1.0


def test_identical_texts_are_all_positives():
    same = torch.ones(3, 4)
    loss = contrastive_loss(same, same, torch.tensor(0.0), torch.tensor([7, 7, 7]))
    assert loss.item() == pytest.approx(math.log(3)), "uniform targets over 3 equal pairs: the minimum"
    eye = torch.eye(3, 4)
    assert contrastive_loss(eye, eye, torch.tensor(math.log(100)), torch.tensor([1, 2, 3])).item() < 1e-3


def test_length_batches_cover_every_tune_once_with_similar_lengths():
    lengths = np.random.default_rng(0).integers(1, 200, size=1000)
    batches = length_batches(lengths, 16, np.random.default_rng(1), pool=8)
    assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    assert spread < 30, "pools sorted by length keep padding small"


def test_loss_decreases_on_a_tiny_batch():
    torch.manual_seed(0)
    model = CLaMP(tiny_family("bert"))
    tunes = load_corpus(collections=SMALL_COLLECTION)[:8]
    ids, mask = pad_patches([prepare_music(t.abc, 128) for t in tunes])
    text_features = torch.randn(8, TINY_SIZES["hidden_size"])
    text_ids = torch.arange(8)
    scale = torch.tensor(math.log(10.0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss = contrastive_loss(
            model.text_proj(text_features), model.encode_music(ids, mask), scale, text_ids
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def tiny_default_family() -> dict:
    family = load_family("default")
    return {**family, "music": {**family["music"], **TINY_SIZES}}


def test_lit_checkpoint_round_trip_stores_no_text_tower(tmp_path: Path):
    torch.manual_seed(0)
    family = tiny_default_family()
    model = init_model(family).eval()
    save_ours(model, family, tmp_path)
    assert not [k for k in load_file(tmp_path / "model.safetensors") if k.startswith("text_enc.")]
    loaded, loaded_family = load_ours(tmp_path)
    assert loaded_family == family
    tunes = load_corpus(collections=SMALL_COLLECTION)[:3]
    ids, mask = pad_patches([prepare_music(t.abc, 128) for t in tunes])
    text_ids, text_mask = (
        torch.tensor([[101, 7592, 102, 0], [101, 2023, 2003, 102]]),
        torch.tensor([[1, 1, 1, 0], [1] * 4]),
    )
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_music(ids, mask), model.encode_music(ids, mask))
        torch.testing.assert_close(
            loaded.encode_text(text_ids, text_mask), model.encode_text(text_ids, text_mask)
        )


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[TrainConfig, dict]:
    config = TrainConfig(
        out=tmp_path_factory.mktemp("ckpt"),
        epochs=2,
        batch_size=8,
        variants=2,
        limit=24,
        warmup_steps=1,
        cache_dir=None,
        collections=SMALL_COLLECTION,
        music_overrides=TINY_SIZES,
    )
    return config, train(config)


def test_training_never_sees_an_eval_tune():
    config = TrainConfig(variants=2, collections=SMALL_COLLECTION, cache_dir=None)
    data = build_training_set(config, load_family("default"))
    tunes = load_corpus(collections=SMALL_COLLECTION)
    assert set(data.ids) == {t.id for t in tunes if t.split == "train"}
    assert not set(data.ids) & {t.id for t in tunes if t.split == "eval"}
    assert data.variant_ids.shape == (len(data.ids), 2) and data.variant_ids.max() == len(data.texts) - 1
    assert all(len(views) >= 1 for views in data.views)


def test_a_held_out_collection_is_never_trained_on():
    config = TrainConfig(variants=1, collections=("miscFolk", "josquin"), held_out_collections=("josquin",))
    data = build_training_set(replace(config, cache_dir=None), load_family("default"))
    josquin = {t.id for t in load_corpus(collections=("josquin",))}
    assert josquin and not set(data.ids) & josquin and data.ids


def test_a_tiny_training_run_writes_a_checkpoint_that_evaluates(tiny_run, tmp_path: Path):
    config, summary = tiny_run
    assert summary["train_tunes"] == 24 and len(summary["epoch_losses"]) == 2
    assert all(math.isfinite(loss) for loss in summary["epoch_losses"])
    for name in ("model.safetensors", "config.json", "training.json"):
        assert (config.out / name).is_file()
    eval_tunes = [t for t in load_corpus(collections=SMALL_COLLECTION) if t.split == "eval"]
    cache = tmp_path / "cache"
    cache.mkdir()
    round_trips = [{"id": t.id, "musicxml": bar_per_line(t.abc), "midi": None} for t in eval_tunes[:5]]
    cache_file(cache).write_text("".join(json.dumps(r) + "\n" for r in round_trips) + '{"torn')
    results = evaluate(
        config.out,
        collections=(*SMALL_COLLECTION, "josquin"),
        cache_dir=cache,
        held_out_collections=("josquin",),
    )
    assert results["eval_tunes"] == 21
    assert results["invariance"]["MusicXML round trip"]["tunes"] == 5  # the torn last line is ignored
    assert "MIDI round trip" not in results["invariance"]
    josquin = results["held_out_collections"]["josquin"]  # left out whole: all its tunes, none in eval_tunes
    assert josquin["tunes"] == len(load_corpus(collections=("josquin",))) and "retrieval" in josquin
    for row in results["invariance"].values():
        assert row["pool"] == 21 and -1 <= row["mean_cosine"] <= 1 and 0 <= row["rank1"] <= 1
    assert 0 < results["retrieval"]["mrr"] <= 1 and results["retrieval"]["random_mrr"] == pytest.approx(
        random_mrr(21)
    )
    assert "meter" in results["zero_shot"]
    for row in results["zero_shot"].values():
        assert 0 <= row["accuracy"] <= 1 and row["chance"] == 1 / row["labels"]
    card = tmp_path / "README.md"
    card.write_text(f"# card\n{CARD_START}\nold\n{CARD_END}\nrest\n")
    write_into_card(card, markdown_table(results))
    text = card.read_text()
    assert "old" not in text and "| MRR |" in text and text.endswith("rest\n")
    both = markdown_table([results, {**results, "checkpoint": "v1"}])
    assert "| header order | 21 | " in both and both.count(" / ") >= 2 * len(results["invariance"])


def test_a_checkpoint_can_be_evaluated_patched_another_way(tiny_run):
    """`clamp eval --profile`: what a model reads into notation shows as the same tunes patched otherwise."""
    config, _ = tiny_run
    kept = evaluate(config.out, collections=SMALL_COLLECTION, cache_dir=None, held_out_collections=())
    other = evaluate(
        config.out, collections=SMALL_COLLECTION, cache_dir=None, held_out_collections=(), profile="clamp1"
    )
    assert other["profile"] == "clamp1" and "profile" not in kept
    assert other["eval_tunes"] == kept["eval_tunes"]
    assert other["retrieval"]["mrr"] != kept["retrieval"]["mrr"]  # the default family canonicalises first
