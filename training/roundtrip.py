"""The round trips a real upload takes, precomputed: ABC -> MusicXML -> our reader, ABC -> MIDI -> our reader.

music21 renders a tune as MusicXML and as MIDI (what a user's notation program would export); the
project's own converters (runtime.music.formats: xml2abc, lytk + xml2abc) read them back. The results are
training augmentations and the evaluation's hardest variants, so they are computed once per tune and
cached as JSON lines (resumable: an interrupted run keeps what it wrote). music21 needs ~0.3-0.5 s a tune.

    python -m training.roundtrip --per-split eval=600 --per-split train=2400
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import signal
import warnings
from collections.abc import Iterator, Sequence
from importlib.metadata import version
from pathlib import Path

import click
from tqdm import tqdm

from runtime.music.formats import convert_score
from training.corpus import CorpusTune, load_corpus

KINDS = ("musicxml", "midi")
TIMEOUT_S = 20  # per tune and kind, music21's rendering included
DEFAULT_CACHE = Path("build/train-cache")
DEFAULT_PER_SPLIT = {"eval": 600, "train": 2400}  # eval first: the evaluation needs it


def cache_file(cache_dir: Path) -> Path:
    """One file per music21 and converter version: another version renders other round trips."""
    versions = "|".join(version(p) for p in ("music21", "abctoolkit", "lytk"))
    return cache_dir / f"roundtrips-{hashlib.sha256(versions.encode()).hexdigest()[:12]}.jsonl"


def chosen_tunes(tunes: Sequence[CorpusTune], per_split: dict[str, int]) -> list[CorpusTune]:
    """A fixed, seedless sample per side of the split: tunes ordered by the hash of their id."""
    chosen = []
    for split, count in per_split.items():
        side = sorted(
            (t for t in tunes if t.split == split), key=lambda t: hashlib.sha256(t.id.encode()).digest()
        )
        chosen += side[:count]
    return chosen


@contextlib.contextmanager
def _deadline(seconds: int) -> Iterator[None]:
    """music21 can spin on odd tunes: an alarm turns that into a TimeoutError."""

    def expire(*_):
        raise TimeoutError(f"over {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def render(abc: str, kind: str) -> bytes:
    """The tune as music21 writes it: MusicXML or standard MIDI file bytes."""
    import music21

    score = music21.converter.parse(abc, format="abc")
    if kind == "musicxml":
        from music21.musicxml.m21ToXml import GeneralObjectExporter

        return GeneralObjectExporter(score).parse()
    return music21.midi.translate.music21ObjectToMidiFile(score).writestr()


def round_trip(abc: str, kind: str) -> str:
    """ABC -> kind -> ABC through music21 and our converter; raises on any failure."""
    with _deadline(TIMEOUT_S), contextlib.redirect_stdout(io.StringIO()):
        data = render(abc, kind)
    return convert_score(kind, data, timeout=TIMEOUT_S)


def read_cache(path: Path) -> dict[str, dict[str, str | None]]:
    """{tune id: {kind: ABC or None when that round trip failed}}; a torn last line is ignored."""
    found: dict[str, dict[str, str | None]] = {}
    if not path.is_file():
        return found
    for line in path.read_text("utf-8").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            record = json.loads(line)
            found[record["id"]] = {kind: record.get(kind) for kind in KINDS}
    return found


def build_cache(tunes: Sequence[CorpusTune], path: Path) -> dict[str, dict[str, str | None]]:
    """Round trips of every tune not yet in the cache, appended as they are made; returns the whole cache."""
    done = read_cache(path)
    todo = [t for t in tunes if t.id not in done]
    path.parent.mkdir(parents=True, exist_ok=True)
    warnings.filterwarnings("ignore")  # music21 warns about every unusual ABC token
    failed = 0
    with path.open("a", encoding="utf-8") as out:
        for tune in tqdm(todo, desc="round trips", unit="tune", disable=not todo):
            record: dict[str, str | None] = {"id": tune.id}
            for kind in KINDS:
                try:
                    record[kind] = round_trip(tune.abc, kind)
                except Exception:  # noqa: BLE001 - music21 fails in many ways; a failed round trip is no variant
                    record[kind] = None
                    failed += 1
            out.write(json.dumps(record) + "\n")
            out.flush()
            done[tune.id] = {kind: record[kind] for kind in KINDS}
    if todo:
        print(f"round trips: {len(todo)} tunes converted, {failed} conversions failed; cache {path}")
    return done


def _per_split(values: tuple[str, ...]) -> dict[str, int]:
    parsed = dict(DEFAULT_PER_SPLIT)
    for value in values:
        split, _, count = value.partition("=")
        if split not in parsed or not count.isdigit():
            raise click.BadParameter(f"expected train=N or eval=N, got {value!r}")
        parsed[split] = int(count)
    return parsed


@click.command()
@click.option("--cache-dir", type=click.Path(path_type=Path), default=DEFAULT_CACHE, show_default=True)
@click.option("--per-split", multiple=True, help="Tunes per side of the split, e.g. train=2400 eval=600.")
def main(cache_dir: Path, per_split: tuple[str, ...]) -> None:
    """Build (or complete) the round-trip cache."""
    build_cache(chosen_tunes(load_corpus(), _per_split(per_split)), cache_file(cache_dir))


if __name__ == "__main__":
    main()
