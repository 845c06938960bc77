"""Queries over an index dir (segments: hnswlib graph, items.sqlite, vectors.npy), thread-safe, torch-free."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from runtime.model.modeldir import CONFIG_FILE
from runtime.search import planner
from runtime.search.errors import REBUILD, IndexDirError
from runtime.search.filters import Filter, parse_filter
from runtime.search.generation import (
    SegmentSpec,
    manifest_signature,
    read_deleted,
    read_manifest,
    segment_specs,
)
from runtime.search.hits import Hit
from runtime.search.hybrid import text_search
from runtime.search.items import ItemStore
from runtime.search.keys import DEFAULT_TEMPLATE, Embedder, classify, classify_vector, read_music
from runtime.search.limits import EF, K, require_text
from runtime.search.masks import FilterMasks
from runtime.search.segments import (
    HNSW_FILE,
    INDEX_FILES,
    ITEMS_FILE,
    MANIFEST_FILE,
    VECTORS_FILE,
    LabelVectors,
    Segment,
    load_segment,
    merge_top_k,
    segment_nearest,
    split_labels,
)
from runtime.search.stores import SegmentStores

__all__ = ["HNSW_FILE", "INDEX_FILES", "ITEMS_FILE", "MANIFEST_FILE", "VECTORS_FILE", "read_manifest"]
DEFAULT_MODEL_DIR = Path("build/model")
DEFAULT_EF = 128
DEFAULT_FACET_FIELDS = ("key", "meter", "rhythm", "origin", "collection")
DEFAULT_FACET_TOP = 20
MAX_FACET_TOP = 1000
MAX_FACET_FIELDS = 16
FACET_CACHE_SIZE = 64  # facet answers kept per open index (by fields, filter, top)
OPEN_RETRIES = 3  # opens that found the generation they read replaced mid-way (by an update) try again


class ModelMismatchError(ValueError):
    """The model given for queries is not the model the index was built with."""


class UnknownItemError(KeyError):
    """No item has the id asked for."""


def model_dir_candidates(index_manifest: dict[str, Any] | None = None) -> list[Path]:
    """Where a model is looked for when none is named: the index's own model, $CLAMP_MODEL, build/model."""
    candidates = (
        [Path(index_manifest["model_dir"])] if index_manifest and index_manifest.get("model_dir") else []
    )
    if os.environ.get("CLAMP_MODEL"):
        candidates.append(Path(os.environ["CLAMP_MODEL"]))
    return [*candidates, DEFAULT_MODEL_DIR]


def resolve_model_dir(model_dir: str | Path | None, index_manifest: dict[str, Any] | None = None) -> Path:
    """The model dir to use: the one named, else the first default that exists; raise saying where."""
    if model_dir is not None:
        return Path(model_dir)
    candidates = model_dir_candidates(index_manifest)
    for candidate in candidates:
        if (candidate / CONFIG_FILE).is_file():
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"no model dir found (looked in {looked}): pass --model DIR or set CLAMP_MODEL")


def index_model(
    directory: Path,
    manifest: dict[str, Any],
    model_dir: str | Path | None,
    *,
    precision: str = "auto",
    full_check: bool = False,
) -> Embedder | None:
    """The index's model for encoding queries: `model_dir`, else the manifest's or a default (None if none).

    Raises ModelMismatchError for a model other than the one the index was built with.
    """
    try:
        model_dir = resolve_model_dir(model_dir, manifest)
    except FileNotFoundError:
        return None
    from runtime.model.encoder import Encoder

    encoder = Encoder.open(model_dir, precision=precision, full_check=full_check)
    check_index_model(directory, manifest, encoder)
    return encoder


def check_index_model(directory: Path, manifest: dict[str, Any], encoder: Embedder | None) -> None:
    """Raise ModelMismatchError unless the encoder (if any) is the model the index was built with."""
    if encoder is not None and encoder.model_hash != manifest["model_hash"]:
        raise ModelMismatchError(
            f"index {directory} was built with model {manifest.get('model_name')!r} "
            f"(hash {manifest['model_hash'][:12]}, dir {manifest.get('model_dir')}), but the model given "
            f"has hash {encoder.model_hash[:12]}: query with the index's model (--model DIR) or rebuild "
            f"the index with `clamp embed` + `clamp index build` using this model"
        )


def check_manifest_keys(directory: Path, manifest: dict[str, Any]) -> None:
    """Raise IndexDirError unless the manifest has the keys every query reads, of their types."""
    for key, kind in (("model_hash", str), ("count", int), ("dim", int), ("space", str)):
        if not isinstance(manifest.get(key), kind):
            where = directory / MANIFEST_FILE
            raise IndexDirError(f"{where} has no valid {key!r}: the index dir is damaged; {REBUILD}")


