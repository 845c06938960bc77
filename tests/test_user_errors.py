"""Errors a user can act on: a damaged items.sqlite, bad numbers, huge inputs, bugs. One line in the CLI (no
traceback), JSON with a short message over HTTP (no echo of a huge input, no text/plain 500).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from query_corpus import clamp
from serving import serving

from runtime.music.formats import ConverterMissing
from runtime.search.errors import DamagedIndexError, QueryTooComplexError
from runtime.search.filters import And, Condition
from runtime.search.index import Index
from runtime.search.limits import EF, EXCERPT_CHARS, TOP_N, TUNE, K
from runtime.serve.server import create_app

PAGE = 4096  # SQLite's default page size


@pytest.fixture(scope="module")
def client(built) -> Iterator[httpx.Client]:
    with serving(create_app(Index.open(built.index_dir))) as client:
        yield client


def damaged_copy(index_dir: Path, to: Path, start: float, end: float) -> Path:
    """A copy of the index whose items.sqlite has whole pages zeroed between two fractions of its length.

    The size stays the same, so only a full (sha256) check or SQLite itself can tell.
    """
    copy = Path(shutil.copytree(index_dir, to))
    items = copy / "items.sqlite"
    data = bytearray(items.read_bytes())
    first, last = (int(len(data) * f) // PAGE * PAGE for f in (start, end))
    data[first:last] = bytes(last - first)
    items.write_bytes(bytes(data))
    return copy


# --- a damaged items.sqlite ---------------------------------------------------------------------------------


def test_a_damaged_database_header_is_refused_at_open(built, tmp_path):
    index_dir = damaged_copy(built.index_dir, tmp_path / "index", 0, 0.05)
    with pytest.raises(
        DamagedIndexError, match=r"items.sqlite in .* is damaged \(sqlite: .*clamp index build"
    ):
        Index.open(index_dir)
    out = clamp("search", "a jig", "--index", index_dir, ok=False)
    assert "items.sqlite in" in out and "is damaged" in out and "Traceback" not in out
    assert len(out.strip().splitlines()) == 1
    served = clamp("serve", "--index", index_dir, "--port", 1, ok=False)  # refused before it listens
    assert "items.sqlite" in served and "clamp index build" in served


def test_damage_found_mid_query_is_one_line_in_the_cli_and_json_503_over_http(built, tmp_path):
    index_dir = damaged_copy(built.index_dir, tmp_path / "index", 0.3, 0.7)
    index = Index.open(index_dir)  # the header and first page are intact: the damage shows mid-query
    with pytest.raises(DamagedIndexError, match="malformed"):
        index.search_text("a jig", k=len(index), exact=True)
    args = ("search", "a jig", "--index", index_dir, "-k", len(index), "--exact")
    out = clamp(*args, ok=False)
    assert "is damaged (sqlite: database disk image is malformed)" in out and "Traceback" not in out
    with serving(create_app(index)) as client:
        answer = client.post("/search", json={"text": "a jig", "k": len(index), "exact": True})
    assert answer.status_code == 503 and answer.headers["content-type"] == "application/json"
    assert "is damaged" in answer.json()["detail"] and "clamp index build" in answer.json()["detail"]


def test_a_filter_beyond_sqlite_s_limits_is_a_clear_error_not_damage(built):
    index = Index.open(built.index_dir)
    terms = And((Condition("title", "contains", "a"),) * 1100)  # SQLite: "Expression tree is too large"
    with pytest.raises(QueryTooComplexError, match="too complex.*use fewer filter terms"):
        index.search_vectors(index.vectors[0], k=3, filter=terms, exact=True)


# --- every HTTP error is JSON -------------------------------------------------------------------------


def test_an_unexpected_error_is_a_json_500_without_details(built):
    index = Index.open(built.index_dir)
    raised: list[Exception] = []

    def broken(*args, **kwargs):
        raise raised[-1]

    index.search_text = broken  # what POST /search runs
    with serving(create_app(index)) as client:
        raised.append(RuntimeError("secret internals"))
        answer = client.post("/search", json={"text": "a jig"})
        assert answer.status_code == 500 and answer.headers["content-type"] == "application/json"
        assert "internal server error (RuntimeError)" in answer.json()["detail"]
        assert "secret" not in answer.text
        raised.append(ConverterMissing("MusicXML needs abctoolkit: pip install 'clamp-index[formats]'"))
        # The same client again: the 500 said `Connection: close`, so no reset of a dead connection.
        missing = client.post("/search", json={"text": "a jig"})  # the operator's to fix: 503, saying how
        assert missing.status_code == 503 and "pip install" in missing.json()["detail"]


def test_unknown_routes_and_methods_are_json(client):
    for answer in (client.get("/nope"), client.get("/search")):
        assert answer.status_code in (404, 405) and isinstance(answer.json()["detail"], str)


def test_a_huge_text_gets_a_422_quoting_only_an_excerpt(client):
    text = "a jig " * 333_333  # 2 MB: under the body limit, over the text limit
    answer = client.post("/search", json={"text": text})
    assert answer.status_code == 422 and len(answer.content) < 2_000
    [error] = answer.json()["detail"]
    assert error["loc"] == ["body", "text"] and "at most 4096 characters" in error["msg"]
    assert error["input"] == text[:EXCERPT_CHARS] + f"… ({len(text)} characters in all)"


def test_multipart_fields_are_checked_and_quoted_the_same_way(client, built):
    path = built.abc_dir / "oneills1850-0721-0730.abc"
    answer = client.post("/similar", files={"file": (path.name, path.read_bytes())}, data={"k": "-1"})
    assert answer.status_code == 422 and answer.json()["detail"][0]["msg"] == K.message(-1)
    huge = client.post("/similar", json={"abc": path.read_text(), "filter": "title is " + "x" * 100_000})
    assert huge.status_code == 400 and len(huge.content) < 3_000


# --- numbers are checked once, the same way in the CLI, over HTTP and in Python -----------------------------


@pytest.mark.parametrize("k", [-1, 0, 10**9])
def test_k_out_of_range_is_refused_alike_everywhere(built, client, k):
    message = K.message(k)
    for extra in ([], ["--exact"]):
        out = clamp("search", "a jig", "--index", built.index_dir, "-k", k, *extra, ok=False)
        assert message in out and "Traceback" not in out
    assert message in clamp("similar", built.files[0], "--index", built.index_dir, "-k", k, ok=False)
    for route, body in (("/search", {"text": "a jig"}), ("/similar", {"abc": built.files[0].read_text()})):
        answer = client.post(route, json={**body, "k": k})
        assert answer.status_code == 422 and answer.json()["detail"][0]["msg"] == message
    index = Index.open(built.index_dir)
    for exact in (False, True):
        with pytest.raises(ValueError, match=re.escape(message)):
            index.search_vectors(np.asarray(index.vectors[0]), k=k, exact=exact)


def test_every_numeric_option_has_a_range(built, client, tmp_path):
    tune = built.files[0]
    assert TUNE.message(-1) in clamp("similar", tune, "--tune", -1, "--index", built.index_dir, ok=False)
    assert TUNE.message(-1) in clamp("classify", tune, "--tune", -1, "--labels", "a,b", ok=False)
    assert TOP_N.message(-2) in clamp("query", tune, "--keys", tune, "--top-n", -2, ok=False)
    answer = client.post("/similar", json={"abc": tune.read_text(), "tune": -1})
    assert answer.json()["detail"][0]["msg"] == TUNE.message(-1)
    assert "'ten' is not a valid int" in clamp(
        "search", "x", "--index", built.index_dir, "-k", "ten", ok=False
    )
    for option, value in (("--port", 0), ("--max-concurrency", 0), ("--request-timeout", 0)):
        assert "must be" in clamp("serve", "--index", built.index_dir, option, value, ok=False)
    for option in ("--m", "--ef-construction", "--threads"):
        out = clamp("index", "build", built.shards_dir, "--out", tmp_path / "index", option, 0, ok=False)
        assert "must be" in out
    with pytest.raises(ValueError, match=re.escape(EF.message(0))):
        Index.open(built.index_dir, ef=0)
    schema = client.get("/openapi.json").json()["components"]["schemas"]["SearchRequest"]
    assert schema["properties"]["k"]["minimum"] == 1 and schema["properties"]["k"]["maximum"] == K.high


def test_an_empty_text_query_is_refused_in_the_cli_as_over_http(built, client):
    for text in ("", "   "):
        out = clamp("search", text, "--index", built.index_dir, ok=False)
        assert "the text query is empty" in out and "Traceback" not in out
        answer = client.post("/search", json={"text": text})
        assert answer.status_code == 422 and "the text query is empty" in answer.json()["detail"][0]["msg"]
    keys = built.abc_dir
    out = clamp("query", " ", "--query-modal", "text", "--key-modal", "music", "--keys", keys, ok=False)
    assert "the text query is empty" in out
    assert json.loads(clamp("index", "info", built.index_dir))["count"] > 0  # the index was not touched
