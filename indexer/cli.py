"""`clamp embed`: embed ABC corpora into Parquet shards, resumably."""

from __future__ import annotations

from pathlib import Path

import click

from indexer.reader import TableColumns
from indexer.runner import EmbedOptions, default_workers, embed_corpus
from indexer.shards import DTYPES
from runtime.cli import precision_option


@click.command()
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option(
    "--model", "model_dir", required=True, type=click.Path(file_okay=False), help="Model dir (clamp export)."
)
@click.option(
    "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Shards dir to write."
)
@click.option(
    "--abc-column", default="abc", show_default=True, help="Table inputs: the column holding ABC text."
)
@click.option(
    "--id-column", default=None, help="Table inputs: a column of unique tune ids [default: derived]."
)
@click.option(
    "--dtype",
    type=click.Choice(list(DTYPES)),
    default="float16",
    show_default=True,
    help="Embedding storage: float16 halves the shards and moves cosines by < 1e-4.",
)
@click.option(
    "--shard-rows", type=click.IntRange(min=1), default=50_000, show_default=True, help="Rows per shard."
)
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=None,
    help="--engine local: patching processes [default: cores - 1].",
)
@click.option(
    "--batch-patches",
    type=click.IntRange(min=1),
    default=2048,
    show_default=True,
    help="Padded patches per encoder batch (fastest on 2 CPU cores; raise it on a GPU).",
)
@click.option(
    "--provider",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="Where ONNX Runtime runs (auto: CUDA when present).",
)
@precision_option(
    "auto: fp16 on CUDA; on CPU int8 per tower where the CPU has VNNI/AMX and the export's int8 gate "
    "passed, else fp32. int8: 1.2-2x faster on AVX2, ~3x with VNNI (clamp-s-512 music tower)."
)
@click.option(
    "--resume/--no-resume",
    default=True,
    show_default=True,
    help="Continue in a dir that has shards (skip tunes already there); --no-resume refuses such a dir.",
)
@click.option(
    "--engine",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="local: this machine's cores; ray: a Ray cluster or a Ray started here (the [ray] extra).",
)
@click.option(
    "--ray-address",
    default=None,
    help="--engine ray: join this cluster ('auto', or ray://HEAD:10001) [default: start Ray here].",
)
@click.option(
    "--ray-actors",
    type=click.IntRange(min=1),
    default=None,
    help="--engine ray: encoder actors [default: one per GPU, else one per 4 CPUs].",
)
@click.option("--quiet", is_flag=True, help="No progress bar or summary (for scripts).")
def embed(
    inputs: tuple[str, ...],
    model_dir: str,
    out_dir: str,
    abc_column: str,
    id_column: str | None,
    dtype: str,
    shard_rows: int,
    workers: int | None,
    batch_patches: int,
    provider: str,
    precision: str,
    resume: bool,
    engine: str,
    ray_address: str | None,
    ray_actors: int | None,
    quiet: bool,
) -> None:
    """Embed every tune of INPUT... (files, directories, globs) into Parquet shards in --out.

    \b
    Inputs: .abc files (many tunes each, split at X:), MusicXML (.mxl, .musicxml, .xml) and MIDI (.mid,
    .midi) scores converted to ABC (60 s a file at most), and tables (.jsonl, .parquet) with an ABC
    column; other columns of a table are kept as metadata.
    Rerunning the same command continues where a crashed or interrupted run stopped, and adding files
    then rerunning embeds only the new tunes; a file changed since gets its new tunes embedded and its
    old rows superseded (`clamp index build` leaves them out). A tune's id comes from the file's real
    path, so any spelling of a path gives the same ids. Tunes and files that fail (FIFOs and broken
    symlinks in a folder too) are listed in OUT/_errors/ with the reason, among them what is not ABC
    music (binary data, no bar line) and scores over the converter's limits (1,000,000 XML elements;
    $CLAMP_CONVERTER_MEMORY_MB, default 1024); each run writes its counts and stage timings to
    OUT/_stats/, and the progress bar counts the tunes first, for its total and ETA. OUT itself reads as
    a Parquet dataset (pandas, pyarrow, DuckDB). --out must be empty, missing or a shards dir, and one
    run at a time writes it: a second is refused.

    --engine ray runs the same steps on Ray (docs/distributed.md) and writes the same shards.

    \b
      clamp embed corpus/ --model build/model --out build/shards
      clamp embed tunes.jsonl --abc-column score --id-column uid --model build/model --out build/shards
      clamp embed /mnt/corpus --model /mnt/model --out /mnt/shards --engine ray --ray-address auto
    """
    if engine == "local" and (ray_address or ray_actors):
        raise click.UsageError("--ray-address and --ray-actors are options of --engine ray")
    if engine == "ray" and workers is not None:
        raise click.UsageError("--workers is an option of --engine local (Ray sizes its patch tasks itself)")

    options = EmbedOptions(
        shard_rows=shard_rows,
        dtype=dtype,
        resume=resume,
        workers=default_workers() if workers is None else workers,
        columns=TableColumns(abc=abc_column, id=id_column),
        max_batch_patches=batch_patches,
        quiet=quiet,
    )
    try:
        if engine == "ray":
            from indexer.ray_engine import ModelEncoder, RayOptions, embed_corpus_ray

            model = ModelEncoder(str(Path(model_dir).resolve()), precision)
            ray_options = RayOptions(address=ray_address, provider=provider, actors=ray_actors)
            stats = embed_corpus_ray(inputs, model, out_dir, options, ray_options)
        else:
            from runtime.model.encoder import Encoder

            # every shard will carry this model's hash: check every byte of its files against it first
            encoder = Encoder.open(model_dir, provider=provider, precision=precision, full_check=True)
            stats = embed_corpus(inputs, encoder, out_dir, options)
    except (ValueError, FileNotFoundError, ModuleNotFoundError, ConnectionError) as err:
        raise click.ClickException(str(err)) from err
    if not quiet:
        click.echo(stats.summary())
