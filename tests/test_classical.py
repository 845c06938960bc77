"""The classical corpus: real music21 scores converted, described, kept free of labels, and split by work."""

import json
import random
from collections import Counter, defaultdict

import pytest

from training.analysis import Key
from training.classical.convert import (
    MAX_FILES_PER_FOLDER,
    Converted,
    build_cache,
    convert_file,
    read_cache,
    score_files,
)
from training.classical.corpus import MIN_HELD_OUT, MIN_WORKS, held_out_works, pieces_from
from training.classical.facts import describe_piece, label_texts, tempo_mark_of
from training.classical.music import leaked_words, model_abc, part_name, performance_mark
from training.classical.texts import canonical_text, fields, text_variants
from training.classical.works import mass_part_of, work_of
from training.corpus import music21_corpus_dir

ROOT = music21_corpus_dir()
SAMPLES = [
    "bach/bwv66.6.mxl",  # MusicXML chorale
    "bach/bwv371.mxl",  # a chorale whose direction words say "Kyrie"
    "bach/bwv277.krn",  # Humdrum, through music21
    "palestrina/Agnus_01.krn",  # Humdrum mass movement, its mass in the metadata
    "trecento/PMFC_06_8-In Verde Prato.xml",  # xml2abc fails on it as it is: a metronome without a number
    "haydn/opus1no1/movement2.mxl",  # "Menuetto" written in the score
]
BODY = "V:1\n{notes} | c2 d2 | e4 |]\n"


@pytest.fixture(scope="module")
def converted() -> dict[str, Converted]:
    return {source: convert_file(ROOT / source, ROOT) for source in SAMPLES}


def _record(source: str, notes: str) -> Converted:
    abc = f'X:1\nT:x\nM:4/4\nL:1/4\nK:C\nV:1 treble nm="Soprano"\n{BODY.format(notes=notes)}'
    return Converted(source, abc, {"parts": ["Soprano"]})


def test_score_files_keep_one_file_per_score():
    files = {f.relative_to(ROOT).as_posix() for f in score_files(ROOT)}
    assert "beethoven/opus18no1/movement1.mxl" in files and "beethoven/opus18no1/movement1.krn" not in files
    assert "trecento/PMFC_13_01-Kyrie-Summe-Clementissime.mxl" in files
    assert "trecento/PMFC_13_01-Kyrie-Summe-Clementissime.xml" not in files
    assert not any(
        f.startswith(("demos/", "theoryExercises/")) or "_old." in f or "_bak." in f for f in files
    )
    assert {"palestrina/Agnus.krn", "bach/bwv66.6.mxl", "monteverdi/madrigal.3.1.mxl"} <= files
    folders = Counter(f.split("/")[0] for f in files)
    assert max(folders.values()) <= MAX_FILES_PER_FOLDER and folders["monteverdi"] == 48
    palestrina = {mass_part_of(f) for f in files if f.startswith("palestrina/")}
    assert palestrina == {"Kyrie", "Gloria", "Credo", "Sanctus", "Benedictus", "Agnus Dei"}  # every movement


def test_every_kind_of_file_converts_to_abc(converted):
    for source, record in converted.items():
        assert record.error is None, record.error
        assert record.abc.startswith("X:1\n") and "\nK:" in record.abc and "|" in record.abc, source
    assert converted["bach/bwv277.krn"].via == "music21+xml2abc"
    assert converted["trecento/PMFC_06_8-In Verde Prato.xml"].via == "xml2abc (bare metronomes dropped)"
    assert converted["bach/bwv66.6.mxl"].via == "xml2abc"
    assert (
        converted["palestrina/Agnus_01.krn"].fields["misc:humdrum:OPR"]
        == "Missa De Beata Marie Virginis (III)"
    )
    assert converted["bach/bwv66.6.mxl"].fields["parts"] == ["Soprano", "Alto", "Tenor", "Bass"]


def test_a_bad_file_is_a_recorded_failure(tmp_path):
    bad = tmp_path / "broken.mxl"
    bad.write_bytes(b"not a zip")
    record = convert_file(bad, tmp_path)
    assert record.abc is None and record.source == "broken.mxl" and "xml2abc" in record.error


