"""The index's metadata store (items.sqlite): one row per indexed tune, keyed by its HNSW label."""

from __future__ import annotations

import json
import os
import queue
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import cachetools
import numpy as np

from runtime.music.abc import FIELD_NAMES
from runtime.music.metadata import CANONICAL_FIELDS, canonical_fields, canonical_value
from runtime.search import keyword
from runtime.search.errors import REBUILD, DamagedIndexError, QueryTooComplexError
from runtime.search.filters import Condition, Filter, filter_sql

# Columns a filter can use directly (indexed; header fields in canonical form, see runtime.music.metadata);
# other ABC header names, and `raw.NAME` for any header as written, are looked up in the `meta` JSON.
FILTER_COLUMNS = ("source", "tune_index", *CANONICAL_FIELDS)
ITEM_COLUMNS = ("label", "id", *FILTER_COLUMNS, "meta", "abc")
FILTER_FIELDS = tuple(sorted(set(FILTER_COLUMNS) | set(FIELD_NAMES.values())))
# What index_build reads from the shards for each item: the rest is derived here (item_row).
SHARD_COLUMNS = ("id", "source", "tune_index", "meta", "abc")

_CREATE_TABLE = f"""
CREATE TABLE items (
    label INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, source TEXT, tune_index INTEGER,
    {", ".join(f'"{c}" TEXT' for c in CANONICAL_FIELDS)}, meta TEXT, abc TEXT
)"""
_CREATE_INDEXES = "".join(f'CREATE INDEX items_{c} ON items("{c}" COLLATE NOCASE);' for c in FILTER_COLUMNS)
# Keyword answers kept per open store (by query, k and filter), and the matches of each query part (a word
# with its synonyms, a key, a meter) within a memory budget: a store's file never changes once written (an
# update adds a segment and a new generation), and a common word ("reel": 2,000 of 13k items) costs ~2 ms
# of bm25 each time it is looked up, while queries are mostly made of common words.
KEYWORD_CACHE_SIZE = 2048
KEYWORD_PART_CACHE_BYTES = 64 << 20
ENTRY_BYTES = 512  # what a cache entry's key and objects take besides its arrays (a part matching nothing)
KEYWORD_CACHE_ENV = "CLAMP_KEYWORD_CACHE"  # answers per open store; 0 turns both caches off
# Connections an ItemStore opens at start and shares between threads: never reopening its file keeps an
# open index whole while a newer build replaces its dir (a server answers from it until it switches).
CONNECTIONS = 8
# SQLite's words for a statement beyond its limits (expression depth, terms, variables), not for damage.
_TOO_COMPLEX = re.compile(r"too (large|many|big|complex)|stack overflow", re.IGNORECASE)


class ItemWriter:
    """Writes a fresh items table: `add` batches of rows (ITEM_COLUMNS' values in order), then `finish`."""

    def __init__(self, path: Path):
        self._conn = sqlite3.connect(path)
        self._conn.execute("PRAGMA journal_mode = OFF")
        self._conn.execute(_CREATE_TABLE)
        columns = ", ".join(f'"{c}"' for c in ITEM_COLUMNS)
        self._insert = f"INSERT INTO items ({columns}) VALUES ({', '.join('?' * len(ITEM_COLUMNS))})"

    def add(self, rows: Iterable[Sequence[Any]]) -> None:
        self._conn.executemany(self._insert, rows)

    def finish(self) -> None:
        """Index the filterable columns and the keyword table (after the bulk insert: faster) and close."""
        self._conn.commit()
        self._conn.executescript(_CREATE_INDEXES)
        keyword.create_fts(self._conn)
        self._conn.close()


def item_row(label: int, item_id: str, source: str, tune_index: int, meta: str | None, abc: str) -> tuple:
    """An items row (ITEM_COLUMNS' values) from a shard row: canonical fields derived from its raw `meta`."""
    fields = canonical_fields(json.loads(meta) if meta else {}, source)
    return (label, item_id, source, tune_index, *(fields[c] for c in CANONICAL_FIELDS), meta, abc)


def field_sql(condition: Condition) -> tuple[str, list[str], Callable[[str], str]]:
    """A filter field as SQL (a column, or a `meta` JSON look-up), and how to read values for it."""
    name = condition.field
    if name in FILTER_COLUMNS:
        return f'"{name}"', [], lambda value: canonical_value(name, value)
    raw = name.removeprefix("raw.")
    if name.startswith("raw.") or name in FILTER_FIELDS:  # a table's rows may add any field to `meta`
        return "json_extract(meta, ?)", [f"$.{raw}"], str
    where = f" at column {condition.column}" if condition.column else ""
    raise ValueError(
        f"unknown filter field {name!r}{where}; use one of: "
        f"{', '.join(FILTER_FIELDS)}, or raw.NAME for a header field (or table column) as written"
    )


