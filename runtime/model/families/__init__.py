"""Model families as data: one JSON file per family, resolved by name."""

from __future__ import annotations

import json
from importlib import resources


def family_names() -> list[str]:
    """Names of the model families this install knows."""
    return sorted(p.name[:-5] for p in resources.files(__package__).iterdir() if p.name.endswith(".json"))


def load_family(name: str) -> dict:
    """The family config called `name` (e.g. "clamp-s-512", "default")."""
    path = resources.files(__package__) / f"{name}.json"
    if not path.is_file():
        raise ValueError(f"unknown model family {name!r}; known: {', '.join(family_names())}")
    return json.loads(path.read_text())