def test_no_label_reaches_the_model(converted):
    for source, record in converted.items():
        facts = describe_piece(source, model_abc(record.abc), record.fields)
        assert leaked_words(model_abc(record.abc), [*label_texts(facts), "Menuetto"]) == [], source
    assert leaked_words(converted["bach/bwv371.mxl"].abc, ["Kyrie"]) == ["kyrie"]  # the raw ABC has it
    assert leaked_words(converted["haydn/opus1no1/movement2.mxl"].abc, ["Menuetto"]) == ["menuetto"]


def test_model_abc_keeps_performance_marks_chords_and_part_names():
    abc = (
        'V:1 treble nm="Violin II" snm="Vln. II"\nV:2 treble nm="Ut Orpheus 1"\n'
        '"^Allegro ma non troppo" A "_cresc." B "^Menuetto" c "G7" d "_la sem- bian" e |]\n'
    )
    out = model_abc(abc)
    assert 'nm="Violin II" snm="Vln. II"' in out and "Orpheus" not in out
    assert '"^Allegro ma non troppo"' in out and '"_cresc."' in out and '"G7"' in out
    assert "Menuetto" not in out and "bian" not in out
    assert performance_mark("poco rit.") and not performance_mark("Trio")
    assert part_name("Cantus 1") and part_name("Tr 2") and not part_name("Prima parte")


def test_works_of_real_paths():
    assert work_of("bach/bwv248.12-2.mxl", {}).key == "bach/bwv248"
    chorale = work_of("bach/bwv277.krn", {})
    assert (chorale.genre, chorale.title, chorale.movement) == (
        "chorale",
        "Christ lag in Todesbanden, BWV 277",
        None,
    )
    mass = work_of("palestrina/Agnus_II_03.krn", {"misc:humdrum:OPR": "Missa Brevis"})
    assert (mass.key, mass.genre, mass.movement) == ("palestrina/missa brevis", "mass movement", "Agnus Dei")
    part = work_of("monteverdi/madrigal.3.10.mxl", {})
    assert (part.key, part.title, part.movement) == ("monteverdi/3.8", "Vattene pur crudel", "terza parte")
    quartet = work_of("beethoven/opus59no2/movement3.mxl", {})
    assert (quartet.key, quartet.movement) == ("beethoven/op59no2", "third movement")
    assert quartet.title == "String Quartet Op. 59 No. 2 (Razumovsky)"
    song = work_of("schumann_robert/dichterliebe_no2.xml", {})
    assert song.key == work_of("schumann_robert/opus48no2.mxl", {}).key and song.genre == "lied"
    assert work_of("schumann_clara/polonaise_op1n3.mxl", {}).key == "schumann_clara/op1"
    with pytest.raises(ValueError, match="no rule"):
        work_of("newcomposer/piece.mxl", {})


def test_trecento_composers_and_genres_from_the_edition():
    ballata = work_of(
        "trecento/PMFC_04-Cara mi donna.xml",
        {"credits": ["48 (139). Cara mi donna", "Ballate", "Francesco Landini", "Edition by Leo Schrade"]},
    )
    assert (ballata.composer, ballata.genre, ballata.title) == (
        "Francesco Landini",
        "ballata",
        "Cara mi donna",
    )
    gloria = work_of(
        "trecento/PMFC_13_07-Gloria Laus Honor.xml", {"credits": ["Gloria", 'Antonius "Zacharias" de Teramo']}
    )
    assert (gloria.composer, gloria.genre) == ("Antonio Zacara da Teramo", "mass movement")
    anonymous = work_of("trecento/PMFC_12_10b-Credo PMFC12.10b.xml", {"creator:composer": "Anonymous I-Sc10"})
    assert anonymous.composer == "anonymous" and anonymous.key == "trecento/pmfc_12_10"
    assert (
        work_of("trecento/PMFC_12_10a-Credo PMFC12.10a.xml", {}).key == anonymous.key
    )  # two versions, one work


