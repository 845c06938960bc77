"""An index's immutable parts: each segment an HNSW graph plus the vectors of a contiguous range of labels.

A full build writes one segment (the index dir's own index.hnsw and vectors.npy); an update adds a
segment dir for the new rows (indexer.index_update). Graphs hold global labels, so a segment's hits
need no translation; vectors row r of a segment is label first_label + r. Loaded segments are shared
by the generations of an index that list them: they are never written after they are built.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import hnswlib
import numpy as np

from runtime.search.errors import REBUILD, IndexDirError
from runtime.search.hits import exact_top_k

MANIFEST_FILE = "manifest.json"
HNSW_FILE = "index.hnsw"
ITEMS_FILE = "items.sqlite"
VECTORS_FILE = "vectors.npy"
INDEX_FILES = (HNSW_FILE, ITEMS_FILE, VECTORS_FILE)


@dataclass(frozen=True, eq=False)
class Segment:
    """One segment, loaded: its graph (in RAM) and vectors (memory-mapped) for labels first_label.. end-1."""

    directory: Path
    first_label: int
    graph: hnswlib.Index
    vectors: np.ndarray
    key: tuple  # what identifies its files and settings: a newer generation reuses a segment of equal key

    @property
    def end(self) -> int:
        return self.first_label + len(self.vectors)


def load_segment(
    directory: Path, first_label: int, rows: int, dim: int, space: str, ef: int, key: tuple
) -> Segment:
    """Load a segment's graph and vectors, refusing files that disagree with the manifest's rows x dim."""
    try:
        vectors = np.load(directory / VECTORS_FILE, mmap_mode="r")
        graph = hnswlib.Index(space=space, dim=dim)
        graph.load_index(str(directory / HNSW_FILE), max_elements=rows)
    except (ValueError, RuntimeError, OSError) as err:
        raise IndexDirError(f"{directory}: cannot load its vectors or graph ({err}); {REBUILD}") from err
    if vectors.shape != (rows, dim) or graph.get_current_count() != rows:
        raise IndexDirError(
            f"{directory}: {VECTORS_FILE} holds {vectors.shape}, {HNSW_FILE} "
            f"{graph.get_current_count()} items, {MANIFEST_FILE} says {rows} x {dim}; {REBUILD}"
        )
    graph.set_ef(ef)  # only at load: set_ef races with concurrent queries
    return Segment(directory, first_label, graph, vectors, key)


def segment_nearest(
    graph: hnswlib.Index, vectors: np.ndarray, first_label: int, queries: np.ndarray, k: int, exact: bool
) -> tuple[np.ndarray, np.ndarray]:
    """One segment's best k labels and cosines [Q, <=k]: the per-segment step of an unfiltered search
    (graph walk or exact scan), merged across segments by merge_top_k. Filtered searches go through the
    filter planner (runtime.search.planner), segment by segment."""
    k = min(k, len(vectors))
    if exact:
        scores, found = exact_top_k(queries, vectors, k)
        return found + first_label, scores
    labels, distances = graph.knn_query(queries, k=k, num_threads=1 if len(queries) == 1 else -1)
    return labels.astype(np.int64), 1.0 - distances  # space "ip": distance = 1 - inner product


def merge_top_k(parts: Sequence[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The best k of several segments' (labels, scores) [Q, *] per query, best first."""
    labels = np.concatenate([p[0] for p in parts], axis=1)
    scores = np.concatenate([p[1] for p in parts], axis=1)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(labels, order, axis=1), np.take_along_axis(scores, order, axis=1)


def split_labels(segments: Sequence[Segment], labels: np.ndarray) -> list[np.ndarray]:
    """Sorted labels cut into each segment's share (segments in label order)."""
    bounds = np.searchsorted(labels, [s.first_label for s in segments[1:]])
    return np.split(labels, bounds)


class LabelVectors:
    """The vectors of several segments, indexed by global label (an int, a slice or an array of labels)."""

    def __init__(self, segments: Sequence[Segment]):
        self.segments = list(segments)
        self._starts = np.array([s.first_label for s in segments], dtype=np.int64)

    def __len__(self) -> int:
        return sum(len(s.vectors) for s in self.segments)

    def __getitem__(self, labels: int | slice | np.ndarray) -> np.ndarray:
        if isinstance(labels, slice):
            return self[np.arange(labels.start or 0, labels.stop, labels.step or 1)]
        if np.ndim(labels) == 0:
            return self[np.array([labels])][0]
        labels = np.asarray(labels, dtype=np.int64)
        which = np.searchsorted(self._starts, labels, side="right") - 1
        out = np.empty((len(labels), self.segments[0].vectors.shape[1]), dtype=np.float32)
        for i in np.unique(which):
            at = which == i
            segment = self.segments[i]
            out[at] = segment.vectors[labels[at] - segment.first_label]
        return out
