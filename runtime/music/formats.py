"""Every score format we accept -> ABC tunes: ABC as it is, MusicXML and MIDI converted under a timeout.

MusicXML goes through xml2abc 143 (W.G. Vree, LGPL; the copy in the `abctoolkit` package by CLaMP's authors)
with CLaMP's own options `-m 2 -c 6 -x`: all voices, all %%MIDI directives, credit filter 6, no line-break
symbols, lines wrapped at 100 characters. MIDI is read by `lytk` (which snaps played files to a grid of
sixteenths and reads exact, notated files as they are), written as MusicXML, then converted the same way, so
all converted tunes share one ABC dialect. MIDI knows no pickup bars or repeat signs: bars start at time 0
and repeats come out played. Both converters are the optional extra `clamp-index[formats]`.

Conversions run in a child process (runtime/music/converter.py) under a timeout and a memory cap. MusicXML
of more than MAX_ELEMENTS elements is refused before xml2abc reads it (a streaming count, on every OS):
like a score over the cap, it is a ScoreTooLarge.
"""

from __future__ import annotations

import codecs
import contextlib
import importlib.util
import io
import re
import threading
import types
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING
from xml.etree import ElementTree

from runtime.music.abc import Tune, read_header, split_tunes

MUSICXML_SUFFIXES = (".mxl", ".musicxml", ".xml")
MIDI_SUFFIXES = (".mid", ".midi")
KIND_OF_SUFFIX = {**dict.fromkeys(MUSICXML_SUFFIXES, "musicxml"), **dict.fromkeys(MIDI_SUFFIXES, "midi")}
SCORE_SUFFIXES = frozenset({".abc", *KIND_OF_SUFFIX})
CONVERTER_PACKAGES = {"musicxml": ("abctoolkit",), "midi": ("abctoolkit", "lytk")}
INSTALL_HINT = "pip install 'clamp-index[formats]'"
DEFAULT_TIMEOUT = 60.0
# The largest MusicXML an .mxl may unpack to (big orchestral scores are tens of MB): refuses zip bombs.
MAX_UNPACKED_BYTES = 256 << 20
# The most XML elements a score may have: 7x a Beethoven quartet (134k); xml2abc needs ~100-400 bytes each.
MAX_ELEMENTS = 1_000_000
MEMORY_ENV = "CLAMP_CONVERTER_MEMORY_MB"
DEFAULT_MEMORY_MB = 1024
_UTF16_SAMPLE_BYTES = 4096

# The options of CLaMP's `xml2abc.py -m 2 -c 6 -x`; the rest are xml2abc's own defaults.
XML2ABC_OPTIONS = dict(
    u=False, m=2, c=6, d=0, n=0, b=0, o="", v=0, x=True, p=[], j=False, t=False, s=False, v1=False, ped=True,
    stm=False, i=False
)  # fmt: skip
# xml2abc's flags per generation, named by a preprocessing profile: CLaMP 2/3 run `-d 8 -x` (unit length
# forced to 1/8, no %%MIDI lines, no credit filter; clamp2-3-spec §10.1).
XML2ABC_FLAVOURS = {"clamp1": XML2ABC_OPTIONS, "m3": {**XML2ABC_OPTIONS, "m": 0, "c": 0, "d": 8}}
# Played MIDI files are snapped to sixteenths (lytk tells played from notated files; notated ones stay exact).
MIDI_QUANTIZE = 16
_PLACEHOLDER_TITLE = "Title"  # what xml2abc writes when a score has no title
_FIRST_KEY_LINE = re.compile(r"^K:.*$", re.MULTILINE)


if TYPE_CHECKING:
    from runtime.music.profiles import Profile


class ScoreError(ValueError):
    """A score that cannot be read or converted; the message says which file and why."""


class ScoreTooLarge(ScoreError):
    """A score that would take more memory to convert than the converter is allowed (a zip or XML bomb)."""


class ConverterMissing(RuntimeError):
    """The optional converters for MusicXML/MIDI are not installed."""


def decode_bytes(data: bytes) -> tuple[str, str | None]:
    """Text of a file's bytes: UTF-16 when it says so (BOM) or looks so (NULs), UTF-8 (BOM dropped), else
    Latin-1 with a note saying where UTF-8 failed. Text that claims UTF-16 but is not: ScoreError.
    """
    utf16 = utf16_encoding(data)
    if utf16:
        try:
            return data.decode(utf16), None
        except UnicodeDecodeError as err:
            raise ScoreError(
                f"looks like {utf16.upper()} text but is not valid UTF-16 (byte {err.start}: {err.reason}): "
                "save it as UTF-8"
            ) from None
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as err:
        return data.decode("latin-1"), f"not valid UTF-8 (byte {err.start}: {err.reason}); read as Latin-1"


