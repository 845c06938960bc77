"""`clamp serve`: the query kinds as a JSON HTTP API (FastAPI; OpenAPI docs at /docs). GET /: the web page."""

from __future__ import annotations

import asyncio
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import click
import numpy as np
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from runtime.cli import InRange, precision_option
from runtime.music.abc import split_tunes
from runtime.music.validate import require_music
from runtime.search.calibration import no_better_than_chance
from runtime.search.hits import facets_as_dict, hits_as_dicts
from runtime.search.hybrid import resolve_mode
from runtime.search.index import DEFAULT_FACET_FIELDS, DEFAULT_FACET_TOP, Index, UnknownItemError
from runtime.search.keys import (
    DEFAULT_TEMPLATE,
    label_prompts,
    label_set,
    rank_labels,
    read_music,
    upload_abc,
)
from runtime.search.limits import (
    ABC_CHARS,
    CONCURRENCY,
    NAME_CHARS,
    PORT,
    TEXT_CHARS,
    TIMEOUT_S,
    TUNE,
    K,
)
from runtime.serve.batching import Ask, Batcher, BatchSettings, Search, Towers
from runtime.serve.errors import QueryText, install_error_handlers, limited, validation_details
from runtime.serve.guards import Admission, ApiKey, Metrics, Slots, route_of, stages_of
from runtime.serve.web import add_web_page

MAX_BODY_BYTES = 2 << 20
MAX_INPUTS = 256
REQUEST_TIMEOUT_S = 30.0
BODY_TIMEOUT_S = 10.0
MAX_CONCURRENCY = 64
MAX_FORM_FIELDS = 16
# Open without the API key: liveness, and the web page's files (no data in them; its queries need the key).
PUBLIC_PATHS = ("/health", "/")
ResultCount = limited(K)
TuneIndex = limited(TUNE)


class QueryOptions(BaseModel):
    k: ResultCount = Field(10, description="Number of results.")
    filter: str | None = Field(
        None, description="Metadata filter, e.g. (meter = 6/8 or meter = 9/8) and key in (Em, Am)."
    )
    exact: bool = Field(False, description="Score every item instead of walking the HNSW graph.")
    with_abc: bool = Field(False, description="Include each result's ABC.")

    def search_options(self) -> dict[str, Any]:
        return {"filter": self.filter, "exact": self.exact, "with_abc": self.with_abc}

    def search(self, exclude_abc: str | None = None, text: str | None = None, mode: str = "vector") -> Search:
        return Search(self.k, self.search_options(), exclude_abc, text, mode)


class SearchRequest(QueryOptions):
    text: QueryText = Field(max_length=TEXT_CHARS, description="What the music is like.")
    mode: Literal["hybrid", "vector", "keyword"] | None = Field(
        None,
        description="vector: the model; keyword: bm25 over titles, composers, places, genres; hybrid: both "
        "[default: hybrid where the index has its keyword table, else vector].",
    )


class SimilarRequest(QueryOptions):
    abc: str | None = Field(None, max_length=ABC_CHARS, description="ABC text of the query tune(s).")
    tune: TuneIndex = Field(0, description="Which tune of a multi-tune ABC text.")
    id: str | None = Field(None, max_length=NAME_CHARS, description="Or: the id of an indexed tune.")
    exclude_self: bool = Field(True, description="Leave out the query tune itself (its id, or its ABC).")


class ClassifyRequest(BaseModel):
    abc: str | None = Field(None, min_length=1, max_length=ABC_CHARS, description="ABC of the tune.")
    id: str | None = Field(None, max_length=NAME_CHARS, description="Or: the id of an indexed tune.")
    tune: TuneIndex = Field(0, description="Which tune of a multi-tune ABC text.")
    labels: list[Annotated[str, Field(max_length=NAME_CHARS)]] | None = Field(
        None, max_length=MAX_INPUTS, description="Candidate labels."
    )
    label_set: str | None = Field(
        None, max_length=NAME_CHARS, description="Or: a built-in label set, e.g. tune-type."
    )
    template: str | None = Field(
        None,
        max_length=NAME_CHARS,
        description=f'Prompt with {{}} for the label [default: "{DEFAULT_TEMPLATE}"].',
    )