def where_sql(tree: Filter | None) -> tuple[str, list[str | float]]:
    """A SQL WHERE condition and its parameters for a parsed filter (None: every item)."""
    return ("1", []) if tree is None else filter_sql(tree, field_sql)


class ItemStore:
    """Read-only access to items.sqlite, safe to share between threads (a pool of connections).

    `dead`: sorted labels of rows deleted since the file was written (an index update's tombstones),
    which no query returns.
    """

    def __init__(self, path: Path, dead: np.ndarray | None = None):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: rebuild the index with `clamp index build`")
        self.path = path
        size = int(os.environ.get(KEYWORD_CACHE_ENV, KEYWORD_CACHE_SIZE))
        self._keyword_search = lru_cache(maxsize=size)(self._uncached_keyword_search)
        self._part_matches = keyword.part_matches if size == 0 else _cached_part_matches()
        self.dead = np.zeros(0, dtype=np.int64) if dead is None else dead
        self._dead_set = frozenset(self.dead.tolist())
        self._pool: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        with self._errors():
            for _ in range(CONNECTIONS):
                self._pool.put(sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False))
        with self._reading() as conn:  # the header and schema: most damage shows here, at open, not mid-query
            conn.execute("SELECT label, id, meta, abc FROM items LIMIT 1").fetchall()
            self.column_types = {row[1]: row[2] for row in conn.execute("PRAGMA table_info(items)")}
        if missing := [c for c in ITEM_COLUMNS if c not in self.column_types]:
            raise ValueError(
                f"{path} has no {', '.join(missing)} column (an index built by an older clamp): rebuild the "
                "index with `clamp index build` (its shards need no re-embedding)"
            )

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """A connection of the pool for one read (waiting for one while all are in use)."""
        conn = self._pool.get()
        try:
            with self._errors():
                yield conn
        finally:
            self._pool.put(conn)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Every use of the database: SQLite's errors become errors that say what to do."""
        try:
            yield
        except sqlite3.Error as err:
            reason = f"sqlite: {err}"
            if getattr(err, "sqlite_errorname", "") == "SQLITE_TOOBIG" or _TOO_COMPLEX.search(str(err)):
                raise QueryTooComplexError(
                    f"the query is too complex for the index's database ({reason}): use fewer filter terms"
                ) from err
            raise DamagedIndexError(
                f"{self.path.name} in {self.path.parent} is damaged ({reason}); {REBUILD}"
            ) from err

    def labels_matching(self, tree: Filter, among: Sequence[int] | None = None) -> np.ndarray:
        """Labels (sorted int64) of the items that pass a filter (only those `among`, if given)."""
        where, params = where_sql(tree)
        if among is not None:
            where = f"({where}) AND label IN ({_int_list(among)})"
        with self._reading() as conn:
            rows = conn.execute(f"SELECT label FROM items WHERE {where} ORDER BY label", params)
            labels = np.fromiter((r[0] for r in rows), dtype=np.int64)
        return np.setdiff1d(labels, self.dead, assume_unique=True) if len(self.dead) else labels

    def check_filter(self, tree: Filter) -> None:
        """Raise what running the filter would (unknown field, QueryTooComplexError), without running it."""
        where, params = where_sql(tree)
        with self._reading() as conn:  # LIMIT 0: SQLite prepares the statement and stops before reading a row
            conn.execute(f"SELECT label FROM items WHERE {where} LIMIT 0", params).fetchall()

    def column(self, name: str, count: int) -> list[Any]:
        """A filter column's values of every item of this file, in label order (`count` of them)."""
        with self._reading() as conn:
            values = [row[0] for row in conn.execute(f'SELECT "{name}" FROM items ORDER BY label')]
        if len(values) != count:
            raise DamagedIndexError(
                f"{self.path.name} in {self.path.parent} holds {len(values)} items, the index "
                f"{count}; {REBUILD}"
            )
        return values

    def facet(self, tree: Filter | None, name: str, top: int) -> list[tuple[str, int]]:
        """The `top` commonest values of a field among the items passing a filter, with their counts.

        Values that differ only in case count as one, as `=` matches them (and the grouping then walks
        the column's NOCASE index: 2-3x faster than exact grouping).
        """
        target, target_params, _ = field_sql(Condition(name, "=", "", 0))
        where, params = where_sql(tree)
        if len(self.dead):
            where, params = (
                f"({where}) AND label NOT IN (SELECT value FROM json_each(?))",
                [
                    *params,
                    json.dumps(self.dead.tolist()),
                ],
            )
        sql = (
            f"SELECT {target} AS value, count(*) AS n FROM items WHERE ({where}) AND value IS NOT NULL "
            "AND value != '' GROUP BY value COLLATE NOCASE ORDER BY n DESC, value LIMIT ?"
        )
        with self._reading() as conn:
            rows = conn.execute(sql, [*target_params, *params, top])
            return [(str(value), n) for value, n in rows]

    def has_keywords(self) -> bool:
        """Whether keyword (and so hybrid) search is possible: indices built before it lack the table."""
        with self._reading() as conn:
            return keyword.has_fts(conn)

    def keyword_search(
        self, query: str, k: int, tree: Filter | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The k best items for a text query (labels, bm25, parts of the query matched; keyword.search)."""
        where, params = where_sql(tree)
        return self._keyword_search(query, k, where, tuple(params))

    def _uncached_keyword_search(
        self, query: str, k: int, where: str, params: tuple
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with self._reading() as conn:
            found = keyword.search(conn, query, k, where, list(params), self.dead, self._part_matches)
        for array in found:
            array.flags.writeable = False  # shared by every caller of the cache
        return found

    def label_of(self, item_id: str) -> int | None:
        with self._reading() as conn:
            row = conn.execute("SELECT label FROM items WHERE id = ?", (item_id,)).fetchone()
        return None if row is None or row[0] in self._dead_set else row[0]

    def id_labels(self) -> dict[str, int]:
        """Every live item's label by id: what an index update compares with the shards."""
        with self._reading() as conn:
            rows = conn.execute("SELECT id, label FROM items").fetchall()
        return {item_id: label for item_id, label in rows if label not in self._dead_set}

    def source_root(self) -> str:
        """The folder all sources share (with its trailing separator; "" when none): the corpus root.

        Of sorted strings, the first and last share exactly the prefix common to all: one scan, no list.
        """
        with self._reading() as conn:
            low, high = conn.execute("SELECT MIN(source), MAX(source) FROM items").fetchone()
        if low is None:
            return ""
        prefix = os.path.commonprefix([low, high]) if low != high else low
        return prefix[: max(prefix.rfind("/"), prefix.rfind("\\")) + 1]

    def items(self, labels: Sequence[int], with_abc: bool = False) -> dict[int, tuple[str, dict, str | None]]:
        """(id, metadata, abc or None) by label for the given labels."""
        columns = ", ".join(f'"{c}"' for c in ("label", "id", *FILTER_COLUMNS, "meta"))
        columns += ", abc" if with_abc else ", NULL"
        found = {}
        sql = f"SELECT {columns} FROM items WHERE label IN ({_int_list(labels)})"
        with self._reading() as conn:
            rows = conn.execute(sql).fetchall()
        for label, item_id, *values, meta, abc in rows:
            metadata = dict(zip(FILTER_COLUMNS, values, strict=True))
            metadata["meta"] = _meta(meta, self.path)
            found[label] = (item_id, metadata, abc)
        return found


def _cached_part_matches() -> keyword.PartMatches:
    """keyword.part_matches for one store, its answers kept (least recently used out) within the budget."""
    size = lambda found: ENTRY_BYTES + sum(array.nbytes for array in found)  # noqa: E731
    cache = cachetools.LRUCache(KEYWORD_PART_CACHE_BYTES, getsizeof=size)

    @cachetools.cached(cache, key=lambda _conn, part: part, lock=threading.Lock())
    def matches(conn: sqlite3.Connection, part: str) -> tuple[np.ndarray, np.ndarray]:
        found = keyword.part_matches(conn, part)
        for array in found:
            array.flags.writeable = False  # shared by every query with this part
        return found

    return matches


def _meta(text: str | None, path: Path) -> dict:
    """An item's `meta` JSON column; text that is not JSON means the database was altered."""
    try:
        return json.loads(text) if text else {}
    except ValueError as err:
        reason = f"an item's meta column is not JSON: {err}"
        raise DamagedIndexError(f"{path.name} in {path.parent} is damaged ({reason}); {REBUILD}") from err


def _int_list(labels: Iterable[int]) -> str:
    """Labels as a SQL list literal: ints only (so nothing can be injected), and no bound-parameter limit."""
    return ", ".join(str(int(label)) for label in labels)
