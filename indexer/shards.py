"""Embedding shards on disk: their schema, an atomic writer, the errors table, and the streaming reader.

SHARDS_DIR/shard-00000.parquet ... hold one row per tune (see `shard_schema`); schema metadata names the
model (model_hash, model_name, dim, dtype) and the run's provenance (id scheme, absolute model dir, corpus
roots). SHARDS_DIR/_errors/errors-*.pq list what failed; SHARDS_DIR/_superseded.pq (indexer.supersede)
the rows whose source file has changed since (the layout: indexer.layout). Files are written under a
temporary name, synced, and renamed when complete, so a shard either exists whole or not. Each gets its
sha256 in `_checksums/` before it is renamed, and its data pages carry CRCs: every read checks both, so
a damaged, altered or unchecksummed file is refused by name.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from indexer.layout import (
    ERRORS_SUFFIX,
    ShardError,
    checksum_file,
    stage_checksum,
    staging_files,
    verify_checksum,
)
from indexer.reader import Failure, TuneRecord
from runtime.storage.dirs import ERRORS_DIR
from runtime.storage.integrity import file_sha256

SHARD_NAME = "shard-{:05d}.parquet"
ERRORS_NAME = ERRORS_DIR + "/errors-{:05d}" + ERRORS_SUFFIX
METADATA_COLUMNS = ("title", "composer", "origin", "rhythm", "key", "meter")
DTYPES = {"float16": pa.float16(), "float32": pa.float32()}
ROW_GROUP_ROWS = 8192
MODEL_METADATA_KEYS = ("model_hash", "model_name", "dim", "dtype")
PROVENANCE_KEYS = ("id_scheme", "model_dir", "corpus_roots")  # corpus_roots: a JSON list of folders

ERRORS_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("tune_index", pa.int32()),
        ("stage", pa.string()),
        ("reason", pa.string()),
        ("id", pa.string()),
    ]
)


@contextlib.contextmanager
def named_if_damaged(path: Path) -> Iterator[None]:
    """Turn pyarrow's errors about a damaged Parquet file into a ShardError that names the file."""
    try:
        yield
    except (pa.ArrowException, OSError, UnicodeDecodeError) as err:
        raise ShardError(
            f"{path} is damaged or truncated ({err}): move it away and rerun `clamp embed` to redo its tunes"
        ) from err


