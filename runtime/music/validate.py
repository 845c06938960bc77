"""The one rule for "this is not ABC music", applied wherever a tune comes in (embed, CLI, HTTP, training).

A tune is music when its text holds no control characters but tab, newline, vertical tab, form feed and
carriage return (else it is binary data, e.g. an executable named `x.abc`), and CLaMP's bar patching finds
at least one bar in it: CLaMP encodes music bar by bar, and a tune without a bar line would be embedded
from its header lines alone. A `K:` field is not required: tunes without one (`|abc|def|`) still patch into
bars, and CLaMP's own corpora hold some.
"""

from __future__ import annotations

import re

from runtime.music.patching import abc_filter, patch_strings

_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
_HEADER_PATCH = re.compile(r"^([A-Za-z]:|%%score)")
# Bars are found in a prefix first: a bar found there is a bar of the whole tune, and patching a 10 MB
# tune in full only to learn that it has bars costs seconds.
_PREFIX_CHARS = 1 << 16
EXCERPT_CHARS = 40  # the longest quotation of the input a message holds (its repr, escapes included)


class NotMusicError(ValueError):
    """Input that is not ABC music (binary data, or no bar line); the message says why and shows its start."""


def n_bar_patches(abc: str) -> int:
    """How many bar patches (not header patches) CLaMP makes of this tune."""
    return sum(1 for s in patch_strings(abc_filter(abc.replace("\r", ""))) if not _HEADER_PATCH.match(s))


def excerpt(text: str, at: int = 0) -> str:
    """A short, printable quotation of text from position `at`, for messages that must not echo the input."""
    piece = text[at : at + EXCERPT_CHARS]
    while len(repr(piece)) > EXCERPT_CHARS:
        piece = piece[:-1]
    return repr(piece) + ("..." if len(text) > at + len(piece) else "")


def music_problem(abc: str, min_bars: int = 1) -> str | None:
    """Why `abc` is not ABC music (with an excerpt of it), or None when it is."""
    control = _CONTROL.search(abc)
    if control:
        at = control.start()
        return (
            f"not ABC music: binary data (control character {ord(control.group()):#04x} at character {at}) "
            f"near {excerpt(abc, max(0, at - 10))}"
        )
    bars = n_bar_patches(abc[:_PREFIX_CHARS])
    if bars < min_bars and len(abc) > _PREFIX_CHARS:
        bars = n_bar_patches(abc)
    if bars < min_bars:
        need = "no bar line (|) closes a bar" if min_bars == 1 else f"fewer than {min_bars} bars"
        return f"no music: {need} in {excerpt(abc)}; CLaMP encodes music bar by bar"
    return None


def require_music(abc: str, where: str) -> str:
    """`abc` itself when it is music; else NotMusicError saying where it came from (file, tune, input)."""
    problem = music_problem(abc)
    if problem:
        raise NotMusicError(f"{where}: {problem}")
    return abc
