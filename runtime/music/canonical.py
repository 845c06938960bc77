"""One spelling for the same music: the default family's ABC canonicalisation, before CLaMP's bar patching.

A user's file and an indexed tune that hold the same notes should patch alike, whatever program wrote them.
So, for the default family only (the official CLaMP families stay byte-exact with CLaMP):
- header fields in one order (M:, L: before the rest, K: last; lines before K: that are no field dropped),
  `M:C` as 4/4 and `M:C|` as 2/2, `K:` as major or minor (`K:E minor`, `K:Emin`, `K:Eaeolian` -> `K:Em`;
  `K:G major` -> `K:G`; church modes as the major key of their signature: `K:Ador` -> `K:G`);
- every length rewritten to L:1/8 (so `L:1/16` with doubled lengths is the same text), broken rhythm
  (`A>B`) written out as lengths (`A3/2B/`);
- double and final bar lines as single ones;
- chord symbols and annotations ("Am", "^Andante"), decorations (!trill!, +f+, ~, .), slurs and grace
  notes dropped, as are spaces, line breaks and line-continuation backslashes (beaming and layout);
- `I:` and `Q:` lines, `V:` properties (a voice keeps its id; a lone voice loses its `V:` lines) and
  invisible rests (dropped in a lone voice, where converters pad short bars with them; `z` between voices);
- then a single-voice tune is written as its timeline (runtime/music/timeline.py): repeats played out
  and a part played twice written once, bars counted from the first note, pitches spelled by their sound.
What changes the music stays: pitches, lengths, ties, tuplets, rests between notes, key changes.
Text the tokenizer does not know is kept as it is.
"""

from __future__ import annotations

import contextlib
import re
from fractions import Fraction

from runtime.music.lengths import length_of, length_text, scaled_length
from runtime.music.timeline import Unreadable, key_fifths, major_with_signature, timeline

UNIT = Fraction(1, 8)
HEADER_ORDER = {"X": 0, "M": 1, "L": 2}  # then the rest in their order; K: ends the header
_MODES = {
    "": "", "maj": "", "major": "", "ion": "", "ionian": "",
    "m": "m", "min": "m", "minor": "m", "aeo": "m", "aeolian": "m",
    "mix": "mix", "mixolydian": "mix", "dor": "dor", "dorian": "dor", "phr": "phr", "phrygian": "phr",
    "lyd": "lyd", "lydian": "lyd", "loc": "loc", "locrian": "loc",
}  # fmt: skip
_KEY = re.compile(r"^\s*([A-Ga-g])([#b]?)\s*([A-Za-z]*)(.*)$")
_METERS = {"C": "4/4", "C|": "2/2"}
_FIELD = re.compile(r"^([A-Za-z]):(.*)$")
# Body tokens, tried in order at each position.
_TOKENS = re.compile(
    r"""(?P<drop>"[^"]*"|![^!\s|]*!|\+[^+\s|]*\+|\{[^}]*\}|[~.\s\\!`]|[H-Yh-wy]|\((?!\d)|\))
    |(?P<field>\[[A-Za-z]:[^\]]*\])
    |(?P<bar>:*\|[\]|:]*\d*|\[\|:*|:+|\[\d+)
    |(?P<tuplet>\(\d+(?::\d*)*)
    |(?P<chord>\[(?P<inner>[^\]\[|]*)\](?P<clen>\d*/*\d*))
    |(?P<note>(?P<pitch>(?:\^{1,2}|_{1,2}|=)?[A-Ga-g][,']*|[zx])(?P<len>\d*/*\d*))
    |(?P<broken>[<>]+)
    |(?P<other>.)""",
    re.VERBOSE | re.DOTALL,
)
_CHORD_NOTE = re.compile(r"((?:\^{1,2}|_{1,2}|=)?[A-Ga-g][,']*)(\d*/*\d*)|(-)")


def canonical_key(value: str) -> str:
    """A K: value as major (`G`), minor (`Em`) or, for the church modes, the major key of the same
    signature (`Ador` -> `G`: MIDI files, and most readers of them, know only the signature and major or
    minor); clef and other properties dropped. Values that name no key stay as given."""
    m = _KEY.match(value)
    if not m or m.group(3).lower() not in _MODES:
        return value.strip()
    key = f"{m.group(1).upper()}{m.group(2)}{_MODES[m.group(3).lower()]}"
    if _MODES[m.group(3).lower()] in ("", "m"):
        return key
    with contextlib.suppress(Unreadable):
        return major_with_signature(key_fifths(key))
    return key


def _bar(text: str) -> str:
    """A bar line as what it does: repeats and endings stay, double and final bar lines are single."""
    if ":" in text or text[-1].isdigit():
        return text.replace("||", "|").replace("[|", "|").replace("|]", "|")
    return "|"


def _unit(value: str) -> Fraction | None:
    try:
        unit = Fraction(value.strip())
    except (ValueError, ZeroDivisionError):
        return None
    return unit if unit > 0 else None


