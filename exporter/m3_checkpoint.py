"""CLaMP 2 / CLaMP 3 released checkpoints (`.pth`) -> our CLaMP module, loaded strictly (clamp2-3-spec §13).

The released files are `torch.save({"model": state_dict, ...})` with the official module names; ours
differ only by prefix, so loading is a rename, then the same strict check as for CLaMP 1. Two things are
dropped, each by name: CLaMP 3's audio branch (`audio_model.*`, `audio_proj.*`: this product serves
text and symbolic music) and the `embeddings.position_ids` / `token_type_ids` buffers some transformers
versions saved. Every other key must match a parameter, and every parameter must be there.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from exporter.checkpoint import TOKENIZER_FILE, check_keys
from exporter.model import CLaMP

M3_LAYOUTS = ("clamp2", "clamp3")
IGNORED_PREFIXES = ("audio_model.", "audio_proj.")
_BUFFER = re.compile(r"\.embeddings\.(position_ids|token_type_ids)$")


def layout_help(family: dict) -> str:
    """Where the files of a family's checkpoint dir come from."""
    hub = family["hub"]
    return (
        f"A {family['name']} checkpoint dir holds {family['checkpoint_file']} "
        f"(Hugging Face repo {hub['repo']}) and the {TOKENIZER_FILE} of {hub['tokenizer']['repo']}."
    )


def key_map(family: dict) -> list[tuple[str, str]]:
    """Official prefix -> ours. CLaMP 3 calls the music branch `symbolic_*`, CLaMP 2 `music_*`."""
    music = family["checkpoint_prefixes"]["music"]
    return [
        ("text_model.", "text_enc."),
        ("text_proj.", "text_proj."),
        (f"{music}_model.patch_embedding.", "music_enc.patch_embedding."),
        (f"{music}_model.base.", "music_enc.enc."),
        (f"{music}_proj.", "music_proj."),
    ]


def _kept(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if not (k.startswith(IGNORED_PREFIXES) or _BUFFER.search(k))}


def _renamed(key: str, pairs: list[tuple[str, str]]) -> str:
    return next((new + key[len(old) :] for old, new in pairs if key.startswith(old)), key)


def to_ours(state: dict[str, torch.Tensor], family: dict) -> dict[str, torch.Tensor]:
    """An official state dict under our names, the ignored keys dropped."""
    return {_renamed(key, key_map(family)): value for key, value in _kept(state).items()}


def to_official(state: dict[str, torch.Tensor], family: dict) -> dict[str, torch.Tensor]:
    """Our state dict under the official names (the strict check's table; tests write released layouts)."""
    back = [(new, old) for old, new in key_map(family)]
    return {_renamed(key, back): value for key, value in state.items()}


def read_state(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of a released `.pth`: its "model" entry (training state beside it is not read)."""
    container = torch.load(path, map_location="cpu", weights_only=True)
    state = container.get("model") if isinstance(container, dict) and "model" in container else container
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} is not a CLaMP 2/3 checkpoint (a dict with a 'model' state dict)")
    return state


def load_m3(checkpoint_dir: str | Path, family: dict) -> CLaMP:
    """A CLaMP 2 / CLaMP 3 model from its released `.pth`, loaded strictly, in eval mode."""
    directory = Path(checkpoint_dir)
    path = directory / family["checkpoint_file"]
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint dir {directory} lacks {path.name}. {layout_help(family)}")
    official = _kept(read_state(path))
    model = CLaMP(family)
    check_keys(to_official(model.state_dict(), family), official, path)  # errors name the official keys
    model.load_state_dict(to_ours(official, family), strict=True)
    return model.eval()
