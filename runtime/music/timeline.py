"""The tune as it sounds, in one notation: the last step of the default family's canonical spelling.

A MIDI file knows no pickup bar, no repeat sign and no spelling: music21 plays the repeats out and a MIDI
reader counts bars from the first note and spells pitches its own way. So a single-voice body (already in
canonical tokens at L:1/8) whose key and meter are known is rewritten as its timeline:
- repeats and first/second endings played out; then a block of bars that comes twice in a row is written
  once (a part played twice, whether as repeat signs or written out, reads as the part once);
- tied notes of one pitch merged, then notes split (and tied) only at bar lines counted from the first
  note at the header meter's length: a pickup and what follows it are cut as a MIDI reader cuts them, and
  irregular bars (which music21 writes as meter changes) as regular ones; inline meter changes dropped;
- every pitch spelled from its sound in the key (diatonic notes by the key signature, other notes as
  naturals, else sharps in sharp keys and flats in flat keys), accidentals written as each bar needs them;
- rests before the first note and after the last dropped, as are inline fields that restate the key,
  and tempo, part and other fields without sound.
A body this cannot read (voice overlay, multi-bar rests, a free meter, an unknown key) raises Unreadable.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, replace
from fractions import Fraction

from runtime.music.lengths import length_of, length_text

_STEPS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_MAJOR_FIFTHS = {"C": 0, "G": 1, "D": 2, "A": 3, "E": 4, "B": 5, "F": -1}
_MODE_FIFTHS = {"": 0, "m": -3, "dor": -2, "phr": -4, "lyd": 1, "mix": -1, "loc": -5}
_ACCIDENTALS = {"^": 1, "^^": 2, "_": -1, "__": -2, "=": 0}
_WRITTEN = {v: k for k, v in _ACCIDENTALS.items()}
_TUPLET_Q = {2: 3, 3: 2, 4: 3, 6: 2, 8: 3}  # ABC's default q of (p; 5, 7, 9: 2 (simple meters)
_MAX_ITEMS = 50_000  # a body that plays out longer than this is not rewritten
_TOKENS = re.compile(
    r"""(?P<line>\n[A-Za-z]:[^\n]*\n)
    |(?P<field>\[[A-Za-z]:[^\]]*\])
    |(?P<bar>:*\|[\]|:]*\d*|\[\|:*|:+\d*|\[\d+)
    |(?P<tuplet>\((?P<p>\d+)(?::(?P<q>\d*))?(?::(?P<r>\d*))?)
    |(?P<chord>\[(?P<inner>[^\]\[|]*)\](?P<clen>\d*/*\d*))
    |(?P<note>(?P<acc>\^{1,2}|_{1,2}|=)?(?P<letter>[A-Ga-g])(?P<octave>[,']*)(?P<len>\d*/*\d*))
    |(?P<rest>z(?P<rlen>\d*/*\d*))
    |(?P<tie>-)
    |(?P<other>.)""",
    re.VERBOSE | re.DOTALL,
)
_CHORD_NOTE = re.compile(r"(\^{1,2}|_{1,2}|=)?([A-Ga-g])([,']*)(\d*/*\d*)")


class Unreadable(ValueError):
    """A body the timeline does not rewrite."""


@dataclass(frozen=True)
class Atom:
    """A note or chord (pitches as MIDI numbers), a rest (no pitches), or a tuplet group (never split)."""

    pitches: tuple[int, ...] | None
    length: int  # sounding length in ticks (TICKS to an eighth)
    tied: bool = False
    tuplet: str = ""  # the group's written token, e.g. "(3"
    members: tuple[Atom, ...] = ()  # a group's atoms, with their written lengths

    @property
    def sounds(self) -> bool:
        return bool(self.pitches or self.members)


@dataclass(frozen=True)
class KeyChange:
    """A K: field in the body (the only field with a sound of its own)."""

    key: str


def key_fifths(key: str) -> int:
    """The key signature of a canonical K: value (`G`, `Em`, `Bbmix`, `F#dor`) as sharps (> 0) or flats
    (< 0); raises Unreadable."""
    m = re.fullmatch(r"([A-G])([#b]?)(m|dor|phr|lyd|mix|loc)?", key.strip())
    if not m:
        raise Unreadable(f"key {key!r}")
    fifths = _MAJOR_FIFTHS[m.group(1)] + {"#": 7, "b": -7, "": 0}[m.group(2)] + _MODE_FIFTHS[m.group(3) or ""]
    if not -7 <= fifths <= 7:
        raise Unreadable(f"key {key!r}")
    return fifths


def major_with_signature(fifths: int) -> str:
    """The major key of a signature: 2 -> D, -3 -> Eb."""
    return "FCGDAEB"[(fifths + 1) % 7] + ("#" if fifths > 5 else "b" if fifths < -1 else "")


def key_alterations(key: str) -> dict[str, int]:
    """{letter: -1, 0 or +1} of a canonical K: value; raises Unreadable."""
    return dict(_alterations(key_fifths(key)))


def bar_length(meter: str) -> Fraction:
    """A canonical M: value's bar in eighths; raises Unreadable for free meters and sums like 2/4+3/8."""
    try:
        value = Fraction(meter.strip())
    except (ValueError, ZeroDivisionError):
        raise Unreadable(f"meter {meter!r}") from None
    if value <= 0:
        raise Unreadable(f"meter {meter!r}")
    return value * 8


def timeline(body: str, key: str, meter: str) -> str:
    """The body as its timeline (module docstring); raises Unreadable where it cannot be read."""
    atoms = _trim_silence(_merge_ties(_play_out(_Reader(key).read(body))))
    bars = _Writer(key, meter).write(atoms)
    return "".join(_squash(bars))


TICKS = 20_160  # per eighth: exact for lengths down to 1/64 and tuplets of 3, 5, 7 and 9


def _ticks(length: Fraction) -> int:
    ticks = length * TICKS
    if ticks.denominator != 1:
        raise Unreadable(f"length {length}")
    return int(ticks)


@functools.lru_cache(maxsize=4096)
def _text_ticks(text: str, outer: str = "") -> int:
    """Ticks of an ABC length suffix (times a chord's outer length)."""
    return _ticks(length_of(text) * length_of(outer))


class _Reader:
    """Canonical body tokens -> atoms, fields and bar lines, pitches as they sound (key, bar accidentals)."""

    def __init__(self, key: str):
        self.key = key_alterations(key)
        self.accidentals: dict[tuple[str, int], int] = {}  # this bar's, by letter and octave
        self.items: list[Atom | KeyChange | str] = []
        self.group: list = []  # [token, ratio, notes left, atoms] while a tuplet is open

    def read(self, body: str) -> list[Atom | KeyChange | str]:
        for m in _TOKENS.finditer(body):
            getattr(self, f"_{m.lastgroup}")(m)
        if self.group:
            self._close_group()
        return self.items

    def _pitch(self, accidental: str | None, letter: str, octave_marks: str) -> int:
        name = letter.upper()
        octave = (5 if letter.islower() else 4) + octave_marks.count("'") - octave_marks.count(",")
        if accidental:
            self.accidentals[(name, octave)] = _ACCIDENTALS[accidental]
        return 12 * (octave + 1) + _STEPS[name] + self.accidentals.get((name, octave), self.key[name])

    def _add(self, atom: Atom) -> None:
        if not self.group:
            self.items.append(atom)
            return
        self.group[3].append(atom)
        self.group[2] -= 1
        if self.group[2] == 0:
            self._close_group()

    def _close_group(self) -> None:
        token, ratio, _, members = self.group
        self.group = []
        if members:
            length = sum(a.length for a in members) * ratio
            if length.denominator != 1:
                raise Unreadable(f"tuplet {token!r} of {length} ticks")
            self.items.append(Atom(None, int(length), tuplet=token, members=tuple(members)))

    def _line(self, m: re.Match) -> None:
        self._set(m.group(0).strip())

    def _field(self, m: re.Match) -> None:
        self._set(m.group(0)[1:-1])

    def _set(self, text: str) -> None:
        name, value = text[0], text[2:].strip()
        if name == "K":  # meter changes, tempo, parts and every other field: no sound of their own
            self.key = key_alterations(value)
            self.items.append(KeyChange(value))

    def _bar(self, m: re.Match) -> None:
        if self.group:
            raise Unreadable("a tuplet across a bar line")
        self.accidentals = {}
        self.items.append(m.group(0))

    def _tuplet(self, m: re.Match) -> None:
        if self.group:
            raise Unreadable("nested tuplets")
        p = int(m.group("p"))
        q = int(m.group("q")) if m.group("q") else _TUPLET_Q.get(p, 2)
        r = int(m.group("r")) if m.group("r") else p
        if p == 0 or r == 0:
            raise Unreadable(f"tuplet {m.group(0)!r}")
        self.group = [m.group(0), Fraction(q, p), r, []]

    def _chord(self, m: re.Match) -> None:
        notes = _CHORD_NOTE.findall(m.group("inner"))
        if not notes:
            raise Unreadable("an empty chord")
        pitches = tuple(sorted({self._pitch(acc, letter, octave) for acc, letter, octave, _ in notes}))
        length = _text_ticks(notes[0][3], m.group("clen"))
        self._add(Atom(pitches, length, tied="-" in m.group("inner")))

    def _note(self, m: re.Match) -> None:
        pitch = self._pitch(m.group("acc"), m.group("letter"), m.group("octave"))
        self._add(Atom((pitch,), _text_ticks(m.group("len"))))

    def _rest(self, m: re.Match) -> None:
        self._add(Atom(None, _text_ticks(m.group("rlen"))))

    def _tie(self, m: re.Match) -> None:
        atoms = self.group[3] if self.group else self.items
        if atoms and isinstance(atoms[-1], Atom) and atoms[-1].pitches:
            atoms[-1] = replace(atoms[-1], tied=True)

    def _other(self, m: re.Match) -> None:
        raise Unreadable(f"token {m.group(0)!r}")


def _play_out(items: list[Atom | KeyChange | str]) -> list[Atom | KeyChange]:
    """Repeats and endings played out; bar lines dropped (the writer counts bars anew)."""
    out: list[Atom | KeyChange] = []
    start, first_ending = 0, None
    for item in items:
        if not isinstance(item, str):
            out.append(item)
            continue
        ending = int(digits) if (digits := re.sub(r"\D", "", item)) else 0
        closes, opens = item.startswith(":"), item.rstrip("0123456789").endswith(":")
        if closes:
            out += out[start : len(out) if first_ending is None else first_ending]
            first_ending = None
        if closes or opens:
            start = len(out)
        if ending == 1:
            first_ending = len(out)
        if len(out) > _MAX_ITEMS:
            raise Unreadable("plays out too long")
    return out


def _trim_silence(items: list[Atom | KeyChange]) -> list[Atom | KeyChange]:
    """Rests before the first note and after the last are no part of the tune (a MIDI file's lead-in,
    a last bar filled up)."""
    sounding = [i for i, item in enumerate(items) if isinstance(item, Atom) and item.sounds]
    if not sounding:
        return items
    return [
        item
        for i, item in enumerate(items)
        if not (isinstance(item, Atom) and not item.sounds) or sounding[0] < i < sounding[-1]
    ]


def _merge_ties(items: list[Atom | KeyChange]) -> list[Atom | KeyChange]:
    """A note tied to the same pitch is one longer note: ties are where bars cut notes, not spelling."""
    out: list[Atom | KeyChange] = []
    for item in items:
        last = out[-1] if out else None
        if (
            isinstance(item, Atom)
            and isinstance(last, Atom)
            and last.tied
            and not last.members
            and not item.members
            and last.pitches == item.pitches
        ):
            out[-1] = replace(item, length=last.length + item.length)
        else:
            out.append(item)
    return out


@functools.lru_cache(maxsize=4096)
def _length_text(ticks: int) -> str:
    return length_text(Fraction(ticks, TICKS))


@functools.lru_cache(maxsize=64)
def _alterations(fifths: int) -> dict[str, int]:
    altered = "FCGDAEB"[:fifths] if fifths > 0 else "BEADGCF"[:-fifths]
    return {letter: (1 if fifths > 0 else -1) if letter in altered else 0 for letter in _STEPS}


@functools.lru_cache(maxsize=4096)
def _spelling(pitch: int, fifths: int) -> tuple[str, int, int, str]:
    """(letter, alteration, octave, ABC without accidental) of a MIDI pitch in a key: the key signature's
    letter, else the natural, else a sharp in sharp keys and a flat in flat keys."""
    key = _alterations(fifths)

    def preference(candidate: tuple[str, int]) -> tuple[int, int]:
        name, alteration = candidate
        if alteration == key[name]:
            return (0, 0)
        return (1, 0) if alteration == 0 else (2, 0 if (alteration > 0) == (fifths >= 0) else 1)

    candidates = [(n, a) for n, step in _STEPS.items() for a in (-1, 0, 1) if (step + a - pitch) % 12 == 0]
    name, alteration = min(candidates, key=preference)
    octave = (pitch - _STEPS[name] - alteration) // 12 - 1
    text = (name if octave <= 4 else name.lower()) + "," * max(0, 4 - octave) + "'" * max(0, octave - 5)
    return name, alteration, octave, text


class _Writer:
    """Atoms -> bar texts at the meter's length from the first note, pitches spelled in the key."""

    def __init__(self, key: str, meter: str):
        self.key_text = key
        self.fifths = key_fifths(key)
        self.bar_len = _ticks(bar_length(meter))
        self.bars: list[str] = []
        self.current: list[str] = []
        self.position = 0  # ticks into the bar
        self.accidentals: dict[tuple[str, int], int] = {}

    def write(self, items: list[Atom | KeyChange]) -> list[str]:
        for item in items:
            if isinstance(item, KeyChange):
                self._key(item)
            elif item.members:
                members = "".join(self._atom(a, a.length) for a in item.members)
                self.current.append(item.tuplet + members)
                self._advance(item.length)
            else:
                self._split(item)
        if self.current:
            self._close()
        return self.bars

    def _key(self, change: KeyChange) -> None:
        if change.key != self.key_text:
            self.key_text, self.fifths = change.key, key_fifths(change.key)
            self.current.append(f"[K:{change.key}]")

    def _split(self, atom: Atom) -> None:
        left = atom.length
        while left > 0:
            part = min(left, self.bar_len - self.position)
            left -= part
            tied = atom.tied if left == 0 else atom.pitches is not None
            self.current.append(self._atom(atom, part) + ("-" if tied else ""))
            self._advance(part)

    def _advance(self, ticks: int) -> None:
        """Time moves on; a tuplet group that overran the bar line starts the next bar late."""
        self.position += ticks
        while self.position >= self.bar_len:
            self.position -= self.bar_len
            self._close()

    def _close(self) -> None:
        self.bars.append("".join(self.current) + "|")
        self.current, self.accidentals = [], {}

    def _atom(self, atom: Atom, ticks: int) -> str:
        text = _length_text(ticks)
        if atom.pitches is None:
            return "z" + text
        if len(atom.pitches) == 1:
            return self._spell(atom.pitches[0]) + text
        return "[" + "".join(self._spell(p) for p in atom.pitches) + "]" + text

    def _spell(self, pitch: int) -> str:
        """A MIDI pitch as ABC in the key, with the accidental this bar needs (if any)."""
        name, alteration, octave, text = _spelling(pitch, self.fifths)
        if alteration == self.accidentals.get((name, octave), _alterations(self.fifths)[name]):
            return text
        self.accidentals[(name, octave)] = alteration
        return _WRITTEN[alteration] + text


def _squash(bars: list[str]) -> list[str]:
    """A block of bars repeated at once is written once, until no block repeats (ABAB, AABAAB -> AB)."""
    bars = list(bars)
    changed = True
    while changed:
        changed = False
        for size in range(1, len(bars) // 2 + 1):
            i = 0
            while i + 2 * size <= len(bars):
                if bars[i] == bars[i + size] and bars[i : i + size] == bars[i + size : i + 2 * size]:
                    del bars[i + size : i + 2 * size]
                    changed = True
                else:
                    i += 1
    return bars
