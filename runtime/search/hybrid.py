"""Text search in three modes: vector (the model), keyword (bm25 over metadata) and hybrid (both, fused).

Vector search finds what the model knows (jig, dorian, strathspey) and misses what only the
metadata says (a composer, a place, "Weihnachtslied"); keyword search is the opposite. Hybrid
fuses the two ranked lists (reciprocal-rank fusion by default; a score mix is the alternative
bench/bench_search_quality.py compares it with), candidates that are no better than chance (vector
only, under the calibrated threshold) after the matches, and each hit says which side found it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from runtime.search import calibration
from runtime.search.calibration import z_scores
from runtime.search.filters import Filter, parse_filter
from runtime.search.hits import Hit

if TYPE_CHECKING:
    from runtime.search.index import Index

MODES = ("hybrid", "vector", "keyword")
# Candidates taken from each side before fusing (more than any k a page shows; cheap on both sides).
CANDIDATES = 100
# The keyword side goes deeper: many items can match a query equally well ("a reel in G": 243), and those
# the vector side also found should be seen as found by both.
KEYWORD_CANDIDATES = 500
# Reciprocal-rank fusion's constant (60 in Cormack et al. 2009) and the keyword side's weight (the
# vector side's is 1): chosen on the tuning split of bench/queries.json (BENCHMARKS.md).
RRF_K = 10
RRF_KEYWORD_WEIGHT = 2.0
MIX_KEYWORD_WEIGHT = 0.5  # the score mix's weight of the keyword side


def rrf(vector: np.ndarray, keyword: np.ndarray, _cosines: np.ndarray, _bm25: np.ndarray) -> np.ndarray:
    """Reciprocal-rank fusion: 1 / (RRF_K + rank) summed over the sides that found each candidate.

    Arguments are per candidate (the union of both sides): rank on each side (0-based; -1: not
    found there), cosine, and bm25 (0 when not found by keyword). Returns the fused scores.
    """
    return sum(
        weight * np.where(rank >= 0, 1.0 / (RRF_K + rank + 1), 0.0)
        for rank, weight in ((vector, 1.0), (keyword, RRF_KEYWORD_WEIGHT))
    )


def score_mix(_vector: np.ndarray, _keyword: np.ndarray, cosines: np.ndarray, bm25: np.ndarray) -> np.ndarray:
    """A score mix: min-max scaled cosine and bm25 / best bm25, weighted (arguments as rrf's)."""
    span = cosines.max() - cosines.min()
    scaled = (cosines - cosines.min()) / span if span > 0 else np.ones_like(cosines)
    best = bm25.max()
    return (1 - MIX_KEYWORD_WEIGHT) * scaled + MIX_KEYWORD_WEIGHT * (bm25 / best if best > 0 else bm25)


FUSIONS: dict[str, Callable[..., np.ndarray]] = {"rrf": rrf, "mix": score_mix}


def resolve_mode(index: Index, mode: str | None) -> str:
    """The mode to run: the one asked for (checked), else the index's default."""
    if mode is None:
        return index.default_mode()
    if mode not in MODES:
        raise ValueError(f"unknown search mode {mode!r}: use one of {', '.join(MODES)}")
    if mode != "vector" and not index.items.has_keywords():
        raise ValueError(
            f"index {index.directory} has no keyword table (built before keyword search): use mode "
            "vector, or rebuild the index with `clamp index build` for keyword and hybrid search"
        )
    return mode


def text_search(
    index: Index,
    text: str,
    k: int,
    *,
    mode: str | None = None,
    vector: np.ndarray | None = None,
    filter: str | Filter | None = None,
    exact: bool = False,
    with_abc: bool = False,
    fusion: str = "rrf",
) -> list[Hit]:
    """The k best items for a text in the given mode (see Index.search_text), best first."""
    mode = resolve_mode(index, mode)
    tree = parse_filter(filter) if isinstance(filter, str) else filter
    if mode == "keyword":
        labels, bm25, _ = index.items.keyword_search(text, k, tree)
        return [
            replace(hit, found_by=("keyword",)) for hit in index.hits(labels[None], bm25[None], with_abc)[0]
        ]
    if vector is None:
        vector = index.require_encoder().embed_texts([text])
    vector = np.asarray(vector, dtype=np.float32).reshape(-1)
    if mode == "vector":
        labels, cosines = (row[0] for row in index.nearest(vector, k, filter=tree, exact=exact))
        return _with_strength(index, labels, cosines, [("vector",)] * len(labels), with_abc)
    vector_labels = index.nearest(vector, max(k, CANDIDATES), filter=tree, exact=exact)[0][0]
    keyword_labels, keyword_bm25, parts = index.items.keyword_search(text, max(k, KEYWORD_CANDIDATES), tree)
    labels = np.unique(np.concatenate([vector_labels, keyword_labels]))
    if len(labels) == 0:
        return []
    vector_rank, keyword_rank = _ranks(labels, vector_labels), _ranks(labels, keyword_labels)
    if len(parts):  # items matching as many parts of the query share a keyword rank: vector orders them
        tier_rank = np.searchsorted(-parts, -parts, side="left")
        keyword_rank = np.where(keyword_rank >= 0, tier_rank[np.maximum(keyword_rank, 0)], -1)
    bm25 = np.zeros(len(labels))
    bm25[keyword_rank >= 0] = keyword_bm25[keyword_rank[keyword_rank >= 0]]
    cosines = np.asarray(index.vectors[labels], dtype=np.float32) @ vector
    fused = FUSIONS[fusion](vector_rank, keyword_rank, cosines, bm25)
    zs = z_scores(cosines, index.manifest.get("calibration"))
    # A candidate no better than chance (vector-only, z under CHANCE_Z) never outranks a match.
    match = (keyword_rank >= 0) | (True if zs is None else zs >= calibration.CHANCE_Z)
    best = np.lexsort((-fused, ~match))[:k]
    found_by = [
        [side for side, rank in (("vector", vector_rank[i]), ("keyword", keyword_rank[i])) if rank >= 0]
        for i in best
    ]
    return _with_strength(index, labels[best], cosines[best], found_by, with_abc)


def _ranks(labels: np.ndarray, ranked: np.ndarray) -> np.ndarray:
    """Each label's 0-based position in `ranked`, -1 where it is absent."""
    position = {int(label): i for i, label in enumerate(ranked)}
    return np.array([position.get(int(label), -1) for label in labels], dtype=np.int64)


def _with_strength(
    index: Index, labels: np.ndarray, cosines: np.ndarray, found_by: list, with_abc: bool
) -> list[Hit]:
    """Hits with their cosine, the sides that found them and their z against the index's calibration."""
    hits = index.hits(np.asarray(labels)[None], np.asarray(cosines)[None], with_abc)[0]
    zs = z_scores(cosines, index.manifest.get("calibration"))
    return [
        replace(hit, found_by=tuple(sides), z=None if zs is None else float(z))
        for hit, sides, z in zip(hits, found_by, zs if zs is not None else [None] * len(hits), strict=True)
    ]
