"""Index benchmark: HNSW build time and memory, query latency and recall@10 against exact search, at scale.

The corpus at each size is made of base vectors replicated with noise: every vector is
normalise(base[j] + sigma * g / sqrt(dim)) for a random base j and Gaussian g, where sigma is --noise
times the median distance from a base tune to its nearest other base tune. Each tune thus becomes a
cloud of variants smaller than the gaps between real tunes, and the set keeps the base's structure
(noise larger than those gaps would turn it into structureless random data, where no ANN index works).
The base is, in order of preference: the embeddings in --base-shards (real tunes, from `clamp embed`),
real music21 tunes embedded with --model, or synthetic low-rank vectors (32-d structure + noise).
Queries are fresh noisy replicas, not in the index.

    python bench/bench_index.py --model build/model --sizes 100000
    python bench/bench_index.py --base-shards build/shards --model build/model --sizes 100000,1000000
"""

from __future__ import annotations

import argparse
import inspect
import json
import multiprocessing
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from indexer.index_build import build_index  # noqa: E402
from indexer.reader import TuneRecord  # noqa: E402
from indexer.shards import ShardWriter, embeddings_matrix, iter_shard_batches, rows_table, shard_schema  # noqa: E402
from runtime.search.index import Index, read_manifest  # noqa: E402

TEXT_QUERIES = [
    "a lively jig in D major",
    "a slow air",
    "a reel for the fiddle",
    "Ein Liebeslied",
    "a waltz in 3/4",
    "a hornpipe with dotted rhythms",
    "a Chinese folk song",
    "a march",
    "a lullaby",
    "a drinking song",
]


def rss_mib() -> float:
    """Resident memory of this process now."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load_base(args: argparse.Namespace, encoder) -> tuple[np.ndarray, list[str], str]:
    """Base vectors [B, dim], their ABC texts, and a description of where they came from."""
    if args.base_shards:
        vectors, abcs = [], []
        for batch in iter_shard_batches(args.base_shards, columns=["abc", "embedding"]):
            vectors.append(embeddings_matrix(batch))
            abcs += batch.column("abc").to_pylist()
        return np.concatenate(vectors), abcs, f"{len(abcs)} real tunes from {args.base_shards}"
    if encoder is not None:
        from music21 import corpus

        from runtime.music.abc import split_tunes

        paths = sorted(str(p) for p in corpus.getPaths(fileExtensions=("abc",)))
        abcs = [t.abc for p in paths for t in split_tunes(Path(p).read_text("utf-8", errors="replace"))]
        abcs = [abcs[i] for i in np.random.default_rng(0).permutation(len(abcs))[: args.base_tunes]]
        started = time.perf_counter()
        vectors = encoder.embed_abc(abcs)
        took = time.perf_counter() - started
        return (
            vectors,
            abcs,
            f"{len(abcs)} music21 tunes embedded with {args.model} ({len(abcs) / took:.0f} tunes/s)",
        )
    rng = np.random.default_rng(0)
    base = rng.standard_normal((args.base_tunes, 32)) @ rng.standard_normal((32, args.dim))
    base += 0.3 * rng.standard_normal(base.shape) * np.abs(base).mean()
    return (
        base.astype(np.float32),
        ["X:1\nK:C\nCDEF GABc|\n"] * len(base),
        "synthetic low-rank (32-d + noise)",
    )


def open_base(args: argparse.Namespace):
    """The --model's encoder (None without one), the base vectors, their tunes and where they came from;
    sets args.sigma, the replicas' noise."""
    encoder = None
    if args.model:
        from runtime.model.encoder import Encoder

        encoder = Encoder.open(args.model)
    base, abcs, origin = load_base(args, encoder)
    args.sigma = noise_scale(base, args.noise)
    return encoder, base, abcs, origin


def noise_scale(base: np.ndarray, fraction: float) -> float:
    """`fraction` of the median distance from a base vector to its nearest other base vector."""
    unit = base / np.linalg.norm(base, axis=1, keepdims=True)
    sample = unit[np.random.default_rng(1).permutation(len(unit))[:2000]]
    cosines = sample @ unit.T
    cosines[cosines > 1 - 1e-6] = -1  # itself (and exact duplicates)
    return fraction * float(np.median(np.sqrt(2 - 2 * cosines.max(axis=1))))


