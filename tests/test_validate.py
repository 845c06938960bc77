"""One rule for "this is not ABC music" (runtime.music.validate), met at every entry: embed, CLI and HTTP.

A hostile score (over the converter's element budget) is refused at the same entries: error row, 413, exit 1.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from query_corpus import clamp
from serving import serving

from indexer.reader import Failure, TuneRecord, read_inputs
from indexer.shards import iter_shard_batches, read_errors
from runtime.music.validate import has_sure_bar, music_problem, n_bar_patches
from runtime.search.index import Index
from runtime.serve.server import create_app

JIG = "X:1\nT:The Kesh\nR:jig\nM:6/8\nK:G\n|:GAG GAB|ABA ABd:|\n"
LS = Path("/bin/ls")
EXECUTABLE = LS.read_bytes()[:200_000] if LS.is_file() else b"\x7fELF\x02\x01\x00" * 30_000
NO_BARS = "X:2\nT:Written without bar lines\nK:D\ndefg abag fedc\n"

CORPUS_FILES = ("oneills1850/0721-0730.abc",)  # what the `built` fixture (conftest) embeds


def xml_bomb() -> bytes:
    """An 11 kB .mxl of 3,000,000 XML elements: over the converter's element budget."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as mxl:
        mxl.writestr("score.xml", b"<score-partwise>" + b"<a/>" * 3_000_000 + b"</score-partwise>")
    return archive.getvalue()


def test_music_is_text_with_a_bar_and_a_reason_says_why_not():
    assert music_problem(JIG) is None
    assert music_problem("|abc|def|\n") is None  # no headers, no K:, still bars
    assert music_problem("X:1\nK:C\nCDEF|\f\t\r\n") is None  # whitespace controls are text
    assert "binary data (control character 0x00 at character 7)" in music_problem("X:1\nK:C\x00|abc|\n")
    assert "binary data" in music_problem(EXECUTABLE.decode("latin-1"))
    for text in ("", "hello", NO_BARS, "X:1\nT:Only a title\n", "K:G\n|\n"):
        assert music_problem(text).startswith("no music: no bar line"), text
    assert music_problem("X:1\nK:G\n|GABc|\n", min_bars=2).startswith("no music: fewer than 2 bars")


def test_reasons_quote_a_short_excerpt_never_the_input():
    reason = music_problem(EXECUTABLE.decode("latin-1"))
    assert len(reason) < 200 and "\\x7fELF" in reason
    reason = music_problem("no bars here " * 100_000)
    assert len(reason) < 200 and "(1300000 characters in all)" in reason


def test_bars_beyond_a_long_first_stretch_are_found():
    assert music_problem("X:1\nK:G\n" + "a" * 200_000 + "|\n") is None
    assert music_problem("X:1\nK:G\n" + "a" * 200_000 + "\n\u00e9|\n") is None  # not the quick path


# Lines of ABC-ish pieces: headers, comments, bar lines of every kind, non-ASCII, CR and Unicode breaks.
PIECES = ["X:1", "T:t", "K:G", "w:", "%", "%%score", "|", "||", "|:", ":|", "[|", "|]", "::", "[", "]", ":"]
PIECES += ["a", " ", "\r", "\n", "\u00e9", "\u2028", "\u00a6", "\ufeff", "G:", "r:", "\x00"]
abc_lines = st.lists(st.sampled_from(PIECES), max_size=30).map("".join)


@settings(max_examples=1000, derandomize=True, database=None, deadline=None)
@given(abc_lines)
def test_the_quick_bar_check_never_says_yes_wrongly_and_the_rule_is_bars_and_no_binary(text):
    assert not has_sure_bar(text) or n_bar_patches(text) >= 1
    is_music = "\x00" not in text and n_bar_patches(text) >= 1
    assert (music_problem(text) is None) == is_music


