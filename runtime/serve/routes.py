"""The API's routes, by what they serve: queries (through the batching towers) and what the index holds.

Each group adds its routes to the app over a `Served`: the open index, its towers, and how answers show
their sources. `create_app` (runtime.serve.server) puts the groups, the guards and the web page together.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

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
from runtime.search.limits import ABC_CHARS
from runtime.search.live import LiveIndex
from runtime.serve.batching import Ask, Batcher, Search, Towers
from runtime.serve.errors import validation_details
from runtime.serve.guards import Metrics, Slots, stages_of
from runtime.serve.requests import (
    MAX_INPUTS,
    ClassifyRequest,
    EmbeddingsRequest,
    SearchRequest,
    SimilarRequest,
)

MAX_FORM_FIELDS = 16


@dataclass
class Served:
    """What every route shares: the live index, its encoding towers, the corpus root sources are shown under.

    A handler reads `index` once and uses that Index to its end: one generation per request.
    """

    live: LiveIndex
    towers: Towers
    _root: tuple[Index, str] | None = None

    @property
    def index(self) -> Index:
        return self.live.current

    def source_root(self) -> str:
        """The current generation's corpus root, read on first use (a damaged items.sqlite: a 503, not a
        crash at start) and again when a new generation is swapped in."""
        index = self.index
        if self._root is None or self._root[0] is not index:
            self._root = (index, index.items.source_root())
        return self._root[1]

    def public(self, rows: list[dict]) -> list[dict]:
        """Rows as the API shows them: `source` relative to the corpus root, never the server's own path."""
        root = self.source_root()
        return [relative_source(row, root) for row in rows]

    async def encoded(
        self, tower: Batcher, request: Request, values: list, search: Search | None = None
    ) -> list:
        """One result per value from the tower's batches: its vector, or its hits when `search` is given."""
        self.index.require_encoder()  # no model: 503 before queueing (every generation has the same model)
        return await tower.submit([Ask(value, search) for value in values], stages_of(request.scope))

    async def read_upload(self, request: Request) -> tuple[str, dict[str, str]]:
        """The ABC of a multipart request's `file` (MusicXML/MIDI converted), and its other fields."""
        form = await request.form(max_files=1, max_fields=MAX_FORM_FIELDS, max_part_size=ABC_CHARS)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise HTTPException(422, "multipart request needs a `file` field (.abc, .mxl or .mid)")
        fields = {k: v for k, v in form.items() if k != "file" and isinstance(v, str)}
        data = await upload.read()
        profile = self.index.require_encoder().profile
        return await run_in_threadpool(upload_abc, upload.filename or "upload.abc", data, profile), fields


