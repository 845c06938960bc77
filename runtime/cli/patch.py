"""`clamp patch`: show exactly what the music encoder sees of each tune."""

from __future__ import annotations

import json
import sys

import click

from runtime.music.abc import split_tunes
from runtime.model.families import load_family
from runtime.music.patching import EOS_ID, abc_filter, decode_patches, prepare_music


def read_text(path: str) -> str:
    """A file's text ('-' for stdin), decoded as UTF-8 with a Latin-1 fallback (old ABC collections)."""
    data = sys.stdin.buffer.read() if path == "-" else open(path, "rb").read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


@click.command()
@click.argument("file", type=click.Path(allow_dash=True, dir_okay=False))
@click.option("--family", default="clamp-s-512", show_default=True, help="Model family (sets max patches).")
@click.option("--ids", is_flag=True, help="Print patch ids instead of decoded patches.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per tune.")
def patch(file: str, family: str, ids: bool, as_json: bool) -> None:
    """Show each tune's cleaned ABC and its bar patches, as the model sees them.

    \b
    clamp patch tunes.abc            # decoded patches, one per line
    clamp patch tunes.abc --ids --json
    """
    max_patches = load_family(family)["music"]["max_patches"]
    text = read_text(file)
    tunes = split_tunes(text) or ([] if not text.strip() else [None])
    for i, tune in enumerate(tunes):
        abc = text if tune is None else tune.abc
        patches = prepare_music(abc, max_patches)
        record = {
            "tune_index": i,
            "title": None if tune is None else tune.meta.get("title"),
            "n_patches": len(patches),
            "filtered_abc": abc_filter(abc),
            "patches": patches.tolist() if ids else decode_patches(patches),
        }
        if as_json:
            click.echo(json.dumps(record))
            continue
        click.echo(f"# tune {i}: {record['title'] or '(untitled)'} — {len(patches)} patches")
        for n, (text, row) in enumerate(zip(record["patches"], patches, strict=True)):
            click.echo(f"{n:4d}  {'<EOS patch>' if row[0] == EOS_ID else text}")
