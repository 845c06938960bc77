"""What keeps the HTTP server healthy, private and observable: admission (body, slots, time), key, metrics."""

from __future__ import annotations

import asyncio
import hmac
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any

import numpy as np
from fastapi.responses import JSONResponse


class Metrics:
    """Request counters and recent latencies per route, for GET /metrics."""

    def __init__(self, window: int = 1000):
        self.lock = threading.Lock()
        self.started = time.time()
        self.counts: dict[str, dict[str, int]] = defaultdict(
            lambda: {"requests": 0, "errors": 0, "rejected": 0}
        )
        self.latencies: dict[str, deque] = defaultdict(lambda: deque(maxlen=window))

    def record(self, route: str, status: int, seconds: float) -> None:
        with self.lock:
            counts = self.counts[route]
            counts["requests"] += 1
            counts["rejected" if status == 429 else "errors"] += status >= 400
            self.latencies[route].append(seconds * 1000)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            routes = {}
            for route, counts in self.counts.items():
                ms = np.asarray(self.latencies[route])
                quantiles = np.percentile(ms, [50, 99]).round(3).tolist() if len(ms) else [None, None]
                routes[route] = {**counts, "latency_ms": dict(zip(("p50", "p99"), quantiles, strict=True))}
            return {"uptime_s": round(time.time() - self.started, 1), "routes": routes}


def route_of(path: str, routes: set[str]) -> str:
    """The metrics key of a request path: its route, with item ids folded together."""
    if path in routes:
        return path
    return "/items/{item_id}" if path.startswith("/items/") else "other"


class Slots:
    """Queries (POSTs) being answered, at most `limit`: a query takes one once its body has arrived."""

    def __init__(self, limit: int):
        self.limit = limit
        self.taken = 0

    def take(self) -> bool:
        if self.taken >= self.limit:
            return False
        self.taken += 1
        return True

    def give_back(self) -> None:
        self.taken -= 1


class BodyTooLarge(Exception):
    """A request body over the limit."""


def stages_of(scope: dict[str, Any]) -> dict[str, float]:
    """A request's stage durations (seconds), which Admission sends as its Server-Timing header."""
    return scope.setdefault("state", {}).setdefault("timings", {})


def reply(status: int, detail: str, **headers: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


class Admission:
    """ASGI middleware: what a request passes before and while it runs, in this order.

    1. Its whole body, within `body_timeout` (else 408) and `max_bytes` (else 413), declared or chunked,
       before it holds anything: a client trickling its body holds no slot.
    2. For a query (POST), a slot of `slots` (else 429).
    3. `request_timeout` from then on (else 503); a client that disconnects cancels its request. Both
       cancel the endpoint, so whatever it awaits (runtime.serve.batching) drops its inputs.
    Every answer is counted in `metrics` under `route(path)` and carries a Server-Timing header.
    """

    def __init__(
        self,
        app,
        *,
        slots: Slots,
        metrics: Metrics,
        route: Callable[[str], str],
        max_bytes: int,
        body_timeout: float,
        request_timeout: float,
    ):
        self.app = app
        self.slots = slots
        self.metrics = metrics
        self.route = route
        self.max_bytes = max_bytes
        self.body_timeout = body_timeout
        self.request_timeout = request_timeout

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        stages = stages_of(scope)
        status = [499]  # the client went away before an answer

        async def send_timed(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                timing = {**stages, "total": time.perf_counter() - started}
                header = ", ".join(f"{name};dur={took * 1000:.2f}" for name, took in timing.items())
                message = {
                    **message,
                    "headers": [*message.get("headers", []), (b"server-timing", header.encode())],
                }
            await send(message)

        try:
            await self._admit(scope, receive, send_timed, status)
        except Exception:
            status[0] = 500  # Starlette's error middleware, outside this one, answers it
            raise
        finally:
            self.metrics.record(self.route(scope["path"]), status[0], time.perf_counter() - started)

    async def _admit(self, scope, receive, send, status: list[int]) -> None:
        closing = {"connection": "close"}  # the rest of the body is not read
        try:
            body = await asyncio.wait_for(self._read_body(scope, receive), self.body_timeout)
        except BodyTooLarge:
            return await reply(413, f"request body over {self.max_bytes} bytes", **closing)(
                scope, receive, send
            )
        except asyncio.TimeoutError:
            detail = f"request body not received within {self.body_timeout:g} s: send it at once"
            return await reply(408, detail, **closing)(scope, receive, send)
        if body is None:
            return
        if scope["method"] != "POST":
            return await self._run(scope, body, receive, send, status)
        if not self.slots.take():
            return await reply(429, "server busy: retry shortly", **{"retry-after": "1"})(
                scope, receive, send
            )
        try:
            await self._run(scope, body, receive, send, status)
        finally:
            self.slots.give_back()

    async def _read_body(self, scope, receive) -> bytes | None:
        """The whole request body (None if the client left)."""
        if int(dict(scope["headers"]).get(b"content-length", 0)) > self.max_bytes:
            raise BodyTooLarge
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                raise BodyTooLarge
            if not message.get("more_body", False):
                return bytes(body)

    async def _run(self, scope, body: bytes, receive, send, status: list[int]) -> None:
        """The app on the body read, cancelled when the time is up or the client disconnects."""
        gone = asyncio.Event()
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def replay():
            if messages:
                return messages.pop()
            await gone.wait()
            return {"type": "http.disconnect"}

        async def watch() -> None:  # after the body, the server's next message is the disconnect
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        app = asyncio.ensure_future(self.app(scope, replay, send))
        watcher = asyncio.ensure_future(watch())
        try:
            done, _ = await asyncio.wait(
                {app, watcher}, timeout=self.request_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            watcher.cancel()
            if not app.done():
                app.cancel()
                await asyncio.gather(app, return_exceptions=True)
        if app in done:
            return app.result()  # the app's own errors go on to Starlette's error middleware
        if not gone.is_set() and status[0] == 499:
            detail = f"request took longer than {self.request_timeout:g} s"
            await reply(503, detail, **{"retry-after": "1"})(scope, replay, send)


class ApiKey:
    """ASGI middleware: 401 unless a request has the key (`Authorization: Bearer KEY` or `X-API-Key: KEY`).

    The comparison takes the same time whatever the key sent (hmac.compare_digest); `public(path)` paths pass.
    """

    def __init__(self, app, key: str, public: Callable[[str], bool]):
        self.app = app
        self.key = key.encode()
        self.public = public

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or self.public(scope["path"]):
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        bearer = headers.get(b"authorization", b"")
        given = headers.get(b"x-api-key") or (bearer[7:] if bearer[:7].lower() == b"bearer " else b"")
        if not hmac.compare_digest(given, self.key):
            refused = JSONResponse(
                {"detail": "missing or wrong API key: send the header `Authorization: Bearer KEY`"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
            return await refused(scope, receive, send)
        await self.app(scope, receive, send)
