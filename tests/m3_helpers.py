"""Tiny CLaMP 2 / CLaMP 3 models for tests: an XLM-R-style tokenizer, families, released layouts."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from helpers import SENTENCES, TINY_SIZES
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

from exporter.m3_checkpoint import to_official
from exporter.model import CLaMP
from runtime.model.families import load_family

XLMR_SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>"]  # ids 0..3, as XLM-R's
MULTILINGUAL = [
    *SENTENCES,
    "русская народная песня о реке",
    "一首欢快的中国民歌",
    "ein fröhliches Tanzlied",
    "une chanson de Noël",
    "canción de cuna para dormir",
]


def write_xlmr_tokenizer(path: Path, vocab_size: int = 400) -> int:
    """A small SentencePiece-style Unigram tokenizer with XLM-R's special ids and `<s> … </s>` framing."""
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=XLMR_SPECIAL_TOKENS, unk_token="<unk>", show_progress=False
    )
    tokenizer.train_from_iterator(MULTILINGUAL * 8, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(path))
    return tokenizer.get_vocab_size()


def tiny_m3_family(name: str = "clamp3-c2", vocab_size: int = 400, max_patches: int = 16) -> dict:
    """A CLaMP 2/3 family at test size: same layout, preprocessing and names as the full one."""
    family = copy.deepcopy(load_family(name))
    family["text"].update(TINY_SIZES, vocab_size=vocab_size, max_tokens=16, max_position_embeddings=18)
    family["music"].update(TINY_SIZES, max_patches=max_patches)
    family["projection_dim"] = 16
    return family


def write_m3_checkpoint(out_dir: Path, model: CLaMP, family: dict, extra: dict | None = None) -> Path:
    """A checkpoint dir of the released layout: `{"model": official state dict, ...}` as the .pth, plus
    tokenizer.json. CLaMP 3 files also hold the audio branch; some hold position_ids buffers."""
    out_dir.mkdir(parents=True, exist_ok=True)
    state = to_official(model.state_dict(), family)
    if family["checkpoint_layout"] == "clamp3":
        hidden = family["music"]["hidden_size"]
        state["audio_model.embeddings.position_embeddings.weight"] = torch.zeros(8, hidden)
        state["audio_proj.weight"] = torch.zeros(family["projection_dim"], hidden)
    state["text_model.embeddings.position_ids"] = torch.arange(18).unsqueeze(0)
    state.update(extra or {})
    container = {"model": state, "epoch": 10, "min_eval_loss": 0.415, "optimizer": {}}
    torch.save(container, out_dir / family["checkpoint_file"])
    write_xlmr_tokenizer(out_dir / "tokenizer.json", family["text"]["vocab_size"])
    return out_dir
