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

ERAS = ("Medieval", "Renaissance", "Baroque", "Classical", "Romantic", "20th-century")
# Composer (as texts name them) -> era.
COMPOSER_ERAS: dict[str, str] = {
    **dict.fromkeys(
        (
            "Philippe de Vitry", "Jacopo da Bologna", "Giovanni da Firenze", "Piero", "Francesco Landini",
            "Gherardello da Firenze", "Lorenzo da Firenze", "Bartolo da Firenze", "Gratiosus de Padua",
            "Egardus",
            "Philipoctus de Caserta", "Barbitonsoris", "Antonio Zacara da Teramo", "Matteo da Perugia",
            "Johannes Ciconia", "Chipre", "Perrinet", "Guymont", "Johannes Graneti", "D. Luca",
        ),
        "Medieval",
    ),
    "Giovanni Pierluigi da Palestrina": "Renaissance", "Vicente Lusitano": "Renaissance",
    "Claudio Monteverdi": "Renaissance",
    "Johann Sebastian Bach": "Baroque", "George Frideric Handel": "Baroque", "Arcangelo Corelli": "Baroque",
    "Carl Philipp Emanuel Bach": "Classical", "Joseph Haydn": "Classical",
    "Wolfgang Amadeus Mozart": "Classical", "Ludwig van Beethoven": "Classical",
    "Franz Schubert": "Romantic", "Robert Schumann": "Romantic", "Clara Schumann": "Romantic",
    "Frédéric Chopin": "Romantic", "Giuseppe Verdi": "Romantic", "Carl Maria von Weber": "Romantic",
    "Stephen Foster": "Romantic", "Liliuokalani": "Romantic", "Amy Beach": "Romantic",
    "Scott Joplin": "20th-century", "Irving Berlin": "20th-century", "J. Rosamond Johnson": "20th-century",
    "Arnold Schoenberg": "20th-century", "Anton Webern": "20th-century",
}  # fmt: skip
ANONYMOUS = "anonymous"
FOLDER_COMPOSERS: dict[str, str] = {
    "bach": "Johann Sebastian Bach", "beethoven": "Ludwig van Beethoven", "haydn": "Joseph Haydn",
    "monteverdi": "Claudio Monteverdi", "mozart": "Wolfgang Amadeus Mozart",
    "palestrina": "Giovanni Pierluigi da Palestrina", "schumann_clara": "Clara Schumann",
    "schumann_robert": "Robert Schumann", "schoenberg": "Arnold Schoenberg",
}  # fmt: skip


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


@dataclass(frozen=True)
class _Single:
    composer: str
    genre: str
    title: str
    ensemble: str | None = None
    collection: str | None = None
    movement: str | None = None


# One-off scores, by path without suffix: facts the files do not carry, or carry garbled.
SINGLES: dict[str, _Single] = {
    "beach/prayer_of_a_tired_child": _Single(
        "Amy Beach", "part song", "Prayer of a Tired Child, Op. 75 No. 4", "women's chorus and piano"
    ),
    "chopin/mazurka06-2": _Single(
        "Frédéric Chopin", "mazurka", "Mazurka in C-sharp minor, Op. 6 No. 2", "piano"
    ),
    "ciconia/quod_jactatur": _Single("Johannes Ciconia", "canon", "Quod jactatur"),
    "corelli/opus3no1/1grave": _Single(
        "Arcangelo Corelli",
        "trio sonata",
        "Sonata da chiesa Op. 3 No. 1",
        "two violins and continuo",
        movement="first movement",
    ),
    "cpebach/h186": _Single(
        "Carl Philipp Emanuel Bach",
        "keyboard sonata",
        "Sonata in A major, H. 186, Wq. 55/4",
        "keyboard",
        movement="second movement",
    ),
    "handel/rinaldo/Lascia_chio_pianga": _Single(
        "George Frideric Handel", "aria", "Lascia ch'io pianga", "voice and piano", "the opera Rinaldo"
    ),
    "johnson_j_r/lift_every_voice": _Single("J. Rosamond Johnson", "hymn", "Lift Every Voice and Sing"),
    "joplin/maple_leaf_rag": _Single("Scott Joplin", "rag", "Maple Leaf Rag", "piano"),
    "leadSheet/berlinAlexandersRagtime": _Single(
        "Irving Berlin", "song", "Alexander's Ragtime Band", "melody and chord symbols"
    ),
    "leadSheet/fosterBrownHair": _Single(
        "Stephen Foster", "song", "Jeanie with the Light Brown Hair", "melody and chord symbols"
    ),
    "liliuokalani/aloha_oe": _Single("Liliuokalani", "song", "Aloha Oe", "voices and piano"),
    "luca/gloria": _Single("D. Luca", "mass movement", "Gloria", movement="Gloria"),
    "lusitano/allor_che_ignuda": _Single(
        "Vicente Lusitano", "madrigal", "Allor che ignuda d'herb et fior la terra"
    ),
    "schubert/Lindenbaum": _Single(
        "Franz Schubert", "lied", "Der Lindenbaum", "voice and piano", "Winterreise", "No. 5"
    ),
    "verdi/laDonnaEMobile": _Single(
        "Giuseppe Verdi", "aria", "La donna è mobile", "voice and piano", "the opera Rigoletto"
    ),
    "weber/concertino_clarinet": _Single(
        "Carl Maria von Weber", "concertino", "Clarinet Concertino, Op. 26", "clarinet and piano"
    ),
    "webern/webern_dormi_jesu_op_16_no_2": _Single(
        "Anton Webern",
        "canon",
        "Dormi Jesu, Op. 16 No. 2",
        "voice, clarinet and bass clarinet",
        "Five Canons on Latin Texts",
    ),
}

