"""Rows whose source file changed after they were embedded: recorded so they never stay live twice.

A tune's id derives from its source, index and content, so an edited file yields new ids and its new
tunes are embedded beside the old rows. At the end of a complete run, every row of a file read in that
run whose id the file no longer yields is listed in SHARDS_DIR/_superseded.pq, and so is every row of a
file under a folder the run read that no longer exists (deleted since); `index build` leaves those rows
out. The list is recomputed for every file a run reads, so a file changed back revives its ids.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from indexer.shards import iter_shard_batches, named_if_damaged, verify_checksum, write_atomic
from runtime.storage.dirs import SUPERSEDED_FILE

SUPERSEDED_SCHEMA = pa.schema([("id", pa.string()), ("source", pa.string())])


def read_superseded(shards_dir: str | Path) -> dict[str, str]:
    """Ids (with their sources) of rows whose source file has changed since they were embedded."""
    path = Path(shards_dir) / SUPERSEDED_FILE
    if not path.is_file():
        return {}
    verify_checksum(path)
    with named_if_damaged(path):
        table = pq.read_table(path, page_checksum_verification=True)
    return dict(zip(table.column("id").to_pylist(), table.column("source").to_pylist(), strict=True))


def write_superseded(shards_dir: str | Path, superseded: Mapping[str, str]) -> None:
    """Replace the list whole (atomically): a file read again may bring an old id back."""
    table = pa.table({"id": list(superseded), "source": list(superseded.values())}, schema=SUPERSEDED_SCHEMA)
    write_atomic(table, Path(shards_dir) / SUPERSEDED_FILE)


def stored_ids(
    shards_dir: str | Path, sources: Iterable[str], folders: Iterable[str] = ()
) -> tuple[set[str], dict[str, set[str]]]:
    """Ids of every row in the shards (what a resumed run skips), and by source those of these sources
    and of the sources under `folders` (canonical paths) that no longer exist."""
    every: set[str] = set()
    of_source: dict[str, set[str]] = {source: set() for source in sources}
    prefixes = tuple(folder.rstrip("/") + "/" for folder in folders)
    gone: dict[str, bool] = {}
    for batch in iter_shard_batches(shards_dir, columns=["id", "source"]):
        ids, row_sources = batch.column("id").to_pylist(), batch.column("source").to_pylist()
        every.update(ids)
        for item_id, source in zip(ids, row_sources, strict=True):
            if source not in of_source and source.startswith(prefixes):
                if gone.setdefault(source, not os.path.lexists(source)):
                    of_source[source] = set()
            if source in of_source:
                of_source[source].add(item_id)
    return every, of_source


def supersede(
    shards_dir: str | Path, stored: Mapping[str, set[str]], current: Mapping[str, set[str]]
) -> tuple[int, int]:
    """Record as superseded the stored rows of sources that no longer yield their ids; (files, rows) newly so.

    `stored`: the ids in the shards of each source, when the run started; `current`: for each source read
    whole in this run, every id it yields now.
    """
    before = read_superseded(shards_dir)
    stale = {i: source for source, ids in current.items() for i in stored.get(source, set()) - ids}
    after = {i: s for i, s in before.items() if s not in current} | stale
    if after != before:
        write_superseded(shards_dir, after)
    new = {i: s for i, s in stale.items() if i not in before}
    return len(set(new.values())), len(new)
