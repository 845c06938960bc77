"""Notation variants and the round-trip cache: what v2 trains on and `clamp eval` measures."""

import json

from runtime.music.lengths import length_of
from training.corpus import load_corpus
from training.roundtrip import cache_file, chosen_tunes, read_cache, round_trip
from training.variants import (
    bar_per_line,
    header_order,
    key_spelling,
    meter_symbol,
    no_chords,
    unit_rescale,
    variants_of,
)

TUNE = 'X:1\nT:T\nM:C\nL:1/8\nQ:1/4=100\nK:Ador\n"Am"A>B c/d/e | [Ac]2 z2 !trill!g2 a2 :|\n'


def test_each_textual_variant_rewrites_only_its_own_notation():
    assert header_order(TUNE).split("\n")[:6] == ["X:1", "T:T", "Q:1/4=100", "L:1/8", "M:C", "K:Ador"]
    assert "K:A dorian" in key_spelling(TUNE) and "K:E minor" in key_spelling(TUNE.replace("Ador", "Em"))
    assert "M:4/4" in meter_symbol(TUNE) and meter_symbol(meter_symbol(TUNE)) == TUNE
    assert '"Am"' not in no_chords(TUNE) and "!trill!" in no_chords(TUNE)
    assert bar_per_line(TUNE).endswith('K:Ador\n"Am"A>B c/d/e |\n[Ac]2 z2 !trill!g2 a2 :|\n')


def test_halving_the_unit_doubles_every_length_and_keeps_the_durations():
    halved = unit_rescale(TUNE)
    assert "L:1/16" in halved
    assert halved.endswith('"Am"A2>B2 cde2 | [A2c2]2 z4 !trill!g4 a4 :|\n')  # chord symbol, decoration intact
    for before, after in (("", "2"), ("/", ""), ("3/2", "3"), ("/4", "/")):
        assert length_of(after) == 2 * length_of(before)


def test_variants_of_a_tune_include_its_cached_round_trips_and_never_the_tune_itself():
    found = variants_of(TUNE, {"musicxml": "X:1\nK:Ador\nA3/2B/ c/d/e|\n", "midi": None})
    assert "MusicXML round trip" in found and "MIDI round trip" not in found
    assert TUNE not in found.values()
    assert "chord symbols removed" not in variants_of(no_chords(TUNE))  # nothing to remove: no variant


def test_the_round_trip_sample_is_fixed_and_the_cache_resumes(tmp_path):
    tunes = load_corpus(collections=("miscFolk",))
    sample = chosen_tunes(tunes, {"eval": 3, "train": 4})
    assert [t.split for t in sample] == ["eval"] * 3 + ["train"] * 4
    assert [t.id for t in chosen_tunes(list(reversed(tunes)), {"eval": 3, "train": 4})] == [
        t.id for t in sample
    ]
    path = cache_file(tmp_path)
    back = round_trip(sample[0].abc, "midi")
    assert "|" in back and "K:" in back  # MIDI written by music21, read back by lytk + xml2abc
    path.write_text(
        json.dumps({"id": sample[0].id, "musicxml": None, "midi": back}) + "\n" + '{"id": "x", "mus'
    )
    assert read_cache(path) == {sample[0].id: {"musicxml": None, "midi": back}}
