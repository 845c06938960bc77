"""The embedding run: read -> patch (worker pool) -> embed (Encoder) -> write shards; resumable, timed.

Resuming is by ids: the ids in finished shards (and the failures already recorded) are the truth, so
rerunning the same command after a crash or Ctrl-C embeds exactly the tunes that are missing.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from indexer.layout import migrate_layout
from indexer.mapper import Patched, PatchEncoder, embed_patched, parallel_patch, peak_rss_mb
from indexer.reader import (
    Failure,
    InputFiles,
    Item,
    TableColumns,
    TuneRecord,
    count_items,
    find_inputs,
    read_inputs,
)
from indexer.shards import (
    ShardWriter,
    failure_keys,
    rows_table,
    shard_schema,
    shards_metadata,
    shards_provenance,
)
from indexer.supersede import stored_ids, supersede
from runtime.music.abc import ID_SCHEME, source_path
from runtime.storage.dirs import SHARDS, STATS_DIR, prepare_out_dir
from runtime.storage.lock import exclusive

STAGES = ("read", "patch", "wait", "infer", "write")


def default_workers() -> int:
    """Patch workers: every core but the one that runs the encoder."""
    return max(1, (os.cpu_count() or 1) - 1)


@dataclass(frozen=True)
class EmbedOptions:
    """How to run: shard layout, parallelism, batch sizes, table columns."""

    shard_rows: int = 50_000
    dtype: str = "float16"
    resume: bool = True
    workers: int = field(default_factory=default_workers)
    columns: TableColumns = TableColumns()
    max_batch_patches: int = 2048  # padded patches per ORT call: 1-2k ran ~25% faster than 8k on 2 cores
    window_patches: int = 65_536
    chunk_tunes: int = 64
    quiet: bool = False


@dataclass
class RunStats:
    """What a run did and where its time went (seconds per stage; 'patch' is summed over the workers)."""

    tunes_in: int = 0
    embedded: int = 0
    failed: int = 0
    duplicates_skipped: int = 0
    already_done: int = 0
    notes: int = 0
    truncated: int = 0
    ignored: dict[str, int] = field(default_factory=dict)  # files skipped for their extension, by extension
    changed_files: int = 0
    superseded_rows: int = 0
    shards_written: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    wall_seconds: float = 0.0
    peak_rss_mb: dict[str, float] = field(default_factory=lambda: {"main": 0.0, "workers": 0.0})
    status: str = "running"

    @property
    def settled(self) -> int:
        """Tunes whose fate this run has decided (for the progress bar)."""
        return self.embedded + self.failed + self.duplicates_skipped + self.already_done

    def summary(self) -> str:
        rate = self.embedded / self.wall_seconds if self.wall_seconds else 0.0
        stages = ", ".join(f"{name} {self.seconds[name]:.1f}s" for name in STAGES)
        lines = [
            f"tunes in {self.tunes_in}: embedded {self.embedded} ({self.truncated} truncated), "
            f"failed {self.failed}, duplicates skipped {self.duplicates_skipped}, "
            f"already done {self.already_done}; {len(self.shards_written)} new shard(s); "
            f"{rate:.0f} tunes/s over {self.wall_seconds:.1f}s ({stages})"
        ]
        if self.changed_files:
            lines.append(
                f"{self.changed_files} file(s) changed since they were embedded: "
                f"{self.superseded_rows} old row(s) superseded"
            )
        if self.ignored:
            kinds = ", ".join(f"{n} {ext}" for ext, n in sorted(self.ignored.items()))
            lines.append(f"{sum(self.ignored.values())} file(s) ignored for their extension ({kinds})")
        return "\n".join(lines)


class Intake:
    """Sorts what the reader yields (new tunes, failures, tunes to skip); settles what the encoder returns."""

    def __init__(
        self,
        stats: RunStats,
        writer: ShardWriter,
        done_ids: set[str],
        recorded: set[str],
        chunk: int,
        sources: Sequence[str] = (),
    ):
        self.stats = stats
        self.writer = writer
        self.done_ids = done_ids  # in finished shards
        self.recorded = recorded  # keys of failures already in the errors table
        self.chunk = chunk
        self.seen: set[str] = set()  # ids met in this run
        self.source_ids: dict[str, set[str]] = {source: set() for source in sources}  # ids each file yields
        self.unread: set[str] = set()  # sources that could not be read at all

    def chunks(self, items: Iterator[Item]) -> Iterator[list[TuneRecord]]:
        chunk: list[TuneRecord] = []
        while True:
            start = time.perf_counter()
            item = next(items, None)
            self.stats.seconds["read"] += time.perf_counter() - start
            if item is None:
                break
            record = self.admit(item)
            if record is not None:
                chunk.append(record)
                if len(chunk) >= self.chunk:
                    yield chunk
                    chunk = []
        if chunk:
            yield chunk

    def admit(self, item: Item) -> TuneRecord | None:
        """Count an item; the record if it is work to do, None if it failed, is a duplicate or is done."""
        if isinstance(item, Failure):
            self.stats.tunes_in += item.tune_index is not None and not item.is_note
            if item.tune_index is None and item.stage == "read":
                self.unread.add(item.source)
            self.fail(item)
            return None
        self.stats.tunes_in += 1
        self.source_ids.setdefault(item.source, set()).add(item.id)
        if item.id in self.seen:
            self.stats.duplicates_skipped += 1
            return None
        self.seen.add(item.id)
        if item.id in self.done_ids or item.id in self.recorded:
            self.stats.already_done += 1
            return None
        return item

    def fail(self, failure: Failure) -> None:
        """Count a failure and record it unless an earlier run already did."""
        if failure.is_note:
            self.stats.notes += 1
        else:
            self.stats.failed += 1
        if failure.key not in self.recorded:
            self.recorded.add(failure.key)
            self.writer.add_failures([failure])

    def settle(
        self,
        records: list[TuneRecord],
        n_patches: list[int],
        truncated: list[bool],
        vectors: np.ndarray,
        reasons: list[str | None],
    ) -> None:
        """Record the tunes the encoder failed on (reason set); count and queue the rows of the rest."""
        for record, reason in zip(records, reasons, strict=True):
            if reason is not None:
                self.fail(Failure(record.source, record.tune_index, "encode", reason, record.id))
        keep = [i for i, reason in enumerate(reasons) if reason is None]
        self.stats.embedded += len(keep)
        self.stats.truncated += sum(truncated[i] for i in keep)
        table = rows_table(
            self.writer.schema,
            [records[i] for i in keep],
            [n_patches[i] for i in keep],
            [truncated[i] for i in keep],
            vectors[keep],
        )
        timed(lambda: self.writer.add(table), self.stats, "write")

    def current_ids(self) -> dict[str, set[str]]:
        """For each file read whole (or found empty), the ids it yields now: what its rows must be."""
        return {source: ids for source, ids in self.source_ids.items() if source not in self.unread}


def open_shards_dir(
    out_dir: Path, encoder: PatchEncoder, options: EmbedOptions, inputs: InputFiles
) -> ShardWriter:
    """A writer for the shards dir, after checking that existing shards may be appended to.

    Its shards record the id scheme, the absolute model dir and the corpus roots of this run.
    """
    prepare_out_dir(out_dir, SHARDS, replacing=False)
    migrate_layout(out_dir)
    existing = shards_metadata(out_dir)
    if existing is not None:
        if not options.resume:
            raise ValueError(
                f"{out_dir} already holds shards; rerun with --resume to add to them, "
                "or choose an empty --out"
            )
        if shards_provenance(out_dir)["id_schemes"] != {ID_SCHEME}:
            raise ValueError(
                f"{out_dir} holds shards from an older clamp-index, whose ids depend on how each path was "
                "spelled: resuming would embed every tune again; embed into a new --out"
            )
        if existing["model_hash"] != encoder.model_hash:
            raise ValueError(
                f"{out_dir} holds shards made with model {existing['model_name']} "
                f"({existing['model_hash']}), "
                f"not with this model ({encoder.model_name}, {encoder.model_hash}): "
                "use another --out for this model"
            )
        if existing["dtype"] != options.dtype:
            raise ValueError(
                f"{out_dir} holds {existing['dtype']} embeddings; rerun with --dtype {existing['dtype']}"
            )
    model_dir = getattr(encoder, "model_dir", None)  # stand-in encoders (tests, benchmarks) have none
    provenance = {
        "id_scheme": ID_SCHEME,
        "model_dir": str(Path(model_dir).resolve()) if model_dir else "",
        "corpus_roots": json.dumps(inputs.roots),
    }
    schema = shard_schema(encoder.dim, options.dtype, encoder.model_hash, encoder.model_name, provenance)
    return ShardWriter(out_dir, schema, options.shard_rows)


@dataclass
class Run:
    """One embedding run's shared parts, for an engine to drive: input files, writer, intake, progress."""

    files: list[Path]
    writer: ShardWriter
    intake: Intake
    progress: tqdm

    @property
    def stats(self) -> RunStats:
        return self.intake.stats

    def show_progress(self) -> None:
        self.progress.update(self.stats.settled - self.progress.n)


