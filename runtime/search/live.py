"""An index dir followed while it is updated: each request takes the newest whole generation.

`clamp index build` swaps a new generation in by replacing manifest.json (or the whole dir); a
LiveIndex notices the change (polling the manifest's inode, mtime and size), opens the new generation
beside the old one, sharing the segments both list (runtime.search.segments), and swaps it in with one
assignment. A request reads `current` once and keeps that Index to its end, so it sees the old
generation or the new one, never a mix; the old Index is freed when the last request holding it ends
(its files may be gone by then: it holds them open).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from runtime.search.generation import manifest_signature
from runtime.search.index import Index

log = logging.getLogger(__name__)


class LiveIndex:
    """The current generation of an index dir, refreshed every `poll_s` seconds while `watching`."""

    def __init__(self, index: Index, poll_s: float | None = None):
        self.current = index
        self.poll_s = poll_s
        self.swaps = 0
        self.last_error: str | None = None
        self._signature = manifest_signature(index.directory)

    def refresh(self) -> bool:
        """Swap in the dir's newest generation if its manifest changed; whether it did.

        A generation that cannot be opened (damaged, another model) is logged and skipped: the current
        one keeps serving until the next change.
        """
        old = self.current
        signature = manifest_signature(old.directory)
        if signature is None or signature == self._signature:
            return False
        self._signature = signature
        try:
            new = Index.open(old.directory, encoder=old.encoder, ef=old.ef, reuse=old.segments)
        except (ValueError, OSError) as err:
            self.last_error = str(err)
            log.error(
                "index %s changed but cannot be opened, still serving the previous one: %s",
                old.directory,
                err,
            )
            return False
        self.current, self.last_error = new, None
        self.swaps += 1
        log.info(
            "index %s: now generation %s (%d tunes)",
            new.directory,
            new.manifest.get("generation", 0),
            len(new),
        )
        return True

    @asynccontextmanager
    async def watching(self) -> AsyncIterator[None]:
        """Refresh in a worker thread every poll_s seconds for the block (not at all without poll_s)."""
        task = asyncio.create_task(self._watch()) if self.poll_s else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            await asyncio.to_thread(self.refresh)
