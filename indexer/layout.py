"""Where a shards dir keeps each file, so that it opens as a plain Parquet dataset; checksums; migration.

    SHARDS_DIR/shard-00000.parquet ...                 the dataset: one row per tune
    SHARDS_DIR/_checksums/shard-00000.parquet.sha256   sha256sum's format (in SHARDS_DIR:
                                                       `sha256sum -c _checksums/*.sha256`)
    SHARDS_DIR/_errors/errors-00000.parquet            failures, with their own _errors/_checksums/
    SHARDS_DIR/_stats/run-*.json                       one per run

pandas, pyarrow datasets, DuckDB and Spark skip names that start with `_` or `.`, so the dir itself is
the dataset (`pd.read_parquet(SHARDS_DIR)`) and the sidecars, stats and errors table stay out of it.
Dirs in the layout before this one (sidecars beside the shards, `errors/`, `stats/`) are moved into it
by the next `clamp embed` or `clamp index build`, one rename at a time.
"""

from __future__ import annotations

from pathlib import Path

from runtime.storage.dirs import CHECKSUMS_DIR, ERRORS_DIR, STATS_DIR
from runtime.storage.integrity import file_sha256

CHECKSUM_SUFFIX = ".sha256"
REDO = "move it away and rerun `clamp embed` to redo its tunes"


class ShardError(ValueError):
    """A shard or errors file that is truncated, damaged, not Parquet at all, or has no checksum."""


def checksum_file(path: Path) -> Path:
    """Where a shard's or errors table's sha256 is kept: `_checksums/NAME.sha256` in its dir."""
    return path.parent / CHECKSUMS_DIR / (path.name + CHECKSUM_SUFFIX)


def write_checksum(path: Path, written: Path) -> Path:
    """Record the sha256 of `written` (a finished temporary file) as `path`'s; returns the file to publish."""
    sidecar = checksum_file(path)
    sidecar.parent.mkdir(exist_ok=True)
    staging = sidecar.with_name(f".{sidecar.name}.tmp")
    try:
        staging.write_text(f"{file_sha256(written)}  {path.name}\n")
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    return staging


def verify_checksum(path: Path) -> None:
    """Raise ShardError unless the file's bytes have the sha256 recorded when it was written.

    A file without a recorded sha256 is refused too: nothing would tell a swapped file from ours.
    """
    sidecar = checksum_file(path)
    where = f"{CHECKSUMS_DIR}/{sidecar.name}"
    if not sidecar.is_file():
        raise ShardError(
            f"{path} has no checksum ({where}): it was not written whole by `clamp embed`; {REDO}"
        )
    recorded = sidecar.read_text().split(maxsplit=1)
    if not recorded or file_sha256(path) != recorded[0]:
        raise ShardError(
            f"{path} does not match its sha256 in {where}: it changed after it was written; {REDO}"
        )


def staging_files(shards_dir: Path) -> list[Path]:
    """Temporary files a killed writer left (`.NAME.tmp`) in any dir of the layout."""
    dirs = [
        shards_dir,
        shards_dir / CHECKSUMS_DIR,
        shards_dir / ERRORS_DIR,
        shards_dir / ERRORS_DIR / CHECKSUMS_DIR,
    ]
    return [stale for d in dirs for stale in d.glob(".*.tmp")]


OLD_DIRS = {"errors": ERRORS_DIR, "stats": STATS_DIR}


def in_old_layout(shards_dir: Path) -> bool:
    """Whether the dir still has parts in the earlier layout (sidecars beside shards, errors/, stats/)."""
    return any((shards_dir / old).is_dir() for old in OLD_DIRS) or any(_old_sidecars(shards_dir))


def _old_sidecars(shards_dir: Path) -> list[Path]:
    return [
        p
        for d in (shards_dir, shards_dir / ERRORS_DIR)
        for p in sorted(d.glob(f"*.parquet{CHECKSUM_SUFFIX}"))
    ]


def migrate_layout(shards_dir: Path) -> int:
    """Move an earlier layout's errors, stats and sidecars to their `_` names; how many files moved.

    Each move is one rename, so a run killed midway is finished by the next. The caller holds the lock.
    """
    moved = 0
    for old_name, new_name in OLD_DIRS.items():
        old, new = shards_dir / old_name, shards_dir / new_name
        if old.is_dir():
            new.mkdir(exist_ok=True)
            for child in sorted(old.iterdir()):
                child.rename(new / child.name)
                moved += 1
            old.rmdir()
    for sidecar in _old_sidecars(shards_dir):
        target = checksum_file(sidecar.with_name(sidecar.name.removesuffix(CHECKSUM_SUFFIX)))
        target.parent.mkdir(exist_ok=True)
        sidecar.rename(target)
        moved += 1
    return moved
