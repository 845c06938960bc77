"""The item stores of several segments read as one (ItemStore's interface): each holds its own labels."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from runtime.search.filters import Filter
from runtime.search.items import ItemStore


class SegmentStores:
    """Filters, facets, keyword search and look-ups across segments' items, merged.

    `first_labels`: where each store's labels start (ascending), so a look-up asks only the stores holding
    its labels.
    """

    def __init__(self, stores: Sequence[ItemStore], first_labels: Sequence[int]):
        self.stores = list(stores)
        self._starts = np.asarray(first_labels, dtype=np.int64)

    def labels_matching(self, tree: Filter, among: Sequence[int] | None = None) -> np.ndarray:
        """Labels (sorted: the segments hold ascending label ranges) of the items that pass a filter."""
        return np.concatenate([store.labels_matching(tree, among) for store in self.stores])

    def facet(self, tree: Filter | None, name: str, top: int) -> list[tuple[str, int]]:
        """The `top` commonest values over all segments: every value's count from each, summed (exact)."""
        counts: dict[str, list] = {}
        for store in self.stores:
            for value, n in store.facet(tree, name, -1):  # SQLite's LIMIT -1: no limit
                counts.setdefault(value.lower(), [value, 0])[1] += n  # one value whatever its case, as `=`
        return sorted(((v, n) for v, n in counts.values()), key=lambda row: (-row[1], row[0]))[:top]

    def has_keywords(self) -> bool:
        return all(store.has_keywords() for store in self.stores)

    def keyword_search(
        self, query: str, k: int, tree: Filter | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The k best of each segment's k best, ordered as keyword.search orders them (parts, then bm25).

        bm25 weighs words by each segment's own statistics: the ranking is approximate until a compaction
        makes one segment again.
        """
        found = [store.keyword_search(query, k, tree) for store in self.stores]
        labels, bm25, parts = (np.concatenate([f[i] for f in found]) for i in range(3))
        best = np.lexsort((-bm25, -parts))[:k]
        return labels[best], bm25[best], parts[best]

    def label_of(self, item_id: str) -> int | None:
        return next((label for s in self.stores if (label := s.label_of(item_id)) is not None), None)

    def source_root(self) -> str:
        """The folder the sources of every segment share ("" when none)."""
        roots = [root for store in self.stores if (root := store.source_root())]
        prefix = os.path.commonprefix(roots) if roots else ""
        return prefix[: max(prefix.rfind("/"), prefix.rfind("\\")) + 1]

    def items(self, labels: Sequence[int], with_abc: bool = False) -> dict[int, tuple[str, dict, str | None]]:
        found: dict[int, tuple[str, dict, str | None]] = {}
        labels = np.asarray(labels, dtype=np.int64)
        which = np.searchsorted(self._starts, labels, side="right") - 1
        for i in np.unique(which):
            found |= self.stores[i].items(labels[which == i].tolist(), with_abc)
        return found
