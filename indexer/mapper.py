"""Tunes -> bar patches in a pool of worker processes; patched tunes -> embeddings with the runtime Encoder.

Workers get only ABC strings and the patch budget (a builder, never an encoder or a writer) and send back
patch arrays; the main process keeps the records and runs ONNX Runtime while the pool patches ahead.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from multiprocessing.pool import AsyncResult
from typing import Protocol

import numpy as np

from indexer.reader import TuneRecord
from runtime.music.profiles import PROFILES, Profile


@dataclass(frozen=True)
class Patched:
    """What the music encoder will see of one tune, and whether its tail was cut to fit."""

    patches: np.ndarray
    truncated: bool


class PatchEncoder(Protocol):
    """The part of runtime.model.encoder.Encoder the indexer drives."""

    model_hash: str
    model_name: str
    dim: int
    max_patches: int
    profile: Profile  # how the model dir's music is patched

    def embed_patches(self, patches: Sequence[np.ndarray], max_batch_patches: int = ...) -> np.ndarray: ...


def patch_abc(abc: str, max_patches: int, preprocessing: str) -> Patched | str:
    """A tune's patches as the model sees them, or why there are none.

    CLaMP 1 families keep the head (max_patches, `truncated` says whether the tail was cut); windowed
    families (CLaMP 2/3) keep every patch, the encoder averaging its windows.
    """
    profile = PROFILES[preprocessing]
    limit = None if profile.windowed else max_patches + 1
    try:
        patches = profile.abc_patches(abc, limit)
    except Exception as err:  # a tune that breaks the patcher is recorded, never fatal to the run
        return f"patching failed: {type(err).__name__}: {err}"
    if not profile.has_music(patches):
        return (
            "no music: after the model's filter (it drops X:, T:, C:... lines) no header or whole bar is left"
        )
    if profile.windowed:
        return Patched(patches, truncated=False)
    return Patched(patches[:max_patches], truncated=len(patches) > max_patches)


@dataclass(frozen=True)
class PatchedChunk:
    """A chunk of records with their patches (or failure reasons), and what patching them cost."""

    records: list[TuneRecord]
    results: list[Patched | str]
    patch_seconds: float  # in the worker
    wait_seconds: float  # this process, waiting for the worker
    worker_peak_mb: float  # the worker's peak resident memory so far


def patch_chunk(
    abcs: list[str], max_patches: int, preprocessing: str
) -> tuple[list[Patched | str], float, float]:
    """Patch a chunk of tunes in a worker; also say how long it took and the worker's peak memory."""
    start = time.perf_counter()
    results = [patch_abc(abc, max_patches, preprocessing) for abc in abcs]
    return results, time.perf_counter() - start, peak_rss_mb()


def peak_rss_mb() -> float:
    """This process's own peak resident memory in MiB (Linux VmHWM: unlike ru_maxrss, not inherited)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass  # not Linux: ru_maxrss, in bytes on macOS
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)


def _start_worker(parent: int) -> None:
    """Worker set-up: Ctrl-C is the main process's to handle; a worker whose parent was killed exits."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True).start()


def _exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def parallel_patch(
    chunks: Iterable[list[TuneRecord]], max_patches: int, workers: int, preprocessing: str
) -> Iterator[PatchedChunk]:
    """Patch chunks of records in `workers` processes (0: in this one), in order, with a bounded backlog."""
    work = partial(patch_chunk, max_patches=max_patches, preprocessing=preprocessing)
    if workers == 0:
        for chunk in chunks:
            yield PatchedChunk(chunk, *work([r.abc for r in chunk])[:2], 0.0, 0.0)
        return
    context = multiprocessing.get_context("spawn")  # no fork of a process running ONNX Runtime threads
    with context.Pool(workers, initializer=_start_worker, initargs=(os.getpid(),)) as pool:
        in_flight: deque = deque()
        for chunk in chunks:
            in_flight.append((chunk, pool.apply_async(work, ([r.abc for r in chunk],))))
            if len(in_flight) >= 4 * workers:
                yield _collect(*in_flight.popleft())
        while in_flight:
            yield _collect(*in_flight.popleft())


def _collect(chunk: list[TuneRecord], pending: AsyncResult) -> PatchedChunk:
    start = time.perf_counter()
    results, seconds, peak_mb = pending.get()
    return PatchedChunk(chunk, results, seconds, time.perf_counter() - start, peak_mb)


def embed_patched(
    encoder: PatchEncoder, patches: list[np.ndarray], max_batch_patches: int
) -> tuple[np.ndarray, list[str | None]]:
    """Embeddings [n, dim] of patched tunes and, per tune, None or why it could not be embedded.

    The encoder batches by patch budget after sorting by length; if a batch fails, each tune is retried
    alone so that one bad tune costs only itself (an encoder that fails on every tune stops the run).
    """
    try:
        vectors = encoder.embed_patches(patches, max_batch_patches=max_batch_patches)
    except Exception:
        return _embed_one_by_one(encoder, patches, max_batch_patches)
    return _checked(vectors)


def _embed_one_by_one(
    encoder: PatchEncoder, patches: list[np.ndarray], max_batch_patches: int
) -> tuple[np.ndarray, list[str | None]]:
    vectors = np.zeros((len(patches), encoder.dim), dtype=np.float32)
    reasons: list[str | None] = [None] * len(patches)
    for i, one in enumerate(patches):
        try:
            vectors[i] = encoder.embed_patches([one], max_batch_patches=max_batch_patches)[0]
        except Exception as err:
            reasons[i] = f"encoder failed: {type(err).__name__}: {err}"
            last_error = err
    if all(reasons):
        raise RuntimeError(
            f"the encoder fails on every tune, even one at a time: {reasons[-1]}"
        ) from last_error
    return vectors, [reason or bad for reason, bad in zip(reasons, _checked(vectors)[1], strict=True)]


def _checked(vectors: np.ndarray) -> tuple[np.ndarray, list[str | None]]:
    finite = np.isfinite(vectors).all(axis=1)
    return vectors, [None if ok else "encoder returned a non-finite embedding" for ok in finite]
