"""The converter child process: MusicXML and MIDI conversions run there, under a timeout and a memory cap.

A conversion that takes longer than its timeout gets the child killed and replaced, and becomes a
ScoreError instead of a hang. The child caps its own address space at $CLAMP_CONVERTER_MEMORY_MB (default
1024) once its imports are done: a conversion that hits the cap is a ScoreTooLarge, and the child is
replaced. Linux enforces the cap; macOS accepts and ignores it and Windows has none, which is why
formats.MAX_ELEMENTS refuses XML bombs before xml2abc on every OS.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from runtime.music.formats import DEFAULT_MEMORY_MB, MEMORY_ENV, ScoreError, ScoreTooLarge, convert_here

STARTUP_TIMEOUT = 60.0

_FRAME = struct.Struct("<Q")


def write_frame(stream: IO[bytes], message: Any) -> None:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_FRAME.pack(len(payload)) + payload)
    stream.flush()


def read_frame(stream: IO[bytes]) -> Any:
    """The next message, or None at end of stream."""
    header = stream.read(_FRAME.size)
    if len(header) < _FRAME.size:
        return None
    size = _FRAME.unpack(header)[0]
    payload = stream.read(size)
    return pickle.loads(payload) if len(payload) == size else None


def limit_memory(megabytes: int) -> None:
    """Cap this process's address space: Linux enforces it, macOS accepts and ignores it, Windows has none."""
    try:
        import resource
    except ImportError:
        return
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (megabytes << 20, megabytes << 20))


def serve_conversions() -> None:
    """The child's loop: answer each (kind, data, flavour) with ("ok", abc) or ("error", a ScoreError)."""
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints must not corrupt the replies
    threading.Thread(target=_exit_when_orphaned, args=(os.getppid(),), daemon=True).start()
    for name in ("abctoolkit.xml2abc", "lytk"):  # imported before "ready": timeouts time conversions only
        with contextlib.suppress(ImportError):
            __import__(name)
    megabytes = int(os.environ.get(MEMORY_ENV, DEFAULT_MEMORY_MB))
    limit_memory(megabytes)  # the conversions', not the imports'
    write_frame(replies, ("ready", os.getpid()))
    while (request := read_frame(sys.stdin.buffer)) is not None:
        kind, data, flavour = request
        try:
            write_frame(replies, ("ok", convert_here(kind, data, flavour)))
        except ScoreError as err:
            write_frame(replies, ("error", err))
        except MemoryError:
            needed = f"converting it needed more than the converter's {megabytes} MiB (${MEMORY_ENV} sets it)"
            write_frame(replies, ("error", ScoreTooLarge(needed)))


def _exit_when_orphaned(parent: int) -> None:
    """End the child when its parent is gone, even in the middle of an endless conversion."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


class ConverterProcess:
    """A child Python process that converts scores, killed and replaced when a conversion exceeds its timeout.

    Works on every OS and inside daemonic multiprocessing workers (it uses subprocess, not multiprocessing).
    Calls are serialised: one conversion at a time per process that uses it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._child: subprocess.Popen | None = None
        self._replies: queue.SimpleQueue = queue.SimpleQueue()
        self._owner_pid = os.getpid()

    def convert(self, kind: str, data: bytes, timeout: float, flavour: str = "clamp1") -> str:
        """ABC of a score, or ScoreError (conversion failed, timed out, or killed the child)."""
        with self._lock:
            child = self._running_child()
            try:
                write_frame(child.stdin, (kind, data, flavour))
                reply = self._replies.get(timeout=timeout)
            except OSError:  # the child exited between two calls
                reply = None
            except queue.Empty:
                self.stop()
                raise ScoreError(
                    f"conversion took longer than {timeout:g} s and was stopped; pass a longer timeout "
                    "or leave this file out"
                ) from None
            if reply is None:
                code = self.stop()
                raise ScoreError(
                    f"the converter process died (exit code {code}) while converting this file (over its "
                    f"memory limit, ${MEMORY_ENV}, or a crash of the converter)"
                )
            status, value = reply
            if isinstance(value, ScoreTooLarge):
                self.stop()  # memory it took may stay mapped: the next conversion gets a fresh child
            if status != "ok":
                raise value
            return value

    def stop(self) -> int | None:
        """Kill the child (a fresh one starts on the next call); its exit code."""
        child, self._child = self._child, None
        if child is None or self._owner_pid != os.getpid():
            return None
        child.kill()
        with contextlib.suppress(OSError):
            child.stdin.close()
        return child.wait()

    def _running_child(self) -> subprocess.Popen:
        if self._owner_pid != os.getpid():  # forked: the child belongs to the parent process
            self._child, self._owner_pid = None, os.getpid()
        if self._child is not None and self._child.poll() is None:
            return self._child
        self.stop()
        root = str(Path(__file__).resolve().parents[2])  # so a source checkout works as well as an install
        boot = f"import sys; sys.path.insert(0, {root!r}); import runtime.music.converter as c; "
        boot += "c.serve_conversions()"
        pipe, quiet = subprocess.PIPE, subprocess.DEVNULL
        child = subprocess.Popen([sys.executable, "-c", boot], stdin=pipe, stdout=pipe, stderr=quiet)
        self._replies = replies = queue.SimpleQueue()
        threading.Thread(target=_forward_replies, args=(child.stdout, replies), daemon=True).start()
        try:
            ready = replies.get(timeout=STARTUP_TIMEOUT)
        except queue.Empty:
            ready = None
        if not ready or ready[0] != "ready":
            child.kill()
            raise ScoreError(f"converter process ({sys.executable}) did not start in {STARTUP_TIMEOUT:g} s")
        self._child = child
        return child


def _forward_replies(stream: IO[bytes], replies: queue.SimpleQueue) -> None:
    while (message := read_frame(stream)) is not None:
        replies.put(message)
    replies.put(None)


CONVERTER = ConverterProcess()
atexit.register(CONVERTER.stop)
