"""A full disk, told in one line: what ran out, that finished work is intact, that a rerun resumes.

Every writer publishes files whole (temporary name, then rename) and dirs whole (built beside, then
swapped), so running out of space loses only the file being written. The `clamp` group turns any
disk-full error of any command into `disk_full_message` (runtime.cli).
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

from runtime.storage.lock import LOCKED

FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
FULL_TEXTS = ("no space left on device", "disk quota exceeded", "database or disk is full")


def disk_full_cause(err: BaseException | None) -> BaseException | None:
    """The disk-full error behind `err` (itself, its cause or context), or None if there is none."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if getattr(err, "errno", None) in FULL_ERRNOS or any(t in str(err).lower() for t in FULL_TEXTS):
            return err
        err = err.__cause__ or err.__context__
    return None


def disk_full_message(err: BaseException) -> str:
    """One line: which filesystem filled (the dir being written and its free space), and what to do."""
    filename = getattr(err, "filename", None)
    where = LOCKED[-1] if LOCKED else Path(filename) if filename else None
    place = "the disk"
    if where is not None:
        probe = next((p for p in (where, *where.parents) if p.exists()), Path("."))
        usage = shutil.disk_usage(probe)
        place = f"the filesystem of {where} ({_size(usage.free)} free of {_size(usage.total)})"
    return (
        f"no space left on {place}: files finished before it are intact and nothing half-written was "
        "kept; free some space and rerun the same command to resume"
    )


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
