"""CLaMP 2 / CLaMP 3 M3 patching: interleaved ABC or MTF text -> [P, 64] ids in [0, 127] (clamp2-3-spec §11).

Unlike CLaMP 1's bar patches, each patch carries its own BOS (1) and EOS (2) ids, characters are their
ASCII codes, header lines keep their newline, consecutive MIDI messages of one type share a patch, and
every piece is framed by a BOS patch (64 x 1) and an EOS patch ([1] + 63 x 2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from unidecode import unidecode

PATCH_SIZE = 64
PAD_ID, BOS_ID, EOS_ID, MASK_ID = 0, 1, 2, 3
N_CLASSES = 128
BAR_TOKENS = ("|:", "::", ":|", "[|", "||", "|]", "|")
_BAR_SPLIT = re.compile("(" + "|".join(map(re.escape, BAR_TOKENS)) + ")")
MTF_FIRST_TOKEN = "ticks_per_beat"
MTF_MERGE_LIMIT = PATCH_SIZE - 2  # a merged patch's text must leave room for its BOS and EOS


class M3PatchError(ValueError):
    """Input the official M3Patchilizer cannot encode (it raises IndexError): an empty piece, or one
    whose last line is a lone bar line without a newline."""


@dataclass(frozen=True)
class M3Profile:
    """What differs between the generations: CLaMP 3 deletes `L:1/8\\n` inside encode, CLaMP 2 not."""

    drop_unit_eighth: bool


CLAMP2 = M3Profile(drop_unit_eighth=False)
CLAMP3 = M3Profile(drop_unit_eighth=True)


def split_lines(text: str) -> list[str]:
    """Maximal runs ending in a newline (kept), plus the trailing remainder; no empty strings."""
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def is_mtf(lines: list[str]) -> bool:
    """MTF when the first line's first space-separated token is `ticks_per_beat` (§11.2 step 4)."""
    return bool(lines) and lines[0].split(" ")[0] == MTF_FIRST_TOKEN


def _is_header(line: str) -> bool:
    return len(line) > 1 and ((line[0].isalpha() and line[1] == ":") or line.startswith("%%"))


def _line_bars(line: str) -> list[str]:
    """A body line's bars, each with its closing bar line; text after the last bar line is dropped."""
    pieces = [piece for piece in _BAR_SPLIT.split(line) if piece]
    if pieces and pieces[0] in BAR_TOKENS:
        if len(pieces) == 1:
            raise M3PatchError(f"a line that is only the bar line {line!r} cannot be patched (M3 raises)")
        pieces = [pieces[0] + pieces[1]] + pieces[2:]
    bars = [pieces[2 * i] + pieces[2 * i + 1] for i in range(len(pieces) // 2)]
    if bars:
        bars[-1] += "\n"
    return bars


def abc_patch_strings(lines: list[str]) -> list[str]:
    """ABC mode (§11.3): a header line is one patch with its newline; a body line gives one patch a bar."""
    patches: list[str] = []
    for line in lines:
        if _is_header(line):
            patches.append(line)
        else:
            patches.extend(_line_bars(line))
    return patches


def mtf_patch_strings(lines: list[str]) -> list[str]:
    """MTF mode (§11.4): consecutive messages of one type merge (tab-separated) while within 62 characters."""
    patches: list[str] = []
    current = ""
    for line in lines:
        kind, _, rest = line.partition(" ")
        if current and current.startswith(kind) and len(current) + len(rest) <= MTF_MERGE_LIMIT:
            current = current[:-1] + "\t" + rest
        else:
            if current:
                patches.append(current)
            current = line
    if current:
        patches.append(current)
    return patches


def patch_strings(text: str, profile: M3Profile = CLAMP3) -> list[str]:
    """The text of each patch, in order, without the BOS/EOS patches (normalisation of §11.2 included)."""
    if profile.drop_unit_eighth:
        text = text.replace("L:1/8\n", "")
    if not text.isascii():
        text = unidecode(text)
    lines = split_lines(text)
    if not lines:
        raise M3PatchError("an empty piece cannot be patched (M3 raises here)")
    return mtf_patch_strings(lines) if is_mtf(lines) else abc_patch_strings(lines)


def encode_patch_strings(strings: list[str]) -> np.ndarray:
    """Patch texts -> uint8 ids [n, 64]: BOS, the ASCII codes, EOS, cut to 64, right-padded with PAD."""
    framed = [(chr(BOS_ID) + s + chr(EOS_ID))[:PATCH_SIZE].ljust(PATCH_SIZE, chr(PAD_ID)) for s in strings]
    data = "".join(framed).encode("ascii", "replace")
    return np.frombuffer(data, dtype=np.uint8).reshape(len(strings), PATCH_SIZE).copy()


BOS_PATCH = np.full((1, PATCH_SIZE), BOS_ID, dtype=np.uint8)
EOS_PATCH = np.concatenate([[BOS_ID], np.full(PATCH_SIZE - 1, EOS_ID)]).astype(np.uint8)[None, :]


def m3_patchilize(text: str, profile: M3Profile = CLAMP3) -> np.ndarray:
    """Interleaved ABC or MTF -> uint8 [P, 64] framed by the BOS and EOS patches; never truncated (§12.4)."""
    return np.concatenate([BOS_PATCH, encode_patch_strings(patch_strings(text, profile)), EOS_PATCH])


def frame_label(row: np.ndarray) -> str | None:
    """ "<BOS patch>" / "<EOS patch>" for the frame patches, None for a patch of text."""
    if (row == BOS_PATCH[0]).all():
        return "<BOS patch>"
    return "<EOS patch>" if (row == EOS_PATCH[0]).all() else None


def decode_m3_patches(patches: np.ndarray) -> list[str]:
    """Ids back to each patch's text (between its BOS and its EOS or first PAD); the frame patches give ''."""
    out = []
    for row in np.asarray(patches, dtype=np.uint8):
        body = row[1:] if row[0] == BOS_ID else row
        stop = np.flatnonzero((body == PAD_ID) | (body == EOS_ID) | (body == BOS_ID))
        end = int(stop[0]) if len(stop) else len(body)
        out.append(bytes(body[:end]).decode("ascii"))
    return out
