"""The one rule for "this is not ABC music", applied wherever a tune comes in (embed, CLI, HTTP, training).

A tune is music when its text holds no control characters but tab, newline, vertical tab, form feed and
carriage return (else it is binary data, e.g. an executable named `x.abc`), and CLaMP's bar patching finds
at least one bar in it: CLaMP encodes music bar by bar, and a tune without a bar line would be embedded
from its header lines alone. A `K:` field is not required: tunes without one (`|abc|def|`) still patch into
bars, and CLaMP's own corpora hold some. MTF text (MIDI as CLaMP 2/3 read it natively) is music by its
messages, not by bars.
"""

from __future__ import annotations

import re

from runtime.music.m3 import MTF_FIRST_TOKEN
from runtime.music.patching import abc_filter, patch_strings
from runtime.search.limits import excerpt

_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
_HEADER_PATCH = re.compile(r"^([A-Za-z]:|%%score)")
# Printable ASCII but the characters of bar lines (| : [ ]) and comments (%): has_sure_bar's test.
_NOT_BAR_LINE = re.compile(r"[ -$&-9;-Z\\^-{}~]")
# Where has_sure_bar says no, bars are counted in a prefix first: a bar of a prefix is a bar of the whole
# tune, and patching a 10 MB tune in full only to learn that it has bars costs seconds.
_PREFIX_CHARS = 1 << 16
QUOTED_CHARS = 40  # how much of the input a reason quotes (as a repr: control characters escaped)


class NotMusicError(ValueError):
    """Input that is not ABC music (binary data, or no bar line); the message says why and shows its start."""


def n_bar_patches(abc: str) -> int:
    """How many bar patches (not header patches) CLaMP makes of this tune."""
    return sum(1 for s in patch_strings(abc_filter(abc.replace("\r", ""))) if not _HEADER_PATCH.match(s))


def has_sure_bar(abc: str) -> bool:
    """A quick yes (never a wrong one) to "does patching find a bar?": an ASCII body line without % on which
    a character that is no part of a bar line comes before a `|`. Usually the first line after K: says yes.
    """
    for line in abc.replace("\r", "").split("\n"):
        if "|" in line and line[1:2] != ":" and "%" not in line and line.isascii():
            if _NOT_BAR_LINE.search(line, 0, line.rindex("|")):
                return True
    return False


def music_problem(abc: str, min_bars: int = 1) -> str | None:
    """Why `abc` is not ABC music (with an excerpt of it), or None when it is."""
    control = _CONTROL.search(abc)
    if control:
        at = control.start()
        return (
            f"not ABC music: binary data (control character {ord(control.group()):#04x} at character {at}) "
            f"near {excerpt(abc[max(0, at - 8) :], QUOTED_CHARS // 2)!r}"
        )
    if abc.startswith(MTF_FIRST_TOKEN + " "):  # MIDI read natively (CLaMP 2/3): messages, not bars
        return None
    if min_bars == 1 and has_sure_bar(abc):
        return None
    if n_bar_patches(abc[:_PREFIX_CHARS]) >= min_bars:
        return None
    if len(abc) > _PREFIX_CHARS and n_bar_patches(abc) >= min_bars:
        return None
    need = "no bar line (|) closes a bar" if min_bars == 1 else f"fewer than {min_bars} bars"
    return f"no music: {need} in {excerpt(abc, QUOTED_CHARS)!r}; CLaMP encodes music bar by bar"


def require_music(abc: str, where: str) -> str:
    """`abc` itself when it is music; else NotMusicError saying where it came from (file, tune, input)."""
    problem = music_problem(abc)
    if problem:
        raise NotMusicError(f"{where}: {problem}")
    return abc
