"""A corpus that changes under its index, for the update tests: add a file, cut tunes, embed, build again."""

from __future__ import annotations

import shutil
from pathlib import Path

from query_corpus import Corpus, clamp, corpus_path

from indexer.index_build import build_index

BASE_FILES = ("oneills1850/0721-0730.abc", "oneills1850/1116-1135_mh.abc")  # 10 jigs, 20 slip jigs
MORE = ("oneills1850/1556-1624.abc", "essenFolksong/irl.abc")  # 69 hornpipes, 62 Irish songs


def embed(corpus: Corpus) -> None:
    embed_into(corpus.shards_dir, corpus.model_dir, corpus.abc_dir, "--resume")


def embed_into(shards_dir: Path, model_dir: Path, *inputs: object) -> None:
    """`clamp embed INPUTS... --model MODEL_DIR --out SHARDS_DIR` (inputs may end in more options)."""
    clamp("embed", *inputs, "--model", model_dir, "--out", shards_dir, "--workers", 0, "--quiet")


def add_file(corpus: Corpus, name: str) -> None:
    shutil.copy(corpus_path(name), corpus.abc_dir / name.replace("/", "-"))
    embed(corpus)


def drop_tunes(corpus: Corpus, name: str, dropped: int) -> list[str]:
    """Cut the last `dropped` tunes of a corpus file and embed again; the titles cut."""
    path = corpus.abc_dir / name.replace("/", "-")
    tunes = path.read_text().split("\nX:")
    path.write_text("\nX:".join(tunes[:-dropped]) + "\n")
    embed(corpus)
    return [
        line[2:].strip()
        for tune in tunes[-dropped:]
        for line in tune.splitlines()[:3]
        if line.startswith("T:")
    ]


def update(corpus: Corpus) -> dict:
    return build_index(corpus.shards_dir, corpus.index_dir, model_dir=corpus.model_dir)


def remove_file(corpus: Corpus, name: str) -> None:
    (corpus.abc_dir / name.replace("/", "-")).unlink()
    embed(corpus)