def utf16_encoding(data: bytes) -> str | None:
    """The codec of UTF-16 text: utf-16 with a byte order mark; utf-16-le/-be for mostly-ASCII UTF-16
    without one (each character's high byte NUL, as in ABC); else None.
    """
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    sample = data[:_UTF16_SAMPLE_BYTES]
    pairs = len(sample) // 2
    if pairs < 2:
        return None
    evens, odds = sample[0 : 2 * pairs : 2], sample[1 : 2 * pairs : 2]
    for encoding, low, high in (("utf-16-le", evens, odds), ("utf-16-be", odds, evens)):
        if high.count(0) >= 0.9 * pairs and low.count(0) <= 0.1 * pairs:
            return encoding
    return None


def require_converters(kind: str) -> None:
    """Fail early, with the install command, when the packages that convert `kind` scores are missing."""
    missing = [name for name in CONVERTER_PACKAGES[kind] if importlib.util.find_spec(name) is None]
    if missing:
        raise ConverterMissing(
            f"reading {kind} scores needs {', '.join(missing)}, which is not installed: run {INSTALL_HINT}"
        )


def musicxml_payload(data: bytes) -> bytes:
    """The MusicXML document itself: plain files as they are, `.mxl` archives unpacked via their container."""
    if not data.startswith(b"PK"):
        return data
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
        if "META-INF/container.xml" in names:
            container = _unpacked(archive, "META-INF/container.xml").decode("utf-8", "replace")
            root = re.search(r"<rootfile\b[^>]*\bfull-path=\"([^\"]+)\"", container)
            if root and root.group(1) in names:
                return _unpacked(archive, root.group(1))
        for name in names:
            if not name.startswith("META") and name.lower().endswith((".xml", ".musicxml")):
                return _unpacked(archive, name)
    raise ScoreError(f"the .mxl archive holds no MusicXML file (it holds: {', '.join(names) or 'nothing'})")


def _unpacked(archive: zipfile.ZipFile, name: str) -> bytes:
    """One member of an archive, unless it would unpack to more than MAX_UNPACKED_BYTES."""
    size = archive.getinfo(name).file_size  # zipfile never unpacks more than the size the entry declares
    if size > MAX_UNPACKED_BYTES:
        raise ScoreTooLarge(f"{name} in the .mxl archive unpacks to {size} bytes, over {MAX_UNPACKED_BYTES}")
    return archive.read(name)


class _ElementCounter:
    """An XMLParser target that keeps no tree: it checks the root element and counts the elements."""

    def __init__(self) -> None:
        self.count = 0

    def start(self, tag: str, attrib: dict) -> None:
        if self.count == 0 and tag != "score-partwise":
            hint = "convert it to partwise MusicXML" if tag == "score-timewise" else "not a MusicXML score"
            raise ScoreError(f"the root element is <{tag}>, not <score-partwise>: {hint}")
        self.count += 1
        if self.count > MAX_ELEMENTS:
            raise ScoreTooLarge(
                f"the score has more than {MAX_ELEMENTS:,} XML elements (the largest real scores have a few "
                "hundred thousand): refused before xml2abc, which holds every element in memory"
            )


def check_score_xml(document: bytes, chunk: int = 1 << 20) -> None:
    """Refuse XML that xml2abc cannot read (not partwise) or should not (too many elements), streaming it."""
    parser = ElementTree.XMLParser(target=_ElementCounter())
    for start in range(0, len(document), chunk):
        parser.feed(document[start : start + chunk])
    parser.close()


def as_released_xml2abc(abc: str) -> str:
    """Undo abctoolkit's one change to xml2abc 143: a stemless note is `s` plus a `U:s=!stemless!` header."""
    if "!stemless!" not in abc:
        return abc
    abc = abc.replace("!stemless!", "s")
    key = _FIRST_KEY_LINE.search(abc)
    return abc if key is None else f"{abc[: key.end()]}\nU:s=!stemless!{abc[key.end() :]}"


_XML2ABC_LOCK = threading.Lock()  # xml2abc keeps its output in a module global


def musicxml_to_abc(data: bytes, flavour: str = "clamp1") -> str:
    """MusicXML (plain or `.mxl`) -> ABC, as CLaMP's `xml2abc.py -m 2 -c 6 -x` (flavour "m3": `-d 8 -x`)
    prints it."""
    require_converters("musicxml")
    from abctoolkit import xml2abc

    document = musicxml_payload(data)
    check_score_xml(document)
    options = types.SimpleNamespace(**XML2ABC_FLAVOURS[flavour])
    with _XML2ABC_LOCK:
        xml2abc.abcOut = xml2abc.ABCoutput("score.abc", "", 0, options)
        xml2abc.abcOut.outfile = abc = io.StringIO()
        with contextlib.redirect_stderr(io.StringIO()) as messages:
            xml2abc.Parser(options).parse(io.BytesIO(document))
    if not abc.getvalue().strip():
        raise ScoreError(f"xml2abc wrote nothing: {messages.getvalue().strip() or 'the score has no notes'}")
    return as_released_xml2abc(abc.getvalue().rstrip("\n") + "\n")