class _Body:
    """Rewrites body text to L:1/8, note by note, remembering the unit length across lines and fields."""

    def __init__(self, unit: Fraction, voices: int):
        self.scale = unit / UNIT
        self.voices = voices

    def rewrite(self, line: str) -> str:
        out: list[str] = []
        pending: Fraction | None = None  # broken rhythm: the factor of the next note
        last_note = -1  # index in out of the last note or chord
        for m in _TOKENS.finditer(line):
            kind, text = m.lastgroup, m.group(0)
            if kind == "drop":
                continue
            if kind == "field":
                out.append(self._field(text))
            elif kind in ("note", "chord"):
                factor, pending = pending or 1, None
                if kind == "note":
                    pitch = m.group("pitch")
                    if pitch == "x" and self.voices <= 1:
                        continue  # a converter's padding of a short bar: no time in a lone voice
                    pitch = "z" if pitch == "x" else pitch
                    scale = self.scale if factor == 1 else self.scale * factor
                    out.append(pitch + scaled_length(m.group("len"), scale))
                else:
                    outer = length_of(m.group("clen")) * factor
                    out.append(self._chord(m.group("inner"), outer))
                last_note = len(out) - 1
            elif kind == "bar":
                bar = _bar(text)
                if not (bar == "|" and out and out[-1] == "|"):  # `| |` is one bar line
                    out.append(bar)
            elif kind == "broken" and last_note >= 0:
                dots = len(text)
                long, short = 2 - Fraction(1, 2**dots), Fraction(1, 2**dots)
                first, pending = (long, short) if text[0] == ">" else (short, long)
                out[last_note] = self._scaled(out[last_note], first)
            else:
                out.append(text)
        return "".join(out)

    def _field(self, text: str) -> str:
        name, value = text[1], text[3:-1]
        if name == "L" and (unit := _unit(value)):
            self.scale = unit / UNIT
            return ""
        if name == "K":
            return f"[K:{canonical_key(value)}]"
        if name == "M":
            return f"[M:{_METERS.get(value.strip(), value.strip())}]"
        return "" if name in "IQ" else text

    def _chord(self, inner: str, outer: Fraction) -> str:
        notes = []
        for m in _CHORD_NOTE.finditer(inner):
            if m.group(3):
                notes.append("-")
            else:
                notes.append(m.group(1) + length_text(length_of(m.group(2)) * self.scale))
        return f"[{''.join(notes)}]{length_text(outer)}"

    def _scaled(self, token: str, factor: Fraction) -> str:
        """A written note or chord with its length multiplied (broken rhythm)."""
        m = re.fullmatch(r"(\[[^\]]*\]|[^\d/]+)(\d*/*\d*)", token)
        if not m:
            return token
        return m.group(1) + length_text(length_of(m.group(2)) * factor)


def canonical_abc(abc: str) -> str:
    """The tune in the default family's one spelling (see the module docstring)."""
    lines = [line for line in abc.replace("\r", "").split("\n") if _kept(line)]
    key_line = next((i for i, line in enumerate(lines) if line.startswith("K:")), 0)
    lines = [line for i, line in enumerate(lines) if i >= key_line or _field(line)]  # header junk
    voice_ids = {f.group(2).split()[0] for line in lines if (f := _field(line)) and f.group(1) == "V"}
    header: dict[str, list[str]] = {}
    body: list[str] = []
    rewriter: _Body | None = None
    for line in lines:
        field = _field(line)
        if field and field.group(1) == "V" and len(voice_ids) <= 1:
            continue
        if field and field.group(1) not in "IQ":
            name, value = field.group(1), _field_value(field.group(1), field.group(2))
            if rewriter is None:
                header.setdefault(name, []).append(value)
                if name == "K":  # K: ends the header
                    rewriter = _Body(_header_unit(header), len(voice_ids))
            elif name == "L":
                rewriter.scale = (_unit(value) or UNIT) / UNIT
            else:
                body.append(f"\n{name}:{value}\n")
            continue
        if field:
            continue
        if rewriter is None:
            rewriter = _Body(_header_unit(header), len(voice_ids))
        body.append(rewriter.rewrite(line.split("%")[0]))
    text = "".join(body)
    if len(voice_ids) <= 1 and "K" in header and "M" in header:
        with contextlib.suppress(Unreadable):
            text = timeline(text, header["K"][-1], header["M"][-1])
    header["L"] = ["1/8"]
    header["V"] = sorted(header.get("V", []))  # voice declarations in one order
    if not header["V"]:
        del header["V"]
    names = sorted(header, key=lambda name: (name == "K", HEADER_ORDER.get(name, len(HEADER_ORDER))))
    text = "\n".join(f"{name}:{value}" for name in names for value in header[name]) + "\n" + text
    return re.sub(r"\n+", "\n", text).strip("\n") + "\n"


def _kept(line: str) -> bool:
    return bool(line.strip()) and (not line.startswith("%") or line.startswith("%%score"))


def _field(line: str) -> re.Match | None:
    return _FIELD.match(line) if len(line) > 1 and line[1] == ":" else None


def _field_value(name: str, value: str) -> str:
    """A header value in its one spelling: keys, meters, a voice by its id."""
    value = value.strip()
    if name == "K":
        return canonical_key(value)
    if name == "M":
        return _METERS.get(value, value)
    if name == "V":
        return value.split()[0] if value.split() else value
    return value


def _header_unit(header: dict[str, list[str]]) -> Fraction:
    """The unit length of the body: the header's L:, else ABC's default from the meter."""
    if "L" in header and (unit := _unit(header["L"][-1])):
        return unit
    return _default_unit(header.get("M", [""])[-1])


def _default_unit(meter: str) -> Fraction:
    """ABC's default unit length: 1/16 for meters under 3/4, else 1/8."""
    meter = _METERS.get(meter.strip(), meter.strip())
    try:
        return Fraction(1, 16) if Fraction(meter) < Fraction(3, 4) else UNIT
    except (ValueError, ZeroDivisionError):
        return UNIT
