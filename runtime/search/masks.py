"""Filters as boolean masks over an index's labels, in milliseconds at 1M items, for the filter planner.

Each filter column is dictionary-encoded in memory the first time a filter uses it: one code per item
and a small table of its distinct values. A condition is then run by SQLite itself on that table (the
very SQL the items table would run, so case folding, NULLs and numbers behave the same), and the codes
that pass pick the items. A condition on any other field (raw.NAME, header fields kept in `meta`), or
on a column with too many distinct values to gain from this (titles), is a query of the items table.
And, or and not combine the masks: a row passes a SQL filter exactly when its conditions' truth does.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import reduce

import numpy as np

from runtime.search.filters import And, Condition, Filter, Not, Or, filter_sql
from runtime.search.items import FILTER_COLUMNS, ItemStore, field_sql

# Above this many distinct values a column is left to the items table (a condition on its dictionary
# would cost about what the table's own scan does, for the memory of every value).
MAX_DISTINCT = 100_000
# Up to this many values passing (or failing) a condition are compared one by one: 20x faster than a
# look-up of every item's code, which is the way for more.
FEW_VALUES = 8
MASK_CACHE_SIZE = 32  # whole-filter masks kept (1 byte an item each): search pages repeat facet filters


@dataclass(frozen=True)
class _Column:
    codes: np.ndarray  # [items]: the row of the item's value in the column's table of distinct values
    distinct: int


class FilterMasks:
    """Boolean masks [items] of the labels a filter passes; safe to share between threads."""

    def __init__(self, items: ItemStore, count: int, first_label: int = 0, cache_size: int = MASK_CACHE_SIZE):
        """Masks over the `count` rows of `items` (a segment's store: labels first_label...); rows its store
        lists as deleted never pass."""
        self.items, self.count, self.first_label, self.cache_size = items, count, first_label, cache_size
        self._columns: dict[str, _Column | None] = {}
        self._cache: OrderedDict[Filter, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._values = sqlite3.connect(":memory:", check_same_thread=False)  # used under _lock only

    def mask(self, tree: Filter) -> np.ndarray:
        """The items `tree` passes, as a read-only bool array indexed by label."""
        with self._lock:
            if (cached := self._cache.get(tree)) is not None:
                self._cache.move_to_end(tree)
                return cached
        self.items.check_filter(tree)  # the items table's errors (unknown field, too complex), as before
        mask = self._evaluate(tree)
        mask[self.items.dead - self.first_label] = False
        mask.flags.writeable = False
        with self._lock:
            self._cache[tree] = mask
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return mask

    def _evaluate(self, tree: Filter) -> np.ndarray:
        if isinstance(tree, And | Or):  # in place: every mask here is a fresh array
            combine = np.logical_and if isinstance(tree, And) else np.logical_or
            return reduce(lambda a, b: combine(a, b, out=a), (self._evaluate(term) for term in tree.terms))
        if isinstance(tree, Not):
            return ~self._evaluate(tree.term)  # SQL's `(X) IS NOT 1`: a NULL X passes too
        column = self._column(tree.field) if tree.field in FILTER_COLUMNS else None
        if column is None:
            mask = np.zeros(self.count, dtype=bool)
            mask[self.items.labels_matching(tree) - self.first_label] = True
            return mask
        return _select(column.codes, self._passing_values(tree, column.distinct))

    def _passing_values(self, condition: Condition, distinct: int) -> np.ndarray:
        """Which of a column's distinct values pass a condition (bool [distinct]), decided by SQLite."""
        sql, params = filter_sql(condition, field_sql)
        with self._lock:
            rows = self._values.execute(f'SELECT code FROM "{condition.field}" WHERE {sql}', params)
            codes = np.fromiter((r[0] for r in rows), dtype=np.int64)
        passing = np.zeros(distinct, dtype=bool)
        passing[codes] = True
        return passing

    def _column(self, name: str) -> _Column | None:
        """A filter column's codes and values table, read once; None when it has too many values."""
        with self._lock:
            if name in self._columns:
                return self._columns[name]
        codes_of: dict[object, int] = {}
        values = self.items.column(name, self.count)
        codes = np.fromiter((codes_of.setdefault(v, len(codes_of)) for v in values), np.int32, self.count)
        small = codes.astype(np.min_scalar_type(len(codes_of)))  # uint8 codes: a quarter of the memory reads
        column = _Column(small, len(codes_of)) if len(codes_of) <= MAX_DISTINCT else None
        with self._lock:
            if name not in self._columns and column is not None:
                kind = self.items.column_types[name]  # the items table's type, so the same affinity
                self._values.execute(f'CREATE TABLE "{name}" (code INTEGER PRIMARY KEY, "{name}" {kind})')
                rows = ((code, value) for value, code in codes_of.items())
                self._values.executemany(f'INSERT INTO "{name}" VALUES (?, ?)', rows)
            return self._columns.setdefault(name, column)


def _select(codes: np.ndarray, passing: np.ndarray) -> np.ndarray:
    """The items whose code passes (passing: bool [distinct])."""
    hits, misses = np.flatnonzero(passing), np.flatnonzero(~passing)
    few = hits if len(hits) <= len(misses) else misses
    if len(few) > FEW_VALUES:
        return np.take(passing, codes)  # not passing[codes]: that converts the codes first, 10x slower
    selected = np.zeros(len(codes), dtype=bool)
    for code in few:
        selected |= codes == code
    return selected if few is hits else ~selected