def midi_to_abc(data: bytes, flavour: str = "clamp1") -> str:
    """MIDI -> ABC: lytk reads it (quantising played files) into MusicXML, which xml2abc turns into ABC."""
    require_converters("midi")
    import lytk

    score = lytk.from_midi_bytes(data, quantize=MIDI_QUANTIZE)
    return musicxml_to_abc(lytk.to_musicxml(score).encode("utf-8"), flavour)


CONVERTERS = {"musicxml": musicxml_to_abc, "midi": midi_to_abc}


def convert_here(kind: str, data: bytes, flavour: str = "clamp1") -> str:
    """Convert in this process, every failure of the converters (Rust panics included) as a ScoreError."""
    try:
        return CONVERTERS[kind](data, flavour)
    except (ScoreError, MemoryError, KeyboardInterrupt, SystemExit):  # the child reports MemoryError
        raise
    except BaseException as err:  # lytk reports Rust panics as BaseException
        raise ScoreError(f"{type(err).__name__}: {err}") from err


def convert_score(
    kind: str, data: bytes, timeout: float | None = DEFAULT_TIMEOUT, flavour: str = "clamp1"
) -> str:
    """ABC of a MusicXML or MIDI score; in the converter child with `timeout` seconds, or here when None."""
    require_converters(kind)
    if timeout is None:
        return convert_here(kind, data, flavour)
    from runtime.music.converter import CONVERTER  # the child process's machinery, loaded on first use

    return CONVERTER.convert(kind, data, timeout, flavour)


# --- tunes of any score -----------------------------------------------------------------------------------


def converted_tune(abc: str, kind: str, fallback_title: str) -> Tune:
    """A converted score as one tune, its header fields as metadata and where it came from."""
    meta = read_header(abc.split("\n"))
    if meta.get("title", _PLACEHOLDER_TITLE) == _PLACEHOLDER_TITLE:
        meta["title"] = fallback_title
    meta["converted_from"] = kind
    return Tune(index=0, line=1, abc=abc, meta=meta)


def read_tunes(
    path: Path,
    data: bytes | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    profile: Profile | None = None,
) -> list[Tune]:
    """Tunes of a score file (or of its bytes, e.g. an upload named `path`): ABC split, others converted.

    MusicXML and MIDI give one tune whose metadata says `converted_from`; an untitled score is titled by
    its file name. timeout: seconds a conversion may take (None: convert in this process, unguarded).
    `profile` (a model's preprocessing, default CLaMP 1's) sets xml2abc's flags, and a profile that reads
    MIDI natively gets a MIDI file's MTF text (CLaMP 2/3) instead of ABC.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SCORE_SUFFIXES:
        raise ScoreError(
            f"{path}: cannot read {suffix or 'extensionless'} files; scores are "
            f"{', '.join(sorted(SCORE_SUFFIXES))}"
        )
    if data is None:
        try:
            data = path.read_bytes()
        except OSError as err:
            raise ScoreError(f"{path}: cannot read the file ({err.strerror or err})") from err
    if suffix == ".abc":
        try:
            text = decode_bytes(data)[0].replace("\r\n", "\n")
        except ScoreError as err:
            raise ScoreError(f"{path}: {err}") from None
        tunes = split_tunes(text)
        if not tunes and text.strip():  # a tune without an X: line
            tunes = [Tune(index=0, line=1, abc=text, meta=read_header(text.split("\n")))]
        return tunes
    kind = KIND_OF_SUFFIX[suffix]
    if kind == "midi" and profile is not None and profile.midi_text is not None:
        try:
            return [Tune(index=0, line=1, abc=profile.midi_text(data), meta=_mtf_meta(path.stem))]
        except ValueError as err:
            raise ScoreError(f"{path}: cannot read this MIDI file: {err}") from None
    try:
        abc = convert_score(kind, data, timeout, profile.xml2abc if profile else "clamp1")
    except ScoreError as err:  # ScoreTooLarge stays itself: the server answers it with 413
        raise type(err)(f"{path}: cannot convert this {kind} file: {err}") from None
    return [converted_tune(abc, kind, path.stem)]


def _mtf_meta(title: str) -> dict[str, str]:
    return {"title": title, "converted_from": "midi (MTF)"}
