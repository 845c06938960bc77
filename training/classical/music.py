"""What the model may see of a converted score: its ABC without words that would give its labels away.

prepare_music drops T:, C:, w: and the other text fields, but keeps V: lines and "..." annotations. In
converted scores those carry part names (instrumentation, which is fine) and the score's direction words:
tempo and expression marks, but also lyric fragments, publishers' stamps and form words ("Menuetto",
"Trio", "Var. 1") that name the genre. So an annotation is kept only if all its words are performance
vocabulary, a chord symbol only if it looks like one, and a part name only if it names voices or instruments.
"""

from __future__ import annotations

import re

from unidecode import unidecode

from runtime.music.patching import decode_patches, prepare_music

# Words of tempo, dynamics, articulation and expression marks (Italian, with their usual abbreviations).
PERFORMANCE_WORDS = frozenset(
    """
    a accel accelerando adagio affettuoso agitato al alla allegretto allegro amoroso andante andantino animato
    arco assai attacca brio cal calando cantabile col con cre cres cresc crescendo da dal decresc decrescendo
    del delicato di dim diminuendo dol dolce dolciss dolcissimo do e energico espr espress espressivo f ff fff
    fp fz grave grazioso il in la larghetto largo legatissimo legato leggiero lento lusingando ma maestoso
    mancando marc marcato meno mezza mf mo moderato molto morendo mosso moto mp non p piu pizz poco pp ppp
    presto prestissimo primo quasi rall rallentando rf rfz rinf rinforzando rit ritard ritardando riten
    ritenuto scherzando semplice sempre sf sff sfp sfz simile smorz smorzando sostenuto sotto spiritoso stacc
    staccato stretto string stringendo sul sulla tanto tempo ten tenuto tranquillo tre troppo un una corda
    vivace vivo voce
    """.split()
)
# Words of part names: voices and instruments, with their usual abbreviations.
PART_WORDS = frozenset(
    """
    soprano sopran alto altus tenor tenore bass basso bassus baritone bar cantus canto contratenor contralto
    quinto quintus sextus triplum motetus duplum tripl dupl cfirm cp ct voice voices solo chorus
    violin violino viloin vln vn viola vla cello violoncello vc violone bc continuo cont organ organo org
    piano pno keyboard harpsichord oboe ob amore caccia horn hn trumpet trump tr timpani timp tymp recorder
    recorders rec flute flutes cornet clarinet bassoon e d da st nd rd th
    """.split()
)
_ROMAN = re.compile(r"^[ivx]+$")
_QUOTED = re.compile(r'"([^"\n]*)"')
_CHORD = re.compile(r"^\(?[A-G][#b]?(m|min|maj|dim|aug|sus|add|M|\+|o|\d|/[A-G][#b]?|[#b]\d)*\)?$")
_PART_NAME = re.compile(r'\s(s?nm)="([^"]*)"')
_WORD = re.compile(r"[a-z]+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def performance_mark(text: str) -> bool:
    """True for a direction such as "poco rit." or "Allegro ma non troppo": words of performance only."""
    words = _words(text)
    return bool(words) and all(w in PERFORMANCE_WORDS for w in words)


def part_name(text: str) -> bool:
    """True for a part name of voices or instruments ("Violin II", "Cantus 1", "Tr 2"), else False."""
    words = _words(text)
    return bool(words) and all(w in PART_WORDS or _ROMAN.match(w) for w in words)


def _quoted(match: re.Match[str]) -> str:
    text = match.group(1)
    if text[:1] in "^_<>@":
        return match.group(0) if performance_mark(text[1:]) else ""
    return match.group(0) if _CHORD.match(text.strip()) else ""


def _part_attribute(match: re.Match[str]) -> str:
    return match.group(0) if part_name(match.group(2)) else ""


def model_abc(abc: str) -> str:
    """The converted ABC with every free-text annotation and part name that is not performance vocabulary
    removed: what training and evaluation give the model."""
    lines = []
    for line in abc.split("\n"):
        if line.startswith("V:"):
            lines.append(_PART_NAME.sub(_part_attribute, line))
        elif line[:2] in ("T:", "C:", "Z:", "w:", "W:") or line.startswith("%"):
            lines.append(line)  # never patched (prepare_music drops them); kept for readers of the ABC
        else:
            lines.append(_QUOTED.sub(_quoted, line))
    return "\n".join(lines)


def leaked_words(abc: str, texts: list[str]) -> list[str]:
    """The words of `texts` (composer, title, genre...) that the model would see in this ABC: every word of
    five letters or more that is not performance or part vocabulary, found whole in the decoded patches."""
    seen = " ".join(decode_patches(prepare_music(abc, None))).lower()
    candidates = {w for text in texts for w in _WORD.findall(unidecode(text).lower()) if len(w) >= 5}
    allowed = PERFORMANCE_WORDS | PART_WORDS
    return sorted(w for w in candidates - allowed if re.search(rf"\b{w}\b", seen))