def test_the_reader_records_each_tune_that_is_not_music_and_keeps_the_rest(tmp_path):
    (tmp_path / "mixed.abc").write_text(JIG + "\n" + NO_BARS + "\n" + JIG.replace("X:1", "X:3"))
    (tmp_path / "ls.abc").write_bytes(EXECUTABLE)
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps({"abc": abc}) + "\n" for abc in ("hello", JIG)))
    items = list(read_inputs(sorted(tmp_path.iterdir())))
    records = [(Path(i.source).name, i.tune_index) for i in items if isinstance(i, TuneRecord)]
    assert records == [("mixed.abc", 0), ("mixed.abc", 2), ("rows.jsonl", 1)]
    failures = {(Path(f.source).name, f.tune_index): f.reason for f in items if isinstance(f, Failure)}
    assert failures[("mixed.abc", 1)].startswith("no music: no bar line")
    assert failures[("rows.jsonl", 0)].startswith("row 0: no music")
    assert "binary data" in failures[("ls.abc", 0)] and "Latin-1" in failures[("ls.abc", None)]  # and a note


@pytest.fixture(scope="module")
def client(built) -> Iterator[httpx.Client]:
    with serving(create_app(Index.open(built.index_dir))) as client:
        yield client


def test_embed_puts_what_is_not_music_in_the_errors_table(built, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "ls.abc").write_bytes(EXECUTABLE)
    (folder / "tunes.abc").write_text(JIG + "\n" + NO_BARS)
    (folder / "bomb.mxl").write_bytes(xml_bomb())
    out = tmp_path / "shards"
    clamp("embed", folder, "--model", built.model_dir, "--out", out, "--workers", 0, "--quiet")
    stored = [r["source"] for b in iter_shard_batches(out, ["source"]) for r in b.to_pylist()]
    assert [Path(s).name for s in stored] == ["tunes.abc"]
    errors = {(Path(e["source"]).name, e["tune_index"]): e["reason"] for e in read_errors(out).to_pylist()}
    assert errors[("tunes.abc", 1)].startswith("no music") and "binary data" in errors[("ls.abc", 0)]
    assert "more than 1,000,000 XML elements" in errors[("bomb.mxl", None)]


def test_http_answers_422_with_a_short_reason_for_what_is_not_music(client):
    upload = client.post("/similar", files={"file": ("x.abc", EXECUTABLE)})
    assert upload.status_code == 422 and "binary data" in upload.json()["detail"]
    assert len(upload.content) < 500  # not the 200 kB echoed back
    converted = client.post("/convert", files={"file": ("x.abc", EXECUTABLE)})
    assert converted.status_code == 422 and len(converted.content) < 500
    for abc in ("hello", NO_BARS):
        for route, body in (("/similar", {"abc": abc}), ("/classify", {"abc": abc, "labels": ["jig"]})):
            answer = client.post(route, json=body)
            assert answer.status_code == 422 and "no music" in answer.json()["detail"], (route, abc)
    embeddings = client.post("/v1/embeddings", json={"input": [JIG, "hello"], "modality": "abc"})
    assert embeddings.status_code == 422 and embeddings.json()["detail"].startswith("input 1: no music")
    assert client.post("/v1/embeddings", json={"input": "", "modality": "abc"}).status_code == 422
    assert client.post("/v1/embeddings", json={"input": JIG, "modality": "abc"}).status_code == 200
    bomb = client.post("/similar", files={"file": ("bomb.mxl", xml_bomb())})
    assert bomb.status_code == 413 and "more than 1,000,000 XML elements" in bomb.json()["detail"]


def test_cli_exits_1_with_one_line_for_what_is_not_music(built, tmp_path):
    (tmp_path / "ls.abc").write_bytes(EXECUTABLE)
    (tmp_path / "bomb.mxl").write_bytes(xml_bomb())
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "no-bars.abc").write_text(NO_BARS)
    out = clamp("similar", tmp_path / "ls.abc", "--index", built.index_dir, ok=False)
    assert out.startswith("Error: ") and "binary data" in out and len(out.splitlines()) == 1
    out = clamp("similar", tmp_path / "bomb.mxl", "--index", built.index_dir, ok=False)
    assert "bomb.mxl: cannot convert this musicxml file: the score has more than" in out
    assert len(out.splitlines()) == 1
    out = clamp("similar", "-", "--index", built.index_dir, input="hello", ok=False)
    assert "the ABC text: no music" in out
    keys = ("--keys", tmp_path / "keys", "--query-modal", "text", "--key-modal", "music", "--no-cache")
    out = clamp("query", "a jig", *keys, "--model", built.model_dir, ok=False)
    assert "music key" in out and "no-bars.abc: no music" in out and len(out.splitlines()) == 1
