"""MusicXML and MIDI in: real scores become ABC that patches into bars; failures and hangs are ScoreErrors."""

import io
import multiprocessing
import os
import random
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import music21
import pytest

from runtime.music import formats
from runtime.music.abc import split_tunes
from runtime.music.formats import ConverterMissing, ScoreError, ScoreTooLarge, musicxml_to_abc, read_tunes
from runtime.music.patching import BAR_DELIMITERS, decode_patches, prepare_music

CORPUS = Path(music21.__file__).parent / "corpus"
CHORALE_MXL = CORPUS / "bach" / "bwv1.6.mxl"  # 5 parts (horn, SATB), 21 measures, F major, 4/4
CHORALE_XML = CORPUS / "bach" / "bwv69.6.xml"  # plain MusicXML, 8 parts, 24 measures
LONG_SCORE = CORPUS / "beethoven" / "opus18no3.mxl"  # a string quartet, 4 x 966 measures: seconds to convert


def body_bars(abc: str) -> list[str]:
    """The bar patches the model sees (header lines and %%score left out)."""
    patches = decode_patches(prepare_music(abc, None))[:-1]  # the last one is the EOS patch
    return [p for p in patches if not re.match(r"^[A-Za-z]:|^%%score", p)]


def voice_count(abc: str) -> int:
    return len(re.findall(r"^V:\d+\s*$", abc, flags=re.MULTILINE))


def header_value(abc: str, field: str) -> str:
    return re.search(rf"^{field}:(.*)$", abc, flags=re.MULTILINE).group(1).strip()


def corpus_tune(relative: str, index: int) -> str:
    return split_tunes((CORPUS / relative).read_text(encoding="latin-1"))[index].abc


def test_mxl_becomes_one_tune_of_bars_in_every_voice():
    (tune,) = read_tunes(CHORALE_MXL)
    assert tune.meta["converted_from"] == "musicxml"
    assert tune.meta["key"] == "F" and tune.meta["meter"] == "4/4"
    assert tune.meta["title"].startswith("BWV 1.6")
    bars = body_bars(tune.abc)
    assert voice_count(tune.abc) == 5 and len(bars) == 5 * 21
    assert all(bar.endswith(BAR_DELIMITERS) for bar in bars)


def test_conversion_follows_clamp_xml2abc_options():
    abc = musicxml_to_abc(CHORALE_MXL.read_bytes())
    assert "%%MIDI channel 7\n%%MIDI program 0\n" in abc  # -m 2: all %%MIDI directives, not just programs
    assert "\nT:Harmonized by J.S. Bach\n" in abc  # -c 6: credit texts kept beside the work title
    assert "$" not in abc  # -x: no line-break symbols...
    body = abc[abc.index("\nV:1\n") :].splitlines()[2:]
    assert len(body) > 5 and all(len(line.rsplit(" %", 1)[0]) <= 100 for line in body)  # ...lines wrapped


def test_plain_xml_and_musicxml_suffixes_read_the_same():
    data = CHORALE_XML.read_bytes()
    (as_xml,) = read_tunes(CHORALE_XML)
    (as_upload,) = read_tunes(Path("upload.musicxml"), data=data)
    assert as_upload.abc == as_xml.abc
    assert voice_count(as_xml.abc) == 8 and len(body_bars(as_xml.abc)) == 8 * 24


@pytest.mark.parametrize(
    "relative, index",
    [
        ("ryansMammoth/RockyRoadToDublinJig.abc", 0),  # 9/8, E dorian
        ("oneills1850/0626-0700.abc", 25),  # 3/8, G major
        ("essenFolksong/han2.abc", 463),  # 3/8, B flat major
    ],
)
def test_abc_to_musicxml_to_abc_keeps_bars_key_and_meter(tmp_path, relative, index):
    original = corpus_tune(relative, index)
    score = music21.converter.parse(original, format="abc")
    path = Path(score.write("musicxml", fp=str(tmp_path / "tune.musicxml")))
    (tune,) = read_tunes(path)
    assert len(body_bars(tune.abc)) == len(score.parts[0].getElementsByClass("Measure"))
    assert header_value(tune.abc, "K").lower() == header_value(original, "K").lower()
    assert header_value(tune.abc, "M") == header_value(original, "M")


