"""Bad music input never crashes or hangs, and every tune turned away is recorded with a reason.

Property-based fuzzing (hypothesis, derandomised so CI is reproducible) of the whole input path: bytes ->
text -> tunes -> CLaMP filter -> bar patches, the corpus reader (ABC files and JSONL tables), the
MusicXML/MIDI converters, and `embed_corpus` end to end (with an exact, numpy-only stand-in encoder so the
properties test the pipeline, not ONNX Runtime). Then the extremes one at a time: 10 MB tunes, 100k-character
bars, 100k tunes in a file, NUL bytes, invalid UTF-8, directories named like files, symlink loops.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer.mapper import Patched, patch_abc
from indexer.reader import Failure, TuneRecord, expand_inputs, read_inputs
from indexer.runner import EmbedOptions, embed_corpus
from indexer.shards import iter_shard_batches, read_errors
from runtime.music import formats
from runtime.music.abc import split_tunes, tune_id
from runtime.music.formats import ScoreError, decode_bytes, read_tunes
from runtime.music.patching import EOS_ID, PATCH_LENGTH, abc_filter, decode_patches, prepare_music
from runtime.music.profiles import PROFILES
from runtime.music.validate import music_problem

# Derandomised: the same cases on every run; no example database written into the checkout.
pytestmark = pytest.mark.filterwarnings("ignore:Surrogate character:RuntimeWarning")  # unidecode drops them
SETTINGS = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
# How many generated cases each property runs; RELIABILITY.md reports their sum.
EXAMPLES = {
    "split": 3000,
    "patch": 3000,
    "filter": 1500,
    "abc_file": 1200,
    "jsonl": 600,
    "patch_abc": 1000,
    "formats": 200,
    "corpus": 150,
}

# Pieces of ABC, right and wrong, so generated text often looks like music and hits the parser's branches.
ABC_PIECES = [
    "X:1\n", "X:\n", "T:A title\n", "C:Trad.\n", "R:jig\n", "M:6/8\n", "L:1/8\n", "K:G\n", "K:\n",
    "G:group\n", "w:lyr-ics\n", "W:words\n", "%comment\n", "%%score 1 2\n", "V:1\n", "abc", "d2e", "z4",
    "[CEG]", "(3abc", "|", "||", "|:", ":|", "::", "[|", "|]", "\n", "\r\n", "\r", " ", "%", "é", "中",
    "\x00", "\x7f", "\ufeff", "a" * 70, "|" * 5, "\ud800",
]  # fmt: skip
abc_like_text = st.lists(st.one_of(st.sampled_from(ABC_PIECES), st.text(max_size=20)), max_size=60).map(
    "".join
)
# Any code point, unpaired surrogates included (they arrive through JSON escapes).
any_text = st.text(st.one_of(st.characters(), st.integers(0xD800, 0xDFFF).map(chr)), max_size=2000)
some_text = st.one_of(abc_like_text, any_text)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)


def fuzz(name: str) -> settings:
    """The shared settings with this property's number of cases."""
    return settings(SETTINGS, max_examples=EXAMPLES[name])


