"""`clamp serve`: the query kinds as a JSON HTTP API (FastAPI; OpenAPI docs at /docs). GET /: the web page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import click
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from runtime.cli import InRange, precision_option
from runtime.search.index import Index
from runtime.search.limits import CONCURRENCY, PORT, TIMEOUT_S
from runtime.search.live import LiveIndex
from runtime.serve.batching import BatchSettings, Towers
from runtime.serve.errors import install_error_handlers
from runtime.serve.guards import Admission, ApiKey, Metrics, Slots, route_of
from runtime.serve.routes import Served, add_index_routes, add_query_routes
from runtime.serve.web import add_web_page

MAX_BODY_BYTES = 2 << 20
REQUEST_TIMEOUT_S = 30.0
BODY_TIMEOUT_S = 10.0
MAX_CONCURRENCY = 64
RELOAD_S = 1.0
# Served without the API key.
PUBLIC_PATHS = ("/health", "/")


def create_app(
    index: Index | LiveIndex,
    max_concurrency: int = MAX_CONCURRENCY,
    max_body_bytes: int = MAX_BODY_BYTES,
    *,
    api_key: str | None = None,
    cors_origins: tuple[str, ...] = (),
    request_timeout: float = REQUEST_TIMEOUT_S,
    body_timeout: float = BODY_TIMEOUT_S,
    batching: BatchSettings | None = None,
) -> FastAPI:
    """The HTTP API over an open index (and its model), encoding in batches (runtime.serve.batching).

    A LiveIndex with a poll interval is followed while the server runs: updates of its dir are served
    from the request after they are swapped in (runtime.search.live); a plain Index is served as it is.

    Guards, outermost first: CORS (off unless origins are given), the API key (when one is given), then
    admission (runtime.serve.guards.Admission): the body (408, 413), a slot (429), the time limit (503).
    """
    slots, metrics = Slots(max_concurrency), Metrics()
    live = index if isinstance(index, LiveIndex) else LiveIndex(index)
    towers = Towers.of(lambda: live.current, batching or BatchSettings(), in_flight=lambda: slots.taken)

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        async with live.watching(), towers.lifespan(app):
            yield

    app = FastAPI(
        title="clamp-index",
        summary="Cross-modal symbolic music retrieval with CLaMP.",
        docs_url=None,  # add_web_page serves /docs from vendored files; FastAPI's pages load CDNs
        redoc_url=None,
        lifespan=lifespan,
    )
    app.add_middleware(
        Admission,
        slots=slots,
        metrics=metrics,
        route=lambda path: route_of(path, app.state.routes),
        max_bytes=max_body_bytes,
        body_timeout=body_timeout,
        request_timeout=request_timeout,
    )
    install_error_handlers(app)
    served = Served(live, towers)
    add_query_routes(app, served)
    add_index_routes(app, served, metrics, slots)
    add_web_page(app)
    app.state.routes = {route.path for route in app.routes}
    if api_key:
        app.add_middleware(ApiKey, key=api_key, public=is_public)
    if cors_origins:  # outside the key check: browsers send preflight requests without credentials
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
        )
    return app


def is_public(path: str) -> bool:
    """Paths served without the API key."""
    return path in PUBLIC_PATHS or path.startswith("/static/")


@click.command()
@click.option(
    "--index", "index_dir", required=True, type=click.Path(exists=True, file_okay=False), help="Index dir."
)
@click.option(
    "--model",
    "model_dir",
    type=click.Path(file_okay=False),
    help="Model dir [default: the index's model, else $CLAMP_MODEL, else build/model].",
)
@precision_option(
    "Encoder graphs. auto: fp16 on CUDA; on CPU int8 per tower where the CPU has VNNI/AMX and the "
    "export's int8 gate passed, else fp32. int8: static scales, vectors independent of batch-mates."
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=InRange(PORT), default=8000, show_default=True)
@click.option(
    "--max-concurrency",
    type=InRange(CONCURRENCY),
    default=MAX_CONCURRENCY,
    show_default=True,
    help="Queries being answered at once (counted once their body has arrived); more get HTTP 429.",
)
@click.option(
    "--max-batch",
    default=BatchSettings.max_batch,
    type=click.IntRange(min=1),
    show_default=True,
    help="Most queries encoded as one batch; 1: each query's inputs alone, as before batching.",
)
@click.option(
    "--batch-wait-ms",
    default=BatchSettings.wait_ms,
    type=click.FloatRange(min=0),
    show_default=True,
    help="Most milliseconds an idle encoder waits for batch-mates while other queries are in flight.",
)
@click.option(
    "--text-cache",
    default=BatchSettings.text_cache,
    type=click.IntRange(min=0),
    show_default=True,
    help="Vectors of the latest distinct query and label texts kept, so repeats skip the encoder; 0: none.",
)
@click.option(
    "--api-key",
    envvar="CLAMP_API_KEY",
    default=None,
    help="Require `Authorization: Bearer KEY` on every query [default: $CLAMP_API_KEY, which `ps` cannot "
    "show as it shows command lines; else no key].",
)
@click.option(
    "--cors-origin",
    "cors_origins",
    multiple=True,
    help="Let web pages from this origin (e.g. https://example.org) call the API; repeatable [default: none]",
)
@click.option(
    "--request-timeout",
    type=InRange(TIMEOUT_S, float),
    default=REQUEST_TIMEOUT_S,
    show_default=True,
    help="Seconds a query may take once its body has arrived; then HTTP 503 (and its inputs are dropped).",
)
@click.option(
    "--body-timeout",
    type=InRange(TIMEOUT_S, float),
    default=BODY_TIMEOUT_S,
    show_default=True,
    help="Seconds a client may take to send its request body; then HTTP 408.",
)
@click.option(
    "--reload-interval",
    type=click.FloatRange(min=0),
    default=RELOAD_S,
    show_default=True,
    help="Seconds between checks of the index dir for a new generation (`clamp index build` updating "
    "it), swapped in without a restart or a failed request; 0: serve the index as it was at start.",
)
def serve(
    index_dir: str,
    model_dir: str | None,
    precision: str,
    host: str,
    port: int,
    max_concurrency: int,
    max_batch: int,
    batch_wait_ms: float,
    text_cache: int,
    api_key: str | None,
    cors_origins: tuple[str, ...],
    request_timeout: float,
    body_timeout: float,
    reload_interval: float,
) -> None:
    """Serve an index over HTTP (JSON). Interactive API docs at http://HOST:PORT/docs.

    \b
    POST /search          {"text": "a lively jig", "k": 10, "filter": "meter = 6/8 and key in (D, G)",
                           "mode": "hybrid"}
    POST /similar         {"abc": "X:1 ..."} or {"id": "..."} or a multipart .abc `file`
    POST /classify        {"abc": "X:1 ..." | "id": "...", "labels": ["jig", "reel"] | "label_set": "meter"}
    POST /v1/embeddings   {"input": ["a jig"], "modality": "text"}   (OpenAI-shaped; modality text|abc)
    GET  /v1/facets?fields=key,meter&filter=rhythm%20=%20jig   ({"facets": {"key": [{"value", "count"}...]}})
    POST /convert         a multipart score `file` -> {"abc": the ABC the model reads, "titles": [...]}
    GET  /items/{id}  /health  /metrics
    """
    import uvicorn

    try:  # a server runs for long: check every byte of the index and model files once, at start
        index = Index.open(index_dir, model_dir, full_check=True, precision=precision)
    except (ValueError, OSError) as err:
        raise click.ClickException(str(err)) from err
    app = create_app(
        LiveIndex(index, reload_interval or None),
        max_concurrency,
        api_key=api_key,
        cors_origins=cors_origins,
        request_timeout=request_timeout,
        body_timeout=body_timeout,
        batching=BatchSettings(max_batch=max_batch, wait_ms=batch_wait_ms, text_cache=text_cache),
    )
    uvicorn.run(app, host=host, port=port)