def test_midi_of_a_real_tune_converts_to_its_bars_and_notes(tmp_path):
    original = music21.converter.parse(corpus_tune("ryansMammoth/RubTheBagJig.abc", 0), format="abc")
    path = Path(original.write("midi", fp=str(tmp_path / "rub the bag.mid")))  # repeats come out played
    (tune,) = read_tunes(path)
    assert tune.meta["converted_from"] == "midi" and tune.meta["title"] == "rub the bag"
    assert tune.meta["key"] == "Amin" and tune.meta["meter"] == "6/8"
    played = original.expandRepeats()
    assert len(body_bars(tune.abc)) == len(played.parts[0].getElementsByClass("Measure")) == 30
    converted = music21.converter.parse(tune.abc, format="abc")
    assert [p.midi for p in converted.flatten().pitches] == [p.midi for p in played.flatten().pitches]


def test_played_midi_is_quantised_onto_the_notated_bars(tmp_path):
    notated = music21.converter.parse(corpus_tune("ryansMammoth/RubTheBagJig.abc", 0), format="abc").flatten()
    rng = random.Random(0)
    played = music21.stream.Stream([notated.getElementsByClass(kind)[0] for kind in ("TimeSignature", "Key")])
    for note in notated.notes:  # onsets off by up to a 64th note, every note held for 80-100% of its value
        copy = music21.note.Note(note.pitch, quarterLength=float(note.quarterLength) * rng.uniform(0.8, 1.0))
        played.insert(max(0.0, float(note.offset) + rng.uniform(-1 / 16, 1 / 16)), copy)
    clean = read_tunes(Path(notated.write("midi", fp=str(tmp_path / "notated.mid"))))[0].abc
    rough = read_tunes(Path(played.write("midi", fp=str(tmp_path / "played.mid"))))[0].abc
    assert body_bars(rough) == body_bars(clean)


def test_abc_files_are_split_into_tunes_and_latin1_is_accepted():
    text = "X:1\nT:Caf\xe9\nK:G\nGABc|\n\nX:2\nT:Two\nK:D\nDEFG|\n"
    tunes = read_tunes(Path("two.abc"), data=text.encode("latin-1"))
    assert [t.meta["title"] for t in tunes] == ["Caf\xe9", "Two"]
    assert "converted_from" not in tunes[0].meta
    (bare,) = read_tunes(Path("bare.abc"), data=b"K:D\nDEFG|")
    assert bare.abc == "K:D\nDEFG|"


@pytest.mark.parametrize(
    "name, data, reason",
    [
        ("broken.mxl", CHORALE_MXL.read_bytes()[:3000], "zip"),
        ("broken.xml", CHORALE_XML.read_bytes()[:3000], "ParseError"),
        ("page.xml", b"<html><body>not a score</body></html>", "not a MusicXML score"),
        ("broken.mid", b"MThd\x00\x00\x00\x06garbage", "midi"),
        ("score.pdf", b"%PDF", "cannot read .pdf files"),
    ],
)
def test_corrupt_or_unknown_files_raise_score_error(name, data, reason):
    with pytest.raises(ScoreError, match=re.escape(name)) as caught:
        read_tunes(Path(name), data=data)
    assert reason.lower() in str(caught.value).lower()


def test_missing_file_is_a_score_error(tmp_path):
    with pytest.raises(ScoreError, match="cannot read the file"):
        read_tunes(tmp_path / "absent.mxl")


def test_a_conversion_over_its_timeout_is_stopped_and_the_next_one_works():
    start = time.perf_counter()
    with pytest.raises(ScoreError, match=r"longer than 0\.2 s"):
        read_tunes(LONG_SCORE, timeout=0.2)
    assert time.perf_counter() - start < 5
    (tune,) = read_tunes(CHORALE_MXL, timeout=30)
    assert tune.abc == read_tunes(CHORALE_MXL, timeout=None)[0].abc  # in-process gives the same ABC


def test_conversion_works_inside_a_daemonic_pool_worker():
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        (tune,) = pool.apply(read_tunes, (CHORALE_MXL,), {"timeout": 30})
    assert len(body_bars(tune.abc)) == 5 * 21


