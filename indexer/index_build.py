"""Shards -> index dir: hnswlib graphs (inner product over normalised vectors), items.sqlite, vectors.npy.

A full build writes one segment of every row (indexer.segment_writer) beside --out, under the out dir's
lock, and swaps it in when complete (runtime.storage.dirs), so a kill, a full disk or a second build
never leaves half an index or replaces a dir that is not one. A build over an index of the same shards
dir updates it instead (indexer.index_update).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from indexer.index_attach import refuse_dropping_attached
from indexer.index_update import shard_entries, update_index
from indexer.layout import in_old_layout, migrate_layout
from indexer.segment_writer import SPACE, HnswSettings, write_segment
from indexer.shards import shard_files, shard_ids, shards_metadata, shards_provenance
from indexer.supersede import read_superseded
from runtime.model.encoder import Encoder
from runtime.model.modeldir import CONFIG_FILE, verify_model_dir
from runtime.search.calibration import calibrate
from runtime.search.index import (
    INDEX_FILES,
    MANIFEST_FILE,
    VECTORS_FILE,
    ModelMismatchError,
    model_dir_candidates,
)
from runtime.storage.dirs import INDEX, building_dir, prepare_out_dir, replace_dir
from runtime.storage.integrity import file_entries
from runtime.storage.lock import exclusive


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
    full: bool = False,
    first_label: int = 0,
) -> dict[str, Any]:
    """Build an index dir from a shards dir, or bring the one at `out_dir` up to date; return its manifest.

    An index built from the same shards dir with the same model and settings is updated in place
    (indexer.index_update: a segment for the new rows, deletions for rows gone), unless `full` or too
    many deleted rows call for a rebuild. `model_dir` (recorded so queries default to it) must hold the
    model that made the shards; without it, the model dir the shards record is inherited, else a default
    one ($CLAMP_MODEL, build/model) that is that model. Duplicate ids (the same tune embedded twice) are
    indexed once; rows superseded since (their file changed: indexer.supersede) are left out.
    `first_label`: where a full build's labels start, so that index dirs of several shard groups, built
    apart, can be attached to one index (indexer.index_attach) with disjoint label ranges.
    """
    shards_dir, out_dir = Path(shards_dir), Path(out_dir)
    hnsw = HnswSettings(m, ef_construction, num_threads, seed)
    if in_old_layout(shards_dir):
        with exclusive(shards_dir, "clamp index build (moving the shards dir to its current layout)"):
            migrate_layout(shards_dir)
    with exclusive(out_dir, "clamp index build"):
        found = prepare_out_dir(out_dir, INDEX, replacing=True)
        if found.kind == INDEX and not full:
            updated = update_index(shards_dir, out_dir, hnsw, model_dir, batch_size, progress, first_label)
            if updated is not None:
                return updated
        if found.kind == INDEX:
            refuse_dropping_attached(out_dir, shards_dir)
        tmp = building_dir(out_dir)
        try:
            manifest = _build(shards_dir, tmp, model_dir, hnsw, batch_size, progress, first_label)
            replace_dir(tmp, out_dir, INDEX)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # a failed build (a full disk) keeps nothing half-written
    return manifest


def _build(
    shards_dir: Path,
    tmp: Path,
    model_dir: str | Path | None,
    hnsw: HnswSettings,
    batch_size: int,
    progress: bool,
    first_label: int,
) -> dict[str, Any]:
    """Build the index's files and manifest in the empty dir `tmp`: one segment of every row."""
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
    wanted = shard_ids(shards_dir) - superseded
    count = len(wanted)
    shard_rows = {f: pq.read_metadata(f).num_rows for f in files}
    written = write_segment(
        files,
        tmp,
        wanted,
        first_label,
        dim,
        hnsw,
        superseded=superseded,
        batch_size=batch_size,
        progress=progress,
    )
    calibration = _calibration(recorded_model_dir, tmp / VECTORS_FILE)

    manifest = {
        "kind": INDEX,
        "model_hash": model["model_hash"],
        "model_name": model["model_name"],
        "model_dir": recorded_model_dir,
        "count": count,
        **({"first_label": first_label} if first_label else {}),
        "duplicates_skipped": sum(shard_rows.values()) - count - written.superseded_rows,
        "superseded_skipped": written.superseded_rows,
        "dim": dim,
        "space": SPACE,
        "M": hnsw.m,
        "ef_construction": hnsw.ef_construction,
        "calibration": calibration,
        "build_seconds": round(time.perf_counter() - started, 3),
        "shards_dir": str(shards_dir.resolve()),
        "corpus_roots": provenance["corpus_roots"],
        "shards": shard_entries(shard_rows),
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
