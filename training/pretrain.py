"""Masked-patch pre-training of the music tower: CLaMP 2's M3 objective (clamp-spec §6.2) on CLaMP 1 bar
patches, whose vocabulary reserves MASK_ID = 96 for it (§4.5).

45% of a tune's patches are chosen; per tune (not per patch) they become all MASK (p 0.8), have their
characters shuffled (p 0.1) or stay as written (p 0.1). A small GPT-2 then reconstructs each chosen
patch's characters from the encoder's output at that patch, which takes the place of a BOS embedding
(CLaMP 1 has no BOS); the decoder is thrown away afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel

from exporter.model import MusicEncoder
from runtime.music.patching import EOS_ID, MASK_ID, PAD_ID
from training.batches import pad_patches

CHOSEN_PERCENT = 45
CASES = ("mask", "shuffle", "keep")
CASE_PROBABILITIES = (0.8, 0.1, 0.1)
DECODER_LAYERS = 2
# Chosen patches decoded per pass, sorted by length: 64 tunes of 512 patches choose ~15,000, too many for
# one pass in memory, and a chunk of similar patches is cut after its longest (bar patches hold ~12 of
# their 64 characters; on CPU, chunks of 64 made a step of folk tunes 4x faster than chunks of 512).
DECODER_CHUNK = 64
IGNORE = -100  # cross-entropy's ignore_index


@dataclass
class MaskedBatch:
    """A batch of corrupted tunes and, for every chosen patch, where it is and what it was."""

    ids: torch.Tensor  # [B, P, 64] corrupted patches, right-padded
    mask: torch.Tensor  # [B, P] 1 on real patches
    rows: torch.Tensor  # [K] tune of each chosen patch
    cols: torch.Tensor  # [K] its position in the tune
    targets: torch.Tensor  # [K, 64] the chosen patches as written

    def to(self, device: torch.device) -> MaskedBatch:
        return MaskedBatch(*(t.to(device) for t in (self.ids, self.mask, self.rows, self.cols, self.targets)))


def choose_patches(n_patches: int, rng: np.random.Generator) -> np.ndarray:
    """ceil(45% of n_patches) distinct positions among the tune's own patches, sorted."""
    count = math.ceil(n_patches * CHOSEN_PERCENT / 100)  # exact: n * 45 is an integer
    return np.sort(rng.choice(n_patches, count, replace=False))


def choose_case(rng: np.random.Generator) -> str:
    """What happens to a tune's chosen patches: "mask", "shuffle" or "keep" (p 0.8 / 0.1 / 0.1)."""
    return CASES[rng.choice(len(CASES), p=CASE_PROBABILITIES)]


def content_length(patch: np.ndarray) -> int:
    """Characters before the patch's EOS (all 64 when it is full): what a shuffle may move."""
    ends = np.flatnonzero(patch == EOS_ID)
    return int(ends[0]) if len(ends) else len(patch)


def corrupt(patches: np.ndarray, chosen: np.ndarray, case: str, rng: np.random.Generator) -> np.ndarray:
    """A copy of the tune's patches with the chosen ones masked (all MASK_ID), shuffled (their
    characters permuted, the EOS and pads left in place) or kept."""
    out = patches.copy()
    if case == "mask":
        out[chosen] = MASK_ID
    elif case == "shuffle":
        for i in chosen:
            n = content_length(out[i])
            out[i, :n] = rng.permutation(out[i, :n])
    return out


def masked_batch(tunes: Sequence[np.ndarray], rng: np.random.Generator) -> MaskedBatch:
    """Choose and corrupt patches of every tune (P_i x 64 ids, as written) and pad them into a batch."""
    corrupted, rows, cols, targets = [], [], [], []
    for row, patches in enumerate(tunes):
        chosen = choose_patches(len(patches), rng)
        corrupted.append(corrupt(patches, chosen, choose_case(rng), rng))
        rows.append(np.full(len(chosen), row))
        cols.append(chosen)
        targets.append(patches[chosen])
    ids, mask = pad_patches(corrupted)
    return MaskedBatch(
        ids,
        mask,
        torch.from_numpy(np.concatenate(rows)),
        torch.from_numpy(np.concatenate(cols)),
        torch.from_numpy(np.concatenate(targets).astype(np.int64)),
    )


def patch_decoder(encoder: MusicEncoder) -> GPT2LMHeadModel:
    """A small GPT-2 over the patch characters, as wide as the encoder so that an encoder output can be
    its first input embedding."""
    bert = encoder.enc.config
    config = GPT2Config(
        vocab_size=encoder.n_classes,
        n_positions=encoder.patch_length,
        n_embd=bert.hidden_size,
        n_layer=DECODER_LAYERS,
        n_head=bert.num_attention_heads,
        n_inner=bert.intermediate_size,
        bos_token_id=None,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
    )
    return GPT2LMHeadModel(config)


def reconstruction_loss(
    decoder: GPT2LMHeadModel, context: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """Summed cross-entropy of the targets' characters [K, W <= 64], teacher-forced: position 0 is the
    encoder output [K, H], position t the embedding of character t-1; pads are not predicted."""
    chars = decoder.transformer.wte(targets[:, :-1])
    logits = decoder(inputs_embeds=torch.cat([context[:, None], chars], dim=1)).logits
    labels = targets.masked_fill(targets == PAD_ID, IGNORE)
    return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE, reduction="sum")


def masked_patch_backward(
    encoder: MusicEncoder, decoder: GPT2LMHeadModel, batch: MaskedBatch, chunk: int = DECODER_CHUNK
) -> float:
    """Backpropagate the mean reconstruction loss per character of every chosen patch; return it.

    The decoder runs `chunk` patches of similar length at a time, cut after the last character of the
    longest (the decoder is causal: later positions change nothing), on a detached copy of the encoder
    outputs whose summed gradient then flows through the encoder once: the gradient of one full pass.
    """
    hidden = encoder(batch.ids, batch.mask)[batch.rows, batch.cols]
    context = hidden.detach().requires_grad_()
    labelled = batch.targets != PAD_ID
    positions = torch.arange(1, batch.targets.shape[1] + 1, device=labelled.device)
    ends = (labelled * positions).amax(dim=1)  # one past each patch's last character
    order = torch.argsort(ends, stable=True)
    characters = labelled.sum().clamp(min=1)
    total = 0.0
    for start in range(0, len(order), chunk):
        part = order[start : start + chunk]
        width = max(1, int(ends[part[-1]]))
        loss = reconstruction_loss(decoder, context[part], batch.targets[part, :width]) / characters
        loss.backward()
        total += loss.item()
    hidden.backward(context.grad)
    return total
