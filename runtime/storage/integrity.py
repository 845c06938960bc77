"""Files checked against the sizes and sha256 their manifest lists: how model and index dirs detect damage."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_entries(directory: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    """What a manifest records of each named file: {"bytes": size, "sha256": hex}."""
    return {
        name: {"bytes": (directory / name).stat().st_size, "sha256": file_sha256(directory / name)}
        for name in names
    }


def listed_files(
    manifest: Any, where: Path, required: Iterable[str], remedy: str, error: type[Exception]
) -> dict[str, dict[str, Any]]:
    """The manifest's "files" table, checked: plain file names, each with its bytes and sha256.

    Every name in `required` (the files the reader of this artifact opens) must be listed: a file the
    manifest does not cover could be swapped unnoticed, so an omission is a refusal, never a skip.
    """
    files = manifest.get("files") if isinstance(manifest, dict) else None
    well_formed = isinstance(files, dict) and all(
        Path(name).name == name not in ("", ".", "..")
        and isinstance(entry, dict)
        and isinstance(entry.get("bytes"), int)
        and isinstance(entry.get("sha256"), str)
        for name, entry in files.items()
    )
    if not well_formed:
        raise error(f'{where} has no valid "files" table (file names with bytes and sha256); {remedy}')
    omitted = sorted(set(required) - files.keys())
    if omitted:
        raise error(f'{where} does not list {", ".join(omitted)} in its "files" table; {remedy}')
    return files


def check_files(
    directory: Path, files: dict[str, dict[str, Any]], full: bool, remedy: str, error: type[Exception]
) -> None:
    """Raise `error` naming the first listed file that is missing, resized or (when `full`) altered.

    Sizes cost one stat a file (truncation, half-written copies); `full` reads every byte for the sha256.
    """
    for name, entry in files.items():
        path = directory / name
        if not path.is_file():
            raise error(f"{path} is missing (listed in its manifest.json); {remedy}")
        size = path.stat().st_size
        if size != entry["bytes"]:
            raise error(
                f"{path} has {size} bytes, its manifest.json says {entry['bytes']}: it changed; {remedy}"
            )
        if full and file_sha256(path) != entry["sha256"]:
            raise error(f"{path} does not match its sha256 in manifest.json: it changed; {remedy}")
