"""Text query latency in-process: Index.search_text (tokenise, encode, search, fetch) per precision.

Each (index, precision, run) opens the index in a fresh process, warms up on every query once, then
times --queries searches one at a time; runs alternate precisions so drift hits both alike.

    python bench/bench_query.py --index build/index --index build/bench/n1000000/index --runs 3
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_serving import TEXT_QUERIES  # noqa: E402


def p50_p99_ms(
    index_dir: str, model_dir: str | None, precision: str, queries: int
) -> tuple[int, float, float]:
    """Items in the index and the p50 / p99 of search_text in ms (run in a child process)."""
    from runtime.search.index import Index

    index = Index.open(index_dir, model_dir, precision=precision)
    for text in TEXT_QUERIES:
        index.search_text(text, 10)
    ms = []
    for i in range(queries):
        started = time.perf_counter()
        index.search_text(TEXT_QUERIES[i % len(TEXT_QUERIES)], 10)
        ms.append((time.perf_counter() - started) * 1000)
    return len(index), float(np.median(ms)), float(np.percentile(ms, 99))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", action="append", required=True, help="index dir; repeatable")
    parser.add_argument("--model", help="model dir [default: what each index resolves]")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "int8"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    print("| index | items | precision | p50 ms per run | p99 ms per run |\n|---|---|---|---|---|")
    context = multiprocessing.get_context("spawn")
    for index_dir in args.index:
        results: dict[str, list[tuple[int, float, float]]] = {p: [] for p in args.precisions}
        for _ in range(args.runs):
            for precision in args.precisions:
                with context.Pool(1) as pool:
                    results[precision].append(
                        pool.apply(p50_p99_ms, (index_dir, args.model, precision, args.queries))
                    )
        for precision, runs in results.items():
            p50s = " / ".join(f"{r[1]:.2f}" for r in runs)
            p99s = " / ".join(f"{r[2]:.2f}" for r in runs)
            print(f"| {index_dir} | {runs[0][0]:,} | {precision} | {p50s} | {p99s} |", flush=True)


if __name__ == "__main__":
    main()
