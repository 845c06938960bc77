"""Bar patching is CLaMP 1's, character for character (spec §2.2-2.4)."""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from unidecode import unidecode

from runtime.music.patching import (
    EOS_ID,
    PATCH_LENGTH,
    abc_filter,
    decode_patches,
    patchilize,
    prepare_music,
    segments,
    split_bars,
)

WIKIMT_HEAD = (
    'L:1/8\nQ:1/4=165\nM:4/4\nK:F\nV:1 treble nm="Voice" snm="Vo."\nV:1\n'
    '"^Fj""^=165""^Fast" B f3- f4 |"Cm7" d3 c-"F9" c4- |"Bb6" c2 (3_A=AG- G4 |"Eb9" (3AAG- G6 |\n'
)


class ReleasedPatchilizer:
    """A literal transcription of the released `MusicPatchilizer` (spec §2.3), used as the oracle."""

    delimiters = "|:", "::", ":|", "[|", "||", "|]", "|"
    pattern = "(" + "|".join(map(re.escape, delimiters)) + ")"

    def split_bars(self, body):
        bars = [b for b in re.split(self.pattern, body) if b != ""]
        if bars[0] in self.delimiters:
            bars[1] = bars[0] + bars[1]
            bars = bars[1:]
        return [bars[i * 2] + bars[i * 2 + 1] for i in range(int(len(bars) / 2))]

    def bar2patch(self, bar):
        patch = [0] * 64
        for i in range(min(64, len(bar))):
            if 32 <= ord(bar[i]) < 127:
                patch[i] = ord(bar[i]) - 31
        if i + 1 < 64:
            patch[i + 1] = 97
        return patch

    def encode(self, music, music_length):
        lines = unidecode(music).split("\n")
        if "" in lines:
            lines.remove("")
        body, patches = "", []
        for line in lines:
            if len(line) > 1 and ((line[0].isalpha() and line[1] == ":") or line.startswith("%%score")):
                if body != "":
                    patches += [self.bar2patch(b) for b in self.split_bars(body)]
                    body = ""
                patches.append(self.bar2patch(line))
            else:
                body += line
        if body != "":
            patches += [self.bar2patch(b) for b in self.split_bars(body)]
        return (patches + [[97] * 64])[:music_length]


def test_worked_examples_of_the_spec():
    patches = patchilize(WIKIMT_HEAD, 512)
    assert patches[0][:8].tolist() == [45, 27, 18, 16, 25, 97, 0, 0]  # L:1/8
    assert patches[1][:8].tolist() == [50, 27, 18, 16, 21, 30, 18, 23]  # Q:1/4=165
    assert patches[4][:8].tolist() == [55, 27, 18, 1, 85, 83, 70, 67]  # V:1 treble nm=...
    assert patches[6][:8].tolist() == [3, 63, 39, 75, 3, 3, 63, 30]  # "^Fj""^=165""^Fast" B f3- f4 |
    assert decode_patches(patches)[6] == '"^Fj""^=165""^Fast" B f3- f4 |'
    assert (patches[-1] == EOS_ID).all() and patches.shape == (11, PATCH_LENGTH) and patches.dtype == np.uint8


def test_bar2patch_short_bar_gets_eos_and_padding():
    assert patchilize("ab|\n", None, add_eos_patch=False)[0][:5].tolist() == [66, 67, 93, 97, 0]


def test_bar_of_64_or_more_characters_is_cut_without_eos():
    bar = "A" * 70 + "|"
    row = patchilize(bar + "\n", None, add_eos_patch=False)[0]
    assert row.tolist() == [34] * 64


def test_leading_bar_line_sticks_to_first_bar_and_trailing_fragment_is_dropped():
    assert split_bars("|:ABc|def:|gab") == ["|:ABc|", "def:|"]
    assert split_bars("ABC DEF") == []  # no bar line: no bars at all
    assert split_bars("|") == []  # the released code crashes here; we yield nothing


def test_header_lines_flush_the_body_and_become_one_patch():
    abc = "K:G\nAB|cd|\nK:D\nef|\n%%score (1 2)\ngg|"
    assert decode_patches(patchilize(abc, None, add_eos_patch=False)) == [
        "K:G",
        "AB|",
        "cd|",
        "K:D",
        "ef|",
        "%%score (1 2)",
        "gg|",
    ]


def test_lines_of_the_body_are_concatenated_without_separator():
    assert decode_patches(patchilize("AB\nC|D\n|", None, add_eos_patch=False)) == ["ABC|", "D|"]


def test_head_truncation_drops_the_eos_patch():
    abc = "".join(f"A{i}|" for i in range(20))
    assert (patchilize(abc, 21)[-1] == EOS_ID).all()
    cut = patchilize(abc, 5)
    assert cut.shape == (5, 64) and not (cut[-1] == EOS_ID).all()


def test_non_ascii_goes_through_unidecode_and_controls_become_pad():
    row = prepare_music('K:C\n"Caf\u00e9" c\tc|\n', 512)[1]
    assert decode_patches(row[None])[0] == '"Cafe" c'  # decoding stops at the PAD left by the tab
    assert row[8] == 0 and row[9] == ord("c") - 31


def test_abc_filter_strips_metadata_comments_and_keeps_music():
    abc = (
        "X:1\nT:Title\nC:Someone\nO:Ireland\nR:jig\nG:group\nZ:me\n%comment\n%%MIDI program 1\n"
        "%%score 1\nM:6/8\nK:D\nGAB cde | %3\n\nw: la la\n"
    )
    assert abc_filter(abc) == "%%score 1\nM:6/8\nK:D\nGAB cde |\n\n\n"


def test_music_line_starting_with_note_g_survives_the_filter():
    """Deviation from the released code on purpose: only `G:` header lines are dropped."""
    assert "GABc|" in abc_filter("K:G\nGABc|\n")


@pytest.mark.parametrize("max_patches", [512, 8])
def test_matches_the_released_patchilizer_on_real_tunes(max_patches):
    music21 = pytest.importorskip("music21")
    from runtime.music.abc import split_tunes

    oracle = ReleasedPatchilizer()
    checked = 0
    for path in music21.corpus.getPaths(fileExtensions=("abc",))[::10]:
        for tune in split_tunes(open(path, encoding="latin-1").read())[:10]:
            filtered = abc_filter(unidecode(tune.abc))
            expected = oracle.encode(filtered, max_patches)
            assert prepare_music(tune.abc, max_patches).tolist() == expected, (path, tune.index)
            checked += 1
    assert checked > 150


def test_segments_cover_long_pieces_with_length_weights():
    patches = np.arange(25)[:, None].repeat(64, 1).astype(np.uint8)
    windows, weights = segments(patches, 10)
    assert [w[0, 0] for w in windows] == [0, 10, 15] and weights.tolist() == [10, 10, 5]
    assert segments(patches[:7], 10)[1].tolist() == [1.0]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=3000), st.integers(min_value=1, max_value=600))
def test_any_text_gives_valid_patch_ids(text, max_patches):
    patches = prepare_music(text, max_patches)
    assert patches.dtype == np.uint8 and patches.ndim == 2 and patches.shape[1] == 64
    assert 1 <= len(patches) <= max_patches
    assert patches.max(initial=0) <= 97
