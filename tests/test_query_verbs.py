"""The query verbs agree: an indexed id works wherever a tune does, "more like this" leaves the tune itself
out, `clamp patch` reads scores as `similar` does, classify's table says what its rows are.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator

import httpx
import pytest
from query_corpus import clamp, corpus_path
from serving import serving

from runtime.model.families import load_family
from runtime.search.keys import read_music
from runtime.serve.server import create_app

JIGS = "oneills1850-0721-0730.abc"


@pytest.fixture(scope="module")
def client(index) -> Iterator[httpx.Client]:
    with serving(create_app(index)) as client:
        yield client


def ids(output: str) -> list[str]:
    return [hit["id"] for hit in json.loads(output)["results"]]


def test_similar_takes_an_indexed_id_and_leaves_it_out_by_default(built, index, client):
    some_id = index.search_text("a jig", k=1)[0].id
    args = ["--index", built.index_dir, "-k", 4, "--json"]
    others = ids(clamp("similar", some_id, *args))
    assert len(others) == 4 and some_id not in others
    with_self = ids(clamp("similar", some_id, *args, "--include-self"))
    assert with_self[0] == some_id and with_self[1:] == others[:3]
    exact = [h.id for h in index.similar_to(some_id, 4, exact=True)]
    assert ids(clamp("similar", some_id, *args, "--exact")) == exact
    over_http = client.post("/similar", json={"id": some_id, "k": 4}).json()["results"]
    assert [h["id"] for h in over_http] == others
    out = clamp("similar", "no-such-tune", "--index", built.index_dir, ok=False)
    assert "neither a score file nor the id of a tune" in out and "Traceback" not in out


def test_a_file_query_leaves_out_items_with_the_same_abc(built, index, client):
    path = built.abc_dir / JIGS
    abc = read_music(path, 2)
    args = ["--tune", 2, "--index", built.index_dir, "-k", 3, "--json", "--abc"]
    others = json.loads(clamp("similar", path, *args))["results"]
    assert len(others) == 3 and all(h["abc"].strip() != abc.strip() for h in others)
    itself = json.loads(clamp("similar", path, *args, "--include-self"))["results"][0]
    assert itself["abc"].strip() == abc.strip() and itself["score"] == pytest.approx(1, abs=1e-4)
    over_http = client.post("/similar", json={"abc": abc, "k": 3}).json()["results"]
    assert [h["id"] for h in over_http] == [h["id"] for h in others] and "abc" not in over_http[0]
    assert [h.id for h in index.search_music(path, 3, tune=2)] == [h["id"] for h in others]
    assert index.search_music(path, 1, tune=2, exclude_self=False)[0].id == itself["id"]


def test_classify_takes_an_indexed_id_over_http_and_in_the_cli(built, index, client):
    item = index.item(index.search_text("a reel", k=1)[0].id)
    labels = ["jig", "reel", "hornpipe"]
    by_id = client.post("/classify", json={"id": item["id"], "labels": labels})
    by_abc = client.post("/classify", json={"abc": item["abc"], "labels": labels})
    assert by_id.status_code == 200
    scores = {h["id"]: h["score"] for h in by_abc.json()["results"]}
    assert {h["id"]: h["score"] for h in by_id.json()["results"]} == pytest.approx(scores, abs=1e-3)
    assert client.post("/classify", json={"id": "nope", "labels": labels}).status_code == 404
    both = client.post("/classify", json={"id": item["id"], "abc": item["abc"], "labels": labels})
    assert both.status_code == 400 and "one of them" in both.json()["detail"]
    cli = clamp("classify", item["id"], "--index", built.index_dir, "--labels", ",".join(labels), "--json")
    assert {h["id"]: h["score"] for h in json.loads(cli)["results"]} == pytest.approx(scores, abs=1e-3)
    out = clamp("classify", "nope", "--index", built.index_dir, "--labels", "a,b", ok=False)
    assert "neither a score file nor the id of a tune" in out


def test_classify_s_table_heads_its_rows_label(built):
    table = clamp("classify", built.abc_dir / JIGS, "--labels", "jig,reel", "--model", built.model_dir)
    header = table.splitlines()[0].split()
    assert header[:3] == ["#", "cosine", "prob"] and header[-1] == "label"


def test_patch_reads_musicxml_as_similar_does_and_defaults_to_the_default_family(tmp_path):
    score = shutil.copy(corpus_path("bach/bwv1.6.mxl"), tmp_path / "chorale.mxl")
    [record] = [json.loads(line) for line in clamp("patch", score, "--json").splitlines()]
    assert (
        record["filtered_abc"]
        == json.loads(clamp("patch", score, "--json", "--family", "default"))["filtered_abc"]
    )
    assert "K:" in record["filtered_abc"] and "PK" not in record["filtered_abc"]
    assert 1 < record["n_patches"] <= load_family("default")["music"]["max_patches"]
    table = clamp("patch", score)
    assert table.startswith("# tune 0: ") and "patches" in table.splitlines()[0]
    assert "[default: default]" in " ".join(clamp("patch", "--help").split())
    broken = tmp_path / "broken.mxl"
    broken.write_bytes(b"PK not a zip")
    out = clamp("patch", broken, ok=False)
    assert "broken.mxl" in out and "Traceback" not in out


def test_patch_still_reads_abc_from_stdin_and_plain_text_files(tmp_path):
    abc = corpus_path("oneills1850/0721-0730.abc").read_text(encoding="latin-1")
    from_stdin = clamp("patch", "-", "--json", input=abc).splitlines()
    text_file = tmp_path / "tunes.txt"
    text_file.write_text(abc, encoding="latin-1")
    assert clamp("patch", text_file, "--json").splitlines() == from_stdin and len(from_stdin) == 10
