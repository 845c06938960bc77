"""MusicXML and MIDI work everywhere a tune is accepted: `clamp embed`, `similar`, `classify`, HTTP upload."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from helpers import tiny_model_dir
from music21 import converter
from query_corpus import Corpus, clamp, corpus_path

from indexer.shards import iter_shard_batches
from runtime.search.index import Index
from runtime.serve.server import create_app

CHORALES = ("bach/bwv1.6.mxl", "bach/bwv10.7.mxl", "bach/bwv101.7.mxl")
ABC_FILE = "oneills1850/0721-0730.abc"


def plain_musicxml(mxl: Path) -> bytes:
    """The score inside a compressed .mxl, as an uncompressed MusicXML file holds it."""
    with zipfile.ZipFile(mxl) as archive:
        [name] = [n for n in archive.namelist() if n.endswith(".xml") and not n.startswith("META-INF")]
        return archive.read(name)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Corpus:
    root = tmp_path_factory.mktemp("mixed")
    folder = root / "scores"
    folder.mkdir()
    for name in CHORALES[:2]:
        shutil.copy(corpus_path(name), folder / Path(name).name)
    (folder / "bwv101.7.xml").write_bytes(plain_musicxml(corpus_path(CHORALES[2])))
    shutil.copy(corpus_path(ABC_FILE), folder / "jigs.abc")
    jig = converter.parse(corpus_path(ABC_FILE).read_text(encoding="latin-1").split("\n\n")[0], format="abc")
    jig.write("midi", fp=str(folder / "jig.mid"))
    model_dir = tiny_model_dir(root)
    shards, index = root / "shards", root / "index"
    clamp("embed", folder, "--model", model_dir, "--out", shards, "--workers", 0, "--quiet")
    clamp("index", "build", shards, "--out", index, "--model", model_dir)
    return Corpus(model_dir, folder, shards, index)


def test_embed_takes_a_folder_mixing_abc_musicxml_and_midi(mixed):
    rows = [
        r
        for batch in iter_shard_batches(mixed.shards_dir, columns=["source", "meta"])
        for r in batch.to_pylist()
    ]
    assert {Path(r["source"]).name for r in rows} == {
        "bwv1.6.mxl",
        "bwv10.7.mxl",
        "bwv101.7.xml",
        "jigs.abc",
        "jig.mid",
    }
    kinds = [json.loads(r["meta"]).get("converted_from") for r in rows]
    assert kinds.count("musicxml") == 3 and kinds.count("midi") == 1 and len(rows) == 4 + 10


def test_similar_to_an_mxl_score_finds_that_score_first(mixed):
    score = mixed.abc_dir / "bwv1.6.mxl"
    hits = json.loads(clamp("similar", score, "--index", mixed.index_dir, "--json", "--include-self"))
    assert Path(hits["results"][0]["source"]).name == "bwv1.6.mxl"
    assert hits["results"][0]["score"] == pytest.approx(1, abs=1e-3)
    others = json.loads(clamp("similar", score, "--index", mixed.index_dir, "--json"))["results"]
    assert "bwv1.6.mxl" not in {Path(h["source"]).name for h in others}  # --exclude-self, the default


def test_classify_a_midi_file(mixed):
    out = json.loads(
        clamp(
            "classify",
            mixed.abc_dir / "jig.mid",
            "--model",
            mixed.model_dir,
            "--labels",
            "jig,reel,air",
            "--json",
        )
    )
    assert sorted(r["id"] for r in out["results"]) == ["air", "jig", "reel"]


def test_http_similar_with_an_uploaded_mxl_and_a_corrupt_one(mixed):
    client = TestClient(create_app(Index.open(mixed.index_dir)))
    score = mixed.abc_dir / "bwv10.7.mxl"
    form = {"k": "3", "exclude_self": "false"}
    answer = client.post("/similar", files={"file": (score.name, score.read_bytes())}, data=form)
    assert answer.status_code == 200, answer.text
    assert Path(answer.json()["results"][0]["source"]).name == "bwv10.7.mxl"
    broken = client.post("/similar", files={"file": ("broken.mxl", b"PK not a zip")})
    assert broken.status_code == 400 and "broken.mxl" in broken.json()["detail"]
