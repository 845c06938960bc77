"""What can be said about a classical score in English: its work (training/classical/works.py) plus what
the score itself says (parts, key, meter, tempo marks). Text synthesis and zero-shot labels start here."""

from __future__ import annotations

import re
from dataclasses import dataclass

from runtime.music.abc import read_header
from training.analysis import MAJOR_MINOR, Key, melody_stats, tune_key
from training.classical.catalogue import ANONYMOUS
from training.classical.works import Work, era_of, work_of
from training.describe import meter_of

# Modes a final note reveals in music before the major-minor system, by its step above the written tonic.
CHURCH_MODES = {0: "major", 1: "dorian", 2: "phrygian", 3: "lydian", 4: "mixolydian", 5: "minor"}
MODAL_ERAS = frozenset({"Medieval", "Renaissance"})
FOLDER_ERAS = {"trecento": "Medieval"}  # for the anonymous pieces of a folder of one era
# Tempo words (the start of a tempo mark) -> the tempo classes of training/describe.py.
TEMPO_TERMS = {
    "grave": "slow", "largo": "slow", "larghetto": "slow", "lento": "slow", "adagio": "slow",
    "molto adagio": "slow", "poco adagio": "slow", "andante": "moderate", "andantino": "moderate",
    "moderato": "moderate", "allegretto": "moderate", "tempo di marcia": "moderate",
    "tempo di menuetto": "moderate", "allegro": "lively",
    "vivace": "fast", "presto": "fast", "prestissimo": "fast", "molto allegro": "fast",
}  # fmt: skip
_TEMPO_MARK = re.compile(
    r"^(" + "|".join(sorted(map(re.escape, TEMPO_TERMS), key=len, reverse=True)) + r")\b"
)
# Form words of direction text -> the movement's form ("Menuetto" over a quartet movement: a minuet).
FORM_WORDS = {
    "menuetto": "minuet", "minuetto": "minuet", "menuet": "minuet", "scherzo": "scherzo", "var": "variations",
    "fuga": "fugue", "fuge": "fugue", "rondo": "rondo", "finale": "finale", "introduzione": "introduction",
}  # fmt: skip
NUMBERS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
SHORT_NAMES = {
    "Johann Sebastian Bach": "Bach", "Giovanni Pierluigi da Palestrina": "Palestrina",
    "Claudio Monteverdi": "Monteverdi", "Ludwig van Beethoven": "Beethoven",
    "Wolfgang Amadeus Mozart": "Mozart",
    "Joseph Haydn": "Haydn", "Johannes Ciconia": "Ciconia", "Francesco Landini": "Landini",
    "Carl Philipp Emanuel Bach": "C. P. E. Bach", "Antonio Zacara da Teramo": "Zacara",
    "Frédéric Chopin": "Chopin", "Franz Schubert": "Schubert", "George Frideric Handel": "Handel",
}  # fmt: skip


@dataclass(frozen=True)
class PieceFacts:
    """Plain-English facts about one classical score; None where unknown."""

    composer: str  # or "anonymous"
    era: str | None
    genre: str
    title: str | None
    movement: str | None
    collection: str | None
    ensemble: str | None  # "four voices", "string quartet", "voice and piano"
    key: Key | None
    meter: str | None
    tempo_mark: str | None  # as written: "Allegro ma non tanto"
    tempo: str | None  # slow | moderate | lively | fast
    form: str | None  # of the movement, where the score names it: "minuet", "variations"

    @property
    def short_composer(self) -> str | None:
        """The name musicians say ("Palestrina"), None for anonymous pieces."""
        return None if self.composer == ANONYMOUS else SHORT_NAMES.get(self.composer, self.composer)

    def labels(self) -> dict[str, str]:
        """Ground truth for zero-shot classification by label set: composer, genre, era, meter, mode."""
        found = {
            "composer": None if self.composer == ANONYMOUS else self.composer,
            "genre": self.genre,
            "era": self.era,
            "meter": self.meter,
            "mode": self.key.mode if self.key else None,
        }
        return {name: label for name, label in found.items() if label}


VOCAL_GENRES = frozenset(
    "chorale,mass movement,madrigal,motet,ballata,caccia,canon,hymn,part song,sacred song".split(",")
)


def ensemble_of(n_parts: int, parts: list[str], genre: str, default: str | None) -> str | None:
    """The forces: the work's own words ("string quartet"), else for vocal genres the number of parts as
    voices ("five voices and continuo"), else None."""
    if default or genre not in VOCAL_GENRES or n_parts < 1:
        return default
    continuo = sum(bool(re.search(r"continuo|organ", p, re.IGNORECASE)) for p in parts)
    count = n_parts - continuo
    voices = "one voice" if count == 1 else f"{NUMBERS[count] if count < len(NUMBERS) else count} voices"
    return voices + (" and continuo" if continuo else "")


def voice_count(abc: str) -> int:
    """The number of voices a converted score declares (its V: lines before the music)."""
    return len(set(re.findall(r"^V:(\S+)", abc.split("\nV:1\n", 1)[0], re.MULTILINE)))


def label_texts(facts: PieceFacts) -> list[str]:
    """The words that must not reach the model's input: they are what zero-shot and retrieval ask for."""
    names = (facts.composer, facts.short_composer, facts.genre, facts.era, facts.title, facts.movement)
    return [text for text in (*names, facts.collection, facts.form) if text]


def form_of(words: list[str]) -> str | None:
    """The movement's form, from the first form word among the score's direction words."""
    return next(
        (FORM_WORDS[w] for text in words for w in re.findall(r"[a-z]+", text.lower()) if w in FORM_WORDS),
        None,
    )


def tempo_mark_of(words: list[str]) -> tuple[str | None, str | None]:
    """The first tempo mark among a score's direction words and its tempo class."""
    for text in words:
        text = re.sub(r"^finale\.?\s*", "", text.strip(), flags=re.IGNORECASE)  # "Finale. Presto"
        found = _TEMPO_MARK.match(text.lower())
        if found:
            return text.strip().rstrip(".").strip(), TEMPO_TERMS[found.group(1)]
    return None, None


def piece_key(abc: str, era: str | None) -> Key | None:
    """The key: K: with the final note of the last voice written (the bass); church modes before 1600."""
    header = read_header(abc.split("\n"))
    modes = CHURCH_MODES if era in MODAL_ERAS else MAJOR_MINOR
    return tune_key(header.get("key", ""), melody_stats(abc).final_letter, modes)


def describe_piece(source: str, abc: str, fields: dict, work: Work | None = None) -> PieceFacts:
    """Everything text synthesis may say about one converted score."""
    work = work or work_of(source, fields)
    era = era_of(work.composer) or FOLDER_ERAS.get(source.split("/")[0])
    tempo_mark, tempo = tempo_mark_of(fields.get("words") or [])
    return PieceFacts(
        composer=work.composer,
        era=era,
        genre=work.genre,
        title=work.title,
        movement=work.movement,
        collection=work.collection,
        ensemble=ensemble_of(voice_count(abc), fields.get("parts") or [], work.genre, work.ensemble),
        key=piece_key(abc, era),
        meter=meter_of(read_header(abc.split("\n")).get("meter")),
        tempo_mark=tempo_mark,
        tempo=tempo,
        form=form_of(fields.get("words") or []),
    )
