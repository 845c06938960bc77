"""Published weights by hub name: a family's checkpoint files from the Hugging Face cache (or the hub).

`clamp export --model clamp3-c2` without `--checkpoint` looks for the files the family's `"hub"` entry
names (its weights repo and its tokenizer's repo) with `huggingface_hub` (the `[hub]` extra), which
honours `HF_HUB_OFFLINE`, `HF_HOME` and `HF_HUB_CACHE`. The loaders read one directory, so the files
are linked into one under our cache; nothing is copied.
"""

from __future__ import annotations

import os
from pathlib import Path

INSTALL_HINT = "pip install 'clamp-index[hub]'"


def hub_files(family: dict) -> list[tuple[str, str]]:
    """(repo, file) pairs a family's checkpoint dir is made of."""
    hub = family["hub"]
    return [(hub["repo"], name) for name in hub["files"]] + [
        (hub["tokenizer"]["repo"], name) for name in hub["tokenizer"]["files"]
    ]


def _missing_message(family: dict, why: str, layout_help: str) -> str:
    wanted = ", ".join(f"{repo}/{name}" for repo, name in hub_files(family))
    return (
        f"model {family['name']} needs --checkpoint DIR, or its files in the Hugging Face cache: {why}. "
        f"Files: {wanted}. {layout_help}"
    )


def checkpoint_from_hub(family: dict, layout_help: str) -> Path:
    """A directory holding the family's checkpoint files, linked from the Hugging Face cache."""
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:
        why = f"huggingface_hub is not installed ({INSTALL_HINT})"
        raise ValueError(_missing_message(family, why, layout_help)) from None
    try:
        paths = {name: Path(hf_hub_download(repo, name)) for repo, name in hub_files(family)}
    except LocalEntryNotFoundError:
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
        why = "it is not in the Hugging Face cache" + (" and HF_HUB_OFFLINE is set" if offline else "")
        raise ValueError(_missing_message(family, why, layout_help)) from None
    except OSError as error:  # no network, hub unreachable, repo or file not found
        raise ValueError(
            _missing_message(family, f"the hub could not be reached ({error})", layout_help)
        ) from None
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "clamp-index"
    directory = root / "checkpoints" / family["name"]
    directory.mkdir(parents=True, exist_ok=True)
    for name, target in paths.items():
        link = directory / name
        if link.resolve() == target.resolve():
            continue
        partial = directory / f".{name}.{os.getpid()}.link"
        partial.unlink(missing_ok=True)
        partial.symlink_to(target.resolve())
        partial.replace(link)  # atomic: a concurrent export sees the old link or the new one
    return directory
