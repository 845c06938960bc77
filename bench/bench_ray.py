"""Ray engine vs local engine on this machine: tunes/s of `clamp embed` over music21's ABC corpus.

On one machine Ray cannot beat the local engine (same ONNX model, same cores); this measures what Ray's
scheduling, serialisation and start-up cost, the figure to subtract when estimating cluster throughput.
Each engine runs in a fresh process on the same files (read once before, so both find them cached).
Then the driver ceiling: how fast one process settles rows and writes shards, the Ray engine's one writer.

    .venv/bin/python bench/bench_ray.py                 # build/model, else a random default-shaped model
    .venv/bin/python bench/bench_ray.py --model DIR --files 300 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa

from indexer.ray_engine import embedded_schema, item_row, rows_with_seconds, settle_rows, with_columns
from indexer.reader import TuneRecord, read_inputs
from indexer.runner import EmbedOptions, embedding_run

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import REPO, corpus_files, stand_in_model  # noqa: E402


def run_engine(engine: str, files: list[Path], model: Path, out: Path, shard_rows: int) -> dict:
    """`clamp embed --engine ENGINE` in a fresh process: its stats record plus the whole process's seconds."""
    command = [sys.executable, "-c", "from runtime.cli import main; main()", "embed", *map(str, files)]
    command += ["--model", str(model), "--out", str(out), "--quiet", "--shard-rows", str(shard_rows)]
    command += ["--engine", engine]
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=REPO)
    process_seconds = time.perf_counter() - start
    [stats_file] = (out / "_stats").glob("*.json")
    return {**json.loads(stats_file.read_text()), "process_seconds": process_seconds}


def driver_ceiling(files: list[Path], root: Path, dim: int = 768, rows: int = 20_000) -> float:
    """Tunes/s one driver settles and writes (float16 shards, real tunes): the Ray engine's one writer."""
    records = [item for item in read_inputs(files) if isinstance(item, TuneRecord)][:rows]
    table = rows_with_seconds([item_row(r, frozenset()) for r in records], 0.0)
    vectors = np.random.default_rng(0).standard_normal((len(records), dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    values = {
        "n_patches": [20] * len(records),
        "truncated": [False] * len(records),
        "patch_seconds": [0.0] * len(records),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), dim),
        "infer_seconds": [0.0] * len(records),
    }
    table = with_columns(table, embedded_schema(dim), values)
    model = SimpleNamespace(model_hash="bench", model_name="bench", dim=dim, max_patches=512)
    start = time.perf_counter()
    options = EmbedOptions(quiet=True, shard_rows=10_000)
    with embedding_run([str(f) for f in files], model, root / "driver", options, {"name": "bench"}) as run:
        for batch in table.to_batches(max_chunksize=1024):
            settle_rows(run, pa.Table.from_batches([batch]))
    return len(records) / (time.perf_counter() - start)


def print_table(described: str, n_files: int, results: dict[str, dict]) -> None:
    print(f"\nclamp embed, {n_files} ABC files of music21's corpus, model {described}")
    print(f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPUs, Python {platform.python_version()}")
    header = [
        "engine",
        "tunes",
        "run s",
        "tunes/s (run)",
        "process s",
        "tunes/s (process)",
        "infer s",
        "wait s",
    ]
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for engine, stats in results.items():
        cells = [
            engine,
            str(stats["embedded"]),
            f"{stats['wall_seconds']:.1f}",
            f"{stats['tunes_per_second']:.0f}",
            f"{stats['process_seconds']:.1f}",
            f"{stats['embedded'] / stats['process_seconds']:.0f}",
            f"{stats['seconds']['infer']:.1f}",
            f"{stats['seconds']['wait']:.1f}",
        ]
        print(" | ".join(cells))
    local, ray = results["local"], results["ray"]
    print(
        f"Ray / local tunes/s: {ray['tunes_per_second'] / local['tunes_per_second']:.2f} (run), "
        f"{local['process_seconds'] / ray['process_seconds']:.2f} (process, with Ray's start and stop); "
        "infer s = ONNX Runtime seconds summed over the encoder(s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO / "build" / "model")
    parser.add_argument("--files", type=int, default=None, help="the first N ABC files [default: all]")
    parser.add_argument("--shard-rows", type=int, default=10_000)
    parser.add_argument("--json", type=Path, default=None, help="also write the stats records here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        root = Path(tmp)
        model, described = args.model, str(args.model)
        if not (model / "manifest.json").is_file():
            model, described = stand_in_model(root, tiny=False)
        files = corpus_files()[: args.files]
        for path in files:
            path.read_bytes()  # into the page cache, for both engines alike
        results = {
            engine: run_engine(engine, files, model, root / f"shards-{engine}", args.shard_rows)
            for engine in ("local", "ray")
        }
        driver = driver_ceiling(files, root)
    print_table(described, len(files), results)
    print(f"driver ceiling (settle + write float16 shards, 768-d, real tunes): {driver:.0f} tunes/s")
    if args.json:
        args.json.write_text(json.dumps({**results, "driver_tunes_per_second": driver}, indent=2) + "\n")


if __name__ == "__main__":
    main()
