"""Standard ABC -> the interleaved ABC that CLaMP 2 / CLaMP 3 read (clamp2-3-spec §10.2).

Interleaved ABC puts bar i of every voice on line i (`[V:1]…|[V:2]…|`), so a patch is one voice's bar
and all voices of a moment sit side by side. The rewrite is the official `batch_interleaved_abc.py`'s
sequence of abctoolkit calls (spec: pinned 0.0.4; we run 0.0.6, which gave identical files on every
input the spec tried). One addition: hand-written single-voice ABC has no bare `V:1` line, which the
official script needs (it fails on such files); we insert one before the body, as the spec suggests.
"""

from __future__ import annotations

import re

# Lines the official script drops before interleaving: titles, composer, words, lyrics, transcriber, MIDI.
DROPPED_FIELDS = ["X:", "T:", "C:", "W:", "w:", "Z:", "%%MIDI"]
_FIELD_LINE = re.compile(r"^[A-Za-z]:")
_VOICE_LINE = re.compile(r"^V:\s*\S")


class InterleaveError(ValueError):
    """ABC that the official interleaving rejects (voices of unequal bar counts, no tune body, ...)."""


def _lines(abc: str) -> list[str]:
    """Non-blank lines, each ending in a newline as `readlines()` of a text-mode file gives them."""
    text = abc.replace("\r\n", "\n").replace("\r", "\n")
    return [line + "\n" for line in text.split("\n") if line.strip()]


def with_first_voice(lines: list[str]) -> list[str]:
    """Insert a bare `V:1` line before the body of ABC that declares no voice (single-voice folk ABC)."""
    if any(line.strip() == "V:1" for line in lines) or any(_VOICE_LINE.match(line) for line in lines):
        return lines
    keys = [i for i, line in enumerate(lines) if line.startswith("K:")]
    at = keys[0] + 1 if keys else 0
    return lines[:at] + ["V:1\n"] + lines[at:]


def _drop_quotes_with_bar_lines(lines: list[str], quote_re: str, bar_lines: list[str]) -> list[str]:
    """Delete escaped quotes, and quoted texts that hold a bar line, from music lines (official quirk kept:
    a line whose quotes are cut is rebuilt from the original, so its escaped quotes come back)."""
    out = list(lines)
    for i, line in enumerate(lines):
        if _FIELD_LINE.search(line) or line.startswith("%"):
            continue
        out[i] = line.replace('\\"', "")
        for quoted in re.findall(quote_re, line):
            if any(bar in quoted for bar in bar_lines):
                line = line.replace(quoted, "")
                out[i] = line
    return out


def interleave_abc(abc: str) -> str:
    """Standard ABC (e.g. xml2abc's output) -> interleaved ABC, one line per bar index across voices."""
    from abctoolkit.rotate import rotate_abc
    from abctoolkit.utils import (
        Barlines,
        Quote_re,
        remove_bar_no_annotations,
        remove_information_field,
        strip_empty_bars,
    )

    lines = remove_information_field(abc_lines=with_first_voice(_lines(abc)), info_fields=DROPPED_FIELDS)
    try:
        lines = remove_bar_no_annotations(lines)
        lines = _drop_quotes_with_bar_lines(lines, Quote_re, Barlines)
        stripped, _ = strip_empty_bars(lines)
        if stripped is None:
            raise InterleaveError("its voices have different numbers of bars")
        rotated = rotate_abc(stripped)
    except InterleaveError:
        raise
    except Exception as exc:  # abctoolkit raises bare Exceptions, IndexErrors and KeyErrors on odd input
        raise InterleaveError(f"abctoolkit could not interleave it: {exc or type(exc).__name__}") from exc
    if rotated is None:
        raise InterleaveError("abctoolkit could not rotate its voices")
    return "".join(rotated)
