"""The classical half of the training corpus: music21's scores as records with facts, deduplicated and split.

Split rule (fixed): a score goes to "eval" with its whole work. A work is held out when
sha256(SPLIT_SALT + its work key) read as an integer is < EVAL_PERCENT mod 100; and every composer with at
least MIN_WORKS works gets MIN_HELD_OUT of them held out: where the hash rule holds out fewer, that composer's
works with the smallest hashes are added. Work keys name a work, not a file (training/classical/works.py):
"bach/bwv248" (every chorale of the Christmas Oratorio), "palestrina/missa brevis", "beethoven/op18no1".
Copies of one music body are kept once (first in file order), and bodies the folk corpus already has are
left to the folk side's own split (training/corpus.py).
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from runtime.music.abc import tune_id
from runtime.music.validate import music_problem
from training.classical.convert import CACHE_DIR, DEFAULT_WORKERS, Converted, build_cache
from training.classical.facts import PieceFacts, describe_piece
from training.classical.music import model_abc
from training.classical.works import Work, work_of
from training.corpus import MIN_BARS, body_key, music21_corpus_dir

SPLIT_SALT = "clamp-index/classical-split/v1:"
EVAL_PERCENT = 10
MIN_WORKS = 5  # composers with at least this many works...
MIN_HELD_OUT = 2  # ...have at least this many of them held out


@dataclass(frozen=True)
class ClassicalPiece:
    """One score: where it came from, the ABC the model sees, what its MusicXML says, its work, its facts,
    and its side of the split. Named like training.corpus.CorpusTune where the two agree."""

    id: str
    collection: str
    source: str
    abc: str
    meta: dict
    body_key: str
    work: Work
    facts: PieceFacts
    split: str


def work_hash(key: str) -> int:
    """The work's place in the split's fixed order: sha256 of the salted work key."""
    return int(hashlib.sha256((SPLIT_SALT + key).encode("utf-8")).hexdigest(), 16)


def held_out_works(works: dict[str, str]) -> set[str]:
    """The work keys on the eval side, given each work's composer ({work key: composer})."""
    held = {key for key in works if work_hash(key) % 100 < EVAL_PERCENT}
    by_composer: dict[str, list[str]] = defaultdict(list)
    for key, composer in works.items():
        by_composer[composer].append(key)
    for keys in by_composer.values():
        if len(keys) >= MIN_WORKS:
            missing = MIN_HELD_OUT - len(held.intersection(keys))
            held.update(sorted((k for k in keys if k not in held), key=work_hash)[: max(missing, 0)])
    return held


def pieces_from(records: Sequence[Converted], folk_keys: Collection[str] = ()) -> list[ClassicalPiece]:
    """Converted scores -> pieces: failed, empty and duplicate bodies dropped, each tagged with its split."""
    kept: dict[str, tuple[Converted, str, Work]] = {}
    for record in records:
        if record.abc is None:
            continue
        abc = model_abc(record.abc)
        if music_problem(abc, MIN_BARS):
            continue
        key = body_key(abc)
        if key not in kept and key not in folk_keys:
            kept[key] = (record, abc, work_of(record.source, record.fields))
    held = held_out_works({work.key: work.composer for _, _, work in kept.values()})
    return [
        ClassicalPiece(
            id=tune_id(record.source, 0, abc),
            collection=record.source.split("/")[0],
            source=record.source,
            abc=abc,
            meta=record.fields,
            body_key=key,
            work=work,
            facts=describe_piece(record.source, abc, record.fields, work),
            split="eval" if work.key in held else "train",
        )
        for key, (record, abc, work) in kept.items()
    ]


def load_classical(
    root: Path | None = None,
    cache_dir: Path = CACHE_DIR,
    workers: int = DEFAULT_WORKERS,
    progress: bool = False,
    folk_keys: Collection[str] = (),
) -> list[ClassicalPiece]:
    """The classical pieces of music21's corpus (converting once, then from the cache), split by work."""
    records, _ = build_cache(root or music21_corpus_dir(), cache_dir, workers, progress)
    return pieces_from(records, folk_keys)


def label_sets(pieces: Sequence[ClassicalPiece], min_works: int = MIN_HELD_OUT) -> dict[str, list[str]]:
    """Candidate labels for zero-shot composer, genre and era on the held-out side: each label that at least
    `min_works` held-out works carry, most pieces first."""
    works: dict[tuple[str, str], set[str]] = defaultdict(set)
    counts: Counter = Counter()
    for piece in pieces:
        if piece.split != "eval":
            continue
        for name, label in piece.facts.labels().items():
            works[name, label].add(piece.work.key)
            counts[name, label] += 1
    return {
        name: [
            label for (n, label), _ in counts.most_common() if n == name and len(works[n, label]) >= min_works
        ]
        for name in ("composer", "genre", "era")
    }
