"""Batching for PyTorch CLaMP: padded patch tensors, length-bucketed batches, batched encoding of a corpus."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

from exporter.model import CLaMP
from runtime.model.text import TextTokenizer
from runtime.music.patching import PATCH_LENGTH


def resolve_device(name: str) -> torch.device:
    """ "auto" -> cuda when available, else cpu; anything else as torch names it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def pad_patches(patches: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Tunes of P_i x 64 patch ids -> ids [B, max P, 64] (int64) and patch mask [B, max P], right-padded."""
    width = max(len(p) for p in patches)
    ids = np.zeros((len(patches), width, PATCH_LENGTH), dtype=np.int64)
    mask = np.zeros((len(patches), width), dtype=np.int64)
    for row, tune in enumerate(patches):
        ids[row, : len(tune)] = tune
        mask[row, : len(tune)] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


def length_batches(
    lengths: Sequence[int], batch_size: int, rng: np.random.Generator, pool: int = 32
) -> list[np.ndarray]:
    """Random batches of indices whose lengths are similar (little padding): shuffle, sort within pools
    of `pool` batches, cut into batches, shuffle the batches."""
    order = rng.permutation(len(lengths))
    lengths = np.asarray(lengths)
    batches = []
    for start in range(0, len(order), batch_size * pool):
        chunk = order[start : start + batch_size * pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def _sorted_chunks(lengths: Sequence[int], batch_size: int) -> Iterator[np.ndarray]:
    order = np.argsort(np.asarray(lengths), kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def _encode_in_length_order(
    lengths: Sequence[int], batch_size: int, encode: Callable[[np.ndarray], torch.Tensor]
) -> np.ndarray:
    out: np.ndarray | None = None
    for chunk in _sorted_chunks(lengths, batch_size):
        features = encode(chunk).float().cpu().numpy()
        if out is None:
            out = np.zeros((len(lengths), features.shape[1]), dtype=np.float32)
        out[chunk] = features
    if out is None:
        raise ValueError("nothing to encode: the input is empty")
    return out


@torch.inference_mode()
def pooled_text_features(
    model: CLaMP, tokenizer: TextTokenizer, texts: Sequence[str], device: torch.device, batch_size: int = 256
) -> np.ndarray:
    """text_pooled (before text_proj) of every text, float32 [N, text_hidden]; batched by token length."""
    lengths = [len(ids) for ids in tokenizer.tokenizer.encode_batch(list(texts))]

    def encode(chunk: np.ndarray) -> torch.Tensor:
        ids, mask = tokenizer([texts[i] for i in chunk])
        return model.text_pooled(torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device))

    return _encode_in_length_order(lengths, batch_size, encode)


@torch.inference_mode()
def text_embeddings(
    model: CLaMP, tokenizer: TextTokenizer, texts: Sequence[str], device: torch.device, batch_size: int = 256
) -> np.ndarray:
    """L2-normalised text features of every text, float32 [N, D]."""
    pooled = torch.from_numpy(pooled_text_features(model, tokenizer, texts, device, batch_size)).to(device)
    return torch.nn.functional.normalize(model.text_proj(pooled), dim=-1).cpu().numpy()


@torch.inference_mode()
def music_embeddings(
    model: CLaMP, patches: Sequence[np.ndarray], device: torch.device, batch_size: int = 128
) -> np.ndarray:
    """L2-normalised music features of every tune, float32 [N, D]; batched by patch count."""

    def encode(chunk: np.ndarray) -> torch.Tensor:
        ids, mask = pad_patches([patches[i] for i in chunk])
        features = model.encode_music(ids.to(device), mask.to(device))
        return torch.nn.functional.normalize(features, dim=-1)

    return _encode_in_length_order([len(p) for p in patches], batch_size, encode)
