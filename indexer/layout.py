"""Where a shards dir keeps each file, so that it opens as a plain Parquet dataset; checksums; migration.

    SHARDS_DIR/shard-00000.parquet ...                 the dataset: one row per tune
    SHARDS_DIR/_checksums/shard-00000.parquet.sha256   sha256sum's format (in SHARDS_DIR:
                                                       `sha256sum -c _checksums/*.sha256`)
    SHARDS_DIR/_errors/errors-00000.pq                 failures (Parquet), with _errors/_checksums/
    SHARDS_DIR/_superseded.pq                          rows whose file changed since (indexer.supersede)
    SHARDS_DIR/_stats/run-*.json                       one per run

pandas, pyarrow datasets and Spark skip names that start with `_` or `.`, and DuckDB reads only
`*.parquet`, so the dir itself is the dataset (`pd.read_parquet(SHARDS_DIR)`) and the sidecars, stats
and errors table stay out of it.
Dirs in the layout before this one (sidecars beside the shards, `errors/`, `stats/`) are moved into it
by the next `clamp embed` or `clamp index build`, one rename at a time.
"""

from __future__ import annotations

import os
from pathlib import Path

from runtime.storage.dirs import CHECKSUMS_DIR, ERRORS_DIR, STATS_DIR, SUPERSEDED_FILE
from runtime.storage.integrity import file_sha256

CHECKSUM_SUFFIX = ".sha256"
# Errors tables are Parquet too, but not `.parquet`: DuckDB reads every *.parquet under a dir it is given.
ERRORS_SUFFIX = ".pq"
REDO = "move it away and rerun `clamp embed` to redo its tunes"


class ShardError(ValueError):
    """A shard or errors file that is truncated, damaged, not Parquet at all, or has no checksum."""


def checksum_file(path: Path) -> Path:
    """Where a shard's or errors table's sha256 is kept: `_checksums/NAME.sha256` in its dir."""
    return path.parent / CHECKSUMS_DIR / (path.name + CHECKSUM_SUFFIX)


def stage_checksum(path: Path, digest: str) -> Path:
    """Write `path`'s sha256 under a temporary name beside its checksum file; returns it, to publish."""
    sidecar = checksum_file(path)
    sidecar.parent.mkdir(exist_ok=True)
    staging = sidecar.with_name(f".{sidecar.name}.tmp")
    try:
        staging.write_text(f"{digest}  {path.name}\n")
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    return staging


def recorded_checksum(path: Path) -> str | None:
    """The sha256 recorded when the file was written ("" if its checksum file is empty; None: none)."""
    sidecar = checksum_file(path)
    if not sidecar.is_file():
        return None
    recorded = sidecar.read_text().split(maxsplit=1)
    return recorded[0] if recorded else ""


def verify_checksum(path: Path) -> None:
    """Raise ShardError unless the file's bytes have the sha256 recorded when it was written.

    A file without a recorded sha256 is refused too: nothing would tell a swapped file from ours.
    """
    where = f"{CHECKSUMS_DIR}/{checksum_file(path).name}"
    recorded = recorded_checksum(path)
    if recorded is None:
        raise ShardError(
            f"{path} has no checksum ({where}): it was not written whole by `clamp embed`; {REDO}"
        )
    if not recorded or file_sha256(path) != recorded:
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


OLD_SUPERSEDED = "superseded.parquet"


def in_old_layout(shards_dir: Path) -> bool:
    """Whether the dir still has parts in the earlier layout (sidecars beside shards, errors/, stats/)."""
    old = (shards_dir / "errors").is_dir() or (shards_dir / "stats").is_dir()
    old = old or (shards_dir / OLD_SUPERSEDED).is_file()
    return old or any(shards_dir.glob(f"shard-*.parquet{CHECKSUM_SUFFIX}"))


def migrate_layout(shards_dir: Path) -> int:
    """Move an earlier layout's stats, tables and sidecars to their `_` names; how many files moved.

    Each step is a rename (or a new checksum file written before the old one goes), so a run killed
    midway is finished by the next. The caller holds the dir's lock.
    """
    moved = 0
    stats, errors = shards_dir / "stats", shards_dir / "errors"
    if stats.is_dir():
        (shards_dir / STATS_DIR).mkdir(exist_ok=True)
        for run in sorted(stats.iterdir()):
            run.rename(shards_dir / STATS_DIR / run.name)
            moved += 1
        stats.rmdir()
    if errors.is_dir():
        for table in sorted(errors.glob("errors-*.parquet")):
            moved += _move_table(table, shards_dir / ERRORS_DIR / (table.stem + ERRORS_SUFFIX))
        for rest in [*errors.glob(f"*{CHECKSUM_SUFFIX}"), *errors.glob(".*.tmp")]:
            rest.unlink()  # sidecars of tables already moved, temporary files of a killed run
        errors.rmdir()
    if (shards_dir / OLD_SUPERSEDED).is_file():
        moved += _move_table(shards_dir / OLD_SUPERSEDED, shards_dir / SUPERSEDED_FILE)
    for sidecar in sorted(shards_dir.glob(f"*.parquet{CHECKSUM_SUFFIX}")):
        if sidecar.name.startswith("shard-"):
            target = checksum_file(sidecar.with_name(sidecar.name.removesuffix(CHECKSUM_SUFFIX)))
            target.parent.mkdir(exist_ok=True)
            sidecar.rename(target)
            moved += 1
        else:
            sidecar.unlink()  # of a table moved above by a run killed before it removed this
    return moved


def _move_table(table: Path, new: Path) -> int:
    """Rename a non-shard table to its `_`/`.pq` name (DuckDB reads every *.parquet), its sha256 with it."""
    new.parent.mkdir(exist_ok=True)
    old_sidecar = table.with_name(table.name + CHECKSUM_SUFFIX)
    if old_sidecar.is_file():  # the same digest under the new name, so `sha256sum -c` still works
        os.replace(stage_checksum(new, old_sidecar.read_text().split()[0]), checksum_file(new))
    table.rename(new)
    old_sidecar.unlink(missing_ok=True)
    return 1