@contextmanager
def embedding_run(
    inputs: Sequence[str],
    encoder: PatchEncoder,
    out_dir: str | Path,
    options: EmbedOptions,
    engine: dict[str, Any],
) -> Iterator[Run]:
    """An embedding run that holds out_dir's lock: a second writer is refused, never interleaved."""
    with (
        exclusive(Path(out_dir), "clamp embed"),
        _locked_run(inputs, encoder, out_dir, options, engine) as run,
    ):
        yield run


@contextmanager
def _locked_run(
    inputs: Sequence[str],
    encoder: PatchEncoder,
    out_dir: str | Path,
    options: EmbedOptions,
    engine: dict[str, Any],
) -> Iterator[Run]:
    """What every engine shares around its loop: resume state, the shards writer, flush and stats on exit.

    Whatever way the engine's loop ends (done, error, Ctrl-C), queued rows are written and the stats file
    (with `engine` describing how the run was made) records how it ended. Only a complete run marks the
    old rows of changed files superseded (indexer.supersede): an interrupted one has not read them all.
    """
    started, clock = datetime.now(timezone.utc), time.perf_counter()
    out_dir = Path(out_dir)
    found = find_inputs(inputs)
    files = found.files
    out_dir.mkdir(parents=True, exist_ok=True)
    writer = open_shards_dir(out_dir, encoder, options, found)
    stats = RunStats(ignored=found.ignored)
    sources = [source_path(f) for f in files]
    folders = [os.path.realpath(spec) for spec in inputs if os.path.isdir(spec)]
    done_ids, stored = stored_ids(out_dir, sources, folders)  # with the files deleted from `folders`
    intake = Intake(stats, writer, done_ids, failure_keys(out_dir), options.chunk_tunes, sources)
    counted = time.perf_counter()
    total = None if options.quiet else count_items(files, options.columns)  # for the bar's total and ETA
    stats.seconds["read"] += time.perf_counter() - counted
    progress = tqdm(total=total, unit="tune", disable=options.quiet, desc="embedding", dynamic_ncols=True)
    run = Run(files, writer, intake, progress)
    try:
        yield run
        progress.total = max(stats.settled, progress.n)  # the count was an estimate: end the bar at 100%
        run.show_progress()
        start = time.perf_counter()
        deleted = {source: set() for source in stored.keys() - set(sources)}  # yield no ids now
        current = intake.current_ids() | deleted
        stats.changed_files, stats.superseded_rows = supersede(out_dir, stored, current)
        stats.seconds["write"] += time.perf_counter() - start
        stats.status = "complete"
    except BaseException as err:
        stats.status = f"stopped: {type(err).__name__}" + (f": {err}" if str(err) else "")
        raise
    finally:
        progress.close()
        timed(writer.flush, stats, "write")  # keep every tune embedded so far, even on Ctrl-C
        stats.shards_written = [p.name for p in writer.written]
        stats.wall_seconds = time.perf_counter() - clock
        stats.peak_rss_mb["main"] = peak_rss_mb()
        write_stats(out_dir, stats, started, inputs, len(files), encoder, options, engine)


