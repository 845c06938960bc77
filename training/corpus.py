"""The training corpus: the ABC tunes music21 ships, with their header metadata, deduplicated and split.

Split rule (fixed, documented in models/default/README.md): a tune goes to "eval" when
sha256(SPLIT_SALT + its normalised music body) read as an integer is < EVAL_PERCENT mod 100, else to
"train". The normalised body is the music after K: without spaces, comments, chord symbols, annotations,
decorations and grace notes, so copies of one tune (even with other titles or fingerings) share a side.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from runtime.music.abc import split_tunes, tune_id
from runtime.music.validate import music_problem
from training.analysis import body_text

SPLIT_SALT = "clamp-index/default-split/v1:"
EVAL_PERCENT = 10
MIN_BARS = 2  # tunes with fewer bar patches (e.g. bodies written without bar lines) carry no music for CLaMP
_SPACE = re.compile(r"[\s\\]+")


@dataclass(frozen=True)
class CorpusTune:
    """One tune of the corpus: where it came from, its ABC, its header fields, and its side of the split."""

    id: str
    collection: str
    source: str
    index: int
    abc: str
    meta: dict[str, str]
    body_key: str
    split: str


def music21_corpus_dir() -> Path:
    """The folder of music21's bundled corpus, found without importing music21 (slow to import)."""
    spec = importlib.util.find_spec("music21")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("music21 is not installed: `pip install music21` (it ships the training tunes)")
    return Path(next(iter(spec.submodule_search_locations))) / "corpus"


def body_key(abc: str) -> str:
    """A hash of the tune's normalised music body: equal for copies of the same tune."""
    return hashlib.sha256(_SPACE.sub("", body_text(abc)).encode("utf-8")).hexdigest()


def split_of(key: str) -> str:
    """The side of the fixed split a tune with this body key falls on."""
    bucket = int(hashlib.sha256((SPLIT_SALT + key).encode()).hexdigest(), 16) % 100
    return "eval" if bucket < EVAL_PERCENT else "train"


def abc_files(root: Path, collections: Sequence[str] | None = None) -> list[Path]:
    """ABC files under root, sorted, optionally only those in the named top-level folders (collections)."""
    files = sorted(root.rglob("*.abc"))
    if collections is not None:
        files = [f for f in files if f.relative_to(root).parts[0] in collections]
    return files


def read_tunes(files: Iterable[Path], root: Path) -> list[CorpusTune]:
    """Every tune with music in these files, in file order, before deduplication."""
    tunes = []
    for path in files:
        source = path.relative_to(root).as_posix()
        for tune in split_tunes(path.read_text(encoding="utf-8", errors="replace")):
            if music_problem(tune.abc, MIN_BARS):  # the rule every input meets, with two bars, not one
                continue
            key = body_key(tune.abc)
            tunes.append(
                CorpusTune(
                    id=tune_id(source, tune.index, tune.abc),
                    collection=source.split("/")[0],
                    source=source,
                    index=tune.index,
                    abc=tune.abc,
                    meta=dict(tune.meta),
                    body_key=key,
                    split=split_of(key),
                )
            )
    return tunes


def dedupe(tunes: Sequence[CorpusTune]) -> list[CorpusTune]:
    """One tune per music body: the first copy, with header fields it lacks filled in from later copies."""
    kept: dict[str, CorpusTune] = {}
    for tune in tunes:
        first = kept.get(tune.body_key)
        if first is None:
            kept[tune.body_key] = tune
        elif set(tune.meta) - set(first.meta):
            kept[tune.body_key] = replace(first, meta={**tune.meta, **first.meta})
    return list(kept.values())


def load_corpus(root: Path | None = None, collections: Sequence[str] | None = None) -> list[CorpusTune]:
    """The deduplicated corpus (default: all of music21's ABC tunes), each tune tagged with its split."""
    root = root or music21_corpus_dir()
    return dedupe(read_tunes(abc_files(root, collections), root))
