"""One writer per output dir: an exclusive flock on a lock file beside the dir.

The kernel drops a flock when its holder dies (even by SIGKILL), so the lock of a dead process is
simply taken over; a live holder makes a second writer fail at once with who holds it. The lock file
sits beside the dir (`.NAME.lock`), not in it, because index build and export swap the whole dir.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Dirs this process has locked, latest last: what a disk-full message names (runtime.storage.space).
LOCKED: list[Path] = []


class DirLockedError(ValueError):
    """Another live process is writing the same output dir."""


def lock_path(out_dir: Path) -> Path:
    """The lock file of an output dir: `.NAME.lock` in its parent."""
    out_dir = out_dir.absolute()
    return out_dir.with_name(f".{out_dir.name}.lock")


@contextmanager
def exclusive(out_dir: str | Path, what: str) -> Iterator[None]:
    """Hold the output dir's lock for the block, or raise DirLockedError naming the live holder.

    `what` (e.g. "clamp embed") is recorded, with pid, host, command line and start time, for that message.
    """
    out_dir = Path(out_dir)
    path = lock_path(out_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _acquire(path, out_dir)
    holder = {
        "what": what,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": shlex.join(sys.argv)[:300],
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    os.ftruncate(fd, 0)
    os.write(fd, (json.dumps(holder) + "\n").encode())
    LOCKED.append(out_dir)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)  # before unlocking: a waiter that opened this file sees it is gone
        os.close(fd)


def _acquire(path: Path, out_dir: Path) -> int:
    """Lock the file at `path`, retrying if a releasing holder unlinked it between our open and lock."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise DirLockedError(
                f"{out_dir} is being written by {holder}: wait for it to finish, or pass another --out"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        info = {}
    if not info:
        return "another process (it is just starting)"
    return (
        f"{info.get('what')} (pid {info.get('pid')} on {info.get('host')}, since {info.get('started')}: "
        f"{info.get('command')})"
    )