def replicas(
    base: np.ndarray, count: int, noise: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """`count` noisy unit-norm copies of random base rows, and which base row each copies."""
    which = rng.integers(len(base), size=count)
    x = base[which] / np.linalg.norm(base[which], axis=1, keepdims=True)
    x = x + noise * rng.standard_normal(x.shape, dtype=np.float32) / np.sqrt(base.shape[1])
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), which


def write_shards(out: Path, base, abcs, size, args, model_hash, rng, first: int = 0) -> None:
    """`size` replicas as shards (after any in `out`), with ids t{first}, t{first + 1}, ..."""
    schema = shard_schema(base.shape[1], args.dtype, model_hash, "bench")
    writer = ShardWriter(out, schema, shard_rows=50_000)
    meters = ["6/8", "2/4", "3/4", "4/4", "9/8"]
    for start in range(0, size, 50_000):
        n = min(50_000, size - start)
        x, which = replicas(base, n, args.sigma, rng)
        records = [
            TuneRecord(
                f"t{first + start + i}",
                f"bench/{w}.abc",
                first + start + i,
                abcs[w],
                {"title": f"tune {first + start + i}", "meter": meters[w % len(meters)]},
            )
            for i, w in enumerate(which)
        ]
        writer.add(rows_table(schema, records, [8] * n, [False] * n, x))
    writer.flush()


def _build(shards: str, out: str, m: int, ef_construction: int) -> None:
    build_index(shards, out, m=m, ef_construction=ef_construction)


def build_in_child(shards: Path, out: Path, args) -> tuple[float, float]:
    """Build in a fresh process: (wall seconds, peak RSS MiB of the build alone)."""
    ctx = multiprocessing.get_context("spawn")
    started = time.perf_counter()
    child = ctx.Process(target=_build, args=(str(shards), str(out), args.m, args.ef_construction))
    child.start()
    child.join()
    if child.exitcode != 0:
        raise SystemExit(f"index build failed (exit {child.exitcode})")
    return time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def latencies_ms(fn, items) -> np.ndarray:
    """Milliseconds of fn(item) for each item, after one untimed warm-up call (sessions, caches)."""
    fn(items[0])
    out = []
    for item in items:
        started = time.perf_counter()
        fn(item)
        out.append((time.perf_counter() - started) * 1000)
    return np.asarray(out)


def summary(ms: np.ndarray) -> dict[str, float]:
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
    }


