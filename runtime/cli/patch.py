"""`clamp patch`: show exactly what the music encoder sees of each tune."""

from __future__ import annotations

import json
import sys

import click

from runtime.model.families import load_family
from runtime.music.abc import Tune, split_tunes
from runtime.music.formats import MIDI_SUFFIXES
from runtime.music.profiles import Profile, profile_of


def read_text(path: str) -> str:
    """A file's text ('-' for stdin), decoded as UTF-8 with a Latin-1 fallback (old ABC collections)."""
    data = sys.stdin.buffer.read() if path == "-" else open(path, "rb").read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


@click.command()
@click.argument("file", type=click.Path(allow_dash=True, dir_okay=False))
@click.option(
    "--family",
    default="clamp-s-512",
    show_default=True,
    help="Model family: sets the preprocessing (CLaMP 1 bar patches or M3 patches) and the patch limit.",
)
@click.option("--ids", is_flag=True, help="Print patch ids instead of decoded patches.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per tune.")
def patch(file: str, family: str, ids: bool, as_json: bool) -> None:
    """Show each tune's cleaned ABC and its patches, as the model sees them.

    \b
    clamp patch tunes.abc            # decoded patches, one per line
    clamp patch tunes.abc --ids --json
    clamp patch tune.mid --family clamp3-c2 --ids --json   # MIDI as MTF, M3 patches
    """
    spec = load_family(family)
    profile, max_patches = profile_of(spec), spec["music"]["max_patches"]
    try:
        pieces = read_pieces(file, profile)
        records = [(tune, text, profile.patchilize(text, max_patches)) for tune, text in pieces]
    except ValueError as exc:  # not patchable as this family reads music: say why, exit 1
        raise click.ClickException(f"{file}: {exc}") from exc
    for i, (tune, model_text, patches) in enumerate(records):
        record = {
            "tune_index": i,
            "title": None if tune is None else tune.meta.get("title"),
            "n_patches": len(patches),
            "filtered_abc": model_text,
            "patches": patches.tolist() if ids else profile.decode(patches),
        }
        if as_json:
            click.echo(json.dumps(record))
            continue
        click.echo(f"# tune {i}: {record['title'] or '(untitled)'} — {len(patches)} patches")
        for n, (text, row) in enumerate(zip(record["patches"], patches, strict=True)):
            click.echo(f"{n:4d}  {profile.frame_label(row) or text}")


def read_pieces(file: str, profile: Profile) -> list[tuple[Tune | None, str]]:
    """Each tune of the file with the text the profile patches (MIDI read natively where it can be)."""
    if profile.midi_text is not None and file.lower().endswith(MIDI_SUFFIXES):
        data = sys.stdin.buffer.read() if file == "-" else open(file, "rb").read()
        return [(None, profile.midi_text(data))]
    text = read_text(file)
    tunes = split_tunes(text) or ([] if not text.strip() else [None])
    return [(tune, profile.model_text(text if tune is None else tune.abc)) for tune in tunes]
