"""Text synthesis: metadata and melody analysis put into English words, and CLaMP's text dropout."""

import random
from collections import Counter

import pytest

from runtime.music.abc import split_tunes
from training.analysis import Key, melody_stats, quarter_bpm, signature_key, tune_key
from training.corpus import CorpusTune, load_corpus
from training.describe import clean_title, describe, genres_of, meter_of, region_of, tune_type_of
from training.texts import canonical_text, fields, sentence, text_dropout, text_variants

IRISH_REEL = """X:1
T:The Silver Spear -- Reel
R:reel
N:"Lively"
M:C|
L:1/8
K:D
|:FA (3AAA BAFA|dAFA BEE2|FA (3AAA BAFA|dfed BEE2:|
|:fa (3aaa bafa|dafa bee2|fa (3aaa bafa|dfed Bdd2:|
"""
GERMAN_SONG = """X:1
T: Der Bremberger
O: Europa, Mitteleuropa, Deutschland
R: Liebeslied
M: 3/4
K: G
G2A|B2c|d3|G3|]
"""


def corpus_tune(abc: str, collection: str) -> CorpusTune:
    """A one-tune corpus entry with the header fields runtime.music.abc reads."""
    tune = split_tunes(abc)[0]
    source = f"{collection}/x.abc"
    return CorpusTune("t1", collection, source, 0, tune.abc, tune.meta, body_key="k", split="train")


@pytest.mark.parametrize(
    ("k_field", "final", "expected"),
    [
        ("D", "D", Key("D", "major")),
        ("G", "E", Key("E", "minor")),  # plain signature, final on the 6th: relative minor
        ("D", "E", Key("E", "dorian")),
        ("G", "D", Key("D", "mixolydian")),
        ("F", "D", Key("D", "minor")),
        ("D", "B", Key("B", "minor")),
        ("A", "F", Key("F#", "minor")),  # the signature's sharp names the tonic
        ("Ador", "E", Key("A", "dorian")),  # an explicit mode is trusted over the final note
        ("E Minor", None, Key("E", "minor")),
        ("Bb", "G", Key("G", "minor")),
        ("H", "B", Key("B", "major")),  # German H = B
        ("G", "F", None),  # final on the 7th: no mode explains it
        ("none", "C", None),
    ],
)
def test_key_from_signature_and_final_note(k_field, final, expected):
    assert tune_key(k_field, final) == expected


def test_signature_of_modal_keys():
    assert signature_key("Dmix") == (1, "D", "mixolydian")  # D mixolydian has G major's one sharp
    assert signature_key("Ador") == (1, "A", "dorian")
    assert signature_key("Em") == (1, "E", "minor")
    assert signature_key("Hp") is None


def test_tempo_counts_quarter_beats():
    assert quarter_bpm("1/4=120") == 120
    assert quarter_bpm("3/8=100") == 100  # a dotted-quarter beat in compound time
    assert quarter_bpm("1/8=200") == 100
    assert quarter_bpm('"Allegro"') is None


def test_melody_stats_ignore_chords_and_decorations():
    stats = melody_stats('X:1\nK:C\n"Am"C2 !trill!E2 {g}G2 c2|"G"B4 G4|]\n')
    assert (stats.n_notes, stats.n_bars, stats.range_semitones, stats.final_letter) == (6, 2, 12, "G")


def test_essen_metadata_in_english():
    assert region_of("Europa, Mitteleuropa, Deutschland, Westfalen", None, None) == "German"
    assert region_of("Asien, China, Shanxi", None, None) == "Chinese"
    assert region_of("Mitteleuropa, Deutschland / Polen, Schlesien", None, None) == "German"
    assert region_of(None, "Irish.", "Scottish") == "Irish"
    assert region_of(None, None, "Scottish") == "Scottish"
    assert genres_of("Liebes - Lied, Leid, Klage") == ("love song", "lament")
    assert genres_of("Kinder -, Wiegen - Lied") == ("children's song", "lullaby")
    assert genres_of("Geistliches, religiöses Lied]") == ("religious song",)


