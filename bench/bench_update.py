"""Index updates at scale: adding tunes to a built index (and deleting some), by today's full rebuild and by
an update (a new segment plus deleted rows), with queries running through the update; and what segments
cost a query.

The corpus is bench_index.py's (base vectors replicated with noise to each of --sizes). The base index
of each size is built once and cached under --workdir (its build time and peak RSS with it: that build
is today's path for any change); every run then hard-links a copy of it, adds --add new tunes as a new
shard and lists --delete old ones as superseded, and brings the copy up to date with `build_index` in a
fresh process while this one queries the copy through a LiveIndex (one thread, vector queries with and
without a filter, item look-ups), counting errors and timing each query before, during and after the
swap. Up to --rebuild-max tunes, today's full rebuild of the grown shards is timed in the same run.
Then: recall@10 (vs exact) and latency of the one-segment base against the updated index, and at the
smallest size the same corpus as one segment or as --fanout segments (one added per update).

    python bench/bench_update.py --base-shards build/shards --model build/model \
        --sizes 100000,1000000 --noise 1
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_index import latencies_ms, open_base, replicas, rss_mib, summary, write_shards  # noqa: E402

from indexer.index_build import build_index  # noqa: E402
from indexer.layout import checksum_file  # noqa: E402
from indexer.shards import shard_files  # noqa: E402
from indexer.supersede import write_superseded  # noqa: E402
from runtime.search.index import Index, read_manifest  # noqa: E402
from runtime.search.live import LiveIndex  # noqa: E402
from runtime.storage.dirs import SUPERSEDED_FILE  # noqa: E402

NARROW = "source = bench/7.abc"  # one base tune's replicas: answered by exact search over them


def _child(queue, fn, args, options) -> None:
    started = time.perf_counter()
    result = fn(*args, **options)
    queue.put((time.perf_counter() - started, peak_rss_mib(), result))


def peak_rss_mib() -> float:
    """This process's peak RSS since it started (VmHWM: ru_maxrss keeps the forking parent's peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def in_child(fn, *args, **options) -> tuple[float, float, Any]:
    """fn(*args) in a fresh process: (its seconds, its own peak RSS MiB, its result)."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_child, args=(queue, fn, args, options))
    child.start()
    seconds, peak, result = queue.get()
    child.join()
    return seconds, peak, result


def cached_base(size: int, base, abcs, args, model_hash: str) -> tuple[Path, dict]:
    """The base shards and index of a size, built once (full build, timed) and kept under --workdir."""
    work = Path(args.workdir) / f"n{size}"
    record = work / "base.json"
    if record.is_file() and (work / "index" / "manifest.json").is_file():
        return work, json.loads(record.read_text())
    shutil.rmtree(work, ignore_errors=True)
    write_shards(work / "shards", base, abcs, size, args, model_hash, np.random.default_rng(size))
    seconds, peak, _ = in_child(build_index, str(work / "shards"), str(work / "index"), model_dir=args.model)
    built = {
        "size": size,
        "build_seconds": round(seconds, 1),
        "peak_rss_mib": round(peak),
        "date": time.strftime("%F"),
    }
    record.write_text(json.dumps(built) + "\n")
    return work, built


def grow(work: Path, size: int, base, abcs, args, model_hash: str) -> list[Path]:
    """Add --add tunes (a new shard) and supersede --delete base tunes; the files to remove afterwards."""
    before = set(shard_files(work / "shards"))
    write_shards(
        work / "shards",
        base,
        abcs,
        args.add,
        args,
        model_hash,
        np.random.default_rng(-size % 997),
        first=size,
    )
    write_superseded(
        work / "shards", {f"t{i}": "bench" for i in range(0, size, size // args.delete)[: args.delete]}
    )
    added = [f for f in shard_files(work / "shards") if f not in before]
    return [*added, *(checksum_file(f) for f in added), work / "shards" / SUPERSEDED_FILE]


def load_through_update(work: Path, queries: np.ndarray, args) -> dict:
    """Update a hard-linked copy of the base index in a child while this process queries it live."""
    live_dir = work / "live"
    shutil.rmtree(live_dir, ignore_errors=True)
    subprocess.run(["cp", "-al", str(work / "index"), str(live_dir)], check=True)  # base files never change
    rss_before = rss_mib()
    live = LiveIndex(Index(live_dir, read_manifest(live_dir), None))
    rss_open = rss_mib()
    phase, stop, swapped_at = ["before"], threading.Event(), []
    timings: dict[str, list[float]] = {"before": [], "during": [], "after": []}
    errors: list[str] = []

    def query() -> None:
        i = 0
        while not stop.is_set():
            q, i = queries[i % len(queries)], i + 1
            started = time.perf_counter()
            try:
                index = live.current
                hits = index.search_vectors(q, 10, filter=NARROW if i % 5 == 0 else None)[0]
                if hits:  # (a narrow filter may pass nothing at small sizes)
                    index.item(hits[0].id)
            except Exception as err:  # noqa: BLE001 - every failure is counted, none may happen
                errors.append(f"{type(err).__name__}: {err}")
            timings[phase[0]].append((time.perf_counter() - started) * 1000)

    def watch() -> None:
        while not stop.is_set():
            if live.refresh():
                swapped_at.append(time.perf_counter())
            time.sleep(0.1)

    threads = [threading.Thread(target=query), threading.Thread(target=watch)]
    for thread in threads:
        thread.start()
    time.sleep(2)
    phase[0] = "during"
    seconds, peak, manifest = in_child(build_index, str(work / "shards"), str(live_dir), model_dir=args.model)
    ended = (live_dir / "manifest.json").stat().st_mtime - time.time() + time.perf_counter()  # the swap
    deadline = ended + 60
    while not swapped_at and time.perf_counter() < deadline:
        time.sleep(0.01)
    phase[0] = "after"
    time.sleep(2)
    stop.set()
    for thread in threads:
        thread.join()
    result = {
        "update_seconds": round(seconds, 1),
        "update_peak_rss_mib": round(peak),
        "update": manifest["update"],
        "count": manifest["count"],
        "errors": len(errors),
        "first_errors": errors[:3],
        "queries": {name: {"n": len(ms), **summary(np.asarray(ms))} for name, ms in timings.items() if ms},
        "served_after_manifest_s": round(swapped_at[0] - ended, 2) if swapped_at else None,
        "serving_rss_mib": {
            "open": round(rss_open - rss_before),
            "after_swap": round(rss_mib() - rss_before),
        },
    }
    return result


def quality(index: Index, queries: np.ndarray) -> dict:
    """recall@10 against exact search and single-query latency (k=10, default ef, one thread)."""
    truth = [{h.id for h in hits} for hits in index.search_vectors(queries, 10, exact=True)]
    found = [{h.id for h in index.search_vectors(q, 10)[0]} for q in queries]
    recall = np.mean([len(f & t) / 10 for f, t in zip(found, truth, strict=True)])
    return {
        "segments": len(index.segments),
        "deleted": len(index.dead),
        "recall@10": round(float(recall), 4),
        **summary(latencies_ms(lambda q: index.search_vectors(q, 10), queries)),
    }


def fanout(size: int, base, abcs, args, model_hash: str, queries: np.ndarray) -> dict:
    """The same `size` tunes as one segment (full build) and as --fanout segments (one per update)."""
    work = Path(args.workdir) / f"fanout{size}"
    shutil.rmtree(work, ignore_errors=True)
    part = size // args.fanout
    for i in range(args.fanout):
        write_shards(
            work / "shards", base, abcs, part, args, model_hash, np.random.default_rng(i), first=i * part
        )
        build_index(work / "shards", work / "segmented", model_dir=args.model)
    build_index(work / "shards", work / "single", model_dir=args.model, full=True)
    result = {
        name: quality(Index(work / name, read_manifest(work / name), None), queries)
        for name in ("single", "segmented")
    }
    shutil.rmtree(work)
    return result


def bench_size(size: int, base, abcs, args, model_hash: str) -> dict:
    work, built = cached_base(size, base, abcs, args, model_hash)
    queries, _ = replicas(base, args.queries, args.sigma, np.random.default_rng(size + 1))
    result: dict = {"size": size, "base_build": built}
    added = grow(work, size, base, abcs, args, model_hash)
    try:
        if size <= args.rebuild_max:
            seconds, peak, manifest = in_child(
                build_index, str(work / "shards"), str(work / "rebuilt"), model_dir=args.model
            )
            result["full_rebuild"] = {
                "seconds": round(seconds, 1),
                "peak_rss_mib": round(peak),
                "count": manifest["count"],
            }
            shutil.rmtree(work / "rebuilt")
        result["live_update"] = load_through_update(work, queries, args)
        result["quality"] = {
            "base (1 segment)": quality(Index(work / "index", read_manifest(work / "index"), None), queries),
            "updated": quality(Index(work / "live", read_manifest(work / "live"), None), queries),
        }
    finally:
        for path in added:
            path.unlink(missing_ok=True)
        shutil.rmtree(work / "live", ignore_errors=True)
    return result


def row(*cells: object) -> None:
    print("| " + " | ".join(map(str, cells)) + " |")


def print_tables(results: dict) -> None:
    header = ["size", "+ / - tunes", "today: full rebuild s (peak RSS)", "update s (peak RSS)", "speed-up"]
    header += [
        "errors during update",
        "query p50/p99 ms before / during / after",
        "served s after the manifest swap",
    ]
    print()
    row(*header)
    row(*["---"] * len(header))
    for r in results["sizes"]:
        live, base, q = r["live_update"], r["base_build"], r["live_update"]["queries"]
        full = r.get("full_rebuild") or {
            "seconds": base["build_seconds"],
            "peak_rss_mib": base["peak_rss_mib"],
        }
        note = "" if "full_rebuild" in r else " (the cached base build)"
        row(
            f"{r['size']:,}",
            f"+{live['update']['added']:,} / -{live['update']['deleted']:,}",
            f"{full['seconds']}{note} ({full['peak_rss_mib']:,} MiB)",
            f"{live['update_seconds']} ({live['update_peak_rss_mib']:,} MiB)",
            f"{full['seconds'] / live['update_seconds']:.0f}x",
            f"{live['errors']} of {sum(v['n'] for v in q.values()):,}",
            " / ".join(f"{q[p]['p50_ms']}/{q[p]['p99_ms']}" for p in ("before", "during", "after") if p in q),
            live["served_after_manifest_s"],
        )
    print(f"\n(a child process's imports alone peak at {results['child_baseline_rss_mib']} MiB)\n")
    row("index", "segments", "deleted rows", "recall@10", "p50 / p99 ms")
    row(*["---"] * 5)
    rows = [(f"{r['size']:,} {name}", s) for r in results["sizes"] for name, s in r["quality"].items()]
    rows += [(f"{results['fanout_size']:,} as {name}", s) for name, s in results["fanout"].items()]
    for name, s in rows:
        row(name, s["segments"], f"{s['deleted']:,}", s["recall@10"], f"{s['p50_ms']} / {s['p99_ms']}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=lambda t: [int(p) for p in t.split(",")], default="100000")
    parser.add_argument("--base-shards", help="Shards of real embeddings to replicate.")
    parser.add_argument("--model", help="Model dir that made --base-shards (recorded, and calibrates).")
    parser.add_argument("--base-tunes", type=int, default=13000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--noise", type=float, default=0.5)
    parser.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    parser.add_argument("--add", type=int, default=10_000, help="Tunes added to each base.")
    parser.add_argument("--delete", type=int, default=1_000, help="Base tunes superseded.")
    parser.add_argument(
        "--rebuild-max", type=int, default=200_000, help="Largest size to also rebuild in full."
    )
    parser.add_argument(
        "--fanout", type=int, default=4, help="Segments of the fan-out comparison (smallest size)."
    )
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--workdir", default="build/bench-update")
    parser.add_argument("--json", help="Also write the results to this file.")
    args = parser.parse_args()
    encoder, base, abcs, origin = open_base(args)
    model_hash = encoder.model_hash if encoder else "bench" * 8
    results: dict = {"base": origin, "cpus": multiprocessing.cpu_count(), "sizes": []}
    results["child_baseline_rss_mib"] = round(in_child(time.sleep, 0)[1])  # imports alone: in every peak
    for size in args.sizes:
        results["sizes"].append(bench_size(size, base, abcs, args, model_hash))
        print(json.dumps(results["sizes"][-1], indent=2), flush=True)
    smallest = min(args.sizes)
    queries, _ = replicas(base, args.queries, args.sigma, np.random.default_rng(7))
    results["fanout_size"], results["fanout"] = (
        smallest,
        fanout(smallest, base, abcs, args, model_hash, queries),
    )
    print(json.dumps(results["fanout"], indent=2), flush=True)
    print_tables(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