def add_query_routes(app: FastAPI, served: Served) -> None:
    """POST /search, /similar, /convert, /classify, /v1/embeddings."""
    towers = served.towers

    @app.post("/search", summary="Text search: tunes whose music or metadata match a description")
    async def search(body: SearchRequest, request: Request) -> JSONResponse:
        """Hits say which side found them (`found_by`) and their `z`; `no_match_better_than_chance` is
        true when the best of them scores no higher than texts unrelated to music do on this index."""
        index = served.index
        mode = resolve_mode(index, body.mode)
        if mode == "keyword":  # no encoding: straight to the keyword table
            hits = await run_in_threadpool(
                index.search_text, body.text, body.k, mode=mode, **body.search_options()
            )
        else:
            ask = body.search(text=body.text, mode=mode)
            hits = (await served.encoded(towers.text, request, [body.text], ask))[0]
        return answer(
            {
                "query": body.text,
                "mode": mode,
                "no_match_better_than_chance": no_better_than_chance(hits),
                "results": served.public(hits_as_dicts(hits)),
            }
        )

    @app.post(
        "/similar",
        summary="Similar music: tunes closest to an ABC tune (JSON, an uploaded score, or an indexed id)",
        openapi_extra={
            "requestBody": upload_body(("k", "filter", "exact", "with_abc", "tune"), SimilarRequest)
        },
    )
    async def similar(request: Request) -> JSONResponse:
        body = await similar_request(served, request)
        index = served.index
        if body.id is not None:
            hits = await run_in_threadpool(
                index.similar_to, body.id, body.k, exclude_self=body.exclude_self, **body.search_options()
            )
            return answer({"query": body.id, "results": served.public(hits_as_dicts(hits))})
        if not body.abc:
            raise HTTPException(
                422, "give the query tune as `abc` (JSON), a `file` upload, or an indexed `id`"
            )
        abc, patches = await run_in_threadpool(read_tune, index, body.abc, body.tune)
        search = body.search(exclude_abc=abc if body.exclude_self else None)
        hits = (await served.encoded(towers.music, request, [patches], search))[0]
        return answer({"query": body.abc, "results": served.public(hits_as_dicts(hits))})

    @app.post(
        "/convert",
        summary="An uploaded score as the ABC the queries read (MusicXML and MIDI converted), with its tunes",
        openapi_extra={"requestBody": upload_body(())},
    )
    async def convert(request: Request) -> dict:
        abc, _ = await served.read_upload(request)
        await run_in_threadpool(require_music, abc, "the uploaded file")
        return {"abc": abc, "titles": [tune.meta.get("title") for tune in split_tunes(abc)]}

    @app.post("/classify", summary="Zero-shot classification of a tune (ABC or indexed id) among text labels")
    async def classify_tune(body: ClassifyRequest, request: Request) -> JSONResponse:
        if (body.labels is None) == (body.label_set is None):
            raise ValueError("give either `labels` or `label_set` (one of them)")
        if (body.abc is None) == (body.id is None):
            raise ValueError("give the tune as `abc` or as an indexed `id` (one of them)")
        index = served.index
        template, labels = label_set(body.label_set) if body.label_set else (DEFAULT_TEMPLATE, body.labels)
        labels, prompts = label_prompts(labels, body.template or template)
        if body.id is not None:  # the indexed item's stored vector: no music encoding
            music = run_in_threadpool(index.item_vector, body.id)
        else:
            _, patches = await run_in_threadpool(read_tune, index, body.abc, body.tune)
            music = served.encoded(towers.music, request, [patches])
        prompt_vectors, vectors = await asyncio.gather(served.encoded(towers.text, request, prompts), music)
        hits = rank_labels(labels, prompts, np.stack(prompt_vectors), vectors[0])
        return answer({"results": hits_as_dicts(hits, with_prob=True)})

    @app.post("/v1/embeddings", summary="Embeddings, OpenAI-shaped; modality text or abc")
    async def embeddings(body: EmbeddingsRequest, request: Request) -> JSONResponse:
        index = served.index
        inputs = [body.input] if isinstance(body.input, str) else body.input
        if not 1 <= len(inputs) <= MAX_INPUTS:
            raise ValueError(f"input must hold 1..{MAX_INPUTS} items, got {len(inputs)}")
        if body.modality == "text":
            vectors = await served.encoded(towers.text, request, inputs)
        else:
            patches = await run_in_threadpool(
                lambda: [patches_of(index, require_music(abc, f"input {i}")) for i, abc in enumerate(inputs)]
            )
            vectors = await served.encoded(towers.music, request, patches)
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


def add_index_routes(app: FastAPI, served: Served, metrics: Metrics, slots: Slots) -> None:
    """GET /v1/facets, /items/{id}, /health, /metrics."""

    @app.get("/v1/facets", summary="The commonest values of metadata fields, with counts (for dropdowns)")
    def facets(
        fields: str = Query(",".join(DEFAULT_FACET_FIELDS), description="Comma-separated filter fields."),
        filter: str | None = Query(None, description="Count only the items that pass this filter."),
        top: int = Query(DEFAULT_FACET_TOP, description="Values per field, commonest first."),
    ) -> dict:
        return facets_as_dict(served.index.facets(fields.split(","), filter or None, top))

    @app.get("/items/{item_id}", summary="An indexed tune's metadata and ABC")
    def item(item_id: str) -> dict:
        found = served.index.item(item_id)
        if found is None:
            raise UnknownItemError(f"no item with id {item_id!r}")
        return served.public([found])[0]

    @app.get("/health", summary="Liveness, and what is served")
    def health() -> dict:
        index, keys = served.index, ("model_name", "model_hash", "count", "dim")
        return {
            "status": "ok",
            **{k: index.manifest.get(k) for k in keys},
            "generation": index.manifest.get("generation", 0),
            "segments": len(index.segments),
            "model_loaded": index.encoder is not None,
            "index_error": served.live.last_error,
        }

    @app.get("/metrics", summary="Request counts and latencies per route")
    def get_metrics() -> dict:
        return {**metrics.snapshot(), "in_flight": slots.taken}


async def similar_request(served: Served, request: Request) -> SimilarRequest:
    """A /similar body: JSON, or a multipart upload whose other fields are the options."""
    try:
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            abc, fields = await served.read_upload(request)
            return SimilarRequest(**fields, abc=abc)
        return SimilarRequest.model_validate_json(await request.body())
    except ValidationError as err:
        raise HTTPException(422, validation_details(err)) from err


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
