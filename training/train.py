"""Contrastive training of the default model: LiT (the pretrained text tower stays frozen; text_proj, the
music tower and music_proj learn) on music21's tunes with synthesised texts.

Because the text tower is frozen, its pooled features for every training text are computed once (and
cached, text by text), so an epoch costs only the music tower and two projections. With
text_tuned_layers=N the top N layers of the text tower learn too: what enters them (the output of the
frozen layers below) is computed once per text the same way, so a step runs only those N layers.

Invariance (v2): each tune comes with *views*, the same music written differently (training/variants.py:
textual rewrites and the cached MusicXML / MIDI round trips), patched through the family's preprocessing
(the default family canonicalises first, so most textual rewrites patch identically and drop out). The
text loss sees a random view; a music-music InfoNCE term pulls a tune's two views together against the
other tunes of the batch, for the tunes that have a second view.

Optionally (pretrain_epochs > 0) the music tower is first pre-trained alone on the same tunes as written,
with a masked-patch objective (training/pretrain.py).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from exporter.checkpoint import (
    TOKENIZER_FILE,
    first_tuned_text_layer,
    init_model,
    pretrained_text_dir,
    save_ours,
)
from exporter.model import CLaMP
from runtime.model.families import load_family
from runtime.model.text import TextTokenizer
from runtime.music.profiles import profile_of
from training import texts as folk_texts
from training.batches import (
    length_batches,
    pad_patches,
    pad_rows,
    pooled_above,
    pooled_text_features,
    resolve_device,
    text_prefixes,
)
from training.classical import texts as classical_texts
from training.classical.corpus import ClassicalPiece, load_classical
from training.corpus import CorpusTune, load_corpus
from training.describe import describe
from training.pretrain import masked_batch, masked_patch_backward, patch_decoder
from training.roundtrip import DEFAULT_PER_SPLIT, build_cache, cache_file, chosen_tunes
from training.variants import variants_of

TRAINING_INFO = "training.json"


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; saved next to the weights."""

    out: Path = Path("models/default")
    family: str = "default"
    epochs: int = 5
    pretrain_epochs: int = 0  # masked-patch pre-training of the music tower before the epochs (0: none)
    batch_size: int = 64
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup_steps: int = 100
    variants: int = 3
    seed: int = 0
    device: str = "auto"
    cache_dir: Path | None = Path("build/train-cache")
    limit: int | None = None  # only the first N training tunes (smoke tests)
    collections: tuple[str, ...] | None = None  # music21 corpus folders; None = all
    corpus_root: Path | None = None  # default: music21's bundled corpus
    init_temperature: float = 0.07
    music_overrides: dict = field(default_factory=dict)  # e.g. {"num_hidden_layers": 2} for tiny tests
    # Collections never trained on: the leave-one-collection-out test of `clamp eval`.
    held_out_collections: tuple[str, ...] = ("ryansMammoth",)
    original_view: float = 0.5  # how often the text loss sees the tune as written (else a variant)
    music_music_weight: float = 0.5  # the invariance term's weight (0: text loss only)
    classical: bool = True  # also music21's classical scores (training/classical: converted once, cached)
    # Tunes per side of the split whose MusicXML / MIDI round trips are made (None: none; slow, cached).
    round_trips: dict[str, int] | None = field(default_factory=lambda: dict(DEFAULT_PER_SPLIT))
    text_tuned_layers: int = 0  # top layers of the pretrained text tower that learn too (0: LiT)
    # Their lr as a fraction of lr: 5e-5 at the default, BERT's usual fine-tuning rate; the full lr (set
    # for towers trained from scratch) would wash out what the pretrained layers know of language.
    text_lr_scale: float = 0.1


@dataclass
class TrainingSet:
    """Training tunes as the model sees them: patches, and K text variants each as ids of unique texts."""

    ids: list[str]  # tune ids, row order
    views: list[list[np.ndarray]]  # per tune: its patches as written, then those of its distinct variants
    texts: list[str]  # unique texts
    variant_ids: np.ndarray  # [n_tunes, K] index into texts


def training_tunes(config: TrainConfig) -> list[CorpusTune | ClassicalPiece]:
    """The music trained on: the train side of both splits, without the held-out collections."""
    tunes: list[CorpusTune | ClassicalPiece] = list(load_corpus(config.corpus_root, config.collections))
    if config.classical and config.collections is None:
        cache = {"cache_dir": config.cache_dir} if config.cache_dir else {}
        tunes += load_classical(
            config.corpus_root, progress=True, folk_keys={t.body_key for t in tunes}, **cache
        )
    tunes = [t for t in tunes if t.split == "train" and t.collection not in config.held_out_collections]
    return tunes[: config.limit] if config.limit else tunes


