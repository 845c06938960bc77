"""Score conversion throughput on real files: MusicXML through xml2abc, MIDI through lytk + xml2abc.

    python bench/bench_formats.py [--mxl 100] [--midi 50] [--timeout 60]

Files: music21's Bach chorales (.mxl, evenly spaced), and MIDI files that music21 writes from real ABC
tunes of its corpus (written before timing starts). Each set is converted twice, one file at a time: in
this process (`read_tunes(..., timeout=None)`) and through the guarded converter child process (a timeout,
as the runtime and the indexer call it). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runtime.music.abc import split_tunes  # noqa: E402
from runtime.music.formats import ScoreError, read_tunes  # noqa: E402
from runtime.music.patching import prepare_music  # noqa: E402


def music21_corpus() -> Path:
    import music21

    return Path(music21.__file__).parent / "corpus"


def evenly(items: list, count: int) -> list:
    return items[:: max(1, len(items) // count)][:count]


def chorale_files(count: int) -> list[Path]:
    """`count` Bach chorales (.mxl) spread over the corpus."""
    return evenly(sorted((music21_corpus() / "bach").glob("*.mxl")), count)


def midi_files(count: int, out_dir: Path) -> list[Path]:
    """MIDI written by music21 from `count` real ABC tunes (one per corpus file, spread over the corpus)."""
    import music21

    warnings.filterwarnings("ignore")  # music21's ABC reader warns about every unusual token
    files = []
    for source in evenly(sorted(music21_corpus().rglob("*.abc")), count):
        tune = split_tunes(source.read_text(encoding="latin-1"))[0]
        try:
            score = music21.converter.parse(tune.abc, format="abc")
            files.append(Path(score.write("midi", fp=str(out_dir / f"{source.stem}.mid"))))
        except Exception as err:  # a tune music21 cannot render is simply not part of the set
            print(f"skipped {source.name}: {type(err).__name__}: {err}", file=sys.stderr)
    return files


def measure(files: list[Path], timeout: float | None) -> dict[str, float]:
    """Convert every file once; throughput, latency percentiles, failures and patches per tune."""
    seconds, patches, failures = [], [], 0
    start = time.perf_counter()
    for path in files:
        began = time.perf_counter()
        try:
            (tune,) = read_tunes(path, timeout=timeout)
        except ScoreError:
            failures += 1
            continue
        finally:
            seconds.append(time.perf_counter() - began)
        patches.append(len(prepare_music(tune.abc, None)))
    wall = time.perf_counter() - start
    ordered = sorted(seconds)
    return {
        "files": len(files),
        "files/s": len(files) / wall,
        "median ms": 1000 * statistics.median(ordered),
        "p95 ms": 1000 * ordered[int(0.95 * (len(ordered) - 1))],
        "failed": failures,
        "patches/tune": statistics.mean(patches) if patches else 0.0,
    }


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--mxl", type=int, default=100, help="Bach chorales to convert")
    parser.add_argument("--midi", type=int, default=50, help="MIDI files to write from ABC tunes and convert")
    parser.add_argument("--timeout", type=float, default=60.0, help="per-file timeout of the guarded runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        sets = {
            ".mxl (Bach chorales)": chorale_files(args.mxl),
            ".mid (from ABC tunes)": midi_files(args.midi, Path(scratch)),
        }
        read_tunes(sets[".mxl (Bach chorales)"][0], timeout=args.timeout)  # start the converter child first
        rows = [
            (name, mode, measure(files, timeout))
            for name, files in sets.items()
            for mode, timeout in (("in process", None), ("guarded child", args.timeout))
        ]
    print(
        f"\nScore conversion, one file at a time ({platform.processor() or platform.machine()}, Python "
        f"{platform.python_version()})\n"
    )
    columns = list(rows[0][2])
    print("| set | mode | " + " | ".join(columns) + " |")
    print("|---|---|" + "---:|" * len(columns))
    for name, mode, figures in rows:
        cells = [f"{v:.0f}" if k in ("files", "failed") else f"{v:.1f}" for k, v in figures.items()]
        print(f"| {name} | {mode} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
