"""The same tune written differently: the notation variants the default model must embed alike.

Textual variants rewrite a tune's ABC as another person or program would have written the same music
(header order, key and meter spelling, chord symbols, line breaking, unit length); the converter round
trips (MusicXML, MIDI) come from training/roundtrip.py's cache. Training draws them as augmentations;
`clamp eval` measures how far each one moves a tune's vector.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from fractions import Fraction

from runtime.music.lengths import length_of, length_text

_FIELD = re.compile(r"^([A-Za-z]):(.*)$")
_MODE_WORDS = {"": "major", "m": "minor", "min": "minor", "dor": "dorian", "mix": "mixolydian"}
_KEY = re.compile(r"^(K:\s*)([A-G][#b]?)(m|min|dor|mix|)\s*$", re.MULTILINE | re.IGNORECASE)
_CHORD_SYMBOL = re.compile(r'"[^"]*"')
# A note or rest and its length, outside chord symbols, decorations and inline fields.
_LENGTHS = re.compile(
    r'(?P<skip>"[^"]*"|![^!\n]*!|\[[A-Za-z]:[^\]]*\])|(?P<note>(?:\^{1,2}|_{1,2}|=)?[A-Ga-gzx][,\']*)(?P<len>\d*/*\d*)'
)
BAR = re.compile(r"(:*\|[\]|:]*\d*)")


def _split(abc: str) -> tuple[list[str], list[str]]:
    """Header lines (up to and including K:) and the body lines."""
    lines = abc.rstrip("\n").split("\n")
    for i, line in enumerate(lines):
        if line.startswith("K:"):
            return lines[: i + 1], lines[i + 1 :]
    return [], lines


def header_order(abc: str) -> str:
    """The header fields between X:/T: and K: in reverse order (M: and L: swapped, Q: first...)."""
    header, body = _split(abc)
    if len(header) < 2:
        return abc
    fixed = [line for line in header[:-1] if line[:2] in ("X:", "T:")]
    moved = [line for line in header[:-1] if line[:2] not in ("X:", "T:")]
    return "\n".join([*fixed, *reversed(moved), header[-1], *body]) + "\n"


def key_spelling(abc: str) -> str:
    """`K:Em` written `K:E minor`, `K:G` `K:G major`, `K:Ador` `K:A dorian`."""
    return _KEY.sub(lambda m: f"{m.group(1)}{m.group(2)} {_MODE_WORDS[m.group(3).lower()]}", abc)


def meter_symbol(abc: str) -> str:
    """`M:4/4` written `M:C` and `M:2/2` written `M:C|` (and back)."""
    swap = {"4/4": "C", "2/2": "C|", "C": "4/4", "C|": "2/2"}
    return re.sub(
        r"^M:\s*(4/4|2/2|C\||C)\s*$", lambda m: f"M:{swap[m.group(1)]}", abc, count=1, flags=re.MULTILINE
    )


def no_chords(abc: str) -> str:
    """Chord symbols and annotations ("Am", "^Andante") removed."""
    header, body = _split(abc)
    return "\n".join([*header, *(_CHORD_SYMBOL.sub("", line) for line in body)]) + "\n"


def bar_per_line(abc: str) -> str:
    """The body rewrapped to one bar per line (field lines such as V: and P: stay where they are)."""
    header, body = _split(abc)
    lines = []
    for line in body:
        if _FIELD.match(line):
            lines.append(line)
            continue
        parts = BAR.split(line.rstrip("\\ "))
        lines += [b for i in range(0, len(parts), 2) if (b := "".join(parts[i : i + 2]).strip())]
    return "\n".join([*header, *lines]) + "\n"


def unit_rescale(abc: str, factor: int = 2) -> str:
    """L: divided by `factor`, every note and rest length multiplied by it: the same durations."""
    header, body = _split(abc)
    unit = next((Fraction(line[2:].strip()) for line in header if line.startswith("L:")), None)
    if unit is None:
        return abc
    header = [f"L:{unit / factor}" if line.startswith("L:") else line for line in header]

    def scale(m: re.Match) -> str:
        if m.group("skip"):
            return m.group(0)
        return m.group("note") + length_text(length_of(m.group("len")) * factor)

    return (
        "\n".join([*header, *(line if _FIELD.match(line) else _LENGTHS.sub(scale, line) for line in body)])
        + "\n"
    )


TEXTUAL: dict[str, Callable[[str], str]] = {
    "header order": header_order,
    "key spelling": key_spelling,
    "meter symbol": meter_symbol,
    "chord symbols removed": no_chords,
    "one bar per line": bar_per_line,
    "unit length halved": unit_rescale,
}
ROUND_TRIPS = {"MusicXML round trip": "musicxml", "MIDI round trip": "midi"}


def variants_of(abc: str, round_trips: dict[str, str | None] | None = None) -> dict[str, str]:
    """Every variant of a tune that differs from it: textual ones, and its cached round trips."""
    found = {name: make(abc) for name, make in TEXTUAL.items()}
    for name, kind in ROUND_TRIPS.items():
        if round_trips and round_trips.get(kind):
            found[name] = round_trips[kind]
    return {name: text for name, text in found.items() if text != abc}
