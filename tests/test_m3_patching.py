"""M3 patching (CLaMP 2 / CLaMP 3) against the spec's worked examples (clamp2-3-spec §11, §15), edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.music.m3 import (
    BOS_ID,
    CLAMP2,
    CLAMP3,
    EOS_ID,
    PATCH_SIZE,
    M3PatchError,
    decode_m3_patches,
    m3_patchilize,
    patch_strings,
)

MORNING_AIR = (  # §15.1, interleaved
    "L:1/8\nQ:1/4=100\nM:4/4\nK:G\n"
    'V:1 treble nm="Violin" snm="Vln"\n'
    '[V:1]"G" G2 A2 B2 G2|\n[V:1]d2 B2 G2 B2|\n[V:1]"D7" A2 F2 D2 F2|\n[V:1]G4 G4|]\n'
)
TWO_VOICES = (  # §15.2, interleaved
    "%%score 1 2\nL:1/8\nM:3/4\nK:D\n"
    'V:1 treble nm="Flute" snm="Fl"\nV:2 bass nm="Violoncello" snm="Vc"\n'
    "[V:1]f2 e2 d2|[V:2]D,6|\n[V:1]a4 f2|[V:2]A,,6|\n[V:1]d6|][V:2]D,6|]\n"
)


def eos_at(row: np.ndarray) -> int:
    return int(np.flatnonzero(row == EOS_ID)[0])


def test_single_voice_clamp3_patches_and_ids_match_the_spec():
    ids = m3_patchilize(MORNING_AIR, CLAMP3)
    assert ids.shape == (10, PATCH_SIZE) and ids.dtype == np.uint8
    assert (ids[0] == BOS_ID).all()
    assert ids[-1][0] == BOS_ID and (ids[-1][1:] == EOS_ID).all()
    assert decode_m3_patches(ids)[1:-1] == [
        "Q:1/4=100\n",
        "M:4/4\n",
        "K:G\n",
        'V:1 treble nm="Violin" snm="Vln"\n',
        '[V:1]"G" G2 A2 B2 G2|\n',
        "[V:1]d2 B2 G2 B2|\n",
        '[V:1]"D7" A2 F2 D2 F2|\n',
        "[V:1]G4 G4|]\n",
    ]
    assert ids[1][:10].tolist() == [1, 81, 58, 49, 47, 52, 61, 49, 48, 48]
    assert ids[3][:10].tolist() == [1, 75, 58, 71, 10, 2, 0, 0, 0, 0]
    assert ids[5][:10].tolist() == [1, 91, 86, 58, 49, 93, 34, 71, 34, 32]
    assert [eos_at(row) for row in ids[1:-1]] == [11, 7, 5, 34, 23, 19, 24, 14]


def test_clamp2_keeps_the_unit_length_header_as_a_patch():
    ids = m3_patchilize(MORNING_AIR, CLAMP2)
    assert len(ids) == 11
    assert ids[1][:10].tolist() == [1, 76, 58, 49, 47, 56, 10, 2, 0, 0]


def test_two_voices_one_patch_per_voice_bar_and_only_the_last_voice_ends_the_line():
    texts = patch_strings(TWO_VOICES, CLAMP3)
    assert len(texts) + 2 == 13
    assert texts[5:] == [
        "[V:1]f2 e2 d2|",
        "[V:2]D,6|\n",
        "[V:1]a4 f2|",
        "[V:2]A,,6|\n",
        "[V:1]d6|]",
        "[V:2]D,6|]\n",
    ]
    ids = m3_patchilize(TWO_VOICES, CLAMP3)
    assert [eos_at(row) for row in ids[6:12]] == [15, 11, 12, 12, 10, 12]


def test_standard_abc_fed_directly_keeps_its_headers_and_drops_the_bar_count_tail():
    standard = (
        "X:1\nT:Morning Air\nT:Morning Air\nC:Anon\nL:1/8\nQ:1/4=100\nM:4/4\nK:G\n"
        'V:1 treble nm="Violin" snm="Vln"\nV:1\n'
        '"G" G2 A2 B2 G2 | d2 B2 G2 B2 |"D7" A2 F2 D2 F2 | G4 G4 |] %4\n\n'
    )
    texts = patch_strings(standard, CLAMP3)
    assert len(texts) + 2 == 15
    assert texts[-4:] == ['"G" G2 A2 B2 G2 |', " d2 B2 G2 B2 |", '"D7" A2 F2 D2 F2 |', " G4 G4 |]\n"]


@pytest.mark.parametrize(
    ("line", "bars"),
    [
        ("[V:1]|:A|\n", ["[V:1]|:", "A|\n"]),  # a first left repeat splits off as its own patch
        ("[V:1]G6:|]\n", ["[V:1]G6:|\n"]),  # `:|]` is `:|` + a `]` that starts an unpaired tail: dropped
        ("|A B|c d\n", ["|A B|\n"]),  # a leading bar line sticks to the first bar; unbarred tail dropped
        ("no bar lines here\n", []),
        ("%comment | with a bar\n", ["%comment |\n"]),  # `%` lines that are not `%%` are body lines
        # a volta digit after a bar line moves to the next voice's patch; the last voice's is lost (§11.3)
        ('[V:1]"^rit." c2 B2 A2|1[V:2]C,6|\n', ['[V:1]"^rit." c2 B2 A2|', "1[V:2]C,6|\n"]),
        ("[V:1]G6:|2[V:2]G,,6:|2\n", ["[V:1]G6:|", "2[V:2]G,,6:|\n"]),
        ("[V:1][K:D] d6|][V:2][K:D] D,6|]\n", ["[V:1][K:D] d6|]", "[V:2][K:D] D,6|]\n"]),
    ],
)
def test_body_line_bar_splitting(line, bars):
    assert patch_strings(line, CLAMP3) == bars


def test_unit_length_is_dropped_only_as_the_exact_substring():
    assert patch_strings("L:1/8\nL:1/16\nL:1/8", CLAMP3) == ["L:1/16\n", "L:1/8"]


def test_patch_text_of_62_63_and_more_characters():
    assert eos_at(m3_patchilize("T:" + "a" * 60)[1]) == 63  # 62 characters keep their EOS
    row63 = m3_patchilize("T:" + "a" * 61)[1]
    assert EOS_ID not in row63[1:].tolist() and row63[-1] == ord("a")
    row_long = m3_patchilize("T:" + "b" * 200)[1]
    assert decode_m3_patches(row_long[None])[0] == ("T:" + "b" * 200)[:63]


def test_non_ascii_is_transliterated_before_patching():
    assert patch_strings("T:中 é½\n", CLAMP3) == ["T:Zhong  e 1/2\n"]


@pytest.mark.parametrize("text", ["", "|]"])
def test_inputs_the_official_patcher_crashes_on_are_named_errors(text):
    with pytest.raises(M3PatchError):
        m3_patchilize(text)


MTF = (  # §15.3, CLaMP 3 MTF
    "ticks_per_beat 480\nset_tempo 500000 0\ntime_signature 4 4 24 8 0\nkey_signature G 0\n"
    "sysex 0 [65, 16, 66, 18, 64, 0, 127, 0, 65]\nprogram_change 0 0 0\n"
    "note_on 0 0 67 80\nnote_on 0 0 71 80\nnote_on 0 0 74 80\n"
    "note_off 480 0 67 0\nnote_off 0 0 71 0\nnote_off 0 0 74 0\n"
    "note_on 0 0 69 72\nnote_on 240 0 69 0\nend_of_track 240"
)


def test_mtf_patches_merge_consecutive_messages_of_one_type():
    ids = m3_patchilize(MTF, CLAMP3)
    assert len(ids) == 12
    texts = decode_m3_patches(ids)[1:-1]
    assert texts[6:] == [
        "note_on 0 0 67 80\t0 0 71 80\t0 0 74 80\n",
        "note_off 480 0 67 0\t0 0 71 0\t0 0 74 0\n",
        "note_on 0 0 69 72\t240 0 69 0\n",
        "end_of_track 240",
    ]
    assert [eos_at(row) for row in ids[1:-1]] == [20, 20, 27, 19, 45, 22, 39, 39, 30, 17]


def test_mtf_merge_limit_is_62_characters():
    lines = "\n".join(f"note_on 0 0 {60 + i} 80" for i in range(7))
    texts = patch_strings("ticks_per_beat 480\n" + lines + "\n", CLAMP3)
    assert [t.count("\t") + 1 for t in texts[1:]] == [5, 2]
    assert [len(t) for t in texts[1:]] == [58, 28]


def test_an_unmerged_long_mtf_line_is_cut_without_its_eos():
    sysex = "sysex 0 [" + ", ".join(["65"] * 20) + "]\n"
    row = m3_patchilize("ticks_per_beat 96\n" + sysex)[2]
    assert decode_m3_patches(row[None])[0] == sysex[:63] and EOS_ID not in row[1:].tolist()


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_any_text_gives_valid_ids_or_a_named_error(text):
    try:
        ids = m3_patchilize(text)
    except M3PatchError:
        return
    assert ids.dtype == np.uint8 and ids.shape[1] == PATCH_SIZE and len(ids) >= 2
    assert int(ids.max()) < 128