def embed_corpus(
    inputs: Sequence[str], encoder: PatchEncoder, out_dir: str | Path, options: EmbedOptions = EmbedOptions()
) -> RunStats:
    """Embed the inputs' tunes not yet in out_dir's shards; write shards, errors and a stats file.

    With workers > 0 this starts (spawned) processes: scripts must call it under `if __name__ == "__main__":`.
    """
    with embedding_run(inputs, encoder, out_dir, options, {"name": "local"}) as run:
        batcher = WindowEmbedder(encoder, run.writer, run.intake, options)
        patched = parallel_patch(
            run.intake.chunks(read_inputs(run.files, options.columns, encoder.profile)),
            encoder.max_patches,
            options.workers,
            encoder.profile.name,
        )
        try:
            for chunk in patched:
                run.stats.seconds["patch"] += chunk.patch_seconds
                run.stats.seconds["wait"] += chunk.wait_seconds
                workers_mb = run.stats.peak_rss_mb["workers"]
                run.stats.peak_rss_mb["workers"] = max(workers_mb, chunk.worker_peak_mb)
                batcher.add(chunk.records, chunk.results)
                run.show_progress()
            batcher.embed()
        finally:
            patched.close()  # stops the worker pool before the run's shards are flushed
    return run.stats


class WindowEmbedder:
    """Gathers patched tunes into a window of about `window_patches` patches, embeds it, queues the rows."""

    def __init__(self, encoder: PatchEncoder, writer: ShardWriter, intake: Intake, options: EmbedOptions):
        self.encoder, self.writer, self.intake, self.options = encoder, writer, intake, options
        self.stats = intake.stats
        self.window: list[tuple[TuneRecord, Patched]] = []
        self.window_patches = 0

    def add(self, records: list[TuneRecord], results: list[Patched | str]) -> None:
        for record, result in zip(records, results, strict=True):
            if isinstance(result, str):
                self.intake.fail(Failure(record.source, record.tune_index, "patch", result, record.id))
            else:
                self.window.append((record, result))
                self.window_patches += len(result.patches)
        if self.window_patches >= self.options.window_patches:
            self.embed()

    def embed(self) -> None:
        """Embed the window (the encoder sorts it by length to keep padding small) and queue its rows."""
        window, self.window, self.window_patches = self.window, [], 0
        if not window:
            return
        start = time.perf_counter()
        vectors, reasons = embed_patched(
            self.encoder, [p.patches for _, p in window], self.options.max_batch_patches
        )
        self.stats.seconds["infer"] += time.perf_counter() - start
        records = [record for record, _ in window]
        n_patches = [len(p.patches) for _, p in window]
        self.intake.settle(records, n_patches, [p.truncated for _, p in window], vectors, reasons)


