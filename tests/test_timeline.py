"""The canonical spelling's timeline: what a MIDI file keeps of a tune reads the same as the tune."""

import pytest

from runtime.music.canonical import canonical_abc
from runtime.music.timeline import Unreadable, key_alterations, major_with_signature, timeline
from training.corpus import load_corpus
from training.roundtrip import round_trip

HEAD = "X:1\nM:2/4\nL:1/8\nK:D\n"


def body(abc: str) -> str:
    return canonical_abc(abc).split("K:", 1)[1].split("\n", 1)[1]


def same(a: str, b: str) -> None:
    assert canonical_abc(HEAD + a) == canonical_abc(HEAD + b)


def test_a_pickup_is_cut_as_a_midi_reader_cuts_it():
    # As written (pickup A) and as a MIDI reader bars it from the first note, with ties.
    same("A|d2 fe|d4|]", "Ad2f|ed3-|d|")
    assert body(HEAD + "A|d2 fe|d4|]") == "Ad2f|ed3-|d|\n"


def test_repeats_as_signs_or_written_out_read_as_the_part_once():
    part = "DEFG|ABcd|"
    same(f"|:{part}:|", part + part)
    same(f"|:{part}:|", part)
    same(f"|:{part}:||:efga|b4:|", part + part + "efga|b4|efga|b4|")
    # music21 plays `:|` without `|:` back to the start: AABAAB also reads as AB.
    same(f"{part}:|efga|b4:|", part + part + "efga|b4|" + part + part + "efga|b4|")


def test_first_and_second_endings_are_played_out():
    same("|:DEFG|[1ABcd:|[2agfe|]", "DEFG|ABcd|DEFG|agfe|")


def test_pitches_are_spelled_by_their_sound_and_accidentals_by_the_bar():
    # The accidental of bar 1 does not reach bar 2; moving bar lines must not change which notes it holds.
    assert body(HEAD + "ABc|d=cBc|cd2e|]") == "ABcd|=cBc^c|d2e|\n"
    same("_B G A2|]", "^A G =A2|]")  # one sound, one spelling (flats in flat keys, sharps in sharp keys)
    same("^F A G2|]", "F A G2|]")  # F is already sharp in D
    assert body("X:1\nM:2/4\nL:1/8\nK:F\nA^A B2|]") == "ABB2|\n"  # A sharp is the key's B flat


def test_ties_of_one_pitch_merge_and_notes_split_only_at_bar_lines():
    same("d2-d2|e4|]", "d4|e2-e2|]")
    same("d4-|d2e2|]", "d6e2|]")  # a long note crossing a bar line is tied there either way
    assert body(HEAD + "d6e2|]") == "d4-|d2e2|\n"


def test_silence_and_padding_are_no_part_of_the_tune():
    same("z4|z2 A2|d4|]", "A2d2-|d2|]")
    same("A2d2|d2 z2|]", "A2d2|d2|]")
    assert canonical_abc(HEAD + "A2 d2|d2 x2|]") == canonical_abc(HEAD + "A2 d2|d2|]")  # xml2abc's padding


def test_restated_keys_tempo_and_meter_changes_are_dropped():
    same("DEFG|[K:D][Q:1/4=120]ABcd|", "DEFG|ABcd|")
    same("DEFG|[M:3/4]ABc|d|", "DEFG|ABcd|")  # bars counted at the header meter
    assert "[K:G]" in body(HEAD + "DEFG|[K:G]ABcf|")


def test_tuplets_stay_whole():
    same("(3DEF G|A4|]", "(3DEF G|A4|]")
    assert body(HEAD + "A(3DEF G|A3|]") == "A(3DEFG|A3|\n"  # the group overruns the bar line, kept whole


@pytest.mark.parametrize(
    "abc",
    [
        "X:1\nM:none\nL:1/8\nK:D\nA|d2 fe|d4|]\n",  # free meter
        "X:1\nM:2/4\nL:1/8\nK:D\nA|d2 & fe|d4|]\n",  # voice overlay
        "X:1\nM:2/4\nL:1/8\nK:Hp\nA|B|\n",  # a bagpipe key
    ],
)
def test_a_body_it_cannot_read_keeps_its_bars(abc):
    assert body(abc).startswith("A|")


def test_voices_are_left_to_the_canonical_spelling():
    two = "X:1\nM:2/4\nL:1/8\nK:G\nV:1\nG|AB cd|\nV:2\nG,|A,2 D,2|\n"
    assert "G|ABcd|" in canonical_abc(two)


def test_keys_and_meters():
    assert key_alterations("Bb") == {"C": 0, "D": 0, "E": -1, "F": 0, "G": 0, "A": 0, "B": -1}
    assert key_alterations("F#m")["C"] == 1 and key_alterations("F#m")["D"] == 0
    assert [major_with_signature(f) for f in (-3, 0, 2, 6)] == ["Eb", "C", "D", "F#"]
    with pytest.raises(Unreadable):
        timeline("A|", "D", "none")


def test_a_real_midi_round_trip_reads_as_the_original():
    """ABC -> MIDI (music21) -> our MIDI reader: the pickup bar, the repeats and the spelling are gone, and
    the tune still reads identically."""
    tunes = load_corpus(collections=("oneills1850",))
    tune = next(t for t in tunes if t.meta.get("title") == "Good Morning Fair Maid")
    assert tune.abc.split("K:")[1].startswith("G\nG/2A/2 |")  # a pickup, then bars of 3/4
    converted = round_trip(tune.abc, "midi")
    assert ":|" not in converted and "|:" not in converted
    assert canonical_abc(converted).split("K:")[1] == canonical_abc(tune.abc).split("K:")[1]
