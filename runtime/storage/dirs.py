"""Output dirs: what a path holds, and the one guarded way every command writes or replaces a dir.

A command may write into or replace only a dir it can prove it wrote: missing, empty, or of the
expected kind (a manifest.json of ours naming every file there, or a shards dir of only our names).
Anything else is refused with a message saying what is there. Callers hold `lock.exclusive(out)`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

MANIFEST_FILE = "manifest.json"
MODEL, INDEX, SHARDS, CHECKPOINT = "model", "index", "shards", "checkpoint"
EMPTY, MISSING = "empty", "missing"
LABELS = {
    MODEL: "a clamp model dir",
    INDEX: "a clamp index dir",
    SHARDS: "a clamp shards dir",
    CHECKPOINT: "a clamp training checkpoint",
}
NOUNS = {MODEL: "a model dir", INDEX: "an index", SHARDS: "shards", CHECKPOINT: "a checkpoint"}
# Manifests written before they carried a "kind", recognised by the keys only our writers put in them.
LEGACY_MANIFEST_KEYS = {
    MODEL: {"model_hash", "created", "files", "versions", "export", "source"},
    INDEX: {"model_hash", "count", "dim", "space", "M", "ef_construction", "files"},
}
# The shards dir layout (indexer.layout): only shards are `*.parquet` and only they lack a `_`/`.` name.
SHARD_PATTERN = "shard-[0-9][0-9][0-9][0-9][0-9].parquet"
CHECKSUMS_DIR = "_checksums"
ERRORS_DIR = "_errors"
STATS_DIR = "_stats"
SUPERSEDED_FILE = "_superseded.pq"
# Before 17.8 sidecars sat among the shards; such a dir is still ours (and is migrated on its next run).
OLD_SHARDS_ENTRIES = re.compile(r"(shard-\d{5}|superseded)\.parquet(\.sha256)?|errors|stats")
TEMPORARY = re.compile(r"\..*\.tmp")  # what a writer killed mid-file leaves; the next run removes it
SHARDS_ENTRIES = re.compile(
    "|".join(
        [
            r"shard-\d{5}\.parquet",
            CHECKSUMS_DIR,
            ERRORS_DIR,
            STATS_DIR,
            re.escape(SUPERSEDED_FILE),
            TEMPORARY.pattern,
        ]
    )
)
# What an index update writes beside the files its manifest lists: segment dirs and deleted-label files,
# listed once the new manifest is in place (an update killed before that leaves them for the next to remove).
INDEX_UPDATE_ENTRIES = re.compile(r"segment-\d{5}|deleted-\d{5}\.npy")
CHECKPOINT_FILES = {"config.json", "model.safetensors", "training.json", "metrics.json", "README.md"}


class OutDirError(ValueError):
    """An output path that holds something this command did not write, so it will not touch it."""


@dataclass(frozen=True)
class Found:
    """What a dir holds: one of our kinds, EMPTY, MISSING, or None (not ours), and a phrase saying so."""

    kind: str | None
    summary: str


def describe_dir(path: Path) -> Found:
    """Recognise what `path` holds, reading only names and a manifest.json."""
    if not path.exists():
        return Found(MISSING, "nothing")
    if not path.is_dir():
        return Found(None, "a file, not a dir")
    names = sorted(p.name for p in path.iterdir())
    if not names:
        return Found(EMPTY, "nothing")
    if MANIFEST_FILE in names:
        return _manifest_dir(path, names)
    if all(SHARDS_ENTRIES.fullmatch(n) or OLD_SHARDS_ENTRIES.fullmatch(n) for n in names):
        shards = sum(Path(n).match(SHARD_PATTERN) for n in names)
        return Found(SHARDS, f"{LABELS[SHARDS]} ({shards} shards)")
    kept = {n for n in names if not TEMPORARY.fullmatch(n)}  # a killed save's temporary files too
    if {"config.json", "model.safetensors"} <= kept and kept <= CHECKPOINT_FILES:
        return Found(CHECKPOINT, f"{LABELS[CHECKPOINT]} ({', '.join(names)})")
    return Found(None, f"{_entries(len(names))} clamp did not write ({_some(names)})")


def _manifest_dir(path: Path, names: list[str]) -> Found:
    """A dir with a manifest.json: ours only if the manifest is of a kind of ours and lists every file."""
    try:
        manifest = json.loads((path / MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        manifest = None
    kind = manifest.get("kind") if isinstance(manifest, dict) else None
    if kind is None and isinstance(manifest, dict):
        kind = next((k for k, keys in LEGACY_MANIFEST_KEYS.items() if keys <= manifest.keys()), None)
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if kind not in (MODEL, INDEX) or not isinstance(files, dict):
        others = _entries(len(names) - 1, "other ")
        return Found(None, f"a manifest.json clamp did not write and {others} ({_some(names)})")
    ours = INDEX_UPDATE_ENTRIES if kind == INDEX else None
    unlisted = [
        n
        for n in names
        if n != MANIFEST_FILE
        and n not in files
        and not TEMPORARY.fullmatch(n)
        and not (ours and ours.fullmatch(n))
    ]
    if unlisted:
        return Found(None, f"{LABELS[kind]} plus entries its manifest.json does not list ({_some(unlisted)})")
    return Found(kind, f"{LABELS[kind]} ({MANIFEST_FILE}, {len(names) - 1} files)")


def _entries(n: int, adjective: str = "") -> str:
    return f"{n} {adjective}{'entry' if n == 1 else 'entries'}"


def _some(names: list[str], shown: int = 4) -> str:
    return ", ".join(names[:shown]) + (f", ... {len(names) - shown} more" if len(names) > shown else "")


def prepare_out_dir(path: str | Path, kind: str, replacing: bool) -> Found:
    """Refuse unless `path` is missing, empty or already `kind`; what it holds otherwise.

    `replacing`: the command swaps the whole dir (export, index build) rather than adding to it (embed,
    train).
    """
    path = Path(path)
    found = describe_dir(path)
    if found.kind not in (kind, EMPTY, MISSING):
        verb = f"replace it with {NOUNS[kind]}" if replacing else f"write {NOUNS[kind]} into it"
        raise OutDirError(f"{path} holds {found.summary}: refusing to {verb}; pass another --out")
    return found


def building_dir(out: Path) -> Path:
    """A fresh, empty dir beside `out` to build a replacement in (hidden; the lock on `out` makes it ours)."""
    out = out.absolute()
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def replace_dir(built: Path, out: Path, kind: str) -> None:
    """Move a finished `built` dir to `out`, replacing what is there only if it is `kind` (checked again now).

    The old dir is renamed aside before the new one takes its name and removed last, so a kill at any
    point leaves either dir whole under `out` or beside it as `.NAME.old`, which the next replace removes.
    """
    prepare_out_dir(out, kind, replacing=True)
    out = out.absolute()
    old = out.with_name(f".{out.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    built.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def write_json(path: Path, content: dict) -> None:
    """Replace a JSON file atomically: readers see the old file or the new one, never part of either."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(content, indent=2) + "\n")
    os.replace(tmp, path)
