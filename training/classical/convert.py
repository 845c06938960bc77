"""music21's classical scores -> ABC in the project's one dialect, with the metadata the scores carry, cached.

MusicXML/MXL goes through the project's reader (runtime.music.formats.read_tunes: xml2abc with CLaMP's flags,
in the guarded converter child). Humdrum has no reader of ours: music21 parses it and writes MusicXML, which
then takes the same path; so does a MusicXML file xml2abc fails on (music21 rewrites it more regularly).
Conversion is slow (minutes), so its results go to a JSONL cache named by the versions of music21, xml2abc
and this converter; everything derived from them (texts, labels, split) is recomputed on load, in seconds.
"""

from __future__ import annotations

import concurrent.futures
import json
import math
import multiprocessing
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from xml.etree import ElementTree

from runtime.music.formats import musicxml_payload, read_tunes

CONVERTER_VERSION = 1  # bump when what convert_file stores changes
SCORE_SUFFIXES = (".mxl", ".musicxml", ".xml", ".krn")
SUFFIX_PREFERENCE = {".mxl": 0, ".musicxml": 1, ".xml": 2, ".krn": 3}  # one file per stem: the native one
# Folders of music21's corpus without classical scores of their own (exercises, test files).
SKIPPED_FOLDERS = frozenset({"demos", "theoryExercises"})
SKIPPED_STEM_ENDINGS = ("_old", "_bak")  # superseded copies that music21 still ships
MAX_WORDS = 40  # direction words kept per score: tempo marks come first; the rest is expression
DEFAULT_WORKERS = 2
# Palestrina's 1,318 mass movements would be 60% of the classical scores and most of the conversion time
# (music21 reads Humdrum at 5-15 s a file here): a folder with more files keeps an evenly spaced sample,
# so every movement type (Kyrie ... Agnus Dei) stays in.
MAX_FILES_PER_FOLDER = 220
CACHE_DIR = Path("build/train-cache")


@dataclass(frozen=True)
class Converted:
    """One score file after conversion: its ABC (None if it failed), what its MusicXML says, and timing."""

    source: str  # path relative to the corpus root
    abc: str | None
    fields: dict[str, str | list[str]] = field(default_factory=dict)
    via: str = "xml2abc"  # "xml2abc" | "music21+xml2abc"
    error: str | None = None
    seconds: float = 0.0


def score_files(root: Path) -> list[Path]:
    """The classical score files under music21's corpus root, one per path stem, at most
    MAX_FILES_PER_FOLDER per folder, sorted."""
    best: dict[Path, Path] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.suffix.lower() not in SCORE_SUFFIXES or rel.parts[0] in SKIPPED_FOLDERS:
            continue
        if path.stem.endswith(SKIPPED_STEM_ENDINGS):
            continue
        stem = path.with_suffix("")
        if stem not in best or SUFFIX_PREFERENCE[path.suffix.lower()] < SUFFIX_PREFERENCE[best[stem].suffix]:
            best[stem] = path
    by_folder: dict[str, list[Path]] = {}
    for path in sorted(best.values()):
        by_folder.setdefault(path.relative_to(root).parts[0], []).append(path)
    return sorted(
        p for files in by_folder.values() for p in files[:: math.ceil(len(files) / MAX_FILES_PER_FOLDER)]
    )


def _text(element: ElementTree.Element | None) -> str:
    return " ".join((element.text or "").split()) if element is not None else ""


def score_fields(document: bytes) -> dict[str, str | list[str]]:
    """What a MusicXML document says about itself: work, movement, creators, credits, parts, words."""
    root = ElementTree.fromstring(document)
    fields: dict[str, str | list[str]] = {}
    for name, path in (
        ("work_title", "work/work-title"),
        ("work_number", "work/work-number"),
        ("movement_title", "movement-title"),
        ("movement_number", "movement-number"),
    ):
        if value := _text(root.find(path)):
            fields[name] = value
    for creator in root.iterfind("identification/creator"):
        if value := _text(creator):
            fields.setdefault(f"creator:{creator.get('type', 'unknown')}", value)
    for misc in root.iterfind("identification/miscellaneous/miscellaneous-field"):
        if value := _text(misc):
            fields.setdefault(f"misc:{misc.get('name', '')}", value)
    lists = {
        "credits": [_text(c) for c in root.iterfind("credit/credit-words")],
        "parts": [_text(p) for p in root.iterfind("part-list/score-part/part-name")],
        "instruments": [
            _text(i) for i in root.iterfind("part-list/score-part/score-instrument/instrument-name")
        ],
        "words": [_text(w) for w in root.iterfind("part/measure/direction/direction-type/words")][:MAX_WORDS],
        "modes": sorted({_text(m) for m in root.iterfind("part/measure/attributes/key/mode")} - {""}),
    }
    fields.update({name: [v for v in values if v] for name, values in lists.items() if any(values)})
    if (tempo := root.find("part/measure/direction/sound[@tempo]")) is not None:
        fields["tempo_bpm"] = tempo.get("tempo", "")
    return fields