def test_german_song_genres_translate():
    assert genres_of("Weihnachtslied") == ("Christmas song",)
    assert genres_of("Wiegenlied]") == ("lullaby",)
    assert genres_of("Trinklied") == ("drinking song",)
    assert genres_of('"erz\x84hlende Lieder"]') == ("narrative song",)  # a DOS umlaut read as Latin-1
    assert genres_of("Handwerker -, Bauern - Lied") == ("craftsmen's song", "peasants' song")
    assert genres_of("Untreue]") == ("song of infidelity",)  # not also "song of faithfulness"
    assert genres_of("Jahreszeiten - Lied, Fruehling") == ("seasonal song", "spring song")
    # A genre of the first table stays primary when a later word of the second comes first.
    assert genres_of("historisches Lied, Kriegs - Lied") == ("war song", "historical song")


def test_every_frequent_essen_genre_translates():
    """Every R: value of >= 5 Essen songs names a genre, except the corpus's placeholders and bare "Lied"."""
    counts = Counter(t.meta.get("rhythm") for t in load_corpus(collections=["essenFolksong"]))
    placeholders = {None, "Lied", "???", "???]", "??]", "yyy]"}
    untranslated = [r for r, n in counts.items() if n >= 5 and r not in placeholders and not genres_of(r)]
    assert untranslated == []


def test_tune_types_meters_and_titles():
    assert tune_type_of("double jig", None) == "jig"
    assert tune_type_of("Slipjig", None) == "slip jig"
    assert tune_type_of(None, "Lady Ann Hope's Reel") == "reel"
    assert tune_type_of(None, "The Enchanted Valley") is None
    assert meter_of("C|") == "2/2" and meter_of("C") == "4/4" and meter_of("none") == "free"
    assert clean_title("42d Highland Regiment -- Strathspey") == "42d Highland Regiment"
    assert clean_title("POTHOUGE - JIG") == "POTHOUGE"
    assert clean_title("The Ranting Highlandman. / The White Cockade") == "The Ranting Highlandman"


def test_a_reel_is_described_and_labelled():
    facts = describe(corpus_tune(IRISH_REEL, "oneills1850"))
    assert canonical_text(facts) == 'A lively Irish reel in D major, in 2/2 time, titled "The Silver Spear"'
    assert facts.labels() == {"tune-type": "reel", "meter": "2/2", "mode": "major", "region": "Irish"}
    assert {"reel", "Irish", "D major", "2/2 time", "The Silver Spear"} <= set(fields(facts))
    for seed in range(20):
        assert "reel" in sentence(facts, random.Random(seed))


def test_essen_song_gets_genre_and_region_words():
    facts = describe(corpus_tune(GERMAN_SONG, "essenFolksong"))
    assert canonical_text(facts).startswith("A German love song in G major, in 3/4 time")
    labels = {"tune-type": "song", "meter": "3/4", "mode": "major", "region": "German", "genre": "love song"}
    assert facts.labels() == labels


def test_text_dropout_follows_clamp():
    candidates = ["reel", "Irish", "reel", " ", "D major", "2/2 time", "lively"]
    texts = {text_dropout(candidates, random.Random(seed)) for seed in range(200)}
    for text in texts:
        parts = text.split(", ")
        assert (
            parts
            and len(parts) == len(set(parts))
            and set(parts) <= {"reel", "Irish", "D major", "2/2 time", "lively"}
        )
    assert len(texts) > 50, "fields are kept at random and shuffled"
    assert text_dropout(candidates, random.Random(0)) == text_dropout(candidates, random.Random(0))
    everything = text_dropout(candidates, random.Random(1), keep=0.0)  # none survives -> keep all
    assert sorted(everything.split(", ")) == sorted({"reel", "Irish", "D major", "2/2 time", "lively"})


def test_variants_are_reproducible_per_tune():
    facts = describe(corpus_tune(IRISH_REEL, "oneills1850"))
    assert text_variants(facts, 6, seed=0, tune_id="a") == text_variants(facts, 6, seed=0, tune_id="a")
    assert text_variants(facts, 6, seed=0, tune_id="a") != text_variants(facts, 6, seed=1, tune_id="a")
    assert len(set(text_variants(facts, 6, seed=0, tune_id="a"))) > 3
