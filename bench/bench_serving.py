"""Serving benchmark: the real `clamp serve` under a bounded load on loopback; throughput, latency, memory.

Starts two `clamp serve` subprocesses on free 127.0.0.1 ports, exactly as a user runs them, and waits for
/health: "batched" (the defaults: micro-batches of queries, runtime/serve/batching.py) and "unbatched"
(`--max-batch 1 --batch-wait-ms 0` and no keyword cache: every input encoded and ranked alone, as before
batching). Scenario `search-distinct` sends text searches that never repeat (no cache answers them). For
each --mix scenario (default: text search, similar-by-id and zero-shot classify, each alone) and each server
in turn, it sends --requests POSTs with --concurrency in flight over keep-alive connections (after --warmup
unmeasured ones) and reports client-side latency p50/p95/p99/max, throughput, errors (a status other than
2xx, or a transport error) and the server's resident memory (VmRSS before and after, peak VmHWM) from /proc.
Then one client sends text searches one at a time to each server: the end-to-end "text query p50" over HTTP,
the server's own share (its Server-Timing header) and Index.search_text in this process, so HTTP's cost
shows. Both servers share the machine and one run, so compare them by their ratios.

The servers get `--max-concurrency` = --concurrency, an API key through $CLAMP_API_KEY, as in production,
and --precision (default auto: fp32 on CPU), which the in-process comparison uses too.

    python bench/bench_serving.py                                   # build/index from `make demo`
    python bench/bench_serving.py --requests 500 --mix search:8,similar:1,classify:1
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runtime.model.encoder import available_cores  # noqa: E402
from runtime.model.modeldir import PRECISIONS  # noqa: E402
from runtime.search.index import Index, read_manifest, resolve_model_dir  # noqa: E402
from runtime.search.items import KEYWORD_CACHE_ENV  # noqa: E402
from runtime.search.keyword import STOP_WORDS  # noqa: E402
from tests.serving import free_port  # noqa: E402

TEXT_QUERIES = [
    "a lively jig in D major",
    "a slow air in E minor",
    "a fast reel for the fiddle",
    "a hornpipe with dotted rhythms",
    "a waltz in three four time",
    "a slip jig in 9/8",
    "a Scottish strathspey",
    "a polka for dancing",
    "a stately march in G",
    "a gentle lullaby for a child",
    "a Chinese folk song",
    "a German folk song about love",
    "ein altes Volkslied aus Lothringen",
    "a sad ballad about the sea",
    "a drinking song to sing in the pub",
    "a Christmas carol",
    "a cheerful children's song",
    "a mountain song from Yunnan",
    "an Irish tune in the dorian mode",
    "a minuet in the style of the eighteenth century",
]
ROUTES = {"search": "/search", "search-distinct": "/search", "similar": "/similar", "classify": "/classify"}
# "search-distinct": text searches that (almost) never repeat, so no cache can answer them: combinations of
DISTINCT_WORDS = (
    "lively slow gentle fast sad cheerful stately old merry quiet bright dark".split(),
    "jig reel hornpipe waltz polka march air song lullaby carol strathspey dance".split(),
    ["in D major", "in G", "in E minor", "in A dorian", "in C", "in F major", "in B minor", "in A",
     "in D minor", "in E dorian", "in G minor", "in Bb"],
    ["", "from Ireland", "from Scotland", "from Germany", "from China", "for the fiddle", "for dancing",
     "about love", "for children", "about the sea", "for a wedding", "in 6/8", "in 3/4", "in 2/4"],
    ["", "with dotted rhythms", "with a wide range", "with many quick notes", "in the old style",
     "for two voices"],
)  # fmt: skip
DEFAULT_MIXES = ["search", "similar", "classify"]
LABEL_SET = "tune-type"
POOL = 256  # distinct tunes drawn for similar-by-id and classify
# "unbatched" is the code path before batching and the keyword cache: every input encoded and ranked alone.
SERVERS = {"batched": [], "unbatched": ["--max-batch", "1", "--batch-wait-ms", "0", "--text-cache", "0"]}
SERVER_ENV = {"batched": {}, "unbatched": {KEYWORD_CACHE_ENV: "0"}}


@dataclass
class Run:
    """What one bounded load saw, client side."""

    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    server_timings_ms: list[dict[str, float]] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    client_cpu_s: float = 0.0  # this process's CPU time over the run: what the load generator cost


def cpu_seconds(pid: int) -> float:
    """A process's CPU time so far (user + system, all its threads), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mib(pid: int) -> dict[str, float]:
    """A process's resident memory now (VmRSS) and at its peak so far (VmHWM), in MiB."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in lines if ":" in line)
    return {key: int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM")}


def server_timing_ms(header: str) -> dict[str, float]:
    """'encode;dur=1.20, search;dur=0.31, total;dur=1.70' -> {'encode': 1.2, 'search': 0.31, 'total': 1.7}."""
    stages = (part.strip().split(";dur=") for part in header.split(",") if ";dur=" in part)
    return {name: float(ms) for name, ms in stages}


def clamp_command() -> list[str]:
    """The installed `clamp` next to this Python, else the same entry point through `python -c`."""
    script = Path(sys.executable).with_name("clamp")
    return (
        [str(script)] if script.is_file() else [sys.executable, "-c", "from runtime.cli import main; main()"]
    )


@contextmanager
def clamp_serve(
    index_dir: Path,
    model_dir: Path,
    concurrency: int,
    key: str,
    precision: str,
    options: list[str],
    env: dict[str, str],
) -> Iterator[tuple[str, int]]:
    """`clamp serve` on a free loopback port: (its URL, its pid) once /health answers; stopped on exit."""
    port = free_port()
    command = [*clamp_command(), "serve", "--index", str(index_dir), "--model", str(model_dir)]
    command += ["--precision", precision, *options]
    command += ["--port", str(port), "--max-concurrency", str(concurrency)]
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as work:
        log = Path(work) / "serve.log"
        with log.open("wb") as out:  # uvicorn's access log: a line a request, as `clamp serve` runs
            process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **env, "CLAMP_API_KEY": key},
                cwd=ROOT,
                start_new_session=True,  # Ctrl-C reaches only this script, which then stops the server
            )
        try:
            deadline = time.monotonic() + 300  # it sha256-checks the whole index and model first
            while not healthy(url):
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = log.read_text(errors="replace")[-3000:]
                    raise SystemExit(f"clamp serve did not come up ({' '.join(command)}):\n{tail}")
                time.sleep(0.2)
            yield url, process.pid
        finally:
            process.terminate()  # uvicorn shuts down gracefully on SIGTERM
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


async def load(url: str, key: str, requests: list[tuple[str, dict]], concurrency: int) -> Run:
    """POST every (path, JSON body) once, `concurrency` at a time over keep-alive connections.

    aiohttp's client: it costs ~0.4 ms of CPU a request on these cores, httpx's AsyncClient 3.7-5.2 ms,
    which on a 2-core machine shared with the server is a fifth to a third of it (BENCHMARKS.md).
    """
    run, pending = Run(), iter(requests)
    connector = aiohttp.TCPConnector(limit=concurrency)
    headers = {"authorization": f"Bearer {key}"}
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(url, headers=headers, connector=connector, timeout=timeout) as client:

        async def worker() -> None:
            for path, body in pending:  # one iterator shared by the workers: each request goes once
                started = time.perf_counter()
                try:
                    async with client.post(path, json=body) as response:
                        await response.read()
                except (aiohttp.ClientError, asyncio.TimeoutError) as err:
                    run.errors[type(err).__name__] += 1
                    continue
                run.latencies_ms.append((time.perf_counter() - started) * 1000)
                run.server_timings_ms.append(server_timing_ms(response.headers.get("server-timing", "")))
                if not 200 <= response.status < 300:
                    run.errors[f"HTTP {response.status}"] += 1

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        run.seconds = time.perf_counter() - started
        run.client_cpu_s = time.process_time() - cpu
    return run


def parse_mix(text: str) -> dict[str, float]:
    """'search:8,similar:1' -> {'search': 8.0, 'similar': 1.0}; a route without a weight counts 1."""
    mix = {}
    for part in text.split(","):
        route, _, weight = part.strip().partition(":")
        if route not in ROUTES:
            raise argparse.ArgumentTypeError(f"unknown route {route!r} in --mix; use {', '.join(ROUTES)}")
        mix[route] = float(weight or 1)
    return mix


def request_pools(index: Index, k: int, rng: np.random.Generator) -> dict[str, list[tuple[str, dict]]]:
    """Request bodies per route: the text queries, and indexed tunes (by id, and by ABC for classify)."""
    labels = rng.choice(len(index), size=min(POOL, len(index)), replace=False).tolist()
    tunes = index.items.items(labels, with_abc=True).values()
    return {
        "search": [(ROUTES["search"], {"text": text, "k": k}) for text in TEXT_QUERIES],
        "search-distinct": [
            (ROUTES["search"], {"text": text, "k": k})
            for text in distinct_queries(rng, title_words(index, rng))
        ],
        "similar": [(ROUTES["similar"], {"id": item_id, "k": k}) for item_id, _, _ in tunes],
        # The API classifies ABC, not an id: the indexed tune's own ABC is sent.
        "classify": [(ROUTES["classify"], {"abc": abc, "label_set": LABEL_SET}) for _, _, abc in tunes],
    }


def title_words(index: Index, rng: np.random.Generator, tunes: int = 2000) -> list[str]:
    """The words of the titles of `tunes` indexed tunes drawn at random, as often as they occur there."""
    labels = rng.choice(len(index), size=min(tunes, len(index)), replace=False).tolist()
    titles = " ".join(metadata.get("title") or "" for _, metadata, _ in index.items.items(labels).values())
    return [w for w in re.findall(r"[^\W\d_]{3,}", titles) if w.lower() not in STOP_WORDS]


def distinct_queries(rng: np.random.Generator, words: list[str]) -> list[str]:
    """Every combination of DISTINCT_WORDS (about 145k queries), shuffled, each with a word of `words`.

    The combinations' parts recur (as the common words of real queries do); the title word, drawn as often
    as it occurs in titles, brings the long tail: 1,000s of distinct words, each looked up cold at first.
    """
    texts = [" ".join(w for w in ("a", *words) if w) for words in itertools.product(*DISTINCT_WORDS)]
    return [f"{texts[i]} {words[rng.integers(len(words))]}" for i in rng.permutation(len(texts))]


def draw(pools: dict[str, list], mix: dict[str, float], n: int, rng: np.random.Generator) -> list:
    """n requests: routes in the mix's proportions, each a random body from its route's pool."""
    routes = list(mix)
    weights = np.array([mix[r] for r in routes]) / sum(mix.values())
    chosen = rng.choice(len(routes), size=n, p=weights)
    return [pools[routes[c]][rng.integers(len(pools[routes[c]]))] for c in chosen]


def mix_name(mix: dict[str, float]) -> str:
    return ", ".join(f"{route}:{weight:g}" for route, weight in mix.items()) if len(mix) > 1 else [*mix][0]


def quantiles(ms: list[float]) -> str:
    if not ms:
        return "| – | – | – | – |"
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return f"| {p50:.2f} | {p95:.2f} | {p99:.2f} | {max(ms):.2f} |"


def in_process_ms(index: Index, k: int, n: int) -> list[float]:
    """Index.search_text latencies in this process, over the same queries (after a short warm-up)."""
    ms = []
    for i in range(n + 20):
        started = time.perf_counter()
        index.search_text(TEXT_QUERIES[i % len(TEXT_QUERIES)], k)
        ms.append((time.perf_counter() - started) * 1000)
    return ms[20:]


def scenario_row(url: str, key: str, pid: int, requests: list, warmup: list, concurrency: int) -> tuple:
    """One scenario under load: its table cells from `| requests` on, its req/s and its errors."""
    asyncio.run(load(url, key, warmup, concurrency))
    before, cpu = memory_mib(pid), cpu_seconds(pid)
    run = asyncio.run(load(url, key, requests, concurrency))
    after, cpu = memory_mib(pid), cpu_seconds(pid) - cpu
    rss = f"{before['VmRSS']:.0f} → {after['VmRSS']:.0f} | {after['VmHWM']:.0f}"
    rate = len(requests) / run.seconds
    cells = f"| {len(requests):,} | {sum(run.errors.values())} | {rate:.1f} "
    per_request = f"| {cpu / len(requests) * 1000:.2f} | {run.client_cpu_s / len(requests) * 1000:.2f} |"
    return cells + f"{quantiles(run.latencies_ms)} {rss} {per_request}", rate, run.errors


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--index", type=Path, default=ROOT / "build/index", help="index dir (`make demo`)")
    parser.add_argument("--model", type=Path, help="model dir [default: what the index resolves]")
    parser.add_argument("--precision", default="auto", choices=["auto", *PRECISIONS])
    parser.add_argument("--requests", type=int, default=10_000, help="measured requests per scenario")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight at once")
    parser.add_argument(
        "--mix",
        action="append",
        type=parse_mix,
        help="a scenario: routes and weights, e.g. search:8,similar:1,classify:1; repeatable "
        f"[default: {', '.join(DEFAULT_MIXES)}, each alone]",
    )
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured requests before each scenario")
    parser.add_argument("--sequential", type=int, default=500, help="text searches at concurrency 1")
    parser.add_argument("-k", type=int, default=10, help="results per query")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if not (args.index / "manifest.json").is_file():
        raise SystemExit(f"no index at {args.index}: build one with `make demo` (or pass --index DIR)")
    index_dir = args.index.resolve()
    model_dir = resolve_model_dir(args.model, read_manifest(index_dir)).resolve()
    index = Index.open(index_dir, model_dir, precision=args.precision)
    encoder = index.require_encoder()
    rng = np.random.default_rng(0)
    pools = request_pools(index, args.k, rng)
    local_ms = in_process_ms(index, args.k, args.sequential)  # before the servers start: an idle machine
    key, errors = secrets.token_urlsafe(16), Counter()
    with ExitStack() as stack:
        servers = {
            name: stack.enter_context(
                clamp_serve(
                    index_dir, model_dir, args.concurrency, key, args.precision, options, SERVER_ENV[name]
                )
            )
            for name, options in SERVERS.items()
        }
        print(f"# clamp serve under load: {len(index):,} tunes, model {index.manifest.get('model_name')}\n")
        print(f"- index {index_dir}, model dir {model_dir}")
        for name, (_, pid) in servers.items():
            command = " ".join(
                ["clamp serve --index … --model …", f"--precision {args.precision}"]
                + [f"--max-concurrency {args.concurrency}", *SERVERS[name]]
            )
            command = " ".join([*(f"{k}={v}" for k, v in SERVER_ENV[name].items()), command])
            print(f"- {name} server: `{command}` (pid {pid}), API key via $CLAMP_API_KEY, access log on")
        precisions = ", ".join(f"{tower} {p}" for tower, p in encoder.precisions.items())
        print(f"- encoder: {encoder.provider}, {precisions}")
        print(
            f"- client: aiohttp {aiohttp.__version__}, keep-alive, {args.concurrency} in flight, "
            f"{args.warmup} warm-up requests per scenario; {available_cores()} cores shared with the servers"
        )
        rss = ", ".join(f"{name} {memory_mib(pid)['VmRSS']:.0f}" for name, (_, pid) in servers.items())
        print(f"- server RSS after start, before any query: {rss} MiB\n")
        print(
            "| server | scenario | concurrency | requests | errors | req/s | p50 ms | p95 ms | p99 ms ",
            end="",
        )
        print(
            "| max ms | server RSS before → after MiB | server peak RSS MiB | server CPU ms / request "
            "| client CPU ms / request |\n" + "|---" * 14 + "|"
        )
        rates: dict[tuple[str, str], float] = {}
        for mix in args.mix or [parse_mix(m) for m in DEFAULT_MIXES]:
            requests, warmup = (draw(pools, mix, n, rng) for n in (args.requests, args.warmup))
            for name, (url, pid) in servers.items():
                cells, rates[name, mix_name(mix)], seen = scenario_row(
                    url, key, pid, requests, warmup, args.concurrency
                )
                print(f"| {name} | {mix_name(mix)} | {args.concurrency} {cells}")
                errors += seen
        searches = draw(pools, {"search": 1}, args.sequential + 20, rng)
        alone = {name: asyncio.run(load(url, key, searches, 1)) for name, (url, _) in servers.items()}
        for name, run in alone.items():
            ms = run.latencies_ms[20:]
            rate = len(ms) / (sum(ms) / 1000)
            rss = memory_mib(servers[name][1])
            print(
                f"| {name} | search, one client | 1 | {len(ms):,} | {sum(run.errors.values())} | {rate:.1f} "
                f"{quantiles(ms)} – | {rss['VmHWM']:.0f} | – | – |"
            )
            errors += run.errors
        metrics = {
            name: httpx.get(f"{url}/metrics", headers={"authorization": f"Bearer {key}"}).json()
            for name, (url, _) in servers.items()
        }
    print()
    for scenario in dict.fromkeys(s for _, s in rates):
        ratio = rates["batched", scenario] / rates["unbatched", scenario]
        print(f"- {scenario} at concurrency {args.concurrency}: batched / unbatched req/s = {ratio:.2f}")
    p50 = {name: np.percentile(run.latencies_ms[20:], 50) for name, run in alone.items()}
    print(f"- search, one client: batched / unbatched p50 = {p50['batched'] / p50['unbatched']:.2f}")
    print(f"\n| text search, one client ({args.sequential} requests) | p50 ms | p95 ms | p99 ms | max ms |")
    print("|---" * 5 + "|")
    for name, run in alone.items():
        timings = run.server_timings_ms[20:]
        rows = [(f"{name}: HTTP POST /search, end to end (client)", run.latencies_ms[20:])]
        rows += [
            (f"{name}: server side, {stage} (Server-Timing)", [t[stage] for t in timings if stage in t])
            for stage in ("total", "queue", "encode", "search")
        ]
        for row, ms in rows:
            print(f"| {row} {quantiles(ms)}")
    print(f"| in-process Index.search_text {quantiles(local_ms)}")
    for name, seen in metrics.items():
        routes = seen["routes"].values()
        print(
            f"\n{name} server /metrics: {sum(r['requests'] for r in routes):,} requests (warm-ups included), "
            f"{sum(r['errors'] for r in routes)} errors, {sum(r['rejected'] for r in routes)} rejected (429)"
        )
    if errors:
        print(f"client errors: {dict(errors)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