def training_texts(tune: CorpusTune | ClassicalPiece, count: int, seed: int) -> list[str]:
    """`count` synthesised texts of a folk tune or a classical score, reproducible from the seed."""
    if isinstance(tune, ClassicalPiece):
        return classical_texts.text_variants(tune.facts, count, seed, tune.id)
    return folk_texts.text_variants(describe(tune), count, seed, tune.id)


def tune_views(abc: str, round_trips: dict | None, patchify) -> list[np.ndarray]:
    """The tune's patches as written, then those of each variant that patches differently."""
    views = [patchify(abc)]
    seen = {views[0].tobytes()}
    for variant in variants_of(abc, round_trips).values():
        patches = patchify(variant)
        if len(patches) > 1 and patches.tobytes() not in seen:
            seen.add(patches.tobytes())
            views.append(patches)
    return views


def _round_trips(config: TrainConfig) -> dict[str, dict[str, str | None]]:
    """The round trips of the fixed sample of tunes (roundtrip.DEFAULT_PER_SPLIT), made once and cached."""
    if config.cache_dir is None or config.round_trips is None:
        return {}
    sample = chosen_tunes(load_corpus(config.corpus_root, config.collections), config.round_trips)
    found = build_cache(sample, cache_file(config.cache_dir))
    return {t.id: found[t.id] for t in sample}


def build_training_set(config: TrainConfig, family: dict) -> TrainingSet:
    """Views and text variants of every training tune (never an eval tune)."""
    tunes = training_tunes(config)
    profile, max_patches = profile_of(family), family["music"]["max_patches"]
    round_trips = _round_trips(config)
    unique: dict[str, int] = {}
    variant_ids = np.zeros((len(tunes), config.variants), dtype=np.int64)
    views = []
    for row, tune in enumerate(tqdm(tunes, desc="patching views", unit="tune")):
        for k, text in enumerate(training_texts(tune, config.variants, config.seed)):
            variant_ids[row, k] = unique.setdefault(text, len(unique))
        views.append(
            tune_views(tune.abc, round_trips.get(tune.id), lambda a: profile.abc_patches(a, max_patches))
        )
    return TrainingSet(ids=[t.id for t in tunes], views=views, texts=list(unique), variant_ids=variant_ids)


def _cache_path(config: TrainConfig, name: str, key: object) -> Path | None:
    digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:20]
    return config.cache_dir / f"{name}-{digest}.npz" if config.cache_dir else None


def cached_per_text(
    path: Path | None, texts: list[str], encode: Callable[[list[str]], list[np.ndarray]], what: str
) -> list[np.ndarray]:
    """encode's [rows, H] array of each text, each text encoded once: those an earlier run encoded come from
    the npz at path (every text's rows concatenated; "rows" absent: one each, as LiT's features)."""
    known: dict[str, np.ndarray] = {}
    if path and path.is_file():
        with np.load(path) as cached:
            names = json.loads(str(cached["texts"]))
            rows = cached["rows"] if "rows" in cached.files else np.ones(len(names), dtype=np.int64)
            known = dict(zip(names, np.split(cached["features"], np.cumsum(rows)[:-1]), strict=True))
    missing = [t for t in texts if t not in known]
    if missing:
        print(f"encoding {len(missing)} new training texts: {what} (cached afterwards)")
        known.update(zip(missing, encode(missing), strict=True))
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")  # runs sharing the cache: one each
            arrays = list(known.values())
            rows = np.array([len(a) for a in arrays], dtype=np.int64)
            np.savez(tmp, texts=json.dumps(list(known)), features=np.concatenate(arrays), rows=rows)
            tmp.replace(path)
    return [known[t] for t in texts]


def cached_text_features(
    model: CLaMP, tokenizer: TextTokenizer, texts: list[str], family: dict, config: TrainConfig
) -> np.ndarray:
    """Frozen text-tower features of the texts [N, H]; texts encoded by an earlier run come from the cache."""
    device = next(model.parameters()).device
    features = cached_per_text(
        _cache_path(config, "text-features", family["text"]),
        texts,
        lambda missing: list(pooled_text_features(model, tokenizer, missing, device)[:, None]),
        "pooled features of the frozen text tower",
    )
    return np.concatenate(features)


def cached_text_prefixes(
    model: CLaMP, tokenizer: TextTokenizer, texts: list[str], first: int, family: dict, config: TrainConfig
) -> list[np.ndarray]:
    """Per text, the hidden states [tokens, H] entering text layer `first`, cached like the features;
    float32 (v2's 29,659 texts: 0.9 GB), so they are exactly what the full forward computes there."""
    device = next(model.parameters()).device
    return cached_per_text(
        _cache_path(config, "text-prefixes", {"text": family["text"], "frozen_layers": first}),
        texts,
        lambda missing: text_prefixes(model, tokenizer, missing, first, device),
        f"hidden states after the {first} frozen text layers",
    )


