"""Standard ABC -> interleaved ABC, against the spec's worked examples (clamp2-3-spec §10.2, §15)."""

from __future__ import annotations

import pytest
from test_m3_patching import MORNING_AIR, TWO_VOICES

from runtime.music.interleave import InterleaveError, interleave_abc

MORNING_AIR_STANDARD = (  # xml2abc -d 8 -x of the §15.1 score
    "X:1\nT:Morning Air\nT:Morning Air\nC:Anon\nL:1/8\nQ:1/4=100\nM:4/4\nK:G\n"
    'V:1 treble nm="Violin" snm="Vln"\nV:1\n'
    '"G" G2 A2 B2 G2 | d2 B2 G2 B2 |"D7" A2 F2 D2 F2 | G4 G4 |] %4\n\n'
)
TWO_VOICES_STANDARD = (  # §15.2
    "X:1\nT:Two Voices\nT:Two Voices\nC:Music21\n%%score 1 2\nL:1/8\nM:3/4\nK:D\n"
    'V:1 treble nm="Flute" snm="Fl"\nV:2 bass nm="Violoncello" snm="Vc"\n'
    "V:1\n f2 e2 d2 | a4 f2 | d6 |] %3\nV:2\n D,6 | A,,6 | D,6 |] %3\n"
)


def test_single_voice_score_interleaves_as_the_spec_shows():
    assert interleave_abc(MORNING_AIR_STANDARD) == MORNING_AIR


def test_two_voices_interleave_bar_by_bar():
    assert interleave_abc(TWO_VOICES_STANDARD) == TWO_VOICES


def test_hand_written_abc_without_voices_gets_a_first_voice():
    folk = "X:1\nT:A Reel\nM:4/4\nL:1/8\nR:reel\nK:D\n|:d2fd AdFA|d2fd e2ge:|\n"
    out = interleave_abc(folk)
    assert "T:" not in out and "X:" not in out
    assert out.splitlines()[-2:] == ["[V:1]|:d2fd AdFA|", "[V:1]d2fd e2ge:|"]


def test_leading_rest_bars_are_stripped_across_voices():
    abc = "L:1/8\nM:2/4\nK:C\nV:1\nV:2\nV:1\nz4 | C2D2 | E4 |]\nV:2\nz4 | C,4 | C,4 |]\n"
    assert interleave_abc(abc).splitlines()[-2:] == ["[V:1]C2D2|[V:2]C,4|", "[V:1]E4|][V:2]C,4|]"]


def test_voices_of_different_bar_counts_are_refused():
    abc = "L:1/8\nM:2/4\nK:C\nV:1\nV:2\nV:1\nC4 | D4 | E4 |]\nV:2\nC,4 | C,4 |]\n"
    with pytest.raises(InterleaveError):
        interleave_abc(abc)