def bench_size(size: int, base, abcs, args, encoder) -> dict:
    rng = np.random.default_rng(size)
    work = Path(args.workdir) / f"n{size}"
    shutil.rmtree(work, ignore_errors=True)
    started = time.perf_counter()
    write_shards(work / "shards", base, abcs, size, args, encoder.model_hash if encoder else "bench" * 8, rng)
    result: dict = {
        "size": size,
        "dim": base.shape[1],
        "shards_seconds": round(time.perf_counter() - started, 1),
    }
    build_s, build_rss = build_in_child(work / "shards", work / "index", args)
    files = {p.name: round(p.stat().st_size / 2**20, 1) for p in (work / "index").iterdir()}
    result.update(build_seconds=round(build_s, 1), build_peak_rss_mib=round(build_rss), index_files_mib=files)

    before = rss_mib()
    index = (
        Index.open(work / "index", encoder=encoder)
        if encoder
        else Index(work / "index", read_manifest(work / "index"), None)
    )
    result["query_process_rss_mib"] = round(rss_mib() - before)
    queries, _ = replicas(base, args.queries, args.sigma, rng)
    truth = [{h.id for h in hits} for hits in index.search_vectors(queries, 10, exact=True)]
    result["hnsw"] = []
    for ef in args.ef:
        graph = index.segments[0].graph
        graph.set_ef(ef)  # single-threaded benchmark: safe here
        found = [index.search_vectors(q, 10)[0] for q in queries]
        recall = np.mean([len({h.id for h in hits} & t) / 10 for hits, t in zip(found, truth, strict=True)])
        api_ms = latencies_ms(lambda q: index.search_vectors(q, 10), queries)
        raw_ms = latencies_ms(lambda q, graph=graph: graph.knn_query(q, k=10, num_threads=1), queries)
        result["hnsw"].append(
            {
                "ef": ef,
                "recall@10": round(float(recall), 4),
                "search": summary(api_ms),
                "graph_only": summary(raw_ms),
            }
        )
    for name, text in (
        ("broad (20%)", "meter = 6/8"),
        ("narrow (one base tune's replicas)", "source = bench/7.abc"),
    ):
        filtered_ms = latencies_ms(
            lambda q, text=text: index.search_vectors(q, 10, filter=text), queries[:50]
        )
        result.setdefault("filtered", {})[f"{name}: {text}"] = summary(filtered_ms)
    exact_ms = latencies_ms(lambda q: index.search_vectors(q, 10, exact=True), queries[:20])
    batch_ms = latencies_ms(lambda q: index.search_vectors(q, 10, exact=True), [queries[:32]] * 3)
    result["exact"] = {
        "single": summary(exact_ms),
        "batch32_per_query_ms": round(float(batch_ms.mean()) / 32, 3),
    }
    if encoder is not None:
        index.segments[0].graph.set_ef(args.ef[len(args.ef) // 2])
        texts = TEXT_QUERIES * 5
        result["text_query_end_to_end"] = summary(latencies_ms(index.search_text, texts))
    if not args.keep:
        shutil.rmtree(work)
    return result


def int_list(text: str) -> list[int]:
    """Parse "100000,1000000" as [100000, 1000000]."""
    return [int(part) for part in text.split(",")]


def add_corpus_arguments(parser: argparse.ArgumentParser, workdir: str) -> None:
    """The options of the replicated corpus and of the HNSW runs, shared with bench_ann.py."""
    build_defaults = inspect.signature(build_index).parameters
    parser.add_argument(
        "--sizes", type=int_list, default="100000", help="Comma-separated corpus sizes, e.g. 100000,1000000."
    )
    parser.add_argument(
        "--base-shards",
        help="Shards of real embeddings to replicate (default: music21 embedded by --model, or synthetic).",
    )
    parser.add_argument(
        "--base-tunes",
        type=int,
        default=13000,
        help="Base tunes to embed (all 12,978 of music21) or synthesise.",
    )
    parser.add_argument("--dim", type=int, default=256, help="Dimension of the synthetic base.")
    parser.add_argument(
        "--noise", type=float, default=0.5, help="Noise norm, as a fraction of the base's median NN distance."
    )
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--ef", type=int_list, default="64,128,256", help="HNSW query beams to measure.")
    parser.add_argument("--m", type=int, default=build_defaults["m"].default)
    parser.add_argument("--ef-construction", type=int, default=build_defaults["ef_construction"].default)
    parser.add_argument("--workdir", default=workdir)
    parser.add_argument("--keep", action="store_true", help="Keep the work dir's files.")
    parser.add_argument("--json", help="Also write the results to this file.")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_corpus_arguments(parser, workdir="build/bench")
    parser.add_argument("--model", help="Model dir: embeds the base tunes and times end-to-end text queries.")
    parser.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    args = parser.parse_args()
    encoder, base, abcs, origin = open_base(args)
    unit_sample = base[:2000] / np.linalg.norm(base[:2000], axis=1, keepdims=True)
    results = {
        "base": origin,
        "noise": f"{args.noise} x median NN distance = {args.sigma:.4f}",
        "base_mean_pairwise_cosine": round(float(np.mean(unit_sample @ unit_sample.T)), 3),
        "M": args.m,
        "ef_construction": args.ef_construction,
        "cpus": multiprocessing.cpu_count(),
        "sizes": [],
    }
    print(f"base: {origin}; noise {args.noise} x median NN distance = {args.sigma:.4f}", flush=True)
    for size in args.sizes:
        results["sizes"].append(bench_size(size, base, abcs, args, encoder))
        print(json.dumps(results["sizes"][-1], indent=2), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
