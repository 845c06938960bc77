"""`python -m training.classical`: convert (or load from the cache) music21's classical scores and print
what they became: pieces and works per composer, genre and split, failures, and the seconds it took."""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

from training.classical.convert import CACHE_DIR, DEFAULT_WORKERS, build_cache, cache_path
from training.classical.corpus import ClassicalPiece, label_sets, pieces_from
from training.classical.facts import label_texts
from training.classical.music import leaked_words
from training.corpus import load_corpus, music21_corpus_dir


def _table(title: str, pieces: list[ClassicalPiece], key) -> list[str]:
    """Rows of pieces and works per value of key(piece), on each side of the split, most pieces first."""
    counts: Counter = Counter()
    works: dict[tuple, set] = {}
    for piece in pieces:
        for side in (piece.split, "all"):
            counts[key(piece), side] += 1
            works.setdefault((key(piece), side), set()).add(piece.work.key)
    values = sorted({value for value, _ in counts}, key=lambda v: -counts[v, "all"])
    rows = [
        f"| {title} | pieces | works | train pieces | eval pieces | eval works |",
        "|---|---|---|---|---|---|",
    ]
    for v in values:
        n_works, n_eval = (len(works.get((v, side), ())) for side in ("all", "eval"))
        cells = (counts[v, "all"], n_works, counts[v, "train"], counts[v, "eval"], n_eval)
        rows.append(f"| {v} | " + " | ".join(map(str, cells)) + " |")
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training.classical", description=__doc__)
    parser.add_argument("--cache-dir", type=Path, default=CACHE_DIR)
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="conversion processes (1-2)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    records, converting = build_cache(music21_corpus_dir(), args.cache_dir, args.workers)
    folk_keys = {tune.body_key for tune in load_corpus()}
    pieces = pieces_from(records, folk_keys)
    failed = [r for r in records if r.error]
    converted = [r for r in records if not r.error]
    print(f"cache: {cache_path(args.cache_dir)}")
    print(
        f"{len(records)} score files: {len(converted)} converted, {len(failed)} failed; {len(pieces)} pieces "
        f"({len(converted) - len(pieces)} dropped: no music, or a body another score or a folk tune has)"
    )
    print(f"conversion seconds summed over files (in the cache): {sum(r.seconds for r in records):.0f}")
    print(f"this run: {converting:.1f} s converting, {time.perf_counter() - start:.1f} s in all")
    print(f"conversion paths: {dict(Counter(r.via for r in converted))}")
    for record in failed:
        print(f"FAILED {record.source}: {record.error}")
    for title, key in (
        ("composer", lambda p: p.facts.composer),
        ("genre", lambda p: p.facts.genre),
        ("era", lambda p: p.facts.era),
        ("split", lambda p: p.split),
    ):
        print()
        print("\n".join(_table(title, pieces, key)))
    leaks = [(p.source, words) for p in pieces if (words := leaked_words(p.abc, label_texts(p.facts)))]
    print(f"\npieces whose model input holds a word of their composer, title, genre or era: {len(leaks)}")
    for source, words in leaks:
        print(f"LEAK {source}: {words}")
    for name, labels in label_sets(pieces).items():
        print(f"zero-shot {name} labels (>= 2 held-out works each): {len(labels)}: {', '.join(labels)}")


if __name__ == "__main__":
    main()
