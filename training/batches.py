"""Batching for PyTorch CLaMP: padded patch tensors, length-bucketed batches, batched encoding of a corpus,
and the text tower split at a layer (training tunes the layers above it on cached inputs)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

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


def pad_rows(arrays: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Texts of T_i x H hidden states -> float32 [B, max T, H] and mask [B, max T] (int64), right-padded."""
    width = max(len(a) for a in arrays)
    hidden = np.zeros((len(arrays), width, arrays[0].shape[1]), dtype=np.float32)
    mask = np.zeros((len(arrays), width), dtype=np.int64)
    for row, text in enumerate(arrays):
        hidden[row, : len(text)] = text
        mask[row, : len(text)] = 1
    return torch.from_numpy(hidden), torch.from_numpy(mask)


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


def run_text_layers(
    layers: Iterable[torch.nn.Module], hidden: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Hidden states [B,T,H] through BERT layers, padding masked out as the text tower's forward does
    with eager attention (an additive bias of the dtype's minimum on padded keys)."""
    bias = (1.0 - mask[:, None, None, :].to(hidden.dtype)) * torch.finfo(hidden.dtype).min
    for layer in layers:
        out = layer(hidden, bias)
        hidden = out[0] if isinstance(out, tuple) else out  # layers return a tuple before transformers 5
    return hidden


def pooled_above(model: CLaMP, hidden: torch.Tensor, mask: torch.Tensor, first: int) -> torch.Tensor:
    """text_pooled from the hidden states that enter text layer `first`: the layers from there up, then the
    model's pooling (CLaMP.text_pooled == pooled_above(text_prefixes(..., first), first))."""
    return model.pool(run_text_layers(model.text_enc.encoder.layer[first:], hidden, mask), mask)


@torch.inference_mode()
def text_prefixes(
    model: CLaMP,
    tokenizer: TextTokenizer,
    texts: Sequence[str],
    first: int,
    device: torch.device,
    batch_size: int = 256,
) -> list[np.ndarray]:
    """Per text, the hidden states entering text layer `first` (the output of the layers below it),
    float32 [its tokens, text_hidden]: what training runs its tuned layers on."""
    id_lists = tokenizer.token_ids(texts)
    prefixes: list[np.ndarray] = [np.empty(0)] * len(texts)
    for chunk in _sorted_chunks([len(ids) for ids in id_lists], batch_size):
        ids, mask = (torch.from_numpy(a).to(device) for a in tokenizer.pad([id_lists[i] for i in chunk]))
        embedded = model.text_enc.embeddings(input_ids=ids)
        hidden = run_text_layers(model.text_enc.encoder.layer[:first], embedded, mask).float().cpu().numpy()
        for row, i in enumerate(chunk):
            prefixes[i] = hidden[row, : len(id_lists[i])].copy()
    return prefixes


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