def music21_musicxml(path: Path) -> bytes:
    """music21's MusicXML of a score it can read (Humdrum, or MusicXML xml2abc cannot convert)."""
    import music21
    from music21.musicxml.m21ToXml import GeneralObjectExporter

    return GeneralObjectExporter(music21.converter.parse(path)).parse()


def without_bare_metronomes(document: bytes) -> bytes:
    """The score without metronome marks that give no beats per minute (metric modulations such as
    "half = quarter"), on which xml2abc 143 fails with a TypeError."""
    root = ElementTree.fromstring(document)
    for direction_type in root.iterfind(".//direction-type"):
        for metronome in direction_type.findall("metronome"):
            if metronome.find("per-minute") is None:
                direction_type.remove(metronome)
    return ElementTree.tostring(root, encoding="utf-8")


def _abc_of(path: Path, document: bytes) -> str:
    return read_tunes(path.with_suffix(".musicxml"), data=document)[0].abc


def convert_file(path: Path, root: Path) -> Converted:
    """One score -> Converted, trying xml2abc on the file, on it repaired, then on music21's rewrite of it;
    any failure is recorded in `error`, never raised."""
    start = time.perf_counter()
    source = path.relative_to(root).as_posix()
    is_humdrum = path.suffix.lower() == ".krn"
    attempts = {
        "xml2abc": lambda: musicxml_payload(path.read_bytes()),
        "xml2abc (bare metronomes dropped)": lambda: without_bare_metronomes(
            musicxml_payload(path.read_bytes())
        ),
        "music21+xml2abc": lambda: music21_musicxml(path),
    }
    errors = []
    for via, document_of in attempts.items():
        if is_humdrum and not via.startswith("music21"):
            continue
        try:
            document = document_of()
            abc = _abc_of(path, document)
            fields = score_fields(document if is_humdrum else musicxml_payload(path.read_bytes()))
            return Converted(source, abc, fields, via, None, time.perf_counter() - start)
        except Exception as err:  # a bad score is a record of its failure, never fatal to the run
            errors.append(f"{via}: {type(err).__name__}: {err}".replace(str(root) + "/", ""))
    return Converted(source, None, {}, "", " | ".join(errors)[:1000], time.perf_counter() - start)


def cache_path(cache_dir: Path = CACHE_DIR) -> Path:
    """The cache file for these music21 and xml2abc (abctoolkit) versions and this converter: another version
    of any of them gets a fresh cache."""
    versions = f"music21-{version('music21')}-abctoolkit-{version('abctoolkit')}-conv{CONVERTER_VERSION}"
    return cache_dir / f"classical-{versions}.jsonl"


def read_cache(path: Path) -> dict[str, Converted]:
    """The conversions a cache file holds, by source; a line torn by an interrupted run is skipped (and its
    file converted again)."""
    if not path.exists():
        return {}
    records = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = Converted(**json.loads(line))
        except (json.JSONDecodeError, TypeError):
            continue
        records[record.source] = record
    return records


def _convert_all(files: list[Path], root: Path, workers: int) -> Iterator[Converted]:
    """Convert in a pool of `workers` processes (music21 and xml2abc are pure Python: CPU-bound)."""
    if workers <= 1:
        yield from (convert_file(path, root) for path in files)
        return
    context = multiprocessing.get_context("spawn")  # no forked copies of the parent's threads or children
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        futures = [pool.submit(convert_file, path, root) for path in files]
        for future in concurrent.futures.as_completed(futures):
            yield future.result()


def build_cache(
    root: Path, cache_dir: Path = CACHE_DIR, workers: int = DEFAULT_WORKERS, progress: bool = True
) -> tuple[list[Converted], float]:
    """Every score of `root` converted, from the cache where it has them; (records in file order, seconds
    spent converting now). Conversions are appended as they finish, so an interrupted build resumes."""
    from tqdm import tqdm

    path = cache_path(cache_dir)
    done = read_cache(path)
    files = score_files(root)
    todo = [f for f in files if f.relative_to(root).as_posix() not in done]
    start = time.perf_counter()
    if todo:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as out:
            for record in tqdm(_convert_all(todo, root, workers), total=len(todo), disable=not progress):
                out.write(json.dumps(asdict(record), ensure_ascii=False) + "\n")
                out.flush()
                done[record.source] = record
    sources: Iterable[str] = (f.relative_to(root).as_posix() for f in files)
    return [done[s] for s in sources], time.perf_counter() - start if todo else 0.0