def shard_schema(
    dim: int, dtype: str, model_hash: str, model_name: str, provenance: Mapping[str, str] | None = None
) -> pa.Schema:
    """The fixed schema of every shard made with one model; the model's identity rides in the metadata.

    `provenance` (PROVENANCE_KEYS) records how a run made its shards, for `index build` to carry on.
    """
    if dtype not in DTYPES:
        raise ValueError(f"embedding dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    fields = [("id", pa.string()), ("source", pa.string()), ("tune_index", pa.int32())]
    fields += [(name, pa.string()) for name in METADATA_COLUMNS]
    fields += [
        ("meta", pa.string()),
        ("abc", pa.string()),
        ("n_patches", pa.int32()),
        ("truncated", pa.bool_()),
        ("embedding", pa.list_(DTYPES[dtype], dim)),
    ]
    metadata = dict(zip(MODEL_METADATA_KEYS, (model_hash, model_name, str(dim), dtype), strict=True))
    metadata.update(provenance or {})
    return pa.schema(fields, metadata={k.encode(): v.encode() for k, v in metadata.items()})


def rows_table(
    schema: pa.Schema,
    records: list[TuneRecord],
    n_patches: list[int],
    truncated: list[bool],
    embeddings: np.ndarray,
) -> pa.Table:
    """Shard rows for embedded tunes (embeddings: float [n, dim], already L2-normalised)."""
    vector_type = schema.field("embedding").type
    flat = pa.array(np.ascontiguousarray(embeddings).ravel().astype(vector_type.value_type.to_pandas_dtype()))
    columns = {
        "id": [r.id for r in records],
        "source": [r.source for r in records],
        "tune_index": [r.tune_index for r in records],
        **{name: [r.meta.get(name) for r in records] for name in METADATA_COLUMNS},
        "meta": [json.dumps(r.meta, ensure_ascii=False, sort_keys=True) for r in records],
        "abc": [r.abc for r in records],
        "n_patches": n_patches,
        "truncated": truncated,
    }
    arrays = [pa.array(values, type=schema.field(name).type) for name, values in columns.items()]
    arrays.append(pa.FixedSizeListArray.from_arrays(flat, vector_type.list_size))
    return pa.Table.from_arrays(arrays, schema=schema)


def failures_table(failures: Iterable[Failure]) -> pa.Table:
    """The errors table for some failures."""
    rows = [
        {"source": f.source, "tune_index": f.tune_index, "stage": f.stage, "reason": f.reason, "id": f.id}
        for f in failures
    ]
    return pa.Table.from_pylist(rows, schema=ERRORS_SCHEMA)


def write_atomic(table: pa.Table, path: Path) -> None:
    """Write a Parquet file under a temporary name, then rename it: readers never see half a file.

    Its sha256 file is written first, so every file that has its name also has its checksum.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    staging = None
    try:
        pq.write_table(
            table, tmp, compression="zstd", row_group_size=ROW_GROUP_ROWS, write_page_checksum=True
        )
        staging = stage_checksum(path, file_sha256(tmp))
        _publish(staging, checksum_file(path))
        _publish(tmp, path)
    except BaseException:
        for partial in (tmp, staging):  # a full disk keeps no half-written file taking space
            if partial is not None:
                partial.unlink(missing_ok=True)
        raise


def _publish(tmp: Path, path: Path) -> None:
    """Sync a finished temporary file to disk, then give it its name (an atomic rename)."""
    with open(tmp, "rb") as written:
        os.fsync(written.fileno())  # on disk before it has its name, even if the machine goes down
    os.replace(tmp, path)


def _numbered(out_dir: Path, pattern: str) -> list[Path]:
    return sorted(out_dir.glob(pattern.replace("{:05d}", "[0-9]" * 5)))


class ShardWriter:
    """Buffers rows; writes a shard each `shard_rows` rows (the rest on `flush`), after any shards there."""

    def __init__(self, out_dir: str | Path, schema: pa.Schema, shard_rows: int):
        if shard_rows < 1:
            raise ValueError(f"shard_rows must be at least 1, got {shard_rows}")
        self.out_dir = Path(out_dir)
        self.schema = schema
        self.shard_rows = shard_rows
        for stale in staging_files(self.out_dir):
            stale.unlink()  # left by a run killed mid-write (the caller's lock says no writer is live)
        self.next_shard = _next_number(self.out_dir, SHARD_NAME)
        self.next_errors = _next_number(self.out_dir, ERRORS_NAME)
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        self.pending_failures: list[Failure] = []
        self.written: list[Path] = []

    def add(self, rows: pa.Table) -> None:
        """Queue rows; write every full shard they complete."""
        self.pending.append(rows)
        self.pending_rows += rows.num_rows
        while self.pending_rows >= self.shard_rows:
            self._write_shard(self.shard_rows)

    def add_failures(self, failures: Iterable[Failure]) -> None:
        """Queue failures; they are written with the next shard (or on flush)."""
        self.pending_failures.extend(failures)

    def flush(self) -> None:
        """Write whatever is queued: a last, shorter shard and the failures."""
        if self.pending_rows:
            self._write_shard(self.pending_rows)
        self._write_failures()

    def _write_shard(self, n_rows: int) -> None:
        self._write_failures()
        table = pa.concat_tables(self.pending)
        path = self.out_dir / SHARD_NAME.format(self.next_shard)
        write_atomic(table.slice(0, n_rows), path)
        self.written.append(path)
        self.next_shard += 1
        rest = table.slice(n_rows)
        self.pending, self.pending_rows = ([rest] if rest.num_rows else []), rest.num_rows

    def _write_failures(self) -> None:
        if self.pending_failures:
            write_atomic(
                failures_table(self.pending_failures), self.out_dir / ERRORS_NAME.format(self.next_errors)
            )
            self.next_errors += 1
            self.pending_failures = []


def _next_number(out_dir: Path, pattern: str) -> int:
    files = _numbered(out_dir, pattern)
    return int(files[-1].stem.rsplit("-", 1)[1]) + 1 if files else 0


def shard_files(shards_dir: str | Path) -> list[Path]:
    """The finished shard files of a shards dir, in order."""
    return _numbered(Path(shards_dir), SHARD_NAME)


def error_files(shards_dir: str | Path) -> list[Path]:
    """The errors tables of a shards dir, in order."""
    return _numbered(Path(shards_dir), ERRORS_NAME)


def iter_shard_batches(
    shards: str | Path | Sequence[Path], columns: list[str] | None = None, batch_size: int = 65536
) -> Iterator[pa.RecordBatch]:
    """Stream the rows of a dir's shards, or of the shard files given (optionally only some columns) as
    record batches, in shard order."""
    for path in shard_files(shards) if isinstance(shards, str | Path) else shards:
        verify_checksum(path)
        with named_if_damaged(path):
            shard = pq.ParquetFile(path, page_checksum_verification=True)
            yield from shard.iter_batches(batch_size=batch_size, columns=columns)


def embeddings_matrix(batch: pa.RecordBatch | pa.Table) -> np.ndarray:
    """The embedding column of a batch as float32 [n, dim]."""
    column = batch.column("embedding")
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    dim = column.type.list_size
    return column.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, dim)


def shards_metadata(shards_dir: str | Path) -> dict[str, str] | None:
    """The model metadata all shards of a dir share (None if there are none); mixed models are an error."""
    found: dict[str, str] | None = None
    for path in shard_files(shards_dir):
        verify_checksum(path)
        with named_if_damaged(path):
            raw = {k.decode(): v.decode() for k, v in (pq.read_schema(path).metadata or {}).items()}
        metadata = {key: raw.get(key, "") for key in MODEL_METADATA_KEYS}
        if found is not None and metadata != found:
            raise ValueError(
                f"{path} was made with {metadata}, other shards in {shards_dir} with {found}: "
                "a shards dir must hold one model's embeddings"
            )
        found = metadata
    return found


def shards_provenance(shards_dir: str | Path) -> dict[str, Any]:
    """How its shards were made: id schemes ("" before they were recorded), newest model dir, roots."""
    schemes: set[str] = set()
    model_dir: str | None = None
    roots: list[str] = []
    for path in shard_files(shards_dir):
        with named_if_damaged(path):
            raw = {k.decode(): v.decode() for k, v in (pq.read_schema(path).metadata or {}).items()}
        schemes.add(raw.get("id_scheme", ""))
        model_dir = raw.get("model_dir") or model_dir
        roots += [root for root in json.loads(raw.get("corpus_roots", "[]")) if root not in roots]
    return {"id_schemes": schemes, "model_dir": model_dir, "corpus_roots": roots}


def shards_model_hash(shards_dir: str | Path) -> str:
    """The hash of the model that made a dir's shards."""
    metadata = shards_metadata(shards_dir)
    if metadata is None:
        raise FileNotFoundError(
            f"no shard files (shard-NNNNN.parquet) in {shards_dir}; run `clamp embed` first"
        )
    return metadata["model_hash"]


def shard_ids(shards_dir: str | Path) -> set[str]:
    """Ids of every tune already in finished shards: what a resumed run must not embed again."""
    ids: set[str] = set()
    for batch in iter_shard_batches(shards_dir, columns=["id"]):
        ids.update(batch.column("id").to_pylist())
    return ids


def read_errors(shards_dir: str | Path) -> pa.Table:
    """All failures recorded in a shards dir."""
    files = error_files(shards_dir)
    tables = []
    for path in files:
        verify_checksum(path)
        with named_if_damaged(path):
            tables.append(pq.read_table(path, page_checksum_verification=True))
    return pa.concat_tables(tables) if tables else ERRORS_SCHEMA.empty_table()


def failure_keys(shards_dir: str | Path) -> set[str]:
    """Keys (`Failure.key`) of the failures already recorded, so a resumed run does not record them again."""
    rows = read_errors(shards_dir).to_pylist()
    return {Failure(r["source"], r["tune_index"], r["stage"], r["reason"], r["id"]).key for r in rows}
