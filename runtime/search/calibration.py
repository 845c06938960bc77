"""Match strength: a hit's cosine against the cosines that unrelated queries get on the same index.

Cosines of unrelated texts sit near those of good matches, and their level differs from index to
index. So at build time the index embeds a fixed list of texts unrelated to music (null_queries.json)
and records the distribution of their best cosines in its manifest; a hit's `z` is its cosine in
units of that distribution, and a best hit whose z is under CHANCE_Z is no better than chance.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from runtime.search.hits import Hit, exact_top_k
from runtime.search.keys import Embedder

NULL_QUERIES_FILE = Path(__file__).with_name("null_queries.json")
# A best hit this many standard deviations above the unrelated queries' mean best cosine is a match
# (chosen on the tuning half of bench/queries.json; see BENCHMARKS.md).
CHANCE_Z = 1.5


def null_queries(path: Path = NULL_QUERIES_FILE) -> list[str]:
    return json.loads(path.read_text("utf-8"))["queries"]


def calibrate(encoder: Embedder, vectors: np.ndarray) -> dict[str, Any]:
    """The manifest's `calibration`: the best cosine of each unrelated query over the index, summarised."""
    queries = null_queries()
    best = exact_top_k(encoder.embed_texts(queries), vectors, 1)[0][:, 0].astype(np.float64)
    return {
        "null_queries": len(queries),
        "top1_mean": round(float(best.mean()), 6),
        "top1_std": round(float(best.std()), 6),
        "top1_quantiles": {
            str(q): round(float(np.quantile(best, q / 100)), 6) for q in (50, 90, 95, 99, 100)
        },
    }


def z_scores(scores: np.ndarray, calibration: dict[str, Any] | None) -> np.ndarray | None:
    """Cosines in standard deviations above the unrelated queries' mean best cosine (None: uncalibrated)."""
    if not calibration or not calibration.get("top1_std"):
        return None
    return (np.asarray(scores, dtype=np.float64) - calibration["top1_mean"]) / calibration["top1_std"]


def no_better_than_chance(hits: Sequence[Hit]) -> bool | None:
    """Whether the best hit is within what unrelated queries get: no keyword match and best z < CHANCE_Z.

    None when it cannot be told (no hits with a z: an index built without calibration, keyword mode).
    A keyword match is a match on the item's own metadata, never chance.
    """
    if any("keyword" in hit.found_by for hit in hits):
        return False
    zs = [hit.z for hit in hits if hit.z is not None]
    return None if not zs else max(zs) < CHANCE_Z
