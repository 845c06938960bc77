"""`clamp index | search | similar | classify | query` as a user runs them (CliRunner), on real tunes."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from query_corpus import clamp, other_model_dir

from runtime.search.keys import FeatureCache, label_set, music_keys, read_music


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CLAMP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("CLAMP_MODEL", raising=False)


def results(output: str) -> list[dict]:
    return json.loads(output)["results"]


def test_index_info_prints_the_manifest(built):
    manifest = json.loads(clamp("index", "info", built.index_dir))
    assert manifest["count"] > 150 and manifest["space"] == "ip" and manifest["model_dir"]


def test_search_prints_a_table_best_first(built):
    out = clamp("search", "a lively jig", "--index", built.index_dir, "-k", 3, "--mode", "vector")
    header, *rows = out.strip().splitlines()[-4:]  # after the line saying when it is only chance
    assert header.split()[:4] == ["#", "cosine", "z", "found"] and "title" in header and "prob" not in header
    assert [row.split()[0] for row in rows] == ["1", "2", "3"]
    cosines = [float(row.split()[1]) for row in rows]
    assert cosines == sorted(cosines, reverse=True)


def test_search_json_filter_exact_and_abc(built):
    hits = results(
        clamp(
            "search",
            "a slow air",
            "--index",
            built.index_dir,
            "-k",
            5,
            "--json",
            "--abc",
            "--filter",
            "meter = 3/4 and origin contains irl",
        )
    )
    assert len(hits) == 5
    assert all(h["meter"] == "3/4" and "Irl" in h["origin"] and h["abc"].startswith("X:") for h in hits)
    assert all("prob" not in h for h in hits)  # a softmax over the top k of an index means nothing
    exact = results(
        clamp(
            "search",
            "a slow air",
            "--index",
            built.index_dir,
            "-k",
            5,
            "--json",
            "--exact",
            "--filter",
            "meter = 3/4 and origin contains irl",
        )
    )
    assert [h["id"] for h in exact] == [h["id"] for h in hits]


def test_search_reports_bad_filters_in_one_line(built):
    out = clamp("search", "x", "--index", built.index_dir, "--filter", "meter == 6/8", ok=False)
    assert "bad filter" in out and "Traceback" not in out


def test_an_overlong_filter_is_one_line_not_a_sqlite_traceback(built):
    huge = " and ".join(["meter = 6/8"] * 1100)  # issue #16: "Expression tree is too large"
    out = clamp("search", "x", "--index", built.index_dir, "--filter", huge, ok=False)
    assert out.strip().count("\n") == 0 and "filter too long: 17595 characters, at most 2000" in out


def test_search_with_or_in_not_and_parentheses(built):
    text = "(rhythm = jig or rhythm = hornpipe) and not key in (G, Dmaj)"
    hits = results(clamp("search", "a tune", "--index", built.index_dir, "-k", 8, "--json", "--filter", text))
    assert len(hits) == 8
    assert all(h["rhythm"] in ("jig", "hornpipe") and h["key"] not in ("G major", "D major") for h in hits)


def test_index_facets_lists_values_with_counts(built):
    out = clamp(
        "index", "facets", built.index_dir, "--fields", "rhythm", "--filter", "rhythm in (jig, 'slip jig')"
    )
    assert out.split("\n")[:3] == ["rhythm:", "        20  slip jig", "        10  jig"]
    facets = json.loads(clamp("index", "facets", built.index_dir, "--json", "--top", 2))["facets"]
    assert list(facets) == ["key", "meter", "rhythm", "origin", "collection"]
    assert all(len(values) <= 2 and set(values[0]) == {"value", "count"} for values in facets.values())
    assert "unknown filter field 'colour'" in clamp(
        "index", "facets", built.index_dir, "--fields", "colour", ok=False
    )


def test_similar_finds_the_tune_itself_from_a_file_or_stdin(built):
    path = built.abc_dir / "oneills1850-1116-1135_mh.abc"
    args = ["--index", built.index_dir, "-k", 3, "--json", "--include-self"]
    from_file = results(clamp("similar", path, "--tune", 4, *args))
    assert from_file[0]["score"] == pytest.approx(1, abs=1e-4) and from_file[0]["rhythm"] == "slip jig"
    from_stdin = results(clamp("similar", "-", *args, input=read_music(path, 4)))
    assert [h["id"] for h in from_stdin] == [h["id"] for h in from_file]


def test_classify_with_labels_or_a_label_set_needs_no_index(built):
    tune = built.abc_dir / "oneills1850-0721-0730.abc"
    hits = results(
        clamp(
            "classify",
            tune,
            "--labels",
            "jig, reel,hornpipe",
            "--template",
            "A {} tune.",
            "--model",
            built.model_dir,
            "--json",
        )
    )
    assert (
        sorted(h["id"] for h in hits) == ["hornpipe", "jig", "reel"]
        and hits[0]["text"] == f"A {hits[0]['id']} tune."
    )
    template, labels = label_set("tune-type")
    hits = results(clamp("classify", tune, "--label-set", "tune-type", "--model", built.model_dir, "--json"))
    assert sorted(h["id"] for h in hits) == sorted(labels)
    assert all(h["text"] == template.replace("{}", h["id"]) for h in hits)
    assert "tune-type" in json.loads(clamp("classify", "--list-label-sets"))


def test_classify_errors_say_what_to_do(built, monkeypatch, tmp_path):
    tune = built.abc_dir / "oneills1850-0721-0730.abc"
    assert "--labels or --label-set" in clamp("classify", tune, "--model", built.model_dir, ok=False)
    assert "needs a {}" in clamp(
        "classify", tune, "--labels", "a", "--template", "x", "--model", built.model_dir, ok=False
    )
    assert "unknown label set" in clamp(
        "classify", tune, "--label-set", "nope", "--model", built.model_dir, ok=False
    )
    monkeypatch.chdir(tmp_path)
    assert "CLAMP_MODEL" in clamp("classify", tune, "--labels", "a,b", ok=False)
    monkeypatch.setenv("CLAMP_MODEL", str(built.model_dir))
    assert results(clamp("classify", tune, "--labels", "a,b", "--json"))


def test_a_model_other_than_the_index_s_is_refused(built, tmp_path):
    other = other_model_dir(built.model_dir, tmp_path / "other")
    out = clamp("search", "a jig", "--index", built.index_dir, "--model", other, ok=False)
    assert "was built with model" in out and "--model" in out
    out = clamp("index", "build", built.shards_dir, "--out", tmp_path / "index", "--model", other, ok=False)
    assert "did not make these shards" in out


@pytest.mark.parametrize(
    ("query_modal", "key_modal"), [("text", "music"), ("music", "text"), ("music", "music"), ("text", "text")]
)
def test_query_covers_the_four_modality_pairs_of_clamp_py(built, tmp_path, query_modal, key_modal):
    text_keys = tmp_path / "keys.txt"
    text_keys.write_text("It is composed by Chopin\nan Irish jig\n\na German love song\n")
    music_query = built.abc_dir / "essenFolksong-irl.abc"
    query = "a lively jig" if query_modal == "text" else music_query
    keys = built.abc_dir if key_modal == "music" else text_keys
    args = [
        "query",
        query,
        "--query-modal",
        query_modal,
        "--key-modal",
        key_modal,
        "--keys",
        keys,
        "--model",
        built.model_dir,
    ]
    hits = results(clamp(*args, "--top-n", 0, "--json"))
    assert len(hits) == (
        3 if key_modal == "text" else json.loads(clamp("index", "info", built.index_dir))["count"]
    )
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert sum(h["prob"] for h in hits) == pytest.approx(1, abs=1e-3)
    if query_modal == key_modal == "music":
        assert hits[0]["id"] == "essenFolksong-irl.abc#0" and hits[0]["score"] == pytest.approx(1, abs=1e-4)
    table = clamp(*args, "--top-n", 2)
    assert len(table.strip().splitlines()) == 3  # header + 2 rows, from the cache this time


def test_query_feature_cache_encodes_only_new_or_changed_files(built, tmp_path):
    keys = tmp_path / "keys"
    shutil.copytree(built.abc_dir, keys)
    from runtime.model.encoder import Encoder

    encoder = Encoder.open(built.model_dir)
    encoded: list[int] = []
    original = encoder.embed_abc
    encoder.embed_abc = lambda abcs: encoded.append(len(abcs)) or original(abcs)
    cache = FeatureCache.for_keys(encoder.model_hash, keys)
    first = music_keys(encoder, keys, cache)
    assert encoded == [len(first.ids)] and cache.path.is_file()
    again = music_keys(encoder, keys, cache)
    assert encoded == [len(first.ids)] and again.ids == first.ids
    assert (again.vectors == first.vectors).all()
    changed = keys / "oneills1850-0721-0730.abc"
    changed.write_text(changed.read_text() + "\nX:99\nT:Extra\nK:G\nGABc dBAG|\n")
    os.utime(changed, ns=(1, 1))
    (keys / "essenFolksong-irl.abc").unlink()
    third = music_keys(encoder, keys, cache)
    assert encoded[1:] == [11] and len(third.ids) == len(first.ids) - 62 + 1
