"""Which work a score of music21's corpus belongs to, who wrote it, and what kind of piece it is.

The scores' own metadata is thin and often wrong (Monteverdi's "composer" fields hold OCR'd titles, most
quartets have no title), so the work, composer and genre come from the file's path and a few tables of
facts about the published collections; the scores' metadata fills in what it says reliably (the mass a
Palestrina movement belongs to, the composer and title of a trecento piece, a chorale's title).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from training.classical.catalogue import (
    BOOK_NAMES,
    COMPOSER_ERAS,
    FOLDER_COMPOSERS,
    MASS_PARTS,
    MONTEVERDI_BOOKS,
    MONTEVERDI_CYCLES,
    ORDINALS,
    PART_NAMES,
    QUARTET_NICKNAMES,
    SINGLES,
)

_MASS_PART = re.compile(r"\b(" + "|".join(MASS_PARTS) + r")", re.IGNORECASE)


@dataclass(frozen=True)
class Work:
    """What a score is part of and what it is. `key` names the work for the split: every score of one work
    (movements, voices, editions) shares it."""

    key: str
    composer: str
    genre: str  # the form, as zero-shot labels name it: "chorale", "mass movement", "string quartet"...
    title: str | None = None  # of the work ("Missa Papae Marcelli", "String Quartet Op. 18 No. 1")
    movement: str | None = None  # of this score within the work ("Kyrie", "second movement", "No. 2")
    ensemble: str | None = None  # the forces when the part names do not say it ("piano", "voice and piano")
    collection: str | None = None  # the published set the work belongs to ("Dichterliebe", "Rinaldo")


def era_of(composer: str) -> str | None:
    """The era a composer wrote in (a small table; None for composers it lacks, e.g. anonymous)."""
    return COMPOSER_ERAS.get(composer)


def mass_part_of(text: str | None) -> str | None:
    """The mass movement a title or file name names ("Agnus_II_03" -> "Agnus Dei"), or None."""
    found = _MASS_PART.search(text or "")
    return MASS_PARTS[found.group(1).lower()] if found else None


def _ordinal(number: str | int) -> str:
    n = int(number)
    return f"{ORDINALS[n - 1]} movement" if 0 < n <= len(ORDINALS) else f"movement {n}"


@cache
def _chorale_titles() -> dict[str, str]:
    """BWV number ("66.6", "277") -> chorale title, from music21's tables of the chorale editions."""
    from music21.corpus import chorales

    titles = {str(bwv): entry["title"] for bwv, entry in chorales.ChoraleList().byBWV.items()}
    titles.update({str(bwv): entry["title"] for bwv, entry in chorales.ChoraleListRKBWV().byBWV.items()})
    return titles


def _bach(stem: str, fields: dict) -> Work:
    number = re.match(r"bwv(\d+)(?:\.(\d+))?", stem.split("/")[-1])
    if number is None:
        raise ValueError(f"{stem}: a Bach file name without a BWV number")
    work, movement = number.groups()
    bwv = f"{work}.{movement}" if movement else work
    title = _chorale_titles().get(bwv) or _chorale_titles().get(work)
    title = f"{title}, BWV {bwv}" if title else f"BWV {bwv}"
    return Work(f"bach/bwv{work}", FOLDER_COMPOSERS["bach"], "chorale", title, ensemble="four voices")


def _palestrina(stem: str, fields: dict) -> Work:
    mass = fields.get("misc:humdrum:OPR") or "an unnamed mass"
    part = mass_part_of(stem.split("/")[-1]) or mass_part_of(fields.get("work_title"))
    return Work(f"palestrina/{mass.lower()}", FOLDER_COMPOSERS["palestrina"], "mass movement", mass, part)