# Monteverdi's Books III-V of madrigals as published (1592, 1603, 1605): number -> first line; the
# madrigals in several parts ("prima parte", "seconda parte"...) are one work each.
MONTEVERDI_BOOKS: dict[int, tuple[str, ...]] = {
    3: (
        "La giovinetta pianta",
        "O come è gran martire",
        "Sovra tenere herbette",
        "O dolce anima mia",
        "Stracciami pur il core",
        "O rossignuol ch'in queste verdi fronde",
        "Se per estremo ardore",
        "Vattene pur crudel",
        "Là tra 'l sangue e le morti",
        "Poi ch'ella in sé tornò",
        "O primavera gioventù de l'anno",
        "Perfidissimo volto",
        "Ch'io non t'ami cor mio",
        "Occhi un tempo mia vita",
        "Vivrò fra i miei tormenti",
        "Ma dove, o lasso me",
        "Io pur verrò là dove sete",
        "Lumi, miei cari lumi",
        "Rimanti in pace",
        "Ond'ei di morte",
    ),
    4: (
        "Ah dolente partita",
        "Cor mio, mentre vi miro",
        "Cor mio, non mori?",
        "Sfogava con le stelle",
        "Volgea l'anima mia",
        "Anima mia, perdona",
        "Che se tu se' il cor mio",
        "Luci serene e chiare",
        "La piaga c'ho nel core",
        "Voi pur da me partite",
        "A un giro sol de' begl'occhi",
        "Ohimè, se tanto amate",
        "Io mi son giovinetta",
        "Quel augellin che canta",
        "Non più guerra, pietate",
        "Sì ch'io vorrei morire",
        "Anima dolorosa",
        "Anima del cor mio",
        "Longe da te, cor mio",
        "Piagn'e sospira",
    ),
    5: (
        "Cruda Amarilli",
        "O Mirtillo, Mirtill'anima mia",
        "Era l'anima mia",
        "Ecco, Silvio",
        "Ma se con la pietà",
        "Dorinda, ah dirò",
        "Ecco, piegando le ginocchia a terra",
        "Ferir quel petto, Silvio?",
    ),
}
MONTEVERDI_CYCLES = {(3, 8): 3, (3, 15): 3, (3, 19): 2, (4, 6): 2, (5, 4): 5}  # (book, first number): parts
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth")
PART_NAMES = ("prima", "seconda", "terza", "quarta", "quinta")
BOOK_NAMES = {3: "Third", 4: "Fourth", 5: "Fifth"}
# Mass movements by the start of a file name or title (Palestrina: "Agnus_II_03", trecento: "Credo Cursor").
MASS_PARTS = {
    "kyrie": "Kyrie", "gloria": "Gloria", "credo": "Credo", "sanctus": "Sanctus", "benedictus": "Benedictus",
    "agnus": "Agnus Dei", "benedicamus": "Benedicamus Domino",
}  # fmt: skip
_MASS_PART = re.compile(r"\b(" + "|".join(MASS_PARTS) + r")", re.IGNORECASE)
QUARTET_NICKNAMES = {
    "beethoven/op59no1": "Razumovsky", "beethoven/op59no2": "Razumovsky", "beethoven/op59no3": "Razumovsky",
    "beethoven/op74": "Harp", "beethoven/op133": "Große Fuge", "mozart/k458": "The Hunt",
}  # fmt: skip


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
    return Work(f"bach/bwv{work}", FOLDER_COMPOSERS["bach"], "chorale", title, f"BWV {bwv}", "four voices")


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
