"""Attach index dirs built apart (one per shard group) to an index dir as its segments: `clamp index attach`.

Shard groups are embedded and built in parallel, on as many machines as there are groups, each with
`clamp index build GROUP_SHARDS --out GROUP --first-label L` and its own disjoint label range. Attaching
links (or copies) a group's files into the index as a new segment, checked and never rewritten, and lists
it in one atomic replace of manifest.json, as an update does: readers, and a running `clamp serve`, see
the index without the groups or with all of them, and the index's other segments are not touched.

An attached segment belongs to its group: updates of the index from its own shards dir leave it alone
(indexer.index_update), and a full build of the index, which would drop it, is refused.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from indexer.index_update import live_ids, remove_unlisted, segment_entry
from runtime.search.generation import SEGMENT_DIR, SegmentSpec, read_deleted, read_manifest, segment_specs
from runtime.search.items import ItemStore
from runtime.search.segments import INDEX_FILES, ITEMS_FILE, MANIFEST_FILE
from runtime.storage.dirs import write_json
from runtime.storage.integrity import file_sha256
from runtime.storage.lock import exclusive

# What an attached group must share with the index for their vectors and graphs to be searched together.
RECIPE = ("model_hash", "dim", "space", "M", "ef_construction")


def attach_indices(index_dir: str | Path, groups: Sequence[str | Path]) -> dict[str, Any]:
    """Attach each group index dir's segment to the index at `index_dir`; the index's new manifest.

    A group must be one segment without deleted rows (as `clamp index build` writes it), of the index's
    model and HNSW settings, with labels and ids that no segment of the index (or other group) holds.
    """
    started, index_dir = time.perf_counter(), Path(index_dir)
    with exclusive(index_dir, "clamp index attach"):
        manifest = read_manifest(index_dir)
        specs = segment_specs(index_dir, manifest, full_check=False)
        taken = [(spec.first_label, spec.first_label + spec.rows, str(spec.directory)) for spec in specs]
        live = set(live_ids(specs, read_deleted(index_dir, manifest)))
        generation, entries, added = manifest.get("generation", 0), list(manifest.get("segments", [])), 0
        try:
            for group in map(Path, groups):
                with exclusive(group, "clamp index attach (reading it)"):
                    spec, theirs = _group_segment(group, manifest)
                    _refuse_overlap(spec, group, taken)
                    ids = set(ItemStore(group / ITEMS_FILE).id_labels())
                    if shared := ids & live:
                        raise ValueError(
                            f"{group} holds {len(shared)} tune(s) the index already holds (e.g. "
                            f"{sorted(shared)[0]!r}): attach groups of disjoint shards"
                        )
                    generation += 1
                    attached = _link_segment(spec, theirs, index_dir / SEGMENT_DIR.format(generation))
                taken.append((spec.first_label, spec.first_label + spec.rows, str(group)))
                live |= ids
                added += spec.rows
                origin = {key: theirs.get(key) for key in ("shards_dir", "shards", "model_dir")}
                origin["from"] = str(group.resolve())
                entries.append({**segment_entry(attached), "attached": origin})
            updated = {
                **manifest,
                "generation": generation,
                "count": manifest["count"] + added,
                "base_rows": specs[0].rows,
                "segments": sorted(entries, key=lambda entry: entry["first_label"]),
                "attach": {"groups": len(groups), "added": added},
                "build_seconds": round(time.perf_counter() - started, 3),
            }
            write_json(index_dir / MANIFEST_FILE, updated)
        finally:
            remove_unlisted(index_dir, read_manifest(index_dir))  # a failed attach leaves no segment behind
    return updated


def refuse_dropping_attached(index_dir: Path, shards_dir: Path) -> None:
    """Refuse a full build over an index with attached groups: built from its own shards alone, it would
    lose them."""
    entries = read_manifest(index_dir).get("segments")
    groups = (
        [e for e in entries if isinstance(e, dict) and "attached" in e] if isinstance(entries, list) else []
    )
    if groups:
        where = ", ".join(entry["attached"]["from"] for entry in groups)
        raise ValueError(
            f"{index_dir} has {len(groups)} attached group(s) ({where}), which a full build from "
            f"{shards_dir} alone would drop: build into another --out, then attach the groups to it again"
        )


def _group_segment(group: Path, manifest: dict[str, Any]) -> tuple[SegmentSpec, dict[str, Any]]:
    """A group's one segment, its files checked against their sha256, and the group's manifest."""
    theirs = read_manifest(group)
    differs = [key for key in RECIPE if theirs.get(key) != manifest.get(key)]
    if differs:
        found = ", ".join(f"{key} {theirs.get(key)!r} (the index: {manifest.get(key)!r})" for key in differs)
        raise ValueError(f"{group} was built otherwise than the index: {found}; rebuild it to match")
    specs = segment_specs(group, theirs, full_check=True)  # every byte, before it becomes ours
    if len(specs) != 1 or theirs.get("deleted") or "attach" in theirs:
        raise ValueError(
            f"{group} is an updated index ({len(specs)} segments, deleted rows or groups of its own): "
            f"attach a group as one segment, e.g. after `clamp index build --full` of it"
        )
    return specs[0], theirs


def _refuse_overlap(spec: SegmentSpec, group: Path, taken: list[tuple[int, int, str]]) -> None:
    end = spec.first_label + spec.rows
    for low, high, owner in taken:
        if spec.first_label < high and low < end:
            free = max(high for _, high, _ in taken)
            raise ValueError(
                f"{group} holds labels {spec.first_label}..{end - 1}, which {owner} holds "
                f"({low}..{high - 1}): build each group with its own --first-label (e.g. {free} or above)"
            )


def _link_segment(spec: SegmentSpec, manifest: dict[str, Any], directory: Path) -> SegmentSpec:
    """The group's files as the segment dir `directory`: hard links (copies across file systems) under a
    temporary name, renamed when whole."""
    tmp = directory.with_name(f".{directory.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        for name in INDEX_FILES:
            try:
                os.link(spec.directory / name, tmp / name)  # a segment's files are never written again
            except OSError:
                shutil.copy2(spec.directory / name, tmp / name)
        own = {"kind": "segment", "first_label": spec.first_label, "rows": spec.rows, "dim": manifest["dim"]}
        write_json(tmp / MANIFEST_FILE, {**own, "files": {n: manifest["files"][n] for n in INDEX_FILES}})
        tmp.rename(directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return SegmentSpec(directory, spec.first_label, spec.rows, file_sha256(directory / MANIFEST_FILE))
