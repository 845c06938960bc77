"""Shared test helpers: tiny CLaMP families, tiny tokenizers, official-layout checkpoints, real samples."""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
from functools import cache
from pathlib import Path

import torch
from tokenizers import ByteLevelBPETokenizer

from exporter.model import CLaMP
from runtime.model.families import load_family
from runtime.music.abc import split_tunes
from runtime.music.patching import prepare_music

# Tiny models run fastest on one thread; on a shared CPU torch's pool of 2 spins: 6 ms vs 400 ms a forward.
torch.set_num_threads(1)

ROBERTA_SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]

SENTENCES = [
    "a lively jig in D major",
    "A slow, mournful air from the west of Ireland.",
    "Ein Liebeslied aus dem Elsass",
    "reel",
    "This piece of music is composed by Chopin.",
    "Café au lait: a naïve waltz in 3/4 time, with a façade of élan.",
    "strathspey with dotted rhythms and Scotch snaps, played at a steady pace by a fiddler",
    "中国民歌",
]

TINY_SIZES = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}


def tiny_family(arch: str = "roberta", vocab_size: int = 300, max_patches: int = 512) -> dict:
    """A small family shaped like clamp-s (arch "roberta", official layout) or like ours (arch "bert")."""
    family = copy.deepcopy(load_family("clamp-s-512" if arch == "roberta" else "default"))
    family["name"] = f"tiny-{arch}"
    family["text"].update(TINY_SIZES, vocab_size=vocab_size, max_tokens=32)
    family["text"]["max_position_embeddings"] = 34 if arch == "roberta" else 32
    family["text"].pop("init", None)
    family["music"].update(TINY_SIZES, max_patches=max_patches)
    family["projection_dim"] = 16
    return family


def write_roberta_tokenizer_files(out_dir: Path) -> int:
    """Train a small byte-level BPE on the test sentences; save vocab.json + merges.txt; return its size."""
    tokenizer = ByteLevelBPETokenizer()
    tokenizer.train_from_iterator(
        SENTENCES * 4,
        vocab_size=300,
        min_frequency=1,
        special_tokens=ROBERTA_SPECIAL_TOKENS,
        show_progress=False,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save_model(str(out_dir))
    return tokenizer.get_vocab_size()


def official_state_dict(model: torch.nn.Module, family: dict) -> dict[str, torch.Tensor]:
    """The model's state dict as transformers 4.18 saved CLaMP: with both position_ids buffers."""
    state = dict(model.state_dict())
    text_positions = family["text"]["max_position_embeddings"]
    state["text_enc.embeddings.position_ids"] = torch.arange(text_positions).unsqueeze(0)
    state["music_enc.enc.embeddings.position_ids"] = torch.arange(family["music"]["max_patches"]).unsqueeze(0)
    return state


def official_config(family: dict) -> dict:
    """config.json of an official checkpoint for this family's music encoder (spec §1.8)."""
    music = family["music"]
    return {
        "architectures": ["CLaMP"],
        "model_type": "bert",
        "hidden_size": music["hidden_size"],
        "num_hidden_layers": music["num_hidden_layers"],
        "num_attention_heads": music["num_attention_heads"],
        "intermediate_size": music["intermediate_size"],
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "layer_norm_eps": music["layer_norm_eps"],
        "initializer_range": 0.02,
        "max_position_embeddings": music["max_patches"],
        "max_length": music["max_patches"],
        "position_embedding_type": "absolute",
        "type_vocab_size": music["type_vocab_size"],
        "vocab_size": 1,
        "pad_token_id": 0,
        "torch_dtype": "float32",
        "transformers_version": "4.18.0",
        "use_cache": True,
    }


def write_official_checkpoint(
    out_dir: Path, model: torch.nn.Module, family: dict, state: dict[str, torch.Tensor] | None = None
) -> Path:
    """An official-layout checkpoint dir: config.json, pytorch_model.bin (214-key layout), vocab + merges."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(official_config(family), indent=2))
    torch.save(official_state_dict(model, family) if state is None else state, out_dir / "pytorch_model.bin")
    write_roberta_tokenizer_files(out_dir)
    return out_dir


@cache
def real_tunes(count: int = 6) -> tuple[str, ...]:
    """Real ABC tunes of varied length from music21's corpus (Essen, O'Neill's...), fewest patches first."""
    from music21 import corpus

    paths = sorted(str(p) for p in corpus.getPaths(fileExtensions=("abc",)))
    pool = sorted(
        (
            tune.abc
            for path in paths[:: len(paths) // 12]
            for tune in split_tunes(Path(path).read_text("utf-8"))
        ),
        key=lambda abc: len(prepare_music(abc, None)),
    )
    return tuple(pool[round(i * (len(pool) - 1) / (count - 1))] for i in range(count))


@cache
def tiny_model() -> tuple[CLaMP, dict, Path]:
    """The random tiny clamp-s-shaped model behind tiny_model_dir: (model, family, tokenizer.json)."""
    from exporter.checkpoint import roberta_tokenizer

    root = Path(tempfile.mkdtemp(prefix="clamp-tiny-model-"))
    family = tiny_family("roberta", vocab_size=write_roberta_tokenizer_files(root))
    roberta_tokenizer(root / "vocab.json", root / "merges.txt").save(str(root / "tokenizer.json"))
    torch.manual_seed(0)
    return CLaMP(family).eval(), family, root / "tokenizer.json"


@cache
def _tiny_model_dir_source() -> Path:
    """tiny_model() exported once per session, every variant and parity check, as `clamp export` does."""
    from exporter.export import build_model_dir

    model, family, tokenizer_json = tiny_model()
    source = {"model": family["name"], "checkpoint": "random weights (tests)", "sha256": "0" * 64}
    out = tokenizer_json.parent / "model"
    build_model_dir(model, family, tokenizer_json, out, source)
    return out


def tiny_model_dir(tmp_path: Path) -> Path:
    """A model dir (tmp_path/"model") of a tiny random clamp-s-shaped model, exported like `clamp export`."""
    return Path(shutil.copytree(_tiny_model_dir_source(), tmp_path / "model"))
