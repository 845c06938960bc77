"""End-to-end `clamp embed` throughput by stage and precision, against the clamp.py-style loop, and peak
memory at 1x vs 10x corpus size.

The corpus is every ABC file of music21's corpus (~13k real tunes); 10x copies the files into ten
folders (new paths, so new ids). Each case runs the real command in a fresh process; its stats file
gives the stage timings and the process's peak RSS. The baseline is what the released clamp.py does
with the same model: read each file, split and patch each tune, and embed it alone with PyTorch
(batch 1, one-hot input); it runs first, in its own process, when --checkpoint is given.

    .venv/bin/python bench/bench_pipeline.py --checkpoint default   # build/model = its export
    .venv/bin/python bench/bench_pipeline.py --model DIR --scales 1 10 --precisions fp32 --workers 1
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def corpus_files() -> list[Path]:
    from music21 import corpus

    return sorted(Path(p) for p in corpus.getPaths(fileExtensions=("abc",)))


def scaled_corpus(files: list[Path], scale: int, root: Path) -> Path:
    """A folder holding `scale` copies of the corpus files under different paths."""
    common = Path(*Path(files[0]).parts[: len(Path(files[0]).parts) - 2])
    target = root / f"corpus-x{scale}"
    for copy in range(scale):
        for path in files:
            dest = target / f"copy{copy}" / path.relative_to(common)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
    return target


def stand_in_model(root: Path, tiny: bool) -> tuple[Path, str]:
    """Without an exported model: the default family's shape with random music weights, or a tiny model."""
    sys.path.insert(0, str(REPO / "tests"))
    if tiny:
        from helpers import tiny_model_dir

        return tiny_model_dir(root), "tiny random model"
    import torch

    from exporter.checkpoint import init_model, pretrained_text_dir
    from exporter.export import build_model_dir
    from runtime.model.families import load_family

    family = load_family("default")
    torch.manual_seed(0)
    source = {"model": "default", "checkpoint": "random music weights (bench)", "sha256": "0" * 64}
    tokenizer = pretrained_text_dir(family) / "tokenizer.json"
    build_model_dir(init_model(family).eval(), family, tokenizer, root / "model", source, int8=False)
    return root / "model", "default family shape, random music weights"


def clamp_py_rate(checkpoint: str, files: list[Path]) -> tuple[int, float]:
    """Tunes and tunes/s of the clamp.py-style loop: read, split, patch and embed one tune at a time."""
    import torch
    from bench_embed import clamp_py_loop

    from exporter.checkpoint import load_model
    from runtime.music.abc import split_tunes
    from runtime.music.patching import prepare_music

    model, family, _ = load_model(checkpoint)
    model.eval()
    count, start = 0, time.perf_counter()
    with torch.no_grad():
        for path in files:
            for tune in split_tunes(path.read_text(encoding="utf-8", errors="replace")):
                clamp_py_loop(model, [prepare_music(tune.abc, family["music"]["max_patches"])])
                count += 1
    return count, count / (time.perf_counter() - start)


def run_case(
    corpus: Path, model: Path, out: Path, workers: int | None, shard_rows: int, precision: str
) -> dict:
    """Run `clamp embed` in a fresh process; return its stats record."""
    command = [sys.executable, "-c", "from runtime.cli import main; main()", "embed", str(corpus)]
    command += ["--model", str(model), "--out", str(out), "--quiet", "--shard-rows", str(shard_rows)]
    command += ["--precision", precision]
    command += [] if workers is None else ["--workers", str(workers)]
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=REPO)
    wall = time.perf_counter() - start
    [stats_file] = (out / "_stats").glob("*.json")
    return {**json.loads(stats_file.read_text()), "process_seconds": wall}


def print_table(model: str, rows: list[tuple[int, str, dict]], baseline: tuple[int, float] | None) -> None:
    print(f"\nclamp embed on music21's ABC corpus, model {model}")
    if baseline:
        print(
            f"clamp.py-style loop (PyTorch, batch 1, one-hot): {baseline[0]} tunes, {baseline[1]:.1f} tunes/s"
        )
    stages = ("read", "patch", "wait", "infer", "write")
    header = [
        "scale",
        "precision",
        "tunes",
        "wall s",
        "tunes/s",
        "vs clamp.py loop",
        *(f"{s} s" for s in stages),
        "RSS main MB",
        "RSS worker MB",
    ]
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for scale, precision, stats in rows:
        cells = [
            f"{scale}x",
            precision,
            str(stats["embedded"]),
            f"{stats['wall_seconds']:.1f}",
            f"{stats['tunes_per_second']:.0f}",
            f"{stats['tunes_per_second'] / baseline[1]:.1f}x" if baseline else "-",
        ]
        cells += [f"{stats['seconds'][s]:.1f}" for s in stages]
        cells += [f"{stats['peak_rss_mb']['main']:.0f}", f"{stats['peak_rss_mb']['workers']:.0f}"]
        print(" | ".join(cells))
    print(
        "patch = CPU seconds in the workers (overlaps inference); wait = main process idle, waiting on them."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO / "build" / "model")
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--shard-rows", type=int, default=10_000)
    parser.add_argument(
        "--precisions", nargs="+", default=["fp32", "int8"], help="at 1x; larger scales run the first one"
    )
    parser.add_argument("--checkpoint", help="PyTorch checkpoint of --model for the clamp.py-style baseline")
    parser.add_argument(
        "--tiny", action="store_true", help="with no --model dir: a tiny model, not default-shaped"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        root = Path(tmp)
        model, described = args.model, str(args.model)
        if not (model / "manifest.json").is_file():
            model, described = stand_in_model(root, args.tiny)
        files = corpus_files()
        baseline = None
        if args.checkpoint:  # in its own process, as each clamp embed case runs in its own
            with multiprocessing.get_context("spawn").Pool(1) as pool:
                baseline = pool.apply(clamp_py_rate, (args.checkpoint, files))
        rows = []
        for scale in args.scales:
            corpus = scaled_corpus(files, scale, root)
            for precision in args.precisions if scale == 1 else args.precisions[:1]:
                out = root / f"shards-x{scale}-{precision}"
                stats = run_case(corpus, model, out, args.workers, args.shard_rows, precision)
                rows.append((scale, precision, stats))
                print_table(described, rows[-1:], baseline)
            shutil.rmtree(corpus)
        print_table(described, rows, baseline)


if __name__ == "__main__":
    main()
