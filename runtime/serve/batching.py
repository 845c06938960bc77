"""Micro-batching: concurrent requests' inputs encoded and searched as one batch, one batch a tower at a time.

A batch of 32 texts costs the encoder ~3.4 ms a text against ~8.5 ms for one text alone, and one worker per
tower also bounds the encoder work: however many requests wait, at most one encode per tower runs. Inputs
whose request has timed out or disconnected (its future cancelled) are dropped before their batch runs.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import cachetools
import numpy as np
from fastapi import HTTPException

from runtime.model.encoder import Encoder
from runtime.search.index import Index

# run(inputs, stages) -> one result per input; it may note stage durations (seconds) in `stages`.
BatchFn = Callable[[list[Any], dict[str, float]], list[Any]]


class QueueFull(HTTPException):
    """The batcher already holds its most inputs: answered with 429, as a full set of slots is."""

    def __init__(self, name: str, max_queue: int):
        detail = f"server busy: {max_queue} {name} inputs already wait to be encoded; retry shortly"
        super().__init__(429, detail, headers={"Retry-After": "1"})


@dataclass(frozen=True)
class BatchSettings:
    """How batchers gather: up to max_batch requests' inputs, within a budget, waiting at most wait_ms.

    max_batch 1 encodes each request's inputs alone, as the server did before batching; a request over
    the budget (max_texts texts, max_patches padded patches: the encoder's own batch sizes) is split.
    text_cache 0 encodes every text, as before the cache.
    """

    max_batch: int = 32
    wait_ms: float = 2.0
    max_queue: int = 1024  # inputs waiting in one tower's queue; more get 429
    max_texts: int = 64
    max_patches: int = 8192
    text_cache: int = 4096  # vectors of the latest distinct texts kept (repeated queries, label prompts)


@dataclass(eq=False)
class _Job:
    """One request's inputs; it may be split over consecutive batches."""

    inputs: Sequence[Any]
    future: asyncio.Future
    stages: dict[str, float]
    queued_at: float
    results: list[Any] = field(default_factory=list)
    taken: int = 0  # inputs handed to batches
    answered: int = 0

    def __post_init__(self) -> None:
        self.results = [None] * len(self.inputs)

    def answer(self, row: int, result: Any) -> None:
        self.results[row] = result
        self.answered += 1
        if self.answered == len(self.inputs) and not self.future.done():
            self.future.set_result(self.results)

    def fail(self, error: Exception) -> None:
        if not self.future.done():
            self.future.set_exception(error)


class Batcher:
    """A queue of inputs drained by one worker, which runs `run` on a batch of them in its own thread.

    `in_flight()` (requests being answered) lets an idle worker start at once when no one else could be
    coming, so one client alone does not wait out `wait_ms`.
    """

    def __init__(
        self,
        name: str,
        run: BatchFn,
        settings: BatchSettings,
        budget: int,
        cost: Callable[[Any], int] = lambda _: 1,
        in_flight: Callable[[], int] | None = None,
    ):
        self.name = name
        self.run = run
        self.settings = settings
        self.budget = budget
        self.cost = cost
        self.in_flight = in_flight
        self._jobs: deque[_Job] = deque()
        self._arrived: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"batch-{name}")

    @property
    def queued(self) -> int:
        """Inputs waiting for a batch (of requests still waiting for them)."""
        return sum(len(job.inputs) - job.taken for job in self._jobs if not job.future.done())

    async def submit(self, inputs: Sequence[Any], stages: dict[str, float] | None = None) -> list[Any]:
        """One result per input, once their batches ran; QueueFull when max_queue inputs already wait.

        Cancelling the caller (timeout, disconnect) drops its inputs not yet batched.
        """
        if self.queued >= self.settings.max_queue:
            raise QueueFull(self.name, self.settings.max_queue)
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done():
            self._arrived = asyncio.Event()
            self._worker = loop.create_task(self._work(), name=f"batcher-{self.name}")
        job = _Job(inputs, loop.create_future(), {} if stages is None else stages, loop.time())
        self._jobs.append(job)
        self._arrived.set()
        return await job.future

    async def close(self) -> None:
        """Stop the worker (a batch already running in its thread finishes there, unanswered)."""
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        self._thread.shutdown(wait=False, cancel_futures=True)

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self.queued:
                self._arrived.clear()
                await self._arrived.wait()
            await self._gather(loop)
            batch = self._take()
            if batch:
                await self._run_batch(loop, batch)

    async def _gather(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait up to wait_ms for batch-mates, unless the batch is full or no other request is in flight."""
        deadline = loop.time() + self.settings.wait_ms / 1000
        while (left := deadline - loop.time()) > 0 and self._more_may_come():
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except asyncio.TimeoutError:
                return

    def _more_may_come(self) -> bool:
        live = [job for job in self._jobs if not job.future.done()]
        waiting = sum(self.cost(value) for job in live for value in job.inputs[job.taken :])
        if len(live) >= self.settings.max_batch or waiting >= self.budget:
            return False
        return self.in_flight is None or self.in_flight() > len(live)

    def _take(self) -> list[tuple[_Job, int]]:
        """The next batch's (job, row) pairs; jobs whose request has gone are dropped here, never encoded."""
        batch: list[tuple[_Job, int]] = []
        cost, jobs, now = 0, 0, asyncio.get_running_loop().time()
        while self._jobs:
            job = self._jobs[0]
            if job.future.done():
                self._jobs.popleft()
                continue
            item_cost = self.cost(job.inputs[job.taken])
            if batch and cost + item_cost > self.budget:
                break
            if not batch or batch[-1][0] is not job:
                if jobs == self.settings.max_batch:
                    break
                jobs += 1
            if job.taken == 0:
                job.stages["queue"] = now - job.queued_at
            batch.append((job, job.taken))
            job.taken += 1
            cost += item_cost
            if job.taken == len(job.inputs):
                self._jobs.popleft()
        return batch

    async def _run_batch(self, loop: asyncio.AbstractEventLoop, batch: list[tuple[_Job, int]]) -> None:
        """Run the batch; if it fails, run each request's part alone so one bad input fails only its own."""
        jobs = list(dict.fromkeys(job for job, _ in batch))
        try:
            results, stages = await self._call(loop, [job.inputs[row] for job, row in batch])
        except Exception as error:
            if len(jobs) == 1:
                return jobs[0].fail(error)
            for job in jobs:
                rows = [row for owner, row in batch if owner is job]
                await self._run_batch(loop, [(job, row) for row in rows])
            return
        for job in jobs:
            for name, took in stages.items():
                job.stages[name] = job.stages.get(name, 0.0) + took
        for (job, row), result in zip(batch, results, strict=True):
            job.answer(row, result)

    async def _call(self, loop: asyncio.AbstractEventLoop, inputs: list[Any]) -> tuple[list[Any], dict]:
        stages: dict[str, float] = {}
        results = await loop.run_in_executor(self._thread, self.run, inputs, stages)
        return results, stages


@dataclass(frozen=True)
class Search:
    """How to search with an input's vector: k, search_vectors' options, and an ABC to leave out (similar).

    A text search (`text` given) runs Index.search_text in `mode` with the vector: hybrid also asks the
    keyword table, and its hits carry found_by and z.
    """

    k: int
    options: dict[str, Any] = field(default_factory=dict)
    exclude_abc: str | None = None
    text: str | None = None
    mode: str = "vector"

    def alone(self) -> bool:
        """Searched one by one: with a filter (its fallbacks are decided per call), leaving out a tune,
        or a text search (its keyword side is per text)."""
        return bool(self.options.get("filter")) or self.exclude_abc is not None or self.text is not None

    def key(self) -> str:
        """Equal for searches that one search_vectors call answers together."""
        return repr((self.k, sorted(self.options.items())))


@dataclass(frozen=True)
class Ask:
    """One input of a batch: a text or a patch array, and how to search with its vector (None: the vector)."""

    value: Any
    search: Search | None = None


def encode_then_search(
    current: Callable[[], Index], embed: Callable[[Encoder, list[Any]], np.ndarray]
) -> BatchFn:
    """A batch function: embed every Ask's value at once, then search for those that ask to.

    The whole batch is answered by the index `current()` gives when it starts (one generation).

    Searches with equal options go to search_vectors as one matrix; filtered ones and those leaving out
    the query tune one by one (Search.alone), as a batch must answer as each query alone.
    """

    def run(asks: list[Ask], stages: dict[str, float]) -> list[Any]:
        started = time.perf_counter()
        index = current()
        vectors = embed(index.require_encoder(), [ask.value for ask in asks])
        searched = time.perf_counter()
        stages["encode"] = searched - started
        results: list[Any] = list(vectors)
        groups: dict[Any, list[int]] = defaultdict(list)
        for row, ask in enumerate(asks):
            if ask.search is not None:
                groups[row if ask.search.alone() else ask.search.key()].append(row)
        for rows in groups.values():
            search = asks[rows[0]].search
            if search.text is not None:
                vector = vectors[rows[0]]
                hits = [
                    index.search_text(
                        search.text, search.k, mode=search.mode, vector=vector, **search.options
                    )
                ]
            elif search.alone():
                vector = vectors[rows[0]]
                hits = [index.nearest_except(vector, search.k, abc=search.exclude_abc, **search.options)]
            else:
                hits = index.search_vectors(vectors[rows], search.k, **search.options)
            for row, found in zip(rows, hits, strict=True):
                results[row] = found
        if groups:
            stages["search"] = time.perf_counter() - searched
        return results

    return run


def text_embedder(entries: int) -> Callable[[Encoder, list[str]], np.ndarray]:
    """Encoder.embed_texts keeping the vectors of the latest `entries` distinct texts (0: none kept).

    The same few queries and label prompts ("This piece of music is a {label}.") come again and again; a
    text's vector costs ~4 ms of both cores to encode and 1 KB to keep. Run by one tower thread at a time.
    """
    if entries == 0:
        return lambda encoder, texts: encoder.embed_texts(texts)
    cache: cachetools.LRUCache = cachetools.LRUCache(entries)
    encoded_by: list[Encoder] = []  # a new model (another generation's encoder) starts a new cache

    def embed(encoder: Encoder, texts: list[str]) -> np.ndarray:
        if encoded_by[:1] != [encoder]:
            cache.clear()
            encoded_by[:] = [encoder]
        vectors = {text: cache.get(text) for text in texts}
        if missing := [text for text, vector in vectors.items() if vector is None]:
            for text, vector in zip(missing, encoder.embed_texts(missing), strict=True):
                vector.flags.writeable = False  # shared by every request for the text
                vectors[text] = cache[text] = vector
        return np.stack([vectors[text] for text in texts])

    return embed


@dataclass
class Towers:
    """The text and music batchers of one app."""

    text: Batcher
    music: Batcher

    @classmethod
    def of(
        cls, current: Callable[[], Index], settings: BatchSettings, in_flight: Callable[[], int]
    ) -> Towers:
        texts = encode_then_search(current, text_embedder(settings.text_cache))
        music = encode_then_search(
            current, lambda encoder, values: encoder.embed_patches(values, settings.max_patches)
        )
        return cls(
            Batcher("text", texts, settings, settings.max_texts, in_flight=in_flight),
            Batcher(
                "music",
                music,
                settings,
                settings.max_patches,
                cost=lambda ask: len(ask.value),
                in_flight=in_flight,
            ),
        )

    async def close(self) -> None:
        await asyncio.gather(self.text.close(), self.music.close())

    @asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        """FastAPI's lifespan: the workers stop with the server."""
        yield
        await self.close()