class EmbeddingsRequest(BaseModel):
    input: str | list[str] = Field(description="One text/ABC or a list of them.")
    modality: Literal["text", "abc"] = "text"
    model: str | None = Field(None, description="Ignored: the served model answers.")


def create_app(
    index: Index,
    max_concurrency: int = MAX_CONCURRENCY,
    max_body_bytes: int = MAX_BODY_BYTES,
    *,
    api_key: str | None = None,
    cors_origins: tuple[str, ...] = (),
    request_timeout: float = REQUEST_TIMEOUT_S,
    body_timeout: float = BODY_TIMEOUT_S,
    batching: BatchSettings | None = None,
) -> FastAPI:
    """The HTTP API over one open index (and its model), encoding in batches (runtime.serve.batching).

    Guards, outermost first: CORS (off unless origins are given), the API key (when one is given), then
    admission (runtime.serve.guards.Admission): the body (408, 413), a slot (429), the time limit (503).
    """
    slots = Slots(max_concurrency)
    towers = Towers.of(index, batching or BatchSettings(), in_flight=lambda: slots.taken)
    app = FastAPI(
        title="clamp-index",
        summary="Cross-modal symbolic music retrieval with CLaMP.",
        docs_url=None,  # add_web_page serves /docs from vendored files; FastAPI's pages load CDNs
        redoc_url=None,
        lifespan=towers.lifespan,
    )
    metrics = Metrics()
    app.add_middleware(
        Admission,
        slots=slots,
        metrics=metrics,
        route=lambda path: route_of(path, app.state.routes),
        max_bytes=max_body_bytes,
        body_timeout=body_timeout,
        request_timeout=request_timeout,
    )
    source_root = cache(index.items.source_root)  # read on first use: damage then answers a 503, not a crash

    def public(rows: list[dict]) -> list[dict]:
        """Rows as the API shows them: `source` relative to the corpus root, never the server's own path."""
        return [relative_source(row, source_root()) for row in rows]

    install_error_handlers(app)

    async def encoded(tower: Batcher, request: Request, values: list, search: Search | None = None) -> list:
        """One result per value from the tower's batches: its vector, or its hits when `search` is given."""
        index.require_encoder()  # no model: 503 before queueing
        return await tower.submit([Ask(value, search) for value in values], stages_of(request.scope))

    @app.post("/search", summary="Text search: tunes whose music or metadata match a description")
    async def search(body: SearchRequest, request: Request) -> JSONResponse:
        """Hits say which side found them (`found_by`) and their `z`; `no_match_better_than_chance` is
        true when the best of them scores no higher than texts unrelated to music do on this index."""
        mode = resolve_mode(index, body.mode)
        if mode == "keyword":  # no encoding: straight to the keyword table
            hits = await run_in_threadpool(
                index.search_text, body.text, body.k, mode=mode, **body.search_options()
            )
        else:
            hits = (await encoded(towers.text, request, [body.text], body.search(text=body.text, mode=mode)))[
                0
            ]
        return answer(
            {
                "query": body.text,
                "mode": mode,
                "no_match_better_than_chance": no_better_than_chance(hits),
                "results": public(hits_as_dicts(hits)),
            }
        )

    similar_body = upload_body(("k", "filter", "exact", "with_abc", "tune"), SimilarRequest)

    @app.post(
        "/similar",
        summary="Similar music: tunes closest to an ABC tune (JSON, an uploaded score, or an indexed id)",
        openapi_extra={"requestBody": similar_body},
    )
    async def similar(request: Request) -> JSONResponse:
        body = await similar_request(request)
        if body.id is not None:
            hits = await run_in_threadpool(
                index.similar_to, body.id, body.k, exclude_self=body.exclude_self, **body.search_options()
            )
            return answer({"query": body.id, "results": public(hits_as_dicts(hits))})
        if not body.abc:
            raise HTTPException(
                422, "give the query tune as `abc` (JSON), a `file` upload, or an indexed `id`"
            )
        abc, patches = await run_in_threadpool(read_tune, index, body.abc, body.tune)
        search = body.search(exclude_abc=abc if body.exclude_self else None)
        hits = (await encoded(towers.music, request, [patches], search))[0]
        return answer({"query": body.abc, "results": public(hits_as_dicts(hits))})

    async def similar_request(request: Request) -> SimilarRequest:
        try:
            if request.headers.get("content-type", "").startswith("multipart/form-data"):
                abc, fields = await read_upload(request)
                return SimilarRequest(**fields, abc=abc)
            return SimilarRequest.model_validate_json(await request.body())
        except ValidationError as err:
            raise HTTPException(422, validation_details(err)) from err

    async def read_upload(request: Request) -> tuple[str, dict[str, str]]:
        """The ABC of a multipart request's `file` (MusicXML/MIDI converted), and its other fields."""
        form = await request.form(max_files=1, max_fields=MAX_FORM_FIELDS, max_part_size=ABC_CHARS)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise HTTPException(422, "multipart request needs a `file` field (.abc, .mxl or .mid)")
        fields = {k: v for k, v in form.items() if k != "file" and isinstance(v, str)}
        data = await upload.read()
        profile = index.require_encoder().profile
        return await run_in_threadpool(upload_abc, upload.filename or "upload.abc", data, profile), fields

    @app.post(
        "/convert",
        summary="An uploaded score as the ABC the queries read (MusicXML and MIDI converted), with its tunes",
        openapi_extra={"requestBody": upload_body(())},
    )
    async def convert(request: Request) -> dict:
        abc, _ = await read_upload(request)
        await run_in_threadpool(require_music, abc, "the uploaded file")
        return {"abc": abc, "titles": [tune.meta.get("title") for tune in split_tunes(abc)]}

    @app.post("/classify", summary="Zero-shot classification of a tune (ABC or indexed id) among text labels")
    async def classify_tune(body: ClassifyRequest, request: Request) -> JSONResponse:
        if (body.labels is None) == (body.label_set is None):
            raise ValueError("give either `labels` or `label_set` (one of them)")
        if (body.abc is None) == (body.id is None):
            raise ValueError("give the tune as `abc` or as an indexed `id` (one of them)")
        template, labels = label_set(body.label_set) if body.label_set else (DEFAULT_TEMPLATE, body.labels)
        labels, prompts = label_prompts(labels, body.template or template)
        if body.id is not None:  # the indexed item's stored vector: no music encoding
            music = run_in_threadpool(index.item_vector, body.id)
        else:
            _, patches = await run_in_threadpool(read_tune, index, body.abc, body.tune)
            music = encoded(towers.music, request, [patches])
        prompt_vectors, vectors = await asyncio.gather(encoded(towers.text, request, prompts), music)
        hits = rank_labels(labels, prompts, np.stack(prompt_vectors), vectors[0])
        return answer({"results": hits_as_dicts(hits, with_prob=True)})

    @app.post("/v1/embeddings", summary="Embeddings, OpenAI-shaped; modality text or abc")
    async def embeddings(body: EmbeddingsRequest, request: Request) -> JSONResponse:
        inputs = [body.input] if isinstance(body.input, str) else body.input
        if not 1 <= len(inputs) <= MAX_INPUTS:
            raise ValueError(f"input must hold 1..{MAX_INPUTS} items, got {len(inputs)}")
        if body.modality == "text":
            vectors = await encoded(towers.text, request, inputs)
        else:
            patches = await run_in_threadpool(
                lambda: [patches_of(index, require_music(abc, f"input {i}")) for i, abc in enumerate(inputs)]
            )
            vectors = await encoded(towers.music, request, patches)
        return answer(
            {
                "object": "list",
                "data": [
                    {"object": "embedding", "index": i, "embedding": v.tolist()}
                    for i, v in enumerate(vectors)
                ],
                "model": index.manifest.get("model_name") or index.manifest["model_hash"],
                "usage": {"prompt_tokens": 0, "total_tokens": 0},
            }
        )

    @app.get("/v1/facets", summary="The commonest values of metadata fields, with counts (for dropdowns)")
    def facets(
        fields: str = Query(",".join(DEFAULT_FACET_FIELDS), description="Comma-separated filter fields."),
        filter: str | None = Query(None, description="Count only the items that pass this filter."),
        top: int = Query(DEFAULT_FACET_TOP, description="Values per field, commonest first."),
    ) -> dict:
        return facets_as_dict(index.facets(fields.split(","), filter or None, top))

    @app.get("/items/{item_id}", summary="An indexed tune's metadata and ABC")
    def item(item_id: str) -> dict:
        found = index.item(item_id)
        if found is None:
            raise UnknownItemError(f"no item with id {item_id!r}")
        return public([found])[0]

    @app.get("/health", summary="Liveness, and what is served")
    def health() -> dict:
        keys = ("model_name", "model_hash", "count", "dim")
        return {
            "status": "ok",
            **{k: index.manifest.get(k) for k in keys},
            "model_loaded": index.encoder is not None,
        }

    @app.get("/metrics", summary="Request counts and latencies per route")
    def get_metrics() -> dict:
        return {**metrics.snapshot(), "in_flight": slots.taken}

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