def timed(step: Callable[[], None], stats: RunStats, stage: str) -> None:
    """Run a step, adding its time to a stage."""
    start = time.perf_counter()
    step()
    stats.seconds[stage] += time.perf_counter() - start


def write_stats(
    out_dir: Path,
    stats: RunStats,
    started: datetime,
    inputs: Sequence[str],
    n_files: int,
    encoder: PatchEncoder,
    options: EmbedOptions,
    engine: dict[str, Any],
) -> Path:
    """Write this run's stats JSON (counts, stage seconds, tunes/s, peak memory, engine) in OUT/_stats/."""
    path = out_dir / STATS_DIR / f"run-{started:%Y%m%dT%H%M%S}-{os.getpid()}.json"
    path.parent.mkdir(exist_ok=True)
    record = {
        "started": started.isoformat(timespec="seconds"),
        **asdict(stats),
        "tunes_per_second": stats.embedded / stats.wall_seconds if stats.wall_seconds else 0.0,
        "model": {
            "name": encoder.model_name,
            "hash": encoder.model_hash,
            "dim": encoder.dim,
            "max_patches": encoder.max_patches,
        },
        "options": {**asdict(options), "columns": asdict(options.columns)},
        "engine": engine,
        "inputs": list(inputs),
        "input_files": n_files,
    }
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path