def missing_model_error(directory: Path, manifest: dict[str, Any]) -> FileNotFoundError:
    """Why an index cannot encode queries: its model was not found, and where it was looked for."""
    looked = ", ".join(map(str, model_dir_candidates(manifest)))
    return FileNotFoundError(
        f"index {directory} needs its model {manifest.get('model_name')!r} to encode queries and none "
        f"was found (looked in {looked}): pass model_dir (--model DIR) or set CLAMP_MODEL"
    )


class Index:
    """A built index, ready for text, music and vector queries from any number of threads."""

    def __init__(
        self,
        directory: Path,
        manifest: dict[str, Any],
        encoder: Embedder | None,
        ef: int = DEFAULT_EF,
        *,
        specs: Sequence[SegmentSpec] | None = None,
        reuse: Sequence[Segment] = (),
    ):
        """Load the generation `manifest` describes (its segments `specs`, checked by Index.open); segments
        in `reuse` (an older generation's) of equal files are shared, not loaded again."""
        self.directory = directory
        self.manifest = manifest
        self.encoder = encoder
        self.ef = ef
        dim, space = manifest["dim"], manifest["space"]
        loaded = {segment.key: segment for segment in reuse}
        self.segments: list[Segment] = []
        for spec in segment_specs(directory, manifest, False) if specs is None else specs:
            where = (os.stat(spec.directory).st_ino, spec.first_label, spec.rows, spec.fingerprint)
            key = (*where, dim, space, ef)
            segment = loaded.get(key) or load_segment(
                spec.directory, spec.first_label, spec.rows, dim, space, EF.check(ef), key
            )
            self.segments.append(segment)
        self.dead = read_deleted(directory, manifest)
        stores = [
            ItemStore(s.directory / ITEMS_FILE, share)
            for s, share in zip(self.segments, split_labels(self.segments, self.dead), strict=True)
        ]
        starts = [segment.first_label for segment in self.segments]
        self.items: ItemStore | SegmentStores = (
            stores[0] if len(stores) == 1 else SegmentStores(stores, starts)
        )
        alone = len(self.segments) == 1 and self.segments[0].first_label == 0  # row r is label r
        self.vectors = self.segments[0].vectors if alone else LabelVectors(self.segments)
        self.masks = [  # filters as masks over each segment's rows, for the filter planner
            FilterMasks(store, len(segment.vectors), segment.first_label)
            for store, segment in zip(stores, self.segments, strict=True)
        ]
        self._facets: dict[tuple, dict[str, list[tuple[str, int]]]] = {}

    @classmethod
    def open(
        cls,
        directory: str | Path,
        model_dir: str | Path | None = None,
        *,
        encoder: Embedder | None = None,
        ef: int = DEFAULT_EF,
        full_check: bool = False,
        precision: str = "auto",
        reuse: Sequence[Segment] = (),
    ) -> Index:
        """Open an index with its model (default: the manifest's model dir, $CLAMP_MODEL, build/model).

        Without any model dir found, the index still answers vector and id queries. A model whose hash
        differs from the index's raises ModelMismatchError. Files are checked against the manifest (sizes;
        with `full_check` also the sha256 of the index's and the model's files): IndexDirError names a
        damaged one. `precision` picks the encoder graphs (runtime.model.encoder.resolve_precisions).
        `reuse`: segments of an open generation of this index, shared where this one lists them too.
        """
        directory = Path(directory)
        attempt = 0
        while True:
            attempt += 1
            signature = manifest_signature(directory)
            try:
                manifest = read_manifest(directory)
                specs = segment_specs(directory, manifest, full_check)
                check_manifest_keys(directory, manifest)
                if encoder is None:
                    encoder = index_model(
                        directory, manifest, model_dir, precision=precision, full_check=full_check
                    )
                check_index_model(directory, manifest, encoder)
                return cls(directory, manifest, encoder, ef, specs=specs, reuse=reuse)
            except (IndexDirError, OSError):
                if attempt == OPEN_RETRIES or manifest_signature(directory) == signature:
                    raise  # damage, not an update that replaced what the generation read listed

    def __len__(self) -> int:
        return int(self.manifest["count"])

    def search_vectors(
        self,
        queries: np.ndarray,
        k: int = 10,
        *,
        filter: str | Filter | None = None,
        exact: bool = False,
        with_abc: bool = False,
    ) -> list[list[Hit]]:
        """Best k items for each L2-normalised query vector [Q, dim] (or [dim]), best first.

        `filter` is a filter text (runtime.search.filters) or its parsed tree. `exact` scores every
        (allowed) item instead of walking the HNSW graph.
        """
        return self._search(queries, K.check(k), filter=filter, exact=exact, with_abc=with_abc)

    def _search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        filter: str | Filter | None = None,
        exact: bool = False,
        with_abc: bool = False,
    ) -> list[list[Hit]]:
        return self.hits(*self.nearest(queries, k, filter=filter, exact=exact), with_abc)

    def nearest(
        self,
        queries: np.ndarray,
        k: int,
        *,
        filter: str | Filter | None = None,
        exact: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """search_vectors' labels and cosines [Q, <=k], best first, without fetching the items."""
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        conditions = parse_filter(filter) if isinstance(filter, str) else filter
        if conditions is None:
            return self._live(queries, k, exact)
        parts = []
        for segment, masks in zip(self.segments, self.masks, strict=True):
            passing = masks.mask(conditions)  # by the segment's rows; deleted rows never pass
            if not passing.any():
                continue
            if exact:
                parts.append(planner.exact(segment.vectors, passing, queries, k, segment.first_label))
            else:
                found = planner.search(
                    segment.graph, segment.vectors, passing, queries, k, segment.first_label
                )
                parts.append((found.labels, found.scores))
        return _merged(parts, len(queries), k)

    def search_text(
        self,
        text: str,
        k: int = 10,
        *,
        mode: str | None = None,
        vector: np.ndarray | None = None,
        **options: Any,
    ) -> list[Hit]:
        """Text search: items whose music (vector), metadata (keyword) or both (hybrid) match the text.

        `mode` defaults to hybrid where the index has its keyword table (default_mode); `vector` is
        the text's embedding when the caller has it already. Hits say which side found them and
        carry their `z` (runtime.search.calibration). Options as search_vectors'.
        """
        return text_search(self, require_text(text), K.check(k), mode=mode, vector=vector, **options)

    def default_mode(self) -> str:
        """hybrid where the index has its keyword table; vector for indices built before it."""
        return "hybrid" if self.items.has_keywords() else "vector"

    def search_music(
        self, music: str | Path, k: int = 10, *, tune: int = 0, exclude_self: bool = True, **options: Any
    ) -> list[Hit]:
        """Similar-music search for a tune given as a file path or ABC text (tune `tune` of several).

        `exclude_self` leaves out indexed items whose ABC is the query's (the tune itself, at cosine 1).
        """
        encoder = self.require_encoder()
        abc = read_music(music, tune, encoder.profile)
        vector = encoder.embed_abc([abc])
        return self.nearest_except(vector, k, abc=abc if exclude_self else None, **options)

    def similar_to(
        self, item_id: str, k: int = 10, *, exclude_self: bool = True, **options: Any
    ) -> list[Hit]:
        """Similar-music search for an indexed item, by id (no encoding needed), by default without it."""
        vector = self.item_vector(item_id)
        return self.nearest_except(vector, k, item_id=item_id if exclude_self else None, **options)

    def nearest_except(
        self,
        vector: np.ndarray,
        k: int = 10,
        *,
        item_id: str | None = None,
        abc: str | None = None,
        **options: Any,
    ) -> list[Hit]:
        """The best k hits for one vector leaving out the item `item_id` and the items whose ABC is `abc`.

        "More like this" should not answer with the query itself: more hits are asked for until k remain.
        """
        k = K.check(k)
        itself = None if abc is None else abc.strip()

        def excluded(hit: Hit) -> bool:
            return hit.id == item_id or (itself is not None and (hit.abc or "").strip() == itself)

        wanted = k + (item_id is not None or abc is not None)
        with_abc = options.pop("with_abc", False)
        while True:
            asked = min(wanted, len(self))
            hits = self._search(vector, asked, with_abc=with_abc or abc is not None, **options)[0]
            kept = [hit for hit in hits if not excluded(hit)]
            if len(kept) >= k or len(hits) < wanted:
                break
            wanted *= 2
        return [hit if with_abc else replace(hit, abc=None) for hit in kept[:k]]

    def classify(
        self, music: str | Path, labels: Sequence[str], template: str = DEFAULT_TEMPLATE, *, tune: int = 0
    ) -> list[Hit]:
        """Zero-shot classification of a tune against label texts, with the index's model."""
        encoder = self.require_encoder()
        return classify(encoder, read_music(music, tune, encoder.profile), labels, template)

    def classify_item(
        self, item_id: str, labels: Sequence[str], template: str = DEFAULT_TEMPLATE
    ) -> list[Hit]:
        """Zero-shot classification of an indexed item, by id, from its stored vector (no music encoding)."""
        return classify_vector(self.require_encoder(), self.item_vector(item_id), labels, template)

    def item_vector(self, item_id: str) -> np.ndarray:
        """An indexed item's L2-normalised vector [1, dim], by id; UnknownItemError when there is none."""
        label = self.items.label_of(item_id)
        if label is None:
            raise UnknownItemError(f"no item with id {item_id!r} in index {self.directory}")
        return np.asarray(self.vectors[label : label + 1], dtype=np.float32)

    def item(self, item_id: str) -> dict[str, Any] | None:
        """An item's id, metadata and ABC, or None when the id is not in the index."""
        label = self.items.label_of(item_id)
        if label is None:
            return None
        found_id, metadata, abc = self.items.items([label], with_abc=True)[label]
        return {"id": found_id, **metadata, "abc": abc}

    def facets(
        self, fields: Sequence[str], filter: str | Filter | None = None, top: int = DEFAULT_FACET_TOP
    ) -> dict[str, list[tuple[str, int]]]:
        """The `top` commonest values of each field, with counts, among the items that pass `filter`.

        For search pages' dropdowns: `index.facets(["key", "meter"], "rhythm = jig")`. Fields are filter
        fields (items.FILTER_FIELDS, raw.NAME); at most MAX_FACET_FIELDS of them, top 1..MAX_FACET_TOP.
        """
        names = [name.strip().lower() for name in fields if name.strip()]
        if not 1 <= len(names) <= MAX_FACET_FIELDS or not 1 <= top <= MAX_FACET_TOP:
            raise ValueError(
                f"facets: give 1..{MAX_FACET_FIELDS} fields (got {len(names)}) and a top of "
                f"1..{MAX_FACET_TOP} values (got {top})"
            )
        key = (tuple(names), filter, top)
        if key not in self._facets:  # the index never changes: a page's dropdowns are counted once
            tree = parse_filter(filter) if isinstance(filter, str) else filter
            if len(self._facets) >= FACET_CACHE_SIZE:
                self._facets.clear()
            self._facets[key] = {name: self.items.facet(tree, name, top) for name in names}
        return {name: list(values) for name, values in self._facets[key].items()}

    def require_encoder(self) -> Embedder:
        """The model, for queries that must encode; raises saying where a model was looked for."""
        if self.encoder is None:
            raise missing_model_error(self.directory, self.manifest)
        return self.encoder

    def _across(self, queries: np.ndarray, k: int, exact: bool) -> tuple[np.ndarray, np.ndarray]:
        """The best k over every segment: each searched, then merged."""
        parts = [
            segment_nearest(segment.graph, segment.vectors, segment.first_label, queries, k, exact)
            for segment in self.segments
        ]
        return _merged(parts, len(queries), k)

    def _live(self, queries: np.ndarray, k: int, exact: bool) -> tuple[np.ndarray, np.ndarray]:
        """The best k items not deleted: the best k + some over every row, more until k remain live.

        Graphs are shared between generations, so deleted rows are dropped here rather than marked in them.
        """
        rows = sum(len(segment.vectors) for segment in self.segments)
        k = min(k, len(self))
        fetch = k + min(len(self.dead), max(k, 16))
        while True:
            exact = exact or fetch >= rows  # a graph walk asked for all its rows may return fewer
            labels, scores = self._across(queries, min(fetch, rows), exact)
            if not len(self.dead):
                return labels, scores
            at = np.minimum(np.searchsorted(self.dead, labels), len(self.dead) - 1)
            live = self.dead[at] != labels  # (np.isin costs ~10x this on a few dozen labels)
            if (live.sum(axis=1) >= k).all() or exact and fetch >= rows:
                keep = np.stack([np.flatnonzero(row)[:k] for row in live])
                return np.take_along_axis(labels, keep, axis=1), np.take_along_axis(scores, keep, axis=1)
            fetch *= 2

    def hits(self, labels: np.ndarray, scores: np.ndarray, with_abc: bool = False) -> list[list[Hit]]:
        """Hits (ids, metadata, ABC on request) for rows of labels and their scores."""
        found = self.items.items(np.unique(labels).tolist(), with_abc)
        return [
            [
                Hit(found[lab][0], float(s), found[lab][1], found[lab][2])
                for lab, s in zip(row, srow, strict=True)
            ]
            for row, srow in zip(labels.tolist(), scores, strict=True)
        ]


def _merged(
    parts: list[tuple[np.ndarray, np.ndarray]], queries: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Segments' (labels, scores) merged into the best k per query (none: empty rows)."""
    if not parts:
        return np.zeros((queries, 0), dtype=np.int64), np.zeros((queries, 0), dtype=np.float32)
    return parts[0] if len(parts) == 1 else merge_top_k(parts, k)