class ExactEncoder:
    """A stand-in for runtime.model.encoder.Encoder: one deterministic unit vector per patch array."""

    model_hash, model_name, dim, max_patches = "e" * 64, "exact-test-encoder", 8, 16
    profile = PROFILES["clamp1"]

    def embed_patches(self, patches, max_batch_patches: int = 0) -> np.ndarray:
        for p in patches:
            assert p.ndim == 2 and p.shape[1] == PATCH_LENGTH and 1 <= len(p) <= self.max_patches
        vectors = np.stack([p.astype(np.float32).mean(axis=0)[: self.dim] + 1.0 for p in patches])
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def storable(text: str) -> bool:
    """Text that UTF-8 (and so Parquet and SQLite) can hold."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# --- text -> tunes -> patches ---------------------------------------------------------------------------


@fuzz("split")
@given(some_text)
def test_any_text_splits_into_numbered_tunes_with_string_headers(text):
    tunes = split_tunes(text)
    assert [t.index for t in tunes] == list(range(len(tunes)))
    assert all(t.abc.startswith("X:") and t.abc.endswith("\n") for t in tunes)
    assert [t.line for t in tunes] == sorted(t.line for t in tunes) and all(t.line >= 1 for t in tunes)
    assert all(isinstance(k, str) and isinstance(v, str) for t in tunes for k, v in t.meta.items())
    assert len({tune_id("f.abc", t.index, t.abc) for t in tunes}) == len(tunes)


@fuzz("patch")
@given(some_text, st.integers(min_value=1, max_value=600))
def test_any_text_becomes_valid_patches_ending_in_eos(text, max_patches):
    patches = prepare_music(text, max_patches)
    assert patches.dtype == np.uint8 and patches.ndim == 2 and patches.shape[1] == PATCH_LENGTH
    assert 1 <= len(patches) <= max_patches and patches.max() <= EOS_ID
    untruncated = prepare_music(text, None)
    assert (untruncated[-1] == EOS_ID).all()  # the end-of-tune patch
    assert np.array_equal(patches, untruncated[:max_patches])  # head truncation, nothing else
    assert all(s.isascii() for s in decode_patches(patches))


@fuzz("filter")
@given(some_text)
def test_the_filter_keeps_a_subsequence_of_lines_without_metadata(text):
    kept = abc_filter(text).split("\n")[:-1]
    source = iter(text.split("\n"))
    assert all(any(line.startswith(k) for line in source) for k in kept)  # in order, each cut at most
    dropped = ("X:", "T:", "C:", "O:", "R:", "w:", "W:")
    assert not any(k.startswith(dropped) or (k.startswith("%") and not k.startswith("%%score")) for k in kept)


@fuzz("patch_abc")
@given(some_text, st.integers(min_value=1, max_value=64), st.sampled_from(["clamp1", "m3-clamp3"]))
def test_patching_a_tune_gives_patches_or_a_reason(abc, max_patches, preprocessing):
    result = patch_abc(abc, max_patches, preprocessing)
    if isinstance(result, Patched) and preprocessing == "clamp1":
        assert 2 <= len(result.patches) + result.truncated and len(result.patches) <= max_patches
    elif isinstance(result, Patched):  # windowed: every patch kept, framed by BOS and EOS patches
        assert len(result.patches) >= 3 and not result.truncated and result.patches.max() < 128
    else:
        assert isinstance(result, str) and result


# --- files -> records or failures -------------------------------------------------------------------------


def read_bytes_as(suffix: str, data: bytes) -> list:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"fuzz{suffix}"
        path.write_bytes(data)
        return list(read_inputs([path]))


def encoded(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


@fuzz("abc_file")
@given(st.one_of(st.binary(max_size=3000), some_text.map(encoded)))
def test_any_bytes_in_an_abc_file_give_storable_tunes_or_recorded_failures(data):
    items = read_bytes_as(".abc", data)
    records = [i for i in items if isinstance(i, TuneRecord)]
    assert all(isinstance(i, (TuneRecord, Failure)) for i in items)
    assert all(storable(r.abc) and storable(r.id) and all(map(storable, r.meta.values())) for r in records)
    assert all(f.reason and f.stage in ("read", "decode") for f in items if isinstance(f, Failure))
    try:
        text = decode_bytes(data)[0]
    except ScoreError:  # claims UTF-16 but is not: the file's one error row
        assert [(f.tune_index, f.stage) for f in items] == [(None, "read")]
        return
    tunes = [i for i in items if i.tune_index is not None]  # each a record, or an error row: not music
    assert len(tunes) == (len(split_tunes(text)) or bool(text.strip()))
    assert all(music_problem(r.abc) is None for r in records)


@fuzz("jsonl")
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=200),
            json_values.map(lambda v: json.dumps(v).encode()),
            st.fixed_dictionaries(
                {"abc": st.one_of(some_text, json_values)}, optional={"title": json_values}
            ).map(lambda row: json.dumps(row).encode()),
        ),
        max_size=8,
    )
)
def test_every_jsonl_line_gives_one_storable_record_or_one_failure(lines):
    lines = [line.replace(b"\n", b" ").replace(b"\r", b" ") for line in lines]
    items = read_bytes_as(".jsonl", b"\n".join(lines))
    assert len(items) == sum(1 for line in lines if line.strip())
    for item in items:
        if isinstance(item, TuneRecord):
            assert storable(json.dumps(item.meta, ensure_ascii=False)) and storable(item.abc)
        else:
            assert item.stage == "read" and item.reason.startswith(("line", "row"))


# Well-formed MusicXML with fuzzed numbers and names, so that xml2abc itself runs on odd scores.
xml_field = st.one_of(
    st.integers(-2, 16).map(str),
    st.integers(-(10**12), 10**12).map(str),
    st.text("0123456789.-eAG", max_size=6),
)
xml_note = st.builds(
    "<note><pitch><step>{}</step><octave>{}</octave></pitch><duration>{}</duration><type>{}</type></note>".format,
    st.one_of(st.sampled_from("ABCDEFG"), xml_field),
    xml_field,
    xml_field,
    st.sampled_from(["quarter", "eighth", "whole", "bogus", ""]),
)
musicxml_scores = st.builds(
    (
        '<score-partwise><part-list><score-part id="P1"><part-name>{}</part-name></score-part></part-list>'
        '<part id="P1"><measure number="1"><attributes><divisions>{}</divisions>'
        "<key><fifths>{}</fifths></key><time><beats>{}</beats><beat-type>{}</beat-type></time></attributes>"
        "{}</measure></part></score-partwise>"
    ).format,
    st.text("abc <>&;", max_size=8),
    xml_field,
    xml_field,
    xml_field,
    xml_field,
    st.lists(xml_note, max_size=6).map("".join),
).map(lambda xml: xml.encode("utf-8"))


@fuzz("formats")
@given(
    st.sampled_from([".musicxml", ".xml", ".mxl", ".mid", ".abc"]),
    st.one_of(
        st.binary(max_size=2000),
        st.sampled_from(
            [b"PK\x03\x04", b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x00\x60", b"<?xml ?>"]
        ).flatmap(lambda head: st.binary(max_size=500).map(lambda rest: head + rest)),
        abc_like_text.map(
            lambda t: f"<score-partwise><part-list/>{t}</score-partwise>".encode("utf-8", "replace")
        ),
        musicxml_scores,
    ),
)
def test_any_bytes_as_a_score_give_tunes_or_a_score_error_naming_the_file(suffix, data):
    try:
        tunes = read_tunes(Path(f"upload{suffix}"), data, timeout=20)
    except ScoreError as err:
        assert f"upload{suffix}" in str(err)
    else:
        assert all(isinstance(t.abc, str) for t in tunes)


# --- corpora -> shards + errors table ---------------------------------------------------------------------

abc_files = st.one_of(
    st.binary(max_size=400), st.lists(some_text, max_size=6).map(lambda texts: encoded("".join(texts)))
)
jsonl_files = st.one_of(
    st.binary(max_size=400),
    st.lists(st.one_of(some_text, json_values), max_size=6).map(
        lambda values: "".join(json.dumps({"abc": v}) + "\n" for v in values).encode()
    ),
)
score_files = st.one_of(st.binary(max_size=400), musicxml_scores)
corpus_files = st.lists(
    st.one_of(
        st.tuples(st.just(".abc"), abc_files),
        st.tuples(st.just(".jsonl"), jsonl_files),
        st.tuples(st.sampled_from([".musicxml", ".mid"]), score_files),
    ),
    min_size=1,
    max_size=4,
)


def embed_and_check(root: Path, encoder: ExactEncoder, shard_rows: int = 7) -> dict:
    """Embed root/in into root/out; check that every tune is in a shard or in the errors table, once."""
    files = expand_inputs([str(root / "in")])
    items = list(read_inputs(files))
    records = {r.id: r for r in items if isinstance(r, TuneRecord)}
    read_failures = [f for f in items if isinstance(f, Failure) and not f.is_note]
    stats = embed_corpus(
        [str(root / "in")], encoder, root / "out", EmbedOptions(workers=0, quiet=True, shard_rows=shard_rows)
    )

    stored = [row for batch in iter_shard_batches(root / "out", ["id", "abc"]) for row in batch.to_pylist()]
    errors = read_errors(root / "out").to_pylist()
    rejected = [e for e in errors if e["stage"] in ("patch", "encode")]
    stored_ids = [row["id"] for row in stored]
    assert len(stored_ids) == len(set(stored_ids)), "a tune was stored twice"
    assert sorted(stored_ids + [e["id"] for e in rejected]) == sorted(records), "a tune was lost"
    assert all(row["abc"] == records[row["id"]].abc for row in stored)
    assert all(e["reason"] for e in errors)
    assert len([e for e in errors if e["stage"] == "read"]) == len(read_failures)
    assert stats.embedded == len(stored) and stats.failed == len(rejected) + len(read_failures)
    return {"stored": len(stored), "rejected": len(rejected) + len(read_failures)}


@fuzz("corpus")
@given(corpus_files)
def test_a_fuzzed_corpus_embeds_every_tune_or_records_why_not(files):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "in").mkdir()
        for i, (suffix, data) in enumerate(files):
            (root / "in" / f"f{i}{suffix}").write_bytes(data)
        embed_and_check(root, ExactEncoder())


# --- the extremes -----------------------------------------------------------------------------------------


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def test_a_10_mb_tune_and_a_100k_character_bar_are_patched_in_bounded_time():
    huge = "X:1\nT:Huge\nK:D\n" + "|".join(["defg abag"] * 1_000_000) + "|\n"
    assert len(huge) > 10_000_000
    patches, seconds = timed(prepare_music, huge, 512)
    assert patches.shape == (512, PATCH_LENGTH) and seconds < 20
    long_bar = "X:1\nK:C\n" + "abcdefg" * 15_000 + "|\n"
    patches, seconds = timed(prepare_music, long_bar, 512)
    assert patches.shape == (3, PATCH_LENGTH) and seconds < 1  # K:, the bar cut at 64, EOS
    patched = patch_abc(huge, 512, "clamp1")
    assert patched.truncated and len(patched.patches) == 512


def test_100k_tunes_in_one_file_are_split_in_bounded_time():
    text = "".join(f"X:{i}\nT:Tune {i}\nK:G\n|GAB cde|\n" for i in range(100_000))
    tunes, seconds = timed(split_tunes, text)
    assert len(tunes) == 100_000 and tunes[-1].meta["title"] == "Tune 99999" and seconds < 20


def test_pathological_corpus_embeds_with_every_rejection_recorded(tmp_path):
    tunes = tmp_path / "in"
    (tunes / "nested").mkdir(parents=True)
    (tunes / "many.abc").write_text(
        "".join(f"X:{i}\nT:Tune {i}\nK:G\n|GAB c{i % 7}e|\n" for i in range(100_000))
    )
    (tunes / "huge.abc").write_text("X:1\nT:Huge\nK:D\n" + "|".join(["defg abag"] * 1_000_000) + "|\n")
    (tunes / "long-bar.abc").write_text("X:1\nT:Long bar\nK:C\n" + "c" * 100_000 + "|\n")
    (tunes / "empty.abc").write_bytes(b"")
    (tunes / "blank.abc").write_bytes(b"\n\n  \n")
    (tunes / "no-headers.abc").write_text("|abc|def|\n")
    (tunes / "no-bars.abc").write_text("X:1\nT:No bar lines\nabc def gab\n")
    (tunes / "title-only.abc").write_text("X:1\nT:Nothing but a title\n")
    (tunes / "nul.abc").write_bytes(b"X:1\nT:Nul\x00s\nK:C\n|a\x00b|\x00\x00|\n")
    (tunes / "latin1.abc").write_bytes("X:1\nT:Caf\xe9\nK:C\n|abc|\n".encode("latin-1"))
    (tunes / "binary.abc").write_bytes(bytes(range(256)) * 40)
    (tunes / "rows.jsonl").write_text('{"abc": "X:1\\nT:\\ud800\\nK:C\\n|a|\\n"}\n' + "[" * 100_000 + "\n")
    (tunes / "a-directory.abc").mkdir()
    (tunes / "a-directory.abc" / "inside.abc").write_text("X:1\nT:Inside\nK:C\n|cde|\n")
    (tunes / "loop-a.abc").symlink_to("loop-b.abc")
    (tunes / "loop-b.abc").symlink_to("loop-a.abc")
    (tunes / "nested" / "up").symlink_to("..", target_is_directory=True)  # a directory loop
    (tunes / "dangling.abc").symlink_to("missing.abc")

    found = {p.name for p in expand_inputs([str(tunes), str(tunes / "loop-a.abc")])}
    assert "a-directory.abc" not in found and {"inside.abc", "loop-a.abc", "dangling.abc"} <= found
    counts, seconds = timed(embed_and_check, tmp_path, ExactEncoder(), 50_000)
    assert counts["stored"] > 100_000 and seconds < 120
    errors = read_errors(tmp_path / "out").to_pylist()
    reasons = {(Path(e["source"]).name, e["tune_index"]): e["reason"] for e in errors}
    assert "no music" in reasons[("title-only.abc", 0)]
    assert "no music" in reasons[("no-bars.abc", 0)]
    assert (
        "symbolic links" in reasons[("loop-a.abc", None)]
        and "No such file" in reasons[("dangling.abc", None)]
    )
    assert "not valid Unicode" in reasons[("rows.jsonl", 0)] and "recursion" in reasons[("rows.jsonl", 1)]
    assert "Latin-1" in reasons[("latin1.abc", None)]  # a note: the tune is still embedded
    assert "binary data" in reasons[("nul.abc", 0)] and "binary data" in reasons[("binary.abc", 0)]
    stored = {
        row["source"].rsplit("/", 1)[1]
        for b in iter_shard_batches(tmp_path / "out", ["source"])
        for row in b.to_pylist()
    }
    assert {"huge.abc", "long-bar.abc", "latin1.abc", "inside.abc", "no-headers.abc"} <= stored
    assert not {"empty.abc", "blank.abc"} & stored and not {"empty.abc", "blank.abc"} & {
        n for n, _ in reasons
    }


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this OS")
def test_a_fifo_named_like_a_tune_file_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "pipe.abc"
    os.mkfifo(fifo)
    [failure] = read_inputs([fifo])
    assert "not a regular file" in failure.reason


def test_a_zip_bomb_mxl_is_refused_before_it_is_unpacked(monkeypatch):
    monkeypatch.setattr(formats, "MAX_UNPACKED_BYTES", 1 << 20)  # in this process: timeout=None below
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as mxl:
        mxl.writestr("score.xml", b"<score-partwise>" + b" " * (8 << 20) + b"</score-partwise>")
    assert len(archive.getvalue()) < 20_000  # 8 MB of XML in a few kB
    with pytest.raises(ScoreError, match=r"bomb\.mxl.*score\.xml in the \.mxl archive unpacks to \d+ bytes"):
        read_tunes(Path("bomb.mxl"), archive.getvalue(), timeout=None)
