"""CLaMP 1 bar patching: ABC text -> [P, 64] ids in [0, 97], exactly as the released `MusicPatchilizer`.

Each bar of the body (content + its closing bar line) and each header line becomes one patch of 64
characters: printable ASCII 32..126 -> 1..95, anything else -> 0 (PAD), EOS (97) right after the last
character of a patch shorter than 64, and one all-EOS patch at the end; then head truncation.
"""

from __future__ import annotations

import re

import numpy as np
from unidecode import unidecode

PATCH_LENGTH = 64
N_CLASSES = 98
PAD_ID, MASK_ID, EOS_ID = 0, 96, 97

BAR_DELIMITERS = ("|:", "::", ":|", "[|", "||", "|]", "|")
_BAR_SPLIT = re.compile("(" + "|".join(map(re.escape, BAR_DELIMITERS)) + ")")

# Header fields CLaMP strips before patching (spec §2.2). Deviation from the released code: it lists
# 'G' without a colon; we drop only `G:` lines, so a music line starting with the note G survives.
_DROPPED_FIELDS = frozenset(
    ["A:", "B:", "C:", "D:", "F:", "G:", "H:", "N:", "O:", "R:", "r:", "S:", "T:", "W:", "w:", "X:", "Z:"]
)

# Byte value -> class id: printable ASCII maps to ord(c) - 31, everything else to PAD.
_CLASS_OF_BYTE = np.zeros(256, dtype=np.uint8)
_CLASS_OF_BYTE[32:127] = np.arange(1, 96, dtype=np.uint8)


def abc_filter(abc: str) -> str:
    """Drop the header lines CLaMP never sees (title, composer, origin, lyrics...) and trailing % comments."""
    out = []
    for line in abc.split("\n"):
        is_score = line.startswith("%%score")
        if line[:2] in _DROPPED_FIELDS or (line.startswith("%") and not is_score):
            continue
        if "%" in line and not is_score:
            line = line[: line.rindex("%")][:-1]
        out.append(line + "\n")
    return "".join(out)


def split_bars(body: str) -> list[str]:
    """Bars of a body, each with its closing bar line; a leading bar line sticks to the first bar.

    As in CLaMP, text after the last bar line is dropped and a body without bar lines yields no bars.
    """
    items = [item for item in _BAR_SPLIT.split(body) if item]
    if len(items) > 1 and items[0] in BAR_DELIMITERS:
        items = [items[0] + items[1]] + items[2:]
    return [items[2 * i] + items[2 * i + 1] for i in range(len(items) // 2)]


def _is_header(line: str) -> bool:
    return len(line) > 1 and ((line[0].isalpha() and line[1] == ":") or line.startswith("%%score"))


def patch_strings(abc: str) -> list[str]:
    """The text of each patch (before the 64-character cut), in order, without the EOS patch."""
    if not abc.isascii():
        abc = unidecode(abc)
    patches: list[str] = []
    body: list[str] = []
    for line in abc.split("\n"):
        if _is_header(line):
            if body:
                patches.extend(split_bars("".join(body)))
                body = []
            patches.append(line)
        else:
            body.append(line)
    if body:
        patches.extend(split_bars("".join(body)))
    return patches


def encode_patches(strings: list[str], patch_length: int = PATCH_LENGTH) -> np.ndarray:
    """Patch strings -> uint8 ids [len(strings), patch_length], vectorised over all characters at once."""
    n = len(strings)
    if n == 0:
        return np.zeros((0, patch_length), dtype=np.uint8)
    cut = [s[:patch_length] for s in strings]
    padded = "".join(s.ljust(patch_length, "\0") for s in cut)
    raw = np.frombuffer(padded.encode("latin-1", "replace"), np.uint8)
    ids = _CLASS_OF_BYTE[raw].reshape(n, patch_length)
    lengths = np.fromiter((len(s) for s in cut), dtype=np.int64, count=n)
    rows = np.flatnonzero((lengths > 0) & (lengths < patch_length))
    ids[rows, lengths[rows]] = EOS_ID
    return ids


def patchilize(abc: str, max_patches: int | None, add_eos_patch: bool = True) -> np.ndarray:
    """Filtered ABC -> uint8 [P, 64] patch ids, the EOS patch appended, then the first `max_patches` kept."""
    strings = patch_strings(abc)
    # Head truncation keeps only the first max_patches: encoding the rest of a huge tune is wasted work.
    ids = encode_patches(strings if max_patches is None else strings[:max_patches])
    if add_eos_patch:
        ids = np.concatenate([ids, np.full((1, PATCH_LENGTH), EOS_ID, dtype=np.uint8)])
    return ids if max_patches is None else ids[:max_patches]


def clean_abc(abc: str) -> str:
    """The ABC text CLaMP 1 patches: carriage returns dropped, transliterated to ASCII, CLaMP's filter."""
    abc = abc.replace("\r", "")
    if not abc.isascii():
        abc = unidecode(abc)
    return abc_filter(abc)


def prepare_music(abc: str, max_patches: int | None) -> np.ndarray:
    """What the model sees of one tune: ASCII transliteration, CLaMP's filter, bar patches."""
    return patchilize(clean_abc(abc), max_patches)


def window_spans(n: int, size: int) -> tuple[list[tuple[int, int]], np.ndarray]:
    """CLaMP 2/3's windows over n items (clamp2-3-spec §12.4): starts 0, size, 2*size..., the last one
    replaced by the final `size` items; weights = the items each window adds (the last: the remainder).

    A piece that fits is one window of weight 1 (the official code multiplies and divides by n: <= 1.2e-7).
    """
    if n <= size:
        return [(0, n)], np.ones(1)
    starts = list(range(0, n - size, size)) + [n - size]
    weights = [size] * (len(starts) - 1) + [n - (len(starts) - 1) * size]
    return [(s, s + size) for s in starts], np.asarray(weights, dtype=np.float64)


def segments(patches: np.ndarray, max_patches: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Long pieces as windows of patches and their weights: average the windows' embeddings with them."""
    spans, weights = window_spans(len(patches), max_patches)
    return [patches[start:stop] for start, stop in spans], weights


def frame_label(row: np.ndarray) -> str | None:
    """ "<EOS patch>" for the all-EOS patch that ends a tune, None for a patch of text."""
    return "<EOS patch>" if row[0] == EOS_ID else None


def decode_patches(patches: np.ndarray) -> list[str]:
    """Patch ids back to text, one string per patch, stopping at the first PAD, MASK or EOS."""
    out = []
    for row in np.asarray(patches):
        stop = np.flatnonzero((row == PAD_ID) | (row >= MASK_ID))
        end = int(stop[0]) if len(stop) else len(row)
        out.append(bytes((row[:end] + 31).astype(np.uint8)).decode("ascii"))
    return out
