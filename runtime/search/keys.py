"""Ad hoc keys, as clamp.py queries them: text lines or a folder of ABC files, embedded on the fly and cached.

Also zero-shot classification (music against prompted label texts) and reading a music query.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from runtime.music.abc import split_tunes
from runtime.music.formats import SCORE_SUFFIXES, decode_bytes, read_tunes
from runtime.music.profiles import Profile
from runtime.music.validate import require_music
from runtime.search.hits import Hit, exact_top_k
from runtime.search.limits import TOP_N, excerpt

MUSIC_SUFFIXES = tuple(sorted(SCORE_SUFFIXES))
DEFAULT_TEMPLATE = "This is a {}."
LABEL_SETS_FILE = Path(__file__).with_name("labelsets.json")


class Embedder(Protocol):
    """What key sets need from runtime.model.encoder.Encoder."""

    model_hash: str
    profile: Profile  # how its music is read and patched

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_abc(self, abcs: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class KeySet:
    """Keys held in memory: ids, L2-normalised vectors [N, dim] and per-key metadata, searched exactly."""

    ids: list[str]
    vectors: np.ndarray
    metadata: list[dict[str, Any]]

    def search(self, queries: np.ndarray, k: int) -> list[list[Hit]]:
        """Best k keys per query row (k = 0: all keys), best first."""
        if not self.ids:
            raise ValueError("there are no keys to search: check the keys file or folder")
        scores, rows = exact_top_k(queries, self.vectors, TOP_N.check(k) or len(self.ids))
        return [
            [Hit(self.ids[r], float(s), self.metadata[r]) for s, r in zip(row_scores, row_rows, strict=True)]
            for row_scores, row_rows in zip(scores, rows, strict=True)
        ]


def read_music(source: str | Path, tune: int = 0, profile: Profile | None = None) -> str:
    """ABC of tune `tune` of a score file (ABC, MusicXML, MIDI) or of ABC text (text has a newline).

    Scores are read as the model's preprocessing `profile` reads them (CLaMP 2/3: MIDI as MTF text).
    NotMusicError (a ValueError) when that tune is not ABC music (runtime.music.validate).
    """
    if isinstance(source, Path) or "\n" not in source:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"music file {path} not found (pass a path to a score file, or ABC text)")
        return pick_tune(read_tunes(path, profile=profile), tune, str(path))
    tunes = split_tunes(source)
    if not tunes:
        if not source.strip():
            raise ValueError("the ABC text holds no ABC music")
        return require_music(source, "the ABC text")  # a tune without an X: line: use it as it is
    return pick_tune(tunes, tune, "the ABC text")


def upload_abc(filename: str, data: bytes, profile: Profile | None = None) -> str:
    """ABC text of an uploaded score: .abc decoded (tunes picked later), MusicXML/MIDI converted."""
    path = Path(Path(filename).name or "upload.abc")  # the name only says the format; it is never opened
    if path.suffix.lower() == ".abc":
        return decode_bytes(data)[0]
    return pick_tune(read_tunes(path, data, profile=profile), 0, path.name)


def pick_tune(tunes: list, tune: int, origin: str) -> str:
    """The ABC of tune `tune`, when it is music."""
    if not tunes:
        raise ValueError(f"{origin} holds no ABC music")
    if not 0 <= tune < len(tunes):
        raise ValueError(f"{origin} holds {len(tunes)} tune(s): pick one with tune index 0..{len(tunes) - 1}")
    return require_music(tunes[tune].abc, origin if len(tunes) == 1 else f"{origin}, tune {tune}")


def label_sets() -> dict[str, dict]:
    """The built-in label sets: {name: {"template": str, "labels": [str]}}."""
    return json.loads(LABEL_SETS_FILE.read_text())


def label_set(name: str) -> tuple[str, list[str]]:
    """(template, labels) of a built-in label set."""
    sets = label_sets()
    if name not in sets:
        raise ValueError(f"unknown label set {excerpt(name)!r}; built-in sets: {', '.join(sorted(sets))}")
    return sets[name]["template"], list(sets[name]["labels"])


def classify(
    encoder: Embedder, abc: str, labels: Sequence[str], template: str = DEFAULT_TEMPLATE
) -> list[Hit]:
    """Zero-shot classification: every label, best first, by cosine of the music and the prompted label."""
    return classify_vector(encoder, encoder.embed_abc([abc]), labels, template)


def classify_vector(
    encoder: Embedder, music: np.ndarray, labels: Sequence[str], template: str = DEFAULT_TEMPLATE
) -> list[Hit]:
    """Zero-shot classification of one music vector [1, dim] (encoded, or an indexed item's)."""
    labels, prompts = label_prompts(labels, template)
    return rank_labels(labels, prompts, encoder.embed_texts(prompts), music)


def label_prompts(labels: Sequence[str], template: str = DEFAULT_TEMPLATE) -> tuple[list[str], list[str]]:
    """The labels (blank ones left out) and their prompts; ValueError saying what to fix."""
    if "{}" not in template:
        raise ValueError(
            f"template {excerpt(template)!r} needs a {{}} where the label goes, e.g. {DEFAULT_TEMPLATE!r}"
        )
    labels = [label.strip() for label in labels if label.strip()]
    if not labels:
        raise ValueError("no labels to classify with: give at least one label")
    return labels, [template.replace("{}", label) for label in labels]


def rank_labels(
    labels: list[str], prompts: list[str], prompt_vectors: np.ndarray, music_vector: np.ndarray
) -> list[Hit]:
    """classify's ranking, from vectors embedded elsewhere too (the server's batches)."""
    keys = KeySet(labels, np.asarray(prompt_vectors), [{"text": p} for p in prompts])
    return keys.search(np.atleast_2d(music_vector), 0)[0]


def text_keys(encoder: Embedder, texts: Sequence[str]) -> KeySet:
    """Text keys from strings (ids are the texts themselves)."""
    texts = [t.strip() for t in texts if t.strip()]
    return KeySet(texts, encoder.embed_texts(texts), [{} for _ in texts])


def text_keys_file(encoder: Embedder, path: Path, cache: FeatureCache | None = None) -> KeySet:
    """Text keys from a file, one key a line (empty lines skipped), with cached features."""
    texts = [t.strip() for t in path.read_text(encoding="utf-8").splitlines() if t.strip()]
    if not texts:
        raise ValueError(f"text keys file {path} has no keys: write one key text a line")
    vectors = _cached(cache, [path], lambda stale: encoder.embed_texts(texts), lambda p: len(texts))
    return KeySet(texts, vectors, [{} for _ in texts])


def music_keys(encoder: Embedder, root: Path, cache: FeatureCache | None = None) -> KeySet:
    """Music keys from a score file or a folder of them (recursive): one key per tune, features cached."""
    files = (
        [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.suffix.lower() in MUSIC_SUFFIXES)
    )
    if not files:
        raise ValueError(f"no music files ({', '.join(MUSIC_SUFFIXES)}) found under {root}")
    tunes = {f: read_tunes(f, profile=encoder.profile) for f in files}
    ids, metadata = [], []
    for f in files:
        name = f.name if f == root else str(f.relative_to(root))
        for tune in tunes[f]:
            require_music(tune.abc, f"music key {f}" + (f", tune {tune.index}" if len(tunes[f]) > 1 else ""))
            ids.append(name if len(tunes[f]) == 1 else f"{name}#{tune.index}")
            metadata.append({"path": str(f), "tune_index": tune.index, **tune.meta})
    if not ids:
        raise ValueError(f"no ABC tunes (X: records) found in {root}")

    def embed(stale: list[Path]) -> np.ndarray:
        return encoder.embed_abc([t.abc for f in stale for t in tunes[f]])

    vectors = _cached(cache, files, embed, lambda f: len(tunes[f]))
    return KeySet(ids, vectors, metadata)


class FeatureCache:
    """Per-file key features in one .npz, reused while a file's path, mtime and size are unchanged."""

    def __init__(self, path: Path):
        self.path = path

    @classmethod
    def for_keys(cls, model_hash: str, root: Path) -> FeatureCache:
        """The cache of one model's features of one keys file or folder ($CLAMP_CACHE_DIR or ~/.cache)."""
        cache_dir = Path(os.environ.get("CLAMP_CACHE_DIR", Path.home() / ".cache" / "clamp-index"))
        where = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
        return cls(cache_dir / f"keys-{model_hash[:16]}-{where}.npz")

    def load(self) -> dict[tuple[str, int, int], np.ndarray]:
        """Features by (absolute path, mtime_ns, size); empty when there is no readable cache."""
        try:
            with np.load(self.path, allow_pickle=False) as data:
                offsets, vectors = data["offsets"], data["vectors"]
                return {
                    (str(f), int(m), int(s)): vectors[offsets[i] : offsets[i + 1]]
                    for i, (f, m, s) in enumerate(
                        zip(data["files"], data["mtimes"], data["sizes"], strict=True)
                    )
                }
        except (OSError, ValueError, KeyError):
            return {}

    def save(self, entries: dict[tuple[str, int, int], np.ndarray]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        counts = [len(v) for v in entries.values()]
        tmp = self.path.with_suffix(".tmp.npz")
        np.savez(
            tmp,
            files=np.array([k[0] for k in entries], dtype=str),
            mtimes=np.array([k[1] for k in entries], dtype=np.int64),
            sizes=np.array([k[2] for k in entries], dtype=np.int64),
            offsets=np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]),
            vectors=np.concatenate(list(entries.values())),
        )
        tmp.replace(self.path)


def _stamp(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path.resolve()), stat.st_mtime_ns, stat.st_size


def _cached(
    cache: FeatureCache | None,
    files: list[Path],
    embed: Callable[[list[Path]], np.ndarray],
    count: Callable[[Path], int],
) -> np.ndarray:
    """Features of `files` in order: cached ones reused, the rest embedded (all at once) and cached."""
    stamps = [_stamp(f) for f in files]
    known = cache.load() if cache else {}
    stale = [f for f, s in zip(files, stamps, strict=True) if s not in known or len(known[s]) != count(f)]
    fresh = embed(stale) if stale else None
    entries, offset, stale_set = {}, 0, set(stale)
    for f, s in zip(files, stamps, strict=True):
        if f in stale_set:
            entries[s], offset = fresh[offset : offset + count(f)], offset + count(f)
        else:
            entries[s] = known[s]
    vectors = np.concatenate(list(entries.values())).astype(np.float32, copy=False)
    if cache and (stale or set(known) != set(entries)):
        cache.save(entries)
    return vectors
