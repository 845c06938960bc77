"""The default family's canonical spelling: notation that does not change the music patches identically."""

import numpy as np
import pytest

from runtime.music.canonical import canonical_abc, canonical_key
from runtime.music.lengths import length_of, length_text
from runtime.music.profiles import PROFILES
from training.corpus import load_corpus
from training.roundtrip import round_trip
from training.variants import TEXTUAL, variants_of

WRITTEN = """X:1
T:The Test Reel
M:C|
L:1/8
R:reel
K:E minor
"Em"E>F GA !trill!B2 {c}BA | (3Bcd .e~f g2 fe :|
|: [EG]2 B>c d2 cB | A2 F2 E4 |]
"""
# The same music as another program writes it: other header order, unit 1/16, words for the mode,
# chords and decorations gone, broken rhythm as lengths, one bar per line, a lone voice, an I: line.
REWRITTEN = """X:7
T:The Test Reel
L:1/16
I:linebreak $
M:2/2
V:1 treble nm="Violin"
K:Em
V:1
E3F G2A2 B4 B2A2 |
(3B2c2d2 e2f2 g4 f2e2 :|
|: [E2G2]2 B3c d4 c2B2 |\\
 A4 F4 E8 |]
"""


def patches(abc: str):
    return PROFILES["clamp1-canonical"].abc_patches(abc, 512)


def test_the_same_music_written_differently_patches_identically():
    model_text = PROFILES["clamp1-canonical"].model_text  # CLaMP's filter (no X:, T:, R:), then ours
    assert model_text(WRITTEN) == model_text(REWRITTEN)
    assert (patches(WRITTEN) == patches(REWRITTEN)).all()


@pytest.mark.parametrize(
    ("changed", "by"),
    [
        ("GA !trill!B2", "GA !trill!B3"),
        ("GA !trill!B2", "GA !trill!^B2"),
        ("d2 cB", "d2 c'B"),
        ("F2 E4", "F2 D4"),
    ],
)
def test_what_changes_the_music_still_changes_the_patches(changed, by):
    assert changed in WRITTEN
    assert canonical_abc(WRITTEN.replace(changed, by)) != canonical_abc(WRITTEN)


def test_every_textual_variant_of_real_tunes_patches_like_the_original():
    tunes = load_corpus(collections=("miscFolk",))[:60]
    differing = {name: 0 for name in TEXTUAL}
    for tune in tunes:
        for name, text in variants_of(tune.abc).items():
            differing[name] += not np.array_equal(patches(text), patches(tune.abc))
    assert not any(differing.values()), differing


def test_keys_lengths_and_voices():
    assert [canonical_key(k) for k in ("E minor", "Emin", "E aeolian", "G major", "D Mixolydian", "Bb")] == [
        "Em", "Em", "Em", "G", "G", "Bb"
    ]  # fmt: skip
    assert [canonical_key(k) for k in ("A dorian", "Bbmix", "F#loc", "Hp")] == ["G", "Eb", "G", "Hp"]
    assert [length_of(t) for t in ("", "3", "/", "//", "3/2", "/4")] == [1, 3, 0.5, 0.25, 1.5, 0.25]
    assert [length_text(length_of(t)) for t in ("", "3", "/", "3/2", "/4")] == ["", "3", "/", "3/", "/4"]
    two_voices = "X:1\nM:2/4\nL:1/8\nK:G\nV:1 treble\nV:2 bass\nV:1\nGA Bc|\nV:2\nG,2 D,2|\n"
    assert "V:1\n" in canonical_abc(two_voices) and "V:2\n" in canonical_abc(two_voices)


def test_the_official_profile_is_untouched():
    assert PROFILES["clamp1"].model_text(WRITTEN) != PROFILES["clamp1"].model_text(REWRITTEN)


def test_a_real_musicxml_round_trip_patches_mostly_like_the_original():
    """ABC -> MusicXML (music21) -> our xml2abc reader: most bars are the same patches again."""
    tune = next(t for t in load_corpus(collections=("oneills1850",)) if "Sa mhuir" in t.meta.get("title", ""))
    back = round_trip(tune.abc, "musicxml")
    original, converted = (
        [bytes(row) for row in PROFILES[name].abc_patches(text, 512)]
        for name, text in (("clamp1-canonical", tune.abc), ("clamp1-canonical", back))
    )
    shared = len(set(original) & set(converted)) / len(set(original))
    plain = {bytes(r) for r in PROFILES["clamp1"].abc_patches(tune.abc, 512)}
    plain_shared = len(plain & {bytes(r) for r in PROFILES["clamp1"].abc_patches(back, 512)}) / len(plain)
    assert shared >= 0.75 and shared > plain_shared + 0.3, (shared, plain_shared)
