"""Bring an index dir up to date with its shards dir without rebuilding it: add a segment, delete rows.

New rows (ids the index lacks) become one new segment dir; rows whose ids the shards no longer yield
(superseded: their file changed) are listed as deleted. Both take effect in one atomic replace of
manifest.json (runtime.storage.dirs.write_json), so readers see the old generation or the new one;
segment files are never rewritten, and what an older generation lists alone is removed after the swap
(a reader that opened it keeps its files: runtime.search.items.CONNECTIONS). When the deleted rows would
pass COMPACT_DELETED of all rows, None asks for a full build (the compaction); past MAX_SEGMENTS the
added segments are merged into the new one. Segments attached from other shard groups
(indexer.index_attach) are neither compared with these shards nor merged: they stay as they are.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from indexer.layout import recorded_checksum
from indexer.segment_writer import SPACE, HnswSettings, write_segment
from indexer.shards import iter_shard_batches, shard_files, shards_metadata
from indexer.supersede import read_superseded
from runtime.search.generation import (
    DELETED_FILE,
    SEGMENT_DIR,
    SegmentSpec,
    deleted_name,
    read_deleted,
    read_manifest,
    segment_specs,
)
from runtime.search.items import ItemStore
from runtime.search.segments import INDEX_FILES, ITEMS_FILE, MANIFEST_FILE
from runtime.storage.dirs import INDEX_UPDATE_ENTRIES, TEMPORARY, write_json
from runtime.storage.integrity import file_entries, file_sha256

COMPACT_DELETED = 0.2  # deleted rows past this fraction of all rows: rebuild (search skips them at a cost)
MAX_SEGMENTS = 8  # the base segment and at most this many - 1 added ones (each costs a graph walk a query)


def update_index(
    shards_dir: Path,
    out_dir: Path,
    hnsw: HnswSettings,
    model_dir: str | Path | None,
    batch_size: int = 8192,
    progress: bool = False,
    first_label: int = 0,
) -> dict[str, Any] | None:
    """Update the index at `out_dir` (the caller holds its lock) to the shards; its new manifest.

    None when a full build is due instead: another shards dir, model, model dir, HNSW settings or first
    label, an index of an older format, or deleted rows past COMPACT_DELETED.
    """
    started = time.perf_counter()
    manifest = read_manifest(out_dir)
    if (
        not _same_recipe(manifest, shards_dir, hnsw, model_dir)
        or manifest.get("first_label", 0) != first_label
    ):
        return None
    every = segment_specs(out_dir, manifest, full_check=False)
    listed = {entry["dir"]: entry for entry in manifest.get("segments", [])}
    specs = every[:1] + [spec for spec in every[1:] if "attached" not in listed[spec.directory.name]]
    dead = read_deleted(out_dir, manifest)
    try:
        live = live_ids(specs, dead)
        theirs = live_ids([spec for spec in every if spec not in specs], dead)
    except ValueError:  # items.sqlite of an older clamp: only a rebuild brings it to the current schema
        return None
    ids_by_file = _ids_by_file(shard_files(shards_dir))
    superseded = set(read_superseded(shards_dir))
    target = set().union(*ids_by_file.values()) - superseded
    new = target - live.keys() - theirs.keys()  # a tune an attached group holds is not indexed twice
    gone = np.array(sorted(label for item_id, label in live.items() if item_id not in target), dtype=np.int64)
    rows = sum(spec.rows for spec in every)
    if not new and not len(gone):  # nothing to write: the index stays as it is
        seconds = round(time.perf_counter() - started, 3)
        return {
            **manifest,
            "update": {"added": 0, "deleted": 0, "merged_segments": 0},
            "build_seconds": seconds,
        }
    deleted = np.union1d(dead, gone)
    if len(deleted) > COMPACT_DELETED * (rows + len(new)):
        return None
    merged = specs[1:] if new and len(specs) >= MAX_SEGMENTS else []  # our added ones; attached stay
    wanted = set(new)
    if merged:
        kept_labels = _within(np.fromiter(live.values(), dtype=np.int64, count=len(live)), merged)
        wanted |= {i for i, inside in zip(live, kept_labels, strict=True) if inside and i in target}
        deleted = deleted[~_within(deleted, merged)]
    generation = manifest.get("generation", 0) + 1
    remove_unlisted(out_dir, manifest)
    segments = [listed[spec.directory.name] for spec in every[1:] if spec not in merged]
    if wanted:
        start = max(spec.first_label + spec.rows for spec in every)  # after every label in use
        files = [f for f, ids in ids_by_file.items() if not wanted.isdisjoint(ids)]
        name = SEGMENT_DIR.format(generation)
        built = _write(out_dir / name, files, wanted, start, manifest["dim"], hnsw, batch_size, progress)
        segments.append(segment_entry(built))
    files_table = {name: manifest["files"][name] for name in INDEX_FILES}
    if len(deleted):
        deleted_file = DELETED_FILE.format(generation)
        tmp = out_dir / f".{deleted_file}.tmp"
        with open(tmp, "wb") as handle:
            np.save(handle, deleted)
        tmp.rename(out_dir / deleted_file)
        files_table |= file_entries(out_dir, [deleted_file])
    updated = {
        **{key: value for key, value in manifest.items() if key not in ("segments", "deleted")},
        "generation": generation,
        "count": every[0].rows + sum(entry["rows"] for entry in segments) - len(deleted),
        "base_rows": specs[0].rows,
        **({"segments": segments} if segments else {}),
        **({"deleted": {"file": deleted_file, "count": len(deleted)}} if len(deleted) else {}),
        "shards": shard_entries({f: pq.read_metadata(f).num_rows for f in ids_by_file}),
        "update": {"added": len(new), "deleted": len(gone), "merged_segments": len(merged)},
        "build_seconds": round(time.perf_counter() - started, 3),
        "files": files_table,
    }
    write_json(out_dir / MANIFEST_FILE, updated)
    remove_unlisted(out_dir, updated)
    return updated


def shard_entries(shard_rows: Mapping[Path, int]) -> list[dict[str, Any]]:
    """The manifest's record of the shards it was built from: name, sha256, rows.

    The sha256 is the one recorded beside each shard, which every build checks the shard against as it
    reads it (indexer.layout.verify_checksum): hashing the shards again would cost a read of them all.
    """
    return [{"file": f.name, "sha256": recorded_checksum(f), "rows": n} for f, n in shard_rows.items()]


def _same_recipe(
    manifest: dict[str, Any], shards_dir: Path, hnsw: HnswSettings, model_dir: str | Path | None
) -> bool:
    """Whether the index was built as a full build now would build it (so a segment can join it)."""
    model = shards_metadata(shards_dir)
    return (
        model is not None
        and manifest.get("shards_dir") == str(shards_dir.resolve())
        and manifest.get("model_hash") == model["model_hash"]
        and manifest.get("dim") == int(model["dim"])
        and manifest.get("space") == SPACE
        and (manifest.get("M"), manifest.get("ef_construction")) == (hnsw.m, hnsw.ef_construction)
        and (model_dir is None or manifest.get("model_dir") == str(Path(model_dir).resolve()))
    )


def live_ids(specs: list[SegmentSpec], dead: np.ndarray) -> dict[str, int]:
    """Each live item's label, by id, over all segments."""
    live: dict[str, int] = {}
    for spec in specs:
        live |= ItemStore(spec.directory / ITEMS_FILE, dead).id_labels()
    return live


