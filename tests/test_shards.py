"""Shards on disk: fixed schema, atomic numbered files, errors table, and the streaming reader API."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from indexer.reader import Failure, TuneRecord
from indexer.shards import (
    ShardWriter,
    embeddings_matrix,
    failure_keys,
    iter_shard_batches,
    read_errors,
    rows_table,
    shard_files,
    shard_ids,
    shard_schema,
    shards_metadata,
    shards_model_hash,
    write_atomic,
)

DIM = 8


def unit_vectors(n: int, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def rows(schema: pa.Schema, start: int, n: int) -> tuple[pa.Table, np.ndarray]:
    records = [
        TuneRecord(
            f"id{i}", "c.abc", i, f"X:{i}\nK:C\n|C|\n", {"title": f"T{i}", "key": "C", "origin": "Éire"}
        )
        for i in range(start, start + n)
    ]
    vectors = unit_vectors(n, seed=start)
    return rows_table(schema, records, [3] * n, [i % 2 == 0 for i in range(n)], vectors), vectors


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_writer_cuts_numbered_shards_that_read_back_as_written(tmp_path, dtype):
    schema = shard_schema(DIM, dtype, model_hash="abc123", model_name="tiny")
    writer = ShardWriter(tmp_path, schema, shard_rows=10)
    written = []
    for start, n in ((0, 7), (7, 7), (14, 11)):
        table, vectors = rows(schema, start, n)
        writer.add(table)
        written.append(vectors)
    assert [p.name for p in shard_files(tmp_path)] == ["shard-00000.parquet", "shard-00001.parquet"]
    writer.flush()
    assert [pq.read_metadata(p).num_rows for p in shard_files(tmp_path)] == [10, 10, 5]
    assert not list(tmp_path.glob(".*"))  # no temporary files left

    batches = list(iter_shard_batches(tmp_path, batch_size=4))
    table = pa.Table.from_batches(batches)
    assert table.column("id").to_pylist() == [f"id{i}" for i in range(25)]
    assert table.column("origin").to_pylist()[0] == "Éire" and table.column("composer").null_count == 25
    expected = np.concatenate(written).astype(dtype)  # float16 storage is exact for float16 values
    assert np.array_equal(
        np.concatenate([embeddings_matrix(b) for b in batches]), expected.astype(np.float32)
    )
    assert embeddings_matrix(table).dtype == np.float32
    assert table.schema.field("embedding").type.value_type == pa.from_numpy_dtype(np.dtype(dtype))
    assert shards_metadata(tmp_path) == {
        "model_hash": "abc123",
        "model_name": "tiny",
        "dim": "8",
        "dtype": dtype,
    }
    assert shards_model_hash(tmp_path) == "abc123" and shard_ids(tmp_path) == {f"id{i}" for i in range(25)}


def test_a_new_writer_numbers_after_existing_shards_and_clears_stale_temp_files(tmp_path):
    schema = shard_schema(DIM, "float32", "h", "m")
    (tmp_path / ".shard-00001.parquet.tmp").write_bytes(b"half a file from a killed run")
    first = ShardWriter(tmp_path, schema, shard_rows=5)
    first.add(rows(schema, 0, 5)[0])
    second = ShardWriter(tmp_path, schema, shard_rows=5)
    second.add(rows(schema, 5, 5)[0])
    assert [p.name for p in shard_files(tmp_path)] == ["shard-00000.parquet", "shard-00001.parquet"]
    assert not list(tmp_path.glob(".*.tmp"))


def test_failures_go_to_the_errors_table_with_their_keys(tmp_path):
    writer = ShardWriter(tmp_path, shard_schema(DIM, "float32", "h", "m"), shard_rows=5)
    failures = [Failure("a.abc", 3, "patch", "no music", "id3"), Failure("b.abc", None, "read", "unreadable")]
    writer.add_failures(failures)
    writer.flush()
    errors = read_errors(tmp_path)
    assert {"source", "tune_index", "reason"} <= set(errors.column_names)
    assert errors.column("tune_index").to_pylist() == [3, None]
    assert failure_keys(tmp_path) == {f.key for f in failures}


def test_shards_of_two_models_in_one_dir_are_refused(tmp_path):
    for name, model_hash in (("shard-00000.parquet", "one"), ("shard-00001.parquet", "two")):
        schema = shard_schema(DIM, "float32", model_hash, "m")
        write_atomic(rows(schema, 0, 1)[0], tmp_path / name)
    with pytest.raises(ValueError, match="one model"):
        shards_model_hash(tmp_path)
    with pytest.raises(FileNotFoundError, match="clamp embed"):
        shards_model_hash(tmp_path / "empty")
