"""The trecento folder: Italian and French 14th-century pieces from the PMFC edition, several composers.

Its scores do say who wrote them and what they are, but in the edition's words ("Ballate", "Anonymous
I-Rvat 1419", "Antonius 'Zacharias' de Teramo"): these rules map them to one name per composer and genre.
"""

from __future__ import annotations

import re

from training.classical.catalogue import ANONYMOUS
from training.classical.works import Work, mass_part_of

# Lower-case fragments of the edition's attributions -> composer. Checked in order; the first hit wins.
TRECENTO_COMPOSERS: tuple[tuple[str, str], ...] = (
    ("vitry", "Philippe de Vitry"), ("landini", "Francesco Landini"), ("jacopo", "Jacopo da Bologna"),
    ("giovanni da firenze", "Giovanni da Firenze"), ("piero", "Piero"),
    ("gherardello", "Gherardello da Firenze"), ("lorenzo", "Lorenzo da Firenze"),
    ("gratiosus", "Gratiosus de Padua"), ("grattosus", "Gratiosus de Padua"),
    ("egardus", "Egardus"), ("bartholus", "Bartolo da Firenze"), ("phillippoctus", "Philipoctus de Caserta"),
    ("barbitonsoris", "Barbitonsoris"), ("zacharias", "Antonio Zacara da Teramo"),
    ("zacharius", "Antonio Zacara da Teramo"), ("zecharias", "Antonio Zacara da Teramo"),
    ("perusio", "Matteo da Perugia"), ("ciconia", "Johannes Ciconia"), ("chipre", "Chipre"),
    ("perrinet", "Perrinet"), ("guymont", "Guymont"), ("graneti", "Johannes Graneti"),
)  # fmt: skip
# Genre words of the edition's credits -> genre.
GENRE_WORDS = {
    "motet": "motet",
    "ballate": "ballata",
    "ballata": "ballata",
    "caccia": "caccia",
    "madrigal": "madrigal",
}
# Genre of a PMFC volume when its scores name none (volume 24: Ciconia's mass movements and motets).
VOLUME_GENRES = {"01": "motet", "04": "ballata", "06": "madrigal", "24": "motet"}
_VOLUME = re.compile(r"PMFC_(\d+)")
# A work's number in its volume, without the a/b of two versions of one piece ("PMFC_12_10a" -> PMFC_12_10).
_WORK_NUMBER = re.compile(r"^(PMFC_\d+(?:-Jacopo|_Giovanni|_Piero)?[-_]\d+)[a-z]?(?=[-_ ])")
_NUMBERING = re.compile(r"^\s*\d+[a-z]?(?:\s*\(\d+\))?\.\s*")
_GENRE_SUFFIX = re.compile(r"\s+-\s+(madrigal|caccia)$", re.IGNORECASE)


def trecento_composer(texts: list[str]) -> str:
    """The composer the edition's attributions name, or "anonymous"."""
    for text in texts:
        lowered = text.lower()
        for fragment, composer in TRECENTO_COMPOSERS:
            if fragment in lowered:
                return composer
    return ANONYMOUS


def trecento_title(fields: dict) -> str | None:
    """The piece's title: the first credit (the edition's heading), else the work or movement title."""
    credits = fields.get("credits") or []
    title = credits[0] if credits else fields.get("work_title") or fields.get("movement_title")
    if not title:
        return None
    return _GENRE_SUFFIX.sub("", _NUMBERING.sub("", title)).strip() or None


def trecento_work(stem: str, fields: dict) -> Work:
    name = stem.split("/", 1)[1]
    credits = [c.lower() for c in fields.get("credits") or []]
    title = trecento_title(fields)
    part = mass_part_of(name)
    named = next((GENRE_WORDS[w] for c in credits for w in GENRE_WORDS if w in c.split("-")[0]), None)
    volume = _VOLUME.match(name)
    genre = (
        "mass movement" if part
        else named or (VOLUME_GENRES.get(volume.group(1)) if volume else None) or "sacred song"
    )  # fmt: skip
    composer = trecento_composer([*(fields.get("credits") or []), fields.get("creator:composer", "")])
    number = _WORK_NUMBER.match(name)
    key = f"trecento/{(number.group(1) if number else name).lower()}"
    return Work(key, composer, genre, title, part if part and part != title else None)
