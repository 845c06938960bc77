"""Canonical metadata from raw ABC headers: one spelling per key, meter and tune type, for filters and facets.

ABC writes one key many ways (`Em`, `Emin`, `E minor`, `K: EM % comment`) and a meter as `C` or `4/4`;
the index stores the canonical form beside the raw header (which stays in the item's `meta`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import PurePosixPath

# Fields stored in canonical form, in the items table's column order.
CANONICAL_FIELDS = ("title", "composer", "origin", "rhythm", "key", "meter", "collection")

# ABC 2.1 §3.1.14: case is ignored and only the first three letters of a mode count; `m` alone is minor.
_MODES = {
    "maj": "major",
    "ion": "major",
    "min": "minor",
    "aeo": "minor",
    "dor": "dorian",
    "phr": "phrygian",
    "lyd": "lydian",
    "mix": "mixolydian",
    "loc": "locrian",
}
# Words that may follow the tonic without naming a mode (clefs and K: options): the key is then major.
_NOT_MODES = re.compile(
    r"(treble|bass|alto|tenor|baritone|soprano|mezzo|perc|none|clef|middle|transpose|octave|staff|t$)",
    re.IGNORECASE,
)
_KEY = re.compile(r"(?P<tonic>[A-G])(?P<accidental>[#b]?)\s*(?P<word>[A-Za-z]*)(?P<rest>.*)", re.IGNORECASE)
_METER = re.compile(r"\(?\d+(?:\s*\+\s*\d+)*\)?\s*/\s*\d+")
_COMMENT = re.compile(r"(?<!\\)%.*")


def clean_text(value: str | None) -> str | None:
    """A header value without its `%` comment, runs of spaces, or the stray `]` that ends Essen's fields."""
    if value is None:
        return None
    text = " ".join(_COMMENT.sub("", value).replace("\\%", "%").split())
    if text.endswith("]") and "[" not in text:
        text = text[:-1].rstrip()
    return text or None


def canonical_key(value: str | None) -> str | None:
    """`K:` as "TONIC mode" ("E minor", "D major", "A dorian"); "none", "highland pipes"; None if unreadable.

    Clefs and options after the key (`A min bass`, `E phr -8va`, `G clef=bass`) are ignored; explicit
    accidentals (`D exp ^f`) leave the tonic alone, mode unknown.
    """
    text = clean_text(value)
    if text is None:
        return None
    if text.lower() == "none":
        return "none"
    if text.upper() == "HP":
        return "highland pipes"
    m = _KEY.fullmatch(text)
    if m is None:
        return None
    tonic = m.group("tonic").upper() + m.group("accidental")
    word, rest = m.group("word"), m.group("rest").lstrip()
    if not word or rest.startswith("=") or _NOT_MODES.match(word):
        return f"{tonic} major"  # `K:G`, `K:G m=C` (an option, not a mode), `K:G bass`
    if word.lower() == "m":
        return f"{tonic} minor"
    if word[:3].lower() == "exp":
        return tonic
    mode = _MODES.get(word[:3].lower()) if len(word) >= 3 else None
    return None if mode is None else f"{tonic} {mode}"  # `Bn`, `Es`: not ABC, left to raw.key


def canonical_meter(value: str | None) -> str | None:
    """`M:` as a fraction: `C` is 4/4, `C|` 2/2; "none" for free meter (`none`, Essen's `FREI4/4`)."""
    text = clean_text(value)
    if text is None:
        return None
    if text.lower() == "none" or text.lower().startswith("frei"):
        return "none"
    if text in ("C", "C|"):
        return "4/4" if text == "C" else "2/2"
    if _METER.fullmatch(text):
        return re.sub(r"\s+", "", text)
    return text


def canonical_value(field: str, value: str) -> str:
    """A filter value read the way the field is stored (`key = Em` finds "E minor"); as given otherwise."""
    canonical = {"key": canonical_key, "meter": canonical_meter, "rhythm": _rhythm}.get(field)
    return (canonical(value) or value) if canonical else value


def canonical_fields(meta: Mapping[str, str], source: str | None) -> dict[str, str | None]:
    """CANONICAL_FIELDS of one tune from its raw header fields (`meta`) and the file it came from.

    `collection` is a `collection` field of the tune's row (tables), else the folder its file lives in
    (music21's corpus: essenFolksong, oneills1850, ryansMammoth...): B: and S: name a book with a page or
    tune number (1,851 distinct B: values in music21's corpus), too fine to group tunes by.
    """
    folder = PurePosixPath(source).parent.name or None if source else None
    return {
        "title": clean_text(meta.get("title")),
        "composer": clean_text(meta.get("composer")),
        "origin": clean_text(meta.get("origin")),
        "rhythm": _rhythm(meta.get("rhythm")),
        "key": canonical_key(meta.get("key")),
        "meter": canonical_meter(meta.get("meter")),
        "collection": clean_text(meta.get("collection")) or folder,
    }


def _rhythm(value: str | None) -> str | None:
    """R: in lower case: `Reel`, `reel` and `REEL` are one tune type."""
    text = clean_text(value)
    return None if text is None else text.lower()
