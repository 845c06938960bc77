"""Shards -> index dir: an hnswlib graph (inner product over normalised vectors), items.sqlite, vectors.npy.

Rows stream from the shards batch by batch, so memory holds the graph, not the corpus. The index dir
is built under a temporary name and renamed when complete.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import hnswlib
import numpy as np
import pyarrow.parquet as pq
from tqdm import tqdm

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
from runtime.storage.integrity import file_entries

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
    started = time.perf_counter()
    shards_dir, out_dir = Path(shards_dir), Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / MANIFEST_FILE).is_file():
        raise FileExistsError(f"{out_dir} exists and is not an index dir: choose another --out or empty it")
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

    tmp = _fresh_dir(out_dir.with_name(f".{out_dir.name}.partial"))
    graph = hnswlib.Index(space=SPACE, dim=dim)
    graph.init_index(max_elements=count, ef_construction=ef_construction, M=m, random_seed=seed)
    # float32 even from float16 shards: numpy's float16 -> float32 conversion would dominate exact search
    vectors = np.lib.format.open_memmap(tmp / VECTORS_FILE, mode="w+", dtype=np.float32, shape=(count, dim))
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
            vectors[labels] = embeddings
            columns = [batch.column(c).to_pylist() for c in READ_COLUMNS[:-1]]
            items.add(
                item_row(int(lab), *(col[i] for col in columns)) for lab, i in zip(labels, keep, strict=True)
            )
            label += len(keep)
    graph.save_index(str(tmp / HNSW_FILE))
    vectors.flush()
    del vectors
    items.finish()
    calibration = _calibration(recorded_model_dir, tmp / VECTORS_FILE)

    manifest = {
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
    _replace_dir(tmp, out_dir)
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


def _fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def _replace_dir(built: Path, out_dir: Path) -> None:
    """Move a finished index into place, replacing an older index (or an empty dir) there."""
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        out_dir.rename(old)
        built.rename(out_dir)
    else:
        built.rename(out_dir)
    shutil.rmtree(out_dir.with_name(f".{out_dir.name}.old"), ignore_errors=True)  # also one a kill left
