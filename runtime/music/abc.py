"""ABC files as tunes: split a multi-tune file into its X: records and read their header fields."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

# ABC 2.1 information fields that describe a tune (the `w:` lyrics lines are music, not metadata).
FIELD_NAMES: dict[str, str] = {
    "A": "area",
    "B": "book",
    "C": "composer",
    "D": "discography",
    "F": "file",
    "G": "group",
    "H": "history",
    "I": "instruction",
    "K": "key",
    "L": "unit",
    "M": "meter",
    "N": "notes",
    "O": "origin",
    "P": "parts",
    "Q": "tempo",
    "R": "rhythm",
    "S": "source",
    "T": "title",
    "W": "words",
    "X": "reference",
    "Z": "transcription",
}
_FIELD = re.compile(r"^([A-Za-z]):(.*)$")
_TUNE_START = re.compile(r"^X:", re.MULTILINE)


@dataclass(frozen=True)
class Tune:
    """One tune of an ABC file: its text, where it was, and its header fields by name."""

    index: int
    line: int
    abc: str
    meta: dict[str, str] = field(default_factory=dict)


def read_header(lines: list[str], defaults: dict[str, str] | None = None) -> dict[str, str]:
    """Header fields by name, up to and including the first K: line; repeats are joined with " / "."""
    meta = dict(defaults or {})
    own: set[str] = set()
    for line in lines:
        m = _FIELD.match(line)
        if not m or m.group(1) not in FIELD_NAMES:
            if line.strip() and not line.startswith("%") and not m:
                break  # music started without a K: field
            continue
        name, value = FIELD_NAMES[m.group(1)], m.group(2).strip()
        if value:
            meta[name] = f"{meta[name]} / {value}" if name in own and name in meta else value
            own.add(name)
        if name == "key":
            break
    return meta


def split_tunes(text: str) -> list[Tune]:
    """Split an ABC file into tunes at each `X:` line; file header fields become every tune's defaults."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    starts = [m.start() for m in _TUNE_START.finditer(text)]
    if not starts:
        return []
    defaults = read_header(text[: starts[0]].split("\n"))
    defaults.pop("key", None)
    tunes = []
    line_no = text.count("\n", 0, starts[0]) + 1
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(text)
        abc = text[start:end].rstrip() + "\n"
        tunes.append(Tune(index=i, line=line_no, abc=abc, meta=read_header(abc.split("\n"), defaults)))
        line_no += text.count("\n", start, end)
    return tunes


# Recorded in every shard: shards whose ids were derived another way cannot be resumed into.
ID_SCHEME = "sha256(realpath, tune index, abc)"


def source_path(path: str | Path) -> str:
    """A file's canonical source: its real path, so relative, absolute, ../x and symlink spellings agree.

    A path that is not a regular file once resolved (a broken or looping symlink, a FIFO, a link to a
    folder) keeps its own name, made absolute, so its error row names what the user has.
    """
    real = os.path.realpath(path)
    return Path(real if os.path.isfile(real) else os.path.abspath(path)).as_posix()


def tune_id(source: str, index: int, abc: str) -> str:
    """The stable id of a tune: derived from its canonical source (`source_path`), index and content.

    So reruns, resumes and other spellings of a path never duplicate a tune, and an edited tune gets a new id.
    """
    digest = hashlib.sha256(f"{source}\x00{index}\x00{abc}".encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:32]