def answer(content: dict[str, Any]) -> JSONResponse:
    """A query's JSON answer as it is: FastAPI's own encoding (jsonable_encoder) costs ~20x json.dumps on
    ten hits, ~1 ms of the event loop for each query, which under load answers queries one at a time."""
    return JSONResponse(content)


def patches_of(index: Index, abc: str) -> np.ndarray:
    """Patches of one ABC tune as the music tower takes them: the model dir's preprocessing (as embed_abc)."""
    encoder = index.require_encoder()
    return encoder.profile.abc_patches(abc, encoder.max_patches)


def read_tune(index: Index, text: str, tune: int) -> tuple[str, np.ndarray]:
    """Tune `tune` of an ABC text, and its bar patches."""
    abc = read_music(text + "\n", tune)  # the newline marks it as ABC text, not a path
    return abc, patches_of(index, abc)


def upload_body(fields: tuple[str, ...], json_model: type[BaseModel] | None = None) -> dict:
    """The OpenAPI body of a route reading a multipart score `file` (plus string `fields`, or JSON)."""
    properties = {
        "file": {"type": "string", "format": "binary", "description": "a score"},
        **{name: {"type": "string"} for name in fields},
    }
    content = {
        "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": properties}}
    }
    if json_model is not None:
        content = {"application/json": {"schema": json_model.model_json_schema()}, **content}
    return {"content": content}


def relative_source(row: dict, root: str) -> dict:
    """The row with its `source` path relative to `root` (a file outside it: its name only)."""
    source = row.get("source")
    if not source:
        return row
    relative = source[len(root) :] if source.startswith(root) else Path(source).name
    return {**row, "source": relative}


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
    "Encoder graphs. auto: fp16 on CUDA, fp32 on CPU. int8: ~1.6x faster text queries on CPU; a "
    "text's vector then varies ~1e-4 in cosine with its batch-mates (zero-shot prompts)."
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
def serve(
    index_dir: str,
    model_dir: str | None,
    precision: str,
    host: str,
    port: int,
    max_concurrency: int,
    max_batch: int,
    batch_wait_ms: float,
    api_key: str | None,
    cors_origins: tuple[str, ...],
    request_timeout: float,
    body_timeout: float,
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
        index,
        max_concurrency,
        api_key=api_key,
        cors_origins=cors_origins,
        request_timeout=request_timeout,
        body_timeout=body_timeout,
        batching=BatchSettings(max_batch=max_batch, wait_ms=batch_wait_ms),
    )
    uvicorn.run(app, host=host, port=port)