def text_side(
    model: CLaMP, tokenizer: TextTokenizer, texts: list[str], family: dict, config: TrainConfig
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The texts' pooled features (before text_proj) by index, for a step: LiT looks them up; with tuned
    layers, a step runs those layers and the pooling on the cached hidden states beneath them."""
    device = next(model.parameters()).device
    first = first_tuned_text_layer(family)
    if first == family["text"]["num_hidden_layers"]:
        features = torch.from_numpy(cached_text_features(model, tokenizer, texts, family, config)).to(device)
        return lambda ids: features[ids]
    prefixes = cached_text_prefixes(model, tokenizer, texts, first, family, config)

    def pooled(ids: torch.Tensor) -> torch.Tensor:
        hidden, mask = pad_rows([prefixes[i] for i in ids.tolist()])
        return pooled_above(model, hidden.to(device), mask.to(device), first)

    return pooled


def contrastive_loss(
    text: torch.Tensor, music: torch.Tensor, logit_scale: torch.Tensor, text_ids: torch.Tensor
) -> torch.Tensor:
    """Symmetric CLIP loss on normalised features; pairs whose texts are identical all count as positives."""
    logits = logit_scale.exp() * F.normalize(text, dim=-1) @ F.normalize(music, dim=-1).t()
    same = (text_ids[:, None] == text_ids[None, :]).float()
    targets = same / same.sum(dim=1, keepdim=True)
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets))


def music_music_loss(first: torch.Tensor, second: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE between two views of the same tunes: row i of each is the same music."""
    logits = logit_scale.exp() * F.normalize(first, dim=-1) @ F.normalize(second, dim=-1).t()
    targets = torch.arange(len(first), device=first.device)
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets))


