"""What keeps the HTTP server healthy, private and observable: body limit, API key, per-route metrics."""

from __future__ import annotations

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


class BodyLimit:
    """ASGI middleware: 413 for bodies over max_bytes, whether declared (Content-Length) or chunked."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        too_large = JSONResponse({"detail": f"request body over {self.max_bytes} bytes"}, status_code=413)
        if int(headers.get(b"content-length", 0)) > self.max_bytes:
            return await too_large(scope, receive, send)
        if b"chunked" not in headers.get(b"transfer-encoding", b""):
            return await self.app(scope, receive, send)
        body, more = b"", True  # chunked: read it all (up to the limit), then hand it on
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                return await too_large(scope, receive, send)
            more = message.get("more_body", False)
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def replay():
            return messages.pop() if messages else await receive()

        await self.app(scope, replay, send)


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
