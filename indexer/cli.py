"""`clamp embed`: embed ABC corpora into Parquet shards, resumably."""

from __future__ import annotations

import click

from indexer.reader import TableColumns
from indexer.runner import EmbedOptions, default_workers, embed_corpus
from indexer.shards import DTYPES


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
    "--workers", type=click.IntRange(min=0), default=None, help="Patching processes [default: cores - 1]."
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
@click.option(
    "--precision",
    type=click.Choice(["auto", "fp32", "fp16", "int8"]),
    default="auto",
    show_default=True,
    help="auto: fp16 on CUDA, fp32 on CPU.",
)
@click.option(
    "--resume/--no-resume",
    default=True,
    show_default=True,
    help="Continue in a dir that has shards (skip tunes already there); --no-resume refuses such a dir.",
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
    quiet: bool,
) -> None:
    """Embed every tune of INPUT... (files, directories, globs) into Parquet shards in --out.

    \b
    Inputs: .abc files (many tunes each, split at X:) and tables (.jsonl, .parquet) with an ABC column;
    other columns of a table are kept as metadata.
    Rerunning the same command continues where a crashed or interrupted run stopped, and adding files
    then rerunning embeds only the new tunes. Tunes that fail are listed in OUT/errors/; each run
    writes its counts and stage timings to OUT/stats/.

    \b
      clamp embed corpus/ --model build/model --out build/shards
      clamp embed tunes.jsonl --abc-column score --id-column uid --model build/model --out build/shards
    """
    from runtime.encoder import Encoder

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
        encoder = Encoder.open(model_dir, provider=provider, precision=precision)
        stats = embed_corpus(inputs, encoder, out_dir, options)
    except (ValueError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from err
    if not quiet:
        click.echo(stats.summary())
