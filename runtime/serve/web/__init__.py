"""The web page of `clamp serve`: the page at /, its files under /static, the label sets it offers, and the
API docs at /docs drawn with a vendored Swagger UI (no CDN: the docs work offline)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

from runtime.search.keys import label_sets

STATIC_DIR = Path(__file__).with_name("static")
DOCS_PATH = "/docs"


def add_web_page(app: FastAPI) -> None:
    """Serve the page for people (GET /), its files, GET /label-sets it reads, and the API docs (GET /docs).

    The app must be made with `docs_url=None, redoc_url=None`: FastAPI's own docs pages load Swagger UI
    and ReDoc from CDNs, so they are blank offline.
    """
    if app.docs_url or app.redoc_url:
        raise ValueError("make the app with FastAPI(docs_url=None, redoc_url=None): the page serves /docs")
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    @app.get(DOCS_PATH, include_in_schema=False)
    def docs() -> HTMLResponse:
        vendor = "static/vendor"  # relative, as the page's own links: works behind a path prefix too
        return get_swagger_ui_html(
            openapi_url="openapi.json",
            title=f"{app.title} · API docs",
            swagger_js_url=f"{vendor}/swagger-ui-bundle.js",
            swagger_css_url=f"{vendor}/swagger-ui.css",
            swagger_favicon_url=f"{vendor}/swagger-ui-favicon.png",
        )

    @app.get("/label-sets", summary="Built-in label sets for /classify: {name: {template, labels}}")
    def get_label_sets() -> dict:
        return label_sets()
