"""The index's metadata store (items.sqlite): one row per indexed tune, keyed by its HNSW label."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from runtime.music.abc import FIELD_NAMES
from runtime.search import keyword
from runtime.search.hits import Condition

# Columns a filter can use directly (indexed); other ABC header names are looked up in the `meta` JSON.
FILTER_COLUMNS = ("source", "tune_index", "title", "composer", "origin", "rhythm", "key", "meter")
ITEM_COLUMNS = ("label", "id", *FILTER_COLUMNS, "meta", "abc")
FILTER_FIELDS = tuple(sorted(set(FILTER_COLUMNS) | set(FIELD_NAMES.values())))

_CREATE_TABLE = """
CREATE TABLE items (
    label INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, source TEXT, tune_index INTEGER,
    title TEXT, composer TEXT, origin TEXT, rhythm TEXT, "key" TEXT, meter TEXT, meta TEXT, abc TEXT
)"""
_CREATE_INDEXES = "".join(f'CREATE INDEX items_{c} ON items("{c}" COLLATE NOCASE);' for c in FILTER_COLUMNS)


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


def condition_sql(conditions: Sequence[Condition]) -> tuple[str, list[str]]:
    """A SQL WHERE clause and its parameters for parsed filter conditions (= and contains ignore case)."""
    clauses, params = [], []
    for cond in conditions:
        if cond.field in FILTER_COLUMNS:
            target, target_params = f'"{cond.field}"', []
        elif cond.field in FILTER_FIELDS:
            target, target_params = "json_extract(meta, ?)", [f"$.{cond.field}"]
        else:
            raise ValueError(f"unknown filter field {cond.field!r}; use one of: {', '.join(FILTER_FIELDS)}")
        if cond.op == "=":
            clauses.append(f"{target} = ? COLLATE NOCASE")
            params += [*target_params, cond.value]
        elif cond.op == "!=":
            clauses.append(f"({target} IS NULL OR {target} != ? COLLATE NOCASE)")
            params += [*target_params, *target_params, cond.value]
        else:
            clauses.append(f"instr(lower({target}), lower(?)) > 0")
            params += [*target_params, cond.value]
    return " AND ".join(clauses) or "1", params


class ItemStore:
    """Read-only access to items.sqlite, safe to share between threads (one connection per thread)."""

    def __init__(self, path: Path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: rebuild the index with `clamp index build`")
        self.path = path
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            self._local.conn = conn
        return conn

    def labels_matching(
        self, conditions: Sequence[Condition], among: Sequence[int] | None = None
    ) -> np.ndarray:
        """Labels (sorted int64) of the items that pass every condition (only those `among`, if given)."""
        where, params = condition_sql(conditions)
        if among is not None:
            where += f" AND label IN ({_int_list(among)})"
        rows = self._conn().execute(f"SELECT label FROM items WHERE {where} ORDER BY label", params)
        return np.fromiter((r[0] for r in rows), dtype=np.int64)

    def has_keywords(self) -> bool:
        """Whether keyword (and so hybrid) search is possible: indices built before it lack the table."""
        return keyword.has_fts(self._conn())

    def keyword_search(
        self, query: str, k: int, conditions: Sequence[Condition] = ()
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The k best items for a text query (labels, bm25, parts of the query matched; keyword.search)."""
        return keyword.search(self._conn(), query, k, *condition_sql(conditions))

    def label_of(self, item_id: str) -> int | None:
        row = self._conn().execute("SELECT label FROM items WHERE id = ?", (item_id,)).fetchone()
        return None if row is None else row[0]

    def items(self, labels: Sequence[int], with_abc: bool = False) -> dict[int, tuple[str, dict, str | None]]:
        """(id, metadata, abc or None) by label for the given labels."""
        columns = ", ".join(f'"{c}"' for c in ("label", "id", *FILTER_COLUMNS, "meta"))
        columns += ", abc" if with_abc else ", NULL"
        found = {}
        sql = f"SELECT {columns} FROM items WHERE label IN ({_int_list(labels)})"
        for label, item_id, *values, meta, abc in self._conn().execute(sql):
            metadata = dict(zip(FILTER_COLUMNS, values, strict=True))
            metadata["meta"] = json.loads(meta) if meta else {}
            found[label] = (item_id, metadata, abc)
        return found


def _int_list(labels: Iterable[int]) -> str:
    """Labels as a SQL list literal: ints only (so nothing can be injected), and no bound-parameter limit."""
    return ", ".join(str(int(label)) for label in labels)
