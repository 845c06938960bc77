"""`clamp patch`: show exactly what the music encoder sees of each tune."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from runtime.model.families import load_family
from runtime.music.abc import Tune
from runtime.music.formats import SCORE_SUFFIXES, read_tunes
from runtime.music.profiles import Profile, profile_of

DEFAULT_FAMILY = "default"  # the default model's family (what `clamp export` exports without --family)


def read_score(path: str, profile: Profile) -> list[Tune]:
    """The tunes of a score file, read (and converted) as `clamp similar` reads it for this profile.

    Stdin ('-') and files of other suffixes are ABC text, decoded as UTF-8 with a Latin-1 fallback.
    """
    if path != "-" and Path(path).suffix.lower() in SCORE_SUFFIXES:
        return read_tunes(Path(path), profile=profile)
    data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    return read_tunes(Path("text.abc"), data)


@click.command()
@click.argument("file", type=click.Path(allow_dash=True, dir_okay=False))
@click.option(
    "--family",
    default=DEFAULT_FAMILY,
    show_default=True,
    help="Model family: sets the preprocessing (CLaMP 1 bar patches or M3 patches) and the patch limit.",
)
@click.option("--ids", is_flag=True, help="Print patch ids instead of decoded patches.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per tune.")
def patch(file: str, family: str, ids: bool, as_json: bool) -> None:
    """Show each tune's cleaned ABC and its patches, as the model sees them.

    FILE is a score (.abc/.mxl/.musicxml/.xml/.mid, read as `clamp similar` reads it for the family:
    converted to ABC, or MIDI as MTF for CLaMP 2/3), or - for ABC on stdin.

    \b
    clamp patch tunes.abc            # decoded patches, one per line
    clamp patch score.mxl --family clamp-s-512
    clamp patch tunes.abc --ids --json
    clamp patch tune.mid --family clamp3-c2 --ids --json   # MIDI as MTF, M3 patches
    """
    try:
        spec = load_family(family)
        profile, max_patches = profile_of(spec), spec["music"]["max_patches"]
        pieces = read_pieces(file, profile)
        records = [(tune, text, profile.patchilize(text, max_patches)) for tune, text in pieces]
    except (ValueError, OSError) as err:  # unknown family, unreadable score, not patchable by this family
        raise click.ClickException(f"{file}: {err}") from err
    for i, (tune, model_text, patches) in enumerate(records):
        record = {
            "tune_index": i,
            "title": tune.meta.get("title"),
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


def read_pieces(file: str, profile: Profile) -> list[tuple[Tune, str]]:
    """Each tune of the file with the text the profile patches (MIDI read natively where it can be)."""
    return [(tune, profile.model_text(tune.abc)) for tune in read_score(file, profile)]
