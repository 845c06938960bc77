"""What one generation of an index dir is made of: its manifest, checked segments and deleted labels.

manifest.json is the only file an update rewrites (atomically: runtime.storage.dirs.write_json), so a
reader that reads it once sees one generation whole. Beside the full build's own files (the base
segment), it may list added segment dirs ("segments": dir, first_label, rows and the sha256 of the
segment's own manifest.json; "attached" for one built apart: indexer.index_attach) and a file of deleted
labels ("deleted"); indices built before updates existed list neither and open as one segment. The base
segment's labels start at "first_label" (0 unless the build was given another).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runtime.search.errors import REBUILD, IndexDirError
from runtime.search.segments import INDEX_FILES, MANIFEST_FILE
from runtime.storage.integrity import check_files, file_sha256, listed_files

SEGMENT_DIR = "segment-{:05d}"
DELETED_FILE = "deleted-{:05d}.npy"


@dataclass(frozen=True)
class SegmentSpec:
    """Where a segment lies and which labels it holds; `fingerprint` names its files' exact contents."""

    directory: Path
    first_label: int
    rows: int
    fingerprint: str


def read_manifest(index_dir: str | Path) -> dict[str, Any]:
    path = Path(index_dir) / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: is {index_dir} an index dir? Build one with `clamp index build`"
        )
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise IndexDirError(f"{path} is not valid JSON ({err}): the index dir is damaged; {REBUILD}") from err
    if not isinstance(manifest, dict):
        raise IndexDirError(f"{path} is not a JSON object: the index dir is damaged; {REBUILD}")
    return manifest


def manifest_signature(index_dir: str | Path) -> tuple[int, int, int] | None:
    """What changes whenever a build or update swaps in a new generation (None: no manifest there)."""
    try:
        stat = os.stat(Path(index_dir) / MANIFEST_FILE)
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def deleted_name(manifest: dict[str, Any]) -> str | None:
    deleted = manifest.get("deleted")
    return deleted.get("file") if isinstance(deleted, dict) else None


def segment_specs(directory: Path, manifest: dict[str, Any], full_check: bool) -> list[SegmentSpec]:
    """The generation's segments, base first, their files checked (sizes; sha256 too on a full check)."""
    where = directory / MANIFEST_FILE
    required = [*INDEX_FILES, *filter(None, [deleted_name(manifest)])]
    files = listed_files(manifest, where, required, REBUILD, IndexDirError)
    check_files(directory, files, full_check, REBUILD, IndexDirError)
    base_rows = manifest.get("base_rows", manifest.get("count"))
    fingerprint = "".join(files[name]["sha256"] for name in INDEX_FILES)
    specs = [SegmentSpec(directory, manifest.get("first_label", 0), base_rows, fingerprint)]
    entries = manifest.get("segments", [])
    if not isinstance(entries, list):
        raise IndexDirError(f"{where} has no valid 'segments' list; {REBUILD}")
    for entry in entries:
        specs.append(_added_segment(directory, entry, where, full_check))
    return specs


def _added_segment(directory: Path, entry: Any, where: Path, full_check: bool) -> SegmentSpec:
    """An added segment's entry, checked against its dir and its own manifest."""
    name = entry.get("dir") if isinstance(entry, dict) else None
    well_formed = (
        isinstance(name, str)
        and Path(name).name == name not in ("", ".", "..")
        and all(isinstance(entry.get(key), int) for key in ("first_label", "rows"))
        and isinstance(entry.get("manifest_sha256"), str)
    )
    if not well_formed:
        raise IndexDirError(f"{where} lists a segment without a dir, first_label, rows or sha256; {REBUILD}")
    segment_manifest = directory / name / MANIFEST_FILE
    if not segment_manifest.is_file() or file_sha256(segment_manifest) != entry["manifest_sha256"]:
        raise IndexDirError(f"{segment_manifest} is missing or not the one {where} lists; {REBUILD}")
    own = read_manifest(directory / name)
    files = listed_files(own, segment_manifest, INDEX_FILES, REBUILD, IndexDirError)
    check_files(directory / name, files, full_check, REBUILD, IndexDirError)
    return SegmentSpec(directory / name, entry["first_label"], entry["rows"], entry["manifest_sha256"])


def read_deleted(directory: Path, manifest: dict[str, Any]) -> np.ndarray:
    """The generation's deleted labels, sorted (none for an index never updated)."""
    name = deleted_name(manifest)
    if name is None:
        return np.zeros(0, dtype=np.int64)
    try:
        return np.sort(np.load(directory / name).astype(np.int64))
    except (ValueError, OSError) as err:
        raise IndexDirError(f"{directory / name}: cannot read the deleted labels ({err}); {REBUILD}") from err
