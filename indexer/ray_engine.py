"""`clamp embed --engine ray`: the embedding run on a Ray cluster (or a Ray started here).

Read tasks turn input files into rows (indexer.reader), patch tasks add bar patches (indexer.mapper), an
actor pool holding ONNX Runtime sessions embeds them (runtime Encoder, via indexer.mapper), and the driver
hands the rows, in input order, to the same Intake and ShardWriter as the local engine: shards, ids, errors,
resume and stats are the local engine's. Ray is optional and imported only when a run starts.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from indexer.mapper import PatchEncoder, embed_patched, patch_abc
from indexer.reader import Failure, Item, TableColumns, TuneRecord, read_inputs
from indexer.runner import EmbedOptions, Run, RunStats, embedding_run
from indexer.shards import embeddings_matrix
from runtime.music.patching import PATCH_LENGTH
from runtime.music.profiles import PROFILES

INSTALL_HINT = "pip install 'clamp-index[ray]' (or: pip install 'ray[data]>=2.9')"
CPU_ACTOR_CORES = 4.0  # ONNX Runtime threads per CPU actor: more cores per session scale poorly
# Ray CPUs a read or patch task asks for: patching costs ~1/500 of inference, so a little is plenty; and
# asking for other resources than the CPU actors keeps Ray from fusing patching into the actors.
TASK_CPUS = 0.5

# Rows as they travel between the stages. kind: "tune" (to embed), "done" (already in the shards or the
# errors table: only its id travels), "failure" (the reader's). A tune that fails gets stage and reason.
ITEM_FIELDS = [
    ("kind", pa.string()),
    ("id", pa.string()),
    ("source", pa.string()),
    ("tune_index", pa.int32()),
    ("abc", pa.string()),
    ("meta", pa.string()),
    ("stage", pa.string()),
    ("reason", pa.string()),
    ("read_seconds", pa.float64()),
]
ITEM_SCHEMA = pa.schema(ITEM_FIELDS)
PATCH_FIELDS = [("n_patches", pa.int32()), ("truncated", pa.bool_()), ("patch_seconds", pa.float64())]
PATCHED_SCHEMA = pa.schema([*ITEM_FIELDS, *PATCH_FIELDS, ("patches", pa.binary())])


def embedded_schema(dim: int) -> pa.Schema:
    """Rows leaving the actors: the patches dropped, the embedding (zeros where none) added."""
    embedding = [("embedding", pa.list_(pa.float32(), dim)), ("infer_seconds", pa.float64())]
    return pa.schema([*ITEM_FIELDS, *PATCH_FIELDS, *embedding])


EncoderOpener = Callable[[str, int], PatchEncoder]


@dataclass(frozen=True)
class ModelEncoder:
    """Opens a model dir's Encoder where it is called (driver, actors): picklable, unlike an ORT session.

    model_dir: a path every node can read (resolve it to an absolute one on the driver).
    """

    model_dir: str
    precision: str = "auto"

    def __call__(self, provider: str, threads: int) -> PatchEncoder:
        from runtime.model.encoder import Encoder

        return Encoder.open(self.model_dir, provider=provider, precision=self.precision, threads=threads)


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide the Ray engine runs; the rest (shards, batches, resume) is EmbedOptions."""

    address: str | None = None  # an existing cluster ("auto", "ray://head:10001"); None: start Ray here
    provider: str = "auto"  # auto: GPU actors when the cluster has GPUs; cpu; cuda
    actors: int | None = None  # encoder actors; None: one per GPU, else by CPUs
    batch_tunes: int = 1024  # tunes per actor call (the encoder sorts them by length)


@dataclass(frozen=True)
class ActorPlan:
    """The encoder actor pool: its size, each actor's share of CPUs and GPUs, its ORT provider and threads."""

    actors: int
    cpus: float
    gpus: float
    provider: str
    threads: int


