"""ANN libraries side by side: hnswlib (the product's) vs usearch (f32 / f16 / i8, loaded or memory-mapped)
vs faiss HNSW, on the same vectors and the same queries, with exact numpy search as the ground truth.

The corpus is bench_index.py's: base vectors (real tune embeddings from --base-shards) replicated with
noise to each of --sizes; queries are fresh noisy replicas. Every library builds with the same M and
ef_construction on --build-threads threads and inner product on the unit vectors (hnswlib "ip" as in
indexer/index_build.py, usearch "ip", faiss IndexHNSWFlat METRIC_INNER_PRODUCT), and saves a file.
Each file is then served by a fresh process (spawn), so its load time and RSS are its own: "index RSS"
is the growth of RSS over the load, and again after the queries (memory-mapped files fault their pages
in as queries touch them). Queries run one at a time on one thread at each --ef, after a recall pass
that also warms the caches. The file was just written, so loads read from the page cache, not the disk.

    pip install -e '.[bench]'    # usearch and faiss-cpu
    python bench/bench_ann.py --base-shards build/shards --sizes 100000,1000000
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Callable
from functools import partial
from importlib.metadata import version
from pathlib import Path

import hnswlib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_index import (  # noqa: E402
    add_corpus_arguments,
    latencies_ms,
    load_base,
    noise_scale,
    replicas,
    rss_mib,
    summary,
)

from indexer.segment_writer import SPACE  # noqa: E402
from runtime.search.hits import exact_top_k  # noqa: E402

try:
    import faiss
    from usearch.index import Index as UsearchIndex
except ImportError as error:
    raise SystemExit(f"{error.name} is missing: pip install -e '.[bench]'") from error

K = 10
SEED = 100  # indexer.index_build's default hnswlib seed
# Serving processes get one thread: OpenBLAS (exact search) and OpenMP (faiss) read these when they start.
ONE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}

Saver = Callable[[str], None]
SetEf = Callable[[int | None], None]
Query = Callable[[np.ndarray], np.ndarray]


def build_hnswlib(x: np.ndarray, args: argparse.Namespace) -> Saver:
    graph = hnswlib.Index(space=SPACE, dim=x.shape[1])
    graph.init_index(max_elements=len(x), ef_construction=args.ef_construction, M=args.m, random_seed=SEED)
    graph.add_items(x, np.arange(len(x)), num_threads=args.build_threads)
    return graph.save_index


def build_usearch(x: np.ndarray, args: argparse.Namespace, dtype: str) -> Saver:
    # dtype must be named: left out, usearch stores bf16 on CPUs that have it
    index = UsearchIndex(
        ndim=x.shape[1], metric="ip", dtype=dtype, connectivity=args.m, expansion_add=args.ef_construction
    )
    index.add(np.arange(len(x)), x, threads=args.build_threads)
    return index.save


def build_faiss(x: np.ndarray, args: argparse.Namespace) -> Saver:
    index = faiss.IndexHNSWFlat(x.shape[1], args.m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = args.ef_construction  # only before add; faiss's default is 40
    faiss.omp_set_num_threads(args.build_threads)
    index.add(x)
    return partial(faiss.write_index, index)


def build_exact(x: np.ndarray, args: argparse.Namespace) -> Saver:
    return lambda path: np.save(path, x)


def load_hnswlib(path: str, dim: int, count: int) -> tuple[SetEf, Query]:
    graph = hnswlib.Index(space=SPACE, dim=dim)
    graph.load_index(path, max_elements=count)
    return graph.set_ef, lambda q: graph.knn_query(q, k=K, num_threads=1)[0][0]


def load_usearch(path: str, dim: int, count: int, view: bool) -> tuple[SetEf, Query]:
    index = UsearchIndex.restore(path, view=view)

    def set_ef(ef: int | None) -> None:
        index.expansion_search = ef  # not in the file: a restored index has the default, 64

    return set_ef, lambda q: index.search(q, K, threads=1).keys


def load_faiss(path: str, dim: int, count: int, flags: int) -> tuple[SetEf, Query]:
    faiss.omp_set_num_threads(1)
    index = faiss.read_index(path, flags)

    def set_ef(ef: int | None) -> None:
        index.hnsw.efSearch = ef

    return set_ef, lambda q: index.search(q[None], K)[1][0]


def load_exact(path: str, dim: int, count: int) -> tuple[SetEf, Query]:
    vectors = np.load(path, mmap_mode="r")  # as runtime.search.index serves exact search
    return (lambda ef: None), lambda q: np.argpartition(vectors @ q, -K)[-K:]


# name: (file, builder); rows of the table: (name, build, loader)
BUILDS: dict[str, tuple[str, Callable[[np.ndarray, argparse.Namespace], Saver]]] = {
    "hnswlib": ("hnswlib.bin", build_hnswlib),
    **{
        f"usearch {dtype}": (f"usearch-{dtype}.usearch", partial(build_usearch, dtype=dtype))
        for dtype in ("f32", "f16", "i8")
    },
    "faiss HNSWFlat": ("faiss-hnsw.faiss", build_faiss),
    "exact numpy": ("vectors.npy", build_exact),
}
SERVINGS: list[tuple[str, str, Callable[[str, int, int], tuple[SetEf, Query]]]] = [
    ("hnswlib", "hnswlib", load_hnswlib),
    *(
        (
            f"usearch {dtype}{' view (mmap)' if view else ''}",
            f"usearch {dtype}",
            partial(load_usearch, view=view),
        )
        for dtype in ("f32", "f16", "i8")
        for view in (False, True)
    ),
    ("faiss HNSWFlat", "faiss HNSWFlat", partial(load_faiss, flags=0)),
    ("faiss HNSWFlat mmap", "faiss HNSWFlat", partial(load_faiss, flags=faiss.IO_FLAG_MMAP_IFC)),
    ("exact numpy (mmap)", "exact numpy", load_exact),
]


def serve(loader, path: str, dim: int, count: int, queries: np.ndarray, efs: list[int | None]) -> dict:
    """In a fresh process: load one index, then answer the queries one at a time at each ef."""
    before = rss_mib()
    started = time.perf_counter()
    set_ef, query = loader(path, dim, count)
    result = {
        "load_s": round(time.perf_counter() - started, 3),
        "rss_mib": round(rss_mib()),
        "index_rss_mib": round(rss_mib() - before),
        "runs": [],
    }
    for ef in efs:
        set_ef(ef)
        found = np.array([query(q) for q in queries], dtype=np.int64)
        result["runs"].append({"ef": ef, "found": found, **summary(latencies_ms(query, queries))})
    result["index_rss_after_queries_mib"] = round(rss_mib() - before)
    return result


def recall(found: np.ndarray, truth: list[set[int]]) -> float:
    """Mean share of the true K nearest among the K found, over the queries."""
    shares = [len(t & set(f)) / K for f, t in zip(found.tolist(), truth, strict=True)]
    return round(float(np.mean(shares)), 4)


def bench_size(size: int, base: np.ndarray, args: argparse.Namespace) -> dict:
    rng = np.random.default_rng(size)
    work = Path(args.workdir) / f"n{size}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    x, _ = replicas(base, size, args.sigma, rng)
    queries, _ = replicas(base, args.queries, args.sigma, rng)
    truth = [set(rows.tolist()) for rows in exact_top_k(queries, x, K)[1]]
    builds = {}
    for name, (file, builder) in BUILDS.items():
        if name not in args.only:
            continue
        print(f"n={size}: building {name}", file=sys.stderr, flush=True)
        started = time.perf_counter()
        save = builder(x, args)
        seconds = time.perf_counter() - started
        save(str(work / file))
        del save  # frees the index before the next build
        builds[name] = {
            "build_s": round(seconds, 2),
            "file_mib": round((work / file).stat().st_size / 2**20, 1),
        }
    dim = x.shape[1]
    del x
    rows = []
    for name, build, loader in (serving for serving in SERVINGS if serving[1] in args.only):
        print(f"n={size}: serving {name}", file=sys.stderr, flush=True)
        efs = [None] if build == "exact numpy" else args.ef
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            served = pool.apply(serve, (loader, str(work / BUILDS[build][0]), dim, size, queries, efs))
        for run in served["runs"]:
            run["recall@10"] = recall(run.pop("found"), truth)
        rows.append({"name": name, **builds[build], **served})
    return {"size": size, "dim": dim, "rows": rows}


def markdown(result: dict) -> str:
    """Two tables for one corpus size: what each index costs, and how its queries do at each ef."""
    lines = [
        f"### {result['size']:,} vectors x {result['dim']}-d",
        "",
        "| index | build s | file MiB | load s | RSS MiB | index RSS MiB: after load / after queries |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['name']} | {r['build_s']} | {r['file_mib']} | {r['load_s']} | {r['rss_mib']} "
        f"| {r['index_rss_mib']} / {r['index_rss_after_queries_mib']} |"
        for r in result["rows"]
    ]
    lines += ["", "| index | ef | recall@10 | p50 ms | p99 ms |", "|---|---:|---:|---:|---:|"]
    lines += [
        f"| {r['name']} | {run['ef'] or '-'} | {run['recall@10']:.4f} | {run['p50_ms']} | {run['p99_ms']} |"
        for r in result["rows"]
        for run in r["runs"]
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_corpus_arguments(parser, workdir="build/bench-ann")
    parser.add_argument("--build-threads", type=int, default=2, help="Threads for every library's build.")
    parser.add_argument(
        "--only",
        type=lambda text: text.split(","),
        default=list(BUILDS),
        help=f"Comma-separated builds to run (and serve), of: {', '.join(BUILDS)} [default: all]",
    )
    args = parser.parse_args()
    if unknown := set(args.only) - set(BUILDS):
        parser.error(f"unknown --only build(s): {', '.join(sorted(unknown))}")
    base, _, origin = load_base(args, None)  # --base-shards, else synthetic: nothing is embedded here
    args.sigma = noise_scale(base, args.noise)
    os.environ.update(ONE_THREAD_ENV)  # inherited by the serving processes only: this one has started
    results = {
        "base": origin,
        "noise": f"{args.noise} x median NN distance = {args.sigma:.4f}",
        "M": args.m,
        "ef_construction": args.ef_construction,
        "build_threads": args.build_threads,
        "queries": args.queries,
        "cpus": multiprocessing.cpu_count(),
        "versions": {p: version(p) for p in ("hnswlib", "usearch", "faiss-cpu", "numpy")},
        "sizes": [],
    }
    print(
        f"base: {results['base']}; noise {results['noise']}; M={args.m}, ef_construction="
        f"{args.ef_construction}, build on {args.build_threads} threads, queries on 1; {args.queries} "
        f"queries; {results['versions']}\n",
        flush=True,
    )
    for size in args.sizes:
        results["sizes"].append(bench_size(size, base, args))
        print(markdown(results["sizes"][-1]), flush=True)
    if not args.keep:
        shutil.rmtree(args.workdir, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
