"""The web page of `clamp serve`: the page at /, its files under /static, and the label sets it offers."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from runtime.search.keys import label_sets

STATIC_DIR = Path(__file__).with_name("static")


def add_web_page(app: FastAPI) -> None:
    """Serve the page for people (GET /) and its files on the JSON API app, plus GET /label-sets it reads."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    @app.get("/label-sets", summary="Built-in label sets for /classify: {name: {template, labels}}")
    def get_label_sets() -> dict:
        return label_sets()
