"""A CLaMP 3-layout checkpoint (tiny, random weights) through export -> embed -> index build -> search,
answering Russian and Chinese queries; the windowed towers equal PyTorch's window-averaged features."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import music21
import numpy as np
import pyarrow.dataset as ds
import pytest
import torch
from click.testing import CliRunner
from helpers import real_tunes
from m3_helpers import tiny_m3_family, write_m3_checkpoint
from serving import serving
from test_mtf import spec_midi

from exporter.checkpoint import load_model
from exporter.model import CLaMP
from exporter.parity import torch_reference
from runtime.cli import main
from runtime.model.encoder import Encoder
from runtime.search.index import Index
from runtime.serve.server import create_app


def clamp(*args) -> str:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("clamp3")
    torch.manual_seed(0)
    family = tiny_m3_family("clamp3-c2", max_patches=8)  # 8-patch windows: real tunes need several
    checkpoint = write_m3_checkpoint(root / "ckpt", CLaMP(family).eval(), family)
    (checkpoint / "config.json").write_text(json.dumps(family))
    clamp("export", "--model", checkpoint, "--out", root / "model")
    corpus = root / "corpus"
    corpus.mkdir()
    (corpus / "tunes.abc").write_text("\n\n".join(real_tunes()))
    (corpus / "spec.mid").write_bytes(spec_midi())  # read natively: MTF, not ABC
    shutil.copy(Path(music21.__file__).parent / "corpus" / "bach" / "bwv1.6.mxl", corpus / "chorale.mxl")
    clamp("embed", corpus, "--model", root / "model", "--out", root / "shards", "--workers", 0, "--quiet")
    clamp("index", "build", root / "shards", "--out", root / "index")
    return root, family


def test_export_records_m3_preprocessing_and_passes_parity(pipeline):
    root, _ = pipeline
    config = json.loads((root / "model" / "config.json").read_text())
    assert config["music"]["preprocessing"] == "m3-clamp3"
    assert config["text"] == {**config["text"], "transliterate": False, "long_texts": "segment-average"}
    parity = json.loads((root / "model" / "manifest.json").read_text())["parity"]
    assert parity["fp32"]["music"]["min_cosine"] > 0.99999 and parity["fp32"]["text"]["min_cosine"] > 0.99999
    assert parity["samples"]["tunes"] >= 20


@pytest.mark.parametrize("query", ["русская народная песня", "一首欢快的中国民歌"])
def test_non_latin_queries_are_answered_end_to_end(pipeline, query):
    root, _ = pipeline
    out = clamp("search", query, "--index", root / "index", "--model", root / "model", "-k", 3, "--json")
    answer = json.loads(out)
    assert answer["query"] == query and len(answer["results"]) == 3


def test_queries_are_not_transliterated(pipeline):
    root, _ = pipeline
    encoder = Encoder.open(root / "model")
    chinese, pinyin = encoder.embed_texts(["一首欢快的中国民歌", "Yi Shou Huan Kuai De Zhong Guo Min Ge"])
    assert float(chinese @ pinyin) < 0.999


def test_windowed_runtime_equals_pytorch_window_averages(pipeline):
    root, family = pipeline
    model, family, tokenizer_json = load_model(root / "ckpt")
    tunes = list(real_tunes()[-2:])  # the longest: many 8-patch windows
    texts = ["a long description " * 12, "короткий"]  # 12x3 words > 16 tokens: windowed
    reference = torch_reference(model, family, tokenizer_json, texts, tunes)
    encoder = Encoder.open(root / "model")
    music = encoder.embed_abc(tunes)
    text = encoder.embed_texts(texts)
    unit = lambda m: m / np.linalg.norm(m, axis=1, keepdims=True)  # noqa: E731
    assert np.allclose(music, unit(reference["music"]), atol=1e-5)
    assert np.allclose(text, unit(reference["text"]), atol=1e-5)
    assert len(encoder.profile.abc_patches(tunes[-1], None)) > 3 * family["music"]["max_patches"]


def test_scores_are_read_as_the_family_reads_them(pipeline):
    root, _ = pipeline
    rows = ds.dataset(root / "shards").to_table(columns=["source", "abc"]).to_pylist()
    by_file = {Path(row["source"]).name: row["abc"] for row in rows}
    assert by_file["spec.mid"].startswith("ticks_per_beat 480\n")  # MIDI as MTF: no lossy MIDI -> ABC step
    chorale = by_file["chorale.mxl"]
    assert "L:1/8" in chorale and "%%MIDI" not in chorale  # xml2abc -d 8 -x, not CLaMP 1's -m 2 -c 6 -x
    out = clamp(
        "similar",
        root / "corpus" / "spec.mid",
        "--index",
        root / "index",
        "--model",
        root / "model",
        "-k",
        2,
        "--json",
    )
    assert len(json.loads(out)["results"]) == 2


def test_the_server_and_its_page_answer_on_a_clamp3_model_dir(pipeline):
    root, _ = pipeline
    with serving(create_app(Index.open(root / "index", root / "model"))) as client:
        found = client.post("/search", json={"text": "一首欢快的中国民歌", "k": 3})
        assert found.status_code == 200 and len(found.json()["results"]) == 3
        midi = client.post("/similar", files={"file": ("spec.mid", spec_midi())}, data={"k": "2"})
        assert midi.status_code == 200 and len(midi.json()["results"]) == 2
        assert client.get("/").status_code == 200


def test_a_clamp2_checkpoint_exports_with_parity(tmp_path):
    torch.manual_seed(1)
    family = tiny_m3_family("clamp2", max_patches=8)
    checkpoint = write_m3_checkpoint(tmp_path / "ckpt", CLaMP(family).eval(), family)
    (checkpoint / "config.json").write_text(json.dumps(family))
    clamp("export", "--model", checkpoint, "--out", tmp_path / "model", "--no-int8")
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["music"]["preprocessing"] == "m3-clamp2"
    assert (
        min(
            manifest["parity"][p][tower]["min_cosine"]
            for p in ("fp32", "fp16")
            for tower in ("text", "music")
        )
        > 0.999
    )