def _ids_by_file(files: list[Path]) -> dict[Path, set[str]]:
    return {
        f: {i for b in iter_shard_batches([f], columns=["id"]) for i in b.column("id").to_pylist()}
        for f in files
    }


def _within(labels: np.ndarray, specs: list[SegmentSpec]) -> np.ndarray:
    """Whether each label lies in one of the segments."""
    inside = np.zeros(len(labels), dtype=bool)
    for spec in specs:
        inside |= (labels >= spec.first_label) & (labels < spec.first_label + spec.rows)
    return inside


def segment_entry(spec: SegmentSpec) -> dict[str, Any]:
    """How the root manifest lists an added segment."""
    return {
        "dir": spec.directory.name,
        "first_label": spec.first_label,
        "rows": spec.rows,
        "manifest_sha256": spec.fingerprint,
    }


def _write(
    directory: Path,
    files: list[Path],
    wanted: set[str],
    first_label: int,
    dim: int,
    hnsw: HnswSettings,
    batch_size: int,
    progress: bool,
) -> SegmentSpec:
    """Write a segment dir (built under a temporary name, then renamed) and return where it lies."""
    tmp = directory.with_name(f".{directory.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        written = write_segment(
            files, tmp, wanted, first_label, dim, hnsw, batch_size=batch_size, progress=progress
        )
        own = {"kind": "segment", "first_label": first_label, "rows": written.rows, "dim": dim}
        write_json(tmp / MANIFEST_FILE, {**own, "files": file_entries(tmp, list(INDEX_FILES))})
        tmp.rename(directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return SegmentSpec(directory, first_label, written.rows, file_sha256(directory / MANIFEST_FILE))


def remove_unlisted(out_dir: Path, manifest: dict[str, Any]) -> None:
    """Remove segment dirs and deleted-label files the manifest does not list, and temporary files."""
    listed = {entry["dir"] for entry in manifest.get("segments", [])} | {deleted_name(manifest)}
    for path in out_dir.iterdir():
        ours = INDEX_UPDATE_ENTRIES.fullmatch(path.name) or TEMPORARY.fullmatch(path.name)
        if ours and path.name not in listed:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
