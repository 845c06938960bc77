"""`clamp patch`: show exactly what the music encoder sees of each tune."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from runtime.model.families import load_family
from runtime.music.abc import Tune
from runtime.music.formats import SCORE_SUFFIXES, read_tunes
from runtime.music.patching import EOS_ID, abc_filter, decode_patches, prepare_music

DEFAULT_FAMILY = "default"  # the default model's family (what `clamp export` exports without --family)


def read_score(path: str) -> list[Tune]:
    """The tunes of a score file, read (and converted to ABC) as `clamp similar` reads it.

    Stdin ('-') and files of other suffixes are ABC text, decoded as UTF-8 with a Latin-1 fallback.
    """
    if path != "-" and Path(path).suffix.lower() in SCORE_SUFFIXES:
        return read_tunes(Path(path))
    data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    return read_tunes(Path("text.abc"), data)


@click.command()
@click.argument("file", type=click.Path(allow_dash=True, dir_okay=False))
@click.option(
    "--family",
    default=DEFAULT_FAMILY,
    show_default=True,
    help="Model family whose patching to show (sets max patches), e.g. clamp-s-512.",
)
@click.option("--ids", is_flag=True, help="Print patch ids instead of decoded patches.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per tune.")
def patch(file: str, family: str, ids: bool, as_json: bool) -> None:
    """Show each tune's cleaned ABC and its bar patches, as the model sees them.

    FILE is a score (.abc/.mxl/.musicxml/.xml/.mid, converted to ABC as `clamp similar` converts it),
    or - for ABC on stdin.

    \b
    clamp patch tunes.abc            # decoded patches, one per line
    clamp patch score.mxl --family clamp-s-512
    clamp patch tunes.abc --ids --json
    """
    try:
        max_patches = load_family(family)["music"]["max_patches"]
        tunes = read_score(file)
    except (ValueError, OSError) as err:  # unknown family, unreadable or unconvertible score
        raise click.ClickException(str(err)) from err
    for i, tune in enumerate(tunes):
        patches = prepare_music(tune.abc, max_patches)
        record = {
            "tune_index": i,
            "title": tune.meta.get("title"),
            "n_patches": len(patches),
            "filtered_abc": abc_filter(tune.abc),
            "patches": patches.tolist() if ids else decode_patches(patches),
        }
        if as_json:
            click.echo(json.dumps(record))
            continue
        click.echo(f"# tune {i}: {record['title'] or '(untitled)'} — {len(patches)} patches")
        for n, (text, row) in enumerate(zip(record["patches"], patches, strict=True)):
            click.echo(f"{n:4d}  {'<EOS patch>' if row[0] == EOS_ID else text}")
