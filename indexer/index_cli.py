"""`clamp index build|info|facets`: turn embedding shards into a searchable index, and describe one."""

from __future__ import annotations

import json

import click

from runtime.cli import InRange
from runtime.search.index import DEFAULT_FACET_FIELDS, DEFAULT_FACET_TOP, read_manifest
from runtime.search.limits import EF_CONSTRUCTION, FIRST_LABEL, HNSW_M, THREADS


@click.group()
def index() -> None:
    """Build and inspect HNSW indices over embedding shards.

    \b
    clamp embed corpus/ --out build/shards               # tunes -> Parquet shards
    clamp index build build/shards --out build/index     # shards -> index dir
    clamp index attach build/index group-1 group-2       # index dirs built apart, as its segments
    clamp index facets build/index                       # its keys, meters, tune types... with counts
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
    "match strength [default: the one the shards record, else $CLAMP_MODEL or build/model, if it is "
    "that model].",
)
@click.option(
    "--m",
    "m",
    type=InRange(HNSW_M),
    default=16,
    show_default=True,
    help="HNSW links per node: more = better recall, more RAM.",
)
@click.option(
    "--ef-construction",
    type=InRange(EF_CONSTRUCTION),
    default=200,
    show_default=True,
    help="HNSW build-time beam: more = better graph, slower build.",
)
@click.option("--threads", default=None, type=InRange(THREADS), help="Build threads [default: all cores].")
@click.option(
    "--full",
    is_flag=True,
    help="Rebuild from every row even where the index at --out could be updated (a compaction: one "
    "segment, no deleted rows, calibration measured again).",
)
@click.option(
    "--first-label",
    type=InRange(FIRST_LABEL),
    default=0,
    show_default=True,
    help="Where a full build's labels start: give each shard group built apart its own range (e.g. "
    "group g at g * 10**12), so that `clamp index attach` can join them.",
)
def build(
    shards_dir: str,
    out_dir: str,
    model_dir: str | None,
    m: int,
    ef_construction: int,
    threads: int | None,
    full: bool,
    first_label: int,
) -> None:
    """Build an index dir from SHARDS_DIR (written by `clamp embed`).

    The index dir holds index.hnsw (the graph), items.sqlite (metadata and ABC of every tune, and the
    keyword table over their text metadata), vectors.npy (for exact search) and manifest.json (with
    the model dir the shards record, so queries need no --model, and the match-strength calibration:
    the best cosines of texts unrelated to music, embedded with that model). Rows superseded since
    they were embedded (their file changed) are left out. An existing index at --out is replaced once
    the new one is complete; any other non-empty --out (a model dir, another program's files) is
    refused.

    An index at --out built from the same SHARDS_DIR, model, HNSW settings and first label is updated
    instead: the rows added since become a new segment and rows whose files changed are deleted, in one
    atomic swap of its manifest.json that a running `clamp serve` picks up. Past 20% deleted rows it is
    rebuilt; past 8 segments the added ones are merged. Groups attached to it (`clamp index attach`)
    stay as they are, and a rebuild that would drop them is refused.
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
            full=full,
            first_label=first_label,
        )
    except (ValueError, OSError) as err:  # mixed shards, another model, no shards, --out taken
        raise click.ClickException(str(err)) from err
    took = manifest["build_seconds"]
    if "update" in manifest:
        update, segments = manifest["update"], 1 + len(manifest.get("segments", []))
        click.echo(
            f"updated {out_dir}: +{update['added']} -{update['deleted']} tunes in {took:.1f} s, now "
            f"{manifest['count']} tunes in {segments} segment(s), generation {manifest.get('generation', 0)}"
        )
        return
    click.echo(f"indexed {manifest['count']} tunes ({manifest['dim']}-d) in {took:.1f} s -> {out_dir}")
    if manifest["superseded_skipped"]:
        click.echo(f"left out {manifest['superseded_skipped']} superseded row(s) (their files changed since)")
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
@click.argument("groups", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
def attach(index_dir: str, groups: tuple[str, ...]) -> None:
    """Attach GROUPS, index dirs built apart, to INDEX_DIR as its segments, in one atomic swap.

    Shard groups are embedded and built in parallel (one machine each); each group's build gets its own
    label range, and the index takes their files (hard links where they share a file system) unchanged:

    \b
    clamp index build shards-1 --out group-1 --first-label 1000000000000   # on machine 1
    clamp index build shards-2 --out group-2 --first-label 2000000000000   # on machine 2
    clamp index attach build/index group-1 group-2                          # where the index is served

    A group must be one segment without deleted rows, of the index's model and HNSW settings, holding
    labels and tunes the index does not. A running `clamp serve` picks the new generation up. Updates of
    the index from its own shards dir leave attached groups alone; a full build of it is refused.
    """
    from indexer.index_attach import attach_indices

    try:
        manifest = attach_indices(index_dir, groups)
    except (ValueError, OSError) as err:
        raise click.ClickException(str(err)) from err
    click.echo(
        f"attached {len(groups)} group(s), +{manifest['attach']['added']} tunes in "
        f"{manifest['build_seconds']:.1f} s: {index_dir} now holds {manifest['count']} tunes in "
        f"{1 + len(manifest['segments'])} segment(s), generation {manifest['generation']}"
    )


@index.command()
@click.argument("index_dir", type=click.Path(exists=True, file_okay=False))
def info(index_dir: str) -> None:
    """Print the manifest of INDEX_DIR: model, count, HNSW parameters, build time, source shards."""
    click.echo(json.dumps(read_manifest(index_dir), indent=2))


@index.command()
@click.argument("index_dir", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--fields",
    default=",".join(DEFAULT_FACET_FIELDS),
    show_default=True,
    help="Comma-separated filter fields (raw.NAME: a header field as written).",
)
@click.option("--filter", "filter_text", default=None, help="Count only the items that pass this filter.")
@click.option(
    "--top", default=DEFAULT_FACET_TOP, show_default=True, help="Values per field, commonest first."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON, shaped as GET /v1/facets answers.")
def facets(index_dir: str, fields: str, filter_text: str | None, top: int, as_json: bool) -> None:
    """The commonest values of metadata fields in INDEX_DIR, with counts: what a --filter can select.

    \b
    clamp index facets build/index
    clamp index facets build/index --fields key,meter --filter 'rhythm in (jig, reel)'
    """
    from runtime.cli.query import user_errors
    from runtime.search.hits import facets_as_dict
    from runtime.search.index import Index

    with user_errors():
        found = Index.open(index_dir).facets(fields.split(","), filter_text, top)
    if as_json:
        click.echo(json.dumps(facets_as_dict(found), indent=2, ensure_ascii=False))
        return
    for name, values in found.items():
        click.echo(f"{name}:")
        for value, count in values:
            click.echo(f"  {count:>8}  {value}")