def test_stemless_notes_are_written_as_the_released_xml2abc_does():
    xml = CHORALE_XML.read_text(encoding="utf-8")
    xml = xml.replace("</pitch>", "</pitch><stem>none</stem>", 1)
    abc = musicxml_to_abc(xml.encode("utf-8"))
    assert "\nK:D\nU:s=!stemless!\n" in abc and abc.count("!stemless!") == 1
    assert " z2 sa4 ^g2 |" in abc  # the note, decorated with `s`


def test_missing_converter_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(formats.CONVERTER_PACKAGES, "midi", ("lytk", "no_such_converter_package"))
    with pytest.raises(ConverterMissing, match=re.escape("pip install 'clamp-index[formats]'")):
        read_tunes(Path("tune.mid"), data=b"MThd")


def test_importing_formats_loads_no_converter_or_heavy_package():
    code = (
        "import sys, runtime.music.formats\n"
        "print(sorted(m for m in ('torch', 'pyarrow', 'music21', 'lytk', 'abctoolkit') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def mxl_of(xml: bytes) -> bytes:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as mxl:
        mxl.writestr("score.xml", xml)
    return archive.getvalue()


def convert_in_a_fresh_process(name: str, data: bytes, **env: str) -> tuple[str, float]:
    """How read_tunes(name, data) ends in a new Python process, and its converter child's peak RSS (MB)."""
    code = (
        "import resource, sys; from pathlib import Path\n"
        "from runtime.music.converter import CONVERTER\n"
        "from runtime.music.formats import ScoreError, read_tunes\n"
        "try:\n"
        "    read_tunes(Path(sys.argv[1]), sys.stdin.buffer.read()); outcome = 'ok'\n"
        "except ScoreError as err:\n"
        "    outcome = f'{type(err).__name__}: {err}'\n"
        "CONVERTER.stop()  # waited for, so that RUSAGE_CHILDREN holds its peak\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(peak / (2**20 if sys.platform == 'darwin' else 2**10)); print(outcome)\n"
    )
    root = str(Path(__file__).resolve().parents[1])
    done = subprocess.run(
        [sys.executable, "-c", code, name],
        input=data,
        capture_output=True,
        check=True,
        env={**os.environ, "PYTHONPATH": root, **env},
        timeout=120,
    )
    peak, outcome = done.stdout.decode().split("\n", 1)
    return outcome.strip(), float(peak)


@pytest.mark.skipif(sys.platform == "win32", reason="measures the child's peak memory with getrusage")
def test_an_mxl_of_millions_of_elements_is_refused_with_the_converter_s_memory_bounded():
    bomb = mxl_of(b"<score-partwise><part-list/>" + b"<a/>" * 3_000_000 + b"</score-partwise>")
    assert len(bomb) < 40_000  # 12 MB of XML elements, which xml2abc would hold in ~330 MB
    outcome, peak_mb = convert_in_a_fresh_process("bomb.mxl", bomb)
    assert outcome.startswith("ScoreTooLarge: bomb.mxl: cannot convert this musicxml file: the score")
    assert "has more than 1,000,000 XML elements" in outcome
    assert peak_mb < 120, f"the converter child peaked at {peak_mb:.0f} MB"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="only Linux enforces RLIMIT_AS")
def test_a_score_that_needs_more_than_the_memory_limit_is_refused():
    part = b"<part-list><score-part id='P1'><part-name>" + b"x" * (100 << 20) + b"</part-name></score-part>"
    text_bomb = mxl_of(b"<score-partwise>" + part + b"</part-list></score-partwise>")
    assert len(text_bomb) < 150_000  # 100 MB of text, under the element budget: xml2abc would peak ~330 MB
    outcome, peak_mb = convert_in_a_fresh_process("text.mxl", text_bomb, CLAMP_CONVERTER_MEMORY_MB="400")
    assert outcome.startswith("ScoreTooLarge: text.mxl: cannot convert this musicxml file: converting it")
    assert "more than the converter's 400 MiB ($CLAMP_CONVERTER_MEMORY_MB sets it)" in outcome
    assert peak_mb < 400


def test_a_refused_score_leaves_the_converter_working(monkeypatch):
    with pytest.raises(ScoreTooLarge, match="more than 1,000,000 XML elements"):
        read_tunes(Path("many.musicxml"), b"<score-partwise>" + b"<a/>" * 1_000_001 + b"</score-partwise>")
    (tune,) = read_tunes(CHORALE_MXL)
    assert len(body_bars(tune.abc)) == 5 * 21
