"""A 1M-item index for filter benchmarks: real tunes' embeddings replicated with noise, and fields whose
selectivities are set, some independent of the vectors and some tied to them.

Vectors as bench_index.py makes them (each item a noisy copy of one of the real base tunes). Fields:
- `origin`: drawn per item, independent of its vector: o0.01 (0.01% of items), o0.1, o1, o5, o20, o50,
  o10 (10%) and "other" (the remaining 13.89%); `origin != o10` passes 90%.
- `rhythm`: set per base tune, so every copy of a tune shares it (as a jig's neighbours are jigs): r0.01
  (one base tune), r0.1, r1, r5, r20, r50, r10 and "other", by share of base tunes.
- `meter` (one of five by base tune) and `source` (bench/BASE.abc) as bench_index.py writes them.
The shards go through the indexer (`build_index`), so the index dir is what `clamp index build` writes.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_index import noise_scale, replicas  # noqa: E402

from indexer.index_build import build_index  # noqa: E402
from indexer.reader import TuneRecord  # noqa: E402
from indexer.shards import ShardWriter, embeddings_matrix, iter_shard_batches, rows_table, shard_schema  # noqa: E402

# Value -> share of items (origin) or of base tunes (rhythm); "other" takes the rest.
SHARES = {"0.01": 0.0001, "0.1": 0.001, "1": 0.01, "5": 0.05, "20": 0.2, "50": 0.5, "10": 0.1}
METERS = ("6/8", "2/4", "3/4", "4/4", "9/8")
SHARD_ROWS = 50_000
ABC = "X:1\nK:C\nCDEF GABc|\n"


def shared_values(prefix: str, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` values of the form PREFIX+share in SHARES' proportions (exactly, up to rounding), shuffled."""
    sizes = [round(share * count) for share in SHARES.values()]
    values = [f"{prefix}{name}" for name, size in zip(SHARES, sizes, strict=True) for _ in range(size)]
    values += ["other"] * (count - len(values))
    return rng.permutation(np.asarray(values, dtype=object))


def base_vectors(shards: Path) -> np.ndarray:
    return np.concatenate([embeddings_matrix(b) for b in iter_shard_batches(shards, columns=["embedding"])])


def build_corpus(base_shards: Path, size: int, out: Path, noise: float = 0.5) -> Path:
    """The index dir under `out` (built once: an existing one is reused)."""
    index_dir = out / "index"
    if (index_dir / "manifest.json").is_file():
        return index_dir
    base = base_vectors(base_shards)
    sigma = noise_scale(base, noise)
    rng = np.random.default_rng(size)
    rhythm = shared_values("r", len(base), rng)
    origin = shared_values("o", size, rng)
    schema = shard_schema(base.shape[1], "float16", "bench" * 8, "bench")
    writer = ShardWriter(out / "shards", schema, shard_rows=SHARD_ROWS)
    for start in range(0, size, SHARD_ROWS):
        n = min(SHARD_ROWS, size - start)
        x, which = replicas(base, n, sigma, rng)
        records = [
            TuneRecord(
                f"t{start + i}",
                f"bench/{w}.abc",
                start + i,
                ABC,
                {
                    "title": f"tune {start + i}",
                    "meter": METERS[w % len(METERS)],
                    "rhythm": rhythm[w],
                    "origin": origin[start + i],
                },
            )
            for i, w in enumerate(which)
        ]
        writer.add(rows_table(schema, records, [8] * n, [False] * n, x))
    writer.flush()
    build_index(out / "shards", index_dir, progress=True)
    shutil.rmtree(out / "shards")
    return index_dir


if __name__ == "__main__":
    print(build_corpus(Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])))
