"""Shards -> index dir: an hnswlib graph (inner product over normalised vectors), items.sqlite, vectors.npy.

Rows stream from the shards batch by batch, so memory holds the graph, not the corpus. The index dir
is built beside --out under the out dir's lock and swapped in when complete (runtime.storage.dirs), so
a kill, a full disk or a second build never leaves half an index or replaces a dir that is not one.
"""

from __future__ import annotations

import errno
import json
import shutil
import time
from pathlib import Path
from typing import Any, BinaryIO

import hnswlib
import numpy as np
import pyarrow.parquet as pq
from tqdm import tqdm

from indexer.layout import in_old_layout, migrate_layout
from indexer.shards import (
    embeddings_matrix,
    iter_shard_batches,
    shard_files,
    shard_ids,
    shards_metadata,
    shards_provenance,
)
from indexer.supersede import read_superseded
from runtime.model.encoder import Encoder, available_cores
from runtime.model.modeldir import CONFIG_FILE, file_sha256, verify_model_dir
from runtime.search.calibration import calibrate
from runtime.search.index import (
    HNSW_FILE,
    INDEX_FILES,
    ITEMS_FILE,
    MANIFEST_FILE,
    VECTORS_FILE,
    ModelMismatchError,
    model_dir_candidates,
)
from runtime.search.items import SHARD_COLUMNS, ItemWriter, item_row
from runtime.storage.dirs import INDEX, building_dir, prepare_out_dir, replace_dir
from runtime.storage.integrity import file_entries
from runtime.storage.lock import exclusive

VECTOR_DTYPE = np.dtype("<f4")
SPACE = "ip"  # inner product = cosine on L2-normalised vectors
READ_COLUMNS = [*SHARD_COLUMNS, "embedding"]


def build_index(
    shards_dir: str | Path,
    out_dir: str | Path,
    *,
    model_dir: str | Path | None = None,
    m: int = 16,
    ef_construction: int = 200,
    num_threads: int | None = None,
    batch_size: int = 8192,
    seed: int = 100,
    progress: bool = False,
) -> dict[str, Any]:
    """Build an index dir from a shards dir and return its manifest.

    `model_dir` (recorded so queries default to it) must hold the model that made the shards; without
    it, the model dir the shards record is inherited, else a default one ($CLAMP_MODEL, build/model) that
    is that model. Duplicate ids (the same tune embedded twice) are indexed once; rows superseded since
    (their file changed: indexer.supersede) are left out.
    """
    shards_dir, out_dir = Path(shards_dir), Path(out_dir)
    if in_old_layout(shards_dir):
        with exclusive(shards_dir, "clamp index build (moving the shards dir to its current layout)"):
            migrate_layout(shards_dir)
    with exclusive(out_dir, "clamp index build"):
        prepare_out_dir(out_dir, INDEX, replacing=True)
        tmp = building_dir(out_dir)
        try:
            manifest = _build(
                shards_dir, tmp, model_dir, m, ef_construction, num_threads, batch_size, seed, progress
            )
            replace_dir(tmp, out_dir, INDEX)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # a failed build (a full disk) keeps nothing half-written
    return manifest