def plan_actors(resources: Mapping[str, float], options: RayOptions) -> ActorPlan:
    """One actor per GPU when the cluster has GPUs; else CPU actors, leaving TASK_CPUS to read and patch.

    Leaving room for the tasks matters: on 2 CPUs a pool of two 1-CPU actors starves them and Ray hangs.
    """
    if options.provider not in ("auto", "cpu", "cuda"):
        raise ValueError(f"unknown provider {options.provider!r}; use auto, cpu or cuda")
    gpus = resources.get("GPU", 0.0)
    if options.provider == "cuda" and gpus < 1:
        raise ValueError(
            f"--provider cuda, but the Ray cluster has no GPUs (resources: {dict(resources)}); "
            "use --provider auto or cpu, or add GPU nodes"
        )
    if gpus >= 1 and options.provider != "cpu":
        actors = options.actors or int(gpus)
        return ActorPlan(actors, cpus=1.0, gpus=min(1.0, int(gpus) / actors), provider="cuda", threads=1)
    spare = max(TASK_CPUS, resources.get("CPU", 1.0) - TASK_CPUS)
    actors = options.actors or max(1, int(spare // CPU_ACTOR_CORES))
    share = min(CPU_ACTOR_CORES, spare / actors)
    return ActorPlan(actors, cpus=share, gpus=0.0, provider="cpu", threads=math.ceil(share))


def import_ray() -> Any:
    """The ray module, or an error that says how to install the optional extra."""
    try:
        import ray
        import ray.data  # noqa: F401  (the extra is ray[data], not bare ray)
    except ImportError as err:
        raise ModuleNotFoundError(
            f"the Ray engine needs Ray Data, not installed here: {INSTALL_HINT}"
        ) from err
    return ray


def embed_corpus_ray(
    inputs: Sequence[str],
    open_encoder: EncoderOpener,
    out_dir: str | Path,
    options: EmbedOptions | None = None,
    ray_options: RayOptions | None = None,
) -> RunStats:
    """Embed the inputs' tunes not yet in out_dir's shards on Ray; the same shards as `embed_corpus`.

    Without `ray_options.address` this starts Ray on this machine (and stops it at the end). Joining a
    cluster, inputs must be absolute paths that every node can read; out_dir is written by this process.
    """
    options, ray_options = options or EmbedOptions(), ray_options or RayOptions()
    ray = import_ray()
    encoder = open_encoder("cpu", 1)  # this process's: the model's identity for the shards; it embeds nothing
    engine: dict[str, Any] = {"name": "ray", "ray": ray.__version__, **asdict(ray_options)}
    with embedding_run(inputs, encoder, out_dir, options, engine) as run:
        if ray_options.address is not None:
            check_absolute(run.files)
        start = time.perf_counter()
        with ray_session(ray, ray_options.address, options.quiet):
            engine["start_seconds"] = time.perf_counter() - start
            plan = plan_actors(ray.cluster_resources(), ray_options)
            engine["plan"] = asdict(plan)  # recorded in the stats file when the run ends
            dataset = build_dataset(ray, run, open_encoder, encoder, plan, options, ray_options)
            for table in timed_batches(dataset.iter_batches(batch_size=None, batch_format="pyarrow"), run):
                settle_rows(run, table)
                run.show_progress()
    return run.stats


@contextmanager
def ray_session(ray: Any, address: str | None, quiet: bool) -> Iterator[None]:
    """Ray joined at `address`, or started here (and stopped on exit) when none is given or running."""
    if quiet:
        logging.getLogger("ray.data").setLevel(logging.ERROR)
    started_here = not ray.is_initialized()
    if started_here:
        if address is not None:
            check_reachable(address)
        level = logging.ERROR if quiet else logging.WARNING
        try:
            # "local": a fresh Ray, even where `ray start` left a cluster (or RAY_ADDRESS names one)
            ray.init(address=address or "local", include_dashboard=False, logging_level=level)
        except ConnectionError as err:
            raise ConnectionError(
                f"cannot join the Ray cluster at {address} ({err}): is it up (`ray status` on its head)? "
                "A cluster with token authentication (Ray's default) also needs its token here: "
                "RAY_AUTH_MODE=token and ~/.ray/auth_token or RAY_AUTH_TOKEN (docs/distributed.md)"
            ) from err
    try:
        yield
    finally:
        if started_here:
            ray.shutdown()


def check_reachable(address: str) -> None:
    """Fail in seconds when nothing answers at a HOST:PORT address (Ray itself retries for ~15 minutes)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # "auto", "local": Ray resolves those itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as err:
        raise ConnectionError(
            f"nothing answers at --ray-address {address} ({err}): start the cluster there "
            "(`ray start --head`) or correct the address"
        ) from err


def check_absolute(files: list[Path]) -> None:
    """Joining a cluster, tasks run on other machines: a relative input path means nothing there."""
    relative = [f.as_posix() for f in files if not f.is_absolute()]
    if relative:
        raise ValueError(
            f"with --ray-address, give inputs as absolute paths on storage every node mounts "
            f"(relative: {', '.join(relative[:3])}{' ...' if len(relative) > 3 else ''})"
        )


def build_dataset(
    ray: Any,
    run: Run,
    open_encoder: EncoderOpener,
    encoder: PatchEncoder,
    plan: ActorPlan,
    options: EmbedOptions,
    ray_options: RayOptions,
) -> Any:
    """Files -> rows (read tasks) -> patches (patch tasks) -> embeddings (actor pool), in input order.

    Sets this process's Ray Data context to preserve order (and to quiet progress when asked).
    """
    context = ray.data.DataContext.get_current()  # each dataset copies it when created
    context.execution_options.preserve_order = True  # rows reach the shards in the local engine's order
    context.enable_progress_bars = not options.quiet
    context.print_on_execution_start = not options.quiet
    skip = ray.put(frozenset(run.intake.done_ids | run.intake.recorded))
    files = ray.data.from_items([{"source": f.as_posix()} for f in run.files])
    read = files.map_batches(
        read_files,
        batch_size=1,
        batch_format="pyarrow",
        fn_kwargs={
            "columns": options.columns,
            "skip": skip,
            "rows_per_table": options.chunk_tunes,
            "preprocessing": encoder.profile.name,
        },
        num_cpus=TASK_CPUS,
    )
    patched = read.map_batches(
        patch_rows,
        batch_size=None,
        batch_format="pyarrow",
        fn_kwargs={"max_patches": encoder.max_patches, "preprocessing": encoder.profile.name},
        num_cpus=TASK_CPUS,
    )
    return patched.map_batches(
        EmbedActor,
        batch_size=ray_options.batch_tunes,
        batch_format="pyarrow",
        fn_constructor_kwargs={
            "open_encoder": open_encoder,
            "provider": plan.provider,
            "threads": plan.threads,
            "model_hash": encoder.model_hash,
            "max_batch_patches": options.max_batch_patches,
        },
        compute=ray.data.ActorPoolStrategy(size=plan.actors),
        num_cpus=plan.cpus,
        num_gpus=plan.gpus,
    )


@lru_cache(maxsize=1)
def skipped_ids(skip: Any) -> frozenset[str]:
    """The ids (and failure keys) already settled in the shards dir: fetched once per worker process."""
    import ray

    return ray.get(skip)


def read_files(
    batch: pa.Table, columns: TableColumns, skip: Any, rows_per_table: int, preprocessing: str
) -> Iterator[pa.Table]:
    """Read tasks: each input file's items as rows, a table every `rows_per_table`; done tunes as bare ids."""
    done = skipped_ids(skip)
    for source in batch.column("source").to_pylist():
        rows: list[dict[str, Any]] = []
        start = time.perf_counter()
        for item in read_inputs([Path(source)], columns, PROFILES[preprocessing]):
            rows.append(item_row(item, done))
            if len(rows) == rows_per_table:
                yield rows_with_seconds(rows, time.perf_counter() - start)
                rows, start = [], time.perf_counter()
        if rows:
            yield rows_with_seconds(rows, time.perf_counter() - start)


def item_row(item: Item, done: frozenset[str]) -> dict[str, Any]:
    """A reader item as a row: failures as they are, tunes with their text unless already done."""
    if isinstance(item, Failure):
        fields = ("id", "source", "tune_index", "stage", "reason")
        return {"kind": "failure", **{name: getattr(item, name) for name in fields}}
    row = {"id": item.id, "source": item.source, "tune_index": item.tune_index}
    if item.id in done:
        return {"kind": "done", **row}
    return {"kind": "tune", **row, "abc": item.abc, "meta": json.dumps(item.meta, ensure_ascii=False)}


def rows_with_seconds(rows: list[dict[str, Any]], seconds: float) -> pa.Table:
    """Rows as a table, each carrying its share of the seconds it took to read them."""
    for row in rows:
        row["read_seconds"] = seconds / len(rows)
    return pa.Table.from_pylist(rows, schema=ITEM_SCHEMA)


def row_item(row: dict[str, Any]) -> Item:
    """A row back as the reader's item, for the driver's Intake."""
    if row["kind"] == "failure":
        return Failure(row["source"], row["tune_index"], row["stage"], row["reason"], row["id"])
    return TuneRecord(
        row["id"], row["source"], row["tune_index"], row["abc"] or "", json.loads(row["meta"] or "{}")
    )


def patch_rows(table: pa.Table, max_patches: int, preprocessing: str) -> pa.Table:
    """Patch tasks: each tune's bar patches (made as the local engine's workers make them), or why none."""
    n = table.num_rows
    stage, reason = table.column("stage").to_pylist(), table.column("reason").to_pylist()
    patches: list[bytes | None] = [None] * n
    n_patches: list[int | None] = [None] * n
    truncated: list[bool | None] = [None] * n
    seconds = [0.0] * n
    kinds, abcs = table.column("kind").to_pylist(), table.column("abc").to_pylist()
    for i, (kind, abc) in enumerate(zip(kinds, abcs, strict=True)):
        if kind != "tune":
            continue
        start = time.perf_counter()
        result = patch_abc(abc, max_patches, preprocessing)
        seconds[i] = time.perf_counter() - start
        if isinstance(result, str):
            stage[i], reason[i] = "patch", result
        else:
            patches[i], n_patches[i] = result.patches.tobytes(), len(result.patches)
            truncated[i] = result.truncated
    values = {"stage": stage, "reason": reason, "n_patches": n_patches, "truncated": truncated}
    return with_columns(table, PATCHED_SCHEMA, {**values, "patch_seconds": seconds, "patches": patches})


class EmbedActor:
    """Actor-pool stage: opens the encoder once (its ORT session lives with the actor), embeds batches."""

    def __init__(
        self,
        open_encoder: EncoderOpener,
        provider: str,
        threads: int,
        model_hash: str,
        max_batch_patches: int,
    ):
        self.encoder = open_encoder(provider, threads)
        if self.encoder.model_hash != model_hash:
            raise ValueError(
                f"the model dir on {socket.gethostname()} is model {self.encoder.model_hash}, the driver's "
                f"is {model_hash}: every node must read the same model dir (shared storage)"
            )
        self.max_batch_patches = max_batch_patches
        self.schema = embedded_schema(self.encoder.dim)

    def __call__(self, table: pa.Table) -> pa.Table:
        stage, reason = table.column("stage").to_pylist(), table.column("reason").to_pylist()
        kinds = table.column("kind").to_pylist()
        todo = [
            i
            for i, (kind, failed) in enumerate(zip(kinds, stage, strict=True))
            if kind == "tune" and failed is None
        ]
        vectors = np.zeros((table.num_rows, self.encoder.dim), dtype=np.float32)
        seconds = [0.0] * table.num_rows
        if todo:
            blobs = table.column("patches").take(todo).to_pylist()
            start = time.perf_counter()
            patches = [np.frombuffer(blob, dtype=np.uint8).reshape(-1, PATCH_LENGTH) for blob in blobs]
            vectors[todo], reasons = embed_patched(self.encoder, patches, self.max_batch_patches)
            share = (time.perf_counter() - start) / len(todo)
            for i, why in zip(todo, reasons, strict=True):
                seconds[i] = share
                if why is not None:
                    stage[i], reason[i] = "encode", why
        embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), self.encoder.dim)
        values = {"stage": stage, "reason": reason, "embedding": embedding, "infer_seconds": seconds}
        return with_columns(table, self.schema, values)


