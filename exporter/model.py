"""CLaMP in PyTorch, built from a model family dict; module names match the official checkpoint."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertConfig, BertModel, RobertaConfig, RobertaModel, XLMRobertaConfig, XLMRobertaModel

from runtime.music.patching import N_CLASSES

TEXT_ARCHS = {
    "roberta": (RobertaConfig, RobertaModel),
    "bert": (BertConfig, BertModel),
    "xlm-roberta": (XLMRobertaConfig, XLMRobertaModel),  # CLaMP 2 / CLaMP 3
}


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the sequence axis of the positions where mask is 1 (spec §1.4): padding never counts."""
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def ordered_masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """masked_mean as a running sum read at the last position: in ONNX Runtime its bits depend on the
    item alone, where ReduceSum's summation order (so its rounding) follows the padded batch shape."""
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return torch.cumsum(hidden * weights, dim=1)[:, -1] / weights.sum(1).clamp(min=1.0)


def _eager(config):
    """Eager attention: the only implementation whose ONNX graph ORT's optimiser fuses (env-notes)."""
    config._attn_implementation = "eager"
    return config


def build_text_encoder(text: dict) -> RobertaModel | BertModel:
    """The text tower described by a family's "text" section, randomly initialised."""
    if text["arch"] not in TEXT_ARCHS:
        raise ValueError(
            f"unknown text arch {text['arch']!r} in model family; expected one of {sorted(TEXT_ARCHS)}"
        )
    config_cls, model_cls = TEXT_ARCHS[text["arch"]]
    config = config_cls(
        vocab_size=text["vocab_size"],
        hidden_size=text["hidden_size"],
        num_hidden_layers=text["num_hidden_layers"],
        num_attention_heads=text["num_attention_heads"],
        intermediate_size=text["intermediate_size"],
        max_position_embeddings=text["max_position_embeddings"],
        type_vocab_size=text["type_vocab_size"],
        layer_norm_eps=text["layer_norm_eps"],
        pad_token_id=text["pad_token_id"],
    )
    return model_cls(_eager(config))


def gathered_sum(rows: torch.Tensor, table: torch.Tensor, chunk: int = 8) -> torch.Tensor:
    """Sum of table rows [..., L] -> [..., H] with plain Gather + ReduceSum, for ONNX graphs.

    The tracer turns embedding_bag into an ONNX Loop over patches (2x slower in ORT); gathering
    `chunk` positions at a time bounds the intermediate to [..., chunk, H] (whole-patch gathers need
    1.6 GB for 8192 patches of a 768-wide model).
    """
    total = F.embedding(rows[..., :chunk], table).sum(-2)
    for start in range(chunk, rows.shape[-1], chunk):
        total = total + F.embedding(rows[..., start : start + chunk], table).sum(-2)
    return total


class MusicEncoder(nn.Module):
    """Patches -> contextual patch vectors: one-hot patch embedding + BERT fed by inputs_embeds.

    CLaMP 1's bar patches (98 classes, spec §1.2) and CLaMP 2/3's M3 patches (128 classes, §12.1) differ
    only in the class count the family names.
    """

    def __init__(self, music: dict):
        super().__init__()
        self.patch_length = music["patch_length"]
        self.n_classes = music.get("n_classes", N_CLASSES)
        hidden = music["hidden_size"]
        self.patch_embedding = nn.Linear(self.patch_length * self.n_classes, hidden)
        config = BertConfig(
            vocab_size=1,
            hidden_size=hidden,
            num_hidden_layers=music["num_hidden_layers"],
            num_attention_heads=music["num_attention_heads"],
            intermediate_size=music["intermediate_size"],
            max_position_embeddings=music["max_patches"],
            type_vocab_size=music["type_vocab_size"],
            layer_norm_eps=music["layer_norm_eps"],
            pad_token_id=0,
        )
        self.enc = BertModel(_eager(config))
        offsets = torch.arange(self.patch_length) * self.n_classes
        self.register_buffer("class_offsets", offsets, persistent=False)

    def embed_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """patch_embedding(one_hot(patches)) as a sum of 64 table rows, never the 6272-wide one-hot.

        Row pos*classes+class of W.T is the column the one-hot selects for `class` at `pos`, so the
        product equals bias + the sum of those rows (the flatten order is position-major, spec §1.2).
        """
        batch, n_patches, length = patches.shape
        if length != self.patch_length:
            raise ValueError(f"patches have {length} characters each; this model expects {self.patch_length}")
        rows = patches.long() + self.class_offsets
        table = self.patch_embedding.weight.t()
        if torch.onnx.is_in_onnx_export():
            summed = gathered_sum(rows, table)
        else:
            summed = F.embedding_bag(rows.reshape(-1, length), table.contiguous(), mode="sum")
        return summed.reshape(batch, n_patches, -1) + self.patch_embedding.bias

    def forward(self, patches: torch.Tensor, patch_mask: torch.Tensor) -> torch.Tensor:
        """[B,P,64] ids in [0, n_classes) and a [B,P] mask -> [B,P,H] last hidden states."""
        embeds = self.embed_patches(patches)
        return self.enc(inputs_embeds=embeds, attention_mask=patch_mask).last_hidden_state


class CLaMP(nn.Module):
    """Text and music towers with linear projections into one space; outputs are unnormalised (spec §1.6)."""

    def __init__(self, family: dict):
        super().__init__()
        text, music, dim = family["text"], family["music"], family["projection_dim"]
        self.text_enc = build_text_encoder(text)
        self.text_proj = nn.Linear(text["hidden_size"], dim)
        self.music_enc = MusicEncoder(music)
        self.music_proj = nn.Linear(music["hidden_size"], dim)
        self.pool = masked_mean  # export swaps in ordered_masked_mean for the graphs it quantises

    def text_pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """[B,T] token ids and mask -> [B, text_hidden]: masked mean of the last hidden state."""
        hidden = self.text_enc(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.pool(hidden, attention_mask)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """[B,T] token ids and mask -> [B,D] text features (unnormalised)."""
        return self.text_proj(self.text_pooled(input_ids, attention_mask))

    def music_pooled(self, patches: torch.Tensor, patch_mask: torch.Tensor) -> torch.Tensor:
        """[B,P,64] patch ids and [B,P] mask -> [B,H]: masked mean of the music encoder's last layer."""
        return self.pool(self.music_enc(patches, patch_mask), patch_mask)

    def encode_music(self, patches: torch.Tensor, patch_mask: torch.Tensor) -> torch.Tensor:
        """[B,P,64] patch ids and [B,P] mask -> [B,D] music features (unnormalised)."""
        return self.music_proj(self.music_pooled(patches, patch_mask))
