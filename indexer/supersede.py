"""Rows whose source file changed after they were embedded: recorded so they never stay live twice.

A tune's id derives from its source, index and content, so an edited file yields new ids and its new
tunes are embedded beside the old rows. At the end of a complete run, every row of a file read in that
run whose id the file no longer yields is listed in SHARDS_DIR/superseded.parquet; `index build` leaves
those rows out. The list is recomputed for every file a run reads, so a file changed back revives its ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from indexer.shards import iter_shard_batches, named_if_damaged, verify_checksum, write_atomic

SUPERSEDED_NAME = "superseded.parquet"
SUPERSEDED_SCHEMA = pa.schema([("id", pa.string()), ("source", pa.string())])


def read_superseded(shards_dir: str | Path) -> dict[str, str]:
    """Ids (with their sources) of rows whose source file has changed since they were embedded."""
    path = Path(shards_dir) / SUPERSEDED_NAME
    if not path.is_file():
        return {}
    verify_checksum(path)
    with named_if_damaged(path):
        table = pq.read_table(path, page_checksum_verification=True)
    return dict(zip(table.column("id").to_pylist(), table.column("source").to_pylist(), strict=True))


def write_superseded(shards_dir: str | Path, superseded: Mapping[str, str]) -> None:
    """Replace the list whole (atomically): a file read again may bring an old id back."""
    table = pa.table({"id": list(superseded), "source": list(superseded.values())}, schema=SUPERSEDED_SCHEMA)
    write_atomic(table, Path(shards_dir) / SUPERSEDED_NAME)


def rows_of_sources(shards_dir: str | Path, sources: Iterable[str]) -> Iterator[tuple[str, str]]:
    """(id, source) of every shard row that came from one of these sources."""
    wanted = set(sources)
    for batch in iter_shard_batches(shards_dir, columns=["id", "source"]):
        ids, row_sources = batch.column("id").to_pylist(), batch.column("source").to_pylist()
        yield from ((i, s) for i, s in zip(ids, row_sources, strict=True) if s in wanted)


def supersede(shards_dir: str | Path, current: Mapping[str, set[str]]) -> tuple[int, int]:
    """Record as superseded the rows of these sources whose ids are not current; (files, rows) newly so.

    `current`: for each source read whole in this run, every id it yields now.
    """
    before = read_superseded(shards_dir)
    stale = {i: s for i, s in rows_of_sources(shards_dir, current) if i not in current[s]}
    after = {i: s for i, s in before.items() if s not in current} | stale
    if after != before:
        write_superseded(shards_dir, after)
    new = {i: s for i, s in stale.items() if i not in before}
    return len(set(new.values())), len(new)