def pick_views(
    views: list[list[np.ndarray]], batch: np.ndarray, rng: np.random.Generator, original: float
) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Per tune of a batch: the view the text loss sees; for tunes with variants, also a second view."""
    first, second, paired = [], [], []
    for row, i in enumerate(batch):
        options = views[i]
        a = 0 if len(options) == 1 or rng.random() < original else int(rng.integers(1, len(options)))
        first.append(options[a])
        if len(options) > 1:
            b = int(rng.integers(0, len(options) - 1))
            second.append(options[b + (b >= a)])
            paired.append(row)
    return first, second, np.asarray(paired, dtype=np.int64)


def trainable_parameters(
    model: CLaMP, first: int
) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
    """What learns: everything but the text tower, then its layers from `first` up (LiT: none of them)."""
    model.text_enc.requires_grad_(False)
    text = list(model.text_enc.encoder.layer[first:].parameters())
    for p in text:
        p.requires_grad_(True)
    return [p for name, p in model.named_parameters() if not name.startswith("text_enc.")], text


def _optimizer(
    params: list[torch.nn.Parameter], config: TrainConfig, text_params: Sequence[torch.nn.Parameter] = ()
) -> torch.optim.AdamW:
    """AdamW, weight decay on matrices only (not on biases, norms or the logit scale); tuned text layers
    at text_lr_scale times the lr."""
    groups = []
    for group, lr in ((list(params), config.lr), (list(text_params), config.lr * config.text_lr_scale)):
        groups += [
            {"params": [p for p in group if p.ndim >= 2], "weight_decay": config.weight_decay, "lr": lr},
            {"params": [p for p in group if p.ndim < 2], "weight_decay": 0.0, "lr": lr},
        ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr)


def _schedule(step: int, warmup: int, total: int) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def _scheduler(
    optimizer: torch.optim.Optimizer, warmup: int, total: int
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _schedule(step, warmup, total))


def _update(
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    params: list[torch.nn.Parameter],
) -> None:
    """One step from the gradients already computed: clipped to norm 1, then the learning rate advances."""
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    scheduler.step()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pretrain_music(
    model: CLaMP, patches: list[np.ndarray], config: TrainConfig, device: torch.device
) -> list[float]:
    """Masked-patch pre-training of the music tower for config.pretrain_epochs on these tunes; returns
    the mean loss of each epoch. The decoder is thrown away.

    Its random streams are its own, seeded from config.seed (torch's is restored afterwards), so the
    contrastive stage draws the same batches, views, texts and dropout as without pre-training: runs differ
    only in where the music tower starts.
    """
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        rng = np.random.default_rng([config.seed, 1])
        decoder = patch_decoder(model.music_enc).to(device)
        params = list(model.music_enc.parameters()) + list(decoder.parameters())
        optimizer = _optimizer(params, config)
        lengths = [len(p) for p in patches]
        total = config.pretrain_epochs * math.ceil(len(lengths) / config.batch_size)
        scheduler = _scheduler(optimizer, config.warmup_steps, total)
        model.music_enc.train()
        decoder.train()
        epoch_losses = []
        with tqdm(total=total, desc="pre-training music", unit="step") as bar:
            for epoch in range(config.pretrain_epochs):
                losses = []
                for batch in length_batches(lengths, config.batch_size, rng):
                    masked = masked_batch([patches[i] for i in batch], rng).to(device)
                    optimizer.zero_grad(set_to_none=True)
                    losses.append(masked_patch_backward(model.music_enc, decoder, masked))
                    _update(optimizer, scheduler, params)
                    bar.update(1)
                    bar.set_postfix(epoch=epoch + 1, loss=f"{np.mean(losses[-50:]):.3f}")
                epoch_losses.append(float(np.mean(losses)))
    return epoch_losses


def train(config: TrainConfig) -> dict:
    """Train from scratch (optionally pre-training the music tower first), save the checkpoint to
    config.out, and return a summary of the run."""
    started = time.time()
    seed_everything(config.seed)
    device = resolve_device(config.device)
    family = load_family(config.family)
    family = {
        **family,
        "text": {**family["text"], "trainable_layers": config.text_tuned_layers},
        "music": {**family["music"], **config.music_overrides},
    }
    first_tuned = first_tuned_text_layer(family)
    model = init_model(family).to(device)
    text = family["text"]
    tokenizer = TextTokenizer.from_file(
        pretrained_text_dir(family) / TOKENIZER_FILE, text["max_tokens"], text["pad_token_id"]
    )
    data = build_training_set(config, family)
    model.eval()
    pooled_text = text_side(model, tokenizer, data.texts, family, config)
    model.train()
    first_views = [v[0] for v in data.views]
    pretrain_losses = pretrain_music(model, first_views, config, device) if config.pretrain_epochs else []
    model.text_enc.eval()  # its frozen part's dropout must not run (it is not run at all during training)
    model.text_enc.encoder.layer[first_tuned:].train()  # tuned layers: dropout, as in the music tower
    params, text_params = trainable_parameters(model, first_tuned)
    logit_scale = torch.nn.Parameter(torch.tensor(math.log(1 / config.init_temperature), device=device))
    optimizer = _optimizer(params + [logit_scale], config, text_params)
    rng = np.random.default_rng(config.seed)
    lengths = [len(v) for v in first_views]
    steps_per_epoch = math.ceil(len(lengths) / config.batch_size)
    total = config.epochs * steps_per_epoch
    scheduler = _scheduler(optimizer, config.warmup_steps, total)
    epoch_losses = []
    with tqdm(total=total, desc="training", unit="step") as bar:
        for epoch in range(config.epochs):
            losses = []
            for batch in length_batches(lengths, config.batch_size, rng):
                text_ids = torch.from_numpy(
                    data.variant_ids[batch, rng.integers(0, config.variants, len(batch))]
                ).to(device)
                first, second, paired = pick_views(data.views, batch, rng, config.original_view)
                use_pairs = config.music_music_weight > 0 and len(paired) > 1
                ids, mask = pad_patches(first + second if use_pairs else first)
                music = model.encode_music(ids.to(device), mask.to(device))
                loss = contrastive_loss(
                    model.text_proj(pooled_text(text_ids)), music[: len(batch)], logit_scale, text_ids
                )
                if use_pairs:
                    pairs = music_music_loss(
                        music[torch.from_numpy(paired)], music[len(batch) :], logit_scale
                    )
                    loss = loss + config.music_music_weight * pairs
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                _update(optimizer, scheduler, params + text_params)
                with torch.no_grad():
                    logit_scale.clamp_(0, math.log(100))
                losses.append(loss.item())
                bar.update(1)
                recent = np.mean(losses[-50:])
                bar.set_postfix(epoch=epoch + 1, loss=f"{recent:.3f}", scale=f"{logit_scale.exp():.1f}")
            epoch_losses.append(float(np.mean(losses)))
    save_ours(model.cpu(), family, config.out)
    summary = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        "train_tunes": len(lengths),
        "tunes_with_variants": sum(len(v) > 1 for v in data.views),
        "views": sum(len(v) for v in data.views),
        "unique_texts": len(data.texts),
        "pretrain_losses": pretrain_losses,
        "epoch_losses": epoch_losses,
        "logit_scale": float(logit_scale.detach().exp()),
        "seconds": round(time.time() - started, 1),
        "device": str(device),
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
    }
    (Path(config.out) / TRAINING_INFO).write_text(json.dumps(summary, indent=2) + "\n")
    return summary
