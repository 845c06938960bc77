"""`clamp index build|info`: turn embedding shards into a searchable index, and describe one."""

from __future__ import annotations

import json

import click

from runtime.search.index import read_manifest


@click.group()
def index() -> None:
    """Build and inspect HNSW indices over embedding shards.

    \b
    clamp embed corpus/ --out build/shards               # tunes -> Parquet shards
    clamp index build build/shards --out build/index     # shards -> index dir
    clamp search "a lively jig" --index build/index      # query it
    """


@index.command()
@click.argument("shards_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Index dir to write.")
@click.option(
    "--model",
    "model_dir",
    type=click.Path(exists=True, file_okay=False),
    help="Model dir that made the shards, recorded so queries default to it, and used to calibrate "
    "match strength [default: $CLAMP_MODEL or build/model, if it is that model].",
)
@click.option(
    "--m", "m", default=16, show_default=True, help="HNSW links per node: more = better recall, more RAM."
)
@click.option(
    "--ef-construction",
    default=200,
    show_default=True,
    help="HNSW build-time beam: more = better graph, slower build.",
)
@click.option("--threads", default=None, type=int, help="Build threads [default: all cores].")
def build(
    shards_dir: str, out_dir: str, model_dir: str | None, m: int, ef_construction: int, threads: int | None
) -> None:
    """Build an index dir from SHARDS_DIR (written by `clamp embed`).

    The index dir holds index.hnsw (the graph), items.sqlite (metadata and ABC of every tune, and
    the keyword table over their text metadata), vectors.npy (for exact search) and manifest.json
    (with the match-strength calibration: the best cosines of texts unrelated to music, embedded
    with the model). An existing index at --out is replaced.
    """
    from indexer.index_build import build_index

    try:
        manifest = build_index(
            shards_dir,
            out_dir,
            model_dir=model_dir,
            m=m,
            ef_construction=ef_construction,
            num_threads=threads,
            progress=True,
        )
    except (ValueError, OSError) as err:  # mixed shards, another model, no shards, --out taken
        raise click.ClickException(str(err)) from err
    took = manifest["build_seconds"]
    click.echo(f"indexed {manifest['count']} tunes ({manifest['dim']}-d) in {took:.1f} s -> {out_dir}")
    if manifest["model_dir"] is None:
        click.echo("note: no model dir recorded; queries will need --model DIR (or $CLAMP_MODEL)", err=True)
    if manifest["calibration"] is None:
        click.echo(
            "note: no model to calibrate match strength with: hits carry no z and searches cannot say when "
            "the best match is no better than chance; rebuild with --model DIR",
            err=True,
        )


@index.command()
@click.argument("index_dir", type=click.Path(exists=True, file_okay=False))
def info(index_dir: str) -> None:
    """Print the manifest of INDEX_DIR: model, count, HNSW parameters, build time, source shards."""
    click.echo(json.dumps(read_manifest(index_dir), indent=2))
