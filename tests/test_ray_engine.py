"""`clamp embed --engine ray`: the local engine's shards, ids, errors and resume, with Ray kept optional.

Every Ray run happens in a child process with a timeout: a hung Ray fails the test instead of hanging it.
"""

import importlib.util
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from helpers import tiny_model_dir

from indexer.ray_engine import ActorPlan, RayOptions, check_absolute, check_reachable, plan_actors
from indexer.runner import EmbedOptions, embed_corpus
from indexer.shards import embeddings_matrix, iter_shard_batches, read_errors, shard_files
from runtime.cli import main
from runtime.model.encoder import Encoder
from runtime.music.abc import split_tunes

REPO = Path(__file__).resolve().parent.parent
RAY_TIMEOUT = 150  # seconds for one Ray run in a child process (about 10 s when the CPU is free)
needs_ray = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="the [ray] extra is not installed"
)
# ~100 real tunes: Essen folk songs, O'Neill's, Josquin.
CORPUS_FILES = ("essenFolksong/irl.abc", "oneills1850/0051-0100.abc", "josquin/adieuMesAmours.abc")
SHARD_ROWS = 40


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[str]:
    """Real files, a tune longer than the max patches, and inputs that fail to read or are not music."""
    from music21 import corpus as music21_corpus

    root = tmp_path_factory.mktemp("corpus")
    files = [Path(music21_corpus.__file__).parent / name for name in CORPUS_FILES]
    head, rest = split_tunes(files[1].read_text())[0].abc.split("\nK:", 1)
    key, music = rest.split("\n", 1)
    (root / "long.abc").write_text(f"{head}\nK:{key}\n" + music * 80)
    (root / "broken.abc").write_text("X:1\nT:A title and nothing else\n\nX:2\nT:Empty body\nK:G\n")
    (root / "latin1.abc").write_bytes("X:1\nT:Chanson à boire\nK:F\n|FAc|\n".encode("latin-1"))
    (root / "rows.jsonl").write_text('{"abc": 3}\n{oops\n{"abc": "X:1\\nK:C\\n|CDE|\\n"}\n')
    return [str(f) for f in files] + [str(root)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return tiny_model_dir(tmp_path_factory.mktemp("model"))


def run_clamp(*args: str) -> subprocess.CompletedProcess:
    """The `clamp` CLI in a child process, killed (with the Ray it started) past RAY_TIMEOUT."""
    command = [sys.executable, "-c", "from runtime.cli import main; main()", *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=RAY_TIMEOUT)


def embed_args(corpus: list[str], model_dir: Path, out: Path) -> list[str]:
    return ["embed", *corpus, "--model", str(model_dir), "--out", str(out), "--shard-rows", str(SHARD_ROWS)]


def read_rows(shards_dir: Path) -> tuple[pa.Table, np.ndarray]:
    batches = list(iter_shard_batches(shards_dir))
    return pa.Table.from_batches(batches), np.concatenate([embeddings_matrix(b) for b in batches])


def sorted_errors(shards_dir: Path) -> list[dict]:
    return sorted(read_errors(shards_dir).to_pylist(), key=json.dumps)


def run_stats(shards_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((shards_dir / "_stats").glob("*.json"))]


@pytest.fixture(scope="module")
def local_shards(corpus, model_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local")
    embed_corpus(
        corpus, Encoder.open(model_dir), out, EmbedOptions(shard_rows=SHARD_ROWS, workers=0, quiet=True)
    )
    return out


@pytest.fixture(scope="module")
def ray_shards(corpus, model_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ray")
    result = run_clamp(*embed_args(corpus, model_dir, out), "--engine", "ray")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "embedded" in result.stdout and "failed 4" in result.stdout  # 2 JSONL rows, 2 tunes without bars
    return out


@needs_ray
def test_ray_writes_the_local_engines_shards_rows_and_errors(local_shards, ray_shards):
    assert [p.name for p in shard_files(ray_shards)] == [p.name for p in shard_files(local_shards)]
    for ray_file, local_file in zip(shard_files(ray_shards), shard_files(local_shards), strict=True):
        assert pq.read_schema(ray_file).equals(pq.read_schema(local_file), check_metadata=True)
    (ray_table, ray_vectors), (local_table, local_vectors) = read_rows(ray_shards), read_rows(local_shards)
    assert ray_table.num_rows > 100 and any(ray_table.column("truncated").to_pylist())
    assert ray_table.drop_columns(["embedding"]).equals(local_table.drop_columns(["embedding"]))
    assert np.abs(ray_vectors - local_vectors).max() < 2e-3  # float16 storage of the same ORT model
    assert sorted_errors(ray_shards) == sorted_errors(local_shards)
    [ray_stats], [local_stats] = run_stats(ray_shards), run_stats(local_shards)
    counts = ("tunes_in", "embedded", "failed", "notes", "truncated", "already_done", "status")
    assert {k: ray_stats[k] for k in counts} == {k: local_stats[k] for k in counts}
    assert ray_stats["engine"]["name"] == "ray" and ray_stats["engine"]["plan"]["provider"] == "cpu"
    assert ray_stats["seconds"]["patch"] > 0 and ray_stats["seconds"]["infer"] > 0


@needs_ray
def test_the_local_engine_takes_a_ray_shards_dir_as_its_own(corpus, model_dir, ray_shards, tmp_path):
    out = tmp_path / "shards"
    shutil.copytree(ray_shards, out)
    stats = embed_corpus(corpus, Encoder.open(model_dir), out, EmbedOptions(workers=0, quiet=True))
    embedded_by_ray = read_rows(ray_shards)[0].num_rows
    assert (stats.embedded, stats.already_done) == (0, embedded_by_ray)
    assert sorted_errors(out) == sorted_errors(ray_shards)  # nothing recorded twice


KILLED_RAY_RUN = """
import os, signal, sys
from indexer.ray_engine import ModelEncoder, RayOptions, embed_corpus_ray
from indexer.runner import EmbedOptions
from indexer.shards import ShardWriter

write_shard = ShardWriter._write_shard

def write_then_die(self, n_rows):  # SIGKILL the moment the first shard is on disk: always mid-run
    write_shard(self, n_rows)
    os.kill(os.getpid(), signal.SIGKILL)

ShardWriter._write_shard = write_then_die
model, out, *inputs = sys.argv[1:]
options = EmbedOptions(shard_rows={shard_rows}, quiet=True)
embed_corpus_ray(inputs, ModelEncoder(model), out, options, RayOptions(batch_tunes=16))
"""


@needs_ray
def test_a_ray_run_killed_after_its_first_shard_resumes_to_exactly_the_same_rows(
    corpus, model_dir, ray_shards, tmp_path
):
    out = tmp_path / "shards"
    script = KILLED_RAY_RUN.format(shard_rows=SHARD_ROWS)
    run = subprocess.Popen([sys.executable, "-c", script, str(model_dir), str(out), *corpus], cwd=REPO)
    assert run.wait(timeout=RAY_TIMEOUT) == -signal.SIGKILL
    first = shard_files(out)[0].read_bytes()
    done_before = read_rows(out)[0].num_rows
    total = read_rows(ray_shards)[0].num_rows
    assert 0 < done_before < total

    result = run_clamp(*embed_args(corpus, model_dir, out), "--engine", "ray", "--quiet")
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = run_stats(out)[-1]
    assert (resumed["already_done"], resumed["embedded"]) == (done_before, total - done_before)
    assert shard_files(out)[0].read_bytes() == first  # finished shards are never redone
    table, vectors = read_rows(out)
    ids = table.column("id").to_pylist()
    assert len(ids) == len(set(ids)) and sorted(ids) == sorted(
        read_rows(ray_shards)[0].column("id").to_pylist()
    )
    assert sorted_errors(out) == sorted_errors(ray_shards)  # none lost, none recorded twice
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=2e-3)


def test_without_ray_the_product_never_imports_it_and_the_ray_engine_says_how_to_install(tmp_path):
    script = (
        "import sys\n"
        "import indexer.cli, indexer.ray_engine, indexer.runner\n"
        "assert 'ray' not in sys.modules, 'ray imported at module level'\n"
        "sys.modules['ray'] = None  # as if the [ray] extra were not installed\n"
        "from runtime.cli import main\n"
        "main()\n"
    )
    args = ["embed", str(tmp_path), "--model", str(tmp_path / "model"), "--out", str(tmp_path / "out")]
    result = subprocess.run(
        [sys.executable, "-c", script, *args, "--engine", "ray"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 1, result.stderr
    assert "pip install 'clamp-index[ray]'" in result.stderr and "Traceback" not in result.stderr


def test_ray_options_belong_to_the_ray_engine(tmp_path):
    args = ["embed", str(tmp_path), "--model", str(tmp_path), "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(main, [*args, "--ray-actors", "2"])
    assert result.exit_code == 2 and "--engine ray" in result.output
    result = CliRunner().invoke(main, [*args, "--engine", "ray", "--workers", "3"])
    assert result.exit_code == 2 and "--engine local" in result.output


def test_joining_a_cluster_needs_absolute_inputs_and_an_address_that_answers():
    with pytest.raises(ValueError, match="absolute paths"):
        check_absolute([Path("/mnt/corpus/a.abc"), Path("corpus/b.abc")])
    with pytest.raises(ConnectionError, match="nothing answers"):
        check_reachable("127.0.0.1:1")  # at once, not after Ray's minutes of retries


@pytest.mark.parametrize(
    ("resources", "options", "plan"),
    [
        # 2 CPUs: room left to read and patch (two 1-CPU actors there hang Ray)
        ({"CPU": 2.0}, RayOptions(), ActorPlan(1, 1.5, 0.0, "cpu", 2)),
        ({"CPU": 2.0}, RayOptions(actors=2), ActorPlan(2, 0.75, 0.0, "cpu", 1)),
        ({"CPU": 64.0}, RayOptions(), ActorPlan(15, 4.0, 0.0, "cpu", 4)),
        # GPUs: one actor per GPU (fp16 by default on CUDA), or several sharing one
        ({"CPU": 32.0, "GPU": 4.0}, RayOptions(), ActorPlan(4, 1.0, 1.0, "cuda", 1)),
        ({"CPU": 32.0, "GPU": 4.0}, RayOptions(actors=8), ActorPlan(8, 1.0, 0.5, "cuda", 1)),
        ({"CPU": 32.0, "GPU": 4.0}, RayOptions(provider="cpu"), ActorPlan(7, 4.0, 0.0, "cpu", 4)),
    ],
)
def test_the_actor_pool_fits_the_cluster(resources, options, plan):
    assert plan_actors(resources, options) == plan


def test_asking_for_cuda_on_a_cluster_without_gpus_is_an_error():
    with pytest.raises(ValueError, match="no GPUs"):
        plan_actors({"CPU": 8.0}, RayOptions(provider="cuda"))
