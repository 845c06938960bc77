"""MIDI -> MTF ("MIDI Text Format"), the text CLaMP 2 / CLaMP 3 read MIDI as (clamp2-3-spec §10.3).

One line `ticks_per_beat N`, then one line per message of mido's merged track: the values of the
message's dict in order (delta ticks, not seconds), `str`-ed, space-joined, escaped with Python's
`unicode_escape`. The generations differ only in what they drop: a MIDI family's config names its filter.
"""

from __future__ import annotations

import io
from pathlib import Path

# Meta messages both generations drop with --m3_compatible: names, texts and lyrics, never music.
_TEXT_META = frozenset(
    ["text", "copyright", "track_name", "instrument_name", "lyrics", "marker", "cue_marker", "device_name"]
)
MTF_DROPPED: dict[str, frozenset[str]] = {
    "clamp3": _TEXT_META,
    "clamp2": _TEXT_META | {"sequencer_specific", "sysex"},
}


class MTFError(ValueError):
    """A file mido cannot read as MIDI."""


def message_line(message) -> str:
    """One mido message as its MTF line: dict values in order, `str`-ed, space-joined, unicode-escaped."""
    values = " ".join(str(value) for value in message.dict().values())
    return values.encode("unicode_escape").decode("ascii")


def midi_to_mtf(source: bytes | str | Path, dropped: frozenset[str] = MTF_DROPPED["clamp3"]) -> str:
    """A MIDI file (bytes or a path) -> its MTF text, without a trailing newline."""
    import mido  # the [formats] extra; only MIDI input needs it

    try:
        if isinstance(source, bytes):
            midi = mido.MidiFile(file=io.BytesIO(source))
        else:
            midi = mido.MidiFile(str(source))
        messages = list(midi.merged_track)
    except (OSError, EOFError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise MTFError(f"not a readable MIDI file: {exc}") from exc
    lines = [f"ticks_per_beat {midi.ticks_per_beat}"]
    lines += [message_line(m) for m in messages if m.type not in dropped]
    return "\n".join(lines)
