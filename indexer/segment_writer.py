"""Shard rows -> one segment's files: index.hnsw, vectors.npy, items.sqlite (runtime.search.segments).

A full build writes the segment holding every row, an update one holding the new rows; both stream the
shards batch by batch, so memory holds one segment's graph, not the corpus.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import hnswlib
import numpy as np
from tqdm import tqdm

from indexer.shards import embeddings_matrix, iter_shard_batches
from runtime.model.encoder import available_cores
from runtime.search.items import SHARD_COLUMNS, ItemWriter, item_row
from runtime.search.segments import HNSW_FILE, ITEMS_FILE, VECTORS_FILE

VECTOR_DTYPE = np.dtype("<f4")
SPACE = "ip"  # inner product = cosine on L2-normalised vectors
READ_COLUMNS = [*SHARD_COLUMNS, "embedding"]


@dataclass(frozen=True)
class HnswSettings:
    """How a segment's graph is built (recorded in the index manifest; every segment shares them)."""

    m: int = 16
    ef_construction: int = 200
    num_threads: int | None = None
    seed: int = 100


@dataclass(frozen=True)
class Written:
    """What write_segment wrote: rows indexed, and shard rows left out as superseded."""

    rows: int
    superseded_rows: int


def write_segment(
    shards: Sequence[Path],
    out: Path,
    wanted: set[str],
    first_label: int,
    dim: int,
    hnsw: HnswSettings,
    *,
    superseded: set[str] = frozenset(),
    batch_size: int = 8192,
    progress: bool = False,
) -> Written:
    """Write the segment of the `wanted` ids' rows (each id once: its first row) into the dir `out`.

    Labels run from `first_label` in shard order; `wanted` is consumed. Rows of `superseded` ids are counted.
    """
    count = len(wanted)
    graph = hnswlib.Index(space=SPACE, dim=dim)
    graph.init_index(
        max_elements=max(count, 1), ef_construction=hnsw.ef_construction, M=hnsw.m, random_seed=hnsw.seed
    )
    # float32 even from float16 shards: numpy's float16 -> float32 conversion would dominate exact search
    vectors = _vectors_file(out / VECTORS_FILE, count, dim)
    items = ItemWriter(out / ITEMS_FILE)
    label, superseded_rows = first_label, 0
    with tqdm(total=count, unit="tune", desc="indexing", disable=not progress) as bar:
        for batch in iter_shard_batches(shards, columns=READ_COLUMNS, batch_size=batch_size):
            keep = []
            for i, item_id in enumerate(batch.column("id").to_pylist()):
                if item_id in wanted:  # first sighting: later duplicates are skipped
                    wanted.discard(item_id)
                    keep.append(i)
                else:
                    superseded_rows += item_id in superseded
            if not keep:
                continue
            bar.update(len(keep))
            embeddings = embeddings_matrix(batch)[keep]
            embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)  # unit again after float16
            labels = np.arange(label, label + len(keep))
            graph.add_items(embeddings, labels, num_threads=hnsw.num_threads or available_cores())
            vectors.write(np.ascontiguousarray(embeddings, dtype=VECTOR_DTYPE).tobytes())  # label order
            columns = [batch.column(c).to_pylist() for c in READ_COLUMNS[:-1]]
            items.add(
                item_row(int(lab), *(col[i] for col in columns)) for lab, i in zip(labels, keep, strict=True)
            )
            label += len(keep)
    _save_graph(graph, out / HNSW_FILE)
    vectors.close()
    items.finish()
    return Written(label - first_label, superseded_rows)


def _vectors_file(path: Path, count: int, dim: int) -> BinaryIO:
    """vectors.npy opened for its rows in order: plain writes, so a full disk is an OSError.

    (Writing through a memory map, as this once did, turns a full disk into a SIGBUS that kills the process.)
    """
    handle = open(path, "wb")
    header = {
        "descr": np.lib.format.dtype_to_descr(VECTOR_DTYPE),
        "fortran_order": False,
        "shape": (count, dim),
    }
    np.lib.format.write_array_header_1_0(handle, header)
    return handle


def _save_graph(graph: hnswlib.Index, path: Path) -> None:
    """Save the graph, refusing a short file: hnswlib does not report failed writes (a full disk)."""
    graph.save_index(str(path))
    written, expected = path.stat().st_size, graph.index_file_size()
    if written != expected:
        raise OSError(
            errno.ENOSPC,
            f"wrote {written} of {expected} bytes of the graph: No space left on device",
            str(path),
        )
