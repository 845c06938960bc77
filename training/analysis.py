"""Simple analysis of an ABC melody (key and mode, range, note density, tempo) for text synthesis."""

from __future__ import annotations

import re
from dataclasses import dataclass

LETTERS = "CDEFGAB"
_SEMITONE = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_FIFTHS_OF_MAJOR = {
    "Cb": -7, "Gb": -6, "Db": -5, "Ab": -4, "Eb": -3, "Bb": -2, "F": -1, "C": 0,
    "G": 1, "D": 2, "A": 3, "E": 4, "B": 5, "F#": 6, "C#": 7,
}  # fmt: skip
# Position of each mode's tonic relative to the major key with the same signature (fifths, diatonic steps).
_MODES = {
    "major": (0, 0), "mixolydian": (-1, 4), "dorian": (-2, 1), "minor": (-3, 5),
    "phrygian": (-4, 2), "lydian": (1, 3), "locrian": (-5, 6),
}  # fmt: skip
_MODE_ALIASES = {
    "": "major", "maj": "major", "ion": "major", "m": "minor", "min": "minor", "aeo": "minor",
    "mix": "mixolydian", "dor": "dorian", "phr": "phrygian", "lyd": "lydian", "loc": "locrian",
}  # fmt: skip
# Modes a final note reveals under a plain major signature, by the final's step above the written tonic.
FOLK_MODES = {0: "major", 5: "minor", 1: "dorian", 4: "mixolydian"}
MAJOR_MINOR = {0: "major", 5: "minor"}
_KEY = re.compile(r"^\s*([A-Ha-h])([#b]?)\s*([A-Za-z]*)")
_NOTE = re.compile(r"([_^=]*)([A-Ga-g])([,']*)")
_NOT_NOTES = re.compile(r'"[^"]*"|![^!]*!|\+[^+]*\+|\{[^}]*\}|\[[A-Za-z]:[^\]]*\]|%.*')
_FIELD_LINE = re.compile(r"^[A-Za-z]:")
_BAR = re.compile(r"\|+|:\||\|:|::")
_TEMPO = re.compile(r"(\d+)\s*/\s*(\d+)\s*=\s*(\d+)")


@dataclass(frozen=True)
class Key:
    """A key as musicians name it: tonic with accidental ("F#") and mode ("minor")."""

    tonic: str
    mode: str

    @property
    def name(self) -> str:
        return f"{self.tonic} {self.mode}"


def signature_key(k_field: str) -> tuple[int, str, str] | None:
    """K: field -> (fifths of its signature, written tonic, written mode); None for K:none, K:Hp..."""
    m = _KEY.match(k_field)
    if not m or k_field.strip().lower().startswith(("none", "hp")):
        return None
    letter, accidental, mode_word = m.group(1).upper(), m.group(2), m.group(3).lower()
    letter = "B" if letter == "H" else letter  # German H
    if not accidental and letter in "AE" and mode_word.startswith("s"):  # German Es, As
        accidental, mode_word = "b", mode_word[1:]
    mode = _MODE_ALIASES.get(mode_word[:3], _MODE_ALIASES.get(mode_word, "major"))
    tonic = letter + accidental
    if tonic not in _FIFTHS_OF_MAJOR or letter not in LETTERS:
        return None
    return _FIFTHS_OF_MAJOR[tonic] + _MODES[mode][0], tonic, mode


def _signature_accidental(letter: str, fifths: int) -> str:
    sharps, flats = "FCGDAEB", "BEADGCF"
    if fifths > 0 and letter in sharps[:fifths]:
        return "#"
    if fifths < 0 and letter in flats[:-fifths]:
        return "b"
    return ""


def body_text(abc: str) -> str:
    """The music after the K: line, without field lines, lyrics, comments, chord symbols, decorations."""
    lines = abc.split("\n")
    start = next((i + 1 for i, line in enumerate(lines) if line.startswith("K:")), 0)
    music = [line for line in lines[start:] if not _FIELD_LINE.match(line) and not line.startswith("%")]
    return _NOT_NOTES.sub(" ", "\n".join(music))


def pitches(body: str) -> list[tuple[str, int]]:
    """Each note as (letter, approximate MIDI pitch ignoring accidentals), in order."""
    out = []
    for _, letter, octave in _NOTE.findall(body):
        midi = 60 + _SEMITONE[letter.upper()] + (12 if letter.islower() else 0)
        midi += 12 * (octave.count("'") - octave.count(","))
        out.append((letter.upper(), midi))
    return out


def tune_key(k_field: str, final_letter: str | None, final_modes: dict[int, str] = FOLK_MODES) -> Key | None:
    """The key: an explicit mode in K: is trusted; a plain major K: is read through the final note.

    None when the final note fits none of `final_modes` (a melody ending on an unexplained degree).
    """
    parsed = signature_key(k_field)
    if parsed is None:
        return None
    fifths, tonic, mode = parsed
    if mode != "major" or final_letter is None:
        return Key(tonic, mode)
    final_mode = final_modes.get((LETTERS.index(final_letter) - LETTERS.index(tonic[0])) % 7)
    if final_mode is None:
        return None
    return Key(final_letter + _signature_accidental(final_letter, fifths), final_mode)


def quarter_bpm(q_field: str) -> float | None:
    """Beats a minute from a Q: field, counting a quarter (or a dotted quarter in 3/8 units) as the beat."""
    m = _TEMPO.search(q_field)
    if m:
        num, den, bpm = (int(g) for g in m.groups())
        if den == 0:
            return None
        unit = num / den
        return float(bpm) if unit in (3 / 8, 3 / 4, 1 / 2, 1 / 4) else bpm * unit * 4
    digits = re.fullmatch(r"\s*(\d+)\s*", q_field)
    return float(digits.group(1)) if digits else None


@dataclass(frozen=True)
class MelodyStats:
    """Figures about a melody that are easy to say in words."""

    n_notes: int
    n_bars: int
    range_semitones: int
    final_letter: str | None

    @property
    def notes_per_bar(self) -> float:
        return self.n_notes / max(self.n_bars, 1)


def melody_stats(abc: str) -> MelodyStats:
    """Count notes and bars, measure the range and find the final note of a tune."""
    body = body_text(abc)
    notes = pitches(body)
    midis = [midi for _, midi in notes]
    return MelodyStats(
        n_notes=len(notes),
        n_bars=len(_BAR.findall(body)),
        range_semitones=(max(midis) - min(midis)) if midis else 0,
        final_letter=notes[-1][0] if notes else None,
    )