def test_facts_texts_and_labels(converted):
    record = converted["palestrina/Agnus_01.krn"]
    facts = describe_piece(record.source, model_abc(record.abc), record.fields)
    assert (facts.era, facts.ensemble, facts.key, facts.meter) == (
        "Renaissance", "five voices", Key("G", "mixolydian"), "4/2"
    )  # fmt: skip
    assert facts.labels() == {
        "composer": "Giovanni Pierluigi da Palestrina", "genre": "mass movement", "era": "Renaissance",
        "meter": "4/2", "mode": "mixolydian",
    }  # fmt: skip
    assert canonical_text(facts) == (
        "A Renaissance mass movement by Palestrina, for five voices, in G mixolydian, in 4/2 time, "
        '"Agnus Dei of Missa De Beata Marie Virginis (III)"'
    )
    assert "for five voices" in fields(facts)
    texts = text_variants(facts, 8, seed=1, piece_id="x")
    assert texts == text_variants(facts, 8, seed=1, piece_id="x") and len(set(texts)) > 4
    chorale = converted["bach/bwv66.6.mxl"]
    facts = describe_piece(chorale.source, model_abc(chorale.abc), chorale.fields)
    assert (facts.composer, facts.era, facts.key, facts.genre) == (
        "Johann Sebastian Bach", "Baroque", Key("F#", "minor"), "chorale"
    )  # fmt: skip
    assert facts.tempo_mark is None and facts.form is None
    minuet = converted["haydn/opus1no1/movement2.mxl"]
    facts = describe_piece(minuet.source, model_abc(minuet.abc), minuet.fields)
    assert (facts.genre, facts.form, facts.movement, facts.composer) == (
        "string quartet", "minuet", "second movement", "Joseph Haydn"
    )  # fmt: skip
    assert "minuet" in fields(facts) and "string quartet" in canonical_text(facts)
    assert tempo_mark_of(["cresc.", "Finale. Presto"]) == ("Presto", "fast")
    assert tempo_mark_of(["Allegro ma non tanto"]) == ("Allegro ma non tanto", "lively")
    assert tempo_mark_of(["Tenor Et in terra pax"]) == (None, None)


def test_split_by_work_holds_out_works_of_every_big_composer():
    rng = random.Random(0)
    records = [
        _record(f"bach/bwv{work}.{movement}.mxl", " ".join(rng.choice("CDEFGAB") for _ in range(8)))
        for work in range(250, 262)
        for movement in range(1, 4)
    ] + [_record("mozart/k80/movement1.mxl", "C D E F")]
    pieces = pieces_from(records)
    sides = defaultdict(set)
    for piece in pieces:
        sides[piece.work.key].add(piece.split)
    assert all(len(s) == 1 for s in sides.values())  # no work on both sides
    assert sum(s == {"eval"} for s in sides.values()) >= MIN_HELD_OUT
    assert pieces_from(records) == pieces  # deterministic


def test_held_out_works_rule():
    works = {f"c{c}/w{w}": f"composer {c}" for c in range(8) for w in range(MIN_WORKS + c)}
    works.update({f"small/w{w}": "small" for w in range(MIN_WORKS - 1)})
    held = held_out_works(works)
    for c in range(8):
        assert len({k for k in held if k.startswith(f"c{c}/")}) >= MIN_HELD_OUT
    assert held == held_out_works(dict(reversed(works.items())))


def test_duplicate_bodies_and_folk_bodies_are_dropped():
    records = [_record("bach/bwv250.1.mxl", "C D E F"), _record("bach/bwv251.1.mxl", "C D E F")]
    records.append(_record("bach/bwv252.1.mxl", "G A B c"))
    pieces = pieces_from(records)
    assert [p.source for p in pieces] == ["bach/bwv250.1.mxl", "bach/bwv252.1.mxl"]
    assert [p.source for p in pieces_from(records, {pieces[0].body_key})] == ["bach/bwv252.1.mxl"]
    assert pieces_from([Converted("bach/bwv1.1.mxl", None, {}, "", "failed")]) == []


def test_cache_is_reused(tmp_path):
    root = tmp_path / "corpus"
    (root / "bach").mkdir(parents=True)
    (root / "bach" / "bwv66.6.mxl").write_bytes((ROOT / "bach" / "bwv66.6.mxl").read_bytes())
    records, seconds = build_cache(root, tmp_path / "cache", workers=1, progress=False)
    assert [r.source for r in records] == ["bach/bwv66.6.mxl"] and records[0].error is None and seconds > 0
    cache = next((tmp_path / "cache").iterdir())
    assert json.loads(cache.read_text())["source"] == "bach/bwv66.6.mxl"
    again, seconds = build_cache(root, tmp_path / "cache", workers=1, progress=False)
    assert again == records and seconds == 0.0
    with cache.open("a") as out:
        out.write('{"source": "bach/bwv1.6.mxl", "ab')  # a run killed mid-write
    assert read_cache(cache) == {"bach/bwv66.6.mxl": records[0]}