def _build(
    shards_dir: Path,
    tmp: Path,
    model_dir: str | Path | None,
    m: int,
    ef_construction: int,
    num_threads: int | None,
    batch_size: int,
    seed: int,
    progress: bool,
) -> dict[str, Any]:
    """Build the index's files and manifest in the empty dir `tmp`."""
    started = time.perf_counter()
    files = shard_files(shards_dir)
    model = shards_metadata(shards_dir)  # refuses shards of mixed models
    if model is None:
        raise FileNotFoundError(
            f"no shard files (shard-NNNNN.parquet) in {shards_dir}: run `clamp embed` first"
        )
    provenance = shards_provenance(shards_dir)
    recorded_model_dir = _matching_model_dir(model["model_hash"], model_dir, provenance["model_dir"])
    dim = int(model["dim"])
    superseded = set(read_superseded(shards_dir))
    pending_ids = shard_ids(shards_dir) - superseded
    superseded_rows = 0
    count = len(pending_ids)
    shard_rows = {f: pq.read_metadata(f).num_rows for f in files}
    rows = sum(shard_rows.values())

    graph = hnswlib.Index(space=SPACE, dim=dim)
    graph.init_index(max_elements=count, ef_construction=ef_construction, M=m, random_seed=seed)
    # float32 even from float16 shards: numpy's float16 -> float32 conversion would dominate exact search
    vectors = _vectors_file(tmp / VECTORS_FILE, count, dim)
    items = ItemWriter(tmp / ITEMS_FILE)
    label = 0
    with tqdm(total=rows, unit="tune", desc="indexing", disable=not progress) as bar:
        for batch in iter_shard_batches(shards_dir, columns=READ_COLUMNS, batch_size=batch_size):
            keep = []
            for i, item_id in enumerate(batch.column("id").to_pylist()):
                if item_id in pending_ids:  # first sighting: later duplicates are skipped
                    pending_ids.discard(item_id)
                    keep.append(i)
                else:
                    superseded_rows += item_id in superseded
            bar.update(batch.num_rows)
            if not keep:
                continue
            embeddings = embeddings_matrix(batch)[keep]
            embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)  # unit again after float16
            labels = np.arange(label, label + len(keep))
            graph.add_items(embeddings, labels, num_threads=num_threads or available_cores())
            vectors.write(
                np.ascontiguousarray(embeddings, dtype=VECTOR_DTYPE).tobytes()
            )  # rows in label order
            columns = [batch.column(c).to_pylist() for c in READ_COLUMNS[:-1]]
            items.add(
                item_row(int(lab), *(col[i] for col in columns)) for lab, i in zip(labels, keep, strict=True)
            )
            label += len(keep)
    _save_graph(graph, tmp / HNSW_FILE)
    vectors.close()
    items.finish()
    calibration = _calibration(recorded_model_dir, tmp / VECTORS_FILE)

    manifest = {
        "kind": INDEX,
        "model_hash": model["model_hash"],
        "model_name": model["model_name"],
        "model_dir": recorded_model_dir,
        "count": count,
        "duplicates_skipped": rows - count - superseded_rows,
        "superseded_skipped": superseded_rows,
        "dim": dim,
        "space": SPACE,
        "M": m,
        "ef_construction": ef_construction,
        "calibration": calibration,
        "build_seconds": round(time.perf_counter() - started, 3),
        "shards_dir": str(shards_dir.resolve()),
        "corpus_roots": provenance["corpus_roots"],
        "shards": [{"file": f.name, "sha256": file_sha256(f), "rows": n} for f, n in shard_rows.items()],
        "files": file_entries(
            tmp, list(INDEX_FILES)
        ),  # what Index.open checks: sizes, sha256 on a full check
    }
    (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _calibration(model_dir: str | None, vectors_file: Path) -> dict[str, Any] | None:
    """Match-strength calibration with the shards' model (runtime.search.calibration), None without one."""
    if model_dir is None or not (Path(model_dir) / CONFIG_FILE).is_file():
        return None
    return calibrate(Encoder.open(model_dir), np.load(vectors_file, mmap_mode="r"))


def _matching_model_dir(
    model_hash: str, model_dir: str | Path | None, shards_model_dir: str | None
) -> str | None:
    """The absolute model dir to record: the one given (which must match), else the first that matches
    of the shards' own model dir and the defaults (model_dir_candidates)."""
    if model_dir is not None:
        found = _model_hash(Path(model_dir))
        if found != model_hash:
            raise ModelMismatchError(
                f"model {model_dir} (hash {found[:12]}) did not make these shards (hash {model_hash[:12]}): "
                "pass the model dir used by `clamp embed`, or re-embed with this model"
            )
        return str(Path(model_dir).resolve())
    inherited = [Path(shards_model_dir)] if shards_model_dir else []
    for candidate in [*inherited, *model_dir_candidates()]:
        if (candidate / CONFIG_FILE).is_file() and _model_hash(candidate) == model_hash:
            return str(candidate.resolve())
    return None


def _model_hash(model_dir: Path) -> str:
    return verify_model_dir(model_dir)["model_hash"]


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
