"""A shards dir is a Parquet dataset as it stands: pandas, pyarrow and DuckDB read it with no glob, and
its checksums, errors table and run stats (under `_` names, which those readers and Spark skip) stay out.
A dir in the earlier layout is moved into this one by the next `clamp embed` or `clamp index build`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from helpers import tiny_model_dir
from query_corpus import clamp, corpus_path

from indexer.layout import checksum_file
from indexer.shards import iter_shard_batches, read_errors, shard_files
from indexer.supersede import SUPERSEDED_SCHEMA, read_superseded
from runtime.storage.integrity import file_sha256

README = Path(__file__).resolve().parents[1] / "README.md"
SHARD_ROWS = 8


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """Shards of 20 tunes and an errors table (a file whose tunes fail), in several shards."""
    root = tmp_path_factory.mktemp("dataset")
    abc = root / "abc"
    abc.mkdir()
    (abc / "tunes.abc").write_bytes(corpus_path("oneills1850/1116-1135_mh.abc").read_bytes())
    (abc / "broken.abc").write_text("X:1\nT:no music at all\n\nX:2\nT:nor here\n")
    out = root / "shards"
    clamp("embed", abc, "--model", tiny_model_dir(root), "--out", out, "--shard-rows", SHARD_ROWS, "--quiet")
    assert len(read_errors(out)) == 2 and len(shard_files(out)) > 1
    return out


def expected_ids(shards: Path) -> list[str]:
    return [i for b in iter_shard_batches(shards, columns=["id"]) for i in b.column("id").to_pylist()]


def test_pandas_and_pyarrow_read_the_dir_itself(shards):
    ids, columns = expected_ids(shards), pq.read_schema(shard_files(shards)[0]).names
    frame = pd.read_parquet(shards)
    assert frame["id"].tolist() == ids and frame.columns.tolist() == columns  # no errors table columns
    for table in (ds.dataset(shards).to_table(), pq.read_table(shards)):
        assert table.column("id").to_pylist() == ids and table.column_names == columns


def test_duckdb_reads_the_dir_itself(shards):
    query = f"SELECT id, len(embedding) FROM read_parquet('{shards}', filename=true, file_row_number=true)"
    rows = duckdb.sql(query + " ORDER BY filename, file_row_number").fetchall()
    dim = pq.read_schema(shard_files(shards)[0]).field("embedding").type.list_size
    assert [r[0] for r in rows] == expected_ids(shards) and {r[1] for r in rows} == {dim}


def test_the_readme_recipe_gives_vectors_and_metadata(shards):
    """The README's five lines: vectors as a numpy matrix, metadata as a frame."""
    recipe = re.search(r"<!-- shards recipe -->\n```python\n(.*?)```", README.read_text(), re.S).group(1)
    assert len(recipe.strip().splitlines()) == 5
    found: dict = {}
    exec(recipe.replace('"build/shards"', repr(str(shards))), found)
    vectors, meta = found["vectors"], found["meta"]
    assert vectors.dtype == np.float32 and vectors.shape[0] == len(meta) == len(expected_ids(shards))
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=2e-3) and "abc" not in meta.columns
    assert meta["id"].tolist() == expected_ids(shards)


def old_layout(shards: Path, to: Path) -> Path:
    """A copy of the dir as clamp-index wrote it before: sidecars beside the files, errors/ and stats/."""
    old = Path(shutil.copytree(shards, to))
    (old / "_stats").rename(old / "stats")
    (old / "_errors").rename(old / "errors")
    for table in (old / "errors").glob("*.pq"):
        table.rename(table.with_suffix(".parquet"))
    for directory in (old, old / "errors"):
        for sidecar in (directory / "_checksums").iterdir():
            digest, name = sidecar.read_text().split()
            named = name.replace(".pq", ".parquet")
            (directory / f"{named}.sha256").write_text(f"{digest}  {named}\n")
            sidecar.unlink()
        (directory / "_checksums").rmdir()
    table = pa.table({"id": ["f" * 32], "source": ["/gone.abc"]}, schema=SUPERSEDED_SCHEMA)
    pq.write_table(table, old / "superseded.parquet")  # as indexer.supersede first wrote it, with its sha256
    (old / "superseded.parquet.sha256").write_text(
        f"{file_sha256(old / 'superseded.parquet')}  superseded.parquet\n"
    )
    return old


@pytest.mark.parametrize("command", ["embed", "index build"])
def test_a_dir_in_the_old_layout_is_moved_to_the_new_one_by_the_next_run(shards, tmp_path, command):
    old = old_layout(shards, tmp_path / "shards")
    with pytest.raises(Exception):  # noqa: B017 - the old layout is what pandas could not read
        pd.read_parquet(old)
    if command == "embed":
        abc, model = shards.parent / "abc", shards.parent / "model"
        output = clamp("embed", abc, "--model", model, "--out", old, "--shard-rows", SHARD_ROWS)
        # 20 tunes done; the 2 that are not music fail when read, so every run reads (and reports) them again
        assert "embedded 0" in output and "already done 20" in output and "failed 2" in output
    else:
        clamp("index", "build", old, "--out", tmp_path / "index")
    assert sorted(p.name for p in old.iterdir() if not p.name.startswith("shard-")) == [
        "_checksums",
        "_errors",
        "_stats",
        "_superseded.pq",
    ]
    assert read_superseded(old) == {"f" * 32: "/gone.abc"}
    assert all(checksum_file(f).is_file() for f in [*shard_files(old), *(old / "_errors").glob("*.pq")])
    assert pd.read_parquet(old)["id"].tolist() == expected_ids(shards) and len(read_errors(old)) == 2


def test_sha256sum_checks_every_file_against_its_checksum(shards):
    for directory in (shards, shards / "_errors"):
        sums = sorted(str(p.relative_to(directory)) for p in (directory / "_checksums").glob("*.sha256"))
        done = subprocess.run(["sha256sum", "-c", *sums], cwd=directory, capture_output=True, text=True)
        assert done.returncode == 0 and done.stdout.count(": OK") == len(sums) > 0, done.stdout
