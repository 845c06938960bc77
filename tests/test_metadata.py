"""Canonical metadata: golden key and meter spellings (all of music21's ABC corpus), comments, collection."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from music21 import corpus

from runtime.music.abc import split_tunes
from runtime.music.formats import decode_bytes
from runtime.music.metadata import (
    canonical_fields,
    canonical_key,
    canonical_meter,
    canonical_value,
    clean_text,
)

GOLDEN_KEYS = {
    "G": "G major", "D Major": "D major", "Bb": "Bb major", "F#": "F# major", "Db": "Db major",
    "Em": "E minor", "Emin": "E minor", "E minor": "E minor", "E Minor": "E minor", "EMin": "E minor",
    "EM": "E minor", "Em % comment": "E minor", "A min -8va": "A minor", "A min bass": "A minor",
    "F#m": "F# minor", "F# Minor": "F# minor", "Amin": "A minor", "Aaeolian": "A minor",
    "Ador": "A dorian", "ADor": "A dorian", "A Dorian % Aird has it as mixolydian": "A dorian",
    "EDorian": "E dorian", "G dor -8va": "G dorian", "Bphr": "B phrygian", "E phr bass": "E phrygian",
    "E phrygian": "E phrygian", "Glyd": "G lydian", "F lyd": "F lydian", "Glydian": "G lydian",
    "Dmix": "D mixolydian", "AMix": "A mixolydian", "G mix treble8": "G mixolydian",
    "Dmix %D Minor?": "D mixolydian", "A Mixolydian": "A mixolydian", "Bloc": "B locrian",
    "C ionian": "C major", "F -8va": "F major", "G % pentatonic -47": "G major", "G clef=bass": "G major",
    "G bass": "G major", "D m=C": "D major", "D exp ^f _b": "D", "none": "none", "Hp": "highland pipes",
    "HP": "highland pipes", "Bn": None, "Es": None, "H": None, "": None, "% only a comment": None,
}  # fmt: skip
GOLDEN_METERS = {
    "6/8": "6/8", "C": "4/4", "C|": "2/2", "none": "none", "FREI4/4": "none",
    "9/8 % Aird bars it in 6/8": "9/8", "2/2]": "2/2", "2+3/8": "2+3/8", "(2 + 3) / 8": "(2+3)/8", "": None,
}  # fmt: skip
CANONICAL_KEY = re.compile(r"[A-G][#b]? (major|minor|dorian|phrygian|lydian|mixolydian|locrian)")


@pytest.mark.parametrize(("raw", "canonical"), GOLDEN_KEYS.items())
def test_every_abc_key_spelling_has_one_canonical_form(raw, canonical):
    assert canonical_key(raw) == canonical


@pytest.mark.parametrize(("raw", "canonical"), GOLDEN_METERS.items())
def test_meters_are_fractions_with_common_time_spelled_out(raw, canonical):
    assert canonical_meter(raw) == canonical


def test_every_key_in_music21s_abc_corpus_is_tonic_and_mode_but_three_non_abc_spellings():
    root = Path(corpus.__file__).parent
    unreadable, keys = set(), 0
    for path in root.rglob("*.abc"):
        for tune in split_tunes(decode_bytes(path.read_bytes())[0]):
            if "key" in tune.meta:
                keys += 1
                key = canonical_key(tune.meta["key"])
                if not (key in ("none", "highland pipes") or CANONICAL_KEY.fullmatch(key or "")):
                    unreadable.add(tune.meta["key"])
    assert keys > 12_000 and unreadable == {"Bn", "H", "Es"}  # German note names, a typo: kept in raw.key


def test_text_fields_lose_comments_spacing_and_essens_stray_bracket():
    assert clean_text("Gloomy Winter % [Robert Tannahill]") == "Gloomy Winter"
    assert clean_text("  100\\% Irish   reel ") == "100% Irish reel"
    assert clean_text("Singendes Volk, 1937 posth.]") == "Singendes Volk, 1937 posth."
    assert clean_text("[Niel Gow]") == "[Niel Gow]"
    assert clean_text("% nothing") is None


def test_canonical_fields_of_a_tune_and_its_collection():
    meta = {
        "title": "Tune % a note",
        "rhythm": "Reel",
        "key": "Ador",
        "meter": "C|",
        "book": "O'Neill's 1116",
    }
    fields = canonical_fields(meta, "/corpus/oneills1850/1116-1135_mh.abc")
    assert fields == {
        "title": "Tune", "composer": None, "origin": None, "rhythm": "reel", "key": "A dorian",
        "meter": "2/2", "collection": "oneills1850",
    }  # fmt: skip
    assert canonical_fields({"collection": "Session % x"}, "rows.jsonl")["collection"] == "Session"
    assert canonical_fields({}, "tune.abc")["collection"] is None


def test_filter_values_are_read_like_the_field():
    assert canonical_value("key", "Em") == "E minor" and canonical_value("meter", "C") == "4/4"
    assert canonical_value("key", "E min") == "E minor" and canonical_value("key", "Bn") == "Bn"
    assert canonical_value("title", "Em") == "Em" and canonical_value("rhythm", "Reel") == "reel"