def _monteverdi(stem: str, fields: dict) -> Work:
    book, number = (int(n) for n in stem.split(".")[1:3])
    first, parts = next(
        (
            (start, n)
            for (b, start), n in MONTEVERDI_CYCLES.items()
            if b == book and start <= number < start + n
        ),
        (number, 1),
    )
    lines = MONTEVERDI_BOOKS[book]
    title = lines[first - 1]
    movement = f"{PART_NAMES[number - first]} parte" if parts > 1 else None
    return Work(
        f"monteverdi/{book}.{first}", FOLDER_COMPOSERS["monteverdi"], "madrigal", title, movement,
        collection=f"the {BOOK_NAMES[book]} Book of Madrigals",
    )  # fmt: skip


_OPUS = re.compile(r"(opus|op|k)(\d+)(?:no|n)?(\d+)?", re.IGNORECASE)
_MOVEMENT = re.compile(r"movement(\d+)")


def _numbered(stem: str, fields: dict) -> Work:
    """Works filed as <composer>/<opus|k><n>[no<m>][/movement<k>] (quartets, Schumanns, Schoenberg)."""
    folder, rest = stem.split("/", 1)
    composer = FOLDER_COMPOSERS[folder]
    opus = _OPUS.search(rest)
    if opus is None:
        raise ValueError(f"{stem}: no opus or Köchel number in the path")
    catalogue, number, sub = opus.groups()
    label = f"K. {number}" if catalogue.lower() == "k" else f"Op. {number}" + (f" No. {sub}" if sub else "")
    key = f"{folder}/{'k' if catalogue.lower() == 'k' else 'op'}{number}" + (f"no{sub}" if sub else "")
    movement = _MOVEMENT.search(rest)
    genre, ensemble, title, collection = "string quartet", "string quartet", f"String Quartet {label}", None
    if key == "mozart/k545":
        genre, ensemble, title = "piano sonata", "piano", "Piano Sonata in C major, K. 545"
    elif folder == "schumann_clara" and number == "17":
        genre, ensemble, title = "piano trio", "piano trio", "Piano Trio in G minor, Op. 17"
    elif folder == "schumann_clara":  # the four polonaises of Op. 1 are one work
        genre, ensemble, title, key = "polonaise", "piano", "Polonaise Op. 1", "schumann_clara/op1"
        label = f"No. {sub}"
    elif folder == "schoenberg":
        genre, ensemble, title = "piano piece", "piano", "Six Little Piano Pieces, Op. 19"
    elif folder == "schumann_robert" and number == "48":
        genre, ensemble, title = "lied", "voice and piano", "Aus meinen Tränen spriessen"
        collection, key = "Dichterliebe, Op. 48", "schumann_robert/op48"
    if nickname := QUARTET_NICKNAMES.get(key):
        title = f"{title} ({nickname})"
    part = _ordinal(movement.group(1)) if movement else (label if folder == "schumann_clara" else None)
    return Work(key, composer, genre, title, part, ensemble, collection)


def _schumann_robert(stem: str, fields: dict) -> Work:
    if stem.endswith("dichterliebe_no2"):  # the same song as opus48no2: one work
        stem = "schumann_robert/opus48no2"
    return _numbered(stem, fields)


def _trecento(stem: str, fields: dict) -> Work:
    from training.classical.trecento import trecento_work

    return trecento_work(stem, fields)


COLLECTION_RULES = {
    "bach": _bach, "palestrina": _palestrina, "monteverdi": _monteverdi, "beethoven": _numbered,
    "mozart": _numbered, "haydn": _numbered, "schumann_clara": _numbered, "schumann_robert": _schumann_robert,
    "schoenberg": _numbered, "trecento": _trecento,
}  # fmt: skip


def work_of(source: str, fields: dict) -> Work:
    """The work of a score, from its path in music21's corpus ("bach/bwv66.6.mxl") and its fields."""
    stem = re.sub(r"\.(mxl|musicxml|xml|krn)$", "", source)
    if single := SINGLES.get(stem):
        return Work(
            stem,
            single.composer,
            single.genre,
            single.title,
            single.movement,
            single.ensemble,
            single.collection,
        )
    rule = COLLECTION_RULES.get(source.split("/")[0])
    if rule is None:
        raise ValueError(f"{source}: no rule says what work this is (add it to training/classical/works.py)")
    return rule(stem, fields)