def with_columns(table: pa.Table, schema: pa.Schema, values: Mapping[str, list | pa.Array]) -> pa.Table:
    """The table with these columns set or added, typed and ordered as in schema (other columns dropped)."""
    columns: dict[str, Any] = {name: table.column(name) for name in table.column_names}
    for name, column in values.items():
        columns[name] = (
            column if isinstance(column, pa.Array) else pa.array(column, type=schema.field(name).type)
        )
    return pa.Table.from_arrays([columns[field.name] for field in schema], schema=schema)


def timed_batches(batches: Iterator[pa.Table], run: Run) -> Iterator[pa.Table]:
    """The dataset's output tables, the time spent waiting for each added to the run's 'wait' stage."""
    iterator = iter(batches)
    while True:
        start = time.perf_counter()
        table = next(iterator, None)
        run.stats.seconds["wait"] += time.perf_counter() - start
        if table is None:
            return
        yield table


def settle_rows(run: Run, table: pa.Table) -> None:
    """Hand a table of embedded rows to the run's Intake in order, as the local engine does its windows."""
    for stage in ("read", "patch", "infer"):
        run.stats.seconds[stage] += pc.sum(table.column(f"{stage}_seconds")).as_py() or 0.0
    vectors = embeddings_matrix(table)
    records, n_patches, truncated, reasons, keep = [], [], [], [], []
    for i, row in enumerate(table.drop_columns(["embedding"]).to_pylist()):
        record = run.intake.admit(row_item(row))
        if record is None:
            continue
        if row["stage"] == "patch":
            run.intake.fail(Failure(record.source, record.tune_index, "patch", row["reason"], record.id))
            continue
        records.append(record)
        n_patches.append(row["n_patches"])
        truncated.append(row["truncated"])
        reasons.append(row["reason"])
        keep.append(i)
    run.intake.settle(records, n_patches, truncated, vectors[keep], reasons)
